//! The primary's placement decision core (DESIGN.md §4, §7): which server a user goes to, the
//! directory user -> home, the servers' reported load levels and their liveness.
//!
//! Pure and deterministic: no sockets, no timers, no clock. The caller passes the time as
//! [`Millis`] on its own monotonic clock, so the same code runs in the live primary and in the
//! seeded discrete-event simulator (DESIGN.md §10) and gives the same decisions for the same
//! inputs. Hash maps are only ever looked up, never iterated, and every tie is broken
//! explicitly, so no `HashMap` order can leak into a decision.
//!
//! Rules of [`Allocator::place`], in this order, and why each exists:
//! 1. **Sticky** — the user's home is known, is a member and is alive (active or suspect):
//!    go back there, even above `max_load`. All of a user's streams, publications and
//!    subscriptions live on one home (§3); sending a returning user elsewhere while the home
//!    lives would split that state. A suspect home is still sticky: suspicion (three missed
//!    reports, or one reservation timeout) is not death, and the user's state is still there.
//!    A dead or removed home is not: its users are placed anew on their next request (§5).
//! 2. **Least** — the active server with the lowest `load + pending` among those whose
//!    `load + pending + cost <= max_load` (ties: fewest users, then the smallest id). `pending`
//!    counts reservations in flight (two-phase, §4), so a burst of arrivals between two load
//!    reports is not all sent to the same server. Suspect servers are skipped: a server that
//!    does not answer should not receive new users while others can take them.
//! 3. **Pool** — no active server can take the user and the pool (§7) has candidates: the
//!    caller probes or spawns the first pool entry that answers, adds it with
//!    [`Allocator::add_server`], and places again. Growing the cluster keeps every server at
//!    or below `max_load`, which is the point of the multi-server design.
//! 4. **Overloaded** — the pool is empty: the least-loaded active server (same ties), else
//!    the least-loaded suspect one. Service is never refused while a server lives (§4); the
//!    caller logs a warning.
//! 5. **NoServer** — no member server is alive.
//!
//! Liveness (§5): a report newer than the last one seen (by version) makes a server active;
//! [`Allocator::tick`] makes it suspect after three report intervals without one and dead
//! after `dead_after_ms`; [`Allocator::mark_suspect`] records a reservation that timed out, and
//! [`Allocator::place_excluding`] gives the next candidate for the same user.
//!
//! Cost: server ids are interned; the directory maps a user to a `u32` slot, so a million
//! entries hold no copies of server ids, and [`Allocator::users_homed`] is a kept count. A
//! decision is one directory lookup plus one linear pass over the servers' compact views.

use std::collections::HashMap;

/// Milliseconds on the caller's monotonic clock (the simulator's virtual clock in `sim`).
pub type Millis = u64;

/// The allocator's settings (`[cluster]` in `cluster.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// A server whose `load + pending` would exceed this after taking a user is full.
    pub max_load: u64,
    /// Below this mean load the cluster may shrink (scale-in, §7); kept here for the caller.
    pub min_load: u64,
    /// Every node reports its load this often; more than three intervals of silence make it
    /// suspect.
    pub report_interval_ms: u64,
    /// A node silent for more than this is dead: its users are placed anew.
    pub dead_after_ms: u64,
}

impl Default for Params {
    /// The defaults of `cluster.toml`: 100, 20, 1 s, 10 s.
    fn default() -> Self {
        Params {
            max_load: 100,
            min_load: 20,
            report_interval_ms: 1_000,
            dead_after_ms: 10_000,
        }
    }
}

/// A server's liveness as the primary sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Reporting on time: a candidate for new users.
    Active,
    /// Late with its reports, or a reservation timed out: its users stay, new ones go
    /// elsewhere when possible.
    Suspect,
    /// Silent for longer than `dead_after_ms`: not sticky, not a candidate.
    Dead,
}

impl Health {
    /// Active or suspect.
    pub fn is_alive(self) -> bool {
        !matches!(self, Health::Dead)
    }
}

/// What the primary knows of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    /// The server's id (`[[node]]` / `[[pool]]` id).
    pub id: String,
    /// Its last reported load level (`w_users * users + w_resources * resources`, §4).
    pub load: u64,
    /// Its last reported number of users.
    pub users: u64,
    /// Sum of the costs of reservations in flight to it (begun, not yet confirmed or aborted).
    pub pending: u64,
    /// Its liveness.
    pub health: Health,
    /// When its last accepted report arrived (or when it was added).
    pub last_report: Millis,
    /// Version of its last accepted report; `0` right after it was added.
    pub version: u64,
}

