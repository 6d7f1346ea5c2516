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
//! `HandoverState` keeps the users moving in and out and their deadlines (time is passed
//! in); the merge itself is the roster core's.
//!
//! [`Roster::merge3`]: crate::store::Roster::merge3

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tracing::{debug, info, warn};

use super::context::{local_user, reply, Ctx, Outgoing, Reply, Requester};
use super::relay::{signed, verify};
use super::roster::SubscriptionIn;
use crate::cluster::record::{self, UserRecord};
use crate::cluster::view::NodeAddrs;
use crate::sip::message::Request;
use crate::store::transfer;

/// On a `MESSAGE` carrying a user record (JSON): the old home's hand-over.
pub(crate) const RECORD_HEADER: &str = "Rendezvous-Record";

/// The media type of a handed-over record.
const RECORD_CONTENT_TYPE: &str = "application/json";

/// `user` is moving here from another node (DESIGN.md §7), and `base` is the record this
/// node took for it: the old home's hand-over is merged against it, and subscription
/// stanzas for the user wait for that hand-over.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Arriving {
    /// Localpart.
    pub user: String,
    /// The record as this node took it.
    pub base: UserRecord,
}

/// Moves in and out of this shard.
#[derive(Default)]
pub(crate) struct HandoverState {
    /// Users moving here whose hand-over has not arrived.
    arriving: HashMap<String, Arrival>,
    /// Users moving away whose XMPP sessions here have not all ended: their new home.
    leaving: HashMap<String, NodeAddrs>,
}

/// A user moving here.
pub(crate) struct Arrival {
    /// The record this node took when it reserved the user.
    pub(crate) base: UserRecord,
    /// Subscription stanzas for the user, in arrival order.
    pub(crate) waiting: Vec<SubscriptionIn>,
    /// When the node stops waiting for the hand-over (`limits.move_handover_ms`).
    deadline: Instant,
}

/// A handed-over record, checked and read.
pub(crate) struct RecordIn {
    /// Whose it is.
    pub(crate) user: String,
    /// The old home's copy.
    pub(crate) theirs: UserRecord,
    /// The arrival it ends, unless it came too late.
    pub(crate) arrival: Option<Arrival>,
}

impl HandoverState {
    /// `user` is moving here (again): its stanzas wait for the hand-over until `cx.now` plus
    /// `limits.move_handover_ms` (those already waiting keep waiting).
    pub(crate) fn arriving(&mut self, cx: &Ctx<'_>, msg: Arriving) {
        let wait = Duration::from_millis(cx.settings.limits.move_handover_ms);
        let waiting = self
            .arriving
            .remove(&msg.user)
            .map(|a| a.waiting)
            .unwrap_or_default();
        self.arriving.insert(
            msg.user,
            Arrival {
                base: msg.base,
                waiting,
                deadline: cx.now + wait,
            },
        );
    }

