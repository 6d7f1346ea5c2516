//! The SIP side of a presence shard: the RFC 3261 §17 transaction layer and the user-agent
//! core of a presence server — registrar (RFC 3261 §10), notifier (RFC 6665, RFC 3856),
//! event state compositor (RFC 3903) and MESSAGE (RFC 3428) — for the users of one shard.
//!
//! The transport hands each request to the shard of the user it concerns (the presentity of a
//! SUBSCRIBE or PUBLISH, the address-of-record of a REGISTER, the recipient of a MESSAGE) and
//! each response to the shard whose index is in the branch, so a SIP message is handled on
//! the same thread as the XMPP state of that user, without locks or further hops. All SIP
//! timers of a shard live in one [`TimerQueue`], woken by one actix timer.
//!
//! Deviation from DESIGN.md §2 (one actor per subscription dialog): dialogs are plain state
//! in the presentity's shard. An actor per dialog would cost a mailbox hop per NOTIFY and about
//! a kilobyte per subscription, against the targets of 20,000 NOTIFY/s and 100,000
//! subscriptions per node; the shard already serialises everything about the presentity.

mod auth;
mod publish;
mod register;
mod subscribe;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tracing::{debug, info, warn};

use super::shard::PresenceShard;
use super::{post, Hub};
use crate::pidf::xmpp::XmppPresence;
use crate::sip::digest::Nonces;
use crate::sip::message::{self, Message, Method, Request, RequestBuilder, Response, Uri};
use crate::sip::publication::Publications;
use crate::sip::registrar::Bindings;
use crate::sip::timer::{TimerId, TimerQueue};
use crate::sip::transaction::{
    Action, ClientNonInvite, Key, Reliability, ServerInvite, ServerNonInvite, Timer, Timers,
};
use crate::sip::transport::{Dispatch, Incoming, Peer, SipSender};
use crate::xmpp::jid::normalize_local;

pub(crate) use subscribe::DialogId;

/// Prefix of every branch this node creates; the shard index follows, so responses find
/// their transaction's shard without a shared table.
const BRANCH_PREFIX: &str = "z9hG4bK-rdv";

/// The id of the one closed tuple shown for a presentity with no state (RFC 3863 §4.1).
pub(crate) const OFFLINE_TUPLE: &str = "offline";

/// What every shard shares about SIP, set once the transport is bound.
pub struct SipRuntime {
    /// Sends SIP messages.
    pub sender: SipSender,
    /// Stateless digest nonces (RFC 3261 §22.4), keyed per node run.
    pub(crate) nonces: Nonces,
    /// RFC 3261 timer base values.
    pub(crate) timers: Timers,
    /// Subscriptions each watcher holds, over all shards (`limits.max_subscriptions_per_user`).
    pub(crate) watching: Mutex<HashMap<String, usize>>,
}

impl SipRuntime {
    /// A runtime around a bound transport.
    pub fn new(sender: SipSender, config: &crate::config::SipConfig) -> Self {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        SipRuntime {
            sender,
            nonces: Nonces::new(key),
            timers: Timers {
                t1: Duration::from_millis(config.t1_ms),
                t2: Duration::from_millis(config.t2_ms),
                t4: Duration::from_millis(config.t4_ms),
            },
            watching: Mutex::new(HashMap::new()),
        }
    }
}

/// Routes parsed SIP messages from the transport to the owning shard. Holds the hub weakly:
/// the hub holds the transport's sender, and a strong cycle would keep the store open after
/// shutdown.
pub struct HubDispatch {
    hub: std::sync::Weak<super::HubInner>,
}

impl HubDispatch {
    /// A dispatcher into `hub`.
    pub fn new(hub: Hub) -> Self {
        HubDispatch {
            hub: Arc::downgrade(&hub.inner),
        }
    }
}

