//! The server side of MOE-MP (DESIGN.md §9, docs/moe-mp.md): settings pushes, the tracked
//! office-environment exchanges between users, server-kept groups and contact-add
//! confirmation, on top of the RFC 6121 roster of the presence shards.
//!
//! Exchanges live in the requester's shard: a request passes through it (and is recorded)
//! before it is forwarded, and the answer is addressed to the requester, so it arrives in the
//! same shard, where it is checked against the record.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tracing::{debug, info, warn};

use super::shard::PresenceShard;
use super::{post, Inbound};
use crate::store::{PendingContact, Records};
use crate::xmpp::connection::Outbox;
use crate::xmpp::jid::Jid;
use crate::xmpp::moe::{
    self, Broadcast, Exchanges, GroupOp, IqPayload, MessagePayload, MoeError, Request,
};
use crate::xmpp::private;
use crate::xmpp::roster;
use crate::xmpp::stanza::{error_reply, iq_result, StanzaError};
use crate::xmpp::subscription::Subscription;
use crate::xmpp::xml::{Element, CLIENT_NS};

/// MOE-MP state of one shard.
#[derive(Default)]
pub struct MoeState {
    /// Open exchanges of this shard's users as requesters.
    exchanges: Exchanges,
    /// (user, resource) that asked for settings pushes.
    push: HashSet<(String, String)>,
    seq: u64,
}

/// A MOE-MP iq of a bound resource for its own server (groups, contact add/response).
#[derive(Message)]
#[rtype(result = "()")]
pub struct MoeIq {
    /// The sender's full JID.
    pub from: Jid,
    /// The iq.
    pub iq: Element,
    /// Its parsed payload.
    pub payload: IqPayload,
    /// Where the answer goes.
    pub outbox: Outbox,
}

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

/// A contact-add request arrives at the contact's shard (docs/moe-mp.md §4).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ContactRequestIn {
    /// Local part of the contact.
    pub contact: String,
    /// Bare JID of the requester.
    pub requester: Jid,
    /// What the requester asked for its item.
    pub wish: PendingContact,
}

/// The contact answered a contact-add request; handled in the requester's shard.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ContactAnswered {
    /// Local part of the requester.
    pub requester: String,
    /// Bare JID of the contact.
    pub contact: Jid,
    /// Accepted or refused.
    pub accepted: bool,
    /// What the requester asked for its item.
    pub wish: PendingContact,
    /// The contact's current presence, to deliver after the roster items exist.
    pub presence: Vec<Bytes>,
}

impl PresenceShard {
    fn moe_push_id(&mut self) -> String {
        self.moe.seq += 1;
        format!("moe-push{}-{}", self.index, self.moe.seq)
    }

    fn stored_settings(&self, user: &str) -> Element {
        match self.hub.store.private_get(user, &moe::settings_key()) {
            Ok(Some(xml)) => private::parse_stored(&xml).unwrap_or_else(moe::empty_settings),
            Ok(None) => moe::empty_settings(),
            Err(e) => {
                warn!(shard = self.index, %user, error = %e, "settings read failed");
                moe::empty_settings()
            }
        }
    }

    /// Initial presence carried `<moe settings='push'/>`: remember it and push the stored
    /// settings to that resource at once (docs/moe-mp.md §1).
    pub(super) fn moe_push_requested(&mut self, user: &str, resource: &str) {
        self.moe
            .push
            .insert((user.to_string(), resource.to_string()));
        let settings = self.stored_settings(user);
        self.push_settings(user, resource, settings);
    }

    fn push_settings(&mut self, user: &str, resource: &str, settings: Element) {
        let id = self.moe_push_id();
        let to = self.bare(user).with_resource(resource);
        let iq = Element::new("iq", CLIENT_NS)
            .with_attr("type", "set")
            .with_attr("id", id)
            .with_attr("to", to.to_string())
            .with_child(settings);
        self.deliver_full(&to, &iq);
    }

    /// A resource went away: forget its push flag.
    pub(super) fn moe_unbound(&mut self, user: &str, resource: &str) {
        self.moe
            .push
            .remove(&(user.to_string(), resource.to_string()));
    }

    /// Drops exchanges past their expiry (run periodically).
    pub(super) fn moe_expire(&mut self) {
        let n = self.moe.exchanges.expire(Instant::now());
        if n > 0 {
            debug!(shard = self.index, expired = n, "MOE-MP exchanges expired");
        }
    }

