//! The server side of MOE-MP (DESIGN.md §9, docs/moe-mp.md): settings pushes and the
//! tracked office-environment exchanges between users. (Groups and contact-add confirmation
//! change the roster and live with it, in `contacts`.)
//!
//! Exchanges live in the requester's shard: a request passes through it (and is recorded)
//! before it is forwarded, and the answer is addressed to the requester, so it arrives in the
//! same shard, where it is checked against the record. `MoeState` owns the exchanges and
//! the push flags and returns what it sends as `MoeFx`; time is passed in.

use std::collections::HashSet;
use std::time::Duration;

use actix::prelude::*;
use tracing::{debug, info};

use super::context::Ctx;
use super::outbox::Outbox;
use super::roster::{local_account, stored_settings};
use super::routes::available;
use crate::xml::{Element, CLIENT_NS};
use crate::xmpp::jid::Jid;
use crate::xmpp::moe::{self, Broadcast, Exchanges, MessagePayload, MoeError, Request};
use crate::xmpp::stanza::{error_reply, StanzaError};

pub use super::roster::MoeIq;

/// A MOE-MP request or broadcast sent by a bound resource, to be recorded in the
/// requester's shard and forwarded.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MoeOut {
    /// The sender's full JID.
    pub from: Jid,
    /// The message, `from` stamped.
    pub stanza: Element,
    /// Its parsed payload (a request or a broadcast).
    pub payload: MessagePayload,
    /// Where errors go.
    pub outbox: Outbox,
}

/// A resource saved new MOE settings: push them to the user's other resources that asked.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SettingsSaved {
    /// Local part.
    pub user: String,
    /// The resource that saved them (not pushed back to it).
    pub resource: String,
    /// The `<settings/>` element.
    pub settings: Element,
}

/// What MOE-MP sends, performed by the shard shell in order.
#[derive(Debug, PartialEq)]
pub(crate) enum MoeFx {
    /// An error for the sender of the stanza being handled (to its session's outbox).
    Reply(Element),
    /// A stanza for one resource of this node (a settings push, a refused answer's error).
    ToResource {
        /// The full JID.
        to: Jid,
        /// The stanza, `to` set.
        stanza: Element,
    },
    /// A request or offer for a user of this node, delivered by the user's shard.
    Forward {
        /// The addressee.
        to: Jid,
        /// The message.
        stanza: Element,
    },
}

/// MOE-MP state of one shard.
#[derive(Default)]
pub(crate) struct MoeState {
    /// Open exchanges of this shard's users as requesters.
    exchanges: Exchanges,
    /// (user, resource) that asked for settings pushes.
    push: HashSet<(String, String)>,
    seq: u64,
}

impl MoeState {
    fn push_id(&mut self, cx: &Ctx<'_>) -> String {
        self.seq += 1;
        format!("moe-push{}-{}", cx.index, self.seq)
    }

    /// Initial presence carried `<moe settings='push'/>`: remember it and push the stored
    /// settings to that resource at once (docs/moe-mp.md §1).
    pub(crate) fn push_requested(
        &mut self,
        cx: &Ctx<'_>,
        user: &str,
        resource: &str,
        fx: &mut Vec<MoeFx>,
    ) {
        self.push.insert((user.to_string(), resource.to_string()));
        let settings = stored_settings(cx, user);
        self.push_settings(cx, user, resource, settings, fx);
    }

    /// A resource saved new settings: they go to the user's other resources that asked.
    pub(crate) fn settings_saved(&mut self, cx: &Ctx<'_>, msg: SettingsSaved, fx: &mut Vec<MoeFx>) {
        let targets: Vec<String> = self
            .push
            .iter()
            .filter(|(u, r)| *u == msg.user && *r != msg.resource)
            .map(|(_, r)| r.clone())
            .collect();
        for resource in targets {
            self.push_settings(cx, &msg.user, &resource, msg.settings.clone(), fx);
        }
    }

