//! Back-end subscriptions (DESIGN.md §8): a watcher's home keeps ONE SIP subscription
//! (RFC 6665, event package `presence`, RFC 3856) per remote presentity, at the presentity's
//! home as the directory names it, and fans its NOTIFYs out to every local watcher — XMPP
//! contacts as presence stanzas (RFC 8048 §4), SIP watchers as the PIDF the home composed —
//! as a resource list server does (RFC 4662 §5, without the list document). The subscription
//! ends when the last local watcher goes.
//!
//! The SUBSCRIBE is `From: sip:cluster@<domain>`, signed with the cluster secret over Call-ID
//! and CSeq (DESIGN.md §5), with a Contact naming the presentity at this node so NOTIFYs reach
//! the shard that owns it. A failed or terminated subscription shows the presentity as
//! unavailable and is made again where the directory points then (`deactivated`: at once,
//! RFC 6665 §4.1.3); a directory change or a dead node moves it the same way.
//!
//! The remote presence is mirrored into this node's routing table as detached
//! pseudo-resources, so probes at a watcher's initial presence are answered from it.
//!
//! `BackendState` owns the subscriptions and their refresh and retry timers (time is
//! passed in) and returns what it sends as `BackendFx`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tracing::{debug, info};

use super::context::{reply, Ctx, Outgoing, Reply, Requester};
use super::routes::{ResourceRoute, Sink};
use super::sip::state::OFFLINE_TUPLE;
use super::wire::wire;
use crate::cluster::ccmp;
use crate::cluster::dialog::signed_material;
use crate::cluster::view::NodeAddrs;
use crate::pidf::{self, xmpp::XmppPresence, Presence};
use crate::sip::event::{Reason, SubscriptionState};
use crate::sip::message::{self, Method, NameAddr, Request, Response};
use crate::sip::timer::{TimerId, TimerQueue};
use crate::sip::transport::Peer;

/// What a back-end subscription asks for; refreshed at [`REFRESH_AT`] of what was granted.
const EXPIRES: u32 = 600;
/// Fraction of the granted duration after which the subscription is refreshed.
const REFRESH_AT: f64 = 0.8;
/// Wait before subscribing again after a failure that the directory does not explain.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(2);

/// A local user starts or stops watching a remote presentity (sent to the presentity's
/// shard by the watcher's).
#[derive(Message)]
#[rtype(result = "()")]
pub struct BackendWatch {
    /// Localpart of the remote presentity.
    pub presentity: String,
    /// Localpart of the local watcher.
    pub watcher: String,
    /// Start (true) or stop.
    pub on: bool,
}

/// The directory changed `user`'s home (moved, placed, or forgotten): the back-end
/// subscriptions of this node to that user follow it (DESIGN.md §7, §8).
#[derive(Message)]
#[rtype(result = "()")]
pub struct HomeChanged {
    /// Localpart.
    pub user: String,
}

/// Node `node` is dead or left: the presence of its users as seen here goes unavailable and
/// the back-end subscriptions to it are made again where the directory now points.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NodeDown {
    /// Node id.
    pub node: String,
}

/// What the back-end subscriptions do to the outside, performed by the shard shell in
/// order.
pub(crate) enum BackendFx {
    /// A SUBSCRIBE to send (initial, refresh, or `Expires: 0`).
    Request(Outgoing),
    /// Presence (`from` set, no `to`) for every available resource of a local watcher.
    FanOut {
        /// Localpart of the watcher.
        user: String,
        /// The presence stanza.
        bytes: Bytes,
    },
    /// The presentity's state as seen here changed: tell its SIP watchers.
    NotifyWatchers(String),
    /// Then make the subscription again where the directory points ([`BackendState::retarget`]),
    /// once the watchers were told what they see now.
    Retarget(String),
    /// Then show the presentity as unreachable and try again later ([`BackendState::lost`]),
    /// once the watchers were told what the last NOTIFY said.
    Lost(String),
}