impl Dispatch for HubDispatch {
    fn dispatch(&self, incoming: Incoming) {
        let Some(inner) = self.hub.upgrade() else {
            return; // shutting down
        };
        let inner = &*inner;
        let shard = match &incoming.message {
            Message::Request(req) => inner.shard(&routing_key(req)),
            Message::Response(resp) => {
                match resp
                    .base
                    .via
                    .branch
                    .as_deref()
                    .and_then(shard_of_branch)
                    .and_then(|i| inner.shard_at(i))
                {
                    Some(s) => s,
                    None => {
                        debug!(
                            status = resp.status,
                            "response to no transaction of ours dropped"
                        );
                        return;
                    }
                }
            }
        };
        post(shard, SipIn(incoming));
    }
}

/// The user a request concerns: the address-of-record of a REGISTER (To), else the
/// Request-URI user; requests without one go by Call-ID.
fn routing_key(req: &Request) -> String {
    let user = if *req.method() == Method::Register {
        Uri::parse(&req.base.to.uri).ok().and_then(|u| u.user)
    } else {
        req.uri().user.clone()
    };
    match user {
        Some(u) => normalize_local(&u).unwrap_or(u),
        None => req.base.call_id.clone(),
    }
}

fn shard_of_branch(branch: &str) -> Option<usize> {
    let rest = branch.strip_prefix(BRANCH_PREFIX)?;
    let digits = rest.split('-').next()?;
    digits.parse().ok()
}

/// A SIP message for a shard.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SipIn(pub Incoming);

/// The SIP transport is up: restore the persisted subscriptions of this shard.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SipStarted;

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

/// Which timer fired.
#[derive(Debug, Clone)]
pub(crate) enum SipTimer {
    /// A server transaction timer.
    Server(Key, Timer),
    /// A client transaction timer (by branch).
    Client(String, Timer),
    /// A subscription reached its expiry.
    SubscriptionExpired(DialogId),
    /// The rate limit of a presentity's NOTIFYs allows the next one.
    Notify(String),
    /// A presentity's publications may have expired.
    Publications(String),
    /// An address-of-record's bindings may have expired.
    Registrations(String),
    /// A back-end subscription to a remote presentity is due for refresh or retry.
    Backend(String),
    /// Changed subscriptions are due to be written to the store.
    Persist,
}

enum ServerFsm {
    NonInvite(ServerNonInvite),
    Invite(ServerInvite),
}

struct ServerTx {
    fsm: ServerFsm,
    peer: Peer,
    timers: Vec<(Timer, TimerId)>,
}

/// Why we sent a request, so its outcome can be acted on.
pub(crate) enum Purpose {
    /// A NOTIFY in a subscription dialog.
    Notify(DialogId),
    /// A MESSAGE carried to a user agent.
    Message,
    /// A stanza relayed to another node, kept when its failure must be bounced.
    Relay(Option<Box<crate::xmpp::xml::Element>>),
    /// A back-end SUBSCRIBE (or refresh, or unsubscribe) to a presentity's home.
    Backend(String),
}

struct ClientTx {
    fsm: ClientNonInvite,
    peer: Peer,
    timers: Vec<(Timer, TimerId)>,
    purpose: Purpose,
}

/// The maps a shard looks up on every SIP request. Their keys come from the network (branch,
/// Call-ID, tags), so the hash stays keyed per process, but foldhash costs a fraction of
/// SipHash: at 30,000 PUBLISH/s SipHash and the rehashing of the transaction map (RFC 3261
/// Timer J keeps each transaction 32 s) took a fifth of the core.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The SIP state of one shard.
#[derive(Default)]
pub struct SipState {
    timers: TimerQueue<SipTimer>,
    wake: Option<(Instant, SpawnHandle)>,
    server: FastMap<Key, ServerTx>,
    client: FastMap<String, ClientTx>,
    /// Presentities with publications, SIP watchers or XMPP presence.
    pub(crate) presentities: FastMap<String, Presentity>,
    /// Subscription dialogs where this shard's users are the presentity.
    pub(crate) dialogs: FastMap<DialogId, subscribe::Dialog>,
    /// Registrar bindings by address-of-record.
    pub(crate) registrations: FastMap<String, RegistrationState>,
    /// Subscriptions changed since the last write to the store
    /// (`sip.subscription_write_delay_ms`).
    pub(crate) unsaved: std::collections::HashSet<subscribe::DialogId, foldhash::fast::RandomState>,
    /// The timer of the next write, while one is due.
    pub(crate) persist_timer: Option<TimerId>,
    seq: u64,
}

