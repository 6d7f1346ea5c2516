//! The shard's SIP requests and responses: through the SIP part's transaction layer, then
//! to the part that serves them — the SIP part (REGISTER, SUBSCRIBE, PUBLISH, MESSAGE from
//! a user agent), a relayed stanza or a handed-over publication (DESIGN.md §7, §8), a
//! handed-over record (`handover`), a NOTIFY of a back-end subscription (`backend`).

use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;

use super::super::context::{reply, Ctx};
use super::super::deliver::{self, Delivery};
use super::super::handover::{RecordIn, RECORD_HEADER};
use super::super::relay::{self, RelayedIn, PUBLICATION_HEADER};
use super::super::roster::SubscriptionIn;
use super::super::sip::state::media_type;
use super::super::wire::{sub_kind, wire};
use super::PresenceShard;
use crate::cluster::record::UserRecord;
use crate::sip::message::{Message as SipMessage, Method, Request, Response};
use crate::sip::transaction::Key;
use crate::sip::transport::{Incoming, Peer};
use crate::xml::Element;
use crate::xmpp::jid::Jid;
use crate::xmpp::stanza::PresenceType;

/// A SIP message for a shard.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SipIn(pub Incoming);

/// The SIP transport is up: restore the persisted subscriptions of this shard.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SipStarted;

impl PresenceShard {
    /// A SIP request: its transaction, then the part that serves it.
    fn sip_request(&mut self, req: Request, source: Peer) {
        let Some((key, peer)) = self.sip_step(|s, io| s.accept(io, &req, source)) else {
            return;
        };
        match req.method().clone() {
            Method::Register => self.sip_step(|s, io| s.register(io, &key, &req, peer)),
            Method::Subscribe => {
                if let Some(new) = self.sip_step(|s, io| s.subscribe(io, &key, &req, peer)) {
                    // A presentity homed elsewhere is watched there: its state is what the
                    // first NOTIFY shows (DESIGN.md §8).
                    self.backend_for_sip(&new.presentity);
                    self.sip_step(|s, io| s.first_notify(io, new));
                }
            }
            Method::Publish => self.sip_step(|s, io| s.publish(io, &key, &req)),
            Method::Message
                if req.header("Content-Type").map(media_type).as_deref()
                    == Some(relay::CONTENT_TYPE) =>
            {
                self.relayed_in(&key, &req)
            }
            Method::Message if req.header(PUBLICATION_HEADER).is_some() => {
                self.publication_in(&key, &req)
            }
            Method::Message if req.header(RECORD_HEADER).is_some() => self.record_in(&key, &req),
            Method::Message => self.sip_message(&key, &req),
            Method::Notify if self.backend.owns(&req.base.call_id) => {
                let (r, fx) = {
                    let cx = Ctx::of(&self.shared, self.index, Instant::now());
                    let mut fx = Vec::new();
                    (self.backend.notify(&cx, &req, &mut fx), fx)
                };
                self.respond(&key, r);
                self.perform_backend(fx);
            }
            _ => self.sip_step(|s, io| s.unserved(io, &key, &req)),
        }
    }

    /// A response to one of our requests: a back-end subscription learns its dialog first.
    fn sip_response(&mut self, resp: Response) {
        if let Some(call_id) = resp
            .base
            .via
            .branch
            .as_deref()
            .and_then(|b| self.sip.backend_call(b))
        {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            self.backend.response(&cx, &call_id, &resp);
        }
        self.sip_step(|s, io| s.response(io, &resp));
    }

    /// MESSAGE from a SIP user (RFC 3428): delivered as an XMPP chat message, answered with
    /// what became of it.
    fn sip_message(&mut self, key: &Key, req: &Request) {
        let Some((recipient, stanza)) = self.sip_step(|s, io| s.message_in(io, key, req)) else {
            return;
        };
        let to = Jid::bare(&recipient, &self.shared.settings.domain);
        let outcome = self.inbound(to, stanza);
        self.sip_step(|s, io| s.message_delivered(io, key, req, outcome));
    }

    /// A MESSAGE carrying a relayed stanza (DESIGN.md §8): delivered here as if one of our
    /// own users had sent it, or passed on.
    fn relayed_in(&mut self, key: &Key, req: &Request) {
        let decision = {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            relay::relayed_in(&cx, req)
        };
        let (user, from, to, stanza) = match decision {
            RelayedIn::Answer(r, relay) => {
                self.relay_opt(relay);
                return self.respond(key, r);
            }
            RelayedIn::Deliver {
                user,
                from,
                to,
                stanza,
            } => (user, from, to, stanza),
        };
        let outcome = match stanza.name.as_str() {
            "presence" => {
                self.relayed_presence(&user, from, to, stanza);
                Delivery::Delivered
            }
            _ => self.inbound(to, stanza),
        };
        let (status, reason) = outcome.status();
        self.respond(key, reply(req, status, reason, &[]));
    }

    /// A relayed presence stanza: a subscription stanza goes through the contact's state
    /// machine (RFC 6121 Appendix A.3), directed presence to its addressee (§4.6).
    fn relayed_presence(&mut self, user: &str, from: Jid, to: Jid, mut stanza: Element) {
        let Some(ptype) = PresenceType::of(&stanza) else {
            return;
        };
        match sub_kind(ptype) {
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
                let r = {
                    let cx = Ctx::of(&self.shared, self.index, Instant::now());
                    deliver::deliver_presence_to(&cx, &to, &bytes)
                };
                self.relay_opt(r);
            }
        }
    }

    /// A publication handed over by the node a user left: kept under its entity-tag.
    fn publication_in(&mut self, key: &Key, req: &Request) {
        let parsed = {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            relay::publication_in(&cx, req)
        };
        match parsed {
            Err(r) => self.respond(key, r),
            Ok((user, etag, doc, at)) => self.sip_step(|s, io| {
                s.adopt_publication(io, &user, etag, doc, at);
                s.reply_simple(io, key, req, 200, "OK", &[]);
            }),
        }
    }

    /// At the new home: the old home's record, merged into ours; what waited for it is
    /// handled now.
    fn record_in(&mut self, key: &Key, req: &Request) {
        let parsed = {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            self.handover.record_in(&cx, req)
        };
        let RecordIn {
            user,
            theirs,
            arrival,
        } = match parsed {
            Ok(r) => r,
            Err(r) => return self.respond(key, r),
        };
        let empty = UserRecord::default();
        let base = arrival.as_ref().map_or(&empty, |a| &a.base);
        self.roster_step(|r, cx, fx| r.merge_record(cx, &user, base, &theirs, fx));
        if let Some(a) = arrival {
            for msg in a.waiting {
                self.subscription_in(msg);
            }
        }
        self.respond(key, reply(req, 200, "OK", &[]));
    }
}

impl Handler<SipIn> for PresenceShard {
    type Result = ();

    fn handle(&mut self, SipIn(incoming): SipIn, ctx: &mut Context<Self>) {
        match incoming.message {
            SipMessage::Request(req) => self.sip_request(req, incoming.peer),
            SipMessage::Response(resp) => self.sip_response(resp),
        }
        self.arm_wake(ctx);
    }
}

impl Handler<SipStarted> for PresenceShard {
    type Result = ();

    fn handle(&mut self, _: SipStarted, ctx: &mut Context<Self>) {
        self.sip_step(|s, io| s.restore_subscriptions(io));
        self.arm_wake(ctx);
    }
}
