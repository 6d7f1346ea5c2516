//! The state every task of a run shares (one thread: `Rc`, `Cell`, `RefCell`): settings,
//! counters, the measurement step in progress, caches; the commands the orchestrator sends.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::error::LoadgenError;
use super::options::Settings;
use super::stats::{Counts, Latency};
use super::summary::TxCounter;

/// Nanoseconds since the first call: the one monotonic clock of senders and receivers.
pub(crate) fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Waits on one socket or answer give up after this.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Logout (XMPP close, SIP un-PUBLISH and un-SUBSCRIBE) gives up after this.
pub(crate) const LOGOUT_MAX: Duration = Duration::from_secs(5);
/// Commands queued per XMPP user; beyond, an update is skipped and counted as backlog.
pub(crate) const CMD_QUEUE: usize = 64;

/// What the orchestrator tells an XMPP user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// Send this many measured presence updates now.
    Updates(u32),
    /// Start roster setup (subscription requests to the forward ring).
    Setup,
    /// One roster subscription cycle (`subscribe` → `subscribed` → `unsubscribe`) with
    /// an online user a few places along; `rendezvous replay`'s XMPP request.
    Subscribe,
}

/// What the SIP engines should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SipPhase {
    /// Initial PUBLISH and SUBSCRIBEs.
    Setup,
    /// Holding state, no rates.
    Idle,
    /// PUBLISH and cycle rates on (warm-up and measurement).
    Running,
    /// Un-PUBLISH, un-SUBSCRIBE, then stop.
    Logout,
}

/// Counters of XMPP users and the run as a whole.
#[derive(Default)]
pub(crate) struct Stats {
    /// `--login-rounds`, measured rounds: counts, time, latency.
    pub(crate) repeat_rounds: u32,
    pub(crate) repeat_ok: u64,
    pub(crate) repeat_failed: u64,
    pub(crate) repeat_secs: f64,
    pub(crate) repeat_latency: Latency,
    pub(crate) logins_ok: u64,
    pub(crate) logins_failed: u64,
    pub(crate) login_latency: Latency,
    pub(crate) last_login: Option<Instant>,
    /// XMPP users whose login phase is over (ready or failed).
    pub(crate) login_resolved: usize,
    /// XMPP users online with their roster.
    pub(crate) ready: usize,
    /// XMPP users whose ring rosters are all `both`.
    pub(crate) setup_complete: usize,
    pub(crate) reg_ok: u64,
    pub(crate) reg_existing: u64,
    pub(crate) reg_failed: u64,
    pub(crate) reg_done: usize,
    pub(crate) see_other_host: u64,
    pub(crate) cxfr: u64,
    pub(crate) sip_302: u64,
    pub(crate) errors: Counts,
    /// The first message of each error kind, for the human summary.
    pub(crate) samples: BTreeMap<String, String>,
    /// Deliveries of updates sent outside the current step (warm-up, an earlier step).
    pub(crate) late: u64,
    /// XMPP user tasks that have ended.
    pub(crate) finished: usize,
    /// Roster subscription cycles ([`Cmd::Subscribe`]): sent, answered, failed, and the
    /// latency `subscribe` → `subscribed`.
    pub(crate) xmpp_subscribe: TxCounter,
}

impl Stats {
    pub(crate) fn error(&mut self, kind: impl Into<String>, message: impl FnOnce() -> String) {
        let kind = kind.into();
        if !self.samples.contains_key(&kind) && self.samples.len() < 64 {
            self.samples.insert(kind.clone(), message());
        }
        self.errors.add(kind, 1);
    }

    pub(crate) fn fail(&mut self, e: &LoadgenError) {
        self.error(e.kind(), || e.to_string());
    }
}

/// SIP counters of the run.
#[derive(Default)]
pub(crate) struct SipStats {
    pub(crate) publish: TxCounter,
    pub(crate) subscribe: TxCounter,
    pub(crate) cycle: TxCounter,
    /// First send of a cycle's SUBSCRIBE to its 2xx (`rendezvous replay` takes it per step).
    pub(crate) cycle_subscribe: Latency,
    pub(crate) notify_received: u64,
    pub(crate) active_subscriptions: u64,
    pub(crate) pending_subscriptions: u64,
    pub(crate) codes: Counts,
    /// Initial PUBLISH and SUBSCRIBE requests not finished yet.
    pub(crate) setup_remaining: usize,
    /// SIP users whose initial requests all finished.
    pub(crate) setup_users_done: usize,
}

