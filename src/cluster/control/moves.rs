//! Moving users between servers on the primary (DESIGN.md §7): drains (`ctl drain` and
//! scale-in), the rebalance onto a server that joined because every one was full, and the
//! migration of one user.
//!
//! - **Migrate**: the target reserves the user and imports its record
//!   (`redirection-usr-addr` with `moved-from`, as a placement), then the directory names
//!   the target and the old home evicts the user (`migrate-user`, or the presence core when
//!   the old home is this node). A failed reservation leaves the user where it was. Moves
//!   of one user never overlap, nor do they overlap its placement.
//! - **Drain**: nobody is placed on the server any more, each of its users moves to the
//!   least loaded other server, and once none is left its session ends with BYE and its
//!   `stop` command runs; failed moves are retried for [`DRAIN_ROUNDS`] rounds.
//! - **Rebalance**: users move to the new server from the most loaded ones until it reaches
//!   the mean load ([`plan_rebalance`]), only users online at their home.
//! - **Scale-in**: once the mean load stays below `min_load` for `scale_in_after_s`, the
//!   least-loaded worker is drained.
//!
//! At most [`MAX_MOVES_IN_FLIGHT`] moves run at once; the others wait in a queue.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use crate::cluster::allocator::{plan_rebalance, Health, LoadFigures};
use crate::cluster::ccmp::Element;
use crate::cluster::record;
use crate::cluster::view::NodeAddrs;
use crate::config::Role;
use crate::sip::message::Response;

use super::client::ccmp_body;
use super::effect::{Command, Effect, HubCall, Out, Timer};
use super::error::ControlError;
use super::placement::{self, Placement};
use super::shared::{ByeSent, Shared};

/// How many times a rebalance is planned again while its donors have not reported the
/// users it would move.
pub const REBALANCE_ATTEMPTS: u32 = 5;

/// A rebalance short of reported users is planned again after this many report intervals
/// (`cluster.report_interval_ms`): by then every donor has reported its users online.
pub const REBALANCE_REPLAN_INTERVALS: u64 = 2;

/// Moves (drain, rebalance) started at once; the others wait for a free slot.
pub const MAX_MOVES_IN_FLIGHT: usize = 16;

/// Rounds of retries of a drain whose moves failed before it gives up (the node stays
/// draining: nobody is placed there; the operator may drain it again).
pub const DRAIN_ROUNDS: u32 = 3;

/// The wait before the failed moves of a drain are queued again.
pub const DRAIN_RETRY: Duration = Duration::from_secs(1);

/// Why a drain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainError {
    /// Only the primary drains.
    #[error("only the primary drains nodes")]
    NotPrimary,
    /// No member server has that id.
    #[error("{0} is not a member")]
    Unknown(String),
    /// The primary itself, or the last server that could take the users.
    #[error("{0}")]
    Conflict(String),
}

impl DrainError {
    /// The HTTP status the admin API answers with.
    pub fn status(&self) -> u16 {
        match self {
            DrainError::Unknown(_) => 404,
            DrainError::NotPrimary | DrainError::Conflict(_) => 409,
        }
    }
}

/// What a move's request continues with.
#[derive(Debug)]
pub enum Pending {
    /// The target's reservation of the user.
    Reserve {
        /// Local part.
        user: String,
        /// The old home.
        from: String,
        /// The target.
        to: String,
        /// What the user costs.
        cost: u64,
        /// The target's addresses.
        addrs: NodeAddrs,
    },
    /// The old home's `migrate-user`.
    Evict {
        /// Local part.
        user: String,
        /// The old home.
        from: String,
    },
}

/// A user to move away from `from`; to `to`, or where the allocator says.
#[derive(Debug)]
struct Move {
    user: String,
    from: String,
    to: Option<String>,
}

/// The moves of the primary.
#[derive(Debug, Default)]
pub struct Moves {
    /// Users to move, started at most [`MAX_MOVES_IN_FLIGHT`] at once.
    queue: VecDeque<Move>,
    /// Moves in flight: user -> the server it leaves.
    moving: HashMap<String, String>,
    /// Servers being drained, with the rounds of retries left for users whose move failed.
    draining: BTreeMap<String, u32>,
    /// Since when the mean load has been below `min_load` (scale-in).
    low_since: Option<Instant>,
    /// `pump` is running (a move that ends at once does not recurse into it).
    pumping: bool,
}

