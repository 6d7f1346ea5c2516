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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tracing::{debug, info};

use super::routes::ResourceRoute;
use super::shard::{wire, PresenceShard};
use super::sip::{Purpose, SipTimer};
use crate::cluster::ccmp;
use crate::cluster::dialog::signed_material;
use crate::cluster::view::NodeAddrs;
use crate::pidf::{self, xmpp::XmppPresence, Presence};
use crate::sip::event::{Reason, SubscriptionState};
use crate::sip::message::{self, Method, NameAddr, Request, RequestBuilder, Response};
use crate::sip::timer::TimerId;
use crate::sip::transaction::Key;
use crate::sip::transport::Peer;
use crate::xmpp::connection::Outbox;

/// What a back-end subscription asks for; refreshed at [`REFRESH_AT`] of what was granted.
const EXPIRES: u32 = 600;
/// Fraction of the granted duration after which the subscription is refreshed.
const REFRESH_AT: f64 = 0.8;
/// Wait before subscribing again after a failure that the directory does not explain.
const RETRY_AFTER: Duration = Duration::from_secs(2);

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
pub struct BackendState {
    subs: HashMap<String, BackSub>,
    /// Call-ID -> presentity, for NOTIFYs and responses.
    by_call: HashMap<String, String>,
}

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

impl PresenceShard {
    /// Whether a back-end subscription uses Call-ID `call_id`.
    pub(super) fn backend_owns(&self, call_id: &str) -> bool {
        self.backend.by_call.contains_key(call_id)
    }

    /// The PIDF of a remote presentity as its home last sent it, if we watch it.
    ///
    /// Empty while the home has not sent its first NOTIFY: the state is not known yet, and a
    /// SIP watcher's first NOTIFY then has no body (RFC 6665 §4.2.1.2 allows an empty one)
    /// rather than a `closed` that the home's state would contradict milliseconds later.
    pub(super) fn backend_body(&self, presentity: &str) -> Option<Bytes> {
        let sub = self.backend.subs.get(presentity)?;
        Some(sub.body.clone().unwrap_or_default())
    }

    /// `watcher` (a local XMPP user) starts or stops watching `presentity`.
    pub(super) fn backend_watch(&mut self, presentity: &str, watcher: &str, on: bool) {
        if on {
            if self.remote_home(presentity).is_none() {
                return; // homed here after all: local broadcast serves it
            }
            let bare = self.bare(presentity).to_string();
            match self.backend.subs.get_mut(presentity) {
                Some(sub) => {
                    if !sub.watchers.insert(watcher.to_string()) {
                        return;
                    }
                    // What the others already see (RFC 6121 §4.3.2 probe answer).
                    let current: Vec<Bytes> = sub
                        .shown
                        .values()
                        .filter(|p| p.available)
                        .map(|p| wire(&pidf::xmpp::to_stanza(&format!("{bare}/{}", p.resource), p)))
                        .collect();
                    for bytes in current {
                        self.fan_out_to_user(&bytes, watcher);
                    }
                }
                None => {
                    self.backend_start(presentity, [watcher.to_string()].into());
                }
            }
        } else {
            let Some(sub) = self.backend.subs.get_mut(presentity) else {
                return;
            };
            if !sub.watchers.remove(watcher) {
                return;
            }
            // The watcher no longer sees the presentity (RFC 6121 §3.2.2).
            for bytes in unavailable_of(self, presentity) {
                self.fan_out_to_user(&bytes, watcher);
            }
            self.backend_gc(presentity);
        }
    }

    /// A local SIP watcher subscribed to a remote presentity: make sure it is watched.
    pub(super) fn backend_for_sip(&mut self, presentity: &str) {
        if self.remote_home(presentity).is_some() && !self.backend.subs.contains_key(presentity) {
            self.backend_start(presentity, BTreeSet::new());
        }
    }

    /// Ends the subscription to `presentity` when no local watcher is left.
    pub(super) fn backend_gc(&mut self, presentity: &str) {
        let sip_watchers = self
            .sip
            .presentities
            .get(presentity)
            .is_some_and(|p| !p.watchers.is_empty());
        let needed = self
            .backend
            .subs
            .get(presentity)
            .is_some_and(|s| !s.watchers.is_empty() || sip_watchers);
        if !needed {
            self.backend_stop(presentity);
        }
    }

    fn backend_start(&mut self, presentity: &str, watchers: BTreeSet<String>) {
        let Some(home) = self.remote_home(presentity) else {
            return;
        };
        let sub = self.new_backsub(presentity, &home, watchers, BTreeMap::new());
        self.backend
            .by_call
            .insert(sub.call_id.clone(), presentity.into());
        self.backend.subs.insert(presentity.to_string(), sub);
        self.send_backend_subscribe(presentity, EXPIRES);
    }

