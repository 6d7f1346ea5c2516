//! What a replay writes: the time series as CSV (`<name>.csv`), the steps as CSV
//! (`<name>-steps.csv`), an SVG chart of both beside the simulator's prediction
//! (`<name>.svg`, hand-written SVG), the JSON summary (`--json`) and the one-line summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::poller::Samples;
use super::predict::Prediction;
use super::schedule::Schedule;
use crate::loadgen::stats::{Counts, LatencySummary};
use crate::sim::Scenario;

/// One row of the time series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeRow {
    /// Real seconds since the start.
    pub t_s: f64,
    /// Users the schedule has online.
    pub users_planned: u64,
    /// Users logged in (XMPP bound, SIP initial PUBLISH answered).
    pub users_online: u64,
    /// Servers active (admin API, last sample).
    pub servers_active: u32,
    /// Servers the simulator has serving.
    pub servers_predicted: u32,
    /// SUBSCRIBEs answered so far.
    pub subscribes_ok: u64,
    /// Errors counted so far.
    pub errors: u64,
}

/// One step (or curve sample period).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// Users of the step (scaled).
    pub users: u64,
    /// Start (real s).
    pub start_s: f64,
    /// End (real s).
    pub end_s: f64,
    /// Servers active at the end of the step (admin API).
    pub servers_observed: u32,
    /// Servers the simulator has at the end of the step.
    pub servers_predicted: u32,
    /// The simulator's mean subscribe time of the step (ms, cost model).
    pub predicted_mean_ms: f64,
    /// SUBSCRIBE latency after the step's settle time.
    pub latency: LatencySummary,
}

/// Counters of the whole replay.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Counters {
    /// Users logged in (XMPP) or set up (SIP).
    pub logins_ok: u64,
    /// Logins that failed.
    pub logins_failed: u64,
    /// Redirects followed (see-other-host, cxfr, SIP 3xx).
    pub redirects: u64,
    /// SUBSCRIBEs (SIP) and roster subscriptions (XMPP) started.
    pub subscribes_sent: u64,
    /// Answered.
    pub subscribes_ok: u64,
    /// Failed or unanswered.
    pub subscribes_failed: u64,
}

/// Load seen on one server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerLoad {
    /// Highest load level sampled.
    pub max_seen: u64,
    /// Whether it passed `max_load`.
    pub over: bool,
}

/// The JSON summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Time compression.
    pub compress: f64,
    /// User scale.
    pub scale: f64,
    /// Planned length (real s).
    pub duration_s: f64,
    /// Wall time of the whole command (s).
    pub wall_s: f64,
    /// Most users the schedule has online at once.
    pub peak_users: u64,
    /// Most users seen logged in at once.
    pub peak_online: u64,
    /// Counters.
    pub counters: Counters,
    /// SUBSCRIBE latency over the whole run.
    pub subscribe_latency: LatencySummary,
    /// p99 of it (ms), for scripts.
    pub p99_subscribe_ms: f64,
    /// The scenario's `cluster.max_load`.
    pub max_load: u64,
    /// `max_load` the admin API reports (the live cluster's configuration).
    pub cluster_max_load: Option<u64>,
    /// Per server: highest load sampled.
    pub servers: BTreeMap<String, ServerLoad>,
    /// Whether any server passed `max_load`.
    pub overloaded: bool,
    /// Most servers active at once.
    pub peak_servers: u32,
    /// `(real s, servers active)` at every change seen.
    pub servers_active: Vec<(f64, u32)>,
    /// Admin API samples taken and failed.
    pub admin_samples: u64,
    /// Admin API requests that failed.
    pub admin_failed: u64,
    /// Per step.
    pub steps: Vec<StepReport>,
    /// Steps whose observed server count differs from the prediction.
    pub steps_mismatched: u64,
    /// The cost profile of the prediction.
    pub profile: String,
    /// Failures by kind (logins, requests, batches).
    pub failures: Counts,
    /// Sum of `failures`.
    pub failures_total: u64,
    /// Ctrl-C ended the run early.
    pub interrupted: bool,
    /// The time series.
    #[serde(skip)]
    pub rows: Vec<TimeRow>,
    /// The prediction's servers over time (real s).
    #[serde(skip)]
    pub predicted_servers: Vec<(f64, u32)>,
}

