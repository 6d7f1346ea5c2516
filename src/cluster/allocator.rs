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
mod tests {
    use super::*;

    use Health::{Active, Dead, Suspect};

    /// `max_load` 100, reports every second, dead after 10 s.
    fn params() -> Params {
        Params::default()
    }

    /// A server in a table case: id, reported load, pending, users, health. Added in table
    /// order (not id order, so ties by id are really tested).
    type Srv = (&'static str, u64, u64, u64, Health);

    /// Builds an allocator with `servers` at time `T`: every server is added at 0; the live
    /// ones report at `T` (version 1), the dead ones stay silent and `tick(T)` kills them;
    /// suspect ones are then marked by a reservation timeout.
    fn cluster(servers: &[Srv]) -> Allocator {
        const T: Millis = 20_000;
        let mut a = Allocator::new(params());
        for &(id, load, pending, users, health) in servers {
            a.add_server(id, 0);
            if health != Dead {
                assert!(a.report(id, 1, load, users, T));
            }
            a.begin(id, pending);
        }
        a.tick(T);
        for &(id, _, _, _, health) in servers {
            if health == Suspect {
                a.mark_suspect(id);
            }
            assert_eq!(a.server(id).map(|s| s.health), Some(health), "{id}");
        }
        a
    }

    struct Case {
        name: &'static str,
        servers: Vec<Srv>,
        removed: Vec<&'static str>,
        pool: Vec<&'static str>,
        /// The user's home in the directory, if any.
        home: Option<&'static str>,
        exclude: Vec<&'static str>,
        cost: u64,
        want: Decision,
    }

    impl Default for Case {
        fn default() -> Self {
            Case {
                name: "",
                servers: Vec::new(),
                removed: Vec::new(),
                pool: Vec::new(),
                home: None,
                exclude: Vec::new(),
                cost: 5,
                want: Decision::NoServer,
            }
        }
    }

    fn sticky(id: &str) -> Decision {
        Decision::Sticky(id.to_owned())
    }
    fn least(id: &str) -> Decision {
        Decision::Least(id.to_owned())
    }
    fn overloaded(id: &str) -> Decision {
        Decision::Overloaded(id.to_owned())
    }

    fn cases() -> Vec<Case> {
        vec![
            // Stickiness.
            Case {
                name: "alive home wins over a lighter server",
                servers: vec![("a", 10, 0, 1, Active), ("b", 50, 0, 5, Active)],
                home: Some("b"),
                want: sticky("b"),
                ..Case::default()
            },
            Case {
                name: "alive home wins even above max_load",
                servers: vec![("a", 10, 0, 1, Active), ("b", 150, 0, 15, Active)],
                home: Some("b"),
                cost: 50,
                want: sticky("b"),
                ..Case::default()
            },
            Case {
                name: "suspect home is still sticky",
                servers: vec![("a", 10, 0, 1, Active), ("b", 50, 0, 5, Suspect)],
                home: Some("b"),
                want: sticky("b"),
                ..Case::default()
            },
            Case {
                name: "dead home: placed anew",
                servers: vec![("a", 10, 0, 1, Active), ("b", 0, 0, 0, Dead)],
                home: Some("b"),
                want: least("a"),
                ..Case::default()
            },
            Case {
                name: "removed home: placed anew",
                servers: vec![("a", 10, 0, 1, Active), ("b", 0, 0, 0, Active)],
                removed: vec!["b"],
                home: Some("b"),
                want: least("a"),
                ..Case::default()
            },
            Case {
                name: "home never added: placed anew",
                servers: vec![("a", 10, 0, 1, Active)],
                home: Some("ghost"),
                want: least("a"),
                ..Case::default()
            },
            Case {
                name: "excluded home is not sticky",
                servers: vec![("a", 10, 0, 1, Active), ("b", 20, 0, 2, Active)],
                home: Some("a"),
                exclude: vec!["a"],
                want: least("b"),
                ..Case::default()
            },
            // Least loaded.
            Case {
                name: "lowest load wins",
                servers: vec![
                    ("a", 50, 0, 1, Active),
                    ("b", 30, 0, 9, Active),
                    ("c", 40, 0, 1, Active),
                ],
                want: least("b"),
                ..Case::default()
            },
            Case {
                name: "pending counts as load",
                servers: vec![("a", 20, 30, 1, Active), ("b", 40, 0, 1, Active)],
                want: least("b"),
                ..Case::default()
            },
            Case {
                name: "a lighter suspect server is not a candidate",
                servers: vec![("a", 50, 0, 5, Active), ("b", 0, 0, 0, Suspect)],
                want: least("a"),
                ..Case::default()
            },
            Case {
                name: "dead and removed servers are not candidates",
                servers: vec![
                    ("a", 50, 0, 5, Active),
                    ("b", 0, 0, 0, Dead),
                    ("c", 1, 0, 0, Active),
                ],
                removed: vec!["c"],
                want: least("a"),
                ..Case::default()
            },
            // Ties.
            Case {
                name: "tie on load: fewer users",
                servers: vec![("a", 30, 0, 5, Active), ("b", 20, 10, 3, Active)],
                want: least("b"),
                ..Case::default()
            },
            Case {
                name: "tie on load and users: smallest id",
                servers: vec![
                    ("srv-b", 30, 0, 3, Active),
                    ("srv-a10", 30, 0, 3, Active),
                    ("srv-a9", 30, 0, 3, Active),
                ],
                want: least("srv-a10"),
                ..Case::default()
            },
            // The max_load boundary.
            Case {
                name: "load + pending + cost exactly at max_load fits",
                servers: vec![("a", 60, 10, 6, Active)],
                pool: vec!["p1"],
                cost: 30,
                want: least("a"),
                ..Case::default()
            },
            Case {
                name: "one above max_load does not fit",
                servers: vec![("a", 61, 10, 6, Active)],
                pool: vec!["p1"],
                cost: 30,
                want: Decision::Pool,
                ..Case::default()
            },
            Case {
                name: "cost 0 at exactly max_load fits",
                servers: vec![("a", 100, 0, 10, Active)],
                pool: vec!["p1"],
                cost: 0,
                want: least("a"),
                ..Case::default()
            },
            // Full cluster.
            Case {
                name: "all full: pool",
                servers: vec![("a", 90, 0, 9, Active), ("b", 95, 0, 9, Active)],
                pool: vec!["p1", "p2"],
                cost: 20,
                want: Decision::Pool,
                ..Case::default()
            },
            Case {
                name: "all full, pool empty: least loaded, overloaded",
                servers: vec![("a", 95, 0, 9, Active), ("b", 90, 0, 9, Active)],
                cost: 20,
                want: overloaded("b"),
                ..Case::default()
            },
            Case {
                name: "overloaded ties: fewer users, then id",
                servers: vec![
                    ("c", 95, 0, 2, Active),
                    ("a", 95, 0, 4, Active),
                    ("b", 95, 0, 2, Active),
                ],
                cost: 20,
                want: overloaded("b"),
                ..Case::default()
            },
            Case {
                name: "overloaded prefers an active server to a lighter suspect one",
                servers: vec![("a", 99, 0, 9, Active), ("b", 0, 0, 0, Suspect)],
                cost: 20,
                want: overloaded("a"),
                ..Case::default()
            },
            Case {
                name: "no active server, pool empty: least-loaded suspect",
                servers: vec![
                    ("a", 10, 0, 1, Suspect),
                    ("b", 5, 0, 1, Suspect),
                    ("c", 0, 0, 0, Dead),
                ],
                want: overloaded("b"),
                ..Case::default()
            },
            Case {
                name: "no active server, pool not empty: pool",
                servers: vec![("a", 10, 0, 1, Suspect)],
                pool: vec!["p1"],
                want: Decision::Pool,
                ..Case::default()
            },
            Case {
                name: "none alive, pool empty: no server",
                servers: vec![("a", 0, 0, 0, Dead), ("b", 0, 0, 0, Active)],
                removed: vec!["b"],
                home: Some("a"),
                want: Decision::NoServer,
                ..Case::default()
            },
            Case {
                name: "no servers at all",
                want: Decision::NoServer,
                ..Case::default()
            },
            Case {
                name: "none alive, pool not empty: pool",
                servers: vec![("a", 0, 0, 0, Dead)],
                pool: vec!["p1"],
                want: Decision::Pool,
                ..Case::default()
            },
            // Exclusion (two-phase fallback).
            Case {
                name: "excluded server skipped",
                servers: vec![("a", 10, 0, 1, Active), ("b", 20, 0, 2, Active)],
                exclude: vec!["a"],
                want: least("b"),
                ..Case::default()
            },
            Case {
                name: "excluded: unknown ids change nothing",
                servers: vec![("a", 10, 0, 1, Active), ("b", 20, 0, 2, Active)],
                exclude: vec!["zz", "p1"],
                want: least("a"),
                ..Case::default()
            },
            Case {
                name: "every active one excluded, pool empty: a suspect one",
                servers: vec![("a", 10, 0, 1, Active), ("b", 90, 0, 9, Suspect)],
                exclude: vec!["a"],
                want: overloaded("b"),
                ..Case::default()
            },
            Case {
                name: "every active one excluded, pool not empty: pool",
                servers: vec![("a", 10, 0, 1, Active)],
                exclude: vec!["a"],
                pool: vec!["p1"],
                want: Decision::Pool,
                ..Case::default()
            },
            Case {
                name: "everything excluded, pool empty: no server",
                servers: vec![("a", 10, 0, 1, Active), ("b", 10, 0, 1, Suspect)],
                home: Some("b"),
                exclude: vec!["a", "b"],
                want: Decision::NoServer,
                ..Case::default()
            },
        ]
    }

    #[test]
    fn scale_in_drains_the_least_loaded_worker_only_when_the_mean_is_low() {
        // min_load is 20 (defaults); (servers, primary, draining, want).
        type ScaleInCase = (
            Vec<Srv>,
            &'static str,
            Vec<&'static str>,
            Option<&'static str>,
        );
        let cases: Vec<ScaleInCase> = vec![
            // Mean 10 < 20: the least-loaded worker, never the primary.
            (
                vec![
                    ("p", 2, 0, 2, Active),
                    ("a", 10, 0, 10, Active),
                    ("b", 18, 0, 18, Active),
                ],
                "p",
                vec![],
                Some("a"),
            ),
            // Mean 20 is not below min_load.
            (
                vec![("p", 20, 0, 20, Active), ("a", 20, 0, 20, Active)],
                "p",
                vec![],
                None,
            ),
            // Never below one server.
            (vec![("p", 0, 0, 0, Active)], "p", vec![], None),
            // A tie goes to the smallest id; one already draining is skipped.
            (
                vec![
                    ("p", 0, 0, 0, Active),
                    ("b", 5, 0, 5, Active),
                    ("a", 5, 0, 5, Active),
                ],
                "p",
                vec!["a"],
                Some("b"),
            ),
            // Pending reservations count; dead servers neither count nor get drained.
            (
                vec![
                    ("p", 0, 0, 0, Active),
                    ("a", 1, 9, 1, Active),
                    ("b", 5, 0, 5, Active),
                    ("c", 0, 0, 0, Dead),
                ],
                "p",
                vec![],
                Some("b"),
            ),
        ];
        for (servers, primary, draining, want) in cases {
            let mut a = cluster(&servers);
            for d in &draining {
                a.set_draining(d, true);
            }
            assert_eq!(a.scale_in_candidate(primary), want, "{servers:?}");
        }
    }

    #[test]
    fn placement_table() {
        for case in cases() {
            let mut a = cluster(&case.servers);
            for id in &case.removed {
                assert!(a.remove_server(id), "{}", case.name);
            }
            a.set_pool(case.pool.iter().map(|p| p.to_string()).collect());
            if let Some(home) = case.home {
                a.set_home("u", home);
            }
            let got = a.place_excluding("u", case.cost, &case.exclude);
            assert_eq!(got, case.want, "{}", case.name);
            if case.exclude.is_empty() {
                assert_eq!(a.place("u", case.cost), case.want, "{}", case.name);
            }
        }
    }

    #[test]
    fn reports_older_or_replayed_are_ignored() {
        let mut a = Allocator::new(params());
        assert!(!a.report("a", 1, 10, 1, 0), "unknown id");
        a.add_server("a", 0);
        assert!(!a.report("a", 0, 10, 1, 5), "version 0 is the add itself");
        assert!(a.report("a", 2, 20, 2, 10));
        assert!(!a.report("a", 2, 99, 9, 20), "replayed");
        assert!(!a.report("a", 1, 99, 9, 30), "older");
        let v = a.server("a").unwrap();
        assert_eq!((v.load, v.users, v.version, v.last_report), (20, 2, 2, 10));
        assert!(a.report("a", 7, 30, 3, 40));
        assert_eq!(a.server("a").unwrap().load, 30);

        assert!(a.remove_server("a"));
        assert!(!a.remove_server("a"), "already out");
        assert!(!a.report("a", 8, 1, 1, 50), "removed servers do not report");
        assert!(a.server("a").is_none());

        a.add_server("a", 60);
        let v = a.server("a").unwrap();
        assert_eq!((v.load, v.users, v.version, v.health), (0, 0, 0, Active));
        assert!(a.report("a", 1, 5, 1, 70), "a new session numbers from 1");
    }

    #[test]
    fn tick_at_the_exact_thresholds() {
        let mut a = Allocator::new(params()); // 3 intervals = 3000, dead after 10000
        a.add_server("a", 0);
        assert_eq!(a.tick(3_000), vec![]);
        assert_eq!(a.tick(3_001), vec![("a".to_owned(), Suspect)]);
        assert_eq!(a.tick(3_002), vec![], "reported once");
        assert_eq!(a.tick(10_000), vec![]);
        assert_eq!(a.tick(10_001), vec![("a".to_owned(), Dead)]);
        assert_eq!(a.tick(50_000), vec![]);
        assert_eq!(a.place("u", 1), Decision::NoServer);

        assert!(a.report("a", 1, 4, 1, 10_500), "a report revives the dead");
        assert_eq!(a.server("a").unwrap().health, Active);
        assert_eq!(a.tick(13_500), vec![]);
        assert_eq!(a.tick(13_501), vec![("a".to_owned(), Suspect)]);
        assert!(a.report("a", 2, 4, 1, 13_600), "and the suspect");
        assert_eq!(a.server("a").unwrap().health, Active);
    }

    #[test]
    fn tick_reports_in_id_order_and_may_skip_suspect() {
        let mut a = Allocator::new(params());
        for id in ["c", "a", "d", "b"] {
            a.add_server(id, 0);
        }
        assert!(a.report("d", 1, 0, 0, 9_000));
        assert!(a.report("b", 1, 0, 0, 5_000));
        assert_eq!(
            a.tick(10_001),
            vec![
                ("a".to_owned(), Dead),
                ("b".to_owned(), Suspect),
                ("c".to_owned(), Dead),
            ],
            "a and c skip suspect; d is fresh"
        );
        let ids: Vec<&str> = a.servers().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
    }

    #[test]
    fn mark_suspect_only_demotes_active_members() {
        let mut a = Allocator::new(params());
        a.add_server("a", 0);
        a.add_server("b", 0);
        a.mark_suspect("a");
        a.mark_suspect("nobody");
        assert_eq!(a.server("a").unwrap().health, Suspect);
        assert_eq!(a.tick(10_001).len(), 2, "a suspect one still dies");
        a.mark_suspect("b");
        assert_eq!(a.server("b").unwrap().health, Dead, "dead stays dead");
    }

    #[test]
    fn begin_confirm_abort_account_pending() {
        let mut a = Allocator::new(params());
        a.add_server("a", 0);
        a.add_server("b", 0);
        assert!(a.report("a", 1, 40, 4, 0));
        assert!(a.report("b", 1, 50, 5, 0));
        assert_eq!(a.place("u1", 10), least("a"));

        a.begin("a", 10);
        a.begin("a", 5);
        assert_eq!(a.server("a").unwrap().pending, 15);
        assert_eq!(a.place("u2", 10), least("b"), "55 in flight beats 50");

        a.confirm("u1", "a", 10);
        assert_eq!(a.server("a").unwrap().pending, 5);
        assert_eq!(a.home("u1"), Some("a"));
        assert_eq!(a.users_homed("a"), 1);
        assert_eq!(a.place("u1", 10), sticky("a"));

        a.abort("a", 5);
        assert_eq!(a.server("a").unwrap().pending, 0);
        a.abort("a", 5);
        assert_eq!(a.server("a").unwrap().pending, 0, "saturating");
        a.confirm("u3", "a", 99);
        assert_eq!(a.server("a").unwrap().pending, 0, "saturating");

        a.begin("nobody", 5);
        a.abort("nobody", 5);
        assert!(a.server("nobody").is_none());

        // Pending survives a re-add: the reservation's confirm or abort still comes.
        a.begin("b", 7);
        a.add_server("b", 100);
        assert_eq!(a.server("b").unwrap().pending, 7);
    }

    #[test]
    fn users_homed_follows_set_home_forget_and_moves() {
        let mut a = Allocator::new(params());
        a.add_server("a", 0);
        a.add_server("b", 0);
        a.set_home("u1", "a");
        a.set_home("u2", "a");
        a.set_home("u3", "b");
        assert_eq!((a.users_homed("a"), a.users_homed("b")), (2, 1));
        assert_eq!(a.directory_len(), 3);

        a.set_home("u1", "b"); // a move (§7)
        assert_eq!((a.users_homed("a"), a.users_homed("b")), (1, 2));
        a.set_home("u1", "b");
        assert_eq!((a.users_homed("a"), a.users_homed("b")), (1, 2), "no-op");
        a.confirm("u2", "b", 0);
        assert_eq!((a.users_homed("a"), a.users_homed("b")), (0, 3));

        assert!(a.forget("u2"));
        assert!(!a.forget("u2"));
        assert_eq!((a.users_homed("b"), a.directory_len()), (2, 2));
        assert_eq!(a.home("u2"), None);

        // A home not added yet (directory restored before the node joined).
        a.set_home("u9", "z");
        assert_eq!((a.users_homed("z"), a.home("u9")), (1, Some("z")));
        assert!(a.server("z").is_none());
        assert_eq!(a.users_homed("nobody"), 0);
        a.add_server("z", 0);
        assert_eq!(a.place("u9", 1), sticky("z"));

        // Removing keeps entries and counts; re-adding makes them sticky again.
        assert!(a.remove_server("b"));
        assert_eq!((a.users_homed("b"), a.home("u1")), (2, Some("b")));
        assert_ne!(a.place("u1", 1), sticky("b"));
        a.add_server("b", 0);
        assert_eq!(a.place("u1", 1), sticky("b"));
    }

    #[test]
    fn dead_home_revived_by_add_server_is_sticky_again() {
        let mut a = Allocator::new(params());
        a.add_server("a", 0);
        a.add_server("b", 0);
        a.set_home("u", "a");
        assert!(a.report("b", 1, 50, 5, 20_000));
        a.tick(20_000);
        assert_eq!(a.place("u", 1), least("b"));
        a.add_server("a", 21_000);
        assert_eq!(a.place("u", 1), sticky("a"));
    }

    #[test]
    fn pool_servers_and_mean_load() {
        let mut a = Allocator::new(params());
        assert_eq!(a.mean_load(), None);
        a.set_pool(vec!["p2".into(), "p1".into()]);
        assert_eq!(a.pool(), ["p2", "p1"], "config order");
        a.add_server("b", 0);
        a.add_server("a", 0);
        a.add_server("c", 0);
        assert!(a.report("a", 1, 10, 1, 0));
        assert!(a.report("b", 1, 25, 2, 0));
        assert!(a.report("c", 1, 90, 9, 0));
        a.mark_suspect("c");
        assert_eq!(a.mean_load(), Some(17.5), "suspect c not counted");
        a.remove_server("a");
        assert_eq!(a.mean_load(), Some(25.0));
        let ids: Vec<&str> = a.servers().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(a.params(), &params());
        assert_eq!(least("x").server(), Some("x"));
        assert_eq!(Decision::Pool.server(), None);
    }

    /// Runs a scripted workload (seeded LCG) and returns every decision and liveness change,
    /// as text. Servers are added in `add_order`; the result must not depend on it, nor on
    /// hashing.
    fn trace(add_order: &[&str]) -> Vec<String> {
        let mut a = Allocator::new(Params {
            max_load: 60,
            ..params()
        });
        for id in add_order {
            a.add_server(id, 0);
        }
        let mut ids = add_order.to_vec();
        ids.sort_unstable();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let mut out = Vec::new();
        let mut version = 0;
        for step in 0..2_000u64 {
            let now = step * 100;
            let user = format!("user{}", next(300));
            let cost = 1 + next(4);
            let d = if next(5) == 0 {
                a.place_excluding(&user, cost, &[ids[0]])
            } else {
                a.place(&user, cost)
            };
            match d.server().map(str::to_owned) {
                Some(server) if next(10) == 0 => {
                    // The reservation times out.
                    a.begin(&server, cost);
                    a.abort(&server, cost);
                    a.mark_suspect(&server);
                }
                Some(server) => {
                    a.begin(&server, cost);
                    a.confirm(&user, &server, cost);
                }
                None => {
                    if let Some(p) = a.pool().first().cloned() {
                        a.add_server(&p, now);
                        a.set_pool(a.pool()[1..].to_vec());
                    }
                }
            }
            out.push(format!("{d:?}"));
            if next(3) == 0 {
                let id = ids[next(ids.len() as u64) as usize];
                version += 1;
                a.report(id, version, a.users_homed(id) as u64 * 3, 0, now);
            }
            if step % 500 == 0 {
                a.set_pool(vec!["p1".into(), "p2".into()]);
            }
            if step % 7 == 0 {
                out.extend(a.tick(now).iter().map(|c| format!("{c:?}")));
            }
        }
        out
    }

    #[test]
    fn same_operations_same_decisions() {
        let first = trace(&["n1", "n2", "n3", "n4"]);
        assert_eq!(first, trace(&["n1", "n2", "n3", "n4"]));
        assert_eq!(
            first,
            trace(&["n4", "n1", "n3", "n2"]),
            "the order servers were added in does not matter"
        );
        let count = |prefix: &str| first.iter().filter(|d| d.starts_with(prefix)).count();
        for kind in ["Sticky", "Least", "Pool", "Overloaded", "(\"p1\", Suspect)"] {
            assert!(count(kind) > 0, "the workload exercises {kind}");
        }
    }

    #[test]
    fn the_preferred_server_is_filled_first_while_it_fits() {
        let mut a = Allocator::new(Params {
            max_load: 10,
            ..Params::default()
        });
        a.add_server("p", 0);
        a.add_server("w", 0);
        a.set_preferred(Some("p"));
        a.report("p", 1, 5, 5, 0);
        assert_eq!(a.place("u", 1), Decision::Least("p".into()));
        assert_eq!(a.place("u", 5), Decision::Least("p".into()));
        // Full (or excluded, or suspect): least-loaded among the others.
        assert_eq!(a.place("u", 6), Decision::Least("w".into()));
        assert_eq!(
            a.place_excluding("u", 1, &["p"]),
            Decision::Least("w".into())
        );
        a.mark_suspect("p");
        assert_eq!(a.place("u", 1), Decision::Least("w".into()));
        a.set_preferred(None);
        a.report("p", 2, 0, 0, 0);
        a.report("w", 1, 0, 0, 0);
        // Without a preference, ties go to fewer users, then id.
        assert_eq!(a.place("u", 1), Decision::Least("p".into()));
    }

    #[test]
    fn draining_servers_are_neither_candidates_nor_sticky() {
        struct Drain {
            name: &'static str,
            servers: Vec<Srv>,
            draining: Vec<&'static str>,
            home: Option<&'static str>,
            pool: Vec<&'static str>,
            moving: bool,
            want: Decision,
        }
        let table = vec![
            Drain {
                name: "a draining home is not sticky",
                servers: vec![("a", 10, 0, 1, Active), ("b", 50, 0, 5, Active)],
                draining: vec!["a"],
                home: Some("a"),
                pool: vec![],
                moving: false,
                want: least("b"),
            },
            Drain {
                name: "a lighter draining server is not a candidate",
                servers: vec![("a", 0, 0, 0, Active), ("b", 50, 0, 5, Active)],
                draining: vec!["a"],
                home: None,
                pool: vec![],
                moving: false,
                want: least("b"),
            },
            Drain {
                name: "a draining preferred server is not filled first",
                servers: vec![("p", 0, 0, 0, Active), ("b", 50, 0, 5, Active)],
                draining: vec!["p"],
                home: None,
                pool: vec![],
                moving: false,
                want: least("b"),
            },
            Drain {
                name: "not draining any more: sticky again",
                servers: vec![("a", 10, 0, 1, Active), ("b", 50, 0, 5, Active)],
                draining: vec![],
                home: Some("a"),
                pool: vec![],
                moving: false,
                want: sticky("a"),
            },
            Drain {
                name: "placement with everyone else full asks the pool",
                servers: vec![("a", 0, 0, 0, Active), ("b", 99, 0, 9, Active)],
                draining: vec!["a"],
                home: Some("a"),
                pool: vec!["q"],
                moving: false,
                want: Decision::Pool,
            },
            Drain {
                name: "a move never asks the pool: least loaded, overloaded",
                servers: vec![
                    ("a", 0, 0, 0, Active),
                    ("b", 99, 0, 9, Active),
                    ("c", 98, 0, 9, Active),
                ],
                draining: vec!["a"],
                home: Some("a"),
                pool: vec!["q"],
                moving: true,
                want: overloaded("c"),
            },
            Drain {
                name: "a move goes to the least loaded that fits",
                servers: vec![
                    ("a", 40, 0, 4, Active),
                    ("b", 30, 0, 3, Active),
                    ("c", 20, 0, 2, Active),
                ],
                draining: vec!["a"],
                home: Some("a"),
                pool: vec![],
                moving: true,
                want: least("c"),
            },
            Drain {
                name: "only draining servers left: no server",
                servers: vec![("a", 0, 0, 0, Active)],
                draining: vec!["a"],
                home: Some("a"),
                pool: vec![],
                moving: true,
                want: Decision::NoServer,
            },
        ];
        for case in table {
            let mut a = cluster(&case.servers);
            a.set_preferred(Some("p"));
            for id in &case.draining {
                assert!(a.set_draining(id, true), "{}", case.name);
                assert!(a.is_draining(id), "{}", case.name);
            }
            a.set_pool(case.pool.iter().map(|p| p.to_string()).collect());
            if let Some(home) = case.home {
                a.set_home("u", home);
            }
            let got = if case.moving {
                a.move_target("u", 5, &case.draining)
            } else {
                a.place("u", 5)
            };
            assert_eq!(got, case.want, "{}", case.name);
        }
        // Unknown servers cannot drain; re-adding a drained server clears the mark.
        let mut a = cluster(&[("a", 0, 0, 0, Active)]);
        assert!(!a.set_draining("zz", true));
        assert!(a.set_draining("a", true));
        a.remove_server("a");
        assert!(!a.is_draining("a"));
        a.add_server("a", 0);
        assert!(!a.is_draining("a"));
        assert_eq!(a.place("u", 1), least("a"));
    }

    #[test]
    fn rebalance_plan_table() {
        type Row = (&'static str, u64, u64);
        struct Plan {
            name: &'static str,
            servers: Vec<Row>,
            to: &'static str,
            max: u64,
            want: Vec<(&'static str, usize)>,
        }
        let table = vec![
            Plan {
                name: "two full servers of one user each per load unit: one user moves",
                servers: vec![("p", 2, 2), ("w", 2, 2), ("q", 0, 0)],
                to: "q",
                max: 2,
                want: vec![("p", 1)],
            },
            Plan {
                name: "the new server may be unlisted: it counts with load 0",
                servers: vec![("p", 2, 2), ("w", 2, 2)],
                to: "q",
                max: 2,
                want: vec![("p", 1)],
            },
            Plan {
                name: "most loaded first, then the next one as loads even out",
                servers: vec![("a", 100, 50), ("b", 60, 30), ("n", 0, 0)],
                to: "n",
                max: 100,
                // mean 53: a gives 2 per user down to b's 60, then a and b alternate
                // (a first on ties) until n has 52 and one more would leave a donor below n.
                want: vec![("a", 23), ("b", 3)],
            },
            Plan {
                name: "ties between donors: the smallest id first",
                servers: vec![("b", 10, 10), ("a", 10, 10), ("n", 0, 0)],
                to: "n",
                max: 100,
                // mean 6: a, then b (now heavier), alternating.
                want: vec![("a", 3), ("b", 3)],
            },
            Plan {
                name: "heavy users: the per-user load rounds up",
                servers: vec![("a", 90, 4), ("n", 0, 0)],
                to: "n",
                max: 100,
                // 23 per user: 23, then 46 would leave a with 44 < 46.
                want: vec![("a", 1)],
            },
            Plan {
                name: "never above max_load",
                servers: vec![("a", 100, 10), ("b", 100, 10), ("n", 0, 0)],
                to: "n",
                max: 25,
                // 10 per user: 10, 20, and 30 would pass max_load.
                want: vec![("a", 1), ("b", 1)],
            },
            Plan {
                name: "already at the mean: nothing",
                servers: vec![("a", 10, 5), ("n", 10, 5)],
                to: "n",
                max: 100,
                want: vec![],
            },
            Plan {
                name: "donors without users give nothing",
                servers: vec![("a", 50, 0), ("n", 0, 0)],
                to: "n",
                max: 100,
                want: vec![],
            },
            Plan {
                name: "a lone new server: nothing",
                servers: vec![("n", 0, 0)],
                to: "n",
                max: 100,
                want: vec![],
            },
            Plan {
                name: "one user with load 1 is never moved away from a pair of 1",
                servers: vec![("a", 1, 1), ("n", 0, 0)],
                to: "n",
                max: 100,
                want: vec![],
            },
        ];
        for case in table {
            let servers: Vec<LoadFigures> = case
                .servers
                .iter()
                .map(|&(id, load, users)| (id.to_string(), load, users))
                .collect();
            let got = plan_rebalance(&servers, case.to, case.max);
            let want: Vec<(String, usize)> = case
                .want
                .iter()
                .map(|&(id, n)| (id.to_string(), n))
                .collect();
            assert_eq!(got, want, "{}", case.name);
            // The plan never moves more users than a server has, nor fills `to` above the
            // mean or max_load.
            for (from, n) in &got {
                let (_, _, users) = servers.iter().find(|s| s.0 == *from).unwrap();
                assert!(*n as u64 <= *users, "{}", case.name);
            }
        }
    }
}
