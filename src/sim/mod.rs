//! Seeded discrete-event simulation of the presence cluster (DESIGN.md §10).
//!
//! A [`Scenario`] says who arrives when and what each user asks for; a [`CostModel`] says
//! how long a server is busy with each request. [`simulate`] runs every mode of the scenario:
//! users are placed by the real [`Allocator`](crate::cluster::allocator::Allocator) (the same
//! code the primary runs: `place`, `begin`/`confirm`, `report`, `tick`, `set_pool`,
//! `plan_rebalance`, `scale_in_candidate`), each server is one FIFO queue, and every request's
//! sojourn time (wait + service) is recorded. [`run`] condenses that into the table the papers
//! published (mean processing time per user count, multi vs single, and the reduction beside
//! the published one); [`report`] prints it and writes CSV and SVG.
//!
//! Deterministic: virtual time only, one seeded `StdRng` per mode, events ordered by (time,
//! sequence number), no hash-map iteration. Same scenario, cost model and seed → the same
//! bytes out. `rendezvous replay` uses [`simulate`] to plot the prediction beside reality.

pub mod calibrate;
pub mod command;
pub mod cost;
pub mod engine;
pub mod report;
pub mod scenario;

pub use cost::CostModel;
pub use scenario::{Metric, Mode, Scenario, ScenarioError};

/// Options of one simulation.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The seed of the random numbers (arrival gaps, service times, user protocols).
    pub seed: u64,
    /// Keep every request's [`RequestSample`] in [`ModeRun::requests`] (memory grows with the
    /// number of requests; `replay` wants them, the table does not).
    pub keep_requests: bool,
}

/// Which request a sample is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A SUBSCRIBE (presence registration).
    Subscribe,
    /// A NOTIFY.
    Notify,
}

/// One simulated request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestSample {
    /// When it was issued (µs of virtual time).
    pub at_us: u64,
    /// What it was.
    pub kind: Kind,
    /// Index of the server in [`ModeRun::servers`].
    pub server: u32,
    /// Queueing wait + service (µs).
    pub sojourn_us: f64,
}

/// The cluster at one moment (sampled at every load report and at every change of the
/// number of servers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesPoint {
    /// Virtual time (ms).
    pub t_ms: u64,
    /// Users placed on a live server.
    pub online: u64,
    /// Users waiting for a server (pool server starting, home died).
    pub waiting: u64,
    /// Servers serving users (joined, not dead, not drained).
    pub servers: u32,
}

/// Mean and 95th percentile of sojourn times.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stats {
    /// Requests measured.
    pub count: u64,
    /// Mean sojourn (µs); 0 without requests.
    pub mean_us: f64,
    /// 95th percentile (µs, nearest rank); 0 without requests.
    pub p95_us: f64,
}

/// One table row: the requests issued while `users` users were online (a step of the
/// scenario after its settle time, or a sample window of a curve).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Users online (the step's count, or the curve's value at the window's start).
    pub users: u64,
    /// Start of the measured interval (s).
    pub from_s: f64,
    /// End of the measured interval (s).
    pub to_s: f64,
    /// Servers serving at the end of the interval.
    pub servers: u32,
    /// SUBSCRIBE sojourn times.
    pub subscribe: Stats,
    /// NOTIFY sojourn times.
    pub notify: Stats,
}

/// Counters of one mode's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Requests simulated (measured or not).
    pub requests: u64,
    /// Placements asked of the allocator.
    pub placements: u64,
    /// Pool servers that joined.
    pub joins: u64,
    /// Users moved by rebalancing.
    pub moved: u64,
    /// Servers drained by scale-in.
    pub drains: u64,
    /// Users placed anew after their home died.
    pub replaced: u64,
    /// Most servers serving at once.
    pub peak_servers: u32,
    /// Placements the allocator answered `Overloaded` (no pool left).
    pub overloaded: u64,
}

/// The result of one mode.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeRun {
    /// The mode.
    pub mode: Mode,
    /// Server ids, by index (`primary`, `pool-001`, …).
    pub servers: Vec<String>,
    /// One row per step or sample window.
    pub rows: Vec<Row>,
    /// The cluster over time.
    pub series: Vec<SeriesPoint>,
    /// Every request, when [`Options::keep_requests`] was set.
    pub requests: Vec<RequestSample>,
    /// Users homed on each server (by index) at the end of every step or sample window:
    /// `(t_ms, counts)`.
    pub placement: Vec<(u64, Vec<u64>)>,
    /// Counters.
    pub counters: Counters,
}