/// One user's presence as the notifier sees it.
#[derive(Default)]
pub(crate) struct Presentity {
    /// PUBLISHed documents by entity tag (RFC 3903).
    pub(crate) publications: Publications<crate::pidf::Presence>,
    /// Next expiry timer of the publications.
    pub(crate) publication_timer: Option<TimerId>,
    /// SIP dialogs watching this user.
    pub(crate) watchers: Vec<DialogId>,
    /// Presence of the user's XMPP resources (RFC 8048 §3 source).
    pub(crate) xmpp: BTreeMap<String, XmppPresence>,
    /// Resources shown to XMPP contacts for the published tuples (RFC 8048 §4).
    pub(crate) shown: BTreeMap<String, XmppPresence>,
    /// When the last NOTIFY round went out (`notify_min_interval_ms`).
    pub(crate) last_notify: Option<Instant>,
    /// A NOTIFY round waits for the rate limit.
    pub(crate) notify_timer: Option<TimerId>,
}

impl Presentity {
    fn is_idle(&self) -> bool {
        self.publications.is_empty()
            && self.watchers.is_empty()
            && self.xmpp.is_empty()
            && self.shown.is_empty()
            && self.notify_timer.is_none()
    }
}

/// The registrar bindings of one address-of-record.
pub(crate) struct RegistrationState {
    pub(crate) bindings: Bindings<Peer>,
    pub(crate) timer: Option<TimerId>,
}

impl PresenceShard {
    pub(super) fn sip_runtime(&self) -> Option<&SipRuntime> {
        self.hub.sip.get()
    }

    /// A fresh branch naming this shard (RFC 3261 §8.1.1.7).
    pub(super) fn new_branch(&mut self) -> String {
        self.sip.seq += 1;
        format!(
            "{BRANCH_PREFIX}{}-{:x}{}",
            self.index,
            self.sip.seq,
            &message::new_tag()
        )
    }

    /// `sip:user@host:port;transport=...` of this node, for Contact headers.
    pub(super) fn contact_uri(&self, user: &str, peer: Peer) -> String {
        let addr = self
            .sip_runtime()
            .map(|r| r.sender.local_addr())
            .unwrap_or_else(|| peer.addr());
        let host = match addr {
            std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            std::net::SocketAddr::V4(a) => a.to_string(),
        };
        format!(
            "sip:{user}@{host};transport={}",
            peer.transport().to_ascii_lowercase()
        )
    }

    /// The Via of a request we send to `peer`.
    pub(super) fn via_for(&self, peer: Peer, branch: &str) -> String {
        let addr = self
            .sip_runtime()
            .map(|r| r.sender.local_addr())
            .unwrap_or_else(|| peer.addr());
        let host = match addr {
            std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            std::net::SocketAddr::V4(a) => a.to_string(),
        };
        format!("SIP/2.0/{} {host};branch={branch};rport", peer.transport())
    }

    // ---- timers -------------------------------------------------------------------------

    pub(super) fn schedule(&mut self, after: Duration, what: SipTimer) -> TimerId {
        self.sip.timers.schedule(Instant::now() + after, what)
    }

    pub(super) fn cancel_timer(&mut self, id: Option<TimerId>) {
        if let Some(id) = id {
            self.sip.timers.cancel(id);
        }
    }

    /// Makes sure the actor wakes for the earliest SIP deadline.
    pub(super) fn arm_sip_wake(&mut self, ctx: &mut Context<Self>) {
        let Some(next) = self.sip.timers.next_deadline() else {
            return;
        };
        if let Some((at, handle)) = self.sip.wake {
            if at <= next {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = next.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.sip.wake = None;
            act.sip_timers_due();
            act.arm_sip_wake(ctx);
        });
        self.sip.wake = Some((next, handle));
    }

