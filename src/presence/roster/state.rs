//! The RFC 6121 core of a shard: the rosters, subscription states and resources of its
//! users, and the server rules — roster management (§2), subscriptions (§3, Appendix A) and
//! presence broadcast (§4.2.2); the entry points of sessions are in `session`, roster
//! queries and what other parts hand over in `iq`, the MOE-MP extensions in `contacts`.
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
use tracing::warn;

use super::super::context::Ctx;
use super::super::deliver::{bounce, deliver_to_available, fan_out_to_user, follow_up_presence};
use super::super::relay::Relay;
use super::super::routes::{available, ResourceRoute};
use super::super::shared::Ack;
use super::super::wire::local_of;
use crate::config::PresencePolicy;
use crate::store::{PendingContact, PendingIn, Records, Roster};
use crate::xml::{Element, CLIENT_NS};
use crate::xmpp::jid::Jid;
use crate::xmpp::roster;
use crate::xmpp::stanza::StanzaError;
use crate::xmpp::subscription::{SubKind, Subscription};

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
    /// A message for a user of this node, routed as an `Inbound` message is: relayed,
    /// checked, delivered or kept offline.
    Deliver {
        /// The addressee.
        to: Jid,
        /// The message.
        stanza: Element,
    },
}

/// State kept for a user with at least one bound resource.
pub(super) struct UserState {
    pub(super) roster: Roster,
    /// Per resource, JIDs that got directed presence and are not subscribed (RFC 6121 §4.6).
    pub(super) directed: HashMap<String, Vec<Jid>>,
}

/// The RFC 6121 state of one shard's users.
#[derive(Default)]
pub(crate) struct RosterState {
    pub(super) users: HashMap<String, UserState>,
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
    pub(super) fn watched_remote(cx: &Ctx<'_>, roster: &Roster) -> BTreeSet<String> {
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
}

/// A relay, if any, as an effect.
pub(super) fn relay(r: Option<Relay>, fx: &mut Vec<RosterFx>) {
    if let Some(r) = r {
        fx.push(RosterFx::Relay(r));
    }
}

/// Tells the shard of remote `contact` that `user` starts or stops watching it.
pub(super) fn watch_remote(contact: &str, user: &str, on: bool, fx: &mut Vec<RosterFx>) {
    fx.push(RosterFx::Watch {
        presentity: contact.to_string(),
        watcher: user.to_string(),
        on,
    });
}

/// A subscription stanza to its addressee's shard, or to its home node (DESIGN.md §8;
/// there the follow-up presence comes through the back-end subscription instead).
pub(super) fn send_subscription(cx: &Ctx<'_>, msg: SubscriptionIn, fx: &mut Vec<RosterFx>) {
    match cx.remote_home(&msg.to) {
        Some(home) => fx.push(RosterFx::Relay(Relay::stanza(home, &msg.to, &msg.stanza))),
        None => fx.push(RosterFx::Subscription(msg)),
    }
}

/// The resources of `user`, to modify and set again.
pub(super) fn resources(cx: &Ctx<'_>, user: &str) -> Vec<ResourceRoute> {
    cx.routes.get(user).as_ref().clone()
}

/// Changes one resource of `user` in the routing table.
pub(super) fn set_route<F: FnOnce(&mut ResourceRoute)>(
    cx: &Ctx<'_>,
    user: &str,
    resource: &str,
    f: F,
) {
    let mut routes = resources(cx, user);
    let Some(r) = routes.iter_mut().find(|r| r.resource == resource) else {
        return;
    };
    f(r);
    cx.routes.set(user, routes);
}

/// Whether `user` has an available XMPP resource here.
pub(super) fn has_session_available(cx: &Ctx<'_>, user: &str) -> bool {
    available(&cx.routes.get(user)).any(|r| !r.is_sip())
}

/// Whether `user` has an available XMPP resource other than `res`.
pub(super) fn is_other_available(cx: &Ctx<'_>, user: &str, res: &str) -> bool {
    available(&cx.routes.get(user)).any(|r| !r.is_sip() && r.resource != res)
}

/// A stored subscription request from `jid` to `user`, as delivered (RFC 6121 §3.1.3).
pub(super) fn pending_request(cx: &Ctx<'_>, user: &str, jid: &str, pending: &PendingIn) -> Element {
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