impl Report {
    /// Builds the report from what the run measured.
    pub fn build(
        scenario: &Scenario,
        plan: &Schedule,
        measured: Measured,
        samples: Samples,
        wall_s: f64,
    ) -> Report {
        let max_load = scenario.cluster.max_load;
        let servers: BTreeMap<String, ServerLoad> = samples
            .max_load_seen()
            .into_iter()
            .map(|(id, m)| {
                (
                    id,
                    ServerLoad {
                        max_seen: m,
                        over: m > max_load,
                    },
                )
            })
            .collect();
        let mut changes: Vec<(f64, u32)> = Vec::new();
        for s in &samples.samples {
            if changes.last().is_none_or(|c| c.1 != s.active) {
                changes.push((s.t.as_secs_f64(), s.active));
            }
        }
        Report {
            scenario: scenario.name.clone(),
            compress: plan.compress,
            scale: plan.scale,
            duration_s: plan.duration.as_secs_f64(),
            wall_s,
            peak_users: plan.peak_users(),
            peak_online: measured
                .rows
                .iter()
                .map(|r| r.users_online)
                .max()
                .unwrap_or(0),
            counters: measured.counters,
            p99_subscribe_ms: measured.latency.p99_ms,
            subscribe_latency: measured.latency,
            max_load,
            cluster_max_load: samples.max_load(),
            overloaded: servers.values().any(|s| s.over),
            servers,
            peak_servers: samples.samples.iter().map(|s| s.active).max().unwrap_or(0),
            servers_active: changes,
            admin_samples: samples.samples.len() as u64,
            admin_failed: samples.failed,
            steps: measured.steps,
            steps_mismatched: 0,
            profile: String::new(),
            failures_total: measured.failures.total(),
            failures: measured.failures,
            interrupted: measured.interrupted,
            rows: measured.rows,
            predicted_servers: Vec::new(),
        }
    }

    /// Sets the simulator's figures beside the measured ones.
    pub fn set_prediction(&mut self, p: &Prediction) {
        self.profile = p.profile.clone();
        for (i, s) in self.steps.iter_mut().enumerate() {
            if let Some(&(servers, mean_ms)) = p.steps.get(i) {
                s.servers_predicted = servers;
                s.predicted_mean_ms = mean_ms;
            }
        }
        self.steps_mismatched = self
            .steps
            .iter()
            .filter(|s| s.servers_observed != s.servers_predicted)
            .count() as u64;
        for r in &mut self.rows {
            r.servers_predicted = p.servers_at(r.t_s);
        }
        self.predicted_servers = p.servers.clone();
    }

    /// The one-line summary.
    pub fn line(&self) -> String {
        let l = &self.subscribe_latency;
        let c = &self.counters;
        format!(
            "replay {}: {} users (peak online {}), {:.1} s, {} subscribes ({} failed), \
             p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; servers {} (peak), steps matching \
             the prediction {}/{}; max load {} of {}{}; failures {}",
            self.scenario,
            self.peak_users,
            self.peak_online,
            self.duration_s,
            c.subscribes_ok,
            c.subscribes_failed,
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            self.peak_servers,
            self.steps.len() as u64 - self.steps_mismatched,
            self.steps.len(),
            self.servers.values().map(|s| s.max_seen).max().unwrap_or(0),
            self.max_load,
            if self.overloaded { " (OVER)" } else { "" },
            self.failures_total
        )
    }
}

/// What the run measured (input of [`Report::build`]).
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Counters.
    pub counters: Counters,
    /// Latency over the whole run.
    pub latency: LatencySummary,
    /// Per step.
    pub steps: Vec<StepReport>,
    /// Time series.
    pub rows: Vec<TimeRow>,
    /// Failures by kind.
    pub failures: Counts,
    /// Ctrl-C.
    pub interrupted: bool,
}

/// Writes the CSV files and the SVG under `dir`, and the JSON summary to `json`.
pub fn write_all(dir: &Path, json: Option<&Path>, r: &Report) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(format!("{}.csv", r.scenario)), series_csv(r))?;
    std::fs::write(dir.join(format!("{}-steps.csv", r.scenario)), steps_csv(r))?;
    std::fs::write(dir.join(format!("{}.svg", r.scenario)), svg(r))?;
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(r).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")?;
    }
    Ok(())
}

/// The step a time falls in (index), if any.
fn step_of(r: &Report, t: f64) -> Option<usize> {
    r.steps.iter().position(|s| t >= s.start_s && t < s.end_s)
}

