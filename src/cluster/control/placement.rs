//! Placement on the primary (DESIGN.md §4, §7): which server a user goes to, and getting
//! a server from the pool when every one is full.
//!
//! - **Jobs**: one placement per user at a time; a second request for the same user (a SIP
//!   retransmission, a second login) waits for the first one's answer.
//! - **Candidates**: the allocator's decision ([`Allocator::place_excluding`]): sticky home,
//!   least loaded, pool, or the least loaded with a warning when the pool is empty.
//! - **Two-phase reservation**: the primary sends `redirection-usr-addr` (with the user's
//!   record) to the chosen server and redirects the client only after its 200; a server
//!   that does not answer within `ccmp_timeout_ms` is marked suspect and the next one is
//!   tried. A user placed here is reserved at once.
//! - **Pool acquisition**: the first pool entry that answers OPTIONS is INVITEd; when none
//!   does, the first one with a `spawn` command is spawned and probed every [`SPAWN_POLL`]
//!   until `spawn_timeout_ms`, then INVITEd. One acquisition at a time; the users waiting
//!   for it are placed again when it ends, and a failed one empties the pool for
//!   [`POOL_RETRY`].
//!
//! [`Allocator::place_excluding`]: crate::cluster::allocator::Allocator::place_excluding

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::cluster::allocator::Decision;
use crate::cluster::ccmp::{Element, Protocol};
use crate::cluster::dialog::Dialog;
use crate::cluster::record;
use crate::cluster::view::NodeAddrs;
use crate::config::PoolConfig;
use crate::sip::message::Response;

use super::client::ccmp_body;
use super::effect::{Answer, Command, Destination, Effect, Out, Ticket, Timer};
use super::error::ControlError;
use super::sessions;
use super::shared::Shared;

/// How long an exhausted pool stays empty before its idle candidates are tried again.
pub const POOL_RETRY: Duration = Duration::from_secs(30);

/// The longest an OPTIONS probe of a pool server waits (less when `ccmp_timeout_ms` is).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// How often a spawned pool server is probed until it answers or `spawn_timeout_ms` passes.
pub const SPAWN_POLL: Duration = Duration::from_millis(250);

/// A caller waiting for a user's placement, and how the user arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter {
    /// The caller.
    pub ticket: Ticket,
    /// XMPP or SIP.
    pub protocol: Protocol,
}

/// One placement in progress.
#[derive(Debug)]
pub struct Job {
    user: String,
    protocol: Protocol,
    cost: u64,
    /// Servers that failed this job (not tried again).
    tried: Vec<String>,
    waiter: Waiter,
}

/// What a placement request continues with.
#[derive(Debug)]
pub enum Pending {
    /// The `redirection-usr-addr` reservation of a job on `server`.
    Reserve {
        /// The job.
        job: Job,
        /// The chosen server.
        server: String,
        /// Its addresses (where the client goes).
        addrs: NodeAddrs,
    },
    /// The OPTIONS probe of the acquisition.
    Probe,
    /// The INVITE of a pool server, with the dialog it starts.
    Invite(Dialog),
}

/// Who waits for a pool acquisition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Users that no server could take: placed again, and the new server is rebalanced.
    Placement,
    /// An operator's `POST /api/nodes`.
    Admin(Ticket),
}

/// Why no pool server could be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcquireError {
    /// No candidate is configured or idle.
    #[error("no pool entries")]
    NoEntries,
    /// Another acquisition runs; the operator may try again.
    #[error("a pool server is being taken already")]
    Busy,
    /// Nobody answered the probes and nobody can be spawned.
    #[error("no pool server answers OPTIONS and none can be spawned")]
    NoneAnswers,
    /// The spawn command could not be run.
    #[error("spawn of {node} failed: {error}")]
    SpawnFailed {
        /// The pool entry.
        node: String,
        /// The OS error.
        error: String,
    },
    /// The spawned server stayed silent.
    #[error("{0} did not answer OPTIONS within spawn_timeout_ms")]
    SpawnTimeout(String),
    /// Its INVITE failed.
    #[error("{node}: {error}")]
    Invite {
        /// The pool entry.
        node: String,
        /// Why.
        error: ControlError,
    },
}

#[derive(Debug)]
enum Stage {
    /// Probing `entries[i]`.
    Probing { entries: Vec<PoolConfig>, i: usize },
    /// Its spawn command runs.
    Spawning(PoolConfig),
    /// Spawned: probing until the deadline.
    Awaiting {
        entry: PoolConfig,
        deadline: Instant,
    },
    /// INVITEd.
    Inviting(PoolConfig),
}

