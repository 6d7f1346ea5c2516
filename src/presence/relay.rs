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
        // Only what its sender waits for is worth an error when the relay fails.
        let bounce = match stanza.name.as_str() {
            "message" => stanza.attr("type") != Some("error"),
            "iq" => matches!(IqType::of(stanza), Some(IqType::Get | IqType::Set)),
            _ => false,
        };
        let body = wire(stanza);
        self.relay_bytes(
            home,
            to_user,
            body,
            bounce.then(|| Box::new(stanza.clone())),
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
        let Some(secret) = self.hub.cluster.get().map(|c| c.secret.clone()) else {
            return;
        };
        let peer = Peer::Tcp(home.sip);
        let target = format!("sip:{to_user}@{};transport=tcp", home.sip);
        let to = format!("sip:{to_user}@{}", self.hub.settings.domain);
        let from = self.cluster_from();
        let signature = ccmp::sign(&secret, &body);
        let (branch, bytes) = self.build_request_with(
            Method::Message,
            &target,
            peer,
            &from,
            &to,
            Some((CONTENT_TYPE, body)),
            &[(ccmp::SIGNATURE_HEADER, signature)],
        );
        debug!(shard = self.index, user = %to_user, node = %home.id, "stanza relayed");
        self.send_request(peer, branch, bytes, Purpose::Relay(bounce));
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
        let Some(secret) = self.hub.cluster.get().map(|c| c.secret.clone()) else {
            return self.reply_simple(key, req, 403, "Forbidden (not a cluster)", &[]);
        };
        if let Err(e) = ccmp::verify(&secret, req.body(), req.header(ccmp::SIGNATURE_HEADER)) {
            warn!(shard = self.index, error = %e, "relayed stanza refused");
            return self.reply_simple(key, req, 403, "Forbidden (bad signature)", &[]);
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
            let primary = self.hub.cluster.get().is_some_and(|c| c.view.is_primary());
            if primary {
                // A member whose copy of the directory lags sent it here; the primary's is
                // the directory itself: one more hop, never more (members do not forward).
                self.relay(&home, &user, &stanza);
                return self.reply_simple(key, req, 202, "Accepted (forwarded)", &[]);
            }
            // Directories disagree for a moment (a move in flight): no ping-pong between
            // members.
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