/// Where to send a user (DESIGN.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Back to the user's home, which is alive.
    Sticky(String),
    /// The least-loaded active server that stays within `max_load`.
    Least(String),
    /// Every active server is full: bring in a server from the pool, then place again.
    Pool,
    /// Every server is full and the pool is empty: the least-loaded live server anyway.
    Overloaded(String),
    /// No server is alive.
    NoServer,
}

impl Decision {
    /// The chosen server, if the decision names one.
    pub fn server(&self) -> Option<&str> {
        match self {
            Decision::Sticky(id) | Decision::Least(id) | Decision::Overloaded(id) => Some(id),
            Decision::Pool | Decision::NoServer => None,
        }
    }
}

/// Index of an interned server id in [`Allocator`]'s per-server vectors.
type Slot = u32;

/// Per-server bookkeeping beside its [`ServerView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    /// Added and not removed. Ids only named by the directory are interned but not members.
    member: bool,
    /// Position of the id in string order: the last tie-break, without comparing strings.
    rank: u32,
    /// Directory entries naming this server.
    homed: usize,
    /// Being drained (§7): neither a candidate nor sticky, until it leaves or is re-added.
    draining: bool,
}

/// Ordering key of a candidate: `load + pending`, then users, then id order.
type Key = (u64, u64, u32);

/// The best candidate seen so far in a pass.
#[derive(Debug, Clone, Copy, Default)]
struct Best(Option<(Key, Slot)>);

impl Best {
    fn offer(&mut self, key: Key, slot: Slot) {
        if self.0.is_none_or(|(k, _)| key < k) {
            self.0 = Some((key, slot));
        }
    }
}

/// The placement state of the primary: servers, pool and directory. See the module docs.
#[derive(Debug, Clone)]
pub struct Allocator {
    params: Params,
    /// Interned server ids -> slot. Looked up only.
    index: HashMap<String, Slot>,
    /// By slot: every interned id, members or not (non-members are hidden from the API).
    views: Vec<ServerView>,
    /// By slot.
    meta: Vec<Meta>,
    /// Slots in id order.
    order: Vec<Slot>,
    /// User -> home slot. Looked up only.
    directory: HashMap<String, Slot>,
    /// Pool entries not yet active, in config order.
    pool: Vec<String>,
    /// The server filled first while it fits (the primary itself).
    preferred: Option<Slot>,
}

impl Allocator {
    /// An allocator with no servers, an empty pool and an empty directory.
    pub fn new(params: Params) -> Self {
        Allocator {
            params,
            index: HashMap::new(),
            views: Vec::new(),
            meta: Vec::new(),
            order: Vec::new(),
            directory: HashMap::new(),
            pool: Vec::new(),
            preferred: None,
        }
    }

    /// The settings it was built with.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Adds server `id` (it joined, or it was brought in from the pool): active, load and
    /// users 0, `last_report = now`, report version 0 (a new session numbers its reports
    /// afresh, from 1). Re-adding a known id (dead, removed, or a rejoin) revives it: the
    /// directory entries naming it are sticky again, and reservations in flight to it stay
    /// counted until they are confirmed or aborted.
    pub fn add_server(&mut self, id: &str, now: Millis) {
        let slot = self.intern(id) as usize;
        let view = &mut self.views[slot];
        view.load = 0;
        view.users = 0;
        view.health = Health::Active;
        view.last_report = now;
        view.version = 0;
        self.meta[slot].member = true;
        self.meta[slot].draining = false;
    }

    /// Marks member `id` as draining (or not): while it drains nobody is placed there, not
    /// even a returning user of its own (its users are being moved away, §7). Returns
    /// whether `id` is a member.
    pub fn set_draining(&mut self, id: &str, draining: bool) -> bool {
        match self.member_slot(id) {
            Some(slot) => {
                self.meta[slot as usize].draining = draining;
                true
            }
            None => false,
        }
    }

    /// Whether member `id` is draining.
    pub fn is_draining(&self, id: &str) -> bool {
        self.member_slot(id)
            .is_some_and(|slot| self.meta[slot as usize].draining)
    }

    /// Removes server `id` (drained, left, or stopped): it is no longer a candidate, nor
    /// listed by [`servers`](Self::servers). The directory entries naming it stay (a later
    /// [`add_server`](Self::add_server) makes them sticky again) but are not sticky while it is
    /// out. Returns whether it was a member.
    pub fn remove_server(&mut self, id: &str) -> bool {
        match self.member_slot(id) {
            Some(slot) => {
                self.meta[slot as usize].member = false;
                true
            }
            None => false,
        }
    }

