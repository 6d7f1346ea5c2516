//! Stanzas for users homed on other nodes (DESIGN.md §8): a message, iq, directed presence or
//! subscription stanza whose addressee lives elsewhere travels to that node as a SIP `MESSAGE`
//! (RFC 3428) with `Content-Type: application/xmpp+xml` (the stanza, `from` and `to`
//! stamped), `From: sip:cluster@<domain>` and the cluster secret's HMAC in `Ccmp-Signature`
//! (DESIGN.md §5), over SIP/TCP. The receiving node delivers it as if it came from one of its
//! own users and answers `200` (delivered), `202` (kept offline) or `480`/`404`; a message or
//! request iq whose relay fails is bounced to its sender (RFC 6120 §8.3).

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::shard::{wire, Delivery, PresenceShard};
use super::sip::Purpose;
use super::SubscriptionIn;
use crate::cluster::ccmp;
use crate::cluster::dialog::CLUSTER_USER;
use crate::cluster::view::{NodeAddrs, Route};
use crate::sip::message::{Method, Request};
use crate::sip::transaction::Key;
use crate::sip::transport::Peer;
use crate::xmpp::jid::Jid;
use crate::xmpp::stanza::{IqType, PresenceType, StanzaError};
use crate::xmpp::xml::Element;

/// The media type of a relayed stanza.
pub const CONTENT_TYPE: &str = "application/xmpp+xml";

/// Marks a relay the primary forwarded (its directory is the directory itself): the member
/// that gets it never forwards it again, so a stanza takes at most one extra hop.
const FORWARDED_HEADER: &str = "Rendezvous-Forwarded";

/// On a MESSAGE carrying a PIDF document: a publication handed to the user's new home by the
/// node it left (DESIGN.md §7), `etag=<SIP-ETag>;expires=<seconds left>`.
pub(super) const PUBLICATION_HEADER: &str = "Rendezvous-Publication";

impl PresenceShard {
    /// The node that handles `user`'s stanzas when it is not this one.
    pub(super) fn remote_home(&self, user: &str) -> Option<NodeAddrs> {
        match self.hub.cluster.get()?.view.route(user) {
            Route::Here => None,
            Route::There(addrs) => Some(addrs),
        }
    }

    /// `sip:cluster@<domain>`: who node-to-node requests are from.
    pub(super) fn cluster_from(&self) -> String {
        format!("sip:{CLUSTER_USER}@{}", self.hub.settings.domain)
    }

    /// Sends `stanza` (with `from` and `to` set) to `to_user`'s home `home`.
    pub(super) fn relay(&mut self, home: &NodeAddrs, to_user: &str, stanza: &Element) {
        self.relay_as(home, to_user, stanza, false);
    }

    /// [`Self::relay`], marked as forwarded by the primary when `forwarded`.
    fn relay_as(&mut self, home: &NodeAddrs, to_user: &str, stanza: &Element, forwarded: bool) {
        // Only what its sender waits for is worth an error when the relay fails.
        let bounce = match stanza.name.as_str() {
            "message" => stanza.attr("type") != Some("error"),
            "iq" => matches!(IqType::of(stanza), Some(IqType::Get | IqType::Set)),
            _ => false,
        };
        let body = wire(stanza);
        self.relay_request(
            home,
            to_user,
            body,
            bounce.then(|| Box::new(stanza.clone())),
            forwarded,
        );
    }

    /// Sends a serialised stanza; `bounce` is answered with an error if the relay fails.
    pub(super) fn relay_bytes(
        &mut self,
        home: &NodeAddrs,
        to_user: &str,
        body: Bytes,
        bounce: Option<Box<Element>>,
    ) {
        self.relay_request(home, to_user, body, bounce, false);
    }

    fn relay_request(
        &mut self,
        home: &NodeAddrs,
        to_user: &str,
        body: Bytes,
        bounce: Option<Box<Element>>,
        forwarded: bool,
    ) {
        let mut headers = Vec::new();
        if forwarded {
            headers.push((FORWARDED_HEADER, "primary".to_string()));
        }
        debug!(shard = self.index, user = %to_user, node = %home.id, "stanza relayed");
        self.send_signed(
            home,
            to_user,
            CONTENT_TYPE,
            body,
            headers,
            Purpose::Relay(bounce),
        );
    }