impl Moves {
    /// Nothing moving.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves in flight.
    pub fn in_flight(&self) -> usize {
        self.moving.len()
    }

    /// Whether `id` is being drained.
    pub fn is_draining(&self, id: &str) -> bool {
        self.draining.contains_key(id)
    }

    /// The session with `id` ended: no drain of it goes on.
    pub fn forget(&mut self, id: &str) {
        self.draining.remove(id);
    }

    /// Starts draining `id`; how many users are to move.
    pub fn drain<P>(
        &mut self,
        sh: &mut Shared,
        placement: &mut Placement,
        id: &str,
        out: &mut Out<P>,
    ) -> Result<usize, DrainError>
    where
        P: From<Pending> + From<placement::Pending> + From<ByeSent>,
    {
        if !sh.is_primary() {
            return Err(DrainError::NotPrimary);
        }
        if id == sh.settings.me.id {
            return Err(DrainError::Conflict(
                "the primary cannot be drained".to_string(),
            ));
        }
        let alloc = &sh.primary.alloc;
        if alloc.server(id).is_none() || !sh.sessions.contains(id) {
            return Err(DrainError::Unknown(id.to_string()));
        }
        let others = alloc
            .servers()
            .filter(|s| s.id != id && s.health.is_alive() && !alloc.is_draining(&s.id))
            .count();
        if others == 0 {
            return Err(DrainError::Conflict(format!(
                "{id} is the last server that could take users"
            )));
        }
        sh.primary.alloc.set_draining(id, true);
        self.draining.insert(id.to_string(), DRAIN_ROUNDS);
        let users = self.queue_drain(sh, id);
        info!(node = %id, users, "draining");
        self.pump(sh, placement, out);
        Ok(users)
    }

    /// Queues a move of every user the directory homes on `id` that is not already on its
    /// way; returns how many users are homed there.
    fn queue_drain(&mut self, sh: &Shared, id: &str) -> usize {
        let mut users: Vec<String> = sh
            .primary
            .alloc
            .directory()
            .filter(|(_, home)| *home == id)
            .map(|(user, _)| user.to_string())
            .collect();
        users.sort();
        let count = users.len();
        let queued: HashSet<String> = self.queue.iter().map(|m| m.user.clone()).collect();
        for user in users {
            if !queued.contains(&user) && !self.moving.contains_key(&user) {
                self.queue.push_back(Move {
                    user,
                    from: id.to_string(),
                    to: None,
                });
            }
        }
        count
    }

    /// [`Timer::DrainRetry`]: the failed moves of a drain that goes on are queued again.
    pub fn on_drain_retry<P>(
        &mut self,
        sh: &mut Shared,
        placement: &mut Placement,
        id: &str,
        out: &mut Out<P>,
    ) where
        P: From<Pending> + From<placement::Pending> + From<ByeSent>,
    {
        if self.draining.contains_key(id) && sh.primary.alloc.server(id).is_some() {
            self.queue_drain(sh, id);
            self.pump(sh, placement, out);
        }
    }