/// One back-end subscription.
struct BackSub {
    /// The node it is with, and its SIP address.
    node: String,
    peer: std::net::SocketAddr,
    call_id: String,
    from_tag: String,
    /// The notifier's tag, once its 200 or first NOTIFY came.
    to_tag: Option<String>,
    cseq: u32,
    /// Request-URI of in-dialog requests (the notifier's Contact once known).
    target: String,
    /// Local XMPP users watching the presentity.
    watchers: BTreeSet<String>,
    /// The resources shown to them, by resourcepart.
    shown: BTreeMap<String, XmppPresence>,
    /// The last PIDF document, as the home composed it, for local SIP watchers; `None` until
    /// the home's first NOTIFY.
    body: Option<Bytes>,
    /// Refresh or retry timer.
    timer: Option<TimerId>,
}

/// The back-end subscriptions of one shard (keyed by presentity localpart).
#[derive(Default)]
pub(crate) struct BackendState {
    subs: HashMap<String, BackSub>,
    /// Call-ID -> presentity, for NOTIFYs and responses.
    by_call: HashMap<String, String>,
    /// Refresh and retry timers, by presentity.
    timers: TimerQueue<String>,
}

impl BackendState {
    /// Whether a back-end subscription uses Call-ID `call_id`.
    pub(crate) fn owns(&self, call_id: &str) -> bool {
        self.by_call.contains_key(call_id)
    }

    /// The PIDF of a remote presentity as its home last sent it, if we watch it.
    ///
    /// Empty while the home has not sent its first NOTIFY: the state is not known yet, and a
    /// SIP watcher's first NOTIFY then has no body (RFC 6665 §4.2.1.2 allows an empty one)
    /// rather than a `closed` that the home's state would contradict milliseconds later.
    pub(crate) fn body(&self, presentity: &str) -> Option<Bytes> {
        let sub = self.subs.get(presentity)?;
        Some(sub.body.clone().unwrap_or_default())
    }