    /// Sends one of `user`'s publications (RFC 3903 state with its entity-tag) to its new
    /// home `home`, signed like a relayed stanza.
    pub(super) fn hand_over_publication(
        &mut self,
        home: &NodeAddrs,
        user: &str,
        etag: &str,
        pidf: String,
        expires: u32,
    ) {
        let header = (PUBLICATION_HEADER, format!("etag={etag};expires={expires}"));
        debug!(shard = self.index, %user, node = %home.id, "publication handed over");
        let body = Bytes::from(pidf);
        let ct = crate::pidf::CONTENT_TYPE;
        self.send_signed(home, user, ct, body, vec![header], Purpose::Relay(None));
    }

    /// A MESSAGE from `sip:cluster@<domain>` to `to_user` at node `home` over TCP, its body
    /// signed with the cluster secret (nothing is sent outside a cluster).
    pub(super) fn send_signed(
        &mut self,
        home: &NodeAddrs,
        to_user: &str,
        content_type: &str,
        body: Bytes,
        mut headers: Vec<(&str, String)>,
        purpose: Purpose,
    ) {
        let Some(secret) = self.hub.cluster.get().map(|c| c.secret.clone()) else {
            return;
        };
        let peer = Peer::Tcp(home.sip);
        let target = format!("sip:{to_user}@{};transport=tcp", home.sip);
        let to = format!("sip:{to_user}@{}", self.hub.settings.domain);
        let from = self.cluster_from();
        headers.insert(0, (ccmp::SIGNATURE_HEADER, ccmp::sign(&secret, &body)));
        let (branch, bytes) = self.build_request_with(
            Method::Message,
            &target,
            peer,
            &from,
            &to,
            Some((content_type, body)),
            &headers,
        );
        self.send_request(peer, branch, bytes, purpose);
    }

    /// Whether `req` comes from a node of this cluster: its body signed with the cluster
    /// secret (DESIGN.md §5). Otherwise it is answered `403` (`what` names it in the log).
    pub(super) fn signed_by_cluster(&mut self, key: &Key, req: &Request, what: &str) -> bool {
        let Some(secret) = self.hub.cluster.get().map(|c| c.secret.clone()) else {
            self.reply_simple(key, req, 403, "Forbidden (not a cluster)", &[]);
            return false;
        };
        if let Err(e) = ccmp::verify(&secret, req.body(), req.header(ccmp::SIGNATURE_HEADER)) {
            warn!(shard = self.index, error = %e, "{what} refused");
            self.reply_simple(key, req, 403, "Forbidden (bad signature)", &[]);
            return false;
        }
        true
    }

