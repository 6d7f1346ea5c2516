//! SIP virtual users, multiplexed over a few UDP sockets (one engine task per socket). Each
//! user publishes its presence (RFC 3903: initial PUBLISH with a PIDF body, modify with
//! `SIP-If-Match` and a new body at `--publish-rate`, refresh without a body before expiry,
//! remove with `Expires: 0` at logout), holds `--subscribes` presence subscriptions
//! (RFC 6665, RFC 3856: SUBSCRIBE, refresh in the dialog before expiry, re-SUBSCRIBE after a
//! `terminated` NOTIFY that allows it, un-SUBSCRIBE at logout), answers every NOTIFY with 200
//! and runs SUBSCRIBE → 2xx + NOTIFY → un-SUBSCRIBE cycles at `--subscribe-cycle-rate`.
//!
//! Client transactions follow RFC 3261 §17.1.2 for non-INVITE requests over UDP: Timer E
//! retransmits from T1 doubling to T2 (T2 at once after a provisional response), Timer F
//! ends the transaction after 64·T1. A 401/407 is answered with digest credentials (the
//! challenge is then reused with a growing nonce count), a 3xx is followed to its Contact
//! when `--follow-redirects` (and the user stays at the new address), a 423 is retried with
//! Min-Expires. Every retry is bounded.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::net;
use super::sip_wire::{contact_uri, expires, pidf_body, uri_addr, Challenge, Request};
use super::stats::Counts;
use super::summary::TxCounter;
use super::{now_ns, LoadgenError, Run, SipPhase, LOGOUT_MAX};
use crate::sip::event::{Reason, SubscriptionState};
use crate::sip::message::{self, new_branch, new_tag, Limits, Message, Method, Response};
use crate::sip::timer::{TimerId, TimerQueue};

/// RFC 3261 T1.
const T1: Duration = Duration::from_millis(500);
/// RFC 3261 T2.
const T2: Duration = Duration::from_secs(4);
/// RFC 3261 Timer F = 64·T1.
const TIMER_F: Duration = Duration::from_secs(32);
/// Expires asked for PUBLISH and SUBSCRIBE; refreshed at 80 % of what the server grants.
const EXPIRES: u32 = 600;
/// Digest challenges answered per request.
const MAX_AUTH: u32 = 2;
/// 3xx and 423 retries per request.
const MAX_RETRIES: u32 = 3;
/// Re-SUBSCRIBEs of one held subscription after `terminated` NOTIFYs.
const MAX_RESUBSCRIBES: u32 = 5;
/// A cycle whose NOTIFY has not come this long after the 2xx is un-SUBSCRIBEd anyway.
const CYCLE_NOTIFY_WAIT: Duration = Duration::from_secs(5);
/// Users per UDP socket, and most sockets.
const USERS_PER_SOCKET: usize = 1000;
const MAX_SOCKETS: usize = 4;
/// Receive buffer asked for each socket.
const RECV_BUFFER: usize = 4 << 20;
/// Largest SIP message read.
const MAX_MESSAGE: usize = 65_535;
/// The engine wakes at least this often (rates, phase changes).
const ENGINE_TICK: Duration = Duration::from_millis(5);

/// SIP counters of the run.
#[derive(Default)]
pub(crate) struct SipStats {
    pub(crate) publish: TxCounter,
    pub(crate) subscribe: TxCounter,
    pub(crate) cycle: TxCounter,
    /// First send of a cycle's SUBSCRIBE to its 2xx (`rendezvous replay` takes it per step).
    pub(crate) cycle_subscribe: super::stats::Latency,
    pub(crate) notify_received: u64,
    pub(crate) active_subscriptions: u64,
    pub(crate) pending_subscriptions: u64,
    pub(crate) codes: Counts,
    /// Initial PUBLISH and SUBSCRIBE requests not finished yet.
    pub(crate) setup_remaining: usize,
    /// SIP users whose initial requests all finished.
    pub(crate) setup_users_done: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PubKind {
    Initial,
    Modify,
    Refresh,
    Remove,
}

/// A logical request of a user (what is retried after a challenge or redirect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Publish(PubKind),
    Subscribe { slot: usize, refresh: bool },
    Unsubscribe { slot: usize },
    CycleSubscribe(u64),
    CycleUnsubscribe(u64),
}

impl Op {
    fn method(self) -> Method {
        match self {
            Op::Publish(_) => Method::Publish,
            _ => Method::Subscribe,
        }
    }
}

/// Which bounded batch a request belongs to (at most `gate_cap` of a batch in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Paced by the rates, or a refresh: not gated.
    Free,
    /// An initial PUBLISH or SUBSCRIBE of the setup phase.
    Setup,
    /// An un-PUBLISH or un-SUBSCRIBE at logout.
    Logout,
}

/// What carries over when a request is sent again.
#[derive(Debug, Clone, Copy)]
struct OpCtx {
    started: Instant,
    auth_tries: u32,
    retries: u32,
    gate: Gate,
}

struct Txn {
    user: usize,
    op: Op,
    method: Method,
    bytes: Bytes,
    dest: SocketAddr,
    interval: Duration,
    deadline: Instant,
    ctx: OpCtx,
    timer: TimerId,
}

enum Timer {
    Retransmit(String),
    RefreshPublish(usize),
    RefreshSubscribe(usize, usize),
    Resubscribe(usize, usize),
    CycleWait(u64),
}