    /// An answer (work list, accept, decline) for one of this shard's requesters, checked
    /// against its record before delivery; false when it was refused (the sender got the
    /// error).
    pub(super) fn moe_answer_allowed(&mut self, to: &Jid, stanza: &Element) -> bool {
        // Requests were checked in the requester's shard (and broadcast offers are ours).
        let is_answer = stanza.elements().any(|c| {
            c.ns == moe::NS && matches!(c.name.as_str(), "worklist" | "accept" | "decline")
        });
        if !is_answer {
            return true;
        }
        let max = self.hub.settings.limits.moe_max_broadcast;
        let answer = match moe::message_payload(stanza, max) {
            Ok(Some(MessagePayload::Answer(a))) => a,
            Ok(_) => return true,
            Err(e) => return self.moe_refuse(stanza, e),
        };
        let responder = stanza
            .attr("from")
            .and_then(|f| Jid::parse(f).ok())
            .map(|j| j.to_bare().to_string())
            .unwrap_or_default();
        if to.to_bare() != *answer.requester() {
            let e = MoeError::InvalidPayload("an answer goes to its requester".into());
            return self.moe_refuse(stanza, e);
        }
        match self
            .moe
            .exchanges
            .answer(&responder, &answer, Instant::now())
        {
            Ok(_) => true,
            Err(e) => self.moe_refuse(stanza, e),
        }
    }

    fn moe_refuse(&mut self, stanza: &Element, e: MoeError) -> bool {
        info!(shard = self.index, error = %e, "MOE-MP stanza refused");
        let reply = e.reply_to(stanza);
        if let Some(to) = reply.attr("to").and_then(|t| Jid::parse(t).ok()) {
            self.deliver_full(&to, &reply);
        }
        false
    }

    fn moe_out(&mut self, msg: MoeOut) {
        let MoeOut {
            from,
            stanza,
            payload,
            outbox,
        } = msg;
        let requester = from.to_bare().to_string();
        let ttl = Duration::from_secs(self.hub.settings.limits.moe_exchange_ttl_s);
        let refuse = |e: MoeError| {
            outbox.send_element(&e.reply_to(&stanza));
        };
        match payload {
            MessagePayload::Request(req) => {
                let Some(to) = stanza.attr("to").and_then(|t| Jid::parse(t).ok()) else {
                    return refuse(MoeError::InvalidPayload("a request needs a 'to'".into()));
                };
                let Some(addressee) = self.local_account(&to) else {
                    outbox.send_element(&error_reply(&stanza, StanzaError::ItemNotFound, None));
                    return;
                };
                if !self.is_available(&addressee) {
                    // Requests carry no body and are not stored offline: say so at once.
                    let text = format!("{to} is not online");
                    let err = error_reply(&stanza, StanzaError::ServiceUnavailable, Some(&text));
                    outbox.send_element(&err);
                    return;
                }
                if let Err(e) = self.moe.exchanges.open(
                    &requester,
                    req.id(),
                    &format!("{addressee}@{}", self.domain()),
                    req.kind(),
                    offered(&req),
                    Instant::now(),
                    ttl,
                ) {
                    return refuse(e);
                }
                post(
                    self.hub.shard(&addressee),
                    Inbound {
                        to,
                        stanza: stanza.clone(),
                    },
                );
            }
            MessagePayload::Broadcast(b) => self.moe_broadcast(&from, &stanza, b, &outbox),
            MessagePayload::Answer(_) => {} // answers are routed as messages
        }
    }

    /// docs/moe-mp.md §2.4: one offer per addressee, each its own exchange.
    fn moe_broadcast(&mut self, from: &Jid, stanza: &Element, b: Broadcast, outbox: &Outbox) {
        let requester = from.to_bare().to_string();
        let ttl = Duration::from_secs(self.hub.settings.limits.moe_exchange_ttl_s);
        let offer = Request::Offer {
            id: b.id.clone(),
            files: b.files.clone(),
        };
        for to in &b.to {
            let Some(addressee) = self.local_account(to) else {
                let text = format!("no user {to}");
                outbox.send_element(&error_reply(stanza, StanzaError::ItemNotFound, Some(&text)));
                continue;
            };
            if !self.is_available(&addressee) {
                let text = format!("{to} is not online");
                let err = error_reply(stanza, StanzaError::ServiceUnavailable, Some(&text));
                outbox.send_element(&err);
                continue;
            }
            let bare = format!("{addressee}@{}", self.domain());
            let id = format!("{}/{bare}", b.id);
            if let Err(e) = self.moe.exchanges.open(
                &requester,
                &id,
                &bare,
                moe::Kind::Offer,
                offered(&offer),
                Instant::now(),
                ttl,
            ) {
                outbox.send_element(&e.reply_to(stanza));
                continue;
            }
            let mut msg = Element::new("message", CLIENT_NS)
                .with_attr("from", from.to_string())
                .with_attr("to", bare.as_str())
                .with_child(offer.with_id(&id).to_element());
            if let Some(mid) = stanza.attr("id") {
                msg.set_attr("id", mid);
            }
            post(
                self.hub.shard(&addressee),
                Inbound {
                    to: Jid::bare(&addressee, self.domain()),
                    stanza: msg,
                },
            );
        }
    }