    /// A load report (`pressvr-load`) from `id`. Ignored (`false`) when `id` is not a member or
    /// `version` is not newer than the last one accepted (reports can be reordered or
    /// replayed). Otherwise records `load` and `users`, `last_report = now`, and makes the
    /// server active: a report is proof of life, even from a suspect or dead server.
    pub fn report(&mut self, id: &str, version: u64, load: u64, users: u64, now: Millis) -> bool {
        let Some(slot) = self.member_slot(id) else {
            return false;
        };
        let view = &mut self.views[slot as usize];
        if version <= view.version {
            return false;
        }
        view.version = version;
        view.load = load;
        view.users = users;
        view.last_report = now;
        view.health = Health::Active;
        true
    }

    /// Liveness check at `now`; returns the transitions, in id order. A member whose last
    /// report is more than `dead_after_ms` old becomes dead; an active one whose last report
    /// is more than `3 * report_interval_ms` old becomes suspect. Only a report brings a
    /// server back.
    pub fn tick(&mut self, now: Millis) -> Vec<(String, Health)> {
        let suspect_after = self.params.report_interval_ms.saturating_mul(3);
        let mut changes = Vec::new();
        for &slot in &self.order {
            let slot = slot as usize;
            if !self.meta[slot].member {
                continue;
            }
            let view = &mut self.views[slot];
            let silent = now.saturating_sub(view.last_report);
            let next = match view.health {
                Health::Dead => continue,
                _ if silent > self.params.dead_after_ms => Health::Dead,
                Health::Active if silent > suspect_after => Health::Suspect,
                _ => continue,
            };
            view.health = next;
            changes.push((view.id.clone(), next));
        }
        changes
    }

    /// A reservation sent to `id` timed out (two-phase, §4): an active member becomes
    /// suspect. Dead, removed or unknown servers are left as they are.
    pub fn mark_suspect(&mut self, id: &str) {
        if let Some(slot) = self.member_slot(id) {
            let view = &mut self.views[slot as usize];
            if view.health == Health::Active {
                view.health = Health::Suspect;
            }
        }
    }

    /// Where to send `user`, whose expected load contribution is `cost`. See the module docs
    /// for the rules.
    pub fn place(&self, user: &str, cost: u64) -> Decision {
        self.place_excluding(user, cost, &[])
    }

    /// [`place`](Self::place) without the servers in `exclude` (the two-phase fallback: the
    /// ones that already failed to reserve this user). An excluded home is not sticky.
    pub fn place_excluding(&self, user: &str, cost: u64, exclude: &[&str]) -> Decision {
        self.decide(user, cost, exclude, true)
    }

    /// Where to move `user` away from the servers in `exclude` (a drain, §7): as
    /// [`place_excluding`](Self::place_excluding), but never [`Decision::Pool`] — a move
    /// does not grow the cluster; when every other server is full it goes to the least
    /// loaded one ([`Decision::Overloaded`]).
    pub fn move_target(&self, user: &str, cost: u64, exclude: &[&str]) -> Decision {
        self.decide(user, cost, exclude, false)
    }

    fn decide(&self, user: &str, cost: u64, exclude: &[&str], use_pool: bool) -> Decision {
        // Unknown ids in `exclude` cannot be candidates anyway.
        let excluded: Vec<Slot> = exclude
            .iter()
            .filter_map(|id| self.index.get(*id).copied())
            .collect();

        if let Some(&home) = self.directory.get(user) {
            let (view, meta) = (&self.views[home as usize], &self.meta[home as usize]);
            if meta.member && !meta.draining && view.health.is_alive() && !excluded.contains(&home)
            {
                return Decision::Sticky(view.id.clone());
            }
        }

        let max_load = self.params.max_load;
        let (mut fits, mut active, mut suspect) =
            (Best::default(), Best::default(), Best::default());
        for (slot, (view, meta)) in (0..).zip(self.views.iter().zip(&self.meta)) {
            if !meta.member
                || meta.draining
                || view.health == Health::Dead
                || excluded.contains(&slot)
            {
                continue;
            }
            let used = view.load.saturating_add(view.pending);
            let key = (used, view.users, meta.rank);
            if view.health == Health::Suspect {
                suspect.offer(key, slot);
                continue;
            }
            active.offer(key, slot);
            if used.saturating_add(cost) <= max_load {
                fits.offer(key, slot);
            }
        }

        let id = |slot: Slot| self.views[slot as usize].id.clone();
        // The primary serves users itself while it fits (DESIGN.md §1, the papers' model:
        // other servers take users only once the primary is full).
        if let Some(slot) = self.preferred.filter(|s| !excluded.contains(s)) {
            let (view, meta) = (&self.views[slot as usize], &self.meta[slot as usize]);
            if meta.member
                && !meta.draining
                && view.health == Health::Active
                && view.load.saturating_add(view.pending).saturating_add(cost) <= max_load
            {
                return Decision::Least(view.id.clone());
            }
        }
        if let Some((_, slot)) = fits.0 {
            Decision::Least(id(slot))
        } else if use_pool && !self.pool.is_empty() {
            Decision::Pool
        } else if let Some((_, slot)) = active.0.or(suspect.0) {
            Decision::Overloaded(id(slot))
        } else {
            Decision::NoServer
        }
    }

