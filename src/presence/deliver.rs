//! Delivery to the users of this node through the routing table (RFC 6121 §8.5, §4.2.2):
//! presence fanned out to a user's available resources, a stanza to one full JID, message
//! and iq routing for a user, error replies (RFC 6120 §8.3) and offline storage (XEP-0160,
//! stamped with XEP-0203 delay).
//!
//! Stateless: every function reads the routing table through the [`Ctx`] and writes
//! serialised bytes straight into the recipients' outboxes (the fan-out hot path: no hop);
//! what must go to another node comes back as a [`Relay`].

use bytes::Bytes;
use tracing::{debug, warn};

use super::context::Ctx;
use super::date::rfc3339_now;
use super::relay::Relay;
use super::routes::{available, message_targets};
use super::wire::{wire, with_to};
use crate::store::Records;
use crate::xml::{Element, CLIENT_NS};
use crate::xmpp::jid::Jid;
use crate::xmpp::stanza::{error_reply, IqType, MessageType, StanzaError};
use crate::xmpp::subscription::SubKind;

/// What became of a message for a local user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Handed to at least one XMPP resource or SIP user agent.
    Delivered,
    /// Kept for later (XEP-0160).
    Stored,
    /// Bounced (unknown user, storage full, store error).
    Failed,
}

impl Delivery {
    /// The SIP status telling another node or a user agent what became of its message
    /// (RFC 3428 §7: `200`, `202` when stored, `480`).
    pub(crate) fn status(self) -> (u16, &'static str) {
        match self {
            Delivery::Delivered => (200, "OK"),
            Delivery::Stored => (202, "Accepted"),
            Delivery::Failed => (480, "Temporarily Unavailable"),
        }
    }
}

/// Presence bytes (`from` set, no `to`) delivered to all available resources of `user`,
/// stamped `to` = the user's bare JID (RFC 6121 §4.2.2).
pub(crate) fn fan_out_to_user(cx: &Ctx<'_>, presence: &Bytes, user: &str) {
    let routes = cx.routes.get(user);
    if routes.iter().all(|r| r.presence.is_none()) {
        return;
    }
    let to = format!("{user}@{}", cx.domain());
    let bytes = with_to(presence, &to);
    for r in available(&routes) {
        r.sink.send(bytes.clone());
    }
}

/// `el` to every available resource of `user`.
pub(crate) fn deliver_to_available(cx: &Ctx<'_>, user: &str, el: &Element) {
    let bytes = wire(el);
    for r in available(&cx.routes.get(user)) {
        r.sink.send(bytes.clone());
    }
}

