//! One presence shard: the rosters, subscription states and resources of its users, and the
//! server rules of RFC 6121 — roster management (§2), subscriptions (§3, Appendix A),
//! presence broadcast, probes and directed presence (§4), message and iq delivery (§8.5),
//! offline storage (XEP-0160) with delay stamps (XEP-0203).

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use tracing::{debug, info, warn};

use super::routes::{available, message_targets, ResourceRoute};
use super::{
    post, AccountRemoved, Bind, HubInner, Inbound, PresenceFromClient, RosterIq, SubscriptionIn,
    Unbind,
};
use crate::config::PresencePolicy;
use crate::store::{PendingIn, Records, Roster, RosterItem};
use crate::xmpp::jid::Jid;
use crate::xmpp::roster::{self, RosterSet};
use crate::xmpp::stanza::{
    error_reply, iq_payload, iq_result, presence_priority, IqType, MessageType, PresenceType,
    StanzaError, StreamErrorCondition,
};
use crate::xmpp::subscription::{SubKind, Subscription};
use crate::xmpp::xml::{escape_attr, Element, CLIENT_NS};

/// What became of a message for a local user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    /// Handed to at least one XMPP resource or SIP user agent.
    Delivered,
    /// Kept for later (XEP-0160).
    Stored,
    /// Bounced (unknown user, storage full, store error).
    Failed,
}

/// State kept for a user with at least one bound resource.
struct UserState {
    roster: Roster,
    /// Per resource, JIDs that got directed presence and are not subscribed (RFC 6121 §4.6).
    directed: HashMap<String, Vec<Jid>>,
}

/// The shard actor.
pub struct PresenceShard {
    pub(super) index: usize,
    pub(super) hub: Arc<HubInner>,
    users: HashMap<String, UserState>,
    push_seq: u64,
    /// SIP transactions, dialogs, publications and registrations of this shard's users.
    pub(super) sip: super::sip::SipState,
    /// MOE-MP exchanges and settings-push flags (docs/moe-mp.md).
    pub(super) moe: super::moe::MoeState,
    /// Back-end subscriptions to this shard's remote presentities (DESIGN.md §8).
    pub(super) backend: super::backend::BackendState,
    /// Record hand-overs of users moving in and out (DESIGN.md §7).
    pub(super) handover: super::handover::HandoverState,
}

impl Actor for PresenceShard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(MOE_EXPIRY_SWEEP, |act, _| act.moe_expire());
    }
}

/// How often expired MOE-MP exchanges are swept.
const MOE_EXPIRY_SWEEP: std::time::Duration = std::time::Duration::from_secs(10);

impl PresenceShard {
    pub(crate) fn new(index: usize, hub: Arc<HubInner>, ctx: &mut Context<Self>) -> Self {
        ctx.set_mailbox_capacity(hub.settings.mailbox);
        PresenceShard {
            index,
            hub,
            users: HashMap::new(),
            push_seq: 0,
            sip: super::sip::SipState::default(),
            moe: super::moe::MoeState::default(),
            backend: super::backend::BackendState::default(),
            handover: super::handover::HandoverState::default(),
        }
    }

    pub(super) fn domain(&self) -> &str {
        &self.hub.settings.domain
    }

    pub(super) fn bare(&self, user: &str) -> Jid {
        Jid::bare(user, self.domain())
    }

    pub(super) fn resources(&self, user: &str) -> Vec<ResourceRoute> {
        self.hub.routes.get(user).as_ref().clone()
    }

    pub(super) fn user_exists(&self, user: &str) -> bool {
        if self.remote_home(user).is_some() {
            return true; // its home (or the primary) knows, and answers for it
        }
        if self.users.contains_key(user) || !self.hub.routes.get(user).is_empty() {
            return true;
        }
        match self.hub.store.has_account(user) {
            Ok(known) => known,
            Err(e) => {
                warn!(shard = self.index, %user, error = %e, "store read failed");
                false
            }
        }
    }

    /// The user's roster: the cached copy while online, else from the store.
    pub(super) fn roster(&self, user: &str) -> Roster {
        if let Some(u) = self.users.get(user) {
            return u.roster.clone();
        }
        self.hub.store.roster(user).unwrap_or_else(|e| {
            warn!(shard = self.index, %user, error = %e, "roster read failed");
            Roster::default()
        })
    }

    /// Writes the roster to the store, then the cache, and through to the primary
    /// (DESIGN.md §3).
    pub(super) fn save_roster(&mut self, user: &str, roster: Roster) -> bool {
        self.save_roster_acked(user, roster, None)
    }

    /// [`Self::save_roster`]; `ack` (an outbox with the result and the error to send) is
    /// answered only once the primary has the change (at once off a cluster).
    pub(super) fn save_roster_acked(
        &mut self,
        user: &str,
        roster: Roster,
        ack: Option<(crate::xmpp::connection::Outbox, Element, Element)>,
    ) -> bool {
        if let Err(e) = self.hub.store.put_roster(user, &roster) {
            warn!(shard = self.index, %user, error = %e, "roster write failed");
            return false;
        }
        if let Some(u) = self.users.get_mut(user) {
            let before = std::mem::replace(&mut u.roster, roster);
            self.rewatch(user, &before);
        }
        self.sip_reauthorize(user);
        self.write_through(user, ack);
        true
    }

    /// Remote contacts whose presence `user` sees (`to`/`both`, RFC 6121 §3).
    fn watched_remote(&self, roster: &Roster) -> std::collections::BTreeSet<String> {
        roster
            .items
            .iter()
            .filter(|(_, i)| matches!(i.subscription, Subscription::To | Subscription::Both))
            .filter_map(|(jid, _)| local_of(jid, self.domain()))
            .filter(|c| self.remote_home(c).is_some())
            .map(str::to_string)
            .collect()
    }

