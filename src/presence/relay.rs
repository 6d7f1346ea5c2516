//! Stanzas for users homed on other nodes (DESIGN.md §8): a message, iq, directed presence or
//! subscription stanza whose addressee lives elsewhere travels to that node as a SIP `MESSAGE`
//! (RFC 3428) with `Content-Type: application/xmpp+xml` (the stanza, `from` and `to`
//! stamped), `From: sip:cluster@<domain>` and the cluster secret's HMAC in `Ccmp-Signature`
//! (DESIGN.md §5), over SIP/TCP. The receiving node delivers it as if it came from one of its
//! own users and answers `200` (delivered), `202` (kept offline) or `480`/`404`; a message or
//! request iq whose relay fails is bounced to its sender (RFC 6120 §8.3).
//!
//! Stateless: the parts say what to relay (`Relay`), this module writes the signed request
//! (`Outgoing`) and checks and reads what other nodes send.

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::context::{local_user, reply, Ctx, Outgoing, Reply, Requester};
use super::wire::{parse_stanza, wire};
use crate::cluster::ccmp;
use crate::cluster::view::NodeAddrs;
use crate::sip::grammar::{generic_param, is_wsp, split_unquoted};
use crate::sip::message::{self, Method, Request};
use crate::sip::transport::Peer;
use crate::xml::Element;
use crate::xmpp::jid::Jid;
use crate::xmpp::stanza::IqType;

/// The media type of a relayed stanza.
pub(crate) const CONTENT_TYPE: &str = "application/xmpp+xml";

/// Marks a relay the primary forwarded (its directory is the directory itself): the member
/// that gets it never forwards it again, so a stanza takes at most one extra hop.
const FORWARDED_HEADER: &str = "Rendezvous-Forwarded";

/// On a MESSAGE carrying a PIDF document: a publication handed to the user's new home by the
/// node it left (DESIGN.md §7), `etag=<SIP-ETag>;expires=<seconds left>`.
pub(crate) const PUBLICATION_HEADER: &str = "Rendezvous-Publication";

/// A serialised stanza for a user homed on another node.
pub(crate) struct Relay {
    /// The addressee's home.
    pub(crate) home: NodeAddrs,
    /// The addressee's localpart.
    pub(crate) to_user: String,
    /// The stanza, `from` and `to` set.
    pub(crate) body: Bytes,
    /// The stanza to bounce to its sender if the relay fails.
    pub(crate) bounce: Option<Box<Element>>,
    /// Passed on by the primary (the receiver does not forward it again).
    pub(crate) forwarded: bool,
}

impl Relay {
    /// `stanza` (with `from` and `to` set) to `to_user`'s home `home`.
    pub(crate) fn stanza(home: NodeAddrs, to_user: &str, stanza: &Element) -> Relay {
        Relay::stanza_as(home, to_user, stanza, false)
    }

    /// [`Self::stanza`], marked as forwarded by the primary when `forwarded`.
    fn stanza_as(home: NodeAddrs, to_user: &str, stanza: &Element, forwarded: bool) -> Relay {
        // Only what its sender waits for is worth an error when the relay fails.
        let bounce = match stanza.name.as_str() {
            "message" => stanza.attr("type") != Some("error"),
            "iq" => matches!(IqType::of(stanza), Some(IqType::Get | IqType::Set)),
            _ => false,
        };
        Relay {
            home,
            to_user: to_user.to_string(),
            body: wire(stanza),
            bounce: bounce.then(|| Box::new(stanza.clone())),
            forwarded,
        }
    }

    /// A serialised stanza; `bounce` is answered with an error if the relay fails.
    pub(crate) fn bytes(
        home: NodeAddrs,
        to_user: &str,
        body: Bytes,
        bounce: Option<Box<Element>>,
    ) -> Relay {
        Relay {
            home,
            to_user: to_user.to_string(),
            body,
            bounce,
            forwarded: false,
        }
    }