    fn push_settings(
        &mut self,
        cx: &Ctx<'_>,
        user: &str,
        resource: &str,
        settings: Element,
        fx: &mut Vec<MoeFx>,
    ) {
        let id = self.push_id(cx);
        let to = cx.bare(user).with_resource(resource);
        let iq = Element::new("iq", CLIENT_NS)
            .with_attr("type", "set")
            .with_attr("id", id)
            .with_attr("to", to.to_string())
            .with_child(settings);
        fx.push(MoeFx::ToResource { to, stanza: iq });
    }

    /// A resource went away: forget its push flag.
    pub(crate) fn unbound(&mut self, user: &str, resource: &str) {
        self.push.remove(&(user.to_string(), resource.to_string()));
    }

    /// Drops exchanges past their expiry (run periodically); how many expired now.
    pub(crate) fn expire(&mut self, cx: &Ctx<'_>) -> usize {
        let n = self.exchanges.expire(cx.now);
        if n > 0 {
            debug!(shard = cx.index, expired = n, "MOE-MP exchanges expired");
        }
        n
    }

    /// An answer (work list, accept, decline) for one of this shard's requesters, checked
    /// against its record before delivery; false when it was refused (the error to the
    /// sender is in `fx`).
    pub(crate) fn answer_allowed(
        &mut self,
        cx: &Ctx<'_>,
        to: &Jid,
        stanza: &Element,
        fx: &mut Vec<MoeFx>,
    ) -> bool {
        // Requests were checked in the requester's shard (and broadcast offers are ours).
        let is_answer = stanza.elements().any(|c| {
            c.ns == moe::NS && matches!(c.name.as_str(), "worklist" | "accept" | "decline")
        });
        if !is_answer {
            return true;
        }
        let max = cx.settings.limits.moe_max_broadcast;
        let answer = match moe::message_payload(stanza, max) {
            Ok(Some(MessagePayload::Answer(a))) => a,
            Ok(_) => return true,
            Err(e) => return refuse(cx, stanza, e, fx),
        };
        let responder = stanza
            .attr("from")
            .and_then(|f| Jid::parse(f).ok())
            .map(|j| j.to_bare().to_string())
            .unwrap_or_default();
        if to.to_bare() != *answer.requester() {
            let e = MoeError::InvalidPayload("an answer goes to its requester".into());
            return refuse(cx, stanza, e, fx);
        }
        match self.exchanges.answer(&responder, &answer, cx.now) {
            Ok(_) => true,
            Err(e) => refuse(cx, stanza, e, fx),
        }
    }

    /// A request or broadcast from one of this shard's users: recorded, then forwarded.
    pub(crate) fn out(&mut self, cx: &Ctx<'_>, msg: MoeOut, fx: &mut Vec<MoeFx>) {
        let MoeOut {
            from,
            stanza,
            payload,
            ..
        } = msg;
        let requester = from.to_bare().to_string();
        let ttl = Duration::from_secs(cx.settings.limits.moe_exchange_ttl_s);
        match payload {
            MessagePayload::Request(req) => {
                let Some(to) = stanza.attr("to").and_then(|t| Jid::parse(t).ok()) else {
                    let e = MoeError::InvalidPayload("a request needs a 'to'".into());
                    return fx.push(MoeFx::Reply(e.reply_to(&stanza)));
                };
                let Some(addressee) = local_account(cx, &to) else {
                    let err = error_reply(&stanza, StanzaError::ItemNotFound, None);
                    return fx.push(MoeFx::Reply(err));
                };
                if !is_available(cx, &addressee) {
                    // Requests carry no body and are not stored offline: say so at once.
                    let text = format!("{to} is not online");
                    let err = error_reply(&stanza, StanzaError::ServiceUnavailable, Some(&text));
                    return fx.push(MoeFx::Reply(err));
                }
                if let Err(e) = self.exchanges.open(
                    &requester,
                    req.id(),
                    &format!("{addressee}@{}", cx.domain()),
                    req.kind(),
                    offered(&req),
                    cx.now,
                    ttl,
                ) {
                    return fx.push(MoeFx::Reply(e.reply_to(&stanza)));
                }
                fx.push(MoeFx::Forward { to, stanza });
            }
            MessagePayload::Broadcast(b) => self.broadcast(cx, &from, &stanza, b, fx),
            MessagePayload::Answer(_) => {} // answers are routed as messages
        }
    }