    fn sip_timers_due(&mut self) {
        for (_, t) in self.sip.timers.pop_due(Instant::now()) {
            match t {
                SipTimer::Server(key, timer) => {
                    let actions = match self.sip.server.get_mut(&key) {
                        Some(tx) => {
                            tx.timers.retain(|(t, _)| *t != timer);
                            match &mut tx.fsm {
                                ServerFsm::NonInvite(f) => f.on_timer(timer),
                                ServerFsm::Invite(f) => f.on_timer(timer),
                            }
                        }
                        None => continue,
                    };
                    self.run_server_actions(&key, actions);
                }
                SipTimer::Client(branch, timer) => {
                    let actions = match self.sip.client.get_mut(&branch) {
                        Some(tx) => {
                            tx.timers.retain(|(t, _)| *t != timer);
                            tx.fsm.on_timer(timer)
                        }
                        None => continue,
                    };
                    self.run_client_actions(&branch, actions);
                }
                SipTimer::SubscriptionExpired(id) => self.subscription_expired(&id),
                SipTimer::Notify(user) => {
                    if let Some(p) = self.sip.presentities.get_mut(&user) {
                        p.notify_timer = None;
                    }
                    self.notify_agents(&user);
                }
                SipTimer::Publications(user) => self.publications_expired(&user),
                SipTimer::Registrations(user) => self.registrations_expired(&user),
                SipTimer::Backend(user) => self.backend_timer(&user),
                SipTimer::Persist => self.persist_unsaved(),
            }
        }
    }

    // ---- server transactions (RFC 3261 §17.2) --------------------------------------------

    fn run_server_actions(&mut self, key: &Key, actions: Vec<Action>) {
        for action in actions {
            let SipState { server, timers, .. } = &mut self.sip;
            let Some(tx) = server.get_mut(key) else {
                return;
            };
            match action {
                Action::Send(bytes) => {
                    let peer = tx.peer;
                    if let Some(rt) = self.hub.sip.get() {
                        rt.sender.send(peer, bytes);
                    }
                }
                Action::Schedule(timer, after) => {
                    let what = SipTimer::Server(key.clone(), timer);
                    arm(timers, &mut tx.timers, timer, after, what);
                }
                Action::Cancel(timer) => disarm(timers, &mut tx.timers, timer),
                Action::Timeout => {
                    debug!(shard = self.index, ?key, "server transaction timed out");
                }
                Action::Terminated => {
                    if let Some(tx) = self.sip.server.remove(key) {
                        for (_, id) in tx.timers {
                            self.sip.timers.cancel(id);
                        }
                    }
                }
                Action::DeliverResponse(_) => {}
            }
        }
    }

    /// Sends the final (or provisional) response of the server transaction `key`.
    pub(super) fn respond(&mut self, key: &Key, status: u16, bytes: Bytes) {
        let actions = match self.sip.server.get_mut(key) {
            Some(tx) => match &mut tx.fsm {
                ServerFsm::NonInvite(f) => f.respond(status, bytes),
                ServerFsm::Invite(f) => f.respond(status, bytes),
            },
            None => return,
        };
        self.run_server_actions(key, actions);
    }

    // ---- client transactions (RFC 3261 §17.1) --------------------------------------------

    /// Starts a non-INVITE client transaction for `request` (built with Via branch `branch`).
    pub(super) fn send_request(
        &mut self,
        peer: Peer,
        branch: String,
        request: Bytes,
        purpose: Purpose,
    ) {
        let Some(rt) = self.hub.sip.get() else {
            return;
        };
        let rel = if peer.reliable() {
            Reliability::Reliable
        } else {
            Reliability::Unreliable
        };
        let (fsm, actions) = ClientNonInvite::start(rel, rt.timers, request);
        self.sip.client.insert(
            branch.clone(),
            ClientTx {
                fsm,
                peer,
                timers: Vec::new(),
                purpose,
            },
        );
        self.run_client_actions(&branch, actions);
    }