/// `t_s,users_planned,users_online,servers_active,servers_predicted,subscribes_ok,errors,
/// step,step_p50_ms,step_p90_ms,step_p99_ms`.
pub fn series_csv(r: &Report) -> String {
    let mut out = String::from(
        "t_s,users_planned,users_online,servers_active,servers_predicted,subscribes_ok,errors,\
         step,step_p50_ms,step_p90_ms,step_p99_ms\n",
    );
    for row in &r.rows {
        let _ = write!(
            out,
            "{:.3},{},{},{},{},{},{}",
            row.t_s,
            row.users_planned,
            row.users_online,
            row.servers_active,
            row.servers_predicted,
            row.subscribes_ok,
            row.errors
        );
        match step_of(r, row.t_s) {
            Some(i) => {
                let l = &r.steps[i].latency;
                let _ = writeln!(
                    out,
                    ",{},{:.3},{:.3},{:.3}",
                    i + 1,
                    l.p50_ms,
                    l.p90_ms,
                    l.p99_ms
                );
            }
            None => out.push_str(",,,,\n"),
        }
    }
    out
}

/// One line per step.
pub fn steps_csv(r: &Report) -> String {
    let mut out = String::from(
        "step,users,start_s,end_s,servers_observed,servers_predicted,requests,p50_ms,p90_ms,\
         p99_ms,max_ms,mean_ms,predicted_mean_ms\n",
    );
    for (i, s) in r.steps.iter().enumerate() {
        let l = &s.latency;
        let _ = writeln!(
            out,
            "{},{},{:.3},{:.3},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.4}",
            i + 1,
            s.users,
            s.start_s,
            s.end_s,
            s.servers_observed,
            s.servers_predicted,
            l.count,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.max_ms,
            l.mean_ms,
            s.predicted_mean_ms
        );
    }
    out
}

/// Chart geometry.
const W: f64 = 900.0;
const PANEL_H: f64 = 260.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 60.0;
const TOP: f64 = 40.0;
const GAP: f64 = 70.0;

/// `s` escaped as character data of the SVG (an XML document), by the crate's one escaper.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    crate::xml::escape_text(s, &mut out);
    out
}

/// A polyline of steps (value held until the next point).
fn step_path(points: &[(f64, f64)], x: impl Fn(f64) -> f64, y: impl Fn(f64) -> f64) -> String {
    let mut d = String::new();
    for (i, &(t, v)) in points.iter().enumerate() {
        if i == 0 {
            let _ = write!(d, "M{:.1},{:.1}", x(t), y(v));
        } else {
            let _ = write!(d, " H{:.1} V{:.1}", x(t), y(v));
        }
    }
    d
}