    /// A publication handed over by the node a user left: kept under its entity-tag.
    pub(super) fn publication_in(&mut self, key: &Key, req: &Request) {
        if !self.signed_by_cluster(key, req, "handed-over publication") {
            return;
        }
        let Some(user) = self.local_user(&req.base.to.uri) else {
            return self.reply_simple(key, req, 400, "Bad Request (no user)", &[]);
        };
        let params = req.header(PUBLICATION_HEADER).unwrap_or("");
        let param = |name: &str| {
            params.split(';').find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        let etag = param("etag").filter(|t| !t.is_empty());
        let expires = param("expires").and_then(|e| e.parse::<u64>().ok());
        let (Some(etag), Some(expires)) = (etag, expires) else {
            return self.reply_simple(key, req, 400, "Bad Request (Rendezvous-Publication)", &[]);
        };
        let max = self.hub.settings.limits.max_pidf_bytes;
        let doc = match crate::pidf::Presence::parse_limited(req.body(), max) {
            Ok(d) => d,
            Err(e) => {
                info!(shard = self.index, %user, error = %e, "bad PIDF in a handed-over publication");
                return self.reply_simple(key, req, 400, "Bad Request (PIDF)", &[]);
            }
        };
        if self.remote_home(&user).is_some() {
            return self.reply_simple(key, req, 404, "Not Found (not homed here)", &[]);
        }
        let at = std::time::Instant::now() + std::time::Duration::from_secs(expires);
        self.presentity(&user).publications.adopt(etag, doc, at);
        debug!(shard = self.index, %user, "publication taken over");
        self.publications_changed(&user);
        self.reply_simple(key, req, 200, "OK", &[]);
    }

    /// The outcome of a relay: a failure bounces the stanza it carried, if any.
    pub(super) fn relay_done(&mut self, stanza: Option<Box<Element>>, status: Option<u16>) {
        if matches!(status, Some(200..=299)) {
            return;
        }
        info!(
            shard = self.index,
            ?status,
            "stanza relay to another node failed"
        );
        if let Some(stanza) = stanza {
            self.bounce(
                &stanza,
                StanzaError::ServiceUnavailable,
                Some("the recipient's server did not answer"),
            );
        }
    }

    /// A MESSAGE carrying a relayed stanza: checked, then delivered here as if one of our own
    /// users had sent it.
    pub(super) fn relayed_in(&mut self, key: &Key, req: &Request) {
        if !self.signed_by_cluster(key, req, "relayed stanza") {
            return;
        }
        let Some(stanza) = super::sip::parse_stanza(req.body()) else {
            info!(shard = self.index, "relayed stanza is not XML");
            return self.reply_simple(key, req, 400, "Bad Request (not a stanza)", &[]);
        };
        let to = stanza.attr("to").and_then(|t| Jid::parse(t).ok());
        let from = stanza.attr("from").and_then(|t| Jid::parse(t).ok());
        let (Some(to), Some(from)) = (to, from) else {
            return self.reply_simple(key, req, 400, "Bad Request (no from or to)", &[]);
        };
        let Some(user) = to.local().map(str::to_string) else {
            return self.reply_simple(key, req, 400, "Bad Request (no user)", &[]);
        };
        if let Some(home) = self.remote_home(&user) {
            let Some(cluster) = self.hub.cluster.get() else {
                return self.reply_simple(key, req, 404, "Not Found (not homed here)", &[]);
            };
            if cluster.view.is_primary() {
                // A member whose copy of the directory lags sent it here; the primary's is
                // the directory itself: one more hop, marked so that it is the last.
                self.relay_as(&home, &user, &stanza, true);
                return self.reply_simple(key, req, 202, "Accepted (forwarded)", &[]);
            }
            // The sender's copy of the directory or ours lags (a move in flight). The
            // primary knows: hand it over, once. What the primary forwarded is not passed on
            // again (no ping-pong while copies disagree).
            if req.header(FORWARDED_HEADER).is_none() {
                if let Some(primary) = cluster.view.primary() {
                    self.relay_as(&primary, &user, &stanza, false);
                    return self.reply_simple(key, req, 202, "Accepted (to the primary)", &[]);
                }
            }
            return self.reply_simple(key, req, 404, "Not Found (not homed here)", &[]);
        }
        let status = match stanza.name.as_str() {
            "presence" => {
                self.relayed_presence(&user, from, to, stanza);
                200
            }
            _ => match self.inbound(to, stanza) {
                Delivery::Delivered => 200,
                Delivery::Stored => 202,
                Delivery::Failed => 480,
            },
        };
        let reason = match status {
            200 => "OK",
            202 => "Accepted",
            _ => "Temporarily Unavailable",
        };
        self.reply_simple(key, req, status, reason, &[]);
    }

    /// A relayed presence stanza: a subscription stanza goes through the contact's state
    /// machine (RFC 6121 Appendix A.3), directed presence to its addressee (§4.6).
    fn relayed_presence(&mut self, user: &str, from: Jid, to: Jid, mut stanza: Element) {
        let Some(ptype) = PresenceType::of(&stanza) else {
            return;
        };
        match super::shard::sub_kind(ptype) {
            Some(kind) => self.subscription_in(SubscriptionIn {
                to: user.to_string(),
                from: from.to_bare(),
                kind,
                stanza,
                then_presence: Vec::new(),
            }),
            None if ptype == PresenceType::Probe => {}
            None => {
                stanza.remove_attr("to");
                let bytes: Bytes = wire(&stanza);
                self.deliver_presence_to(&to, &bytes);
            }
        }
    }
}