    /// The signed MESSAGE carrying it (none outside a cluster).
    pub(crate) fn outgoing(self, cx: &Ctx<'_>) -> Option<Outgoing> {
        let mut headers = Vec::new();
        if self.forwarded {
            headers.push((FORWARDED_HEADER, "primary".to_string()));
        }
        debug!(shard = cx.index, user = %self.to_user, node = %self.home.id, "stanza relayed");
        signed(
            cx,
            &self.home,
            &self.to_user,
            CONTENT_TYPE,
            self.body,
            headers,
            Requester::Relay(self.bounce),
        )
    }
}

/// A MESSAGE from `sip:cluster@<domain>` to `to_user` at node `home` over TCP, its body
/// signed with the cluster secret (nothing is sent outside a cluster).
pub(crate) fn signed(
    cx: &Ctx<'_>,
    home: &NodeAddrs,
    to_user: &str,
    content_type: &'static str,
    body: Bytes,
    extra: Vec<(&'static str, String)>,
    requester: Requester,
) -> Option<Outgoing> {
    let secret = cx.secret()?;
    let to = format!("sip:{to_user}@{}", cx.domain());
    let mut headers = Vec::with_capacity(5 + extra.len());
    headers.push((
        "From",
        format!("<{}>;tag={}", cx.cluster_from(), message::new_tag()),
    ));
    headers.push(("To", format!("<{to}>")));
    headers.push(("Call-ID", message::new_tag() + &message::new_tag()));
    headers.push(("CSeq", format!("1 {}", Method::Message.as_str())));
    headers.push((ccmp::SIGNATURE_HEADER, ccmp::sign(secret, &body)));
    headers.extend(extra);
    Some(Outgoing {
        peer: Peer::Tcp(home.sip),
        method: Method::Message,
        target: format!("sip:{to_user}@{};transport=tcp", home.sip),
        headers,
        body: Some((content_type, body)),
        requester,
    })
}

/// One of `user`'s publications (RFC 3903 state with its entity-tag) for its new home
/// `home`, signed like a relayed stanza.
pub(crate) fn publication(
    cx: &Ctx<'_>,
    home: &NodeAddrs,
    user: &str,
    etag: &str,
    pidf: String,
    expires: u32,
) -> Option<Outgoing> {
    let header = (PUBLICATION_HEADER, format!("etag={etag};expires={expires}"));
    debug!(shard = cx.index, %user, node = %home.id, "publication handed over");
    let body = Bytes::from(pidf);
    let ct = crate::pidf::CONTENT_TYPE;
    signed(
        cx,
        home,
        user,
        ct,
        body,
        vec![header],
        Requester::Relay(None),
    )
}

/// Whether `req` comes from a node of this cluster: its body signed with the cluster secret
/// (DESIGN.md §5). Otherwise the `403` to answer (`what` names it in the log).
pub(crate) fn verify(cx: &Ctx<'_>, req: &Request, what: &str) -> Result<(), Reply> {
    let Some(secret) = cx.secret() else {
        return Err(reply(req, 403, "Forbidden (not a cluster)", &[]));
    };
    if let Err(e) = ccmp::verify(secret, req.body(), req.header(ccmp::SIGNATURE_HEADER)) {
        warn!(shard = cx.index, error = %e, "{what} refused");
        return Err(reply(req, 403, "Forbidden (bad signature)", &[]));
    }
    Ok(())
}

/// What to do with a relayed stanza.
pub(crate) enum RelayedIn {
    /// Answered at once: refused, or passed on (with the relay that passes it on).
    Answer(Reply, Option<Relay>),
    /// Deliver it here as if one of this node's users had sent it.
    Deliver {
        /// The addressee's localpart.
        user: String,
        /// Its sender.
        from: Jid,
        /// Its addressee.
        to: Jid,
        /// The stanza.
        stanza: Element,
    },
}

/// A MESSAGE carrying a relayed stanza, checked: delivered here, or passed on when its
/// addressee lives elsewhere.
pub(crate) fn relayed_in(cx: &Ctx<'_>, req: &Request) -> RelayedIn {
    let answer = |status, reason| RelayedIn::Answer(reply(req, status, reason, &[]), None);
    if let Err(r) = verify(cx, req, "relayed stanza") {
        return RelayedIn::Answer(r, None);
    }
    let Some(stanza) = parse_stanza(req.body()) else {
        info!(shard = cx.index, "relayed stanza is not XML");
        return answer(400, "Bad Request (not a stanza)");
    };
    let to = stanza.attr("to").and_then(|t| Jid::parse(t).ok());
    let from = stanza.attr("from").and_then(|t| Jid::parse(t).ok());
    let (Some(to), Some(from)) = (to, from) else {
        return answer(400, "Bad Request (no from or to)");
    };
    let Some(user) = to.local().map(str::to_string) else {
        return answer(400, "Bad Request (no user)");
    };
    if let Some(home) = cx.remote_home(&user) {
        let Some(cluster) = cx.cluster else {
            return answer(404, "Not Found (not homed here)");
        };
        if cluster.view.is_primary() {
            // A member whose copy of the directory lags sent it here; the primary's is
            // the directory itself: one more hop, marked so that it is the last.
            let relay = Relay::stanza_as(home, &user, &stanza, true);
            let r = reply(req, 202, "Accepted (forwarded)", &[]);
            return RelayedIn::Answer(r, Some(relay));
        }
        // The sender's copy of the directory or ours lags (a move in flight). The
        // primary knows: hand it over, once. What the primary forwarded is not passed on
        // again (no ping-pong while copies disagree).
        if req.header(FORWARDED_HEADER).is_none() {
            if let Some(primary) = cluster.view.primary() {
                let relay = Relay::stanza_as(primary, &user, &stanza, false);
                let r = reply(req, 202, "Accepted (to the primary)", &[]);
                return RelayedIn::Answer(r, Some(relay));
            }
        }
        return answer(404, "Not Found (not homed here)");
    }
    RelayedIn::Deliver {
        user,
        from,
        to,
        stanza,
    }
}

/// A publication handed over by the node a user left, checked and read: the user, the
/// entity-tag, the document and when it expires.
pub(crate) fn publication_in(
    cx: &Ctx<'_>,
    req: &Request,
) -> Result<(String, String, crate::pidf::Presence, std::time::Instant), Reply> {
    verify(cx, req, "handed-over publication")?;
    let Some(user) = local_user(&req.base.to.uri) else {
        return Err(reply(req, 400, "Bad Request (no user)", &[]));
    };
    let params = req.header(PUBLICATION_HEADER).unwrap_or("");
    // `etag=<SIP-ETag>;expires=<seconds>`: generic-params (RFC 3261 §25.1) without the first `;`.
    let param = |name: &str| {
        split_unquoted(params, ';').find_map(|p| match generic_param(p.ok()?, is_wsp) {
            Ok((k, Some(v))) if k == name => Some(v.to_string()),
            _ => None,
        })
    };
    let etag = param("etag").filter(|t| !t.is_empty());
    let expires = param("expires").and_then(|e| e.parse::<u64>().ok());
    let (Some(etag), Some(expires)) = (etag, expires) else {
        return Err(reply(req, 400, "Bad Request (Rendezvous-Publication)", &[]));
    };
    let max = cx.settings.limits.max_pidf_bytes;
    let doc = match crate::pidf::Presence::parse_limited(req.body(), max) {
        Ok(d) => d,
        Err(e) => {
            info!(shard = cx.index, %user, error = %e, "bad PIDF in a handed-over publication");
            return Err(reply(req, 400, "Bad Request (PIDF)", &[]));
        }
    };
    if cx.remote_home(&user).is_some() {
        return Err(reply(req, 404, "Not Found (not homed here)", &[]));
    }
    let at = cx.now + std::time::Duration::from_secs(expires);
    Ok((user, etag, doc, at))
}