    /// Whether `user` has an available resource (a MOE request needs someone to answer it).
    fn is_available(&self, user: &str) -> bool {
        super::routes::available(&self.hub.routes.get(user))
            .next()
            .is_some()
    }

    /// The local part of `jid` when it names an account of this domain.
    fn local_account(&self, jid: &Jid) -> Option<String> {
        let user = jid.local()?.to_string();
        (jid.domain() == self.domain() && self.user_exists(&user)).then_some(user)
    }

    fn moe_iq(&mut self, msg: MoeIq) {
        let MoeIq {
            from,
            iq,
            payload,
            outbox,
        } = msg;
        let Some(user) = from.local().map(str::to_string) else {
            return;
        };
        let result = match payload {
            IqPayload::SettingsGet => Ok(Some(self.stored_settings(&user))),
            IqPayload::Groups(op) => self.groups_op(&user, op),
            IqPayload::AddContact(add) => self.add_contact(&user, add).map(|()| None),
            IqPayload::ContactResponse(r) => self.contact_response(&user, r).map(|()| None),
        };
        match result {
            Ok(payload) => outbox.send_element(&iq_result(&iq, payload)),
            Err(Refusal::Moe(e)) => outbox.send_element(&e.reply_to(&iq)),
            Err(Refusal::Stanza(err, text)) => {
                outbox.send_element(&error_reply(&iq, err, text.as_deref()))
            }
        };
    }

    /// docs/moe-mp.md §3.
    fn groups_op(&mut self, user: &str, op: GroupOp) -> Result<Option<Element>, Refusal> {
        let mut r = self.roster(user);
        match op {
            GroupOp::List => {
                let all = r.all_groups();
                Ok(Some(moe::groups_result(all.iter().map(String::as_str))))
            }
            GroupOp::Create(name) => {
                if r.all_groups().contains(&name) {
                    return Err(Refusal::Moe(MoeError::GroupExists(name)));
                }
                r.groups.insert(name);
                self.save(user, r)?;
                Ok(None)
            }
            GroupOp::Rename { name, to } => {
                if !r.all_groups().contains(&name) {
                    return Err(Refusal::Moe(MoeError::UnknownGroup(name)));
                }
                let mut changed = Vec::new();
                for item in r.items.values_mut() {
                    if item.groups.contains(&name) {
                        item.groups.retain(|g| g != &name);
                        if !item.groups.contains(&to) {
                            item.groups.push(to.clone());
                        }
                        changed.push(roster::item_element(item));
                    }
                }
                if r.groups.remove(&name) {
                    r.groups.insert(to);
                }
                self.save(user, r)?;
                for item in changed {
                    self.push_item(user, item); // one push per changed item (RFC 6121 §2.1.6)
                }
                Ok(None)
            }
            GroupOp::Delete(name) => {
                if !r.all_groups().contains(&name) {
                    return Err(Refusal::Moe(MoeError::UnknownGroup(name)));
                }
                let members: Vec<String> = r
                    .items
                    .values()
                    .filter(|i| i.groups.contains(&name))
                    .map(|i| i.jid.clone())
                    .collect();
                if r.groups.remove(&name) {
                    self.save(user, r)?;
                }
                for jid in members {
                    if let Ok(jid) = Jid::parse(&jid) {
                        if !self.remove_contact(user, &jid) {
                            return Err(Refusal::Stanza(StanzaError::InternalServerError, None));
                        }
                    }
                }
                Ok(None)
            }
        }
    }

    fn save(&mut self, user: &str, r: crate::store::Roster) -> Result<(), Refusal> {
        if self.save_roster(user, r) {
            Ok(())
        } else {
            Err(Refusal::Stanza(StanzaError::InternalServerError, None))
        }
    }

    /// docs/moe-mp.md §4, the requester's side.
    fn add_contact(&mut self, user: &str, add: moe::AddContact) -> Result<(), Refusal> {
        let Some(contact) = self.local_account(&add.jid) else {
            return Err(Refusal::Stanza(
                StanzaError::ItemNotFound,
                Some(format!("no user {}", add.jid)),
            ));
        };
        if contact == user {
            return Err(Refusal::Stanza(
                StanzaError::NotAllowed,
                Some("cannot add yourself".into()),
            ));
        }
        post(
            self.hub.shard(&contact),
            ContactRequestIn {
                contact,
                requester: self.bare(user),
                wish: PendingContact {
                    name: add.name,
                    group: add.group,
                },
            },
        );
        Ok(())
    }