    /// This shard's users with an available resource who see `contact` (`to`/`both`).
    pub(super) fn online_watchers_of(&self, contact: &str) -> Vec<String> {
        let jid = format!("{contact}@{}", self.domain());
        self.users
            .iter()
            .filter(|(u, _)| self.has_session_available(u))
            .filter(|(_, s)| {
                s.roster.items.get(&jid).is_some_and(|i| {
                    matches!(i.subscription, Subscription::To | Subscription::Both)
                })
            })
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Whether `user` has an available XMPP resource here.
    fn has_session_available(&self, user: &str) -> bool {
        available(&self.hub.routes.get(user)).any(|r| !r.sip)
    }

    /// Starts or stops watching remote contacts as `user`'s roster changed from `before`.
    fn rewatch(&self, user: &str, before: &Roster) {
        if !self.has_session_available(user) {
            return;
        }
        let old = self.watched_remote(before);
        let new = match self.users.get(user) {
            Some(u) => self.watched_remote(&u.roster),
            None => return,
        };
        for c in new.difference(&old) {
            self.watch_remote(c, user, true);
        }
        for c in old.difference(&new) {
            self.watch_remote(c, user, false);
        }
    }

    /// Tells the shard of remote `contact` that `user` starts or stops watching it.
    pub(super) fn watch_remote(&self, contact: &str, user: &str, on: bool) {
        post(
            self.hub.shard(contact),
            super::backend::BackendWatch {
                presentity: contact.to_string(),
                watcher: user.to_string(),
                on,
            },
        );
    }

    /// Sends `user`'s record to the primary (a member of a cluster only), then `ack`.
    pub(super) fn write_through(
        &self,
        user: &str,
        ack: Option<(crate::xmpp::connection::Outbox, Element, Element)>,
    ) {
        super::write_through(&self.hub, user, ack);
    }

    pub(super) fn next_push_id(&mut self) -> String {
        self.push_seq += 1;
        format!("push{}-{}", self.index, self.push_seq)
    }

    /// Roster push to every interested resource (RFC 6121 §2.1.6).
    pub(super) fn push_item(&mut self, user: &str, item: Element) {
        let bare = self.bare(user);
        for r in self.resources(user).iter().filter(|r| r.interested) {
            let id = self.next_push_id();
            let to = bare.with_resource(&r.resource).to_string();
            r.outbox.send_element(&roster::push(&to, &id, item.clone()));
        }
    }

    pub(super) fn push_state(&mut self, user: &str, roster: &Roster, contact: &str) {
        match roster.items.get(contact) {
            Some(item) => self.push_item(user, roster::item_element(item)),
            None => self.push_item(user, roster::removed_item_element(contact)),
        }
    }

    /// Sends `el` (whose `to` is already right) to the full JID `to` if it is bound here or on
    /// any shard of this node.
    pub(super) fn deliver_full(&mut self, to: &Jid, el: &Element) -> bool {
        let (Some(user), Some(res)) = (to.local(), to.resource()) else {
            return false;
        };
        if to.domain() != self.domain() {
            return false;
        }
        if let Some(home) = self.remote_home(user) {
            let user = user.to_string();
            self.relay_bytes(&home, &user, wire(el), None);
            return true;
        }
        match self.hub.routes.get(user).iter().find(|r| r.resource == res) {
            Some(r) => r.outbox.send_element(el),
            None => false,
        }
    }

    /// Error reply to the sender of `stanza` (RFC 6120 §8.3).
    pub(super) fn bounce(&mut self, stanza: &Element, err: StanzaError, text: Option<&str>) {
        if stanza.attr("type") == Some("error") {
            return; // never answer an error with an error (RFC 6120 §8.3.1)
        }
        let reply = error_reply(stanza, err, text);
        if let Some(to) = reply.attr("to").and_then(|t| Jid::parse(t).ok()) {
            self.deliver_full(&to, &reply);
        }
    }

    /// Presence bytes (`from` set, no `to`) delivered to all available resources of `user`,
    /// stamped `to` = the user's bare JID (RFC 6121 §4.2.2).
    pub(super) fn fan_out_to_user(&self, presence: &Bytes, user: &str) {
        let routes = self.hub.routes.get(user);
        if routes.iter().all(|r| r.presence.is_none()) {
            return;
        }
        let to = format!("{user}@{}", self.domain());
        let bytes = with_to(presence, &to);
        for r in available(&routes) {
            r.outbox.send(bytes.clone());
        }
    }

    /// Broadcast of `presence` from `user`: contacts with a `from`/`both` subscription and
    /// the user's own available resources (RFC 6121 §4.2.2, §4.4.2, §4.5.2).
    pub(super) fn broadcast(&self, user: &str, presence: &Bytes) {
        let stored;
        let roster = match self.users.get(user) {
            Some(state) => &state.roster,
            None => {
                // A SIP-only presentity (RFC 8048): no cached roster, read the stored one.
                stored = self.roster(user);
                &stored
            }
        };
        for (jid, item) in &roster.items {
            if matches!(item.subscription, Subscription::From | Subscription::Both) {
                if let Some(contact) = local_of(jid, self.domain()) {
                    self.fan_out_to_user(presence, contact);
                }
            }
        }
        self.fan_out_to_user(presence, user);
    }

    pub(super) fn set_route<F: FnOnce(&mut ResourceRoute)>(
        &self,
        user: &str,
        resource: &str,
        f: F,
    ) -> Option<ResourceRoute> {
        let mut routes = self.resources(user);
        let r = routes.iter_mut().find(|r| r.resource == resource)?;
        f(r);
        let updated = r.clone();
        self.hub.routes.set(user, routes);
        Some(updated)
    }

    /// Available presence from a resource: update the routing table, broadcast, and on
    /// initial presence answer the probes and deliver what waited (RFC 6121 §4.2, §3.1.3).
    pub(super) fn available(&mut self, from: &Jid, stanza: Element) {
        let (Some(user), Some(res)) = (from.local(), from.resource()) else {
            return;
        };
        let priority = presence_priority(&stanza);
        let bytes = wire(&stanza);
        let before = self.resources(user).into_iter().find(|r| r.resource == res);
        let Some(before) = before else { return };
        let initial = before.presence.is_none();
        self.set_route(user, res, |r| {
            r.presence = Some(bytes.clone());
            r.priority = priority;
        });
        self.broadcast(user, &bytes);
        self.xmpp_presence_changed(user);
        if !initial {
            return;
        }
        let outbox = before.outbox;
        let full = from.to_string();
        let roster = self.roster(user);
        // Probes, answered locally (RFC 6121 §4.3): contacts this user is subscribed to;
        // contacts homed on other nodes answer through a back-end subscription (§8).
        for (jid, item) in &roster.items {
            if !matches!(item.subscription, Subscription::To | Subscription::Both) {
                continue;
            }
            if let Some(contact) = local_of(jid, self.domain()) {
                if self.remote_home(contact).is_some() {
                    // Only the first available resource starts watching.
                    if !self.is_other_available(user, res) {
                        self.watch_remote(contact, user, true);
                    } else {
                        for r in available(&self.hub.routes.get(contact)) {
                            if let Some(p) = &r.presence {
                                outbox.send(with_to(p, &full));
                            }
                        }
                    }
                    continue;
                }
                for r in available(&self.hub.routes.get(contact)) {
                    if let Some(p) = &r.presence {
                        outbox.send(with_to(p, &full));
                    }
                }
            }
        }
        // The user's other available resources (RFC 6121 §4.2.2).
        for r in available(&self.hub.routes.get(user)) {
            if r.resource != res {
                if let Some(p) = &r.presence {
                    outbox.send(with_to(p, &full));
                }
            }
        }
        // Subscription requests that waited (RFC 6121 §3.1.3).
        for (jid, pending) in &roster.pending_in {
            outbox.send_element(&self.pending_request(user, jid, pending));
        }
        // MOE-MP contact-add requests that waited (docs/moe-mp.md §4).
        self.moe_pending_requests(user, &outbox);
        // Offline messages (XEP-0160), only to a resource that takes bare-JID messages.
        if priority >= 0 {
            match self.hub.store.offline_take(user) {
                Ok(msgs) => {
                    for m in msgs {
                        outbox.send(Bytes::from(m.into_bytes()));
                    }
                }
                Err(e) => warn!(shard = self.index, %user, error = %e, "offline read failed"),
            }
        }
    }

    /// Whether `user` has an available XMPP resource other than `res`.
    fn is_other_available(&self, user: &str, res: &str) -> bool {
        available(&self.hub.routes.get(user)).any(|r| !r.sip && r.resource != res)
    }

    /// Unavailable presence from a resource (explicit or on disconnect): broadcast, and tell
    /// every JID that got directed presence (RFC 6121 §4.5.2, §4.6.3).
    pub(super) fn unavailable(&mut self, from: &Jid, stanza: Option<Element>) {
        let (Some(user), Some(res)) = (from.local(), from.resource()) else {
            return;
        };
        let mut was_available = false;
        self.set_route(user, res, |r| {
            was_available = r.presence.is_some();
            r.presence = None;
            r.priority = 0;
        });
        let stanza = stanza.unwrap_or_else(|| {
            Element::new("presence", CLIENT_NS)
                .with_attr("from", from.to_string())
                .with_attr("type", "unavailable")
        });
        let bytes = wire(&stanza);
        if was_available {
            self.broadcast(user, &bytes);
            self.xmpp_presence_changed(user);
            if !self.has_session_available(user) {
                // The last available resource went: stop watching remote contacts.
                for c in self.watched_remote(&self.roster(user)) {
                    self.watch_remote(&c, user, false);
                }
            }
        }
        let directed = self
            .users
            .get_mut(user)
            .and_then(|u| u.directed.remove(res))
            .unwrap_or_default();
        for target in directed {
            self.deliver_presence_to(&target, &bytes);
        }
    }

    /// Presence bytes to a JID: the resource for a full JID, all available ones for a bare.
    pub(super) fn deliver_presence_to(&mut self, target: &Jid, presence: &Bytes) {
        let Some(user) = target.local().filter(|_| target.domain() == self.domain()) else {
            return;
        };
        if let Some(home) = self.remote_home(user) {
            let user = user.to_string();
            self.relay_bytes(&home, &user, with_to(presence, &target.to_string()), None);
            return;
        }
        match target.resource() {
            Some(res) => {
                if let Some(r) = self.hub.routes.get(user).iter().find(|r| r.resource == res) {
                    r.outbox.send(with_to(presence, &target.to_string()));
                }
            }
            None => self.fan_out_to_user(presence, user),
        }
    }

    /// Presence with a `to` (RFC 6121 §4.6): directed presence, or a subscription stanza.
    pub(super) fn directed(&mut self, from: &Jid, to: Jid, ptype: PresenceType, stanza: Element) {
        let Some(user) = from.local() else { return };
        let Some(res) = from.resource() else { return };
        if to.domain() != self.domain() {
            self.bounce(
                &stanza,
                StanzaError::RemoteServerNotFound,
                Some("no server-to-server connections"),
            );
            return;
        }
        let Some(kind) = sub_kind(ptype) else {
            if ptype == PresenceType::Probe {
                return; // clients do not send probes (RFC 6121 §4.3)
            }
            // Directed available/unavailable/error presence.
            let mut s = stanza;
            s.remove_attr("to");
            let bytes = wire(&s);
            self.deliver_presence_to(&to, &bytes);
            let subscribed = self
                .users
                .get(user)
                .and_then(|u| u.roster.items.get(&to.to_bare().to_string()))
                .is_some_and(|i| matches!(i.subscription, Subscription::From | Subscription::Both));
            if let Some(u) = self.users.get_mut(user) {
                let list = u.directed.entry(res.to_string()).or_default();
                list.retain(|j| j != &to);
                if ptype == PresenceType::Available && !subscribed {
                    list.push(to);
                }
            }
            return;
        };
        self.outbound_subscription(user, to.to_bare(), kind, stanza);
    }

    /// A subscription stanza the user sends (RFC 6121 §3, Appendix A.2).
    pub(super) fn outbound_subscription(
        &mut self,
        user: &str,
        contact: Jid,
        kind: SubKind,
        mut stanza: Element,
    ) {
        let Some(contact_user) = contact.local().map(str::to_string) else {
            return; // subscriptions to a server JID are meaningless here
        };
        if contact_user == user {
            return; // a user is always subscribed to itself
        }
        let contact_s = contact.to_string();
        let mut roster = self.roster(user);
        let before = roster.state(&contact_s);
        let creates = !roster.items.contains_key(&contact_s);
        let t = before.outbound(kind);
        if t.state != before {
            if creates
                && t.state.sub == Subscription::None
                && t.state.pending_out
                && roster.items.len() >= self.hub.settings.max_roster_items
            {
                self.bounce(&stanza, StanzaError::NotAllowed, Some("roster is full"));
                return;
            }
            roster.apply_state(&contact_s, t.state);
            if self.save_roster(user, roster.clone()) {
                self.push_state(user, &roster, &contact_s);
            }
        }
        if !t.route {
            return;
        }
        let bare = self.bare(user);
        if !self.user_exists(&contact_user) {
            if kind == SubKind::Subscribe {
                // The contact does not exist: answer as its server would (RFC 6121 §3.1.3).
                let reply = Element::new("presence", CLIENT_NS)
                    .with_attr("from", contact_s.as_str())
                    .with_attr("to", bare.to_string())
                    .with_attr("type", "unsubscribed");
                post(
                    self.hub.shard(user),
                    SubscriptionIn {
                        to: user.to_string(),
                        from: contact.clone(),
                        kind: SubKind::Unsubscribed,
                        stanza: reply,
                        then_presence: Vec::new(),
                    },
                );
            }
            return;
        }
        stanza.set_attr("from", bare.to_string());
        stanza.set_attr("to", contact_s.as_str());
        let then_presence = self.follow_up_presence(user, kind);
        self.send_subscription(SubscriptionIn {
            to: contact_user.clone(),
            from: bare,
            kind,
            stanza,
            then_presence,
        });
    }

    /// A subscription stanza to its addressee's shard, or to its home node (DESIGN.md §8;
    /// there the follow-up presence comes through the back-end subscription instead).
    pub(super) fn send_subscription(&mut self, msg: SubscriptionIn) {
        match self.remote_home(&msg.to) {
            Some(home) => {
                let to = msg.to.clone();
                self.relay(&home, &to, &msg.stanza);
            }
            None => post(self.hub.shard(&msg.to), msg),
        }
    }

    /// What the contact sees of `user` after a subscription stanza of `kind` from `user`:
    /// its current presence after an approval (RFC 6121 §3.1.5), unavailable from each
    /// available resource after a cancellation (§3.2.2), nothing otherwise.
    pub(super) fn follow_up_presence(&self, user: &str, kind: SubKind) -> Vec<Bytes> {
        let routes = self.hub.routes.get(user);
        match kind {
            SubKind::Subscribed => available(&routes)
                .filter_map(|r| r.presence.clone())
                .collect(),
            SubKind::Unsubscribed => {
                let bare = self.bare(user);
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

    /// Unavailable presence from each of `user`'s available resources to `contact`.
    pub(super) fn send_unavailable(&self, user: &str, contact: &str) {
        for p in self.follow_up_presence(user, SubKind::Unsubscribed) {
            self.fan_out_to_user(&p, contact);
        }
    }

    pub(super) fn deliver_to_available(&self, user: &str, el: &Element) {
        let bytes = wire(el);
        for r in available(&self.hub.routes.get(user)) {
            r.outbox.send(bytes.clone());
        }
    }

    /// A message or iq for one of this shard's users (RFC 6121 §8.5).
    pub(super) fn inbound(&mut self, to: Jid, stanza: Element) -> Delivery {
        let Some(user) = to.local().map(str::to_string) else {
            return Delivery::Failed;
        };
        if let Some(home) = self.remote_home(&user) {
            self.relay(&home, &user, &stanza);
            return Delivery::Delivered;
        }
        if !self.user_exists(&user) {
            match stanza.name.as_str() {
                "message" | "iq" => self.bounce(&stanza, StanzaError::ServiceUnavailable, None),
                _ => {}
            }
            return Delivery::Failed;
        }
        // A MOE-MP answer from a user is checked against its exchange (docs/moe-mp.md §2);
        // the server's own MOE notices (from the domain) are not answers.
        let from_user = stanza
            .attr("from")
            .and_then(|f| Jid::parse(f).ok())
            .is_some_and(|j| j.local().is_some());
        if stanza.name == "message"
            && from_user
            && stanza.elements().any(|c| c.ns == crate::xmpp::moe::NS)
            && !self.moe_answer_allowed(&to, &stanza)
        {
            return Delivery::Failed;
        }
        let routes = self.hub.routes.get(&user);
        if let Some(res) = to.resource() {
            if let Some(r) = routes.iter().find(|r| r.resource == res) {
                if r.sip {
                    return match self.sip_deliver_message(&user, &stanza) {
                        true => Delivery::Delivered,
                        false => self.store_offline(&user, stanza),
                    };
                }
                r.outbox.send_element(&stanza);
                return Delivery::Delivered;
            }
        }
        if stanza.name == "iq" {
            // To a bare JID the server answers for the account; to an absent resource there
            // is no one to answer (RFC 6121 §8.5.1, §8.5.3.1).
            if matches!(IqType::of(&stanza), Some(IqType::Get | IqType::Set)) {
                self.bounce(&stanza, StanzaError::ServiceUnavailable, None);
            }
            return Delivery::Failed;
        }
        match MessageType::of(&stanza) {
            MessageType::Normal | MessageType::Chat => {
                let targets = message_targets(&routes);
                let mut delivered = false;
                let bytes = wire(&stanza);
                for r in targets.iter().filter(|r| !r.sip) {
                    delivered |= r.outbox.send(bytes.clone());
                }
                // SIP user agents of the user (RFC 8048 §4 pseudo-resources, or only a
                // registration) get the message as SIP MESSAGE (RFC 3428).
                if (targets.is_empty() || targets.iter().any(|r| r.sip))
                    && self.sip_deliver_message(&user, &stanza)
                {
                    delivered = true;
                }
                if delivered {
                    Delivery::Delivered
                } else {
                    self.store_offline(&user, stanza)
                }
            }
            MessageType::Headline => {
                let bytes = wire(&stanza);
                for r in available(&routes).filter(|r| r.priority >= 0 && !r.sip) {
                    r.outbox.send(bytes.clone());
                }
                Delivery::Delivered
            }
            MessageType::Groupchat => {
                self.bounce(&stanza, StanzaError::ServiceUnavailable, None);
                Delivery::Failed
            }
            MessageType::Error => Delivery::Failed,
        }
    }

    /// Keeps a message for an offline user (XEP-0160), stamped with XEP-0203 delay.
    pub(super) fn store_offline(&mut self, user: &str, mut stanza: Element) -> Delivery {
        if stanza.get_child("body", CLIENT_NS).is_none() {
            return Delivery::Delivered; // chat states and receipts without a body are not worth storing
        }
        stanza = stanza.with_child(
            Element::new("delay", "urn:xmpp:delay")
                .with_attr("from", self.domain())
                .with_attr("stamp", rfc3339_now()),
        );
        let mut bytes = Vec::with_capacity(256);
        stanza.write_to(&mut bytes, CLIENT_NS);
        let xml = String::from_utf8_lossy(&bytes);
        match self
            .hub
            .store
            .offline_push(user, &xml, self.hub.settings.max_offline_messages)
        {
            Ok(true) => {
                debug!(shard = self.index, %user, "stored offline message");
                Delivery::Stored
            }
            Ok(false) => {
                self.bounce(
                    &stanza,
                    StanzaError::ServiceUnavailable,
                    Some("offline storage full"),
                );
                Delivery::Failed
            }
            Err(e) => {
                warn!(shard = self.index, %user, error = %e, "offline write failed");
                self.bounce(&stanza, StanzaError::InternalServerError, None);
                Delivery::Failed
            }
        }
    }

    /// Removes `jid` from the roster of `user` (RFC 6121 §2.5): the item and any pending
    /// request go, interested resources get the `remove` push, and both subscription
    /// directions with the contact are cancelled (§2.5.2). False when the store failed.
    pub(super) fn remove_contact(&mut self, user: &str, jid: &Jid) -> bool {
        let key = jid.to_string();
        let mut roster = self.roster(user);
        let state = roster.state(&key);
        roster.items.remove(&key);
        roster.pending_in.remove(&key);
        if !self.save_roster(user, roster) {
            return false;
        }
        self.push_item(user, roster::removed_item_element(&key));
        if let Some(contact) = jid.local().filter(|_| jid.domain() == self.domain()) {
            let bare = self.bare(user);
            let mut kinds = Vec::new();
            if matches!(state.sub, Subscription::To | Subscription::Both) || state.pending_out {
                kinds.push(SubKind::Unsubscribe);
            }
            if matches!(state.sub, Subscription::From | Subscription::Both) || state.pending_in {
                kinds.push(SubKind::Unsubscribed);
            }
            for kind in kinds {
                let stanza = Element::new("presence", CLIENT_NS)
                    .with_attr("from", bare.to_string())
                    .with_attr("to", key.as_str())
                    .with_attr("type", kind.as_str());
                let then_presence = self.follow_up_presence(user, kind);
                self.send_subscription(SubscriptionIn {
                    to: contact.to_string(),
                    from: bare.clone(),
                    kind,
                    stanza,
                    then_presence,
                });
            }
        }
        true
    }

    pub(super) fn roster_iq(
        &mut self,
        from: Jid,
        iq: Element,
        outbox: crate::xmpp::connection::Outbox,
    ) {
        let Some(user) = from.local().map(str::to_string) else {
            return;
        };
        let res = from.resource().unwrap_or_default().to_string();
        let reply = |el: Element| {
            outbox.send_element(&el);
        };
        let Some(query) = iq_payload(&iq) else {
            return reply(error_reply(&iq, StanzaError::BadRequest, None));
        };
        match IqType::of(&iq) {
            Some(IqType::Get) => {
                self.set_route(&user, &res, |r| r.interested = true);
                let roster = self.roster(&user);
                let items = roster.items.values().map(roster::item_element);
                reply(iq_result(&iq, Some(roster::query(items))));
            }
            Some(IqType::Set) => match roster::parse_roster_set(query) {
                Err((err, text)) => reply(error_reply(&iq, err, Some(text))),
                Ok(RosterSet::Update { jid, name, groups }) => {
                    let key = jid.to_string();
                    if jid == self.bare(&user) {
                        return reply(error_reply(
                            &iq,
                            StanzaError::NotAllowed,
                            Some("cannot add yourself"),
                        ));
                    }
                    let mut roster = self.roster(&user);
                    if !roster.items.contains_key(&key)
                        && roster.items.len() >= self.hub.settings.max_roster_items
                    {
                        return reply(error_reply(
                            &iq,
                            StanzaError::NotAllowed,
                            Some("roster is full"),
                        ));
                    }
                    let item = roster
                        .items
                        .entry(key.clone())
                        .or_insert_with(|| RosterItem {
                            jid: key.clone(),
                            name: None,
                            subscription: Subscription::None,
                            ask: false,
                            groups: Vec::new(),
                        });
                    item.name = name;
                    item.groups = groups;
                    let el = roster::item_element(item);
                    // The result waits for the primary to have the change (DESIGN.md §3).
                    let ack = (outbox.clone(), iq_result(&iq, None), not_written(&iq));
                    if !self.save_roster_acked(&user, roster, Some(ack)) {
                        return reply(error_reply(&iq, StanzaError::InternalServerError, None));
                    }
                    self.push_item(&user, el);
                }
                Ok(RosterSet::Remove { jid }) => {
                    let key = jid.to_string();
                    let roster = self.roster(&user);
                    if !roster.items.contains_key(&key) && !roster.state(&key).pending_in {
                        return reply(error_reply(&iq, StanzaError::ItemNotFound, None));
                    }
                    if !self.remove_contact(&user, &jid) {
                        return reply(error_reply(&iq, StanzaError::InternalServerError, None));
                    }
                    let ack = (outbox.clone(), iq_result(&iq, None), not_written(&iq));
                    self.write_through(&user, Some(ack));
                }
            },
            _ => {}
        }
    }
}

impl Handler<Bind> for PresenceShard {
    type Result = Result<String, StanzaError>;

    fn handle(&mut self, msg: Bind, _: &mut Context<Self>) -> Self::Result {
        if let Some(home) = self.remote_home(&msg.user) {
            // Moved away between the session's placement check and its bind (DESIGN.md §7):
            // served there, like every session the move found here (RFC 6120 §4.9.3.19).
            info!(shard = self.index, user = %msg.user, to = %home.id, "bind refused: the user moved away");
            let bytes = crate::xmpp::stanza::see_other_host_bytes(&home.xmpp.to_string());
            msg.outbox.close_lingering(Bytes::from(bytes));
            return Err(StanzaError::ServiceUnavailable);
        }
        let resource = msg.resource.unwrap_or_else(generate_resource);
        if !self.users.contains_key(&msg.user) {
            let roster = match self.hub.store.roster(&msg.user) {
                Ok(r) => r,
                Err(e) => {
                    warn!(shard = self.index, user = %msg.user, error = %e, "roster read failed");
                    return Err(StanzaError::InternalServerError);
                }
            };
            self.users.insert(
                msg.user.clone(),
                UserState {
                    roster,
                    directed: HashMap::new(),
                },
            );
        }
        let routes = self.resources(&msg.user);
        if let Some(old) = routes
            .iter()
            .find(|r| r.resource == resource && !r.sip)
            .cloned()
        {
            // Newest wins (RFC 6120 §7.7.2.2): the old session ends with <conflict/>.
            let full = self.bare(&msg.user).with_resource(&resource);
            if old.presence.is_some() {
                self.unavailable(&full, None);
            }
            old.outbox.close_with_error(
                StreamErrorCondition::Conflict,
                Some("replaced by a new connection"),
            );
            let mut routes = self.resources(&msg.user);
            routes.retain(|r| r.resource != resource || r.sip);
            self.hub.routes.set(&msg.user, routes);
        }
        let mut routes = self.resources(&msg.user);
        // A SIP publication shown under this resource name (RFC 8048 §4) gives way to the
        // session, as it does when the session came first: with two routes of one name the
        // session's initial presence could land on the publication's and the session would
        // receive nothing. The publication shows again at its next change.
        if routes.iter().any(|r| r.sip && r.resource == resource) {
            routes.retain(|r| !(r.sip && r.resource == resource));
            if let Some(p) = self.sip.presentities.get_mut(&msg.user) {
                p.shown.remove(&resource);
            }
        }
        routes.push(ResourceRoute {
            resource: resource.clone(),
            session_id: msg.session_id,
            outbox: msg.outbox,
            presence: None,
            priority: 0,
            interested: false,
            sip: false,
        });
        self.hub.routes.set(&msg.user, routes);
        debug!(shard = self.index, user = %msg.user, %resource, "bound");
        Ok(resource)
    }
}

impl Handler<Unbind> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: Unbind, ctx: &mut Context<Self>) {
        self.unbind(msg);
        self.arm_sip_wake(ctx);
    }
}

impl PresenceShard {
    fn unbind(&mut self, msg: Unbind) {
        let routes = self.resources(&msg.user);
        let Some(route) = routes
            .iter()
            .find(|r| r.resource == msg.resource && r.session_id == msg.session_id && !r.sip)
        else {
            return; // already replaced by a newer session
        };
        let full = self.bare(&msg.user).with_resource(&msg.resource);
        let had_directed = self
            .users
            .get(&msg.user)
            .is_some_and(|u| u.directed.contains_key(&msg.resource));
        if route.presence.is_some() || had_directed {
            self.unavailable(&full, None);
        }
        let mut routes = self.resources(&msg.user);
        routes
            .retain(|r| !(r.resource == msg.resource && r.session_id == msg.session_id && !r.sip));
        let empty = routes.iter().all(|r| r.sip);
        self.moe_unbound(&msg.user, &msg.resource);
        self.hub.routes.set(&msg.user, routes);
        if empty {
            self.users.remove(&msg.user);
            self.sessions_ended(&msg.user);
        }
        debug!(shard = self.index, user = %msg.user, resource = %msg.resource, "unbound");
    }
}

impl Handler<PresenceFromClient> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: PresenceFromClient, ctx: &mut Context<Self>) {
        self.presence_from_client(msg);
        self.arm_sip_wake(ctx);
    }
}