/// Counters of the measurement step in progress.
pub(crate) struct Step {
    /// Updates stamped at or after this (and before `end_ns`) belong to the step.
    pub(crate) start_ns: u64,
    pub(crate) end_ns: u64,
    pub(crate) sent: u64,
    pub(crate) expected: u64,
    pub(crate) received: u64,
    pub(crate) latency: Latency,
}

impl Step {
    pub(crate) fn closed() -> Step {
        Step {
            start_ns: u64::MAX,
            end_ns: u64::MAX,
            sent: 0,
            expected: 0,
            received: 0,
            latency: Latency::new(),
        }
    }

    pub(crate) fn counts(&self, nanos: u64) -> bool {
        nanos >= self.start_ns && nanos < self.end_ns
    }
}

/// Key of the SaltedPassword cache: (hash, password, salt, iterations).
type SaltKey = (u8, String, Vec<u8>, u32);

/// State shared by every task of a run (one thread: `Rc`, `Cell`, `RefCell`).
pub(crate) struct Run {
    pub(crate) set: Settings,
    pub(crate) stop: Cell<bool>,
    /// Logins, registrations in flight.
    pub(crate) login_gate: Semaphore,
    /// PBKDF2 computations in flight (one per core).
    pub(crate) cpu_gate: Semaphore,
    /// Per XMPP slot: online (bound, roster received, initial presence sent).
    pub(crate) online: Vec<Cell<bool>>,
    /// Per XMPP slot, in the current step: deliveries it should get, and got.
    pub(crate) rx_expected: Vec<Cell<u64>>,
    pub(crate) rx_received: Vec<Cell<u64>>,
    /// Lower-cased user name → slot, for every user of the run.
    pub(crate) names: HashMap<String, usize>,
    pub(crate) stats: RefCell<Stats>,
    pub(crate) step: RefCell<Step>,
    pub(crate) salted: RefCell<HashMap<SaltKey, Rc<[u8]>>>,
    pub(crate) resolved: RefCell<HashMap<String, SocketAddr>>,
    pub(crate) tls: RefCell<Option<std::sync::Arc<rustls::ClientConfig>>>,
    pub(crate) sip_phase: Cell<SipPhase>,
    pub(crate) sip: RefCell<SipStats>,
    /// Start and end of the measurement (end `None` while it runs).
    pub(crate) window: Cell<Option<(Instant, Option<Instant>)>>,
}

impl Run {
    pub(crate) fn new(set: Settings) -> Run {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let names = (0..set.opts.users)
            .map(|k| (set.name(k).to_lowercase(), k))
            .collect();
        Run {
            login_gate: Semaphore::new(set.opts.login_concurrency),
            cpu_gate: Semaphore::new(cores),
            online: (0..set.n_xmpp).map(|_| Cell::new(false)).collect(),
            rx_expected: (0..set.n_xmpp).map(|_| Cell::new(0)).collect(),
            rx_received: (0..set.n_xmpp).map(|_| Cell::new(0)).collect(),
            names,
            stats: RefCell::new(Stats::default()),
            step: RefCell::new(Step::closed()),
            salted: RefCell::new(HashMap::new()),
            resolved: RefCell::new(HashMap::new()),
            tls: RefCell::new(None),
            sip_phase: Cell::new(SipPhase::Setup),
            sip: RefCell::new(SipStats::default()),
            window: Cell::new(None),
            stop: Cell::new(false),
            set,
        }
    }

    /// The slot of user name `local` (any case), if it is one of the run's users.
    pub(crate) fn slot_of(&self, local: &str) -> Option<usize> {
        if let Some(k) = self.names.get(local) {
            return Some(*k);
        }
        self.names.get(&local.to_lowercase()).copied()
    }

    /// Whether `t` falls in the measurement window.
    pub(crate) fn in_window(&self, t: Instant) -> bool {
        match self.window.get() {
            Some((start, end)) => t >= start && end.is_none_or(|e| t < e),
            None => false,
        }
    }

    pub(crate) fn error(&self, kind: impl Into<String>, message: impl FnOnce() -> String) {
        self.stats.borrow_mut().error(kind, message);
    }
}