#[derive(Debug, Clone)]
struct Dialog {
    remote_tag: String,
    remote_target: String,
    routes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeldState {
    Idle,
    Established { pending: bool },
}

struct Held {
    target: usize,
    call_id: String,
    local_tag: String,
    cseq: u32,
    dialog: Option<Dialog>,
    state: HeldState,
    busy: bool,
    timer: Option<TimerId>,
    resubscribes: u32,
}

struct Auth {
    challenge: Challenge,
    nc: u32,
    proxy: bool,
}

struct SipUser {
    slot: usize,
    name: String,
    password: String,
    aor: String,
    target: SocketAddr,
    auth: Option<Auth>,
    pub_tag: String,
    pub_call_id: String,
    pub_cseq: u32,
    etag: Option<String>,
    pub_busy: bool,
    pub_seq: u64,
    pub_timer: Option<TimerId>,
    min_expires: u32,
    subs: Vec<Held>,
    cycle_busy: bool,
    setup_left: usize,
}

struct Cycle {
    user: usize,
    target: usize,
    call_id: String,
    local_tag: String,
    cseq: u32,
    dialog: Option<Dialog>,
    started: Instant,
    subscribed: bool,
    notified: bool,
    unsubscribing: bool,
    failed: bool,
    timer: Option<TimerId>,
}

#[derive(Debug, Clone, Copy)]
enum DialogRef {
    Held(usize, usize),
    Cycle(u64),
}

struct Rates {
    start: Instant,
    publishes: u64,
    cycles: u64,
}

struct Engine {
    run: Rc<Run>,
    sock: UdpSocket,
    /// The same socket for sending: a plain non-blocking `send_to`, whereas tokio's
    /// `try_send_to` refuses before the reactor has seen the socket writable once.
    out: std::net::UdpSocket,
    via: String,
    users: Vec<SipUser>,
    txns: HashMap<String, Txn>,
    dialogs: HashMap<String, DialogRef>,
    timers: TimerQueue<Timer>,
    cycles: HashMap<u64, Cycle>,
    next_cycle: u64,
    /// Setup or logout requests waiting for a place among the `gate_cap` in flight.
    gate_queue: VecDeque<(usize, Op)>,
    gate_cap: usize,
    gate_inflight: usize,
    phase: Option<SipPhase>,
    rates: Option<Rates>,
    publish_rate: f64,
    cycle_rate: f64,
    pub_cursor: usize,
    cycle_cursor: usize,
    logout_deadline: Option<Instant>,
    domain: String,
    n_sip: usize,
    n_xmpp: usize,
}

/// Starts the SIP engines; their handles end after logout.
pub(super) async fn spawn_engines(
    run: &Rc<Run>,
    target: SocketAddr,
) -> Result<Vec<JoinHandle<()>>, LoadgenError> {
    let set = &run.set;
    let n_sip = set.n_sip;
    if n_sip == 0 {
        return Ok(Vec::new());
    }
    let n_eng = n_sip.div_ceil(USERS_PER_SOCKET).clamp(1, MAX_SOCKETS);
    let ip = net::local_ip_towards(target)
        .map_err(|e| LoadgenError::Setup(format!("no route to SIP target {target}: {e}")))?;
    run.sip.borrow_mut().setup_remaining = n_sip * (1 + set.subscribes);
    let mut handles = Vec::with_capacity(n_eng);
    let share = 1.0 / n_sip as f64;
    for e in 0..n_eng {
        let std_sock = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
            .and_then(|s| s.set_nonblocking(true).map(|_| s))
            .map_err(|err| LoadgenError::Setup(format!("UDP socket on {ip}: {err}")))?;
        let local = std_sock
            .local_addr()
            .map_err(|err| LoadgenError::Setup(format!("UDP socket: {err}")))?;
        let out = std_sock
            .try_clone()
            .map_err(|err| LoadgenError::Setup(format!("UDP socket: {err}")))?;
        let sock = UdpSocket::from_std(std_sock)
            .map_err(|err| LoadgenError::Setup(format!("UDP socket: {err}")))?;
        net::set_recv_buffer(&sock, RECV_BUFFER);
        let users: Vec<SipUser> = (0..n_sip)
            .filter(|j| j % n_eng == e)
            .map(|j| {
                let slot = set.n_xmpp + j;
                let name = set.name(slot);
                SipUser {
                    slot,
                    aor: format!("sip:{name}@{}", set.opts.domain),
                    password: set.password(slot),
                    name,
                    target,
                    auth: None,
                    pub_tag: new_tag(),
                    pub_call_id: format!("{}@lg", new_tag()),
                    pub_cseq: 0,
                    etag: None,
                    pub_busy: false,
                    pub_seq: 0,
                    pub_timer: None,
                    min_expires: 0,
                    subs: (1..=set.subscribes)
                        .map(|d| Held {
                            target: (j + d) % n_sip,
                            call_id: String::new(),
                            local_tag: String::new(),
                            cseq: 0,
                            dialog: None,
                            state: HeldState::Idle,
                            busy: false,
                            timer: None,
                            resubscribes: 0,
                        })
                        .collect(),
                    cycle_busy: false,
                    setup_left: 1 + set.subscribes,
                }
            })
            .collect();
        let n_users = users.len() as f64;
        let engine = Engine {
            run: run.clone(),
            sock,
            out,
            via: local.to_string(),
            users,
            txns: HashMap::new(),
            dialogs: HashMap::new(),
            timers: TimerQueue::new(),
            cycles: HashMap::new(),
            next_cycle: 0,
            gate_queue: VecDeque::new(),
            gate_cap: (set.opts.login_concurrency / n_eng).max(1),
            gate_inflight: 0,
            phase: None,
            rates: None,
            publish_rate: set.opts.publish_rate * n_users * share,
            cycle_rate: set.opts.subscribe_cycle_rate * n_users * share,
            pub_cursor: 0,
            cycle_cursor: 0,
            logout_deadline: None,
            domain: set.opts.domain.clone(),
            n_sip,
            n_xmpp: set.n_xmpp,
        };
        handles.push(tokio::task::spawn_local(engine.run()));
    }
    Ok(handles)
}

impl Engine {
    async fn run(mut self) {
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        loop {
            let now = Instant::now();
            self.tick(now);
            if self.finished(now) {
                break;
            }
            let wake = self
                .timers
                .next_deadline()
                .map_or(now + ENGINE_TICK, |d| d.min(now + ENGINE_TICK));
            tokio::select! {
                r = self.sock.recv_from(&mut buf) => {
                    if let Ok((n, src)) = r {
                        self.datagram(&buf[..n], src);
                        // Drain what else is queued without waiting (bounded).
                        for _ in 0..256 {
                            match self.sock.try_recv_from(&mut buf) {
                                Ok((n, src)) => self.datagram(&buf[..n], src),
                                Err(_) => break,
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            }
        }
    }

    /// After logout: done when nothing is in flight or the logout time is up; whatever is
    /// left is counted.
    fn finished(&mut self, now: Instant) -> bool {
        let Some(deadline) = self.logout_deadline else {
            return false;
        };
        let idle = self.txns.is_empty() && self.gate_queue.is_empty();
        if !idle && now < deadline {
            return false;
        }
        let left = (self.txns.len() + self.gate_queue.len()) as u64;
        let cycles = self.cycles.len() as u64;
        let mut stats = self.run.stats.borrow_mut();
        if left > 0 {
            stats.errors.add("sip_logout_incomplete", left);
        }
        if cycles > 0 {
            stats.errors.add("cycle_unfinished", cycles);
            self.run.sip.borrow_mut().cycle.failed += cycles;
        }
        true
    }

    fn tick(&mut self, now: Instant) {
        let phase = self.run.sip_phase.get();
        if self.phase != Some(phase) {
            self.enter(phase, now);
            self.phase = Some(phase);
        }
        for (_, t) in self.timers.pop_due(now) {
            self.timer(t, now);
        }
        let gate = match phase {
            SipPhase::Setup => Gate::Setup,
            SipPhase::Logout => Gate::Logout,
            SipPhase::Running => {
                self.rates(now);
                Gate::Free
            }
            SipPhase::Idle => Gate::Free,
        };
        if gate != Gate::Free {
            while self.gate_inflight < self.gate_cap {
                let Some((u, op)) = self.gate_queue.pop_front() else {
                    break;
                };
                self.gate_inflight += 1;
                self.start(u, op, gate);
            }
        }
    }

    fn enter(&mut self, phase: SipPhase, now: Instant) {
        if self.phase == Some(SipPhase::Setup) {
            // Whatever was not sent in time is given up.
            let n = self.gate_queue.len();
            self.gate_queue.clear();
            if n > 0 {
                let mut s = self.run.sip.borrow_mut();
                s.setup_remaining = s.setup_remaining.saturating_sub(n);
                drop(s);
                self.run
                    .stats
                    .borrow_mut()
                    .errors
                    .add("sip_setup_not_sent", n as u64);
            }
        }
        self.rates = None;
        match phase {
            SipPhase::Setup => {
                for u in 0..self.users.len() {
                    self.gate_queue
                        .push_back((u, Op::Publish(PubKind::Initial)));
                    for slot in 0..self.users[u].subs.len() {
                        self.gate_queue.push_back((
                            u,
                            Op::Subscribe {
                                slot,
                                refresh: false,
                            },
                        ));
                    }
                }
            }
            SipPhase::Running => {
                self.rates = Some(Rates {
                    start: now,
                    publishes: 0,
                    cycles: 0,
                })
            }
            SipPhase::Idle => {}
            SipPhase::Logout => {
                let (mut active, mut pending) = (0u64, 0u64);
                for u in &self.users {
                    for h in &u.subs {
                        if let HeldState::Established { pending: p } = h.state {
                            active += 1;
                            pending += u64::from(p);
                        }
                    }
                }
                {
                    let mut s = self.run.sip.borrow_mut();
                    s.active_subscriptions += active;
                    s.pending_subscriptions += pending;
                }
                for u in 0..self.users.len() {
                    if let Some(t) = self.users[u].pub_timer.take() {
                        self.timers.cancel(t);
                    }
                    if self.users[u].etag.is_some() && !self.users[u].pub_busy {
                        self.gate_queue.push_back((u, Op::Publish(PubKind::Remove)));
                    }
                    for slot in 0..self.users[u].subs.len() {
                        let h = &mut self.users[u].subs[slot];
                        if let Some(t) = h.timer.take() {
                            self.timers.cancel(t);
                        }
                        if matches!(h.state, HeldState::Established { .. }) && !h.busy {
                            self.gate_queue.push_back((u, Op::Unsubscribe { slot }));
                        }
                    }
                }
                self.logout_deadline = Some(now + LOGOUT_MAX);
            }
        }
    }

    /// PUBLISH and cycle schedules (token schedule from the start of the running phase).
    fn rates(&mut self, now: Instant) {
        let Some(r) = &mut self.rates else { return };
        let el = (now - r.start).as_secs_f64();
        let due_p = ((el * self.publish_rate) as u64)
            .saturating_sub(r.publishes)
            .min(1000);
        let due_c = ((el * self.cycle_rate) as u64)
            .saturating_sub(r.cycles)
            .min(1000);
        r.publishes += due_p;
        r.cycles += due_c;
        let n = self.users.len();
        for _ in 0..due_p {
            let free = (0..n)
                .map(|i| (self.pub_cursor + i) % n)
                .find(|u| !self.users[*u].pub_busy);
            match free {
                Some(u) => {
                    self.pub_cursor = (u + 1) % n;
                    self.start(u, Op::Publish(PubKind::Modify), Gate::Free);
                }
                None => {
                    self.run.stats.borrow_mut().errors.add("publish_backlog", 1);
                }
            }
        }
        for _ in 0..due_c {
            let free = (0..n)
                .map(|i| (self.cycle_cursor + i) % n)
                .find(|u| !self.users[*u].cycle_busy);
            match free {
                Some(u) => {
                    self.cycle_cursor = (u + 1) % n;
                    self.start_cycle(u, now);
                }
                None => {
                    self.run.stats.borrow_mut().errors.add("cycle_backlog", 1);
                }
            }
        }
    }

    fn start_cycle(&mut self, u: usize, now: Instant) {
        let n_sip = self.n_sip;
        let j = self.users[u].slot - self.n_xmpp;
        let target = (j + rand::thread_rng().gen_range(1..n_sip)) % n_sip;
        let id = self.next_cycle;
        self.next_cycle += 1;
        self.users[u].cycle_busy = true;
        self.cycles.insert(
            id,
            Cycle {
                user: u,
                target,
                call_id: String::new(),
                local_tag: String::new(),
                cseq: 0,
                dialog: None,
                started: now,
                subscribed: false,
                notified: false,
                unsubscribing: false,
                failed: false,
                timer: None,
            },
        );
        self.run.sip.borrow_mut().cycle.sent += 1;
        self.send(
            u,
            Op::CycleSubscribe(id),
            OpCtx {
                started: now,
                auth_tries: 0,
                retries: 0,
                gate: Gate::Free,
            },
        );
    }

    /// Starts a logical request (counted once however often it is retried).
    fn start(&mut self, u: usize, op: Op, gate: Gate) {
        {
            let mut s = self.run.sip.borrow_mut();
            match op {
                Op::Publish(_) => s.publish.sent += 1,
                Op::Subscribe { .. } | Op::Unsubscribe { .. } => s.subscribe.sent += 1,
                Op::CycleSubscribe(_) | Op::CycleUnsubscribe(_) => {}
            }
        }
        match op {
            Op::Publish(_) => self.users[u].pub_busy = true,
            Op::Subscribe { slot, .. } | Op::Unsubscribe { slot } => {
                self.users[u].subs[slot].busy = true
            }
            _ => {}
        }
        self.send(
            u,
            op,
            OpCtx {
                started: Instant::now(),
                auth_tries: 0,
                retries: 0,
                gate,
            },
        );
    }

    /// Builds and sends `op`'s request as a new client transaction.
    fn send(&mut self, u: usize, op: Op, ctx: OpCtx) {
        let branch = new_branch();
        let Some((op, bytes, dest)) = self.build(u, op, &branch) else {
            self.failed(u, op, ctx, "not_applicable");
            return;
        };
        self.transmit(&bytes, dest);
        let now = Instant::now();
        let timer = self
            .timers
            .schedule(now + T1, Timer::Retransmit(branch.clone()));
        self.txns.insert(
            branch,
            Txn {
                user: u,
                op,
                method: op.method(),
                bytes,
                dest,
                interval: T1,
                deadline: now + TIMER_F,
                ctx,
                timer,
            },
        );
    }

    /// Sends a datagram; a failure is counted (a request is retransmitted by its timer).
    fn transmit(&self, bytes: &[u8], dest: SocketAddr) {
        if let Err(e) = self.out.send_to(bytes, dest) {
            self.run
                .error(format!("sip_send_{:?}", e.kind()).to_lowercase(), || {
                    format!("sending to {dest}: {e}")
                });
        }
    }

    /// The request for `op` (the op itself may change: a modify without an entity-tag is an
    /// initial PUBLISH). `None` when it no longer applies (no dialog to end).
    fn build(&mut self, u: usize, op: Op, branch: &str) -> Option<(Op, Bytes, SocketAddr)> {
        let domain = self.domain.clone();
        let via = self.via.clone();
        let user = &mut self.users[u];
        let expires_value = |user: &SipUser| EXPIRES.max(user.min_expires).to_string();
        let contact = format!("<sip:{}@{via}>", user.name);
        let mut headers: Vec<(&str, String)> = Vec::with_capacity(8);
        let (op, uri, to, from, call_id, cseq, body, dest) = match op {
            Op::Publish(kind) => {
                let kind = match (kind, &user.etag) {
                    (PubKind::Remove, None) => return None,
                    (PubKind::Modify | PubKind::Refresh, None) => PubKind::Initial,
                    (k, _) => k,
                };
                user.pub_cseq += 1;
                headers.push(("Event", "presence".into()));
                let exp = if kind == PubKind::Remove {
                    "0".to_string()
                } else {
                    expires_value(user)
                };
                headers.push(("Expires", exp));
                if kind != PubKind::Initial {
                    headers.push(("SIP-If-Match", user.etag.clone().unwrap_or_default()));
                }
                let body = match kind {
                    PubKind::Initial | PubKind::Modify => {
                        user.pub_seq += 1;
                        // Not the XMPP marker (`lg …`): a server that maps the note to an
                        // XMPP status (RFC 8048) must not make it count as an XMPP delivery.
                        let note = format!(
                            "lg-sip {} {} {}",
                            self.run.set.index(user.slot),
                            user.pub_seq,
                            now_ns()
                        );
                        Some((
                            crate::pidf::CONTENT_TYPE,
                            pidf_body(&user.name, &domain, &note),
                        ))
                    }
                    _ => None,
                };
                (
                    Op::Publish(kind),
                    user.aor.clone(),
                    format!("<{}>", user.aor),
                    format!("<{}>;tag={}", user.aor, user.pub_tag),
                    user.pub_call_id.clone(),
                    user.pub_cseq,
                    body,
                    user.target,
                )
            }
            Op::Subscribe { slot, refresh } => {
                let target_aor = format!(
                    "sip:{}@{domain}",
                    self.run.set.name(self.n_xmpp + user.subs[slot].target)
                );
                let expires = expires_value(user);
                let h = &mut user.subs[slot];
                let in_dialog = refresh && h.dialog.is_some();
                if !in_dialog {
                    if !h.call_id.is_empty() {
                        self.dialogs.remove(&h.call_id);
                    }
                    h.call_id = format!("{}@lg", new_tag());
                    h.local_tag = new_tag();
                    h.dialog = None;
                    h.state = HeldState::Idle;
                    self.dialogs
                        .insert(h.call_id.clone(), DialogRef::Held(u, slot));
                }
                h.cseq += 1;
                let (uri, to, dest) =
                    dialog_addressing(h.dialog.as_ref(), &target_aor, user.target);
                subscribe_headers(&mut headers, h.dialog.as_ref(), contact, true, expires);
                let h = &user.subs[slot];
                (
                    Op::Subscribe {
                        slot,
                        refresh: in_dialog,
                    },
                    uri,
                    to,
                    format!("<{}>;tag={}", user.aor, h.local_tag),
                    h.call_id.clone(),
                    h.cseq,
                    None,
                    dest,
                )
            }
            Op::Unsubscribe { slot } => {
                let target_aor = format!(
                    "sip:{}@{domain}",
                    self.run.set.name(self.n_xmpp + user.subs[slot].target)
                );
                let h = &mut user.subs[slot];
                let d = h.dialog.as_ref()?;
                h.cseq += 1;
                let (uri, to, dest) = dialog_addressing(Some(d), &target_aor, user.target);
                subscribe_headers(&mut headers, Some(d), contact, false, "0".into());
                (
                    op,
                    uri,
                    to,
                    format!("<{}>;tag={}", user.aor, h.local_tag),
                    h.call_id.clone(),
                    h.cseq,
                    None,
                    dest,
                )
            }
            Op::CycleSubscribe(id) | Op::CycleUnsubscribe(id) => {
                let unsub = matches!(op, Op::CycleUnsubscribe(_));
                let c = self.cycles.get_mut(&id)?;
                let target_aor =
                    format!("sip:{}@{domain}", self.run.set.name(self.n_xmpp + c.target));
                if !unsub && c.call_id.is_empty() {
                    c.call_id = format!("{}@lg", new_tag());
                    c.local_tag = new_tag();
                    self.dialogs.insert(c.call_id.clone(), DialogRef::Cycle(id));
                }
                if unsub && c.dialog.is_none() {
                    return None;
                }
                c.cseq += 1;
                let (uri, to, dest) =
                    dialog_addressing(c.dialog.as_ref(), &target_aor, user.target);
                let expires = if unsub {
                    "0".into()
                } else {
                    expires_value(user)
                };
                subscribe_headers(&mut headers, c.dialog.as_ref(), contact, true, expires);
                (
                    op,
                    uri,
                    to,
                    format!("<{}>;tag={}", user.aor, c.local_tag),
                    c.call_id.clone(),
                    c.cseq,
                    None,
                    dest,
                )
            }
        };
        let method = op.method();
        if let Some(a) = &mut user.auth {
            a.nc += 1;
            let value = a.challenge.authorization(
                &user.name,
                &user.password,
                method.as_str(),
                &uri,
                a.nc,
                &new_tag(),
            );
            headers.push((
                if a.proxy {
                    "Proxy-Authorization"
                } else {
                    "Authorization"
                },
                value,
            ));
        }
        let req = Request {
            method,
            uri: &uri,
            via: &via,
            branch,
            from: &from,
            to: &to,
            call_id: &call_id,
            cseq,
        };
        Some((op, req.build(&headers, body), dest))
    }

    fn datagram(&mut self, data: &[u8], src: SocketAddr) {
        if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
            return;
        }
        match message::parse(
            data,
            &Limits {
                max_message_bytes: MAX_MESSAGE,
            },
        ) {
            Ok(Message::Response(r)) => self.response(r),
            Ok(Message::Request(req)) => self.request(req, src),
            Err(message::Rejection::Reply { response, via, .. }) => {
                self.transmit(&response, response_dest(&via, src));
            }
            Err(message::Rejection::Drop { reason }) => {
                self.run.error("sip_unparsable", || reason);
            }
        }
    }

    fn request(&mut self, req: message::Request, src: SocketAddr) {
        let dest = response_dest(&req.base.via, src);
        if *req.method() != Method::Notify {
            let status = if *req.method() == Method::Options {
                (200, "OK")
            } else {
                (405, "Method Not Allowed")
            };
            let bytes = message::reply(&req, status.0, status.1).build();
            self.transmit(&bytes, dest);
            return;
        }
        let state = req
            .header("Subscription-State")
            .and_then(|v| SubscriptionState::parse(v).ok());
        let known = self.dialogs.get(&req.base.call_id).copied();
        let status = match (&known, &state) {
            (None, Some(SubscriptionState::Terminated { .. })) => 200,
            (None, _) => 481,
            _ => 200,
        };
        let reason = if status == 200 {
            "OK"
        } else {
            "Call/Transaction Does Not Exist"
        };
        let bytes = message::reply(&req, status, reason).build();
        self.transmit(&bytes, dest);
        self.run.sip.borrow_mut().notify_received += 1;
        let remote = || -> Option<Dialog> {
            Some(Dialog {
                remote_tag: req.base.from.tag()?.to_string(),
                remote_target: req
                    .header("Contact")
                    .and_then(contact_uri)
                    .unwrap_or_else(|| req.uri().to_string()),
                routes: Vec::new(),
            })
        };
        match known {
            Some(DialogRef::Held(u, slot)) => {
                let phase = self.run.sip_phase.get();
                let h = &mut self.users[u].subs[slot];
                if h.dialog.is_none() {
                    h.dialog = remote();
                }
                match state {
                    Some(SubscriptionState::Active { .. }) => {
                        h.state = HeldState::Established { pending: false }
                    }
                    Some(SubscriptionState::Pending { .. }) => {
                        h.state = HeldState::Established { pending: true }
                    }
                    Some(SubscriptionState::Terminated {
                        reason,
                        retry_after,
                    }) => {
                        h.state = HeldState::Idle;
                        h.dialog = None;
                        if let Some(t) = h.timer.take() {
                            self.timers.cancel(t);
                        }
                        let retry = matches!(
                            reason,
                            None | Some(Reason::Deactivated)
                                | Some(Reason::Timeout)
                                | Some(Reason::Probation)
                                | Some(Reason::Giveup)
                        );
                        if retry
                            && h.resubscribes < MAX_RESUBSCRIBES
                            && phase != SipPhase::Logout
                            && !h.busy
                        {
                            h.resubscribes += 1;
                            let wait =
                                Duration::from_secs(u64::from(retry_after.unwrap_or(0).min(30)));
                            h.timer = Some(
                                self.timers
                                    .schedule(Instant::now() + wait, Timer::Resubscribe(u, slot)),
                            );
                        } else if !retry {
                            let why = reason.map_or("none", |r| r.token());
                            self.run
                                .error(format!("subscription_terminated_{why}"), || {
                                    format!("NOTIFY terminated;reason={why}")
                                });
                        }
                    }
                    None => {}
                }
            }
            Some(DialogRef::Cycle(id)) => {
                let Some(c) = self.cycles.get_mut(&id) else {
                    return;
                };
                if c.dialog.is_none() {
                    c.dialog = remote();
                }
                c.notified = true;
                if c.subscribed && !c.unsubscribing {
                    self.cycle_unsubscribe(id);
                }
            }
            None => {}
        }
    }

    fn cycle_unsubscribe(&mut self, id: u64) {
        let Some(c) = self.cycles.get_mut(&id) else {
            return;
        };
        c.unsubscribing = true;
        if let Some(t) = c.timer.take() {
            self.timers.cancel(t);
        }
        let (u, started) = (c.user, c.started);
        self.send(
            u,
            Op::CycleUnsubscribe(id),
            OpCtx {
                started,
                auth_tries: 0,
                retries: 0,
                gate: Gate::Free,
            },
        );
    }

    fn response(&mut self, resp: Response) {
        let Some(branch) = resp.base.via.branch.clone() else {
            return;
        };
        if resp.status < 200 {
            if let Some(t) = self.txns.get_mut(&branch) {
                t.interval = T2;
            }
            return;
        }
        let Some(t) = self.txns.remove(&branch) else {
            return; // a retransmitted final response
        };
        self.timers.cancel(t.timer);
        self.run
            .sip
            .borrow_mut()
            .codes
            .add(format!("{} {}", t.method, resp.status), 1);
        let (u, op, mut ctx) = (t.user, t.op, t.ctx);
        match resp.status {
            200..=299 => self.ok(u, op, ctx, &resp),
            // An un-SUBSCRIBE whose dialog the notifier already ended (a user moved to another
            // node gets NOTIFY terminated;reason=deactivated, which can cross our request):
            // 481 says there is nothing left to end (RFC 6665 §4.1.2.3, RFC 3261 §12.2.2),
            // which is what we asked for. The code is still counted in `codes`.
            481 if matches!(op, Op::Unsubscribe { .. } | Op::CycleUnsubscribe(_)) => {
                self.ok(u, op, ctx, &resp)
            }
            401 | 407 => {
                let name = if resp.status == 401 {
                    "WWW-Authenticate"
                } else {
                    "Proxy-Authenticate"
                };
                match Challenge::pick(resp.headers(name)) {
                    Some(challenge) if ctx.auth_tries < MAX_AUTH => {
                        self.users[u].auth = Some(Auth {
                            challenge,
                            nc: 0,
                            proxy: resp.status == 407,
                        });
                        ctx.auth_tries += 1;
                        self.send(u, op, ctx);
                    }
                    _ => self.failed(u, op, ctx, &resp.status.to_string()),
                }
            }
            300..=399 if self.run.set.opts.follow_redirects && ctx.retries < MAX_RETRIES => {
                let to = resp
                    .header("Contact")
                    .and_then(contact_uri)
                    .and_then(|c| uri_addr(&c));
                match to {
                    Some(addr) => {
                        self.run.stats.borrow_mut().sip_302 += 1;
                        self.users[u].target = addr;
                        ctx.retries += 1;
                        self.send(u, op, ctx);
                    }
                    None => self.failed(u, op, ctx, "3xx_without_usable_contact"),
                }
            }
            423 if ctx.retries < MAX_RETRIES => match expires(resp.header("Min-Expires")) {
                Some(min) if min > EXPIRES.max(self.users[u].min_expires) => {
                    self.users[u].min_expires = min;
                    ctx.retries += 1;
                    self.send(u, op, ctx);
                }
                _ => self.failed(u, op, ctx, "423"),
            },
            s => self.failed(u, op, ctx, &s.to_string()),
        }
    }

    fn counter(s: &mut SipStats, op: Op) -> &mut TxCounter {
        match op {
            Op::Publish(_) => &mut s.publish,
            Op::Subscribe { .. } | Op::Unsubscribe { .. } => &mut s.subscribe,
            Op::CycleSubscribe(_) | Op::CycleUnsubscribe(_) => &mut s.cycle,
        }
    }

    /// Gate bookkeeping when a logical request ends.
    fn ended(&mut self, u: usize, ctx: OpCtx) {
        if ctx.gate == Gate::Free {
            return;
        }
        self.gate_inflight = self.gate_inflight.saturating_sub(1);
        if ctx.gate != Gate::Setup {
            return;
        }
        let mut s = self.run.sip.borrow_mut();
        s.setup_remaining = s.setup_remaining.saturating_sub(1);
        let user = &mut self.users[u];
        user.setup_left = user.setup_left.saturating_sub(1);
        if user.setup_left == 0 {
            s.setup_users_done += 1;
        }
    }

    fn ok(&mut self, u: usize, op: Op, ctx: OpCtx, resp: &Response) {
        let now = Instant::now();
        let in_window = self.run.in_window(now);
        let counted = !matches!(op, Op::CycleSubscribe(_) | Op::CycleUnsubscribe(_));
        if counted {
            let mut s = self.run.sip.borrow_mut();
            let c = Engine::counter(&mut s, op);
            c.ok += 1;
            c.ok_in_window += u64::from(in_window);
            c.latency.record(now - ctx.started);
        }
        let granted = expires(resp.header("Expires")).unwrap_or(EXPIRES);
        let refresh_at = now + Duration::from_secs(u64::from(granted.max(2)) * 4 / 5);
        let logout = self.run.sip_phase.get() == SipPhase::Logout;
        match op {
            Op::Publish(kind) => {
                let user = &mut self.users[u];
                user.pub_busy = false;
                if let Some(t) = user.pub_timer.take() {
                    self.timers.cancel(t);
                }
                if kind == PubKind::Remove {
                    user.etag = None;
                } else {
                    user.etag = resp.header("SIP-ETag").map(|e| e.trim().to_string());
                    if !logout && granted > 0 {
                        user.pub_timer =
                            Some(self.timers.schedule(refresh_at, Timer::RefreshPublish(u)));
                    }
                }
            }
            Op::Subscribe { slot, .. } => {
                let h = &mut self.users[u].subs[slot];
                h.busy = false;
                if let Some(d) = dialog_from_response(resp) {
                    h.dialog = Some(d);
                }
                if h.state == HeldState::Idle {
                    h.state = HeldState::Established {
                        pending: resp.status == 202,
                    };
                }
                if let Some(t) = h.timer.take() {
                    self.timers.cancel(t);
                }
                if !logout && granted > 0 {
                    h.timer = Some(
                        self.timers
                            .schedule(refresh_at, Timer::RefreshSubscribe(u, slot)),
                    );
                }
            }
            Op::Unsubscribe { slot } => {
                let h = &mut self.users[u].subs[slot];
                h.busy = false;
                h.state = HeldState::Idle;
                h.dialog = None;
            }
            Op::CycleSubscribe(id) => {
                self.run
                    .sip
                    .borrow_mut()
                    .cycle_subscribe
                    .record(now - ctx.started);
                if let Some(c) = self.cycles.get_mut(&id) {
                    c.subscribed = true;
                    if let Some(d) = dialog_from_response(resp) {
                        c.dialog = Some(d);
                    }
                    if c.notified {
                        self.cycle_unsubscribe(id);
                    } else {
                        c.timer = Some(
                            self.timers
                                .schedule(now + CYCLE_NOTIFY_WAIT, Timer::CycleWait(id)),
                        );
                    }
                }
            }
            Op::CycleUnsubscribe(id) => self.cycle_end(id, now),
        }
        self.ended(u, ctx);
    }

    fn cycle_end(&mut self, id: u64, now: Instant) {
        let Some(c) = self.cycles.remove(&id) else {
            return;
        };
        if let Some(t) = c.timer {
            self.timers.cancel(t);
        }
        self.dialogs.remove(&c.call_id);
        self.users[c.user].cycle_busy = false;
        let ok = !c.failed && c.notified && c.subscribed;
        let in_window = self.run.in_window(now);
        let mut s = self.run.sip.borrow_mut();
        if ok {
            s.cycle.ok += 1;
            s.cycle.ok_in_window += u64::from(in_window);
            s.cycle.latency.record(now - c.started);
        } else {
            s.cycle.failed += 1;
        }
    }

    fn failed(&mut self, u: usize, op: Op, ctx: OpCtx, why: &str) {
        let method = op.method();
        self.run.error(
            format!("sip_{}_{why}", method.as_str().to_ascii_lowercase()),
            || format!("{method} for {} ended with {why}", self.users[u].name),
        );
        let counted = !matches!(op, Op::CycleSubscribe(_) | Op::CycleUnsubscribe(_));
        if counted {
            let mut s = self.run.sip.borrow_mut();
            Engine::counter(&mut s, op).failed += 1;
        }
        let logout = self.run.sip_phase.get() == SipPhase::Logout;
        match op {
            Op::Publish(kind) => {
                let user = &mut self.users[u];
                user.pub_busy = false;
                if why == "412" {
                    // The entity-tag is unknown (expired): publish anew.
                    user.etag = None;
                    if !logout && kind != PubKind::Remove {
                        self.ended(u, ctx);
                        self.start(u, Op::Publish(PubKind::Initial), Gate::Free);
                        return;
                    }
                }
            }
            Op::Subscribe { slot, refresh } => {
                let h = &mut self.users[u].subs[slot];
                h.busy = false;
                h.state = HeldState::Idle;
                h.dialog = None;
                if refresh && why == "481" && !logout {
                    // The dialog is gone on the server: subscribe anew.
                    self.ended(u, ctx);
                    self.start(
                        u,
                        Op::Subscribe {
                            slot,
                            refresh: false,
                        },
                        Gate::Free,
                    );
                    return;
                }
            }
            Op::Unsubscribe { slot } => {
                let h = &mut self.users[u].subs[slot];
                h.busy = false;
                h.state = HeldState::Idle;
                h.dialog = None;
            }
            Op::CycleSubscribe(id) | Op::CycleUnsubscribe(id) => {
                if let Some(c) = self.cycles.get_mut(&id) {
                    c.failed = true;
                }
                let unsub = matches!(op, Op::CycleUnsubscribe(_));
                let has_dialog = self.cycles.get(&id).is_some_and(|c| c.dialog.is_some());
                if !unsub && has_dialog {
                    // Established by a NOTIFY although the SUBSCRIBE failed: end it.
                    self.cycle_unsubscribe(id);
                } else {
                    self.cycle_end(id, Instant::now());
                }
            }
        }
        self.ended(u, ctx);
    }

    fn timer(&mut self, t: Timer, now: Instant) {
        let phase = self.run.sip_phase.get();
        match t {
            Timer::Retransmit(branch) => {
                let Some(txn) = self.txns.get_mut(&branch) else {
                    return;
                };
                if now >= txn.deadline {
                    let Some(txn) = self.txns.remove(&branch) else {
                        return;
                    };
                    self.run
                        .sip
                        .borrow_mut()
                        .codes
                        .add(format!("{} timeout", txn.method), 1);
                    self.failed(txn.user, txn.op, txn.ctx, "timeout");
                    return;
                }
                tracing::debug!(
                    method = %txn.method,
                    dest = %txn.dest,
                    branch = %branch,
                    after_ms = (now - txn.ctx.started).as_millis() as u64,
                    "retransmitting"
                );
                let (bytes, dest) = (txn.bytes.clone(), txn.dest);
                self.transmit(&bytes, dest);
                let Some(txn) = self.txns.get_mut(&branch) else {
                    return;
                };
                let next = (now + txn.interval).min(txn.deadline);
                txn.interval = (txn.interval * 2).min(T2);
                txn.timer = self.timers.schedule(next, Timer::Retransmit(branch));
            }
            Timer::RefreshPublish(u) => {
                self.users[u].pub_timer = None;
                if phase != SipPhase::Logout && !self.users[u].pub_busy {
                    self.start(u, Op::Publish(PubKind::Refresh), Gate::Free);
                }
            }
            Timer::RefreshSubscribe(u, slot) => {
                let h = &mut self.users[u].subs[slot];
                h.timer = None;
                if phase != SipPhase::Logout && !h.busy {
                    self.start(
                        u,
                        Op::Subscribe {
                            slot,
                            refresh: true,
                        },
                        Gate::Free,
                    );
                }
            }
            Timer::Resubscribe(u, slot) => {
                let h = &mut self.users[u].subs[slot];
                h.timer = None;
                if phase != SipPhase::Logout && !h.busy && h.state == HeldState::Idle {
                    self.start(
                        u,
                        Op::Subscribe {
                            slot,
                            refresh: false,
                        },
                        Gate::Free,
                    );
                }
            }
            Timer::CycleWait(id) => {
                if let Some(c) = self.cycles.get_mut(&id) {
                    c.timer = None;
                    if !c.unsubscribing {
                        c.failed = true;
                        self.run.error("cycle_no_notify", || {
                            format!("no NOTIFY within {CYCLE_NOTIFY_WAIT:?} of the SUBSCRIBE's 2xx")
                        });
                        self.cycle_unsubscribe(id);
                    }
                }
            }
        }
    }
}

/// Request-URI, To and destination of a request: in the dialog when there is one
/// (RFC 3261 §12.2.1.1), else to the presentity through the user's server.
/// The headers of a SUBSCRIBE (RFC 6665 §4.1.2, RFC 3856 §5): the dialog's route set, our
/// Contact, `Event: presence`, `Accept: application/pidf+xml` when `accept`, `Expires`.
fn subscribe_headers(
    headers: &mut Vec<(&str, String)>,
    dialog: Option<&Dialog>,
    contact: String,
    accept: bool,
    expires: String,
) {
    for r in dialog.iter().flat_map(|d| d.routes.iter()) {
        headers.push(("Route", r.clone()));
    }
    headers.push(("Contact", contact));
    headers.push(("Event", "presence".into()));
    if accept {
        headers.push(("Accept", crate::pidf::CONTENT_TYPE.into()));
    }
    headers.push(("Expires", expires));
}

fn dialog_addressing(
    dialog: Option<&Dialog>,
    target_aor: &str,
    server: SocketAddr,
) -> (String, String, SocketAddr) {
    match dialog {
        Some(d) => {
            let dest = d
                .routes
                .first()
                .and_then(|r| contact_uri(r))
                .and_then(|u| uri_addr(&u))
                .or_else(|| uri_addr(&d.remote_target))
                .unwrap_or(server);
            (
                d.remote_target.clone(),
                format!("<{target_aor}>;tag={}", d.remote_tag),
                dest,
            )
        }
        None => (target_aor.to_string(), format!("<{target_aor}>"), server),
    }
}

/// The dialog a SUBSCRIBE's 2xx establishes (RFC 3261 §12.1.2): the To tag, the Contact as
/// remote target and the Record-Route set reversed.
fn dialog_from_response(resp: &Response) -> Option<Dialog> {
    let remote_tag = resp.base.to.tag()?.to_string();
    let remote_target = resp.header("Contact").and_then(contact_uri)?;
    let mut routes: Vec<String> = resp
        .headers("Record-Route")
        .into_iter()
        .flat_map(message::split_list)
        .map(str::to_string)
        .collect();
    routes.reverse();
    Some(Dialog {
        remote_tag,
        remote_target,
        routes,
    })
}

/// Where a response to a request with this top Via goes (RFC 3261 §18.2.2, RFC 3581): an IP
/// literal target, else the source.
fn response_dest(via: &message::Via, src: SocketAddr) -> SocketAddr {
    let (host, port) = via.response_target();
    host.parse()
        .map(|ip| SocketAddr::new(ip, port))
        .unwrap_or(src)
}