    /// docs/moe-mp.md §2.4: one offer per addressee, each its own exchange.
    fn broadcast(
        &mut self,
        cx: &Ctx<'_>,
        from: &Jid,
        stanza: &Element,
        b: Broadcast,
        fx: &mut Vec<MoeFx>,
    ) {
        let requester = from.to_bare().to_string();
        let ttl = Duration::from_secs(cx.settings.limits.moe_exchange_ttl_s);
        let offer = Request::Offer {
            id: b.id.clone(),
            files: b.files.clone(),
        };
        for to in &b.to {
            let Some(addressee) = local_account(cx, to) else {
                let text = format!("no user {to}");
                let err = error_reply(stanza, StanzaError::ItemNotFound, Some(&text));
                fx.push(MoeFx::Reply(err));
                continue;
            };
            if !is_available(cx, &addressee) {
                let text = format!("{to} is not online");
                let err = error_reply(stanza, StanzaError::ServiceUnavailable, Some(&text));
                fx.push(MoeFx::Reply(err));
                continue;
            }
            let bare = format!("{addressee}@{}", cx.domain());
            let id = format!("{}/{bare}", b.id);
            if let Err(e) = self.exchanges.open(
                &requester,
                &id,
                &bare,
                moe::Kind::Offer,
                offered(&offer),
                cx.now,
                ttl,
            ) {
                fx.push(MoeFx::Reply(e.reply_to(stanza)));
                continue;
            }
            let mut msg = Element::new("message", CLIENT_NS)
                .with_attr("from", from.to_string())
                .with_attr("to", bare.as_str())
                .with_child(offer.with_id(&id).to_element());
            if let Some(mid) = stanza.attr("id") {
                msg.set_attr("id", mid);
            }
            fx.push(MoeFx::Forward {
                to: Jid::bare(&addressee, cx.domain()),
                stanza: msg,
            });
        }
    }
}

/// The error reply to a refused MOE-MP stanza, to its sender; always false.
fn refuse(cx: &Ctx<'_>, stanza: &Element, e: MoeError, fx: &mut Vec<MoeFx>) -> bool {
    info!(shard = cx.index, error = %e, "MOE-MP stanza refused");
    let reply = e.reply_to(stanza);
    if let Some(to) = reply.attr("to").and_then(|t| Jid::parse(t).ok()) {
        fx.push(MoeFx::ToResource { to, stanza: reply });
    }
    false
}

/// Whether `user` has an available resource (a MOE request needs someone to answer it).
fn is_available(cx: &Ctx<'_>, user: &str) -> bool {
    available(&cx.routes.get(user)).next().is_some()
}

