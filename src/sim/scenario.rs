//! Scenario files of the simulator (`simulations/*.toml`, DESIGN.md §10): who arrives when,
//! what each user costs, how the cluster is set up, and which published figures to set
//! beside the result. `rendezvous replay` reads the same files, so [`Scenario::parse`],
//! [`Scenario::load`] and [`Scenario::validate`] are a stable public API.
//!
//! Parsing is strict (`deny_unknown_fields`): a misspelt key is an error naming it, not a
//! silently ignored line. Validation errors name the key at fault (`users.steps`, …).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Why a scenario file was refused; every message names the key (or the file) at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// Not TOML, or a key of the wrong type, or an unknown key.
    #[error("{0}")]
    Syntax(String),
    /// A value out of its range, or keys that do not go together.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted key path (`cluster.max_load`).
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(key: &str, message: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// How a simulated run places users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every user on one server, no `max_load` (the papers' "existing system").
    Single,
    /// The cluster policy: the real allocator, pool servers joining, rebalancing, scale-in.
    Multi,
}

impl Mode {
    /// The name used in files and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Multi => "multi",
        }
    }
}

/// Which processing time a published figure shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Mean SUBSCRIBE (registration) processing time.
    #[default]
    Subscribe,
    /// Mean NOTIFY processing time.
    Notify,
}

impl Metric {
    /// The name used in files and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Subscribe => "subscribe",
            Metric::Notify => "notify",
        }
    }
}

/// How requests of one user are spaced in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// A Poisson stream (exponential gaps): the usual open-system assumption.
    #[default]
    Poisson,
    /// Evenly spaced requests at the mean rate (no randomness from arrivals).
    Periodic,
}

/// Distribution of a request's service time around the cost model's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// Exactly the cost model's value (M/D/1-like servers).
    #[default]
    Deterministic,
    /// Exponential with the cost model's value as its mean (M/M/1-like servers).
    Exponential,
}

/// One scenario file. See `simulations/README.md` for every key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (the file stem by convention); names the output files.
    pub name: String,
    /// One line saying what the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Seed of the run's random numbers (overridden by `--seed`).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The cost profile used unless `--profile` says otherwise: `paper`, `calibrated`, or a
    /// file path (relative to the scenario file).
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Modes to run and compare.
    #[serde(default = "default_modes")]
    pub modes: Vec<Mode>,
    /// Who arrives when.
    pub users: Users,
    /// What each user asks for.
    #[serde(default)]
    pub requests: Requests,
    /// The cluster policy of the `multi` mode.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// Servers that die during the run (`multi` mode).
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// The published figures to compare with.
    #[serde(default)]
    pub published: Option<Published>,
}

fn default_seed() -> u64 {
    1
}
fn default_profile() -> String {
    "calibrated".to_owned()
}
fn default_modes() -> Vec<Mode> {
    vec![Mode::Single, Mode::Multi]
}

/// User arrival: either `steps` (user counts held in turn) or `curve` (online users over
/// time, piecewise linear). Exactly one of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// User counts, increasing or not; each is reached and then held for `step_s`.
    #[serde(default)]
    pub steps: Vec<u64>,
    /// How long each step holds (s).
    #[serde(default = "default_step_s")]
    pub step_s: f64,
    /// The users a step adds arrive spread evenly over this many seconds.
    #[serde(default = "default_arrival_s")]
    pub arrival_s: f64,
    /// Requests of a step are measured only after this many seconds into it (the pool
    /// servers started, rebalancing done).
    #[serde(default = "default_settle_s")]
    pub settle_s: f64,
    /// `[[t_s, users], ...]`: online users at time `t_s`, linear in between; starts at 0 s.
    #[serde(default)]
    pub curve: Vec<(f64, u64)>,
    /// With a curve: a table row every this many seconds.
    #[serde(default = "default_sample_every_s")]
    pub sample_every_s: f64,
    /// With a curve: requests are simulated in a window of this many seconds at the start of
    /// every sample period (arrivals and departures are always simulated), which keeps
    /// day-long runs of a million users short.
    #[serde(default)]
    pub window_s: Option<f64>,
    /// Share of XMPP users (the rest are SIP users), 0..=1.
    #[serde(default = "default_xmpp_share")]
    pub xmpp_share: f64,
    /// Presence resources per user (watched presentities, DESIGN §4).
    #[serde(default = "default_resources")]
    pub resources: u64,
}