/// One line of the comparison: multi vs single at one user count.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Users online.
    pub users: u64,
    /// Reduction of the mean subscribe time, multi vs single (%).
    pub subscribe_pct: Option<f64>,
    /// Reduction of the mean notify time, multi vs single (%).
    pub notify_pct: Option<f64>,
    /// The published reduction at this user count (of the scenario's metric), if any.
    pub published_pct: Option<f64>,
}

impl Comparison {
    /// Simulated minus published, in percentage points, for the scenario's `metric`.
    pub fn difference_pp(&self, metric: Metric) -> Option<f64> {
        let sim = match metric {
            Metric::Subscribe => self.subscribe_pct,
            Metric::Notify => self.notify_pct,
        }?;
        Some(sim - self.published_pct?)
    }
}

/// Everything one scenario produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// The scenario.
    pub scenario: Scenario,
    /// The cost profile's name.
    pub profile: String,
    /// The seed used.
    pub seed: u64,
    /// One run per mode, in the scenario's order.
    pub runs: Vec<ModeRun>,
    /// Multi vs single per user count (empty unless both modes ran).
    pub comparison: Vec<Comparison>,
}

impl SimReport {
    /// The largest |simulated − published| (pp) over the published points, if any.
    pub fn worst_difference_pp(&self) -> Option<f64> {
        let metric = self.scenario.published.as_ref()?.metric;
        self.comparison
            .iter()
            .filter_map(|c| c.difference_pp(metric))
            .map(f64::abs)
            .reduce(f64::max)
    }
}

/// Simulates every mode of `scenario` (the time series `replay` plots beside reality).
/// `progress` is called with the fraction of virtual time done, now and then.
pub fn simulate(
    scenario: &Scenario,
    cost: &CostModel,
    options: &Options,
    progress: &mut dyn FnMut(f64),
) -> Vec<ModeRun> {
    let n = scenario.modes.len() as f64;
    scenario
        .modes
        .iter()
        .enumerate()
        .map(|(i, &mode)| {
            engine::run_mode(scenario, cost, mode, options, &mut |f| {
                progress((i as f64 + f) / n)
            })
        })
        .collect()
}

/// Simulates `scenario` with `seed` and compares the modes.
pub fn run(scenario: &Scenario, cost: &CostModel, seed: u64) -> SimReport {
    run_with_progress(scenario, cost, seed, &mut |_| {})
}

/// [`run`] with a progress callback (fraction of virtual time done).
pub fn run_with_progress(
    scenario: &Scenario,
    cost: &CostModel,
    seed: u64,
    progress: &mut dyn FnMut(f64),
) -> SimReport {
    let options = Options {
        seed,
        keep_requests: false,
    };
    let runs = simulate(scenario, cost, &options, progress);
    let comparison = compare(scenario, &runs);
    SimReport {
        scenario: scenario.clone(),
        profile: cost.name.clone(),
        seed,
        runs,
        comparison,
    }
}

/// Reduction `1 - multi/single` in %, when both have requests.
fn reduction(single: &Stats, multi: &Stats) -> Option<f64> {
    (single.count > 0 && multi.count > 0 && single.mean_us > 0.0)
        .then(|| (1.0 - multi.mean_us / single.mean_us) * 100.0)
}

fn compare(scenario: &Scenario, runs: &[ModeRun]) -> Vec<Comparison> {
    let find = |m: Mode| runs.iter().find(|r| r.mode == m);
    let (Some(single), Some(multi)) = (find(Mode::Single), find(Mode::Multi)) else {
        return Vec::new();
    };
    single
        .rows
        .iter()
        .zip(&multi.rows)
        .map(|(s, m)| Comparison {
            users: s.users,
            subscribe_pct: reduction(&s.subscribe, &m.subscribe),
            notify_pct: reduction(&s.notify, &m.notify),
            published_pct: scenario.published.as_ref().and_then(|p| {
                p.reductions
                    .iter()
                    .find(|&&(u, _)| u == s.users)
                    .map(|&(_, r)| r)
            }),
        })
        .collect()
}
