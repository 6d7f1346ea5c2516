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

use super::error::LoadgenError;
use super::net;
use super::run::{now_ns, Run, SipPhase, SipStats, LOGOUT_MAX};
use super::sip_wire::{contact_uri, expires, pidf_body, uri_addr, Challenge, Request};
use super::summary::TxCounter;
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
}

mod receive;
mod send;