impl PresenceShard {
    fn presence_from_client(&mut self, msg: PresenceFromClient) {
        let PresenceFromClient { from, mut stanza } = msg;
        let wants_settings = crate::xmpp::moe::take_push_flag(&mut stanza);
        let Some(ptype) = PresenceType::of(&stanza) else {
            return self.bounce(
                &stanza,
                StanzaError::BadRequest,
                Some("unknown presence type"),
            );
        };
        match stanza.attr("to").map(Jid::parse) {
            None => match ptype {
                PresenceType::Available => {
                    self.available(&from, stanza);
                    if let (true, Some(user), Some(res)) =
                        (wants_settings, from.local(), from.resource())
                    {
                        self.moe_push_requested(user, res);
                    }
                }
                PresenceType::Unavailable => self.unavailable(&from, Some(stanza)),
                _ => {} // subscription stanzas need a 'to'; probes/errors without one are dropped
            },
            Some(Ok(to)) => self.directed(&from, to, ptype, stanza),
            Some(Err(_)) => self.bounce(&stanza, StanzaError::JidMalformed, None),
        }
    }
}

impl Handler<RosterIq> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: RosterIq, ctx: &mut Context<Self>) {
        self.roster_iq_msg(msg);
        self.arm_sip_wake(ctx);
    }
}