#[derive(Debug)]
struct Acquisition {
    then: Then,
    stage: Stage,
}

/// The primary's placements in progress.
#[derive(Debug, Default)]
pub struct Placement {
    /// Jobs waiting for a pool server.
    waiting: Vec<Job>,
    /// Users being placed (or moved), with the other callers waiting for the same answer.
    placing: HashMap<String, Vec<Waiter>>,
    acquisition: Option<Acquisition>,
}

impl Placement {
    /// Nothing in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `user` is being placed or moved.
    pub fn is_busy(&self, user: &str) -> bool {
        self.placing.contains_key(user)
    }

    /// Holds `user` while it moves: placements of it wait (see [`Self::release`]).
    pub fn hold(&mut self, user: &str) {
        self.placing.insert(user.to_string(), Vec::new());
    }

    /// Ends a hold: the callers that waited meanwhile, to be placed anew.
    pub fn release(&mut self, user: &str) -> Vec<Waiter> {
        self.placing.remove(user).unwrap_or_default()
    }

    /// Whether a pool acquisition runs.
    pub fn acquiring(&self) -> bool {
        self.acquisition.is_some()
    }

    /// Places `user` for the caller of `waiter` (DESIGN.md §4).
    pub fn start_job<P: From<Pending>>(
        &mut self,
        sh: &mut Shared,
        user: &str,
        waiter: Waiter,
        out: &mut Out<P>,
    ) {
        // One placement per user at a time: a retransmitted SIP request or a second login
        // racing the first waits for the same answer instead of reserving again.
        if let Some(waiters) = self.placing.get_mut(user) {
            waiters.push(waiter);
            return;
        }
        self.placing.insert(user.to_string(), Vec::new());
        let cost = sh.cost(user);
        let job = Job {
            user: user.to_string(),
            protocol: waiter.protocol,
            cost,
            tried: Vec::new(),
            waiter,
        };
        self.try_place(sh, job, out);
    }

    fn try_place<P: From<Pending>>(&mut self, sh: &mut Shared, mut job: Job, out: &mut Out<P>) {
        loop {
            let exclude: Vec<&str> = job.tried.iter().map(String::as_str).collect();
            let decision = sh
                .primary
                .alloc
                .place_excluding(&job.user, job.cost, &exclude);
            let server = match decision {
                Decision::Sticky(s) | Decision::Least(s) => s,
                Decision::Overloaded(s) => {
                    warn!(user = %job.user, server = %s, "every server is full and the pool is empty: placing on the least loaded");
                    s
                }
                Decision::Pool => {
                    self.waiting.push(job);
                    let candidates = sh.primary.alloc.pool().to_vec();
                    return self.acquire(sh, candidates, Then::Placement, out);
                }
                Decision::NoServer => sh.settings.me.id.clone(),
            };
            if server == sh.settings.me.id {
                sh.reserve_here(&job.user, job.cost, out);
                sh.placed(&job.user, &server, out);
                return self.finish(&job.user, job.waiter, Destination::Local, out);
            }
            let Some(addrs) = sh.sessions.addrs(&server) else {
                job.tried.push(server);
                continue;
            };
            sh.primary.alloc.begin(&server, job.cost);
            let record = sh
                .records
                .export(&job.user)
                .ok()
                .flatten()
                .map(|r| record::encode(&r));
            let element = Element::RedirectionUsrAddr {
                user: sh.settings.user_addr(&job.user),
                protocol: job.protocol,
                resources: sh.settings.resources_of(job.cost),
                record,
                moved_from: None,
            };
            match sh.info(&server, "redirection-usr-addr", vec![element]) {
                Ok(info) => {
                    return out.request(info, Pending::Reserve { job, server, addrs });
                }
                Err(e) => {
                    warn!(user = %job.user, server = %server, error = %e, "reservation failed; trying the next server");
                    sh.primary.alloc.abort(&server, job.cost);
                    job.tried.push(server);
                }
            }
        }
    }