fn default_step_s() -> f64 {
    60.0
}
fn default_arrival_s() -> f64 {
    5.0
}
fn default_settle_s() -> f64 {
    20.0
}
fn default_sample_every_s() -> f64 {
    3600.0
}
fn default_xmpp_share() -> f64 {
    0.5
}
fn default_resources() -> u64 {
    20
}

/// Request rates and sizes, per online user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requests {
    /// SUBSCRIBE (presence registration) requests per second per user.
    #[serde(default = "default_subscribe_per_s")]
    pub subscribe_per_s: f64,
    /// NOTIFYs handled per second per user.
    #[serde(default)]
    pub notify_per_s: f64,
    /// Size of one notification (KB).
    #[serde(default = "default_notify_kb")]
    pub notify_kb: f64,
    /// How one user's requests are spaced.
    #[serde(default)]
    pub arrivals: Arrivals,
    /// Service time distribution.
    #[serde(default)]
    pub service: Service,
}

fn default_subscribe_per_s() -> f64 {
    1.0
}
fn default_notify_kb() -> f64 {
    1.0
}

impl Default for Requests {
    fn default() -> Self {
        Requests {
            subscribe_per_s: default_subscribe_per_s(),
            notify_per_s: 0.0,
            notify_kb: default_notify_kb(),
            arrivals: Arrivals::default(),
            service: Service::default(),
        }
    }
}

/// The cluster policy (`[cluster]` of `cluster.toml`, DESIGN §4 and §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// A server is full when its load would pass this.
    #[serde(default = "default_max_load")]
    pub max_load: u64,
    /// Below this mean load (for `scale_in_after_s`) the cluster shrinks.
    #[serde(default = "default_min_load")]
    pub min_load: u64,
    /// Load per user.
    #[serde(default = "default_weight")]
    pub w_users: u64,
    /// Load per presence resource.
    #[serde(default = "default_weight")]
    pub w_resources: u64,
    /// Pool servers that may join (besides the primary).
    #[serde(default = "default_pool")]
    pub pool: u32,
    /// A pool server serves users this long after the allocator asked for it (s).
    #[serde(default = "default_start_delay_s")]
    pub start_delay_s: f64,
    /// Load reports every this many ms (liveness, DESIGN §5).
    #[serde(default = "default_report_interval_ms")]
    pub report_interval_ms: u64,
    /// A silent server is dead after this many ms.
    #[serde(default = "default_dead_after_ms")]
    pub dead_after_ms: u64,
    /// Mean load below `min_load` this long drains a server (s); 0 disables scale-in.
    #[serde(default)]
    pub scale_in_after_s: f64,
    /// Move users to a pool server that joined because all were full.
    #[serde(default = "default_true")]
    pub rebalance: bool,
    /// Users of a dead server try to log in again every this many seconds.
    #[serde(default = "default_reconnect_s")]
    pub reconnect_s: f64,
}

fn default_max_load() -> u64 {
    100
}
fn default_min_load() -> u64 {
    20
}
fn default_weight() -> u64 {
    1
}
fn default_pool() -> u32 {
    9
}
fn default_start_delay_s() -> f64 {
    2.0
}
fn default_report_interval_ms() -> u64 {
    1_000
}
fn default_dead_after_ms() -> u64 {
    10_000
}
fn default_true() -> bool {
    true
}
fn default_reconnect_s() -> f64 {
    1.0
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            max_load: default_max_load(),
            min_load: default_min_load(),
            w_users: default_weight(),
            w_resources: default_weight(),
            pool: default_pool(),
            start_delay_s: default_start_delay_s(),
            report_interval_ms: default_report_interval_ms(),
            dead_after_ms: default_dead_after_ms(),
            scale_in_after_s: 0.0,
            rebalance: true,
            reconnect_s: default_reconnect_s(),
        }
    }
}

impl ClusterSpec {
    /// The allocator load of one user with `resources` presence resources (DESIGN §4).
    pub fn user_load(&self, resources: u64) -> u64 {
        self.w_users + self.w_resources * resources
    }
}

/// A server that stops (crashes) at a given time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// When (s from the start).
    pub at_s: f64,
    /// Which server: `primary` or a pool id `pool-001`, `pool-002`, …
    pub server: String,
}

/// Figures a paper published: the reduction of the mean processing time, multi vs single.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    /// Where they come from (paper and figure).
    #[serde(default)]
    pub source: String,
    /// Which processing time the figure shows.
    #[serde(default)]
    pub metric: Metric,
    /// `[[users, reduction_percent], ...]`.
    pub reductions: Vec<(u64, f64)>,
}

