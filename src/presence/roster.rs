//! The RFC 6121 core of a shard: the rosters, subscription states and resources of its
//! users, and the server rules — roster management (§2), subscriptions (§3, Appendix A),
//! presence broadcast, probes and directed presence (§4), with resource binding (RFC 6120
//! §7) and the delivery of what waited offline (XEP-0160).
//!
//! [`RosterState`] owns the roster cache of its online users. It writes serialised stanzas
//! straight into the recipients' outboxes through the routing table (the fan-out hot path:
//! one serialisation, no hop, no effect per recipient); everything else it does to the
//! outside it returns as [`RosterFx`] for the shard shell to perform: relays to other nodes,
//! posts to other shards, writes through to the primary, and what the SIP, MOE-MP and
//! hand-over parts are to hear of.

use std::collections::{BTreeSet, HashMap};

use actix::prelude::*;
use bytes::Bytes;
use tracing::{debug, info, warn};

use super::context::Ctx;
use super::deliver::{
    bounce, deliver_presence_to, deliver_to_available, fan_out_to_user, follow_up_presence,
};
use super::outbox::Outbox;
use super::relay::Relay;
use super::routes::{available, ResourceRoute, Sink};
use super::shared::Ack;
use super::wire::{local_of, not_written, sub_kind, wire, with_to};
use crate::cluster::record::{self, UserRecord};
use crate::config::PresencePolicy;
use crate::store::{PendingContact, PendingIn, Records, Roster, RosterItem};
use crate::xmpp::jid::Jid;
use crate::xmpp::roster::{self, RosterSet};
use crate::xmpp::stanza::{
    error_reply, iq_payload, iq_result, presence_priority, IqType, PresenceType, StanzaError,
    StreamErrorCondition,
};
use crate::xmpp::subscription::{SubKind, Subscription};
use crate::xmpp::xml::{Element, CLIENT_NS};

/// Binds a resource for `user` (RFC 6120 §7); answers the resource actually bound.
/// A resource already bound by another session is taken over: newest wins, the old stream
/// gets `conflict` (RFC 6120 §7.7.2.2).
#[derive(Message)]
#[rtype(result = "Result<String, StanzaError>")]
pub struct Bind {
    /// Localpart of the authenticated user.
    pub user: String,
    /// Requested resource; `None` = server-generated.
    pub resource: Option<String>,
    /// Id of the binding session.
    pub session_id: u64,
    /// The session's outbox.
    pub outbox: Outbox,
}

/// Unbinds a resource when its session ends; goes unavailable first if it was available.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unbind {
    /// Localpart.
    pub user: String,
    /// Resourcepart.
    pub resource: String,
    /// Only the session that bound the resource may unbind it.
    pub session_id: u64,
}

/// A `<presence/>` sent by a bound resource, `from` already stamped (RFC 6121 §4, §3).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PresenceFromClient {
    /// The sender's full JID.
    pub from: Jid,
    /// The stanza.
    pub stanza: Element,
}

/// A roster get/set from a bound resource (RFC 6121 §2); the answer goes to `outbox`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RosterIq {
    /// The sender's full JID.
    pub from: Jid,
    /// The iq.
    pub iq: Element,
    /// Where the result goes.
    pub outbox: Outbox,
}

/// A subscription stanza from `from` (bare) arriving at the contact `to` (RFC 6121 §3, A.3).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscriptionIn {
    /// Localpart of the addressee.
    pub to: String,
    /// Bare JID of the sender.
    pub from: Jid,
    /// Which subscription stanza.
    pub kind: SubKind,
    /// The stanza, `from` bare, to be delivered if the state machine says so.
    pub stanza: Element,
    /// Presence of the sender's resources to deliver right after `stanza`: current presence
    /// after an approval (RFC 6121 §3.1.5), unavailable after a cancellation (§3.2.2).
    /// Carried here so it cannot overtake the subscription stanza.
    pub then_presence: Vec<Bytes>,
}

/// The account was deleted: close its sessions and drop its state (XEP-0077 §3.2).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AccountRemoved {
    /// Localpart.
    pub user: String,
}

/// A SIP subscription is pending under `presence_policy = "roster"`: ask the presentity
/// on the watcher's behalf, as an XMPP subscription request (RFC 6121 §3.1) would.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct WatcherAsks {
    /// Local part of the watcher (this shard's user).
    pub(crate) watcher: String,
    /// Local part of the presentity.
    pub(crate) presentity: String,
}

/// What the roster core does to the outside, performed by the shard shell in order.
pub(crate) enum RosterFx {
    /// A stanza for a user homed on another node.
    Relay(Relay),
    /// A subscription stanza for a user of this node, to its shard (this one, maybe).
    Subscription(SubscriptionIn),
    /// `watcher` starts or stops watching the remote `presentity` (to the presentity's
    /// shard, which keeps the back-end subscription, DESIGN.md §8).
    Watch {
        /// Localpart of the remote presentity.
        presentity: String,
        /// Localpart of the local watcher.
        watcher: String,
        /// Start or stop.
        on: bool,
    },
    /// `user`'s record to the primary, then `ack` (DESIGN.md §3).
    WriteThrough {
        /// Localpart.
        user: String,
        /// The answer that waits for it.
        ack: Option<Ack>,
    },
    /// `user`'s roster changed: its SIP watchers are authorized anew (SIP part).
    Reauthorize(String),
    /// An XMPP resource of `user` changed its presence (SIP part: NOTIFY its watchers).
    PresenceChanged(String),
    /// `user`'s account is gone (SIP part: subscriptions, publications, bindings).
    AccountRemoved(String),
    /// An XMPP session took a resource name a SIP publication was shown under (SIP part).
    ResourceTaken {
        /// Localpart.
        user: String,
        /// The resource.
        resource: String,
    },
    /// Initial presence asked for MOE-MP settings pushes (docs/moe-mp.md §1).
    SettingsWanted {
        /// Localpart.
        user: String,
        /// The resource that asked.
        resource: String,
    },
    /// A resource went away (MOE-MP: forget its push flag).
    Unbound {
        /// Localpart.
        user: String,
        /// The resource.
        resource: String,
    },
    /// The last XMPP session of `user` here ended (hand-over of a user moving away).
    SessionsEnded(String),
    /// A message for a user of this node, routed as [`crate::presence::Inbound`] is.
    Deliver {
        /// The addressee.
        to: Jid,
        /// The message.
        stanza: Element,
    },
}