impl PresenceShard {
    fn roster_iq_msg(&mut self, msg: RosterIq) {
        self.roster_iq(msg.from, msg.iq, msg.outbox);
    }
}

impl Handler<Inbound> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        self.inbound(msg.to, msg.stanza);
        self.arm_sip_wake(ctx);
    }
}

impl Handler<SubscriptionIn> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: SubscriptionIn, ctx: &mut Context<Self>) {
        self.subscription_in(msg);
        self.arm_sip_wake(ctx);
    }
}

impl PresenceShard {
    /// RFC 6121 Appendix A.3: the contact's server processes an inbound subscription stanza.
    pub(super) fn subscription_in(&mut self, msg: SubscriptionIn) {
        // The addressee is moving here and its old home's last changes are on the way.
        let Some(msg) = self.hold_for_handover(msg) else {
            return;
        };
        let SubscriptionIn {
            to,
            from,
            kind,
            stanza,
            then_presence,
        } = msg;
        if !self.user_exists(&to) {
            return;
        }
        if let Some(home) = self.remote_home(&to) {
            // The contact moved to another node while this waited in the mailbox (DESIGN.md
            // §7): its roster lives there now, and a change made here would never reach it
            // (a request kept here as pending-in would block every later one there).
            self.relay(&home, &to, &stanza);
            return;
        }
        let from_s = from.to_string();
        let mut roster = self.roster(&to);
        let before = roster.state(&from_s);
        if kind == SubKind::Subscribe
            && self.hub.settings.sip.presence_policy == PresencePolicy::Domain
            && from.domain() == self.domain()
            && from.local().is_some()
            && !matches!(before.sub, Subscription::From | Subscription::Both)
        {
            // presence_policy = "domain": any user of the domain may watch, so the server
            // approves on the contact's behalf (RFC 6121 §3.1.3 lets the contact's server
            // answer for it) instead of asking the contact.
            roster.apply_state(&from_s, before.inbound(kind).state);
            self.save_roster(&to, roster);
            let approval = Element::new("presence", CLIENT_NS)
                .with_attr("to", from_s.as_str())
                .with_attr("type", "subscribed");
            self.outbound_subscription(&to, from, SubKind::Subscribed, approval);
            return;
        }
        let t = before.inbound(kind);
        let request_kept = kind == SubKind::Subscribe && t.state.pending_in;
        if t.state != before || request_kept {
            let items_before = roster.items.get(&from_s).cloned();
            roster.apply_state(&from_s, t.state);
            if request_kept {
                // RFC 6121 §3.1.3: keep the request (and its status) for redelivery.
                let status = stanza.get_child("status", CLIENT_NS).map(|s| s.text());
                roster
                    .pending_in
                    .insert(from_s.clone(), PendingIn { status });
            }
            let items_changed = roster.items.get(&from_s) != items_before.as_ref();
            if self.save_roster(&to, roster.clone()) && items_changed {
                self.push_state(&to, &roster, &from_s);
            }
        }
        if t.deliver {
            self.deliver_to_available(&to, &stanza);
        }
        if kind == SubKind::Unsubscribe
            && t.changed
            && matches!(before.sub, Subscription::From | Subscription::Both)
        {
            // RFC 6121 §3.3.3: the user no longer sees this contact.
            if let Some(u) = from.local() {
                self.send_unavailable(&to, u);
            }
        }
        if let Some(reply_kind) = t.auto_reply {
            if let Some(u) = from.local() {
                let me = self.bare(&to);
                let reply = Element::new("presence", CLIENT_NS)
                    .with_attr("from", me.to_string())
                    .with_attr("to", from_s.as_str())
                    .with_attr("type", reply_kind.as_str());
                let then_presence = self.follow_up_presence(&to, reply_kind);
                self.send_subscription(SubscriptionIn {
                    to: u.to_string(),
                    from: me,
                    kind: reply_kind,
                    stanza: reply,
                    then_presence,
                });
            }
        }
        // The sender's follow-up presence, after its subscription stanza. Presence from a
        // user the addressee is not subscribed to is not delivered (RFC 6121 §4.3.2).
        if kind == SubKind::Unsubscribed
            || matches!(t.state.sub, Subscription::To | Subscription::Both)
        {
            for p in &then_presence {
                self.fan_out_to_user(p, &to);
            }
        }
    }
}