    /// Server `to` joined because every server was full: users move to it from the most
    /// loaded servers first until it reaches the cluster's mean load. Only users online at
    /// their home are taken: they are what the load counts.
    ///
    /// A donor's load also counts users it reserved but has not reported online yet (they
    /// are logging in): when the plan asks for more users than a donor has reported, the
    /// rebalance is planned again from fresh reports, `attempts` times at most.
    pub fn rebalance<P>(
        &mut self,
        sh: &mut Shared,
        placement: &mut Placement,
        to: &str,
        attempts: u32,
        out: &mut Out<P>,
    ) where
        P: From<Pending> + From<placement::Pending> + From<ByeSent>,
    {
        let c = sh.settings.cluster();
        if !c.rebalance_on_join || !sh.sessions.contains(to) {
            return;
        }
        let alloc = &sh.primary.alloc;
        let servers: Vec<LoadFigures> = alloc
            .servers()
            .filter(|s| s.health == Health::Active && !alloc.is_draining(&s.id))
            .map(|s| (s.id.clone(), s.load + s.pending, s.users))
            .collect();
        let plan = plan_rebalance(&servers, to, c.max_load);
        if plan.is_empty() {
            return;
        }
        info!(to = %to, plan = ?plan, "rebalancing onto a new server");
        let mut short = 0;
        for (from, count) in plan {
            let users: Vec<String> = sh
                .primary
                .online(&from)
                .into_iter()
                .filter(|u| sh.primary.alloc.home(u) == Some(from.as_str()))
                .filter(|u| !self.moving.contains_key(u) && !placement.is_busy(u))
                .take(count)
                .collect();
            short += count - users.len();
            for user in users {
                self.queue.push_back(Move {
                    user,
                    from: from.clone(),
                    to: Some(to.to_string()),
                });
            }
        }
        self.pump(sh, placement, out);
        if short > 0 && attempts > 1 {
            debug!(to = %to, short, "rebalance: planning again after the next reports");
            let wait = Duration::from_millis(
                REBALANCE_REPLAN_INTERVALS * sh.settings.cluster().report_interval_ms,
            );
            out.arm(
                Timer::Rebalance {
                    to: to.to_string(),
                    attempts: attempts - 1,
                },
                wait,
            );
        }
    }

    /// Starts queued moves while fewer than [`MAX_MOVES_IN_FLIGHT`] run, then looks at the
    /// drains.
    fn pump<P>(&mut self, sh: &mut Shared, placement: &mut Placement, out: &mut Out<P>)
    where
        P: From<Pending> + From<placement::Pending> + From<ByeSent>,
    {
        if self.pumping {
            return;
        }
        self.pumping = true;
        while self.moving.len() < MAX_MOVES_IN_FLIGHT {
            let Some(m) = self.queue.pop_front() else {
                break;
            };
            // Moved, placed anew or forgotten meanwhile: nothing to do.
            if sh.primary.alloc.home(&m.user) != Some(m.from.as_str())
                || self.moving.contains_key(&m.user)
            {
                continue;
            }
            let to = match m.to {
                Some(to) => to,
                None => {
                    let cost = sh.cost(&m.user);
                    match sh
                        .primary
                        .alloc
                        .move_target(&m.user, cost, &[m.from.as_str()])
                        .server()
                    {
                        Some(to) => to.to_string(),
                        None => {
                            warn!(user = %m.user, from = %m.from, "no server to move the user to");
                            continue;
                        }
                    }
                }
            };
            self.migrate(sh, placement, &m.user, &to, out);
        }
        self.pumping = false;
        self.check_drains(sh, out);
    }

    /// Moves `user` from its home to server `to` (see the module documentation).
    fn migrate<P>(
        &mut self,
        sh: &mut Shared,
        placement: &mut Placement,
        user: &str,
        to: &str,
        out: &mut Out<P>,
    ) where
        P: From<Pending> + From<placement::Pending> + From<ByeSent>,
    {
        let Some(from) = sh.primary.alloc.home(user).map(str::to_string) else {
            return;
        };
        if from == to || placement.is_busy(user) || self.moving.contains_key(user) {
            return;
        }
        // Placements of this user wait for the move.
        placement.hold(user);
        self.moving.insert(user.to_string(), from.clone());
        let cost = sh.cost(user);
        if to == sh.settings.me.id {
            // The old home hands over what it changes until it lets the user go; it is
            // merged against the record as it is now (DESIGN.md §7).
            match sh.records.export(user) {
                Ok(Some(base)) => out.hub(HubCall::Arriving {
                    user: user.to_string(),
                    base,
                }),
                Ok(None) => {}
                Err(e) => warn!(%user, error = %e, "the record could not be read"),
            }
            sh.reserve_here(user, cost, out);
            let me = sh.settings.me.clone();
            return self.moved(sh, placement, user, &from, me, out);
        }
        let Some(addrs) = sh.sessions.addrs(to) else {
            warn!(%user, %to, "move failed: no session with the target");
            return self.end_move(sh, placement, user, out);
        };
        sh.primary.alloc.begin(to, cost);
        let record = match sh.records.export(user) {
            Ok(r) => r.map(|r| record::encode(&r)),
            Err(e) => {
                warn!(%user, error = %e, "move failed: the record could not be read");
                sh.primary.alloc.abort(to, cost);
                return self.end_move(sh, placement, user, out);
            }
        };
        let element = Element::RedirectionUsrAddr {
            user: sh.settings.user_addr(user),
            protocol: sh.primary.protocol_of(&from, user),
            resources: sh.settings.resources_of(cost),
            record,
            moved_from: Some(from.clone()),
        };
        match sh.info(to, "redirection-usr-addr", vec![element]) {
            Ok(info) => out.request(
                info,
                Pending::Reserve {
                    user: user.to_string(),
                    from,
                    to: to.to_string(),
                    cost,
                    addrs,
                },
            ),
            Err(e) => {
                warn!(%user, %from, %to, error = %e, "move failed: the user stays");
                sh.primary.alloc.abort(to, cost);
                self.end_move(sh, placement, user, out);
            }
        }
    }