    /// docs/moe-mp.md §4, the contact's answer.
    fn contact_response(&mut self, user: &str, resp: moe::ContactResponse) -> Result<(), Refusal> {
        let key = resp.jid.to_bare().to_string();
        let mut r = self.roster(user);
        let Some(wish) = r.contact_requests.remove(&key) else {
            return Err(Refusal::Moe(MoeError::UnknownRequest));
        };
        let Some(requester) = resp.jid.local().map(str::to_string) else {
            return Err(Refusal::Moe(MoeError::UnknownRequest));
        };
        let mut presence = Vec::new();
        if resp.accept {
            let item = r
                .items
                .entry(key.clone())
                .or_insert_with(|| crate::store::RosterItem::new(key.clone()));
            item.subscription = Subscription::Both;
            item.ask = false;
            r.pending_in.remove(&key);
            let el = roster::item_element(item);
            self.save(user, r)?;
            self.push_item(user, el);
            presence =
                self.follow_up_presence(user, crate::xmpp::subscription::SubKind::Subscribed);
        } else {
            self.save(user, r)?;
        }
        post(
            self.hub.shard(&requester),
            ContactAnswered {
                requester,
                contact: self.bare(user),
                accepted: resp.accept,
                wish,
                presence,
            },
        );
        Ok(())
    }

    /// Contact-add requests that waited for the user, delivered at its initial presence.
    pub(super) fn moe_pending_requests(&self, user: &str, outbox: &Outbox) {
        let r = self.roster(user);
        for (jid, wish) in &r.contact_requests {
            outbox.send_element(&self.contact_request_message(user, jid, wish));
        }
    }

    fn contact_request_message(
        &self,
        user: &str,
        requester: &str,
        wish: &PendingContact,
    ) -> Element {
        Element::new("message", CLIENT_NS)
            .with_attr("from", self.domain())
            .with_attr("to", self.bare(user).to_string())
            .with_attr("id", format!("moe-c-{}", crate::sip::message::new_tag()))
            .with_child(moe::contact_request(requester, wish.name.as_deref()))
    }
}

/// Why a MOE iq was refused.
enum Refusal {
    Moe(MoeError),
    Stanza(StanzaError, Option<String>),
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

impl Handler<MoeIq> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: MoeIq, _: &mut Context<Self>) {
        self.moe_iq(msg);
    }
}

impl Handler<MoeOut> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: MoeOut, _: &mut Context<Self>) {
        self.moe_out(msg);
    }
}

impl Handler<SettingsSaved> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: SettingsSaved, _: &mut Context<Self>) {
        let targets: Vec<String> = self
            .moe
            .push
            .iter()
            .filter(|(u, r)| *u == msg.user && *r != msg.resource)
            .map(|(_, r)| r.clone())
            .collect();
        for resource in targets {
            self.push_settings(&msg.user, &resource, msg.settings.clone());
        }
    }
}

impl Handler<ContactRequestIn> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: ContactRequestIn, _: &mut Context<Self>) {
        let requester = msg.requester.to_string();
        let mut r = self.roster(&msg.contact);
        r.contact_requests
            .insert(requester.clone(), msg.wish.clone());
        if !self.save_roster(&msg.contact, r) {
            return;
        }
        // Delivered now to available resources, else at the next initial presence.
        let el = self.contact_request_message(&msg.contact, &requester, &msg.wish);
        self.deliver_to_available(&msg.contact, &el);
    }
}

impl Handler<ContactAnswered> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: ContactAnswered, _: &mut Context<Self>) {
        let user = msg.requester;
        let contact = msg.contact.to_string();
        if !msg.accepted {
            // The requester is told now, or at its next login (stored like a message).
            let note = Element::new("message", CLIENT_NS)
                .with_attr("from", self.domain())
                .with_attr("to", self.bare(&user).to_string())
                .with_child(
                    Element::new("body", CLIENT_NS)
                        .with_text(format!("{contact} did not accept the contact request")),
                )
                .with_child(moe::contact_refused(&contact));
            let to = self.bare(&user);
            self.inbound(to, note);
            return;
        }
        let mut r = self.roster(&user);
        let item = r
            .items
            .entry(contact.clone())
            .or_insert_with(|| crate::store::RosterItem::new(contact.clone()));
        item.subscription = Subscription::Both;
        item.ask = false;
        if msg.wish.name.is_some() {
            item.name = msg.wish.name.clone();
        }
        if let Some(g) = &msg.wish.group {
            if !item.groups.contains(g) {
                item.groups.push(g.clone());
            }
        }
        let el = roster::item_element(item);
        r.pending_in.remove(&contact);
        if !self.save_roster(&user, r) {
            return;
        }
        self.push_item(&user, el);
        // Presence both ways, as after a mutual subscription (RFC 6121 §3.1.5).
        if let Some(c) = msg.contact.local() {
            for p in self.follow_up_presence(&user, crate::xmpp::subscription::SubKind::Subscribed)
            {
                self.fan_out_to_user(&p, c);
            }
        }
        for p in &msg.presence {
            self.fan_out_to_user(p, &user);
        }
    }
}
