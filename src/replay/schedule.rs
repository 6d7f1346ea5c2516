//! What a replay does when, in real time: a scenario's user arrivals (its `users.steps`, or
//! its `users.curve`) and request rates after time compression (`--compress F`: a scenario
//! second lasts 1/F s) and user scaling (`--scale S`: every user count × S, rounded).
//! Pure: no clock, no I/O.
//!
//! Users arrive in batches (one load-generator run each): the users a step adds are spread
//! over its compressed `arrival_s` in at most [`MAX_SUB_BATCHES`] batches. Users leave by
//! whole batches, newest first, when a step or the curve goes down (a batch cannot shrink).
//! The XMPP/SIP split follows `users.xmpp_share` on the running total, so the whole run has
//! exactly `round(total × xmpp_share)` XMPP users.

use std::time::Duration;

use crate::sim::Scenario;

/// Most batches one step's arrivals are split into.
pub const MAX_SUB_BATCHES: u64 = 10;
/// A batch holds at least this many users (fewer only when the step adds fewer).
pub const MIN_BATCH: u64 = 4;
/// Most batches of a whole replay (a bound on tasks and on the schedule's size).
pub const MAX_BATCHES: usize = 5_000;
/// Most virtual users of a replay (the load generator's bound).
pub const MAX_USERS: u64 = crate::loadgen::options::MAX_USERS as u64;
/// Longest replay, real seconds (one day).
pub const MAX_REAL_S: f64 = 86_400.0;
/// A curve is followed in steps of at most this many real seconds.
pub const CURVE_TICK_S: f64 = 1.0;
/// Most measurement windows (steps, or curve sample periods).
pub const MAX_WINDOWS: usize = 10_000;

/// Why a scenario cannot be replayed with these options (exit status 2).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    /// `--compress` or `--scale` out of range.
    #[error("{0}")]
    BadOption(String),
    /// The scaled, compressed scenario exceeds a bound.
    #[error("{0}")]
    TooLarge(String),
}

/// A group of users that arrive together and leave together.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// When they start logging in (real time from the start of the replay).
    pub at: Duration,
    /// When they log out (`None`: at the end).
    pub leave_at: Option<Duration>,
    /// Index of the first user (users `first .. first + users`).
    pub first: u64,
    /// XMPP users (the first ones of the batch).
    pub xmpp: u64,
    /// SIP users (the rest).
    pub sip: u64,
}

impl Batch {
    /// Users of the batch.
    pub fn users(&self) -> u64 {
        self.xmpp + self.sip
    }
}

/// One measurement window: a step of the scenario (after its settle time), or a sample
/// period of a curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Users online the window is about (scaled).
    pub users: u64,
    /// Start of the step (real).
    pub start: Duration,
    /// Requests are measured from here (after the compressed `settle_s`).
    pub measure_from: Duration,
    /// End of the window (real).
    pub end: Duration,
}

/// The whole plan of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Time compression factor.
    pub compress: f64,
    /// User scale factor.
    pub scale: f64,
    /// Every batch, by arrival time.
    pub batches: Vec<Batch>,
    /// Measurement windows, in time order.
    pub windows: Vec<Window>,
    /// Length of the replay (real).
    pub duration: Duration,
    /// SUBSCRIBEs per second per online user (real time: the scenario's rate × F).
    pub subscribe_per_user_s: f64,
}

impl Schedule {
    /// Most users online at once.
    pub fn peak_users(&self) -> u64 {
        let mut events: Vec<(Duration, i64)> = Vec::new();
        for b in &self.batches {
            events.push((b.at, b.users() as i64));
            if let Some(l) = b.leave_at {
                events.push((l, -(b.users() as i64)));
            }
        }
        events.sort_by_key(|&(t, d)| (t, d));
        let (mut now, mut peak) = (0i64, 0i64);
        for (_, d) in events {
            now += d;
            peak = peak.max(now);
        }
        peak as u64
    }

    /// Users whose batch has arrived and not left at `t` (the plan, not who is logged in).
    pub fn planned_users(&self, t: Duration) -> u64 {
        self.batches
            .iter()
            .filter(|b| b.at <= t && b.leave_at.is_none_or(|l| l > t))
            .map(Batch::users)
            .sum()
    }

    /// Total users (accounts) the replay needs.
    pub fn total_users(&self) -> u64 {
        self.batches.iter().map(Batch::users).sum()
    }
}

/// `x` scenario seconds in real time.
fn real(scenario_s: f64, compress: f64) -> Duration {
    Duration::from_secs_f64((scenario_s / compress).max(0.0))
}

/// The scaled user count (at least 1 for a non-zero count, so that a step stays a step).
pub fn scaled(users: u64, scale: f64) -> u64 {
    let v = (users as f64 * scale).round() as u64;
    if users > 0 {
        v.max(1)
    } else {
        0
    }
}