    /// A move's request ended.
    pub fn on_done<P>(
        &mut self,
        sh: &mut Shared,
        placement: &mut Placement,
        pending: Pending,
        result: Result<Response, ControlError>,
        out: &mut Out<P>,
    ) where
        P: From<Pending> + From<placement::Pending> + From<ByeSent>,
    {
        let result = result.and_then(|r| ccmp_body(sh.settings.secret(), &r));
        match pending {
            Pending::Reserve {
                user,
                from,
                to,
                cost,
                addrs,
            } => match result {
                Ok(resp) => {
                    sh.primary.alloc.confirm(&user, &to, cost);
                    sh.primary.apply_reported_load(&to, &resp.elements, sh.now);
                    self.moved(sh, placement, &user, &from, addrs, out);
                }
                Err(e) => {
                    warn!(%user, %from, %to, error = %e, "move failed: the user stays");
                    sh.primary.alloc.abort(&to, cost);
                    if e == ControlError::Timeout {
                        sh.primary.alloc.mark_suspect(&to);
                    }
                    self.end_move(sh, placement, &user, out);
                }
            },
            Pending::Evict { user, from } => {
                match result {
                    Ok(resp) => sh
                        .primary
                        .apply_reported_load(&from, &resp.elements, sh.now),
                    Err(e) => {
                        warn!(%user, %from, error = %e, "the old home did not confirm the move")
                    }
                }
                self.end_move(sh, placement, &user, out);
            }
        }
    }

    /// `to` holds `user` now: the directory says so, then the old home evicts it.
    fn moved<P>(
        &mut self,
        sh: &mut Shared,
        placement: &mut Placement,
        user: &str,
        from: &str,
        to: NodeAddrs,
        out: &mut Out<P>,
    ) where
        P: From<Pending> + From<placement::Pending> + From<ByeSent>,
    {
        sh.placed(user, &to.id, out);
        info!(%user, %from, to = %to.id, "user moved");
        if from == sh.settings.me.id {
            out.hub(HubCall::Evict {
                user: user.to_string(),
                to,
            });
            sh.forget_live(user);
            return self.end_move(sh, placement, user, out);
        }
        if !sh.sessions.contains(from) {
            // The old home is gone: nothing there to evict.
            return self.end_move(sh, placement, user, out);
        }
        let element = Element::MigrateUser {
            user: sh.settings.user_addr(user),
            svr_id: to.id.clone(),
        };
        match sh.info(from, "migrate-user", vec![element]) {
            Ok(info) => out.request(
                info,
                Pending::Evict {
                    user: user.to_string(),
                    from: from.to_string(),
                },
            ),
            Err(e) => {
                warn!(%user, %from, error = %e, "the old home did not confirm the move");
                self.end_move(sh, placement, user, out);
            }
        }
    }