    /// A reservation's outcome: the user is placed there, or the next server is tried (a
    /// server that timed out is suspect).
    pub fn on_reserved<P: From<Pending>>(
        &mut self,
        sh: &mut Shared,
        mut job: Job,
        server: String,
        addrs: NodeAddrs,
        result: Result<Response, ControlError>,
        out: &mut Out<P>,
    ) {
        match result.and_then(|r| ccmp_body(sh.settings.secret(), &r)) {
            Ok(resp) => {
                sh.primary.alloc.confirm(&job.user, &server, job.cost);
                sh.primary
                    .apply_reported_load(&server, &resp.elements, sh.now);
                sh.placed(&job.user, &server, out);
                info!(user = %job.user, server = %server, "user placed");
                self.finish(&job.user, job.waiter, Destination::Redirect(addrs), out);
            }
            Err(e) => {
                warn!(user = %job.user, server = %server, error = %e, "reservation failed; trying the next server");
                sh.primary.alloc.abort(&server, job.cost);
                if e == ControlError::Timeout {
                    sh.primary.alloc.mark_suspect(&server);
                }
                job.tried.push(server);
                self.try_place(sh, job, out);
            }
        }
    }

    /// Answers a placement and every request that waited for the same user's.
    fn finish<P>(&mut self, user: &str, waiter: Waiter, to: Destination, out: &mut Out<P>) {
        let waiters = self.placing.remove(user).unwrap_or_default();
        for w in std::iter::once(waiter).chain(waiters) {
            out.answer(w.ticket, Answer::Placed(to.clone()));
        }
    }

    /// Places again the users that waited for a server.
    pub fn retry_waiting<P: From<Pending>>(&mut self, sh: &mut Shared, out: &mut Out<P>) {
        for job in std::mem::take(&mut self.waiting) {
            self.try_place(sh, job, out);
        }
    }

    /// Takes a server from `candidates` (pool ids) for `then` (DESIGN.md §7).
    pub fn acquire<P: From<Pending>>(
        &mut self,
        sh: &mut Shared,
        candidates: Vec<String>,
        then: Then,
        out: &mut Out<P>,
    ) {
        if self.acquisition.is_some() {
            // One acquisition at a time; the running one places the waiting users again.
            if let Then::Admin(ticket) = then {
                out.answer(ticket, Answer::Admin(Err(AcquireError::Busy.to_string())));
            }
            return;
        }
        let entries: Vec<PoolConfig> = candidates
            .iter()
            .filter_map(|id| sh.primary.candidate(&sh.settings.config, id))
            .collect();
        if entries.is_empty() {
            self.done(sh, then, Err(AcquireError::NoEntries), out);
            return;
        }
        self.acquisition = Some(Acquisition {
            then,
            stage: Stage::Probing { entries, i: 0 },
        });
        self.probe(sh, out);
    }

    /// The next step of the acquisition's probing: OPTIONS to the current entry, or, past
    /// the last, the spawn of the first entry that has a command.
    fn probe<P: From<Pending>>(&mut self, sh: &mut Shared, out: &mut Out<P>) {
        let Some(a) = self.acquisition.as_mut() else {
            return;
        };
        let Stage::Probing { entries, i } = &a.stage else {
            return;
        };
        if let Some(entry) = entries.get(*i) {
            let deadline = sh.settings.timeout().min(PROBE_TIMEOUT);
            return out.request(
                sessions::options(&sh.settings, entry.sip, deadline),
                Pending::Probe,
            );
        }
        let Some(entry) = entries.iter().find(|p| p.spawn.is_some()).cloned() else {
            return self.fail(sh, AcquireError::NoneAnswers, out);
        };
        let command = entry.spawn.clone().unwrap_or_default();
        info!(node = %entry.id, command = %command, "spawning a pool server");
        out.push(Effect::Run {
            node: entry.id.clone(),
            command,
            kind: Command::Spawn,
        });
        a.stage = Stage::Spawning(entry);
    }

    /// An OPTIONS probe's outcome.
    pub fn on_probed<P: From<Pending>>(
        &mut self,
        sh: &mut Shared,
        result: Result<Response, ControlError>,
        out: &mut Out<P>,
    ) {
        let up = result.is_ok();
        let Some(a) = self.acquisition.as_mut() else {
            return;
        };
        match &mut a.stage {
            Stage::Probing { entries, i } => {
                if up {
                    let entry = entries[*i].clone();
                    self.invite(sh, entry, out);
                } else {
                    *i += 1;
                    self.probe(sh, out);
                }
            }
            Stage::Awaiting { entry, deadline } => {
                if up {
                    let entry = entry.clone();
                    self.invite(sh, entry, out);
                } else if sh.now < *deadline {
                    out.arm(Timer::SpawnPoll, SPAWN_POLL);
                } else {
                    let node = entry.id.clone();
                    self.fail(sh, AcquireError::SpawnTimeout(node), out);
                }
            }
            _ => {}
        }
    }