/// Plans the replay of `scenario` at `compress` and `scale`.
pub fn plan(scenario: &Scenario, compress: f64, scale: f64) -> Result<Schedule, ScheduleError> {
    if !(compress.is_finite() && (0.001..=1_000_000.0).contains(&compress)) {
        return Err(ScheduleError::BadOption(format!(
            "--compress {compress}: must be 0.001 ..= 1000000"
        )));
    }
    if !(scale.is_finite() && scale > 0.0 && scale <= 1000.0) {
        return Err(ScheduleError::BadOption(format!(
            "--scale {scale}: must be > 0 and <= 1000"
        )));
    }
    let real_s = scenario.duration_s() / compress;
    if real_s > MAX_REAL_S {
        return Err(ScheduleError::TooLarge(format!(
            "the replay would last {real_s:.0} s: more than {MAX_REAL_S:.0} s (raise --compress)"
        )));
    }
    let u = &scenario.users;
    // Targets over time: (when, users wanted, spread over, window or not).
    let mut targets: Vec<(f64, u64, f64)> = Vec::new();
    let mut windows = Vec::new();
    if !u.steps.is_empty() {
        for (i, &n) in u.steps.iter().enumerate() {
            let start = i as f64 * u.step_s;
            targets.push((start, scaled(n, scale), u.arrival_s));
            windows.push(Window {
                users: scaled(n, scale),
                start: real(start, compress),
                measure_from: real(start + u.arrival_s + u.settle_s, compress),
                end: real(start + u.step_s, compress),
            });
        }
    } else {
        let end = scenario.duration_s();
        let tick = (CURVE_TICK_S * compress).max(end / MAX_BATCHES as f64);
        let ticks = (end / tick).ceil() as u64;
        for k in 0..=ticks {
            let t = (k as f64 * tick).min(end);
            targets.push((t, scaled(curve_at(&u.curve, t), scale), 0.0));
        }
        let every = u.sample_every_s.max(end / MAX_WINDOWS as f64);
        let n = (end / every).ceil() as u64;
        for k in 0..n {
            let from = k as f64 * every;
            let to = ((k + 1) as f64 * every).min(end);
            windows.push(Window {
                users: scaled(curve_at(&u.curve, from), scale),
                start: real(from, compress),
                measure_from: real(from, compress),
                end: real(to, compress),
            });
        }
    }
    let mut batches: Vec<Batch> = Vec::new();
    let mut online: Vec<usize> = Vec::new(); // indices of batches online, oldest first
    let mut current = 0u64;
    let mut total = 0u64;
    let mut total_xmpp = 0u64;
    for (at, want, spread) in targets {
        if want > current {
            let add = want - current;
            let parts = (add / MIN_BATCH).clamp(1, MAX_SUB_BATCHES);
            for p in 0..parts {
                let n = add * (p + 1) / parts - add * p / parts;
                if n == 0 {
                    continue;
                }
                let when = at + spread * p as f64 / parts as f64;
                let xmpp_after = ((total + n) as f64 * u.xmpp_share).round() as u64;
                let xmpp = xmpp_after.saturating_sub(total_xmpp).min(n);
                batches.push(Batch {
                    at: real(when, compress),
                    leave_at: None,
                    first: total + 1,
                    xmpp,
                    sip: n - xmpp,
                });
                online.push(batches.len() - 1);
                total += n;
                total_xmpp += xmpp;
                if batches.len() > MAX_BATCHES {
                    return Err(ScheduleError::TooLarge(format!(
                        "more than {MAX_BATCHES} arrival batches"
                    )));
                }
                if total > MAX_USERS {
                    return Err(ScheduleError::TooLarge(format!(
                        "more than {MAX_USERS} users in all (lower --scale)"
                    )));
                }
            }
            current = want;
        } else {
            // Whole batches leave, newest first, while the rest still covers `want`.
            while let Some(&last) = online.last() {
                let n = batches[last].users();
                if current - n < want {
                    break;
                }
                batches[last].leave_at = Some(real(at, compress));
                current -= n;
                online.pop();
            }
        }
    }
    Ok(Schedule {
        compress,
        scale,
        batches,
        windows,
        duration: real(scenario.duration_s(), compress),
        subscribe_per_user_s: scenario.requests.subscribe_per_s * compress,
    })
}