    /// A move ended (done or failed): requests that waited for it are placed as usual
    /// (sticky: at the user's home now), and the next moves start.
    fn end_move<P>(
        &mut self,
        sh: &mut Shared,
        placement: &mut Placement,
        user: &str,
        out: &mut Out<P>,
    ) where
        P: From<Pending> + From<placement::Pending> + From<ByeSent>,
    {
        self.moving.remove(user);
        for waiter in placement.release(user) {
            placement.start_job(sh, user, waiter, out);
        }
        self.pump(sh, placement, out);
    }

    /// Ends the drains with no user left on their server; retries (a few rounds) those
    /// whose moves failed.
    fn check_drains<P: From<ByeSent>>(&mut self, sh: &mut Shared, out: &mut Out<P>) {
        let ids: Vec<String> = self.draining.keys().cloned().collect();
        for id in ids {
            if sh.primary.alloc.server(&id).is_none() {
                self.draining.remove(&id);
                continue;
            }
            let busy = self.queue.iter().any(|m| m.from == id)
                || self.moving.values().any(|from| *from == id);
            if busy {
                continue;
            }
            let homed = sh.primary.alloc.users_homed(&id);
            if homed == 0 {
                self.finish_drain(sh, &id, out);
                continue;
            }
            let Some(rounds) = self.draining.get_mut(&id) else {
                continue;
            };
            if *rounds == 0 {
                continue; // gave up already
            }
            *rounds -= 1;
            if *rounds == 0 {
                error!(node = %id, users = homed, "drain gave up: users could not be moved; nobody is placed there");
                continue;
            }
            warn!(node = %id, users = homed, "drain: retrying the moves that failed");
            out.arm(Timer::DrainRetry(id), DRAIN_RETRY);
        }
    }

    /// `id` is empty: BYE ends its membership, its `stop` command runs, and a pool entry
    /// returns to the pool.
    fn finish_drain<P>(&mut self, sh: &mut Shared, id: &str, out: &mut Out<P>)
    where
        P: From<ByeSent>,
    {
        self.draining.remove(id);
        info!(node = %id, "drained");
        let config = sh.settings.config.clone();
        // A configured worker becomes a pool candidate: taken again when all are full.
        if config
            .nodes
            .iter()
            .any(|n| n.id == id && n.role == Role::Worker)
        {
            sh.primary.release(id);
        }
        if let Err(e) = sh.remove_node(id, "drained", out) {
            warn!(node = %id, error = %e, "drained node could not be removed");
        }
        let stop = config
            .pool
            .iter()
            .find(|p| p.id == id)
            .and_then(|p| p.stop.clone());
        if let Some(command) = stop {
            info!(node = %id, command = %command, "stopping a drained pool server");
            out.push(Effect::Run {
                node: id.to_string(),
                command,
                kind: Command::Stop,
            });
        }
    }

    /// Scale-in (DESIGN.md §7, beyond the papers): once the mean load has stayed below
    /// `min_load` for `scale_in_after_s`, the least-loaded worker is drained like
    /// `ctl drain` does, one at a time, never the primary nor the last server.
    pub fn consider_scale_in<P>(
        &mut self,
        sh: &mut Shared,
        placement: &mut Placement,
        out: &mut Out<P>,
    ) where
        P: From<Pending> + From<placement::Pending> + From<ByeSent>,
    {
        let after = sh.settings.cluster().scale_in_after_s;
        if after == 0 || !self.draining.is_empty() {
            self.low_since = None;
            return;
        }
        let Some(id) = sh
            .primary
            .alloc
            .scale_in_candidate(&sh.settings.me.id)
            .map(str::to_string)
        else {
            self.low_since = None;
            return;
        };
        let since = *self.low_since.get_or_insert(sh.now);
        if sh.now.saturating_duration_since(since) < Duration::from_secs(after) {
            return;
        }
        self.low_since = None;
        let mean = sh.primary.alloc.mean_load().unwrap_or_default();
        info!(node = %id, mean, min_load = sh.settings.cluster().min_load, "scale-in: draining the least-loaded worker");
        if let Err(e) = self.drain(sh, placement, &id, out) {
            warn!(node = %id, error = %e, "scale-in drain refused");
        }
    }
}