/// State kept for a user with at least one bound resource.
struct UserState {
    roster: Roster,
    /// Per resource, JIDs that got directed presence and are not subscribed (RFC 6121 §4.6).
    directed: HashMap<String, Vec<Jid>>,
}

/// The RFC 6121 state of one shard's users.
#[derive(Default)]
pub(crate) struct RosterState {
    users: HashMap<String, UserState>,
    push_seq: u64,
}

impl RosterState {
    /// The user's roster: the cached copy while online, else from the store.
    pub(crate) fn roster(&self, cx: &Ctx<'_>, user: &str) -> Roster {
        if let Some(u) = self.users.get(user) {
            return u.roster.clone();
        }
        cx.store.roster(user).unwrap_or_else(|e| {
            warn!(shard = cx.index, %user, error = %e, "roster read failed");
            Roster::default()
        })
    }

    /// The subscription `user` has with the contact `jid` (a bare JID), if it has an item.
    pub(crate) fn subscription_of(
        &self,
        cx: &Ctx<'_>,
        user: &str,
        jid: &str,
    ) -> Option<Subscription> {
        match self.users.get(user) {
            Some(u) => u.roster.items.get(jid).map(|i| i.subscription),
            None => self.roster(cx, user).items.get(jid).map(|i| i.subscription),
        }
    }

    /// The users with a bound resource and how many contacts each watches (`to`/`both`):
    /// the load monitor's count (DESIGN.md §4).
    pub(crate) fn live_users(&self) -> impl Iterator<Item = (&String, u32)> {
        self.users.iter().map(|(user, state)| {
            let watched = state
                .roster
                .items
                .values()
                .filter(|i| matches!(i.subscription, Subscription::To | Subscription::Both))
                .count() as u32;
            (user, watched)
        })
    }

    /// Writes the roster to the store, then the cache, and through to the primary
    /// (DESIGN.md §3); `ack` (an outbox with the result and the error to send) is answered
    /// only once the primary has the change (at once off a cluster). False when the store
    /// failed.
    pub(crate) fn save_roster(
        &mut self,
        cx: &Ctx<'_>,
        user: &str,
        roster: Roster,
        ack: Option<Ack>,
        fx: &mut Vec<RosterFx>,
    ) -> bool {
        if let Err(e) = cx.store.put_roster(user, &roster) {
            warn!(shard = cx.index, %user, error = %e, "roster write failed");
            return false;
        }
        if let Some(u) = self.users.get_mut(user) {
            let before = std::mem::replace(&mut u.roster, roster);
            self.rewatch(cx, user, &before, fx);
        }
        fx.push(RosterFx::Reauthorize(user.to_string()));
        fx.push(RosterFx::WriteThrough {
            user: user.to_string(),
            ack,
        });
        true
    }

    /// Remote contacts whose presence `user` sees (`to`/`both`, RFC 6121 §3).
    fn watched_remote(cx: &Ctx<'_>, roster: &Roster) -> BTreeSet<String> {
        roster
            .items
            .iter()
            .filter(|(_, i)| matches!(i.subscription, Subscription::To | Subscription::Both))
            .filter_map(|(jid, _)| local_of(jid, cx.domain()))
            .filter(|c| cx.remote_home(c).is_some())
            .map(str::to_string)
            .collect()
    }