    /// A reservation of a user costing `cost` was sent to `server`: its `pending` grows by
    /// `cost` until [`confirm`](Self::confirm) or [`abort`](Self::abort). Unknown ids are
    /// ignored.
    pub fn begin(&mut self, server: &str, cost: u64) {
        if let Some(&slot) = self.index.get(server) {
            let view = &mut self.views[slot as usize];
            view.pending = view.pending.saturating_add(cost);
        }
    }

    /// `server` reserved `user` (its `200`): the reservation's `cost` leaves `pending`
    /// (saturating) and `server` becomes the user's home.
    pub fn confirm(&mut self, user: &str, server: &str, cost: u64) {
        self.abort(server, cost);
        self.set_home(user, server);
    }

    /// The reservation of `cost` at `server` failed or timed out: `pending` shrinks by `cost`
    /// (saturating). Unknown ids are ignored.
    pub fn abort(&mut self, server: &str, cost: u64) {
        if let Some(&slot) = self.index.get(server) {
            let view = &mut self.views[slot as usize];
            view.pending = view.pending.saturating_sub(cost);
        }
    }

    /// Makes `server` the home of `user` (directory restore from the store, or a move, §7).
    /// `server` need not be known yet: the entry becomes sticky once it is added.
    pub fn set_home(&mut self, user: &str, server: &str) {
        let slot = self.intern(server);
        let old = match self.directory.get_mut(user) {
            Some(home) => Some(std::mem::replace(home, slot)),
            None => {
                self.directory.insert(user.to_owned(), slot);
                None
            }
        };
        if let Some(old) = old {
            self.meta[old as usize].homed -= 1;
        }
        self.meta[slot as usize].homed += 1;
    }

    /// Drops `user` from the directory (account deleted). Returns whether it had a home.
    pub fn forget(&mut self, user: &str) -> bool {
        match self.directory.remove(user) {
            Some(slot) => {
                self.meta[slot as usize].homed -= 1;
                true
            }
            None => false,
        }
    }

    /// The user's home in the directory, alive or not.
    pub fn home(&self, user: &str) -> Option<&str> {
        self.directory
            .get(user)
            .map(|&slot| self.views[slot as usize].id.as_str())
    }

    /// Makes `id` the server filled first while it fits (the live primary passes itself;
    /// without one, placement is purely least-loaded).
    pub fn set_preferred(&mut self, id: Option<&str>) {
        self.preferred = id.map(|id| self.intern(id));
    }

    /// Replaces the pool: the candidate servers not yet active, in config order.
    pub fn set_pool(&mut self, candidates: Vec<String>) {
        self.pool = candidates;
    }

    /// The pool, in config order.
    pub fn pool(&self) -> &[String] {
        &self.pool
    }

    /// The member servers (added and not removed), in id order.
    pub fn servers(&self) -> impl Iterator<Item = &ServerView> {
        self.order
            .iter()
            .filter(|&&slot| self.meta[slot as usize].member)
            .map(|&slot| &self.views[slot as usize])
    }

    /// The member server `id`, if any.
    pub fn server(&self, id: &str) -> Option<&ServerView> {
        self.member_slot(id).map(|slot| &self.views[slot as usize])
    }

    /// Every directory entry as (user, home), in no particular order (callers sort when
    /// the order matters; decisions never depend on it).
    pub fn directory(&self) -> impl Iterator<Item = (&str, &str)> {
        self.directory
            .iter()
            .map(|(u, &slot)| (u.as_str(), self.views[slot as usize].id.as_str()))
    }

    /// Number of users in the directory.
    pub fn directory_len(&self) -> usize {
        self.directory.len()
    }

    /// Number of directory entries naming `id` (member or not).
    pub fn users_homed(&self, id: &str) -> usize {
        self.index
            .get(id)
            .map_or(0, |&slot| self.meta[slot as usize].homed)
    }