impl Handler<AccountRemoved> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: AccountRemoved, ctx: &mut Context<Self>) {
        self.account_removed(msg);
        self.arm_sip_wake(ctx);
    }
}

impl PresenceShard {
    fn account_removed(&mut self, msg: AccountRemoved) {
        for r in self.resources(&msg.user) {
            let full = self.bare(&msg.user).with_resource(&r.resource);
            if r.presence.is_some() {
                self.unavailable(&full, None);
            }
            r.outbox
                .close_with_error(StreamErrorCondition::NotAuthorized, Some("account removed"));
        }
        self.hub.routes.set(&msg.user, Vec::new());
        self.users.remove(&msg.user);
        self.sip_account_removed(&msg.user);
    }
}

/// The error a client gets when its change did not reach the primary's durable store.
pub(crate) fn not_written(iq: &Element) -> Element {
    error_reply(
        iq,
        StanzaError::InternalServerError,
        Some("the change is kept here but did not reach the cluster's primary"),
    )
}

pub(super) fn sub_kind(t: PresenceType) -> Option<SubKind> {
    match t {
        PresenceType::Subscribe => Some(SubKind::Subscribe),
        PresenceType::Subscribed => Some(SubKind::Subscribed),
        PresenceType::Unsubscribe => Some(SubKind::Unsubscribe),
        PresenceType::Unsubscribed => Some(SubKind::Unsubscribed),
        _ => None,
    }
}