/// The SVG chart: top, servers active (observed and predicted) and users online over
/// time; bottom, per step the measured p50/p99 SUBSCRIBE latency and the predicted mean
/// (its own scale: the cost model's absolute values are not the live cluster's).
pub fn svg(r: &Report) -> String {
    let h = TOP + 2.0 * PANEL_H + GAP + 50.0;
    let pw = W - LEFT - RIGHT;
    let t_max = r.duration_s.max(1e-3);
    let x = |t: f64| LEFT + (t / t_max).clamp(0.0, 1.0) * pw;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{h}' \
         font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>"
    );
    let _ = writeln!(
        out,
        "<text x='{LEFT}' y='20' font-size='14'>replay of {} (compress {}, scale {}): \
         live cluster vs sim prediction ({})</text>",
        esc(&r.scenario),
        r.compress,
        r.scale,
        esc(&r.profile)
    );
    // Panel 1: servers and users.
    let y0 = TOP;
    let s_max = r
        .rows
        .iter()
        .map(|row| row.servers_active.max(row.servers_predicted))
        .chain(r.predicted_servers.iter().map(|p| p.1))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        + 1.0;
    let u_max = r
        .rows
        .iter()
        .map(|row| row.users_online.max(row.users_planned))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let ys = |v: f64| y0 + PANEL_H - v / s_max * PANEL_H;
    let yu = |v: f64| y0 + PANEL_H - v / u_max * PANEL_H;
    axes(&mut out, y0, pw, "servers", "users", t_max);
    for k in 0..=(s_max as u32) {
        let _ = writeln!(
            out,
            "<text x='{:.1}' y='{:.1}' text-anchor='end'>{k}</text>",
            LEFT - 6.0,
            ys(f64::from(k)) + 4.0
        );
    }
    let _ = writeln!(
        out,
        "<text x='{:.1}' y='{:.1}'>{u_max:.0}</text>",
        LEFT + pw + 6.0,
        y0 + 10.0
    );
    let planned: Vec<(f64, f64)> = r
        .rows
        .iter()
        .map(|row| (row.t_s, row.users_planned as f64))
        .collect();
    let online: Vec<(f64, f64)> = r
        .rows
        .iter()
        .map(|row| (row.t_s, row.users_online as f64))
        .collect();
    let observed: Vec<(f64, f64)> = r
        .rows
        .iter()
        .map(|row| (row.t_s, f64::from(row.servers_active)))
        .collect();
    let predicted: Vec<(f64, f64)> = r
        .predicted_servers
        .iter()
        .filter(|p| p.0 <= t_max)
        .map(|p| (p.0, f64::from(p.1)))
        .chain(std::iter::once((t_max, 0.0)).filter(|_| false))
        .collect();
    let mut predicted = predicted;
    if let Some(&(_, v)) = predicted.last() {
        predicted.push((t_max, v));
    }
    for (pts, color, dash, scale_u) in [
        (&planned, "#bbbbbb", "4 3", true),
        (&online, "#2ca02c", "", true),
        (&predicted, "#ff7f0e", "8 4", false),
        (&observed, "#1f77b4", "", false),
    ] {
        if pts.is_empty() {
            continue;
        }
        let d = if scale_u {
            step_path(pts, x, yu)
        } else {
            step_path(pts, x, ys)
        };
        let _ = writeln!(
            out,
            "<path d='{d}' fill='none' stroke='{color}' stroke-width='2' stroke-dasharray='{dash}'/>"
        );
    }
    legend(
        &mut out,
        y0 + 14.0,
        &[
            ("#1f77b4", "servers active (admin API)"),
            ("#ff7f0e", "servers predicted (sim)"),
            ("#2ca02c", "users online (right axis)"),
            ("#bbbbbb", "users planned"),
        ],
    );
    // Panel 2: latency per step.
    let y1 = TOP + PANEL_H + GAP;
    let l_max = r
        .steps
        .iter()
        .map(|s| s.latency.p99_ms)
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let p_max = r
        .steps
        .iter()
        .map(|s| s.predicted_mean_ms)
        .fold(0.0f64, f64::max)
        .max(1e-6)
        * 1.1;
    axes(&mut out, y1, pw, "SUBSCRIBE ms", "predicted mean ms", t_max);
    let _ = writeln!(
        out,
        "<text x='{:.1}' y='{:.1}' text-anchor='end'>{l_max:.1}</text>\n\
         <text x='{:.1}' y='{:.1}'>{p_max:.3}</text>",
        LEFT - 6.0,
        y1 + 10.0,
        LEFT + pw + 6.0,
        y1 + 10.0
    );
    let yl = |v: f64| y1 + PANEL_H - v / l_max * PANEL_H;
    let yp = |v: f64| y1 + PANEL_H - v / p_max * PANEL_H;
    for s in &r.steps {
        let (a, b) = (x(s.start_s), x(s.end_s));
        let w = (b - a) / 4.0;
        for (k, v, color) in [
            (0.0, s.latency.p50_ms, "#1f77b4"),
            (1.0, s.latency.p99_ms, "#9467bd"),
        ] {
            let _ = writeln!(
                out,
                "<rect x='{:.1}' y='{:.1}' width='{:.1}' height='{:.1}' fill='{color}'/>",
                a + w * (0.5 + k),
                yl(v),
                w * 0.9,
                (y1 + PANEL_H - yl(v)).max(0.0)
            );
        }
        let _ = writeln!(
            out,
            "<line x1='{a:.1}' x2='{b:.1}' y1='{y:.1}' y2='{y:.1}' stroke='#ff7f0e' \
             stroke-width='2' stroke-dasharray='8 4'/>",
            y = yp(s.predicted_mean_ms)
        );
    }
    legend(
        &mut out,
        y1 + 14.0,
        &[
            ("#1f77b4", "p50 per step (live)"),
            ("#9467bd", "p99 per step (live)"),
            ("#ff7f0e", "predicted mean (sim cost model, right axis)"),
        ],
    );
    out.push_str("</svg>\n");
    out
}