impl Scenario {
    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario =
            toml::from_str(text).map_err(|e| ScenarioError::Syntax(e.to_string()))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads, parses and validates a scenario file; errors carry the path.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Scenario::parse(&text).map_err(|e| match e {
            ScenarioError::Syntax(m) => ScenarioError::Syntax(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Checks ranges and combinations; the error names the key.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let u = &self.users;
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        if self.name.contains(['/', '\\']) {
            return Err(invalid("name", "must not contain a path separator"));
        }
        if self.modes.is_empty() {
            return Err(invalid("modes", "name at least one of single, multi"));
        }
        match (u.steps.is_empty(), u.curve.is_empty()) {
            (true, true) => return Err(invalid("users", "give users.steps or users.curve")),
            (false, false) => {
                return Err(invalid(
                    "users.curve",
                    "give users.steps or users.curve, not both",
                ))
            }
            _ => {}
        }
        if u.steps.contains(&0) {
            return Err(invalid("users.steps", "every step must be at least 1 user"));
        }
        positive("users.step_s", u.step_s)?;
        non_negative("users.arrival_s", u.arrival_s)?;
        non_negative("users.settle_s", u.settle_s)?;
        if !u.steps.is_empty() && u.settle_s + u.arrival_s >= u.step_s {
            return Err(invalid(
                "users.settle_s",
                "users.arrival_s + users.settle_s must be shorter than users.step_s",
            ));
        }
        if !u.curve.is_empty() {
            if u.curve.len() < 2 {
                return Err(invalid("users.curve", "needs at least two points"));
            }
            if u.curve[0].0 != 0.0 {
                return Err(invalid("users.curve", "the first point must be at 0 s"));
            }
            if u.curve
                .windows(2)
                .any(|w| w[1].0 <= w[0].0 || !w[1].0.is_finite())
            {
                return Err(invalid("users.curve", "times must increase"));
            }
        }
        positive("users.sample_every_s", u.sample_every_s)?;
        if let Some(w) = u.window_s {
            positive("users.window_s", w)?;
            if w > u.sample_every_s {
                return Err(invalid(
                    "users.window_s",
                    "must not be longer than users.sample_every_s",
                ));
            }
        }
        if !(0.0..=1.0).contains(&u.xmpp_share) {
            return Err(invalid("users.xmpp_share", "must be between 0 and 1"));
        }
        let r = &self.requests;
        non_negative("requests.subscribe_per_s", r.subscribe_per_s)?;
        non_negative("requests.notify_per_s", r.notify_per_s)?;
        non_negative("requests.notify_kb", r.notify_kb)?;
        if r.subscribe_per_s + r.notify_per_s <= 0.0 {
            return Err(invalid(
                "requests.subscribe_per_s",
                "no requests at all (subscribe_per_s and notify_per_s are 0)",
            ));
        }
        let c = &self.cluster;
        if c.max_load == 0 {
            return Err(invalid("cluster.max_load", "must be at least 1"));
        }
        if c.min_load >= c.max_load {
            return Err(invalid(
                "cluster.min_load",
                "must be below cluster.max_load",
            ));
        }
        if c.w_users + c.w_resources == 0 {
            return Err(invalid("cluster.w_users", "a user must have some load"));
        }
        if c.pool > 999 {
            return Err(invalid("cluster.pool", "at most 999 pool servers"));
        }
        non_negative("cluster.start_delay_s", c.start_delay_s)?;
        if c.report_interval_ms == 0 {
            return Err(invalid("cluster.report_interval_ms", "must be at least 1"));
        }
        if c.dead_after_ms <= c.report_interval_ms {
            return Err(invalid(
                "cluster.dead_after_ms",
                "must be longer than cluster.report_interval_ms",
            ));
        }
        non_negative("cluster.scale_in_after_s", c.scale_in_after_s)?;
        positive("cluster.reconnect_s", c.reconnect_s)?;
        for (i, f) in self.failures.iter().enumerate() {
            let key = format!("failures[{i}]");
            non_negative(&format!("{key}.at_s"), f.at_s)?;
            if !server_names(c.pool).any(|s| s == f.server) {
                return Err(invalid(
                    &format!("{key}.server"),
                    format!(
                        "no server {:?} (primary, pool-001 … pool-{:03})",
                        f.server, c.pool
                    ),
                ));
            }
        }
        if let Some(p) = &self.published {
            if p.reductions.is_empty() {
                return Err(invalid("published.reductions", "must not be empty"));
            }
            if p.reductions
                .iter()
                .any(|&(_, r)| !(-100.0..=100.0).contains(&r))
            {
                return Err(invalid("published.reductions", "percentages in -100..=100"));
            }
        }
        Ok(())
    }

    /// When the run ends (s).
    pub fn duration_s(&self) -> f64 {
        if self.users.steps.is_empty() {
            self.users.curve.last().map_or(0.0, |p| p.0)
        } else {
            self.users.steps.len() as f64 * self.users.step_s
        }
    }
}

/// Server ids of a cluster with `pool` pool servers: `primary`, `pool-01`, …, in id order.
pub fn server_names(pool: u32) -> impl Iterator<Item = String> {
    std::iter::once("primary".to_owned()).chain((1..=pool).map(pool_name))
}

/// The id of pool server `i` (1-based), zero-padded so that id order is join order.
pub fn pool_name(i: u32) -> String {
    format!("pool-{i:03}")
}

fn positive(key: &str, v: f64) -> Result<(), ScenarioError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(key, "must be a positive number"))
    }
}