    /// When the next refresh or retry is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    fn schedule(&mut self, cx: &Ctx<'_>, after: Duration, presentity: &str) -> TimerId {
        self.timers.schedule(cx.now + after, presentity.to_string())
    }

    fn cancel(&mut self, id: Option<TimerId>) {
        if let Some(id) = id {
            self.timers.cancel(id);
        }
    }

    /// `watcher` (a local XMPP user) starts or stops watching `presentity`.
    pub(crate) fn watch(
        &mut self,
        cx: &Ctx<'_>,
        msg: BackendWatch,
        sip_watchers: bool,
        fx: &mut Vec<BackendFx>,
    ) {
        let BackendWatch {
            presentity,
            watcher,
            on,
        } = msg;
        if on {
            if cx.remote_home(&presentity).is_none() {
                return; // homed here after all: local broadcast serves it
            }
            let bare = cx.bare(&presentity).to_string();
            match self.subs.get_mut(&presentity) {
                Some(sub) => {
                    if !sub.watchers.insert(watcher.clone()) {
                        return;
                    }
                    // What the others already see (RFC 6121 §4.3.2 probe answer).
                    for p in sub.shown.values().filter(|p| p.available) {
                        let el = pidf::xmpp::to_stanza(&format!("{bare}/{}", p.resource), p);
                        fx.push(BackendFx::FanOut {
                            user: watcher.clone(),
                            bytes: wire(&el),
                        });
                    }
                }
                None => self.start(cx, &presentity, [watcher].into(), fx),
            }
        } else {
            let Some(sub) = self.subs.get_mut(&presentity) else {
                return;
            };
            if !sub.watchers.remove(&watcher) {
                return;
            }
            // The watcher no longer sees the presentity (RFC 6121 §3.2.2).
            for bytes in unavailable_shown(cx, &presentity, &sub.shown) {
                fx.push(BackendFx::FanOut {
                    user: watcher.clone(),
                    bytes,
                });
            }
            self.gc(cx, &presentity, sip_watchers, fx);
        }
    }

    /// A local SIP watcher subscribed to a remote presentity: make sure it is watched.
    pub(crate) fn for_sip(&mut self, cx: &Ctx<'_>, presentity: &str, fx: &mut Vec<BackendFx>) {
        if cx.remote_home(presentity).is_some() && !self.subs.contains_key(presentity) {
            self.start(cx, presentity, BTreeSet::new(), fx);
        }
    }

    /// Ends the subscription to `presentity` when no local watcher is left (`sip_watchers`:
    /// whether SIP dialogs here still watch it).
    pub(crate) fn gc(
        &mut self,
        cx: &Ctx<'_>,
        presentity: &str,
        sip_watchers: bool,
        fx: &mut Vec<BackendFx>,
    ) {
        let needed = self
            .subs
            .get(presentity)
            .is_some_and(|s| !s.watchers.is_empty() || sip_watchers);
        if !needed {
            self.stop(cx, presentity, fx);
        }
    }

    fn start(
        &mut self,
        cx: &Ctx<'_>,
        presentity: &str,
        watchers: BTreeSet<String>,
        fx: &mut Vec<BackendFx>,
    ) {
        let Some(home) = cx.remote_home(presentity) else {
            return;
        };
        let sub = new_backsub(presentity, &home, watchers, BTreeMap::new());
        self.by_call.insert(sub.call_id.clone(), presentity.into());
        self.subs.insert(presentity.to_string(), sub);
        self.subscribe(cx, presentity, EXPIRES, fx);
    }

    /// Sends SUBSCRIBE (initial, refresh, or `expires` 0 to end) in the subscription's dialog.
    fn subscribe(&mut self, cx: &Ctx<'_>, presentity: &str, expires: u32, fx: &mut Vec<BackendFx>) {
        let Some(secret) = cx.secret() else {
            return;
        };
        let local = cx
            .sip_addr()
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let contact = cx.contact_uri(presentity, Peer::Tcp(local));
        let domain = cx.domain();
        let from = cx.cluster_from();
        let Some(sub) = self.subs.get_mut(presentity) else {
            return;
        };
        sub.cseq += 1;
        let cseq = format!("{} SUBSCRIBE", sub.cseq);
        let to = match &sub.to_tag {
            Some(t) => format!("<sip:{presentity}@{domain}>;tag={t}"),
            None => format!("<sip:{presentity}@{domain}>"),
        };
        let signature = ccmp::sign(secret, &signed_material(&sub.call_id, &cseq, b""));
        let headers = vec![
            ("From", format!("<{from}>;tag={}", sub.from_tag)),
            ("To", to),
            ("Call-ID", sub.call_id.clone()),
            ("CSeq", cseq),
            ("Contact", format!("<{contact}>")),
            ("Event", "presence".to_string()),
            ("Accept", pidf::CONTENT_TYPE.to_string()),
            ("Expires", expires.to_string()),
            (ccmp::SIGNATURE_HEADER, signature),
        ];
        debug!(shard = cx.index, %presentity, expires, "back-end SUBSCRIBE");
        fx.push(BackendFx::Request(Outgoing {
            peer: Peer::Tcp(sub.peer),
            method: Method::Subscribe,
            target: sub.target.clone(),
            headers,
            body: None,
            requester: Requester::Backend(sub.call_id.clone()),
        }));
    }

    /// Ends the subscription: unsubscribe, and the mirrored resources go.
    fn stop(&mut self, cx: &Ctx<'_>, presentity: &str, fx: &mut Vec<BackendFx>) {
        let Some(sub) = self.subs.get(presentity) else {
            return;
        };
        if sub.to_tag.is_some() {
            self.subscribe(cx, presentity, 0, fx);
        }
        if let Some(sub) = self.subs.remove(presentity) {
            self.cancel(sub.timer);
            // Keep the Call-ID known until the unsubscribe's final NOTIFY is answered.
            drop_mirror(cx, presentity);
            debug!(shard = cx.index, %presentity, "back-end subscription ended");
        }
    }

    /// A response to one of our SUBSCRIBEs: learn the dialog, schedule the refresh.
    pub(crate) fn response(&mut self, cx: &Ctx<'_>, call_id: &str, resp: &Response) {
        if !(200..300).contains(&resp.status) {
            return;
        }
        let Some(presentity) = self.by_call.get(call_id).cloned() else {
            return;
        };
        let Some(sub) = self.subs.get_mut(&presentity) else {
            return;
        };
        if sub.call_id != call_id {
            return;
        }
        if sub.to_tag.is_none() {
            sub.to_tag = resp.base.to.tag().map(str::to_string);
        }
        if let Some(c) = resp.header("Contact").and_then(|c| NameAddr::parse(c).ok()) {
            sub.target = c.uri;
        }
        let granted = resp
            .header("Expires")
            .and_then(|e| e.trim().parse::<u32>().ok())
            .unwrap_or(EXPIRES);
        let old = sub.timer.take();
        self.cancel(old);
        if granted > 0 {
            let after = Duration::from_secs_f64(f64::from(granted) * REFRESH_AT);
            let id = self.schedule(cx, after, &presentity);
            if let Some(sub) = self.subs.get_mut(&presentity) {
                sub.timer = Some(id);
            }
        }
    }

    /// The final outcome of one of our SUBSCRIBEs (`None`: timeout or transport error).
    pub(crate) fn done(
        &mut self,
        cx: &Ctx<'_>,
        call_id: &str,
        status: Option<u16>,
        fx: &mut Vec<BackendFx>,
    ) {
        if matches!(status, Some(200..=299)) {
            return;
        }
        let Some(presentity) = self.by_call.get(call_id).cloned() else {
            return;
        };
        match self.subs.get(&presentity) {
            Some(sub) if sub.call_id == call_id => {}
            _ => {
                self.by_call.remove(call_id);
                return; // an unsubscribe, or a dialog already replaced
            }
        }
        info!(shard = cx.index, %presentity, ?status, "back-end subscription failed");
        self.lost(cx, &presentity, Some(RETRY_AFTER), fx);
    }

    /// The presentity cannot be watched where it was: its watchers see it unavailable and
    /// a new subscription is made after `retry` (at once with `None`) where the directory
    /// points then.
    pub(crate) fn lost(
        &mut self,
        cx: &Ctx<'_>,
        presentity: &str,
        retry: Option<Duration>,
        fx: &mut Vec<BackendFx>,
    ) {
        let closed = closed_body(cx, presentity);
        let Some(sub) = self.subs.get_mut(presentity) else {
            return;
        };
        let gone = unavailable_shown(cx, presentity, &sub.shown);
        let watchers: Vec<String> = sub.watchers.iter().cloned().collect();
        sub.shown.clear();
        // Known now: unreachable, shown closed until the next subscription says otherwise.
        sub.body = Some(closed);
        let old = sub.timer.take();
        self.cancel(old);
        drop_mirror(cx, presentity);
        for w in &watchers {
            for bytes in &gone {
                fx.push(BackendFx::FanOut {
                    user: w.clone(),
                    bytes: bytes.clone(),
                });
            }
        }
        fx.push(BackendFx::NotifyWatchers(presentity.to_string()));
        match retry {
            None => fx.push(BackendFx::Retarget(presentity.to_string())),
            Some(after) => {
                let id = self.schedule(cx, after, presentity);
                if let Some(sub) = self.subs.get_mut(presentity) {
                    sub.timer = Some(id);
                    sub.to_tag = None; // the next attempt is a new dialog
                }
            }
        }
    }

    /// Makes the subscription again where the directory points now: a new dialog at the new
    /// home (the old one is ended), or none when the presentity is homed here now. What the
    /// watchers see stays until the new home's first NOTIFY says otherwise.
    pub(crate) fn retarget(&mut self, cx: &Ctx<'_>, presentity: &str, fx: &mut Vec<BackendFx>) {
        let Some(old) = self.subs.get(presentity) else {
            return;
        };
        let home = cx.remote_home(presentity);
        let same = home
            .as_ref()
            .is_some_and(|h| h.id == old.node && old.to_tag.is_some());
        if same {
            return;
        }
        if old.to_tag.is_some() {
            self.subscribe(cx, presentity, 0, fx);
        }
        let Some(old) = self.subs.remove(presentity) else {
            return;
        };
        self.cancel(old.timer);
        match home {
            None => {
                // Homed here now: its own sessions will be broadcast from here.
                let gone = unavailable_shown(cx, presentity, &old.shown);
                drop_mirror(cx, presentity);
                for w in &old.watchers {
                    for bytes in &gone {
                        fx.push(BackendFx::FanOut {
                            user: w.clone(),
                            bytes: bytes.clone(),
                        });
                    }
                }
            }
            Some(home) => {
                let sub = new_backsub(presentity, &home, old.watchers, old.shown);
                info!(shard = cx.index, %presentity, node = %home.id, "back-end subscription follows the directory");
                self.by_call.insert(sub.call_id.clone(), presentity.into());
                self.subs.insert(presentity.to_string(), sub);
                self.subscribe(cx, presentity, EXPIRES, fx);
            }
        }
    }

    /// Runs the refresh and retry timers that are due at `cx.now`.
    pub(crate) fn timers_due(&mut self, cx: &Ctx<'_>, fx: &mut Vec<BackendFx>) {
        for (_, presentity) in self.timers.pop_due(cx.now) {
            self.timer(cx, &presentity, fx);
        }
    }

    /// The refresh or retry timer of `presentity`'s subscription fired.
    fn timer(&mut self, cx: &Ctx<'_>, presentity: &str, fx: &mut Vec<BackendFx>) {
        let Some(sub) = self.subs.get_mut(presentity) else {
            return;
        };
        sub.timer = None;
        if sub.to_tag.is_some() {
            self.subscribe(cx, presentity, EXPIRES, fx);
        } else {
            let old = sub.call_id.clone();
            self.by_call.remove(&old);
            if let Some(sub) = self.subs.get_mut(presentity) {
                sub.node.clear(); // force a new dialog
            }
            self.retarget(cx, presentity, fx);
        }
    }

    /// A node died: every subscription with it shows its presentity unavailable and is made
    /// again where the directory points (the primary, until the user is placed anew).
    pub(crate) fn node_down(&mut self, cx: &Ctx<'_>, node: &str, fx: &mut Vec<BackendFx>) {
        let lost: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| s.node == node)
            .map(|(p, _)| p.clone())
            .collect();
        for p in lost {
            if let Some(sub) = self.subs.get_mut(&p) {
                sub.to_tag = None; // nobody is left to unsubscribe from
                sub.node.clear();
            }
            self.lost(cx, &p, None, fx);
        }
    }

    /// A NOTIFY in one of our back-end subscriptions (RFC 6665 §4.1.3); the answer to send
    /// before the effects.
    pub(crate) fn notify(&mut self, cx: &Ctx<'_>, req: &Request, fx: &mut Vec<BackendFx>) -> Reply {
        let call_id = req.base.call_id.clone();
        let Some(presentity) = self.by_call.get(&call_id).cloned() else {
            return reply(req, 481, "Subscription Does Not Exist", &[]);
        };
        let state = req
            .header("Subscription-State")
            .map(SubscriptionState::parse);
        let Some(Ok(state)) = state else {
            return reply(req, 400, "Bad Subscription-State", &[]);
        };
        let ok = reply(req, 200, "OK", &[]);
        let current = self
            .subs
            .get(&presentity)
            .is_some_and(|s| s.call_id == call_id);
        if !current {
            // The final NOTIFY of a dialog we ended or replaced.
            if matches!(state, SubscriptionState::Terminated { .. }) {
                self.by_call.remove(&call_id);
            }
            return ok;
        }
        if let Some(sub) = self.subs.get_mut(&presentity) {
            if sub.to_tag.is_none() {
                sub.to_tag = req.base.from.tag().map(str::to_string);
            }
        }
        if !req.body().is_empty() {
            self.apply(cx, &presentity, Bytes::copy_from_slice(req.body()), fx);
        }
        if let SubscriptionState::Terminated { reason, .. } = state {
            self.by_call.remove(&call_id);
            if let Some(sub) = self.subs.get_mut(&presentity) {
                sub.to_tag = None;
                sub.node.clear();
            }
            info!(shard = cx.index, %presentity, reason = ?reason.map(|r| r.token()), "back-end subscription terminated by the notifier");
            // After the watchers saw what this NOTIFY said.
            match reason {
                // The user moved (DESIGN.md §7): subscribe again at once, at the new home.
                Some(Reason::Deactivated) | Some(Reason::Timeout) => {
                    fx.push(BackendFx::Retarget(presentity))
                }
                _ => fx.push(BackendFx::Lost(presentity)),
            }
        }
        ok
    }

    /// A PIDF document from the presentity's home: show what changed to the watchers.
    fn apply(&mut self, cx: &Ctx<'_>, presentity: &str, body: Bytes, fx: &mut Vec<BackendFx>) {
        let doc = match Presence::parse_limited(&body, cx.settings.limits.max_pidf_bytes) {
            Ok(d) => d,
            Err(e) => {
                info!(shard = cx.index, %presentity, error = %e, "bad PIDF in a back-end NOTIFY");
                return;
            }
        };
        let now: BTreeMap<String, XmppPresence> = pidf::xmpp::from_pidf(&doc)
            .into_iter()
            .map(|p| (p.resource.clone(), p))
            .collect();
        let bare = cx.bare(presentity).to_string();
        let Some(sub) = self.subs.get_mut(presentity) else {
            return;
        };
        sub.body = Some(body);
        let mut changed: Vec<Bytes> = Vec::new();
        for (resource, was) in &sub.shown {
            if was.available && !now.get(resource).is_some_and(|p| p.available) {
                let mut gone = was.clone();
                gone.available = false;
                changed.push(wire(&pidf::xmpp::to_stanza(
                    &format!("{bare}/{resource}"),
                    &gone,
                )));
            }
        }
        for (resource, p) in &now {
            if p.available && sub.shown.get(resource) != Some(p) {
                changed.push(wire(&pidf::xmpp::to_stanza(
                    &format!("{bare}/{resource}"),
                    p,
                )));
            }
        }
        sub.shown = now;
        let mirrored: Vec<ResourceRoute> = sub
            .shown
            .values()
            .filter(|p| p.available)
            .map(|p| ResourceRoute {
                resource: p.resource.clone(),
                session_id: 0,
                sink: Sink::Sip,
                presence: Some(wire(&pidf::xmpp::to_stanza(
                    &format!("{bare}/{}", p.resource),
                    p,
                ))),
                priority: p.priority,
                interested: false,
            })
            .collect();
        let mut routes = cx.routes.get(presentity).as_ref().clone();
        routes.retain(|r| !r.is_sip());
        routes.extend(mirrored);
        cx.routes.set(presentity, routes);
        for w in &sub.watchers {
            for bytes in &changed {
                fx.push(BackendFx::FanOut {
                    user: w.clone(),
                    bytes: bytes.clone(),
                });
            }
        }
        fx.push(BackendFx::NotifyWatchers(presentity.to_string()));
    }
}