fn axes(out: &mut String, y0: f64, pw: f64, left: &str, right: &str, t_max: f64) {
    let _ = writeln!(
        out,
        "<rect x='{LEFT}' y='{y0}' width='{pw}' height='{PANEL_H}' fill='none' stroke='#333'/>\n\
         <text x='10' y='{:.1}' transform='rotate(-90 10 {:.1})'>{}</text>\n\
         <text x='{:.1}' y='{:.1}' transform='rotate(90 {:.1} {:.1})'>{}</text>\n\
         <text x='{:.1}' y='{:.1}' text-anchor='middle'>time (s, real)</text>\n\
         <text x='{LEFT}' y='{:.1}' text-anchor='middle'>0</text>\n\
         <text x='{:.1}' y='{:.1}' text-anchor='middle'>{t_max:.0}</text>",
        y0 + PANEL_H / 2.0,
        y0 + PANEL_H / 2.0,
        esc(left),
        W - 10.0,
        y0 + PANEL_H / 2.0,
        W - 10.0,
        y0 + PANEL_H / 2.0,
        esc(right),
        LEFT + pw / 2.0,
        y0 + PANEL_H + 30.0,
        y0 + PANEL_H + 15.0,
        LEFT + pw,
        y0 + PANEL_H + 15.0,
    );
}

fn legend(out: &mut String, y: f64, items: &[(&str, &str)]) {
    for (i, (color, label)) in items.iter().enumerate() {
        let yy = y + i as f64 * 16.0;
        let _ = writeln!(
            out,
            "<rect x='{:.1}' y='{:.1}' width='12' height='4' fill='{color}'/>\
             <text x='{:.1}' y='{:.1}'>{}</text>",
            LEFT + 8.0,
            yy - 4.0,
            LEFT + 26.0,
            yy,
            esc(label)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn csv_and_svg_carry_the_series_and_the_prediction() {
        let scenario =
            Scenario::parse(
            "name = \"t\"\n[users]\nsteps = [2, 4]\nstep_s = 10.0\narrival_s = 1.0\nsettle_s = 1.0\n",
        ).unwrap();
        let plan = super::super::schedule::plan(&scenario, 2.0, 1.0).unwrap();
        let row = |t: f64, s: u32| TimeRow {
            t_s: t,
            users_planned: 2,
            users_online: 2,
            servers_active: s,
            servers_predicted: 0,
            subscribes_ok: 1,
            errors: 0,
        };
        let step = |a: f64, b: f64, s: u32| StepReport {
            users: 2,
            start_s: a,
            end_s: b,
            servers_observed: s,
            servers_predicted: 0,
            predicted_mean_ms: 0.0,
            latency: LatencySummary {
                count: 3,
                p50_ms: 1.0,
                p90_ms: 2.0,
                p99_ms: 3.0,
                max_ms: 4.0,
                mean_ms: 1.5,
            },
        };
        let mut samples = Samples::default();
        let mut loads = BTreeMap::new();
        loads.insert("primary".to_string(), 120);
        samples.samples.push(super::super::poller::Sample {
            t: Duration::from_secs(1),
            active: 1,
            loads,
            max_load: 100,
        });
        let measured = Measured {
            rows: vec![row(1.0, 1), row(6.0, 2)],
            steps: vec![step(0.0, 5.0, 1), step(5.0, 10.0, 2)],
            ..Measured::default()
        };
        let mut r = Report::build(&scenario, &plan, measured, samples, 10.0);
        r.set_prediction(&Prediction {
            profile: "paper".into(),
            servers: vec![(0.0, 1), (5.5, 2)],
            steps: vec![(1, 0.05), (1, 0.06)],
        });
        assert!(r.overloaded);
        assert_eq!(r.steps_mismatched, 1);
        assert_eq!(r.rows[1].servers_predicted, 2);
        let csv = series_csv(&r);
        assert!(
            csv.lines()
                .nth(2)
                .unwrap()
                .starts_with("6.000,2,2,2,2,1,0,2,1.000"),
            "{csv}"
        );
        assert_eq!(steps_csv(&r).lines().count(), 3);
        let svg = svg(&r);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("servers predicted"));
        assert!(
            r.line().contains("steps matching the prediction 1/2"),
            "{}",
            r.line()
        );
    }
}