fn non_negative(key: &str, v: f64) -> Result<(), ScenarioError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(invalid(key, "must be a number >= 0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
[users]
steps = [10, 20]
"#;

    fn key_of(text: &str) -> String {
        match Scenario::parse(text) {
            Err(ScenarioError::Invalid { key, .. }) => key,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn minimal_scenario_gets_defaults() {
        let s = Scenario::parse(MINIMAL).unwrap();
        assert_eq!(s.modes, [Mode::Single, Mode::Multi]);
        assert_eq!(s.cluster.max_load, 100);
        assert_eq!(s.users.resources, 20);
        assert_eq!(s.profile, "calibrated");
        assert_eq!(s.duration_s(), 120.0);
        assert_eq!(s.cluster.user_load(20), 21);
    }

    #[test]
    fn validation_errors_name_the_key() {
        let cases = [
            ("name = \"t\"\n[users]\n", "users"),
            ("name = \"\"\n[users]\nsteps=[1]\n", "name"),
            ("name = \"t\"\nmodes = []\n[users]\nsteps=[1]\n", "modes"),
            ("name = \"t\"\n[users]\nsteps=[0]\n", "users.steps"),
            (
                "name = \"t\"\n[users]\nsteps=[1]\ncurve=[[0.0,1],[1.0,2]]\n",
                "users.curve",
            ),
            (
                "name = \"t\"\n[users]\ncurve=[[1.0,1],[2.0,2]]\n",
                "users.curve",
            ),
            (
                "name = \"t\"\n[users]\nsteps=[1]\nxmpp_share=1.5\n",
                "users.xmpp_share",
            ),
            (
                "name = \"t\"\n[users]\nsteps=[1]\nstep_s=10.0\nsettle_s=9.0\n",
                "users.settle_s",
            ),
            (
                "name = \"t\"\n[users]\nsteps=[1]\n[cluster]\nmax_load=10\nmin_load=10\n",
                "cluster.min_load",
            ),
            (
                "name = \"t\"\n[users]\nsteps=[1]\n[cluster]\nmax_load=0\n",
                "cluster.max_load",
            ),
            (
                "name = \"t\"\n[users]\nsteps=[1]\n[requests]\nsubscribe_per_s=-1.0\n",
                "requests.subscribe_per_s",
            ),
            (
                "name = \"t\"\n[users]\nsteps=[1]\n[[failures]]\nat_s=1.0\nserver=\"pool-077\"\n",
                "failures[0].server",
            ),
            (
                "name = \"t\"\n[users]\nsteps=[1]\n[published]\nreductions=[]\n",
                "published.reductions",
            ),
        ];
        for (text, key) in cases {
            assert_eq!(key_of(text), key, "{text}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_types_are_syntax_errors_naming_the_key() {
        let e = Scenario::parse("name = \"t\"\n[users]\nsteps=[1]\nresourses=3\n").unwrap_err();
        assert!(
            matches!(&e, ScenarioError::Syntax(m) if m.contains("resourses")),
            "{e}"
        );
        let e = Scenario::parse("name = \"t\"\n[users]\nsteps=\"many\"\n").unwrap_err();
        assert!(
            matches!(&e, ScenarioError::Syntax(m) if m.contains("steps")),
            "{e}"
        );
    }

    #[test]
    fn server_names_sort_in_join_order() {
        let names: Vec<String> = server_names(12).collect();
        let mut sorted = names[1..].to_vec();
        sorted.sort();
        assert_eq!(sorted, names[1..]);
        assert_eq!(names[0], "primary");
        assert_eq!(names[12], "pool-012");
    }
}