/// What the contact sees of `user` after a subscription stanza of `kind` from `user`: its
/// current presence after an approval (RFC 6121 §3.1.5), unavailable from each available
/// resource after a cancellation (§3.2.2), nothing otherwise.
pub(crate) fn follow_up_presence(cx: &Ctx<'_>, user: &str, kind: SubKind) -> Vec<Bytes> {
    let routes = cx.routes.get(user);
    match kind {
        SubKind::Subscribed => available(&routes)
            .filter_map(|r| r.presence.clone())
            .collect(),
        SubKind::Unsubscribed => {
            let bare = cx.bare(user);
            available(&routes)
                .map(|r| {
                    let p = Element::new("presence", CLIENT_NS)
                        .with_attr("from", bare.with_resource(&r.resource).to_string())
                        .with_attr("type", "unavailable");
                    wire(&p)
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Sends `el` (whose `to` is already right) to the full JID `to` if it is bound on any shard
/// of this node; what is for a user homed elsewhere comes back as a relay.
pub(crate) fn deliver_full(cx: &Ctx<'_>, to: &Jid, el: &Element) -> Option<Relay> {
    let (Some(user), Some(res)) = (to.local(), to.resource()) else {
        return None;
    };
    if to.domain() != cx.domain() {
        return None;
    }
    if let Some(home) = cx.remote_home(user) {
        return Some(Relay::bytes(home, user, wire(el), None));
    }
    if let Some(r) = cx.routes.get(user).iter().find(|r| r.resource == res) {
        r.sink.send_element(el);
    }
    None
}

/// Error reply to the sender of `stanza` (RFC 6120 §8.3).
pub(crate) fn bounce(
    cx: &Ctx<'_>,
    stanza: &Element,
    err: StanzaError,
    text: Option<&str>,
) -> Option<Relay> {
    if stanza.attr("type") == Some("error") {
        return None; // never answer an error with an error (RFC 6120 §8.3.1)
    }
    let reply = error_reply(stanza, err, text);
    let to = reply.attr("to").and_then(|t| Jid::parse(t).ok())?;
    deliver_full(cx, &to, &reply)
}

/// Presence bytes to a JID: the resource for a full JID, all available ones for a bare.
pub(crate) fn deliver_presence_to(cx: &Ctx<'_>, target: &Jid, presence: &Bytes) -> Option<Relay> {
    let user = target.local().filter(|_| target.domain() == cx.domain())?;
    if let Some(home) = cx.remote_home(user) {
        let bytes = with_to(presence, &target.to_string());
        return Some(Relay::bytes(home, user, bytes, None));
    }
    match target.resource() {
        Some(res) => {
            if let Some(r) = cx.routes.get(user).iter().find(|r| r.resource == res) {
                r.sink.send(with_to(presence, &target.to_string()));
            }
        }
        None => fan_out_to_user(cx, presence, user),
    }
    None
}

/// How a message or iq for an existing user of this node went (RFC 6121 §8.5).
pub(crate) enum Local {
    /// Done: with the error reply for another node, if any.
    Done(Delivery, Option<Relay>),
    /// The user's SIP user agents are to get it as SIP MESSAGE (RFC 3428): those of an RFC
    /// 8048 §4 pseudo-resource it was addressed to, or the registrations of a user with no
    /// (other) available resource. `delivered`: an XMPP resource got it too. Kept offline
    /// when neither did.
    UserAgents {
        /// The stanza.
        stanza: Element,
        /// Whether an XMPP resource took it.
        delivered: bool,
    },
}

/// A message or iq for `user`, who exists and is homed here, addressed to `to`.
pub(crate) fn deliver_local(cx: &Ctx<'_>, user: &str, to: &Jid, stanza: Element) -> Local {
    let routes = cx.routes.get(user);
    if let Some(res) = to.resource() {
        if let Some(r) = routes.iter().find(|r| r.resource == res) {
            if r.is_sip() {
                return Local::UserAgents {
                    stanza,
                    delivered: false,
                };
            }
            r.sink.send_element(&stanza);
            return Local::Done(Delivery::Delivered, None);
        }
    }
    if stanza.name == "iq" {
        // To a bare JID the server answers for the account; to an absent resource there
        // is no one to answer (RFC 6121 §8.5.1, §8.5.3.1).
        let mut relay = None;
        if matches!(IqType::of(&stanza), Some(IqType::Get | IqType::Set)) {
            relay = bounce(cx, &stanza, StanzaError::ServiceUnavailable, None);
        }
        return Local::Done(Delivery::Failed, relay);
    }
    match MessageType::of(&stanza) {
        MessageType::Normal | MessageType::Chat => {
            let targets = message_targets(&routes);
            let mut delivered = false;
            let bytes = wire(&stanza);
            for r in targets.iter().filter(|r| !r.is_sip()) {
                delivered |= r.sink.send(bytes.clone());
            }
            // SIP user agents of the user (RFC 8048 §4 pseudo-resources, or only a
            // registration) get the message as SIP MESSAGE (RFC 3428).
            if targets.is_empty() || targets.iter().any(|r| r.is_sip()) {
                return Local::UserAgents { stanza, delivered };
            }
            if delivered {
                Local::Done(Delivery::Delivered, None)
            } else {
                let (d, relay) = store_offline(cx, user, stanza);
                Local::Done(d, relay)
            }
        }
        MessageType::Headline => {
            let bytes = wire(&stanza);
            for r in available(&routes).filter(|r| r.priority >= 0 && !r.is_sip()) {
                r.sink.send(bytes.clone());
            }
            Local::Done(Delivery::Delivered, None)
        }
        MessageType::Groupchat => {
            let relay = bounce(cx, &stanza, StanzaError::ServiceUnavailable, None);
            Local::Done(Delivery::Failed, relay)
        }
        MessageType::Error => Local::Done(Delivery::Failed, None),
    }
}

/// Keeps a message for an offline user (XEP-0160), stamped with XEP-0203 delay; the error
/// reply when it cannot be kept.
pub(crate) fn store_offline(
    cx: &Ctx<'_>,
    user: &str,
    mut stanza: Element,
) -> (Delivery, Option<Relay>) {
    if stanza.get_child("body", CLIENT_NS).is_none() {
        // Chat states and receipts without a body are not worth storing.
        return (Delivery::Delivered, None);
    }
    stanza = stanza.with_child(
        Element::new("delay", "urn:xmpp:delay")
            .with_attr("from", cx.domain())
            .with_attr("stamp", rfc3339_now()),
    );
    let mut bytes = Vec::with_capacity(256);
    stanza.write_to(&mut bytes, CLIENT_NS);
    let xml = String::from_utf8_lossy(&bytes);
    match cx
        .store
        .offline_push(user, &xml, cx.settings.max_offline_messages)
    {
        Ok(true) => {
            debug!(shard = cx.index, %user, "stored offline message");
            (Delivery::Stored, None)
        }
        Ok(false) => {
            let text = Some("offline storage full");
            let relay = bounce(cx, &stanza, StanzaError::ServiceUnavailable, text);
            (Delivery::Failed, relay)
        }
        Err(e) => {
            warn!(shard = cx.index, %user, error = %e, "offline write failed");
            let relay = bounce(cx, &stanza, StanzaError::InternalServerError, None);
            (Delivery::Failed, relay)
        }
    }
}
