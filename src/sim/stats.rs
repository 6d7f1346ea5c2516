//! What a simulation produces (DESIGN.md §10): the options of a run, the samples and time
//! series of each mode, the statistics per step and the comparison with the published
//! figures.

use crate::sim::scenario::{Metric, Mode, Scenario};

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