    fn run_client_actions(&mut self, branch: &str, actions: Vec<Action>) {
        for action in actions {
            let Some(tx) = self.sip.client.get_mut(branch) else {
                return;
            };
            match action {
                Action::Send(bytes) => {
                    let peer = tx.peer;
                    let sent = self
                        .hub
                        .sip
                        .get()
                        .is_some_and(|rt| rt.sender.send(peer, bytes));
                    if !sent && peer.reliable() {
                        // RFC 3261 §17.1.4: a transport error ends the transaction.
                        let actions = tx.fsm.on_transport_error();
                        self.run_client_actions(branch, actions);
                        return;
                    }
                }
                Action::Schedule(timer, after) => {
                    let what = SipTimer::Client(branch.to_string(), timer);
                    arm(&mut self.sip.timers, &mut tx.timers, timer, after, what);
                }
                Action::Cancel(timer) => disarm(&mut self.sip.timers, &mut tx.timers, timer),
                Action::DeliverResponse(status) => {
                    if status >= 200 {
                        let purpose = std::mem::replace(&mut tx.purpose, Purpose::Message);
                        self.request_done(purpose, Some(status));
                    }
                }
                Action::Timeout => {
                    let purpose = std::mem::replace(&mut tx.purpose, Purpose::Message);
                    self.request_done(purpose, None);
                }
                Action::Terminated => {
                    if let Some(tx) = self.sip.client.remove(branch) {
                        for (_, id) in tx.timers {
                            self.sip.timers.cancel(id);
                        }
                    }
                }
            }
        }
    }

    /// The outcome of a request we sent: a final status, or `None` on timeout/transport error.
    fn request_done(&mut self, purpose: Purpose, status: Option<u16>) {
        match purpose {
            Purpose::Notify(id) => self.notify_done(&id, status),
            Purpose::Relay(stanza) => self.relay_done(stanza, status),
            Purpose::Backend(call_id) => self.backend_done(&call_id, status),
            Purpose::Message => {
                if !matches!(status, Some(200..=299)) {
                    info!(
                        shard = self.index,
                        ?status,
                        "MESSAGE to a user agent failed"
                    );
                }
            }
        }
    }

    fn sip_response(&mut self, resp: Response) {
        let Some(branch) = resp.base.via.branch.clone() else {
            return;
        };
        if let Some(ClientTx {
            purpose: Purpose::Backend(call_id),
            ..
        }) = self.sip.client.get(&branch)
        {
            let call_id = call_id.clone();
            self.backend_response(&call_id, &resp);
        }
        let actions = match self.sip.client.get_mut(&branch) {
            Some(tx) => tx.fsm.on_response(resp.status),
            None => {
                debug!(shard = self.index, %branch, status = resp.status, "stray response");
                return;
            }
        };
        self.run_client_actions(&branch, actions);
    }

    // ---- requests (RFC 3261 §8.2) ----------------------------------------------------------

