//! The hand-over of a moved user's record (DESIGN.md §3, §7).
//!
//! The new home takes the primary's copy of the record when it reserves the user
//! (`redirection-usr-addr`), but the old home serves the user until the move reaches it, and
//! after `see-other-host` it still handles what the client sent before it saw the redirect
//! (RFC 6120 §4.4). Whatever the user's roster gained there meanwhile — a subscription
//! request sent or received, an approval — would be lost at the new home. So once the user's
//! last XMPP session there has ended, the old home sends its copy of the record to the new
//! home: a `MESSAGE` from `sip:cluster@<domain>` with a `Rendezvous-Record` header, its JSON
//! body signed with the cluster secret. The new home merges it into its own copy, three-way
//! against the copy it started from ([`Roster::merge3`]), writes the result through to the
//! primary, and pushes the changed roster items and new subscription requests to the user's
//! resources (RFC 6121 §2.1.6, §3.1.3).
//!
//! Until the hand-over arrives (at most `limits.move_handover_ms`), subscription stanzas for
//! the user wait at the new home: applied to a roster about to change under them, an
//! approval of a request the old home recorded would be dropped as unsolicited (RFC 6121
//! §3.1.5) and lost for good.
//!
//! [`Roster::merge3`]: crate::store::Roster::merge3

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tracing::{debug, info, warn};

use super::shard::PresenceShard;
use super::sip::Purpose;
use super::{Arriving, SubscriptionIn};
use crate::cluster::record::{self, UserRecord};
use crate::cluster::view::NodeAddrs;
use crate::sip::message::Request;
use crate::sip::transaction::Key;
use crate::store::{PendingIn, Roster};
use crate::xmpp::xml::{Element, CLIENT_NS};

/// On a `MESSAGE` carrying a user record (JSON): the old home's hand-over.
pub(super) const RECORD_HEADER: &str = "Rendezvous-Record";

/// The media type of a handed-over record.
const RECORD_CONTENT_TYPE: &str = "application/json";

/// Moves in and out of this shard.
#[derive(Default)]
pub(super) struct HandoverState {
    /// Users moving here whose hand-over has not arrived.
    arriving: HashMap<String, Arrival>,
    /// Users moving away whose XMPP sessions here have not all ended: their new home.
    leaving: HashMap<String, NodeAddrs>,
    /// Tells an arrival's expiry from a later arrival of the same user.
    seq: u64,
}

struct Arrival {
    /// The record this node took when it reserved the user.
    base: UserRecord,
    /// Subscription stanzas for the user, in arrival order.
    waiting: Vec<SubscriptionIn>,
    seq: u64,
}

impl Handler<Arriving> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: Arriving, ctx: &mut Context<Self>) {
        let state = &mut self.handover;
        state.seq += 1;
        let seq = state.seq;
        let waiting = state
            .arriving
            .remove(&msg.user)
            .map(|a| a.waiting)
            .unwrap_or_default();
        let user = msg.user;
        state.arriving.insert(
            user.clone(),
            Arrival {
                base: msg.base,
                waiting,
                seq,
            },
        );
        let wait = Duration::from_millis(self.hub.settings.limits.move_handover_ms);
        ctx.run_later(wait, move |act, ctx| {
            if act.handover.arriving.get(&user).is_some_and(|a| a.seq == seq) {
                info!(shard = act.index, %user, ?wait, "no hand-over from the old home: going on without it");
                if let Some(a) = act.handover.arriving.remove(&user) {
                    act.release(a);
                }
                act.arm_sip_wake(ctx);
            }
        });
    }
}

impl PresenceShard {
    /// Keeps `msg` back while its addressee's hand-over is awaited; gives it back otherwise
    /// (and when too many wait already).
    pub(super) fn hold_for_handover(&mut self, msg: SubscriptionIn) -> Option<SubscriptionIn> {
        let max = self.hub.settings.max_roster_items;
        match self.handover.arriving.get_mut(&msg.to) {
            Some(a) if a.waiting.len() < max => {
                a.waiting.push(msg);
                None
            }
            _ => Some(msg),
        }
    }

    /// The user is settled here: what waited for it is handled now.
    fn release(&mut self, arrival: Arrival) {
        for msg in arrival.waiting {
            self.subscription_in(msg);
        }
    }