    /// When the next arrival stops waiting.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.arriving.values().map(|a| a.deadline).min()
    }

    /// The arrivals whose hand-over did not come in time: what waited for them is handled
    /// now, without it.
    pub(crate) fn expire(&mut self, cx: &Ctx<'_>) -> Vec<Arrival> {
        let due: Vec<String> = self
            .arriving
            .iter()
            .filter(|(_, a)| a.deadline <= cx.now)
            .map(|(u, _)| u.clone())
            .collect();
        let wait = Duration::from_millis(cx.settings.limits.move_handover_ms);
        due.into_iter()
            .filter_map(|user| {
                info!(shard = cx.index, %user, ?wait, "no hand-over from the old home: going on without it");
                self.arriving.remove(&user)
            })
            .collect()
    }

    /// Keeps `msg` back while its addressee's hand-over is awaited; gives it back otherwise
    /// (and when `max` wait already).
    pub(crate) fn hold(&mut self, msg: SubscriptionIn, max: usize) -> Option<SubscriptionIn> {
        match self.arriving.get_mut(&msg.to) {
            Some(a) if a.waiting.len() < max => {
                a.waiting.push(msg);
                None
            }
            _ => Some(msg),
        }
    }

    /// On the node a user leaves: the record goes to the new home `to` once the user's
    /// `sessions` XMPP sessions here (which may still handle what their clients sent) are
    /// gone; the hand-over to send now, if there are none.
    pub(crate) fn leaving(
        &mut self,
        cx: &Ctx<'_>,
        user: &str,
        to: &NodeAddrs,
        sessions: usize,
    ) -> Option<Outgoing> {
        if sessions == 0 {
            self.leaving.remove(user);
            hand_over_record(cx, user, to)
        } else {
            self.leaving.insert(user.to_string(), to.clone());
            None
        }
    }

    /// The last XMPP session of `user` here ended: its hand-over, if it is leaving.
    pub(crate) fn sessions_ended(&mut self, cx: &Ctx<'_>, user: &str) -> Option<Outgoing> {
        let to = self.leaving.remove(user)?;
        hand_over_record(cx, user, &to)
    }

    /// At the new home: the old home's record, checked, with the arrival it ends. Refused
    /// with the answer to send when it is not signed by the cluster, names no user, does not
    /// parse or the user is not homed here.
    pub(crate) fn record_in(&mut self, cx: &Ctx<'_>, req: &Request) -> Result<RecordIn, Reply> {
        verify(cx, req, "handed-over record")?;
        let Some(user) = local_user(&req.base.to.uri) else {
            return Err(reply(req, 400, "Bad Request (no user)", &[]));
        };
        let theirs = match record::decode(req.body()) {
            Ok(r) => r,
            Err(e) => {
                info!(shard = cx.index, %user, error = %e, "bad handed-over record");
                return Err(reply(req, 400, "Bad Request (record)", &[]));
            }
        };
        if cx.remote_home(&user).is_some() {
            return Err(reply(req, 404, "Not Found (not homed here)", &[]));
        }
        // Without the copy the move started from (it came too late), only what this node
        // lacks is taken.
        let arrival = self.arriving.remove(&user);
        if arrival.is_none() {
            info!(shard = cx.index, %user, "late hand-over: only what is missing here is taken");
        }
        Ok(RecordIn {
            user,
            theirs,
            arrival,
        })
    }
}

