//! The discrete-event engine of the simulator (DESIGN.md §10): one run of one mode.
//!
//! Events sit in a `BinaryHeap` ordered by (virtual time in µs, sequence number), so two
//! events at the same instant run in the order they were scheduled: the tie-breaker is
//! deterministic, never the heap's whim.
//!
//! Model:
//! - Users arrive and leave following the scenario (`users.steps` or `users.curve`); a
//!   leaving user may come back later (its directory entry is sticky, as in the live
//!   primary). Every arrival is placed by the real [`Allocator`]: `place`, then
//!   `begin`/`confirm` and a load report from the chosen server (the live members answer a
//!   reservation with their new load, so the primary sees it at once).
//! - `Decision::Pool`: the first pool entry is taken out of the allocator's pool and joins
//!   after `cluster.start_delay_s`; users arriving meanwhile wait for it. When it joins it
//!   is added (`add_server`), the waiting users are placed, then users move to it as
//!   [`plan_rebalance`] says (the most loaded servers first, up to the mean load). A moved
//!   user re-SUBSCRIBEs at its new home at once (RFC 6665 `deactivated`).
//! - Every `report_interval_ms`: live servers report their load, `tick` runs, and scale-in is
//!   considered ([`Allocator::scale_in_candidate`] for `scale_in_after_s`; the drained
//!   server's users go where [`Allocator::move_target`] says).
//! - A failure kills a server: it stops reporting, its users lose their sessions and log in
//!   again every `reconnect_s`; while the allocator still thinks the home alive (sticky), the
//!   attempt fails; once `tick` declared it dead they are placed anew.
//! - Requests: the users' SUBSCRIBEs and NOTIFYs form one stream per kind whose rate is
//!   (online users × rate per user): Poisson (exponential gaps, redrawn whenever the number
//!   of online users changes, exact by memorylessness) or periodic. Each request goes to a
//!   uniformly drawn online user's home. A server is a FIFO queue with one worker: Lindley's
//!   recursion `start = max(arrival, free_at)`; sojourn = `start + service − arrival`.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cluster::allocator::{plan_rebalance, Allocator, Decision, Health, LoadFigures, Params};

use super::scenario::{pool_name, Arrivals, Mode, Scenario, Service};
use super::{CostModel, Counters, Kind, ModeRun, Options, RequestSample, Row, SeriesPoint, Stats};

/// Virtual time in microseconds.
type Micros = u64;

const US_PER_S: f64 = 1e6;

fn us(seconds: f64) -> Micros {
    (seconds * US_PER_S).round() as Micros
}

/// A min-queue of events with a deterministic tie-breaker: events at the same time come out
/// in the order they went in.
#[derive(Debug, Default)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<(Micros, u64, Slot<E>)>>,
    seq: u64,
}

/// Wrapper that makes any payload comparable as "equal", so only (time, seq) order.
#[derive(Debug)]
struct Slot<E>(E);
impl<E> PartialEq for Slot<E> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<E> Eq for Slot<E> {}
impl<E> PartialOrd for Slot<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Slot<E> {
    fn cmp(&self, _: &Self) -> Ordering {
        Ordering::Equal
    }
}

