//! What a session does to the roster core: binding and unbinding resources (RFC 6120 §7,
//! §7.7.2.2 conflicts), presence from a bound resource — broadcast, probes answered and what
//! waited delivered at initial presence, unavailable, directed presence (RFC 6121 §4) —
//! and the end of a deleted account's sessions (XEP-0077 §3.2).

use std::collections::HashMap;

use actix::prelude::*;
use bytes::Bytes;
use tracing::{debug, info, warn};

use super::super::context::Ctx;
use super::super::deliver::{bounce, deliver_presence_to};
use super::super::outbox::Outbox;
use super::super::routes::{available, ResourceRoute, Sink};
use super::super::wire::{local_of, sub_kind, wire, with_to};
use super::state::{
    contact_request_message, has_session_available, is_other_available, pending_request, relay,
    resources, set_route, watch_remote, RosterFx, RosterState, UserState,
};
use crate::store::Records;
use crate::xml::{Element, CLIENT_NS};
use crate::xmpp::jid::Jid;
use crate::xmpp::stanza::{presence_priority, PresenceType, StanzaError, StreamErrorCondition};
use crate::xmpp::subscription::Subscription;

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
/// The account was deleted: close its sessions and drop its state (XEP-0077 §3.2).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AccountRemoved {
    /// Localpart.
    pub user: String,
}

impl RosterState {
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
}

fn generate_resource() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("rdv-{n:016x}")
}