    /// This shard's users with an available resource who see `contact` (`to`/`both`).
    pub(crate) fn online_watchers_of(&self, cx: &Ctx<'_>, contact: &str) -> Vec<String> {
        let jid = format!("{contact}@{}", cx.domain());
        self.users
            .iter()
            .filter(|(u, _)| has_session_available(cx, u))
            .filter(|(_, s)| {
                s.roster.items.get(&jid).is_some_and(|i| {
                    matches!(i.subscription, Subscription::To | Subscription::Both)
                })
            })
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Starts or stops watching remote contacts as `user`'s roster changed from `before`.
    fn rewatch(&self, cx: &Ctx<'_>, user: &str, before: &Roster, fx: &mut Vec<RosterFx>) {
        if !has_session_available(cx, user) {
            return;
        }
        let old = Self::watched_remote(cx, before);
        let new = match self.users.get(user) {
            Some(u) => Self::watched_remote(cx, &u.roster),
            None => return,
        };
        for c in new.difference(&old) {
            watch_remote(c, user, true, fx);
        }
        for c in old.difference(&new) {
            watch_remote(c, user, false, fx);
        }
    }

    fn next_push_id(&mut self, cx: &Ctx<'_>) -> String {
        self.push_seq += 1;
        format!("push{}-{}", cx.index, self.push_seq)
    }

    /// Roster push to every interested resource (RFC 6121 §2.1.6).
    pub(crate) fn push_item(&mut self, cx: &Ctx<'_>, user: &str, item: Element) {
        let bare = cx.bare(user);
        for r in cx.routes.get(user).iter().filter(|r| r.interested) {
            let id = self.next_push_id(cx);
            let to = bare.with_resource(&r.resource).to_string();
            r.sink.send_element(&roster::push(&to, &id, item.clone()));
        }
    }

    /// The push of `contact`'s item as `roster` has it (or its removal).
    pub(crate) fn push_state(&mut self, cx: &Ctx<'_>, user: &str, roster: &Roster, contact: &str) {
        match roster.items.get(contact) {
            Some(item) => self.push_item(cx, user, roster::item_element(item)),
            None => self.push_item(cx, user, roster::removed_item_element(contact)),
        }
    }

    /// Broadcast of `presence` from `user`: contacts with a `from`/`both` subscription and
    /// the user's own available resources (RFC 6121 §4.2.2, §4.4.2, §4.5.2).
    pub(crate) fn broadcast(&self, cx: &Ctx<'_>, user: &str, presence: &Bytes) {
        let stored;
        let roster = match self.users.get(user) {
            Some(state) => &state.roster,
            None => {
                // A SIP-only presentity (RFC 8048): no cached roster, read the stored one.
                stored = self.roster(cx, user);
                &stored
            }
        };
        for (jid, item) in &roster.items {
            if matches!(item.subscription, Subscription::From | Subscription::Both) {
                if let Some(contact) = local_of(jid, cx.domain()) {
                    fan_out_to_user(cx, presence, contact);
                }
            }
        }
        fan_out_to_user(cx, presence, user);
    }

    /// Available presence from a resource: update the routing table, broadcast, and on
    /// initial presence answer the probes and deliver what waited (RFC 6121 §4.2, §3.1.3).
    fn available(&mut self, cx: &Ctx<'_>, from: &Jid, stanza: Element, fx: &mut Vec<RosterFx>) {
        let (Some(user), Some(res)) = (from.local(), from.resource()) else {
            return;
        };
        let priority = presence_priority(&stanza);
        let bytes = wire(&stanza);
        let before = cx
            .routes
            .get(user)
            .iter()
            .find(|r| r.resource == res)
            .cloned();
        let Some(before) = before else { return };
        let initial = before.presence.is_none();
        set_route(cx, user, res, |r| {
            r.presence = Some(bytes.clone());
            r.priority = priority;
        });
        self.broadcast(cx, user, &bytes);
        fx.push(RosterFx::PresenceChanged(user.to_string()));
        if !initial {
            return;
        }
        let sink = before.sink;
        let full = from.to_string();
        let roster = self.roster(cx, user);
        // Probes, answered locally (RFC 6121 §4.3): contacts this user is subscribed to;
        // contacts homed on other nodes answer through a back-end subscription (§8).
        for (jid, item) in &roster.items {
            if !matches!(item.subscription, Subscription::To | Subscription::Both) {
                continue;
            }
            if let Some(contact) = local_of(jid, cx.domain()) {
                if cx.remote_home(contact).is_some() {
                    // Only the first available resource starts watching.
                    if !is_other_available(cx, user, res) {
                        watch_remote(contact, user, true, fx);
                    } else {
                        for r in available(&cx.routes.get(contact)) {
                            if let Some(p) = &r.presence {
                                sink.send(with_to(p, &full));
                            }
                        }
                    }
                    continue;
                }
                for r in available(&cx.routes.get(contact)) {
                    if let Some(p) = &r.presence {
                        sink.send(with_to(p, &full));
                    }
                }
            }
        }
        // The user's other available resources (RFC 6121 §4.2.2).
        for r in available(&cx.routes.get(user)) {
            if r.resource != res {
                if let Some(p) = &r.presence {
                    sink.send(with_to(p, &full));
                }
            }
        }
        // Subscription requests that waited (RFC 6121 §3.1.3).
        for (jid, pending) in &roster.pending_in {
            sink.send_element(&pending_request(cx, user, jid, pending));
        }
        // MOE-MP contact-add requests that waited (docs/moe-mp.md §4).
        for (jid, wish) in &roster.contact_requests {
            sink.send_element(&contact_request_message(cx, user, jid, wish));
        }
        // Offline messages (XEP-0160), only to a resource that takes bare-JID messages.
        if priority >= 0 {
            match cx.store.offline_take(user) {
                Ok(msgs) => {
                    for m in msgs {
                        sink.send(Bytes::from(m.into_bytes()));
                    }
                }
                Err(e) => warn!(shard = cx.index, %user, error = %e, "offline read failed"),
            }
        }
    }

    /// Unavailable presence from a resource (explicit or on disconnect): broadcast, and tell
    /// every JID that got directed presence (RFC 6121 §4.5.2, §4.6.3).
    fn unavailable(
        &mut self,
        cx: &Ctx<'_>,
        from: &Jid,
        stanza: Option<Element>,
        fx: &mut Vec<RosterFx>,
    ) {
        let (Some(user), Some(res)) = (from.local(), from.resource()) else {
            return;
        };
        let mut was_available = false;
        set_route(cx, user, res, |r| {
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
            self.broadcast(cx, user, &bytes);
            fx.push(RosterFx::PresenceChanged(user.to_string()));
            if !has_session_available(cx, user) {
                // The last available resource went: stop watching remote contacts.
                for c in Self::watched_remote(cx, &self.roster(cx, user)) {
                    watch_remote(&c, user, false, fx);
                }
            }
        }
        let directed = self
            .users
            .get_mut(user)
            .and_then(|u| u.directed.remove(res))
            .unwrap_or_default();
        for target in directed {
            relay(deliver_presence_to(cx, &target, &bytes), fx);
        }
    }

    /// Presence with a `to` (RFC 6121 §4.6): directed presence, or a subscription stanza.
    fn directed(
        &mut self,
        cx: &Ctx<'_>,
        from: &Jid,
        to: Jid,
        ptype: PresenceType,
        stanza: Element,
        fx: &mut Vec<RosterFx>,
    ) {
        let Some(user) = from.local() else { return };
        let Some(res) = from.resource() else { return };
        if to.domain() != cx.domain() {
            let text = Some("no server-to-server connections");
            relay(
                bounce(cx, &stanza, StanzaError::RemoteServerNotFound, text),
                fx,
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
            relay(deliver_presence_to(cx, &to, &bytes), fx);
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
        self.outbound_subscription(cx, user, to.to_bare(), kind, stanza, fx);
    }

    /// A subscription stanza the user sends (RFC 6121 §3, Appendix A.2).
    pub(crate) fn outbound_subscription(
        &mut self,
        cx: &Ctx<'_>,
        user: &str,
        contact: Jid,
        kind: SubKind,
        mut stanza: Element,
        fx: &mut Vec<RosterFx>,
    ) {
        let Some(contact_user) = contact.local().map(str::to_string) else {
            return; // subscriptions to a server JID are meaningless here
        };
        if contact_user == user {
            return; // a user is always subscribed to itself
        }
        let contact_s = contact.to_string();
        let mut roster = self.roster(cx, user);
        let before = roster.state(&contact_s);
        let creates = !roster.items.contains_key(&contact_s);
        let t = before.outbound(kind);
        if t.state != before {
            if creates
                && t.state.sub == Subscription::None
                && t.state.pending_out
                && roster.items.len() >= cx.settings.max_roster_items
            {
                let text = Some("roster is full");
                relay(bounce(cx, &stanza, StanzaError::NotAllowed, text), fx);
                return;
            }
            roster.apply_state(&contact_s, t.state);
            if self.save_roster(cx, user, roster.clone(), None, fx) {
                self.push_state(cx, user, &roster, &contact_s);
            }
        }
        if !t.route {
            return;
        }
        let bare = cx.bare(user);
        if !cx.user_exists(&contact_user) {
            if kind == SubKind::Subscribe {
                // The contact does not exist: answer as its server would (RFC 6121 §3.1.3).
                let reply = Element::new("presence", CLIENT_NS)
                    .with_attr("from", contact_s.as_str())
                    .with_attr("to", bare.to_string())
                    .with_attr("type", "unsubscribed");
                fx.push(RosterFx::Subscription(SubscriptionIn {
                    to: user.to_string(),
                    from: contact.clone(),
                    kind: SubKind::Unsubscribed,
                    stanza: reply,
                    then_presence: Vec::new(),
                }));
            }
            return;
        }
        stanza.set_attr("from", bare.to_string());
        stanza.set_attr("to", contact_s.as_str());
        let then_presence = follow_up_presence(cx, user, kind);
        send_subscription(
            cx,
            SubscriptionIn {
                to: contact_user.clone(),
                from: bare,
                kind,
                stanza,
                then_presence,
            },
            fx,
        );
    }

    /// RFC 6121 Appendix A.3: the contact's server processes an inbound subscription stanza
    /// (once no hand-over holds it back, see `handover`).
    pub(crate) fn subscription_in(
        &mut self,
        cx: &Ctx<'_>,
        msg: SubscriptionIn,
        fx: &mut Vec<RosterFx>,
    ) {
        let SubscriptionIn {
            to,
            from,
            kind,
            stanza,
            then_presence,
        } = msg;
        if !cx.user_exists(&to) {
            return;
        }
        if let Some(home) = cx.remote_home(&to) {
            // The contact moved to another node while this waited in the mailbox (DESIGN.md
            // §7): its roster lives there now, and a change made here would never reach it
            // (a request kept here as pending-in would block every later one there).
            fx.push(RosterFx::Relay(Relay::stanza(home, &to, &stanza)));
            return;
        }
        let from_s = from.to_string();
        let mut roster = self.roster(cx, &to);
        let before = roster.state(&from_s);
        if kind == SubKind::Subscribe
            && cx.settings.sip.presence_policy == PresencePolicy::Domain
            && from.domain() == cx.domain()
            && from.local().is_some()
            && !matches!(before.sub, Subscription::From | Subscription::Both)
        {
            // presence_policy = "domain": any user of the domain may watch, so the server
            // approves on the contact's behalf (RFC 6121 §3.1.3 lets the contact's server
            // answer for it) instead of asking the contact.
            roster.apply_state(&from_s, before.inbound(kind).state);
            self.save_roster(cx, &to, roster, None, fx);
            let approval = Element::new("presence", CLIENT_NS)
                .with_attr("to", from_s.as_str())
                .with_attr("type", "subscribed");
            self.outbound_subscription(cx, &to, from, SubKind::Subscribed, approval, fx);
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
            if self.save_roster(cx, &to, roster.clone(), None, fx) && items_changed {
                self.push_state(cx, &to, &roster, &from_s);
            }
        }
        if t.deliver {
            deliver_to_available(cx, &to, &stanza);
        }
        if kind == SubKind::Unsubscribe
            && t.changed
            && matches!(before.sub, Subscription::From | Subscription::Both)
        {
            // RFC 6121 §3.3.3: the user no longer sees this contact.
            if let Some(u) = from.local() {
                for p in follow_up_presence(cx, &to, SubKind::Unsubscribed) {
                    fan_out_to_user(cx, &p, u);
                }
            }
        }
        if let Some(reply_kind) = t.auto_reply {
            if let Some(u) = from.local() {
                let me = cx.bare(&to);
                let reply = Element::new("presence", CLIENT_NS)
                    .with_attr("from", me.to_string())
                    .with_attr("to", from_s.as_str())
                    .with_attr("type", reply_kind.as_str());
                let then_presence = follow_up_presence(cx, &to, reply_kind);
                send_subscription(
                    cx,
                    SubscriptionIn {
                        to: u.to_string(),
                        from: me,
                        kind: reply_kind,
                        stanza: reply,
                        then_presence,
                    },
                    fx,
                );
            }
        }
        // The sender's follow-up presence, after its subscription stanza. Presence from a
        // user the addressee is not subscribed to is not delivered (RFC 6121 §4.3.2).
        if kind == SubKind::Unsubscribed
            || matches!(t.state.sub, Subscription::To | Subscription::Both)
        {
            for p in &then_presence {
                fan_out_to_user(cx, p, &to);
            }
        }
    }

    /// Removes `jid` from the roster of `user` (RFC 6121 §2.5): the item and any pending
    /// request go, interested resources get the `remove` push, and both subscription
    /// directions with the contact are cancelled (§2.5.2). False when the store failed.
    pub(crate) fn remove_contact(
        &mut self,
        cx: &Ctx<'_>,
        user: &str,
        jid: &Jid,
        fx: &mut Vec<RosterFx>,
    ) -> bool {
        let key = jid.to_string();
        let mut roster = self.roster(cx, user);
        let state = roster.state(&key);
        roster.items.remove(&key);
        roster.pending_in.remove(&key);
        if !self.save_roster(cx, user, roster, None, fx) {
            return false;
        }
        self.push_item(cx, user, roster::removed_item_element(&key));
        if let Some(contact) = jid.local().filter(|_| jid.domain() == cx.domain()) {
            let bare = cx.bare(user);
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
                let then_presence = follow_up_presence(cx, user, kind);
                send_subscription(
                    cx,
                    SubscriptionIn {
                        to: contact.to_string(),
                        from: bare.clone(),
                        kind,
                        stanza,
                        then_presence,
                    },
                    fx,
                );
            }
        }
        true
    }

    /// A roster get or set (RFC 6121 §2.1.3, §2.3, §2.5).
    pub(crate) fn roster_iq(&mut self, cx: &Ctx<'_>, msg: RosterIq, fx: &mut Vec<RosterFx>) {
        let RosterIq { from, iq, outbox } = msg;
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
                set_route(cx, &user, &res, |r| r.interested = true);
                let roster = self.roster(cx, &user);
                let items = roster.items.values().map(roster::item_element);
                reply(iq_result(&iq, Some(roster::query(items))));
            }
            Some(IqType::Set) => match roster::parse_roster_set(query) {
                Err((err, text)) => reply(error_reply(&iq, err, Some(text))),
                Ok(RosterSet::Update { jid, name, groups }) => {
                    let key = jid.to_string();
                    if jid == cx.bare(&user) {
                        return reply(error_reply(
                            &iq,
                            StanzaError::NotAllowed,
                            Some("cannot add yourself"),
                        ));
                    }
                    let mut roster = self.roster(cx, &user);
                    if !roster.items.contains_key(&key)
                        && roster.items.len() >= cx.settings.max_roster_items
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
                    if !self.save_roster(cx, &user, roster, Some(ack), fx) {
                        return reply(error_reply(&iq, StanzaError::InternalServerError, None));
                    }
                    self.push_item(cx, &user, el);
                }
                Ok(RosterSet::Remove { jid }) => {
                    let key = jid.to_string();
                    let roster = self.roster(cx, &user);
                    if !roster.items.contains_key(&key) && !roster.state(&key).pending_in {
                        return reply(error_reply(&iq, StanzaError::ItemNotFound, None));
                    }
                    if !self.remove_contact(cx, &user, &jid, fx) {
                        return reply(error_reply(&iq, StanzaError::InternalServerError, None));
                    }
                    let ack = (outbox.clone(), iq_result(&iq, None), not_written(&iq));
                    fx.push(RosterFx::WriteThrough {
                        user: user.clone(),
                        ack: Some(ack),
                    });
                }
            },
            _ => {}
        }
    }

    /// Binds a resource (RFC 6120 §7).
    pub(crate) fn bind(
        &mut self,
        cx: &Ctx<'_>,
        msg: Bind,
        fx: &mut Vec<RosterFx>,
    ) -> Result<String, StanzaError> {
        if let Some(home) = cx.remote_home(&msg.user) {
            // Moved away between the session's placement check and its bind (DESIGN.md §7):
            // served there, like every session the move found here (RFC 6120 §4.9.3.19).
            info!(shard = cx.index, user = %msg.user, to = %home.id, "bind refused: the user moved away");
            let bytes = crate::xmpp::stanza::see_other_host_bytes(&home.xmpp.to_string());
            msg.outbox.close_lingering(Bytes::from(bytes));
            return Err(StanzaError::ServiceUnavailable);
        }
        let resource = msg.resource.unwrap_or_else(generate_resource);
        if !self.users.contains_key(&msg.user) {
            let roster = match cx.store.roster(&msg.user) {
                Ok(r) => r,
                Err(e) => {
                    warn!(shard = cx.index, user = %msg.user, error = %e, "roster read failed");
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
        let routes = cx.routes.get(&msg.user);
        if let Some(old) = routes
            .iter()
            .find(|r| r.resource == resource && !r.is_sip())
            .cloned()
        {
            // Newest wins (RFC 6120 §7.7.2.2): the old session ends with <conflict/>.
            let full = cx.bare(&msg.user).with_resource(&resource);
            if old.presence.is_some() {
                self.unavailable(cx, &full, None, fx);
            }
            if let Some(outbox) = old.sink.outbox() {
                outbox.close_with_error(
                    StreamErrorCondition::Conflict,
                    Some("replaced by a new connection"),
                );
            }
            let mut routes = resources(cx, &msg.user);
            routes.retain(|r| r.resource != resource || r.is_sip());
            cx.routes.set(&msg.user, routes);
        }
        let mut routes = resources(cx, &msg.user);
        // A SIP publication shown under this resource name (RFC 8048 §4) gives way to the
        // session, as it does when the session came first: with two routes of one name the
        // session's initial presence could land on the publication's and the session would
        // receive nothing. The publication shows again at its next change.
        if routes.iter().any(|r| r.is_sip() && r.resource == resource) {
            routes.retain(|r| !(r.is_sip() && r.resource == resource));
            fx.push(RosterFx::ResourceTaken {
                user: msg.user.clone(),
                resource: resource.clone(),
            });
        }
        routes.push(ResourceRoute {
            resource: resource.clone(),
            session_id: msg.session_id,
            sink: Sink::Xmpp(msg.outbox),
            presence: None,
            priority: 0,
            interested: false,
        });
        cx.routes.set(&msg.user, routes);
        debug!(shard = cx.index, user = %msg.user, %resource, "bound");
        Ok(resource)
    }

    /// Unbinds a resource whose session ended.
    pub(crate) fn unbind(&mut self, cx: &Ctx<'_>, msg: Unbind, fx: &mut Vec<RosterFx>) {
        let routes = cx.routes.get(&msg.user);
        let Some(route) = routes
            .iter()
            .find(|r| r.resource == msg.resource && r.session_id == msg.session_id && !r.is_sip())
        else {
            return; // already replaced by a newer session
        };
        let full = cx.bare(&msg.user).with_resource(&msg.resource);
        let had_directed = self
            .users
            .get(&msg.user)
            .is_some_and(|u| u.directed.contains_key(&msg.resource));
        if route.presence.is_some() || had_directed {
            self.unavailable(cx, &full, None, fx);
        }
        let mut routes = resources(cx, &msg.user);
        routes.retain(|r| {
            !(r.resource == msg.resource && r.session_id == msg.session_id && !r.is_sip())
        });
        let empty = routes.iter().all(|r| r.is_sip());
        fx.push(RosterFx::Unbound {
            user: msg.user.clone(),
            resource: msg.resource.clone(),
        });
        cx.routes.set(&msg.user, routes);
        if empty {
            self.users.remove(&msg.user);
            fx.push(RosterFx::SessionsEnded(msg.user.clone()));
        }
        debug!(shard = cx.index, user = %msg.user, resource = %msg.resource, "unbound");
    }

    /// Presence from a bound resource (RFC 6121 §4).
    pub(crate) fn presence_from_client(
        &mut self,
        cx: &Ctx<'_>,
        msg: PresenceFromClient,
        fx: &mut Vec<RosterFx>,
    ) {
        let PresenceFromClient { from, mut stanza } = msg;
        let wants_settings = crate::xmpp::moe::take_push_flag(&mut stanza);
        let Some(ptype) = PresenceType::of(&stanza) else {
            let text = Some("unknown presence type");
            return relay(bounce(cx, &stanza, StanzaError::BadRequest, text), fx);
        };
        match stanza.attr("to").map(Jid::parse) {
            None => match ptype {
                PresenceType::Available => {
                    self.available(cx, &from, stanza, fx);
                    if let (true, Some(user), Some(res)) =
                        (wants_settings, from.local(), from.resource())
                    {
                        fx.push(RosterFx::SettingsWanted {
                            user: user.to_string(),
                            resource: res.to_string(),
                        });
                    }
                }
                PresenceType::Unavailable => self.unavailable(cx, &from, Some(stanza), fx),
                _ => {} // subscription stanzas need a 'to'; probes/errors without one are dropped
            },
            Some(Ok(to)) => self.directed(cx, &from, to, ptype, stanza, fx),
            Some(Err(_)) => relay(bounce(cx, &stanza, StanzaError::JidMalformed, None), fx),
        }
    }

    /// The account was deleted: one of its resources goes unavailable and its session
    /// closes (XEP-0077 §3.2); then [`Self::account_removed`].
    pub(crate) fn end_session(
        &mut self,
        cx: &Ctx<'_>,
        user: &str,
        r: &ResourceRoute,
        fx: &mut Vec<RosterFx>,
    ) {
        let full = cx.bare(user).with_resource(&r.resource);
        if r.presence.is_some() {
            self.unavailable(cx, &full, None, fx);
        }
        if let Some(outbox) = r.sink.outbox() {
            outbox.close_with_error(StreamErrorCondition::NotAuthorized, Some("account removed"));
        }
    }

    /// The account was deleted, its sessions ended: its state goes.
    pub(crate) fn account_removed(
        &mut self,
        cx: &Ctx<'_>,
        msg: AccountRemoved,
        fx: &mut Vec<RosterFx>,
    ) {
        cx.routes.set(&msg.user, Vec::new());
        self.users.remove(&msg.user);
        fx.push(RosterFx::AccountRemoved(msg.user));
    }

    /// A pending SIP watcher of `presentity` asks for it as its XMPP contact would.
    pub(crate) fn watcher_asks(&mut self, cx: &Ctx<'_>, msg: WatcherAsks, fx: &mut Vec<RosterFx>) {
        let contact = Jid::bare(&msg.presentity, cx.domain());
        let state = self.roster(cx, &msg.watcher).state(&contact.to_string());
        if state.pending_out || matches!(state.sub, Subscription::To | Subscription::Both) {
            return; // already asked, or already allowed
        }
        let stanza = Element::new("presence", CLIENT_NS)
            .with_attr("to", contact.to_string())
            .with_attr("type", "subscribe");
        self.outbound_subscription(cx, &msg.watcher, contact, SubKind::Subscribe, stanza, fx);
    }

    /// At a user's new home: the old home's copy of its record merged into ours, three-way
    /// against `base`, the copy the move started from (see `handover`).
    pub(crate) fn merge_record(
        &mut self,
        cx: &Ctx<'_>,
        user: &str,
        base: &UserRecord,
        theirs: &UserRecord,
        fx: &mut Vec<RosterFx>,
    ) {
        match record::merge_in(cx.store, user, base, theirs) {
            Ok(m) if m.after != m.before => {
                if self.save_roster(cx, user, m.after.clone(), None, fx) {
                    self.announce_merge(cx, user, &m.before, &m.after);
                }
                debug!(shard = cx.index, %user, "handed-over record merged");
            }
            Ok(m) => {
                if m.other_changed {
                    fx.push(RosterFx::WriteThrough {
                        user: user.to_string(),
                        ack: None,
                    });
                }
            }
            Err(e) => warn!(shard = cx.index, %user, error = %e, "handed-over record not merged"),
        }
    }

    /// Roster pushes for the items the merge changed (RFC 6121 §2.1.6) and the subscription
    /// requests it added (§3.1.3), to the user's resources here.
    fn announce_merge(&mut self, cx: &Ctx<'_>, user: &str, before: &Roster, after: &Roster) {
        let changed: BTreeSet<String> = before
            .items
            .keys()
            .chain(after.items.keys())
            .filter(|jid| before.items.get(*jid) != after.items.get(*jid))
            .cloned()
            .collect();
        for jid in &changed {
            self.push_state(cx, user, after, jid);
        }
        for (jid, pending) in &after.pending_in {
            if !before.pending_in.contains_key(jid) {
                let request = pending_request(cx, user, jid, pending);
                deliver_to_available(cx, user, &request);
            }
        }
    }
}

/// A relay, if any, as an effect.
fn relay(r: Option<Relay>, fx: &mut Vec<RosterFx>) {
    if let Some(r) = r {
        fx.push(RosterFx::Relay(r));
    }
}

/// Tells the shard of remote `contact` that `user` starts or stops watching it.
fn watch_remote(contact: &str, user: &str, on: bool, fx: &mut Vec<RosterFx>) {
    fx.push(RosterFx::Watch {
        presentity: contact.to_string(),
        watcher: user.to_string(),
        on,
    });
}

/// A subscription stanza to its addressee's shard, or to its home node (DESIGN.md §8;
/// there the follow-up presence comes through the back-end subscription instead).
fn send_subscription(cx: &Ctx<'_>, msg: SubscriptionIn, fx: &mut Vec<RosterFx>) {
    match cx.remote_home(&msg.to) {
        Some(home) => fx.push(RosterFx::Relay(Relay::stanza(home, &msg.to, &msg.stanza))),
        None => fx.push(RosterFx::Subscription(msg)),
    }
}

/// The resources of `user`, to modify and set again.
fn resources(cx: &Ctx<'_>, user: &str) -> Vec<ResourceRoute> {
    cx.routes.get(user).as_ref().clone()
}

/// Changes one resource of `user` in the routing table.
fn set_route<F: FnOnce(&mut ResourceRoute)>(cx: &Ctx<'_>, user: &str, resource: &str, f: F) {
    let mut routes = resources(cx, user);
    let Some(r) = routes.iter_mut().find(|r| r.resource == resource) else {
        return;
    };
    f(r);
    cx.routes.set(user, routes);
}

/// Whether `user` has an available XMPP resource here.
fn has_session_available(cx: &Ctx<'_>, user: &str) -> bool {
    available(&cx.routes.get(user)).any(|r| !r.is_sip())
}

/// Whether `user` has an available XMPP resource other than `res`.
fn is_other_available(cx: &Ctx<'_>, user: &str, res: &str) -> bool {
    available(&cx.routes.get(user)).any(|r| !r.is_sip() && r.resource != res)
}

/// A stored subscription request from `jid` to `user`, as delivered (RFC 6121 §3.1.3).
fn pending_request(cx: &Ctx<'_>, user: &str, jid: &str, pending: &PendingIn) -> Element {
    let mut p = Element::new("presence", CLIENT_NS)
        .with_attr("from", jid)
        .with_attr("to", cx.bare(user).to_string())
        .with_attr("type", "subscribe");
    if let Some(s) = &pending.status {
        p = p.with_child(Element::new("status", CLIENT_NS).with_text(s.as_str()));
    }
    p
}

/// A MOE-MP contact-add request from `requester` to `user` (docs/moe-mp.md §4), from the
/// server.
pub(crate) fn contact_request_message(
    cx: &Ctx<'_>,
    user: &str,
    requester: &str,
    wish: &PendingContact,
) -> Element {
    Element::new("message", CLIENT_NS)
        .with_attr("from", cx.domain())
        .with_attr("to", cx.bare(user).to_string())
        .with_attr("id", format!("moe-c-{}", crate::sip::message::new_tag()))
        .with_child(crate::xmpp::moe::contact_request(
            requester,
            wish.name.as_deref(),
        ))
}

fn generate_resource() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("rdv-{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::testkit::World;
    use crate::presence::wire::parse_stanza;

    fn xml(s: &str) -> Element {
        parse_stanza(s.as_bytes()).expect("a stanza")
    }

    fn bind(r: &mut RosterState, w: &World, user: &str, resource: &str) -> Outbox {
        let outbox = Outbox::new(1 << 20);
        let msg = Bind {
            user: user.into(),
            resource: Some(resource.into()),
            session_id: 1,
            outbox: outbox.clone(),
        };
        let mut fx = Vec::new();
        assert_eq!(r.bind(&w.cx(), msg, &mut fx).unwrap(), resource);
        outbox
    }

    fn presence(r: &mut RosterState, w: &World, from: &str, stanza: &str) -> Vec<RosterFx> {
        let msg = PresenceFromClient {
            from: Jid::parse(from).unwrap(),
            stanza: xml(stanza),
        };
        let mut fx = Vec::new();
        r.presence_from_client(&w.cx(), msg, &mut fx);
        fx
    }

    /// What an outbox holds, as text.
    fn drain(outbox: &Outbox) -> String {
        let mut out = String::new();
        while let Some(crate::presence::outbox::Out::Data { bytes, .. }) = outbox.pop() {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
        out
    }

    #[test]
    fn a_subscription_request_is_posted_to_the_contacts_shard_rfc6121_3_1_2() {
        let w = World::new();
        w.account("alice");
        w.account("bob");
        let mut r = RosterState::default();
        let _outbox = bind(&mut r, &w, "alice", "home");
        let fx = presence(
            &mut r,
            &w,
            "alice@example.com/home",
            "<presence to='bob@example.com' type='subscribe'/>",
        );
        let posted: Vec<_> = fx
            .iter()
            .filter_map(|e| match e {
                RosterFx::Subscription(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(posted.len(), 1);
        assert_eq!(posted[0].to, "bob");
        assert_eq!(posted[0].from.to_string(), "alice@example.com");
        assert_eq!(posted[0].kind, SubKind::Subscribe);
        // Written through, and the SIP watchers of alice reauthorized.
        assert!(fx
            .iter()
            .any(|e| matches!(e, RosterFx::WriteThrough { user, .. } if user == "alice")));
        assert!(fx
            .iter()
            .any(|e| matches!(e, RosterFx::Reauthorize(u) if u == "alice")));
        assert!(
            r.roster(&w.cx(), "alice")
                .state("bob@example.com")
                .pending_out
        );
    }

    #[test]
    fn a_request_for_an_online_contact_is_delivered_and_kept_rfc6121_3_1_3() {
        let mut w = World::new();
        w.settings.sip.presence_policy = PresencePolicy::Roster;
        w.account("alice");
        w.account("bob");
        let mut r = RosterState::default();
        let bob = bind(&mut r, &w, "bob", "desk");
        presence(
            &mut r,
            &w,
            "bob@example.com/desk",
            "<presence from='bob@example.com/desk'/>",
        );
        drain(&bob);
        let msg = SubscriptionIn {
            to: "bob".into(),
            from: Jid::parse("alice@example.com").unwrap(),
            kind: SubKind::Subscribe,
            stanza: xml(
                "<presence from='alice@example.com' to='bob@example.com' type='subscribe'/>",
            ),
            then_presence: Vec::new(),
        };
        let mut fx = Vec::new();
        r.subscription_in(&w.cx(), msg, &mut fx);
        let got = drain(&bob);
        assert!(
            got.contains("type=\"subscribe\"") || got.contains("type='subscribe'"),
            "{got}"
        );
        assert!(r
            .roster(&w.cx(), "bob")
            .pending_in
            .contains_key("alice@example.com"));
    }

    #[test]
    fn presence_changes_are_broadcast_and_told_to_the_sip_part_rfc6121_4_2_2() {
        let w = World::new();
        w.account("alice");
        let mut r = RosterState::default();
        let home = bind(&mut r, &w, "alice", "home");
        let work = bind(&mut r, &w, "alice", "work");
        presence(
            &mut r,
            &w,
            "alice@example.com/work",
            "<presence from='alice@example.com/work'/>",
        );
        drain(&work);
        let fx = presence(
            &mut r,
            &w,
            "alice@example.com/home",
            "<presence from='alice@example.com/home'><show>away</show></presence>",
        );
        assert!(matches!(&fx[..], [RosterFx::PresenceChanged(u)] if u == "alice"));
        // Her other available resource sees it, and her new one the other's (§4.2.2).
        assert!(drain(&work).contains("<show>away</show>"));
        let got = drain(&home);
        assert!(got.contains("alice@example.com/work"), "{got}");
        // Going offline is told too, and the route keeps no presence.
        let mut fx = Vec::new();
        let unbind = Unbind {
            user: "alice".into(),
            resource: "home".into(),
            session_id: 1,
        };
        r.unbind(&w.cx(), unbind, &mut fx);
        assert!(matches!(&fx[0], RosterFx::PresenceChanged(u) if u == "alice"));
        assert!(
            matches!(fx.last(), Some(RosterFx::Unbound { resource, .. }) if resource == "home")
        );
        assert!(drain(&work).contains("type='unavailable'"));
        assert_eq!(w.routes.get("alice").len(), 1);
    }
}