impl<E> EventQueue<E> {
    /// An empty queue.
    pub fn new() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Schedules `event` at `at` (µs).
    pub fn push(&mut self, at: u64, event: E) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, Slot(event))));
    }

    /// The earliest event (ties: the first scheduled).
    pub fn pop(&mut self) -> Option<(u64, E)> {
        self.heap.pop().map(|Reverse((at, _, Slot(e)))| (at, e))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// No events waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[derive(Debug)]
enum Event {
    /// The `k`-th arrival or departure of population segment `seg`.
    Population { seg: usize, k: u64 },
    /// The next request of a kind's stream; stale when `gen` is not the stream's current one.
    Request { kind: usize, gen: u64, resume: bool },
    /// A pool server finished starting.
    ServerUp { server: usize },
    /// Periodic load reports, liveness tick, scale-in, series sample.
    Report,
    /// A server crashes.
    Kill { server: usize },
    /// A user whose home died tries to log in again.
    Reconnect { user: u32 },
    /// End of row `row`'s measuring window: snapshot of the placement.
    RowEnd { row: usize },
    /// A moved user re-SUBSCRIBEs at its new home.
    Resubscribe { user: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    /// In the pool, not started.
    Off,
    /// Starting (asked for by the allocator).
    Starting,
    /// Serving users.
    Up,
    /// Crashed.
    Dead,
}

#[derive(Debug)]
struct Server {
    id: String,
    state: ServerState,
    free_at: f64,
    users: Vec<u32>,
    stored: u64,
    version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserState {
    Offline,
    /// Waiting for a pool server to start.
    Waiting,
    Online,
    /// Its home died; logging in again.
    Orphan,
}

#[derive(Debug)]
struct User {
    xmpp: bool,
    resources: u64,
    state: UserState,
    /// Position in `present`.
    ppos: usize,
    /// Position in `online` (when online).
    opos: usize,
    /// Home server index (when online) and position in its `users`.
    server: usize,
    spos: usize,
}

/// A stretch of time over which the user count goes linearly from `from` to `to`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    t0: Micros,
    t1: Micros,
    from: u64,
    to: u64,
}

impl Segment {
    fn changes(&self) -> u64 {
        self.from.abs_diff(self.to)
    }
    fn time_of(&self, k: u64) -> Micros {
        let n = self.changes();
        if n == 0 {
            return self.t0;
        }
        self.t0 + ((self.t1 - self.t0) as u128 * k as u128 / n as u128) as Micros
    }
}

/// A measuring window: requests issued in `[from, to)` count for the row.
#[derive(Debug, Clone, Copy)]
struct Window {
    users: u64,
    from: Micros,
    to: Micros,
}

struct Sim<'a> {
    scenario: &'a Scenario,
    cost: &'a CostModel,
    mode: Mode,
    keep_requests: bool,
    rng: StdRng,
    queue: EventQueue<Event>,
    alloc: Allocator,
    servers: Vec<Server>,
    users: Vec<User>,
    present: Vec<u32>,
    online: Vec<u32>,
    offline: Vec<u32>,
    waiting: Vec<u32>,
    starting: bool,
    segments: Vec<Segment>,
    windows: Vec<Window>,
    /// Requests only in the windows (`users.window_s` with a curve).
    windowed: bool,
    /// Sojourns per row and kind.
    samples: Vec<[Vec<f32>; 2]>,
    rate: [f64; 2],
    gen: [u64; 2],
    pending: [bool; 2],
    low_since: Option<Micros>,
    end: Micros,
    run: ModeRun,
}

/// Runs one mode of `scenario`; `progress` gets the fraction of virtual time done.
pub fn run_mode(
    scenario: &Scenario,
    cost: &CostModel,
    mode: Mode,
    options: &Options,
    progress: &mut dyn FnMut(f64),
) -> ModeRun {
    let mut sim = Sim::new(scenario, cost, mode, options);
    sim.start();
    let step = (sim.end / 100).max(1);
    let mut next_mark = step;
    while let Some((now, event)) = sim.queue.pop() {
        if now > sim.end {
            break;
        }
        if now >= next_mark {
            progress(now as f64 / sim.end as f64);
            next_mark = now + step;
        }
        sim.handle(now, event);
    }
    progress(1.0);
    sim.finish()
}

impl<'a> Sim<'a> {
    fn new(scenario: &'a Scenario, cost: &'a CostModel, mode: Mode, options: &Options) -> Self {
        let c = &scenario.cluster;
        let params = match mode {
            Mode::Single => Params {
                max_load: u64::MAX,
                min_load: 0,
                report_interval_ms: c.report_interval_ms,
                dead_after_ms: c.dead_after_ms,
            },
            Mode::Multi => Params {
                max_load: c.max_load,
                min_load: c.min_load,
                report_interval_ms: c.report_interval_ms,
                dead_after_ms: c.dead_after_ms,
            },
        };
        let pool = if mode == Mode::Multi { c.pool } else { 0 };
        let servers: Vec<Server> = std::iter::once("primary".to_owned())
            .chain((1..=pool).map(pool_name))
            .map(|id| Server {
                id,
                state: ServerState::Off,
                free_at: 0.0,
                users: Vec::new(),
                stored: 0,
                version: 0,
            })
            .collect();
        let (segments, windows) = plan(scenario);
        let end = us(scenario.duration_s());
        let r = &scenario.requests;
        Sim {
            scenario,
            cost,
            mode,
            keep_requests: options.keep_requests,
            rng: StdRng::seed_from_u64(options.seed),
            queue: EventQueue::new(),
            alloc: Allocator::new(params),
            run: ModeRun {
                mode,
                servers: servers.iter().map(|s| s.id.clone()).collect(),
                rows: Vec::new(),
                series: Vec::new(),
                requests: Vec::new(),
                placement: Vec::new(),
                counters: Counters::default(),
            },
            servers,
            users: Vec::new(),
            present: Vec::new(),
            online: Vec::new(),
            offline: Vec::new(),
            waiting: Vec::new(),
            starting: false,
            samples: windows.iter().map(|_| [Vec::new(), Vec::new()]).collect(),
            windowed: scenario.users.steps.is_empty() && scenario.users.window_s.is_some(),
            segments,
            windows,
            rate: [r.subscribe_per_s, r.notify_per_s],
            gen: [0, 0],
            pending: [false, false],
            low_since: None,
            end,
        }
    }

    fn start(&mut self) {
        self.servers[0].state = ServerState::Up;
        self.alloc.add_server("primary", 0);
        self.alloc.set_preferred(Some("primary"));
        let pool: Vec<String> = self.servers[1..].iter().map(|s| s.id.clone()).collect();
        self.alloc.set_pool(pool);
        self.run.counters.peak_servers = 1;
        if !self.segments.is_empty() {
            let t = self.segments[0].time_of(0);
            self.queue.push(t, Event::Population { seg: 0, k: 0 });
        }
        self.queue.push(0, Event::Report);
        for (row, w) in self.windows.iter().enumerate() {
            self.queue
                .push(w.to.saturating_sub(1), Event::RowEnd { row });
        }
        if self.mode == Mode::Multi {
            for f in &self.scenario.failures {
                let server = server_index(&f.server);
                self.queue.push(us(f.at_s), Event::Kill { server });
            }
        }
    }

    fn handle(&mut self, now: Micros, event: Event) {
        match event {
            Event::Population { seg, k } => self.population(now, seg, k),
            Event::Request { kind, gen, resume } => {
                if gen == self.gen[kind] {
                    self.pending[kind] = false;
                    if !resume {
                        self.request(now, kind);
                    }
                    self.schedule_request(now, kind);
                }
            }
            Event::ServerUp { server } => self.server_up(now, server),
            Event::Report => self.report_all(now),
            Event::Kill { server } => self.kill(now, server),
            Event::Reconnect { user } => {
                if self.users[user as usize].state == UserState::Orphan {
                    self.place(now, user);
                }
            }
            Event::RowEnd { row } => {
                let counts = self.servers.iter().map(|s| s.users.len() as u64).collect();
                self.run.placement.push((now / 1000, counts));
                let servers = self.serving();
                let w = self.windows[row];
                self.run.rows.push(Row {
                    users: w.users,
                    from_s: w.from as f64 / US_PER_S,
                    to_s: w.to as f64 / US_PER_S,
                    servers,
                    subscribe: stats(&mut self.samples[row][0]),
                    notify: stats(&mut self.samples[row][1]),
                });
                self.samples[row] = [Vec::new(), Vec::new()];
            }
            Event::Resubscribe { user } => {
                let u = &self.users[user as usize];
                if u.state == UserState::Online {
                    let server = u.server;
                    self.serve(now, 0, user, server);
                }
            }
        }
    }

    // ---- population -------------------------------------------------------------------

    fn population(&mut self, now: Micros, seg: usize, k: u64) {
        let s = self.segments[seg];
        if s.to > s.from {
            self.arrive(now);
        } else {
            self.depart(now);
        }
        let next = if k + 1 < s.changes() {
            Some((seg, k + 1))
        } else {
            (seg + 1..self.segments.len())
                .find(|&i| self.segments[i].changes() > 0)
                .map(|i| (i, 0))
        };
        if let Some((seg, k)) = next {
            let t = self.segments[seg].time_of(k).max(now);
            self.queue.push(t, Event::Population { seg, k });
        }
    }

    fn arrive(&mut self, now: Micros) {
        let user = if self.offline.is_empty() {
            let xmpp = self.rng.gen_bool(self.scenario.users.xmpp_share);
            self.users.push(User {
                xmpp,
                resources: self.scenario.users.resources,
                state: UserState::Offline,
                ppos: 0,
                opos: 0,
                server: 0,
                spos: 0,
            });
            (self.users.len() - 1) as u32
        } else {
            let i = self.rng.gen_range(0..self.offline.len());
            self.offline.swap_remove(i)
        };
        self.users[user as usize].ppos = self.present.len();
        self.present.push(user);
        self.place(now, user);
    }

    fn depart(&mut self, now: Micros) {
        if self.present.is_empty() {
            return;
        }
        let i = self.rng.gen_range(0..self.present.len());
        let user = self.present[i];
        self.present.swap_remove(i);
        if let Some(&moved) = self.present.get(i) {
            self.users[moved as usize].ppos = i;
        }
        match self.users[user as usize].state {
            UserState::Online => {
                let server = self.users[user as usize].server;
                self.detach(now, user);
                self.report(now, server);
            }
            UserState::Waiting => self.waiting.retain(|&u| u != user),
            UserState::Orphan | UserState::Offline => {}
        }
        self.users[user as usize].state = UserState::Offline;
        self.offline.push(user);
    }

    // ---- placement ----------------------------------------------------------------------

    fn user_cost(&self, user: u32) -> u64 {
        self.scenario
            .cluster
            .user_load(self.users[user as usize].resources)
    }

    /// Places `user` (arrival, reconnect, or waiting for a pool server).
    fn place(&mut self, now: Micros, user: u32) {
        let name = user_name(user);
        let cost = self.user_cost(user);
        self.run.counters.placements += 1;
        let was_orphan = self.users[user as usize].state == UserState::Orphan;
        match self.alloc.place(&name, cost) {
            Decision::Pool => {
                self.users[user as usize].state = UserState::Waiting;
                self.waiting.push(user);
                if !self.starting {
                    self.start_pool_server(now);
                }
            }
            Decision::NoServer => self.orphan(now, user),
            decision => {
                if matches!(decision, Decision::Overloaded(_)) {
                    self.run.counters.overloaded += 1;
                }
                let server = server_index(decision.server().expect("a server"));
                if self.servers[server].state != ServerState::Up {
                    // Sticky to a home that crashed but is not declared dead yet: the login
                    // fails, try again later.
                    self.orphan(now, user);
                    return;
                }
                self.alloc.begin(&self.servers[server].id, cost);
                self.alloc.confirm(&name, &self.servers[server].id, cost);
                if was_orphan {
                    self.run.counters.replaced += 1;
                }
                self.attach(now, user, server);
                self.report(now, server);
            }
        }
    }

    fn orphan(&mut self, now: Micros, user: u32) {
        self.users[user as usize].state = UserState::Orphan;
        let jitter = 0.5 + self.rng.gen::<f64>();
        let at = now + us(self.scenario.cluster.reconnect_s * jitter).max(1);
        self.queue.push(at, Event::Reconnect { user });
    }

    fn start_pool_server(&mut self, now: Micros) {
        let Some(id) = self.alloc.pool().first().cloned() else {
            return;
        };
        let rest = self.alloc.pool()[1..].to_vec();
        self.alloc.set_pool(rest);
        let server = server_index(&id);
        self.servers[server].state = ServerState::Starting;
        self.starting = true;
        let at = now + us(self.scenario.cluster.start_delay_s);
        self.queue.push(at, Event::ServerUp { server });
    }

    fn server_up(&mut self, now: Micros, server: usize) {
        self.starting = false;
        let s = &mut self.servers[server];
        s.state = ServerState::Up;
        s.free_at = now as f64;
        s.version = 0;
        let id = s.id.clone();
        self.alloc.add_server(&id, now / 1000);
        self.report(now, server);
        self.run.counters.joins += 1;
        self.sample(now);
        let waiting = std::mem::take(&mut self.waiting);
        for user in waiting {
            if self.users[user as usize].state == UserState::Waiting {
                self.place(now, user);
            }
        }
        if self.scenario.cluster.rebalance {
            self.rebalance(now, server);
        }
    }

    /// Moves users to `to`, which joined because every server was full (DESIGN §7).
    fn rebalance(&mut self, now: Micros, to: usize) {
        let figures: Vec<LoadFigures> = self
            .alloc
            .servers()
            .filter(|s| s.health == Health::Active && !self.alloc.is_draining(&s.id))
            .map(|s| (s.id.clone(), s.load + s.pending, s.users))
            .collect();
        let to_id = self.servers[to].id.clone();
        let plan = plan_rebalance(&figures, &to_id, self.scenario.cluster.max_load);
        for (from, count) in plan {
            let from = server_index(&from);
            for _ in 0..count {
                let Some(&user) = self.servers[from].users.last() else {
                    break;
                };
                self.move_user(now, user, to);
            }
            self.report(now, from);
        }
        self.report(now, to);
    }

    fn move_user(&mut self, now: Micros, user: u32, to: usize) {
        self.detach(now, user);
        self.alloc
            .confirm(&user_name(user), &self.servers[to].id, 0);
        self.attach(now, user, to);
        self.run.counters.moved += 1;
        if self.rate[0] > 0.0 {
            self.queue.push(now, Event::Resubscribe { user });
        }
    }

    fn attach(&mut self, now: Micros, user: u32, server: usize) {
        let resources = self.users[user as usize].resources;
        let s = &mut self.servers[server];
        let spos = s.users.len();
        s.users.push(user);
        s.stored += resources;
        let opos = self.online.len();
        self.online.push(user);
        let u = &mut self.users[user as usize];
        u.state = UserState::Online;
        u.server = server;
        u.spos = spos;
        u.opos = opos;
        self.online_changed(now);
    }

    fn detach(&mut self, now: Micros, user: u32) {
        let (server, spos, opos, resources) = {
            let u = &self.users[user as usize];
            (u.server, u.spos, u.opos, u.resources)
        };
        let s = &mut self.servers[server];
        s.users.swap_remove(spos);
        s.stored -= resources;
        if let Some(&moved) = s.users.get(spos) {
            self.users[moved as usize].spos = spos;
        }
        self.online.swap_remove(opos);
        if let Some(&moved) = self.online.get(opos) {
            self.users[moved as usize].opos = opos;
        }
        self.users[user as usize].state = UserState::Offline;
        self.online_changed(now);
    }

    fn load_of(&self, server: usize) -> (u64, u64) {
        let s = &self.servers[server];
        let c = &self.scenario.cluster;
        let users = s.users.len() as u64;
        (c.w_users * users + c.w_resources * s.stored, users)
    }

    /// `server` reports its load (a reservation's answer, or the periodic report).
    fn report(&mut self, now: Micros, server: usize) {
        if self.servers[server].state != ServerState::Up {
            return;
        }
        let (load, users) = self.load_of(server);
        let s = &mut self.servers[server];
        s.version += 1;
        self.alloc.report(&s.id, s.version, load, users, now / 1000);
    }

    fn serving(&self) -> u32 {
        self.servers
            .iter()
            .filter(|s| s.state == ServerState::Up)
            .count() as u32
    }

    fn sample(&mut self, now: Micros) {
        let servers = self.serving();
        self.run.counters.peak_servers = self.run.counters.peak_servers.max(servers);
        let waiting = self.present.len().saturating_sub(self.online.len()) as u64;
        self.run.series.push(SeriesPoint {
            t_ms: now / 1000,
            online: self.online.len() as u64,
            waiting,
            servers,
        });
    }

    fn report_all(&mut self, now: Micros) {
        for server in 0..self.servers.len() {
            self.report(now, server);
        }
        self.alloc.tick(now / 1000);
        if self.mode == Mode::Multi && self.scenario.cluster.scale_in_after_s > 0.0 {
            self.consider_scale_in(now);
        }
        self.sample(now);
        let next = now + self.scenario.cluster.report_interval_ms * 1000;
        self.queue.push(next, Event::Report);
    }

    fn consider_scale_in(&mut self, now: Micros) {
        let Some(id) = self.alloc.scale_in_candidate("primary").map(str::to_owned) else {
            self.low_since = None;
            return;
        };
        let since = *self.low_since.get_or_insert(now);
        if now - since < us(self.scenario.cluster.scale_in_after_s) {
            return;
        }
        self.low_since = None;
        let server = server_index(&id);
        self.alloc.set_draining(&id, true);
        let users = self.servers[server].users.clone();
        for user in users.into_iter().rev() {
            let cost = self.user_cost(user);
            let target = self.alloc.move_target(&user_name(user), cost, &[&id]);
            if let Some(to) = target.server().map(server_index) {
                self.move_user(now, user, to);
                self.report(now, to);
            }
        }
        self.alloc.remove_server(&id);
        self.servers[server].state = ServerState::Off;
        self.run.counters.drains += 1;
        let mut pool = self.alloc.pool().to_vec();
        pool.push(id);
        pool.sort();
        self.alloc.set_pool(pool);
        self.sample(now);
    }

    fn kill(&mut self, now: Micros, server: usize) {
        if self.servers[server].state != ServerState::Up {
            return;
        }
        let users = std::mem::take(&mut self.servers[server].users);
        self.servers[server].stored = 0;
        self.servers[server].state = ServerState::Dead;
        for &user in &users {
            let opos = self.users[user as usize].opos;
            self.online.swap_remove(opos);
            if let Some(&moved) = self.online.get(opos) {
                self.users[moved as usize].opos = opos;
            }
            self.orphan(now, user);
        }
        self.online_changed(now);
        self.sample(now);
    }

    // ---- requests -----------------------------------------------------------------------

    fn online_changed(&mut self, now: Micros) {
        for kind in 0..2 {
            if self.rate[kind] <= 0.0 {
                continue;
            }
            if self.pending[kind] && self.windowed && self.window_at(now).is_none() {
                // A resume event waits at the next window; it draws with the rate then.
                continue;
            }
            self.gen[kind] += 1;
            self.pending[kind] = false;
            self.schedule_request(now, kind);
        }
    }

    fn schedule_request(&mut self, now: Micros, kind: usize) {
        let n = self.online.len() as f64;
        if n == 0.0 || self.pending[kind] {
            return;
        }
        let rate = n * self.rate[kind];
        let gap = match self.scenario.requests.arrivals {
            Arrivals::Poisson => exponential(&mut self.rng) / rate,
            Arrivals::Periodic => 1.0 / rate,
        };
        let mut at = now + us(gap).max(1);
        let mut resume = false;
        if self.windowed && self.window_at(at).is_none() {
            match self.windows.iter().find(|w| w.from >= at) {
                Some(w) => {
                    at = w.from;
                    resume = true;
                }
                None => return,
            }
        }
        self.pending[kind] = true;
        let gen = self.gen[kind];
        self.queue.push(at, Event::Request { kind, gen, resume });
    }

    fn window_at(&self, at: Micros) -> Option<usize> {
        let i = self.windows.partition_point(|w| w.to <= at);
        self.windows.get(i).filter(|w| w.from <= at).map(|_| i)
    }

    fn request(&mut self, now: Micros, kind: usize) {
        let i = self.rng.gen_range(0..self.online.len());
        let user = self.online[i];
        let server = self.users[user as usize].server;
        self.serve(now, kind, user, server);
    }

    fn serve(&mut self, now: Micros, kind: usize, user: u32, server: usize) {
        let u = &self.users[user as usize];
        let s = &self.servers[server];
        let r = &self.scenario.requests;
        let mean = if kind == 0 {
            self.cost
                .subscribe
                .service_us(u.xmpp, u.resources, 0.0, s.stored)
        } else {
            self.cost
                .notify
                .service_us(u.xmpp, 0, r.notify_kb, s.stored)
        };
        let service = match r.service {
            Service::Deterministic => mean,
            Service::Exponential => mean * exponential(&mut self.rng),
        };
        let arrival = now as f64;
        let s = &mut self.servers[server];
        let done = s.free_at.max(arrival) + service;
        s.free_at = done;
        let sojourn = done - arrival;
        self.run.counters.requests += 1;
        if let Some(row) = self.window_at(now) {
            self.samples[row][kind].push(sojourn as f32);
        }
        if self.keep_requests {
            self.run.requests.push(RequestSample {
                at_us: now,
                kind: if kind == 0 {
                    Kind::Subscribe
                } else {
                    Kind::Notify
                },
                server: server as u32,
                sojourn_us: sojourn,
            });
        }
    }

    fn finish(mut self) -> ModeRun {
        self.run.rows.sort_by(|a, b| a.from_s.total_cmp(&b.from_s));
        self.run
    }
}

/// `-ln(U)`: a unit-mean exponential draw.
fn exponential(rng: &mut StdRng) -> f64 {
    -(1.0 - rng.gen::<f64>()).ln()
}

fn user_name(user: u32) -> String {
    format!("u{user}")
}

/// Index of server `id` (`primary` = 0, `pool-007` = 7).
fn server_index(id: &str) -> usize {
    id.strip_prefix("pool-")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Mean and p95 (nearest rank) of `samples` (sorted in place).
fn stats(samples: &mut [f32]) -> Stats {
    if samples.is_empty() {
        return Stats::default();
    }
    samples.sort_by(f32::total_cmp);
    let n = samples.len();
    let mean = samples.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
    Stats {
        count: n as u64,
        mean_us: mean,
        p95_us: f64::from(samples[rank - 1]),
    }
}

/// The population segments and measuring windows of a scenario.
fn plan(scenario: &Scenario) -> (Vec<Segment>, Vec<Window>) {
    let u = &scenario.users;
    let mut segments = Vec::new();
    let mut windows = Vec::new();
    if !u.steps.is_empty() {
        let mut prev = 0;
        for (i, &count) in u.steps.iter().enumerate() {
            let t0 = us(i as f64 * u.step_s);
            segments.push(Segment {
                t0,
                t1: t0 + us(u.arrival_s),
                from: prev,
                to: count,
            });
            windows.push(Window {
                users: count,
                from: t0 + us(u.arrival_s + u.settle_s),
                to: us((i + 1) as f64 * u.step_s),
            });
            prev = count;
        }
    } else {
        for w in u.curve.windows(2) {
            segments.push(Segment {
                t0: us(w[0].0),
                t1: us(w[1].0),
                from: w[0].1,
                to: w[1].1,
            });
        }
        let end = u.curve.last().map_or(0.0, |p| p.0);
        let len = u.window_s.unwrap_or(u.sample_every_s);
        let mut t = 0.0;
        while t < end {
            windows.push(Window {
                users: curve_at(&u.curve, t),
                from: us(t),
                to: us((t + len).min(end)),
            });
            t += u.sample_every_s;
        }
    }
    (segments, windows)
}

/// The curve's user count at `t` (linear between points, rounded down as the arrivals are).
fn curve_at(curve: &[(f64, u64)], t: f64) -> u64 {
    for w in curve.windows(2) {
        let ((t0, n0), (t1, n1)) = (w[0], w[1]);
        if t >= t0 && t < t1 {
            let f = (t - t0) / (t1 - t0);
            return (n0 as f64 + (n1 as f64 - n0 as f64) * f).floor() as u64;
        }
    }
    curve.last().map_or(0, |p| p.1)
}

#[cfg(test)]
mod tests;