/// The signed MESSAGE carrying `user`'s record to its new home `to`.
fn hand_over_record(cx: &Ctx<'_>, user: &str, to: &NodeAddrs) -> Option<Outgoing> {
    let record = match transfer::export(cx.store, user) {
        Ok(Some(r)) => r,
        Ok(None) => return None,
        Err(e) => {
            warn!(shard = cx.index, %user, error = %e, "record not handed over: store read failed");
            return None;
        }
    };
    debug!(shard = cx.index, %user, node = %to.id, "record handed over");
    let body = Bytes::from(record::encode(&record));
    let header = (RECORD_HEADER, "hand-over".to_string());
    signed(
        cx,
        to,
        user,
        RECORD_CONTENT_TYPE,
        body,
        vec![header],
        Requester::Relay(None),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::testkit::{node, outgoing_request, World};
    use crate::xml::{Element, CLIENT_NS};
    use crate::xmpp::jid::Jid;
    use crate::xmpp::subscription::SubKind;

    /// A subscription request from `from` to alice.
    fn request_from(from: &str) -> SubscriptionIn {
        SubscriptionIn {
            to: "alice".into(),
            from: Jid::parse(&format!("{from}@example.com")).unwrap(),
            kind: SubKind::Subscribe,
            stanza: Element::new("presence", CLIENT_NS).with_attr("type", "subscribe"),
            then_presence: Vec::new(),
        }
    }

    fn arriving(h: &mut HandoverState, w: &World) {
        let msg = Arriving {
            user: "alice".into(),
            base: UserRecord::default(),
        };
        h.arriving(&w.cx(), msg);
    }

    /// The old home's hand-over of alice's record, as it sends it.
    fn hand_over_out(w: &World) -> Outgoing {
        let body = Bytes::from(record::encode(&UserRecord::default()));
        let header = (RECORD_HEADER, "hand-over".to_string());
        signed(
            &w.cx(),
            &node("n1"),
            "alice",
            RECORD_CONTENT_TYPE,
            body,
            vec![header],
            Requester::Relay(None),
        )
        .unwrap()
    }

    fn hand_over(w: &World) -> Request {
        outgoing_request(&hand_over_out(w))
    }

    fn senders(waiting: &[SubscriptionIn]) -> Vec<String> {
        waiting.iter().map(|m| m.from.to_string()).collect()
    }

    #[test]
    fn stanzas_wait_for_the_hand_over_and_are_released_by_it_design_7() {
        let w = World::clustered();
        let mut h = HandoverState::default();
        arriving(&mut h, &w);
        assert!(h.hold(request_from("bob"), 10).is_none(), "held");
        assert!(
            h.hold(request_from("carol"), 10).is_none(),
            "held, in order"
        );
        // Stanzas for users not moving pass.
        let mut other = request_from("bob");
        other.to = "dave".into();
        assert!(h.hold(other, 10).is_some());

        let RecordIn { user, arrival, .. } = h.record_in(&w.cx(), &hand_over(&w)).ok().unwrap();
        assert_eq!(user, "alice");
        let arrival = arrival.expect("the arrival it ends");
        assert_eq!(
            senders(&arrival.waiting),
            ["bob@example.com", "carol@example.com"]
        );
        // Settled: nothing waits any more.
        assert!(h.hold(request_from("bob"), 10).is_some());
        assert!(h.next_deadline().is_none());
        // A late hand-over finds no arrival: only what is missing is taken.
        let late = h.record_in(&w.cx(), &hand_over(&w)).ok().unwrap();
        assert!(late.arrival.is_none());
    }

    #[test]
    fn stanzas_are_released_when_no_hand_over_comes_in_time() {
        let mut w = World::clustered();
        let mut h = HandoverState::default();
        arriving(&mut h, &w);
        assert!(h.hold(request_from("bob"), 10).is_none());
        let wait = Duration::from_millis(w.settings.limits.move_handover_ms);
        assert_eq!(h.next_deadline(), Some(w.now + wait));
        w.advance(wait - Duration::from_millis(1));
        assert!(h.expire(&w.cx()).is_empty());
        w.advance(Duration::from_millis(1));
        let released = h.expire(&w.cx());
        assert_eq!(released.len(), 1);
        assert_eq!(senders(&released[0].waiting), ["bob@example.com"]);
        assert!(h.hold(request_from("bob"), 10).is_some());
    }

    #[test]
    fn too_many_waiting_pass_and_a_new_arrival_keeps_what_waits() {
        let mut w = World::clustered();
        let mut h = HandoverState::default();
        arriving(&mut h, &w);
        assert!(h.hold(request_from("bob"), 1).is_none());
        assert!(h.hold(request_from("carol"), 1).is_some(), "over the cap");
        // Arriving again (another move) restarts the wait and keeps the waiting stanza.
        w.advance(Duration::from_millis(10));
        arriving(&mut h, &w);
        let wait = Duration::from_millis(w.settings.limits.move_handover_ms);
        assert_eq!(h.next_deadline(), Some(w.now + wait));
        w.advance(wait);
        assert_eq!(senders(&h.expire(&w.cx())[0].waiting), ["bob@example.com"]);
    }

    #[test]
    fn a_record_is_refused_unsigned_or_for_a_user_homed_elsewhere() {
        let w = World::clustered();
        let mut h = HandoverState::default();
        let req = hand_over(&w);
        w.view.as_ref().unwrap().set_home("alice", "n2");
        assert_eq!(h.record_in(&w.cx(), &req).err().unwrap().status, 404);
        w.view.as_ref().unwrap().set_home("alice", "n1");
        let mut forged = hand_over_out(&w);
        forged.body = Some((
            RECORD_CONTENT_TYPE,
            Bytes::from_static(b"{\"roster\":[49]}"),
        ));
        let req = outgoing_request(&forged);
        assert_eq!(h.record_in(&w.cx(), &req).err().unwrap().status, 403);
    }

    #[test]
    fn the_last_session_gone_sends_the_record_to_the_new_home() {
        let w = World::clustered();
        w.account("alice");
        let mut h = HandoverState::default();
        assert!(h.leaving(&w.cx(), "alice", &node("n2"), 1).is_none());
        let out = h.sessions_ended(&w.cx(), "alice").expect("the hand-over");
        let req = outgoing_request(&out);
        assert_eq!(
            req.uri().to_string(),
            "sip:alice@192.0.2.2:5060;transport=tcp"
        );
        assert_eq!(req.header(RECORD_HEADER), Some("hand-over"));
        assert!(record::decode(req.body()).unwrap().account.is_some());
        assert!(h.sessions_ended(&w.cx(), "alice").is_none(), "once");
    }
}