    fn sip_request(&mut self, req: Request, source: Peer) {
        let Some(rt) = self.hub.sip.get() else {
            return;
        };
        let timers = rt.timers;
        let via = &req.base.via;
        let method = req.method().clone();
        let branch = via.branch.clone().unwrap_or_default();
        let key = if via.is_rfc3261_branch() {
            Key::server(&branch, &via.sent_by(), method.as_str())
        } else {
            Key::server_rfc2543(
                &req.uri().to_string(),
                req.base.from.tag().unwrap_or_default(),
                &req.base.call_id,
                req.base.cseq.seq,
                &via.to_string(),
                method.as_str(),
            )
        };
        if method == Method::Ack {
            // An ACK for a non-2xx final response is absorbed by its INVITE transaction
            // (RFC 3261 §17.2.1); an ACK for anything else has no one to go to.
            let actions = match self.sip.server.get_mut(&key) {
                Some(ServerTx {
                    fsm: ServerFsm::Invite(f),
                    ..
                }) => f.on_ack(),
                _ => {
                    debug!(shard = self.index, "ACK without a transaction dropped");
                    return;
                }
            };
            self.run_server_actions(&key, actions);
            return;
        }
        if let Some(tx) = self.sip.server.get_mut(&key) {
            // A retransmission: answered from the transaction (RFC 3261 §17.2.2).
            let actions = match &mut tx.fsm {
                ServerFsm::NonInvite(f) => f.on_request_retransmission(),
                ServerFsm::Invite(f) => f.on_request_retransmission(),
            };
            self.run_server_actions(&key, actions);
            return;
        }
        let peer = match source {
            Peer::Tcp(_) => source,
            Peer::Udp(src) => Peer::Udp(crate::sip::transport::udp_target(via, src)),
        };
        let rel = if peer.reliable() {
            Reliability::Reliable
        } else {
            Reliability::Unreliable
        };
        let fsm = match method {
            Method::Invite => ServerFsm::Invite(ServerInvite::new(rel, timers)),
            _ => ServerFsm::NonInvite(ServerNonInvite::new(rel, timers)),
        };
        self.sip.server.insert(
            key.clone(),
            ServerTx {
                fsm,
                peer,
                timers: Vec::new(),
            },
        );
        match method {
            Method::Register => self.sip_register(&key, &req, peer),
            Method::Subscribe => self.sip_subscribe(&key, &req, peer),
            Method::Publish => self.sip_publish(&key, &req, peer),
            Method::Message
                if req.header("Content-Type").map(media_type).as_deref()
                    == Some(super::relay::CONTENT_TYPE) =>
            {
                self.relayed_in(&key, &req)
            }
            Method::Message if req.header(super::relay::PUBLICATION_HEADER).is_some() => {
                self.publication_in(&key, &req)
            }
            Method::Message if req.header(super::handover::RECORD_HEADER).is_some() => {
                self.record_in(&key, &req)
            }
            Method::Message => self.sip_message(&key, &req, peer),
            Method::Notify if self.backend_owns(&req.base.call_id) => {
                self.backend_notify(&key, &req)
            }
            Method::Options => {
                let resp = message::reply(&req, 200, "OK")
                    .to_tag(&message::new_tag())
                    .header("Allow", message::ALLOW)
                    .header("Accept", "application/pidf+xml, text/plain")
                    .header("Allow-Events", "presence")
                    .build();
                self.respond(&key, 200, resp);
            }
            Method::Cancel => {
                // Every request is answered at once, so there is never anything to cancel
                // (RFC 3261 §9.2: 481 when no transaction matches, 200 when it is over).
                let invite = Key::server(&branch, &via.sent_by(), "INVITE");
                let (status, reason) = if self.sip.server.contains_key(&invite) {
                    (200, "OK")
                } else {
                    (481, "Call/Transaction Does Not Exist")
                };
                let resp = message::reply(&req, status, reason).build();
                self.respond(&key, status, resp);
            }
            Method::Notify | Method::Bye | Method::Info | Method::Update | Method::Prack => {
                // We hold no dialog in which these could arrive (RFC 3261 §12.2.2).
                let resp = message::reply(&req, 481, "Call/Transaction Does Not Exist").build();
                self.respond(&key, 481, resp);
            }
            _ => {
                // INVITE (no calls here), REFER and extension methods (RFC 3261 §8.2.1).
                info!(shard = self.index, method = %method, "method not allowed");
                let resp = message::reply(&req, 405, "Method Not Allowed")
                    .to_tag(&message::new_tag())
                    .header("Allow", message::ALLOW)
                    .build();
                self.respond(&key, 405, resp);
            }
        }
    }

    /// A response built for `req` with a To tag (RFC 3261 §8.2.6.2) and sent through `key`.
    pub(super) fn reply_simple(
        &mut self,
        key: &Key,
        req: &Request,
        status: u16,
        reason: &str,
        headers: &[(&str, String)],
    ) {
        let mut b = message::reply(req, status, reason);
        if req.base.to.tag().is_none() {
            b = b.to_tag(&message::new_tag());
        }
        for (name, value) in headers {
            b = b.header(name, value.clone());
        }
        let bytes = b.build();
        self.respond(key, status, bytes);
    }