/// Users of a piecewise-linear curve at `t` (held after its last point).
fn curve_at(curve: &[(f64, u64)], t: f64) -> u64 {
    for w in curve.windows(2) {
        let ((t0, u0), (t1, u1)) = (w[0], w[1]);
        if t >= t0 && t <= t1 {
            let f = (t - t0) / (t1 - t0);
            return (u0 as f64 + (u1 as f64 - u0 as f64) * f).round() as u64;
        }
    }
    curve.last().map_or(0, |p| p.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(text: &str) -> Scenario {
        Scenario::parse(&format!("name = \"t\"\n{text}")).unwrap()
    }

    #[test]
    fn compression_divides_every_time_exactly() {
        let s = steps(
            "[users]\nsteps = [100, 200, 300]\nstep_s = 30.0\narrival_s = 3.0\nsettle_s = 6.0\n\
             [requests]\nsubscribe_per_s = 0.5\n",
        );
        let p = plan(&s, 3.0, 1.0).unwrap();
        assert_eq!(p.duration, Duration::from_secs(30));
        assert_eq!(p.windows.len(), 3);
        assert_eq!(p.windows[1].start, Duration::from_secs(10));
        assert_eq!(p.windows[1].measure_from, Duration::from_secs(13));
        assert_eq!(p.windows[2].end, Duration::from_secs(30));
        assert_eq!(p.subscribe_per_user_s, 1.5);
        // Every step adds 100 users over 1 s (3 s compressed), in 10 batches of 10.
        assert_eq!(p.batches.len(), 30);
        assert!(p.batches.iter().all(|b| b.users() == 10));
        let step2: Vec<_> = p.batches[10..20].iter().map(|b| b.at).collect();
        assert_eq!(step2[0], Duration::from_secs(10));
        assert!(step2[9].abs_diff(Duration::from_secs_f64(10.9)) < Duration::from_micros(1));
        assert_eq!(p.total_users(), 300);
        assert_eq!(p.peak_users(), 300);
        assert_eq!(p.planned_users(Duration::from_secs(15)), 200);
    }

    #[test]
    fn scaling_rounds_counts_and_keeps_the_protocol_mix_exact() {
        let s = steps("[users]\nsteps = [1000, 3000, 50]\nxmpp_share = 0.3\n");
        let p = plan(&s, 1.0, 0.01).unwrap();
        assert_eq!(
            p.windows.iter().map(|w| w.users).collect::<Vec<_>>(),
            [10, 30, 1]
        );
        assert_eq!(p.total_users(), 30);
        let xmpp: u64 = p.batches.iter().map(|b| b.xmpp).sum();
        assert_eq!(xmpp, 9); // round(30 × 0.3)
                             // Users are numbered without gaps or overlaps.
        let mut next = 1;
        for b in &p.batches {
            assert_eq!(b.first, next);
            next += b.users();
        }
        // The drop to 1 user: every batch but the first leaves at 120 s (scenario = real).
        let left: Vec<_> = p.batches.iter().filter(|b| b.leave_at.is_some()).collect();
        assert_eq!(left.len(), p.batches.len() - 1);
        assert!(left
            .iter()
            .all(|b| b.leave_at == Some(Duration::from_secs(120))));
        assert_eq!(
            p.planned_users(Duration::from_secs(130)),
            p.batches[0].users()
        );
        assert_eq!(scaled(1, 0.001), 1);
        assert_eq!(scaled(0, 5.0), 0);
    }

    #[test]
    fn curves_are_followed_in_bounded_ticks() {
        let s = steps(
            "[users]\ncurve = [[0.0, 0], [100.0, 1000], [200.0, 0]]\nsample_every_s = 50.0\n",
        );
        let p = plan(&s, 10.0, 1.0).unwrap();
        assert_eq!(p.duration, Duration::from_secs(20));
        assert_eq!(p.windows.len(), 4);
        assert_eq!(p.windows[1].users, 500);
        assert_eq!(p.peak_users(), 1000);
        assert!(p.batches.len() <= MAX_BATCHES);
        // On the way down users leave: at the end nobody is planned online.
        assert_eq!(p.planned_users(Duration::from_secs(20)), 0);
    }

    #[test]
    fn bad_factors_and_huge_runs_are_refused() {
        let s = steps("[users]\nsteps = [10]\nstep_s = 100.0\n");
        assert!(matches!(
            plan(&s, 0.0, 1.0),
            Err(ScheduleError::BadOption(_))
        ));
        assert!(matches!(
            plan(&s, f64::NAN, 1.0),
            Err(ScheduleError::BadOption(_))
        ));
        assert!(matches!(
            plan(&s, 1.0, -1.0),
            Err(ScheduleError::BadOption(_))
        ));
        assert!(matches!(
            plan(&s, 0.001, 1.0),
            Err(ScheduleError::TooLarge(_))
        ));
        let big = steps("[users]\nsteps = [900000]\n");
        assert!(matches!(
            plan(&big, 1.0, 2.0),
            Err(ScheduleError::TooLarge(_))
        ));
    }
}