    /// On the node a user leaves, from `evict`: the record goes to the new home once the
    /// user's XMPP sessions here (which may still handle what their clients sent) are gone.
    pub(super) fn leaving(&mut self, user: &str, to: &NodeAddrs, sessions: usize) {
        if sessions == 0 {
            self.handover.leaving.remove(user);
            self.hand_over_record(user, to);
        } else {
            self.handover.leaving.insert(user.to_string(), to.clone());
        }
    }

    /// From `unbind`: the last XMPP session of `user` here ended.
    pub(super) fn sessions_ended(&mut self, user: &str) {
        if let Some(to) = self.handover.leaving.remove(user) {
            self.hand_over_record(user, &to);
        }
    }

    fn hand_over_record(&mut self, user: &str, to: &NodeAddrs) {
        let record = match record::export(&*self.hub.store, user) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                warn!(shard = self.index, %user, error = %e, "record not handed over: store read failed");
                return;
            }
        };
        debug!(shard = self.index, %user, node = %to.id, "record handed over");
        let body = Bytes::from(record::encode(&record));
        let header = (RECORD_HEADER, "hand-over".to_string());
        self.send_signed(
            to,
            user,
            RECORD_CONTENT_TYPE,
            body,
            vec![header],
            Purpose::Relay(None),
        );
    }

    /// At the new home: the old home's record, merged into ours.
    pub(super) fn record_in(&mut self, key: &Key, req: &Request) {
        if !self.signed_by_cluster(key, req, "handed-over record") {
            return;
        }
        let Some(user) = self.local_user(&req.base.to.uri) else {
            return self.reply_simple(key, req, 400, "Bad Request (no user)", &[]);
        };
        let theirs = match record::decode(req.body()) {
            Ok(r) => r,
            Err(e) => {
                info!(shard = self.index, %user, error = %e, "bad handed-over record");
                return self.reply_simple(key, req, 400, "Bad Request (record)", &[]);
            }
        };
        if self.remote_home(&user).is_some() {
            return self.reply_simple(key, req, 404, "Not Found (not homed here)", &[]);
        }
        // Without the copy the move started from (it came too late), only what this node
        // lacks is taken.
        let arrival = self.handover.arriving.remove(&user);
        if arrival.is_none() {
            info!(shard = self.index, %user, "late hand-over: only what is missing here is taken");
        }
        let empty = UserRecord::default();
        let base = arrival.as_ref().map_or(&empty, |a| &a.base);
        match record::merge_in(&*self.hub.store, &user, base, &theirs) {
            Ok(m) if m.after != m.before => {
                if self.save_roster(&user, m.after.clone()) {
                    self.announce_merge(&user, &m.before, &m.after);
                }
                debug!(shard = self.index, %user, "handed-over record merged");
            }
            Ok(m) => {
                if m.other_changed {
                    self.write_through(&user, None);
                }
            }
            Err(e) => warn!(shard = self.index, %user, error = %e, "handed-over record not merged"),
        }
        if let Some(a) = arrival {
            self.release(a);
        }
        self.reply_simple(key, req, 200, "OK", &[]);
    }

    /// Roster pushes for the items the merge changed (RFC 6121 §2.1.6) and the subscription
    /// requests it added (§3.1.3), to the user's resources here.
    fn announce_merge(&mut self, user: &str, before: &Roster, after: &Roster) {
        let changed: Vec<String> = before
            .items
            .keys()
            .chain(after.items.keys())
            .filter(|jid| before.items.get(*jid) != after.items.get(*jid))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for jid in &changed {
            self.push_state(user, after, jid);
        }
        for (jid, pending) in &after.pending_in {
            if !before.pending_in.contains_key(jid) {
                let request = self.pending_request(user, jid, pending);
                self.deliver_to_available(user, &request);
            }
        }
    }

    /// A stored subscription request from `jid` to `user`, as delivered (RFC 6121 §3.1.3).
    pub(super) fn pending_request(&self, user: &str, jid: &str, pending: &PendingIn) -> Element {
        let mut p = Element::new("presence", CLIENT_NS)
            .with_attr("from", jid)
            .with_attr("to", self.bare(user).to_string())
            .with_attr("type", "subscribe");
        if let Some(s) = &pending.status {
            p = p.with_child(Element::new("status", CLIENT_NS).with_text(s.as_str()));
        }
        p
    }
}