/// The names of the files an offer proposes or a file request asks for (an accept may
/// choose only among them).
fn offered(req: &Request) -> Vec<String> {
    match req {
        Request::Offer { files, .. } | Request::Files { files, .. } => {
            files.iter().map(|f| f.name.clone()).collect()
        }
        Request::Worklist { .. } => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::testkit::World;
    use crate::presence::wire::{parse_stanza, wire};

    fn xml(s: &str) -> Element {
        parse_stanza(s.as_bytes()).expect("a stanza")
    }

    /// alice asks bob (online) for his work list, exchange `id`.
    fn ask(m: &mut MoeState, w: &World, id: &str) -> Vec<MoeFx> {
        let stanza = xml(&format!(
            "<message from='alice@example.com/office' to='bob@example.com' id='m-{id}'>\
             <worklist-request xmlns='urn:rendezvous:params:xml:ns:moe' id='{id}'/></message>"
        ));
        let payload = moe::message_payload(&stanza, 10).unwrap().unwrap();
        let msg = MoeOut {
            from: Jid::parse("alice@example.com/office").unwrap(),
            stanza,
            payload,
            outbox: Outbox::new(1 << 16),
        };
        let mut fx = Vec::new();
        m.out(&w.cx(), msg, &mut fx);
        fx
    }

    /// bob's answer to alice's exchange `id`.
    fn answer(id: &str) -> Element {
        xml(&format!(
            "<message from='bob@example.com/desk' to='alice@example.com/office'>\
             <worklist xmlns='urn:rendezvous:params:xml:ns:moe' id='{id}' \
             requester='alice@example.com'><item name='Slides'/></worklist></message>"
        ))
    }

    fn allowed(m: &mut MoeState, w: &World, id: &str) -> (bool, Vec<MoeFx>) {
        let to = Jid::parse("alice@example.com/office").unwrap();
        let mut fx = Vec::new();
        let ok = m.answer_allowed(&w.cx(), &to, &answer(id), &mut fx);
        (ok, fx)
    }

    /// The MOE-MP condition of the error sent back to the responder.
    fn refusal(fx: &[MoeFx]) -> String {
        match fx {
            [MoeFx::ToResource { to, stanza }] => {
                assert_eq!(to.to_string(), "bob@example.com/desk");
                String::from_utf8_lossy(&wire(stanza)).into_owned()
            }
            other => panic!("one error to the responder, not {other:?}"),
        }
    }

    fn world() -> World {
        let w = World::new();
        w.account("alice");
        w.account("bob");
        w.online(
            "bob",
            "desk",
            Some("<presence from='bob@example.com/desk'/>"),
        );
        w
    }

    #[test]
    fn a_request_is_recorded_forwarded_and_answered_once_moe_2_1() {
        let w = world();
        let mut m = MoeState::default();
        let fx = ask(&mut m, &w, "w1");
        assert!(
            matches!(&fx[..], [MoeFx::Forward { to, .. }] if to.to_string() == "bob@example.com")
        );
        let (ok, fx) = allowed(&mut m, &w, "w1");
        assert!(ok && fx.is_empty());
        // The exchange is closed by its answer.
        let (ok, fx) = allowed(&mut m, &w, "w1");
        assert!(!ok);
        assert!(refusal(&fx).contains("unknown-exchange"));
    }

    #[test]
    fn an_expired_exchange_refuses_its_answer_moe_2() {
        let mut w = world();
        let mut m = MoeState::default();
        ask(&mut m, &w, "w2");
        let ttl = Duration::from_secs(w.settings.limits.moe_exchange_ttl_s);
        w.advance(ttl);
        assert_eq!(m.expire(&w.cx()), 1);
        let (ok, fx) = allowed(&mut m, &w, "w2");
        assert!(!ok);
        assert!(refusal(&fx).contains("exchange-expired"));
    }

    #[test]
    fn a_request_to_someone_offline_is_refused_at_once() {
        let w = World::new();
        w.account("alice");
        w.account("bob");
        let mut m = MoeState::default();
        let fx = ask(&mut m, &w, "w3");
        assert!(matches!(&fx[..], [MoeFx::Reply(e)] if e.attr("type") == Some("error")));
        // Nothing was recorded: an answer is unknown.
        let (ok, _) = allowed(&mut m, &w, "w3");
        assert!(!ok);
    }

    #[test]
    fn settings_are_pushed_to_the_resources_that_asked_moe_1() {
        let w = world();
        let mut m = MoeState::default();
        let mut fx = Vec::new();
        m.push_requested(&w.cx(), "bob", "desk", &mut fx);
        assert!(
            matches!(&fx[..], [MoeFx::ToResource { to, .. }] if to.to_string() == "bob@example.com/desk")
        );
        let saved = |resource: &str| SettingsSaved {
            user: "bob".into(),
            resource: resource.into(),
            settings: moe::empty_settings(),
        };
        let mut fx = Vec::new();
        m.settings_saved(&w.cx(), saved("desk"), &mut fx);
        assert!(fx.is_empty(), "not back to the resource that saved them");
        m.settings_saved(&w.cx(), saved("phone"), &mut fx);
        assert_eq!(fx.len(), 1);
        m.unbound("bob", "desk");
        let mut fx = Vec::new();
        m.settings_saved(&w.cx(), saved("phone"), &mut fx);
        assert!(fx.is_empty());
    }
}
