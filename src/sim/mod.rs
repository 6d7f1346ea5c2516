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
pub mod stats;

pub use cost::CostModel;
pub use scenario::{Metric, Mode, Scenario, ScenarioError};
pub use stats::{
    Comparison, Counters, Kind, ModeRun, Options, RequestSample, Row, SeriesPoint, SimReport, Stats,
};

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
