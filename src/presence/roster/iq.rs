//! Roster queries and changes of a bound resource (RFC 6121 §2), a SIP watcher asking for a
//! presentity as an XMPP contact would (§3.1), and the record another node handed over
//! merged into the roster (DESIGN.md §7).

use std::collections::BTreeSet;

use actix::prelude::*;
use tracing::{debug, warn};

use super::super::context::Ctx;
use super::super::deliver::deliver_to_available;
use super::super::outbox::Outbox;
use super::super::wire::not_written;
use super::state::{pending_request, set_route, RosterFx, RosterState};
use crate::cluster::record::UserRecord;
use crate::store::transfer;
use crate::store::{Roster, RosterItem};
use crate::xml::{Element, CLIENT_NS};
use crate::xmpp::jid::Jid;
use crate::xmpp::roster::{self, RosterSet};
use crate::xmpp::stanza::{error_reply, iq_payload, iq_result, IqType, StanzaError};
use crate::xmpp::subscription::{SubKind, Subscription};

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

impl RosterState {
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
        match transfer::merge_in(cx.store, user, base, theirs) {
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