    fn new_backsub(
        &self,
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

    /// Sends SUBSCRIBE (initial, refresh, or `expires` 0 to end) in the subscription's dialog.
    fn send_backend_subscribe(&mut self, presentity: &str, expires: u32) {
        let Some(secret) = self.hub.cluster.get().map(|c| c.secret.clone()) else {
            return;
        };
        let domain = self.hub.settings.domain.clone();
        let from = self.cluster_from();
        let branch = self.new_branch();
        let contact = self.contact_uri(presentity, Peer::Tcp(self.local_sip_addr()));
        let Some(sub) = self.backend.subs.get_mut(presentity) else {
            return;
        };
        sub.cseq += 1;
        let peer = Peer::Tcp(sub.peer);
        let cseq = format!("{} SUBSCRIBE", sub.cseq);
        let to = match &sub.to_tag {
            Some(t) => format!("<sip:{presentity}@{domain}>;tag={t}"),
            None => format!("<sip:{presentity}@{domain}>"),
        };
        let signature = ccmp::sign(&secret, &signed_material(&sub.call_id, &cseq, b""));
        let (target, call_id, from_tag) = (
            sub.target.clone(),
            sub.call_id.clone(),
            sub.from_tag.clone(),
        );
        let request = RequestBuilder::new(Method::Subscribe, &target)
            .header("Via", self.via_for(peer, &branch))
            .header("Max-Forwards", "70")
            .header("From", format!("<{from}>;tag={from_tag}"))
            .header("To", to)
            .header("Call-ID", call_id.clone())
            .header("CSeq", cseq)
            .header("Contact", format!("<{contact}>"))
            .header("Event", "presence")
            .header("Accept", pidf::CONTENT_TYPE)
            .header("Expires", expires.to_string())
            .header(ccmp::SIGNATURE_HEADER, signature)
            .build();
        debug!(shard = self.index, %presentity, expires, "back-end SUBSCRIBE");
        self.send_request(peer, branch, request, Purpose::Backend(call_id));
    }

    /// This node's SIP address (for Contacts).
    fn local_sip_addr(&self) -> std::net::SocketAddr {
        self.sip_runtime()
            .map(|r| r.sender.local_addr())
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Ends the subscription: unsubscribe, and the mirrored resources go.
    fn backend_stop(&mut self, presentity: &str) {
        let Some(sub) = self.backend.subs.get(presentity) else {
            return;
        };
        if sub.to_tag.is_some() {
            self.send_backend_subscribe(presentity, 0);
        }
        if let Some(sub) = self.backend.subs.remove(presentity) {
            self.cancel_timer(sub.timer);
            // Keep the Call-ID known until the unsubscribe's final NOTIFY is answered.
            let mut routes = self.resources(presentity);
            routes.retain(|r| !r.sip);
            self.hub.routes.set(presentity, routes);
            debug!(shard = self.index, %presentity, "back-end subscription ended");
        }
    }

    /// A response to one of our SUBSCRIBEs: learn the dialog, schedule the refresh.
    pub(super) fn backend_response(&mut self, call_id: &str, resp: &Response) {
        if !(200..300).contains(&resp.status) {
            return;
        }
        let Some(presentity) = self.backend.by_call.get(call_id).cloned() else {
            return;
        };
        let Some(sub) = self.backend.subs.get_mut(&presentity) else {
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
        self.cancel_timer(old);
        if granted > 0 {
            let after = Duration::from_secs_f64(f64::from(granted) * REFRESH_AT);
            let id = self.schedule(after, SipTimer::Backend(presentity.clone()));
            if let Some(sub) = self.backend.subs.get_mut(&presentity) {
                sub.timer = Some(id);
            }
        }
    }

    /// The final outcome of one of our SUBSCRIBEs.
    pub(super) fn backend_done(&mut self, call_id: &str, status: Option<u16>) {
        if matches!(status, Some(200..=299)) {
            return;
        }
        let Some(presentity) = self.backend.by_call.get(call_id).cloned() else {
            return;
        };
        match self.backend.subs.get(&presentity) {
            Some(sub) if sub.call_id == call_id => {}
            _ => {
                self.backend.by_call.remove(call_id);
                return; // an unsubscribe, or a dialog already replaced
            }
        }
        info!(shard = self.index, %presentity, ?status, "back-end subscription failed");
        self.backend_lost(&presentity, Some(RETRY_AFTER));
    }

    /// The presentity cannot be watched where it was: its watchers see it unavailable and
    /// a new subscription is made after `retry` (at once with `None`) where the directory
    /// points then.
    fn backend_lost(&mut self, presentity: &str, retry: Option<Duration>) {
        let gone = unavailable_of(self, presentity);
        let closed = closed_body(self, presentity);
        let Some(sub) = self.backend.subs.get_mut(presentity) else {
            return;
        };
        let watchers: Vec<String> = sub.watchers.iter().cloned().collect();
        sub.shown.clear();
        // Known now: unreachable, shown closed until the next subscription says otherwise.
        sub.body = Some(closed);
        let old = sub.timer.take();
        self.cancel_timer(old);
        let mut routes = self.resources(presentity);
        routes.retain(|r| !r.sip);
        self.hub.routes.set(presentity, routes);
        for w in &watchers {
            for bytes in &gone {
                self.fan_out_to_user(bytes, w);
            }
        }
        self.notify_watchers(presentity);
        match retry {
            None => self.backend_retarget(presentity),
            Some(after) => {
                let id = self.schedule(after, SipTimer::Backend(presentity.to_string()));
                if let Some(sub) = self.backend.subs.get_mut(presentity) {
                    sub.timer = Some(id);
                    sub.to_tag = None; // the next attempt is a new dialog
                }
            }
        }
    }

    /// Makes the subscription again where the directory points now: a new dialog at the new
    /// home (the old one is ended), or none when the presentity is homed here now. What the
    /// watchers see stays until the new home's first NOTIFY says otherwise.
    pub(super) fn backend_retarget(&mut self, presentity: &str) {
        let Some(old) = self.backend.subs.get(presentity) else {
            return;
        };
        let home = self.remote_home(presentity);
        let same = home
            .as_ref()
            .is_some_and(|h| h.id == old.node && old.to_tag.is_some());
        if same {
            return;
        }
        if old.to_tag.is_some() {
            self.send_backend_subscribe(presentity, 0);
        }
        let Some(old) = self.backend.subs.remove(presentity) else {
            return;
        };
        self.cancel_timer(old.timer);
        match home {
            None => {
                // Homed here now: its own sessions will be broadcast from here.
                let gone = unavailable_shown(self, presentity, &old.shown);
                let mut routes = self.resources(presentity);
                routes.retain(|r| !r.sip);
                self.hub.routes.set(presentity, routes);
                for w in &old.watchers {
                    for bytes in &gone {
                        self.fan_out_to_user(bytes, w);
                    }
                }
            }
            Some(home) => {
                let sub = self.new_backsub(presentity, &home, old.watchers, old.shown);
                info!(shard = self.index, %presentity, node = %home.id, "back-end subscription follows the directory");
                self.backend
                    .by_call
                    .insert(sub.call_id.clone(), presentity.into());
                self.backend.subs.insert(presentity.to_string(), sub);
                self.send_backend_subscribe(presentity, EXPIRES);
            }
        }
    }

    /// The refresh or retry timer of `presentity`'s subscription fired.
    pub(super) fn backend_timer(&mut self, presentity: &str) {
        let Some(sub) = self.backend.subs.get_mut(presentity) else {
            return;
        };
        sub.timer = None;
        if sub.to_tag.is_some() {
            self.send_backend_subscribe(presentity, EXPIRES);
        } else {
            let old = sub.call_id.clone();
            self.backend.by_call.remove(&old);
            if let Some(sub) = self.backend.subs.get_mut(presentity) {
                sub.node.clear(); // force a new dialog
            }
            self.backend_retarget(presentity);
        }
    }

    /// A node died: every subscription with it shows its presentity unavailable and is made
    /// again where the directory points (the primary, until the user is placed anew).
    pub(super) fn backend_node_down(&mut self, node: &str) {
        let lost: Vec<String> = self
            .backend
            .subs
            .iter()
            .filter(|(_, s)| s.node == node)
            .map(|(p, _)| p.clone())
            .collect();
        for p in lost {
            if let Some(sub) = self.backend.subs.get_mut(&p) {
                sub.to_tag = None; // nobody is left to unsubscribe from
                sub.node.clear();
            }
            self.backend_lost(&p, None);
        }
    }

    /// A NOTIFY in one of our back-end subscriptions (RFC 6665 §4.1.3).
    pub(super) fn backend_notify(&mut self, key: &Key, req: &Request) {
        let call_id = req.base.call_id.clone();
        let Some(presentity) = self.backend.by_call.get(&call_id).cloned() else {
            return self.reply_simple(key, req, 481, "Subscription Does Not Exist", &[]);
        };
        let state = req
            .header("Subscription-State")
            .map(SubscriptionState::parse);
        let Some(Ok(state)) = state else {
            return self.reply_simple(key, req, 400, "Bad Subscription-State", &[]);
        };
        self.reply_simple(key, req, 200, "OK", &[]);
        let current = self
            .backend
            .subs
            .get(&presentity)
            .is_some_and(|s| s.call_id == call_id);
        if !current {
            // The final NOTIFY of a dialog we ended or replaced.
            if matches!(state, SubscriptionState::Terminated { .. }) {
                self.backend.by_call.remove(&call_id);
            }
            return;
        }
        if let Some(sub) = self.backend.subs.get_mut(&presentity) {
            if sub.to_tag.is_none() {
                sub.to_tag = req.base.from.tag().map(str::to_string);
            }
        }
        if !req.body().is_empty() {
            self.backend_apply(&presentity, Bytes::copy_from_slice(req.body()));
        }
        if let SubscriptionState::Terminated { reason, .. } = state {
            self.backend.by_call.remove(&call_id);
            if let Some(sub) = self.backend.subs.get_mut(&presentity) {
                sub.to_tag = None;
                sub.node.clear();
            }
            info!(shard = self.index, %presentity, reason = ?reason.map(|r| r.token()), "back-end subscription terminated by the notifier");
            match reason {
                // The user moved (DESIGN.md §7): subscribe again at once, at the new home.
                Some(Reason::Deactivated) | Some(Reason::Timeout) => {
                    self.backend_retarget(&presentity)
                }
                _ => self.backend_lost(&presentity, Some(RETRY_AFTER)),
            }
        }
    }

    /// A PIDF document from the presentity's home: show what changed to the watchers.
    fn backend_apply(&mut self, presentity: &str, body: Bytes) {
        let doc = match Presence::parse_limited(&body, self.hub.settings.limits.max_pidf_bytes) {
            Ok(d) => d,
            Err(e) => {
                info!(shard = self.index, %presentity, error = %e, "bad PIDF in a back-end NOTIFY");
                return;
            }
        };
        let now: BTreeMap<String, XmppPresence> = pidf::xmpp::from_pidf(&doc)
            .into_iter()
            .map(|p| (p.resource.clone(), p))
            .collect();
        let bare = self.bare(presentity).to_string();
        let Some(sub) = self.backend.subs.get_mut(presentity) else {
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
        let watchers: Vec<String> = sub.watchers.iter().cloned().collect();
        let mirrored: Vec<ResourceRoute> = sub
            .shown
            .values()
            .filter(|p| p.available)
            .map(|p| ResourceRoute {
                resource: p.resource.clone(),
                session_id: 0,
                outbox: Outbox::detached(),
                presence: Some(wire(&pidf::xmpp::to_stanza(
                    &format!("{bare}/{}", p.resource),
                    p,
                ))),
                priority: p.priority,
                interested: false,
                sip: true,
            })
            .collect();
        let mut routes = self.resources(presentity);
        routes.retain(|r| !r.sip);
        routes.extend(mirrored);
        self.hub.routes.set(presentity, routes);
        for w in &watchers {
            for bytes in &changed {
                self.fan_out_to_user(bytes, w);
            }
        }
        self.notify_watchers(presentity);
    }
}

/// Unavailable presence from every resource of `presentity` its watchers see now.
fn unavailable_of(shard: &PresenceShard, presentity: &str) -> Vec<Bytes> {
    match shard.backend.subs.get(presentity) {
        Some(sub) => unavailable_shown(shard, presentity, &sub.shown),
        None => Vec::new(),
    }
}

fn unavailable_shown(
    shard: &PresenceShard,
    presentity: &str,
    shown: &BTreeMap<String, XmppPresence>,
) -> Vec<Bytes> {
    let bare = shard.bare(presentity).to_string();
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
fn closed_body(shard: &PresenceShard, presentity: &str) -> Bytes {
    let entity = format!("pres:{presentity}@{}", shard.hub.settings.domain);
    let doc = Presence {
        entity,
        tuples: vec![pidf::Tuple::closed(super::sip::OFFLINE_TUPLE)],
        ..Default::default()
    };
    Bytes::from(doc.to_xml())
}

impl Handler<BackendWatch> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: BackendWatch, ctx: &mut Context<Self>) {
        self.backend_watch(&msg.presentity, &msg.watcher, msg.on);
        self.arm_sip_wake(ctx);
    }
}

impl Handler<super::HomeChanged> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: super::HomeChanged, ctx: &mut Context<Self>) {
        self.backend_retarget(&msg.user);
        self.arm_sip_wake(ctx);
    }
}

impl Handler<super::NodeDown> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: super::NodeDown, ctx: &mut Context<Self>) {
        self.backend_node_down(&msg.node);
        self.arm_sip_wake(ctx);
    }
}

impl Handler<super::Evict> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: super::Evict, ctx: &mut Context<Self>) {
        self.evict(&msg.user, &msg.to);
        self.arm_sip_wake(ctx);
    }
}

impl Handler<super::MovedAway> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: super::MovedAway, ctx: &mut Context<Self>) {
        self.watch_moved(&msg.user);
        self.arm_sip_wake(ctx);
    }
}