fn new_backsub(
    presentity: &str,
    home: &NodeAddrs,
    watchers: BTreeSet<String>,
    shown: BTreeMap<String, XmppPresence>,
) -> BackSub {
    BackSub {
        node: home.id.clone(),
        peer: home.sip,
        call_id: message::new_tag() + &message::new_tag(),
        from_tag: message::new_tag(),
        to_tag: None,
        cseq: 0,
        target: format!("sip:{presentity}@{};transport=tcp", home.sip),
        watchers,
        shown,
        body: None,
        timer: None,
    }
}

/// The mirrored resources of a remote presentity leave the routing table.
fn drop_mirror(cx: &Ctx<'_>, presentity: &str) {
    let mut routes = cx.routes.get(presentity).as_ref().clone();
    routes.retain(|r| !r.is_sip());
    cx.routes.set(presentity, routes);
}

/// Unavailable presence from every resource in `shown` that is available.
fn unavailable_shown(
    cx: &Ctx<'_>,
    presentity: &str,
    shown: &BTreeMap<String, XmppPresence>,
) -> Vec<Bytes> {
    let bare = cx.bare(presentity).to_string();
    shown
        .values()
        .filter(|p| p.available)
        .map(|p| {
            let mut gone = p.clone();
            gone.available = false;
            wire(&pidf::xmpp::to_stanza(
                &format!("{bare}/{}", p.resource),
                &gone,
            ))
        })
        .collect()
}