    /// The spawn command of `node` ran (or could not).
    pub fn on_spawned<P: From<Pending>>(
        &mut self,
        sh: &mut Shared,
        node: &str,
        result: Result<(), String>,
        out: &mut Out<P>,
    ) {
        let Some(a) = self.acquisition.as_mut() else {
            return;
        };
        let Stage::Spawning(entry) = &a.stage else {
            return;
        };
        if entry.id != node {
            return;
        }
        let entry = entry.clone();
        if let Err(error) = result {
            return self.fail(
                sh,
                AcquireError::SpawnFailed {
                    node: entry.id,
                    error,
                },
                out,
            );
        }
        let deadline = sh.now + Duration::from_millis(sh.settings.cluster().spawn_timeout_ms);
        let sip = entry.sip;
        a.stage = Stage::Awaiting { entry, deadline };
        let probe = sessions::options(&sh.settings, sip, sh.settings.timeout().min(PROBE_TIMEOUT));
        out.request(probe, Pending::Probe);
    }

    /// [`Timer::SpawnPoll`]: the spawned server is probed again.
    pub fn on_spawn_poll<P: From<Pending>>(&mut self, sh: &mut Shared, out: &mut Out<P>) {
        if let Some(Acquisition {
            stage: Stage::Awaiting { entry, .. },
            ..
        }) = &self.acquisition
        {
            let probe = sessions::options(
                &sh.settings,
                entry.sip,
                sh.settings.timeout().min(PROBE_TIMEOUT),
            );
            out.request(probe, Pending::Probe);
        }
    }

    fn invite<P: From<Pending>>(&mut self, sh: &mut Shared, entry: PoolConfig, out: &mut Out<P>) {
        info!(node = %entry.id, "inviting a pool server");
        let (dialog, invite) = sh.invite(entry.sip);
        if let Some(a) = self.acquisition.as_mut() {
            a.stage = Stage::Inviting(entry);
        }
        out.request(invite, Pending::Invite(dialog));
    }

    /// The pool server's INVITE ended (the session is up already when it succeeded): the
    /// acquisition is over. The new server's id when it joined for the placements, to be
    /// rebalanced (DESIGN.md §7).
    pub fn on_invited<P: From<Pending>>(
        &mut self,
        sh: &mut Shared,
        result: Result<String, ControlError>,
        out: &mut Out<P>,
    ) -> Option<String> {
        let a = self.acquisition.take()?;
        let node = match a.stage {
            Stage::Inviting(entry) => entry.id,
            _ => String::new(),
        };
        let result = result.map_err(|error| AcquireError::Invite { node, error });
        self.done(sh, a.then, result, out)
    }

    fn fail<P: From<Pending>>(&mut self, sh: &mut Shared, e: AcquireError, out: &mut Out<P>) {
        if let Some(a) = self.acquisition.take() {
            self.done(sh, a.then, Err(e), out);
        }
    }

    /// An acquisition ended: its caller hears of it, and the waiting users are placed
    /// again; for placements, a failure empties the pool for [`POOL_RETRY`].
    fn done<P: From<Pending>>(
        &mut self,
        sh: &mut Shared,
        then: Then,
        result: Result<String, AcquireError>,
        out: &mut Out<P>,
    ) -> Option<String> {
        match then {
            Then::Placement => {
                if let Err(e) = &result {
                    warn!(error = %e, "no pool server could be taken; the pool is exhausted");
                    sh.primary.alloc.set_pool(Vec::new());
                    // Give the pool another chance later.
                    out.arm(Timer::PoolReset, POOL_RETRY);
                }
                self.retry_waiting(sh, out);
                // It joined because every server was full: it takes users from the most
                // loaded ones up to the mean (DESIGN.md §7).
                result.ok()
            }
            Then::Admin(ticket) => {
                let answer = result
                    .map(|id| format!("{id} joined"))
                    .map_err(|e| e.to_string());
                out.answer(ticket, Answer::Admin(answer));
                self.retry_waiting(sh, out);
                None
            }
        }
    }

    /// [`Timer::PoolReset`]: the idle candidates are the pool again.
    pub fn on_pool_reset(&mut self, sh: &mut Shared) {
        let pool = sh.primary.idle_candidates(&sh.settings.config);
        sh.primary.alloc.set_pool(pool);
    }
}