/// The localpart of a bare JID string on `domain`.
pub(super) fn local_of<'a>(jid: &'a str, domain: &str) -> Option<&'a str> {
    let (local, d) = jid.split_once('@')?;
    (d == domain).then_some(local)
}

/// A stanza serialised once for delivery (default namespace `jabber:client`).
pub(super) fn wire(el: &Element) -> Bytes {
    let mut out = Vec::with_capacity(256);
    el.write_to(&mut out, CLIENT_NS);
    Bytes::from(out)
}

/// Serialised presence (starting `<presence`) with a `to` attribute spliced in, so a
/// broadcast is serialised once and only re-addressed per contact.
pub(super) fn with_to(presence: &Bytes, to: &str) -> Bytes {
    const OPEN: &[u8] = b"<presence";
    if !presence.starts_with(OPEN) {
        return presence.clone();
    }
    let mut out = Vec::with_capacity(presence.len() + to.len() + 8);
    out.extend_from_slice(OPEN);
    out.extend_from_slice(b" to='");
    escape_attr(to, &mut out);
    out.push(b'\'');
    out.extend_from_slice(&presence[OPEN.len()..]);
    Bytes::from(out)
}

fn generate_resource() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("rdv-{n:016x}")
}

/// Current UTC time as RFC 3339 / XEP-0082 `CCYY-MM-DDThh:mm:ssZ`.
pub(crate) fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// `secs` since the Unix epoch as RFC 3339 / XEP-0082 `CCYY-MM-DDThh:mm:ssZ` (UTC), formatted
/// by the `time` crate; a time it cannot represent (past year 9999) gives the epoch.
pub(crate) fn rfc3339(secs: u64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(FORMAT)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn to_is_spliced_and_escaped() {
        let p = Bytes::from_static(b"<presence from='a@x/r'/>");
        assert_eq!(
            &with_to(&p, "b@x")[..],
            b"<presence to='b@x' from='a@x/r'/>"
        );
        assert_eq!(
            &with_to(&p, "o'b@x")[..],
            b"<presence to='o&apos;b@x' from='a@x/r'/>"
        );
    }

    #[test]
    fn local_of_checks_domain() {
        assert_eq!(local_of("a@x", "x"), Some("a"));
        assert_eq!(local_of("a@y", "x"), None);
        assert_eq!(local_of("x", "x"), None);
    }
}