    /// A new out-of-dialog request from `from_user` to `target` (MESSAGE, RFC 3428 §4).
    pub(super) fn build_request(
        &mut self,
        method: Method,
        target: &str,
        peer: Peer,
        from: &str,
        to: &str,
        body: Option<(&str, Bytes)>,
    ) -> (String, Bytes) {
        self.build_request_with(method, target, peer, from, to, body, &[])
    }

    /// [`Self::build_request`] with extra headers.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build_request_with(
        &mut self,
        method: Method,
        target: &str,
        peer: Peer,
        from: &str,
        to: &str,
        body: Option<(&str, Bytes)>,
        extra: &[(&str, String)],
    ) -> (String, Bytes) {
        let branch = self.new_branch();
        let mut b = RequestBuilder::new(method.clone(), target)
            .header("Via", self.via_for(peer, &branch))
            .header("Max-Forwards", "70")
            .header("From", format!("<{from}>;tag={}", message::new_tag()))
            .header("To", format!("<{to}>"))
            .header("Call-ID", message::new_tag() + &message::new_tag())
            .header("CSeq", format!("1 {}", method.as_str()));
        for (name, value) in extra {
            b = b.header(name, value.clone());
        }
        if let Some((ct, body)) = body {
            b = b.body(ct, body);
        }
        (branch, b.build())
    }

    /// The `Expires` a SUBSCRIBE or PUBLISH asks for, granted within the `[sip]` bounds
    /// (RFC 6665 §4.2.1.1, RFC 3903 §6). A malformed value is answered `400`, one too brief
    /// `423` with Min-Expires; then `None`.
    pub(super) fn granted_expires(&mut self, key: &Key, req: &Request) -> Option<u32> {
        let Ok(requested) = expires_header(req) else {
            self.reply_simple(key, req, 400, "Bad Expires header", &[]);
            return None;
        };
        let cfg = &self.hub.settings.sip;
        match crate::sip::event::grant_expires(
            requested,
            cfg.default_expires,
            cfg.min_expires,
            cfg.max_expires,
        ) {
            Ok(e) => Some(e),
            Err(brief) => {
                let min = [("Min-Expires", brief.min_expires.to_string())];
                self.reply_simple(key, req, 423, "Interval Too Brief", &min);
                None
            }
        }
    }

    /// The user the Request-URI names (normalised local part); with `existing`, only an
    /// account. Otherwise the request is answered `404` and `None` returned.
    pub(super) fn addressed_user(
        &mut self,
        key: &Key,
        req: &Request,
        existing: bool,
    ) -> Option<String> {
        let user = req
            .uri()
            .user
            .as_deref()
            .and_then(|u| normalize_local(u).ok())
            .filter(|u| !existing || self.user_exists(u));
        if user.is_none() {
            self.reply_simple(key, req, 404, "Not Found", &[]);
        }
        user
    }

    /// The user a SIP URI names on this domain (local part, normalised), if any.
    pub(super) fn local_user(&self, uri: &str) -> Option<String> {
        let uri = Uri::parse(uri).ok()?;
        normalize_local(uri.user.as_deref()?).ok()
    }

    /// The user's presentity entry, created on demand.
    pub(super) fn presentity(&mut self, user: &str) -> &mut Presentity {
        self.sip.presentities.entry(user.to_string()).or_default()
    }

    /// Drops the presentity entry when nothing is left in it.
    pub(super) fn gc_presentity(&mut self, user: &str) {
        if self
            .sip
            .presentities
            .get(user)
            .is_some_and(Presentity::is_idle)
        {
            self.sip.presentities.remove(user);
        }
    }

    /// The account was deleted: end its subscriptions, publications and bindings.
    pub(super) fn sip_account_removed(&mut self, user: &str) {
        let watchers = self
            .sip
            .presentities
            .get(user)
            .map(|p| p.watchers.clone())
            .unwrap_or_default();
        for id in watchers {
            self.terminate_subscription(&id, crate::sip::event::Reason::Noresource);
        }
        if let Some(p) = self.sip.presentities.remove(user) {
            self.cancel_timer(p.publication_timer);
            self.cancel_timer(p.notify_timer);
        }
        if let Some(r) = self.sip.registrations.remove(user) {
            self.cancel_timer(r.timer);
        }
    }
}

