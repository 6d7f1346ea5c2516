//! The simulator's prediction of the scenario a replay plays: servers over time and the mean
//! subscribe time per step, from [`crate::sim::simulate`] (`multi` mode, the same scaling of
//! user counts, times in real seconds after compression). [`predict`] is the one place that
//! talks to the simulator, so that changes of its API stay here.

use std::path::Path;

use crate::sim::{self, CostModel, Mode, Scenario};

/// What the simulator expects of a replay.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prediction {
    /// The cost profile used (absolute latencies depend on it; compare shapes).
    pub profile: String,
    /// `(real seconds, servers serving)` at every change and report.
    pub servers: Vec<(f64, u32)>,
    /// Per window of the schedule: servers at its end, mean subscribe time (ms).
    pub steps: Vec<(u32, f64)>,
}

impl Prediction {
    /// Servers the simulator has serving at `t_s` (real seconds).
    pub fn servers_at(&self, t_s: f64) -> u32 {
        let i = self.servers.partition_point(|&(t, _)| t <= t_s);
        if i == 0 {
            self.servers.first().map_or(1, |p| p.1)
        } else {
            self.servers[i - 1].1
        }
    }
}

/// The scenario with user counts scaled like the replay's (same rounding as the schedule).
pub fn scaled_scenario(scenario: &Scenario, scale: f64) -> Scenario {
    let mut s = scenario.clone();
    s.modes = vec![Mode::Multi];
    let f = |n: u64| super::schedule::scaled(n, scale);
    s.users.steps = s.users.steps.iter().map(|&n| f(n)).collect();
    s.users.curve = s.users.curve.iter().map(|&(t, n)| (t, f(n))).collect();
    s
}

/// Simulates `scenario` scaled by `scale` and converts times with `compress`. The cost
/// profile is the scenario's (relative to `base`), or the paper's when it cannot be read.
pub fn predict(scenario: &Scenario, base: &Path, compress: f64, scale: f64) -> Prediction {
    let s = scaled_scenario(scenario, scale);
    let cost = CostModel::profile(&s.profile, base).unwrap_or_else(|_| CostModel::paper());
    let options = sim::Options {
        seed: s.seed,
        keep_requests: false,
    };
    let runs = sim::simulate(&s, &cost, &options, &mut |_| {});
    let Some(run) = runs.into_iter().find(|r| r.mode == Mode::Multi) else {
        return Prediction::default();
    };
    Prediction {
        profile: cost.name.clone(),
        servers: run
            .series
            .iter()
            .map(|p| (p.t_ms as f64 / 1000.0 / compress, p.servers))
            .collect(),
        steps: run
            .rows
            .iter()
            .map(|r| (r.servers, r.subscribe.mean_us / 1000.0))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_that_fill_servers_predict_more_servers() {
        let s = Scenario::parse(
            "name = \"t\"\nprofile = \"paper\"\n[users]\nsteps = [80, 170, 260]\nstep_s = 20.0\n\
             arrival_s = 2.0\nsettle_s = 8.0\nresources = 0\n[cluster]\nmax_load = 100\n\
             w_resources = 0\nstart_delay_s = 1.0\n",
        )
        .unwrap();
        let p = predict(&s, Path::new("."), 2.0, 1.0);
        assert_eq!(p.profile, "paper");
        assert_eq!(p.steps.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(p.servers_at(5.0), 1);
        assert_eq!(p.servers_at(29.0), 3);
        assert_eq!(scaled_scenario(&s, 0.5).users.steps, [40, 85, 130]);
    }
}