/// One live user as the load monitor counts it (DESIGN.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveUser {
    /// Whether the user is here over SIP only (no XMPP session).
    pub sip_only: bool,
    /// Presence resources: roster contacts watched (`to`/`both`), SIP subscriptions held as
    /// watcher, publications.
    pub resources: u32,
}

/// Writes what a shard has not yet written to the store (SIP subscriptions waiting for
/// `sip.subscription_write_delay_ms`); sent to every shard when the node stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushStore;

impl Handler<FlushStore> for PresenceShard {
    type Result = ();

    fn handle(&mut self, _: FlushStore, _: &mut Context<Self>) {
        if let Some(timer) = self.sip.persist_timer {
            self.cancel_timer(Some(timer));
        }
        self.persist_unsaved();
    }
}

/// Asks a shard for the users it serves and their presence resources (the load monitor's
/// input). A user may appear in several shards' answers (a SIP watcher is counted where its
/// dialog lives); the monitor merges them.
#[derive(Message)]
#[rtype(result = "std::collections::HashMap<String, LiveUser>")]
pub struct LoadQuery;

impl Handler<LoadQuery> for PresenceShard {
    type Result = actix::MessageResult<LoadQuery>;

    fn handle(&mut self, _: LoadQuery, _: &mut Context<Self>) -> Self::Result {
        use crate::xmpp::subscription::Subscription;
        let mut out: std::collections::HashMap<String, LiveUser> = Default::default();
        for (user, state) in &self.users {
            let watched = state
                .roster
                .items
                .values()
                .filter(|i| matches!(i.subscription, Subscription::To | Subscription::Both))
                .count() as u32;
            out.insert(
                user.clone(),
                LiveUser {
                    sip_only: false,
                    resources: watched,
                },
            );
        }
        let mut sip = |user: &str, resources: u32| {
            out.entry(user.to_string())
                .or_insert(LiveUser {
                    sip_only: true,
                    resources: 0,
                })
                .resources += resources;
        };
        for dialog in self.sip.dialogs.values() {
            // A back-end subscription is another node watching, not a user of this one.
            if let Some(w) = dialog
                .rec
                .watcher_user
                .as_deref()
                .filter(|w| *w != crate::cluster::dialog::CLUSTER_USER)
            {
                sip(w, 1);
            }
        }
        for (user, p) in &self.sip.presentities {
            if !p.publications.is_empty() {
                sip(user, p.publications.len() as u32);
            }
        }
        for aor in self.sip.registrations.keys() {
            sip(aor, 0);
        }
        actix::MessageResult(out)
    }
}