impl Handler<SipIn> for PresenceShard {
    type Result = ();

    fn handle(&mut self, SipIn(incoming): SipIn, ctx: &mut Context<Self>) {
        match incoming.message {
            Message::Request(req) => self.sip_request(req, incoming.peer),
            Message::Response(resp) => self.sip_response(resp),
        }
        self.arm_sip_wake(ctx);
    }
}

impl Handler<SipStarted> for PresenceShard {
    type Result = ();

    fn handle(&mut self, _: SipStarted, ctx: &mut Context<Self>) {
        self.restore_subscriptions();
        self.arm_sip_wake(ctx);
    }
}

impl Handler<WatcherAsks> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: WatcherAsks, _: &mut Context<Self>) {
        let contact =
            crate::xmpp::jid::Jid::bare(&msg.presentity, self.hub.settings.domain.as_str());
        let state = self.roster(&msg.watcher).state(&contact.to_string());
        if state.pending_out
            || matches!(
                state.sub,
                crate::xmpp::subscription::Subscription::To
                    | crate::xmpp::subscription::Subscription::Both
            )
        {
            return; // already asked, or already allowed
        }
        let stanza = crate::xmpp::xml::Element::new("presence", crate::xmpp::xml::CLIENT_NS)
            .with_attr("to", contact.to_string())
            .with_attr("type", "subscribe");
        self.outbound_subscription(
            &msg.watcher,
            contact,
            crate::xmpp::subscription::SubKind::Subscribe,
            stanza,
        );
    }
}

/// The media type of a Content-Type or Accept element, without parameters, lowercased
/// (RFC 3261 §20.15: `type/subtype *(;param)`).
pub(super) fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The `Expires` header as a number of seconds; `Err` when it is not one.
pub(super) fn expires_header(req: &Request) -> Result<Option<u32>, ()> {
    req.header("Expires")
        .map(|v| v.trim().parse::<u32>().map_err(|_| ()))
        .transpose()
}

/// Arms `timer` of one transaction, replacing its previous deadline.
fn arm(
    queue: &mut TimerQueue<SipTimer>,
    armed: &mut Vec<(Timer, TimerId)>,
    timer: Timer,
    after: Duration,
    what: SipTimer,
) {
    disarm(queue, armed, timer);
    armed.push((timer, queue.schedule(Instant::now() + after, what)));
}

/// Cancels `timer` of one transaction.
fn disarm(queue: &mut TimerQueue<SipTimer>, armed: &mut Vec<(Timer, TimerId)>, timer: Timer) {
    armed.retain(|(t, id)| {
        if *t == timer {
            queue.cancel(*id);
        }
        *t != timer
    });
}

/// Starts the shards' SIP side once the transport is bound.
pub fn announce_started(hub: &Hub) {
    for shard in hub.inner.shards() {
        shard.do_send(SipStarted);
    }
}

/// Logs a store failure in the SIP layer.
pub(super) fn store_failed(shard: usize, what: &str, e: &crate::store::StoreError) {
    warn!(shard, error = %e, "{what} failed");
}

/// Parses one serialised stanza (as kept in the routing table, or relayed by another node).
pub(crate) fn parse_stanza(bytes: &[u8]) -> Option<crate::xml::Element> {
    crate::xmpp::stream::parse_stanza(bytes).ok()
}

#[cfg(test)]
mod stanza_tests {
    #[test]
    fn stored_presence_parses_back() {
        let el =
            super::parse_stanza(b"<presence from='a@x/r'><show>away</show></presence>").unwrap();
        assert_eq!(el.name, "presence");
        assert_eq!(el.attr("from"), Some("a@x/r"));
        assert!(super::parse_stanza(b"<presence").is_none());
    }
}