    /// Mean reported load of the active servers; `None` when there is none. Scale-in (§7)
    /// compares it with `min_load`; rebalancing fills a new server up to it.
    pub fn mean_load(&self) -> Option<f64> {
        let (sum, n) = self
            .views
            .iter()
            .zip(&self.meta)
            .filter(|(view, meta)| meta.member && view.health == Health::Active)
            .fold((0u128, 0u64), |(sum, n), (view, _)| {
                (sum + u128::from(view.load), n + 1)
            });
        (n > 0).then(|| sum as f64 / n as f64)
    }

    /// Scale-in (DESIGN.md §7): the server to drain when the mean load of the active servers
    /// is below `min_load` — the least-loaded active one that is neither `primary` nor
    /// already draining (ties: the smallest id); `None` when the load is not low or only one
    /// server would be left.
    pub fn scale_in_candidate(&self, primary: &str) -> Option<&str> {
        let active: Vec<&ServerView> = self
            .servers()
            .filter(|v| v.health == Health::Active)
            .collect();
        if active.len() < 2 || self.mean_load()? >= self.params.min_load as f64 {
            return None;
        }
        active
            .into_iter()
            .filter(|v| v.id != primary && !self.is_draining(&v.id))
            .min_by(|a, b| (a.load + a.pending, &a.id).cmp(&(b.load + b.pending, &b.id)))
            .map(|v| v.id.as_str())
    }

    /// The slot of `id` if it is a member.
    fn member_slot(&self, id: &str) -> Option<Slot> {
        self.index
            .get(id)
            .copied()
            .filter(|&slot| self.meta[slot as usize].member)
    }

    /// The slot of `id`, creating a non-member one for a new id (and re-ranking: rare, once
    /// per distinct server id).
    fn intern(&mut self, id: &str) -> Slot {
        if let Some(&slot) = self.index.get(id) {
            return slot;
        }
        let slot = Slot::try_from(self.views.len()).expect("fewer than 2^32 server ids");
        self.index.insert(id.to_owned(), slot);
        self.views.push(ServerView {
            id: id.to_owned(),
            load: 0,
            users: 0,
            pending: 0,
            health: Health::Dead,
            last_report: 0,
            version: 0,
        });
        self.meta.push(Meta {
            member: false,
            rank: 0,
            homed: 0,
            draining: false,
        });
        let at = self
            .order
            .partition_point(|&s| self.views[s as usize].id.as_str() < id);
        self.order.insert(at, slot);
        for (rank, &s) in (0..).zip(&self.order) {
            self.meta[s as usize].rank = rank;
        }
        slot
    }
}

/// A server's figures for [`plan_rebalance`]: id, load (`load + pending`), users.
pub type LoadFigures = (String, u64, u64);

/// Which users to move to server `to`, which just joined because every server was full
/// (DESIGN.md §7): `(from_server, count)` in the order to move them, the most loaded
/// servers first. Pure and deterministic.
///
/// The target is the cluster's mean load (all of `servers`, and `to` with load 0 when it is
/// not listed), never above `max_load`. Step by step, one user leaves the most loaded
/// server (ties: the smallest id), carrying that server's mean load per user (rounded up,
/// at least 1), while `to` is below the target, its load stays within `max_load` after the
/// step, and the donor keeps at least as much load as `to` then has (a move must not
/// just swap who is heavier). Servers with no users give none.
pub fn plan_rebalance(servers: &[LoadFigures], to: &str, max_load: u64) -> Vec<(String, usize)> {
    let mut donors: Vec<(String, u64, u64)> = servers
        .iter()
        .filter(|(id, _, _)| id != to)
        .cloned()
        .collect();
    let mut recipient = servers
        .iter()
        .find(|(id, _, _)| id == to)
        .map_or(0, |(_, load, _)| *load);
    let n = donors.len() as u64 + 1;
    let total: u64 = donors.iter().map(|(_, l, _)| *l).sum::<u64>() + recipient;
    let target = (total / n).min(max_load);
    let mut plan: Vec<(String, usize)> = Vec::new();
    while recipient < target {
        let Some(donor) = donors
            .iter_mut()
            .filter(|(_, _, users)| *users > 0)
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        else {
            break;
        };
        let per_user = donor.1.div_ceil(donor.2).max(1);
        let after = recipient + per_user;
        if after > max_load || donor.1.saturating_sub(per_user) < after {
            break;
        }
        donor.1 -= per_user;
        donor.2 -= 1;
        recipient = after;
        match plan.iter_mut().find(|(id, _)| *id == donor.0) {
            Some((_, count)) => *count += 1,
            None => plan.push((donor.0.clone(), 1)),
        }
    }
    plan
}

#[cfg(test)]
mod tests;