/// One closed tuple: what a remote presentity looks like before its home has spoken.
fn closed_body(cx: &Ctx<'_>, presentity: &str) -> Bytes {
    let entity = format!("pres:{presentity}@{}", cx.domain());
    let doc = Presence {
        entity,
        tuples: vec![pidf::Tuple::closed(OFFLINE_TUPLE)],
        ..Default::default()
    };
    Bytes::from(doc.to_xml())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::testkit::{answer, outgoing_request, World};

    fn watch(b: &mut BackendState, w: &World, watcher: &str, on: bool) -> Vec<BackendFx> {
        let mut fx = Vec::new();
        let msg = BackendWatch {
            presentity: "bob".into(),
            watcher: watcher.into(),
            on,
        };
        b.watch(&w.cx(), msg, false, &mut fx);
        fx
    }

    /// The SUBSCRIBEs among the effects.
    fn subscribes(fx: &[BackendFx]) -> Vec<Request> {
        fx.iter()
            .filter_map(|e| match e {
                BackendFx::Request(out) => {
                    assert_eq!(out.method, Method::Subscribe);
                    assert!(matches!(out.requester, Requester::Backend(_)));
                    Some(outgoing_request(out))
                }
                _ => None,
            })
            .collect()
    }

    fn expires(r: &Request) -> &str {
        r.header("Expires").unwrap()
    }

    /// The home answers a SUBSCRIBE `200`, tagging the dialog.
    fn accepted(b: &mut BackendState, w: &World, sub: &Request) {
        let resp = answer(sub, 200, "home-tag", &[("Expires", "600")]);
        b.response(&w.cx(), &sub.base.call_id, &resp);
    }

    /// alice and carol (of node n1) watch bob, homed on n2.
    fn world() -> World {
        let w = World::clustered();
        w.view.as_ref().unwrap().set_home("bob", "n2");
        w
    }

    #[test]
    fn one_backend_subscribe_per_remote_presentity_design_8() {
        let w = world();
        let mut b = BackendState::default();
        let subs = subscribes(&watch(&mut b, &w, "alice", true));
        assert_eq!(subs.len(), 1, "the first local watcher subscribes");
        let sub = &subs[0];
        assert_eq!(
            sub.uri().to_string(),
            "sip:bob@192.0.2.2:5060;transport=tcp"
        );
        assert_eq!(expires(sub), "600");
        assert!(sub.base.from.uri.starts_with("sip:cluster@"));
        assert!(sub.header(ccmp::SIGNATURE_HEADER).is_some());
        assert!(b.owns(&sub.base.call_id));
        // A second local watcher shares it.
        assert!(subscribes(&watch(&mut b, &w, "carol", true)).is_empty());
        // Its state is empty until the home's first NOTIFY.
        assert_eq!(b.body("bob"), Some(Bytes::new()));
    }

    #[test]
    fn a_home_change_moves_the_subscription_design_7() {
        let w = world();
        let mut b = BackendState::default();
        let first = subscribes(&watch(&mut b, &w, "alice", true)).remove(0);
        accepted(&mut b, &w, &first);
        // The refresh is due at 80 % of what was granted.
        assert!(b.next_deadline().is_some());

        w.view.as_ref().unwrap().set_home("bob", "n3");
        let mut fx = Vec::new();
        b.retarget(&w.cx(), "bob", &mut fx);
        let subs = subscribes(&fx);
        assert_eq!(
            subs.len(),
            2,
            "an unsubscribe at the old home, a SUBSCRIBE at the new"
        );
        assert_eq!(expires(&subs[0]), "0");
        assert_eq!(subs[0].base.call_id, first.base.call_id);
        assert_eq!(subs[0].base.to.tag(), Some("home-tag"));
        assert_eq!(expires(&subs[1]), "600");
        assert_eq!(
            subs[1].uri().to_string(),
            "sip:bob@192.0.2.3:5060;transport=tcp"
        );
        assert_ne!(subs[1].base.call_id, first.base.call_id);
        // The same home again: nothing to do.
        accepted(&mut b, &w, &subs[1]);
        let mut fx = Vec::new();
        b.retarget(&w.cx(), "bob", &mut fx);
        assert!(fx.is_empty());
    }

    #[test]
    fn the_last_watcher_gone_ends_the_subscription_design_8() {
        let w = world();
        let mut b = BackendState::default();
        let sub = subscribes(&watch(&mut b, &w, "alice", true)).remove(0);
        watch(&mut b, &w, "carol", true);
        accepted(&mut b, &w, &sub);
        assert!(subscribes(&watch(&mut b, &w, "alice", false)).is_empty());
        let subs = subscribes(&watch(&mut b, &w, "carol", false));
        assert_eq!(subs.len(), 1);
        assert_eq!(expires(&subs[0]), "0");
        assert_eq!(subs[0].base.call_id, sub.base.call_id);
        assert_eq!(b.body("bob"), None);
        assert!(
            b.next_deadline().is_none(),
            "the refresh timer went with it"
        );
    }

    #[test]
    fn notifies_are_fanned_out_and_refreshes_are_timed() {
        let mut w = world();
        let mut b = BackendState::default();
        let sub = subscribes(&watch(&mut b, &w, "alice", true)).remove(0);
        accepted(&mut b, &w, &sub);
        // The home's NOTIFY: alice sees bob, SIP watchers are told, the mirror is set.
        let doc = "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:bob@example.com'>\
            <tuple id='t1'><status><basic>open</basic></status></tuple></presence>";
        let notify = crate::sip::message::RequestBuilder::new(
            Method::Notify,
            "sip:bob@192.0.2.1:5060;transport=tcp",
        )
        .header("Via", "SIP/2.0/TCP 192.0.2.2:5060;branch=z9hG4bK-n1")
        .header("From", "<sip:bob@example.com>;tag=home-tag")
        .header("To", sub.header("From").unwrap())
        .header("Call-ID", sub.base.call_id.clone())
        .header("CSeq", "1 NOTIFY")
        .header("Event", "presence")
        .header("Subscription-State", "active;expires=600")
        .body(crate::pidf::CONTENT_TYPE, doc)
        .build();
        let notify = crate::presence::testkit::request(&notify);
        let mut fx = Vec::new();
        let r = b.notify(&w.cx(), &notify, &mut fx);
        assert_eq!(r.status, 200);
        assert!(
            matches!(&fx[..], [BackendFx::FanOut { user, .. }, BackendFx::NotifyWatchers(p)]
            if user == "alice" && p == "bob")
        );
        assert_eq!(b.body("bob").as_deref(), Some(doc.as_bytes()));
        assert!(w.routes.get("bob").iter().all(|r| r.is_sip()));
        assert_eq!(w.routes.get("bob").len(), 1);
        // At 80 % of the 600 s granted, the subscription is refreshed in its dialog.
        w.advance(Duration::from_secs(479));
        let mut fx = Vec::new();
        b.timers_due(&w.cx(), &mut fx);
        assert!(fx.is_empty());
        w.advance(Duration::from_secs(1));
        b.timers_due(&w.cx(), &mut fx);
        let subs = subscribes(&fx);
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].base.call_id, sub.base.call_id);
        assert_eq!(subs[0].base.to.tag(), Some("home-tag"));
        assert_eq!(subs[0].base.cseq.seq, sub.base.cseq.seq + 1);
    }

    #[test]
    fn a_dead_home_shows_the_presentity_closed_then_retargets() {
        let w = world();
        let mut b = BackendState::default();
        let sub = subscribes(&watch(&mut b, &w, "alice", true)).remove(0);
        accepted(&mut b, &w, &sub);
        w.view.as_ref().unwrap().set_home("bob", "n3");
        let mut fx = Vec::new();
        b.node_down(&w.cx(), "n2", &mut fx);
        // The watchers are told first (a closed document), then the subscription moves.
        assert!(matches!(
            &fx[..],
            [BackendFx::NotifyWatchers(_), BackendFx::Retarget(_)]
        ));
        let closed = b.body("bob").unwrap();
        assert!(String::from_utf8_lossy(&closed).contains("closed"));
        let mut fx = Vec::new();
        b.retarget(&w.cx(), "bob", &mut fx);
        let subs = subscribes(&fx);
        assert_eq!(
            subs.len(),
            1,
            "nobody is left to unsubscribe from at the dead node"
        );
        assert_eq!(
            subs[0].uri().to_string(),
            "sip:bob@192.0.2.3:5060;transport=tcp"
        );
    }
}
