//! Output of the simulator (DESIGN.md §10): the comparison table as text, CSV and an SVG
//! chart (plotters, SVG backend only: it writes `<text>` elements and needs no system
//! fonts). Everything here is a pure function of the [`SimReport`], so the same report gives
//! the same bytes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::{Metric, Mode, ModeRun, SimReport, Stats};

fn ms(s: &Stats) -> String {
    if s.count == 0 {
        "-".to_owned()
    } else {
        format!("{:.3}", s.mean_us / 1000.0)
    }
}

fn p95(s: &Stats) -> String {
    if s.count == 0 {
        "-".to_owned()
    } else {
        format!("{:.3}", s.p95_us / 1000.0)
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.1}"))
}

fn run_of(report: &SimReport, mode: Mode) -> Option<&ModeRun> {
    report.runs.iter().find(|r| r.mode == mode)
}

/// The human table: per user count, each mode's mean and p95 subscribe and notify times
/// (ms), the reductions multi vs single, and the published reduction with the difference.
pub fn table(report: &SimReport) -> String {
    let s = &report.scenario;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== {} (profile {}, seed {}){}",
        s.name,
        report.profile,
        report.seed,
        if s.description.is_empty() {
            String::new()
        } else {
            format!(": {}", s.description)
        }
    );
    let metric = s.published.as_ref().map(|p| p.metric);
    let mut head = format!("{:>8} ", "users");
    for run in &report.runs {
        let m = run.mode.as_str();
        let _ = write!(
            head,
            "| {m:>6} srv  sub ms (p95)        notify ms (p95)    "
        );
    }
    if !report.comparison.is_empty() {
        head.push_str("| sub red% notify red%");
        if let Some(metric) = metric {
            let _ = write!(head, " | published {} red%  diff pp", metric.as_str());
        }
    }
    let _ = writeln!(out, "{head}");
    let rows = report.runs.first().map_or(0, |r| r.rows.len());
    for i in 0..rows {
        let mut line = format!("{:>8} ", report.runs[0].rows[i].users);
        for run in &report.runs {
            let r = &run.rows[i];
            let _ = write!(
                line,
                "| {:>10} {:>8} ({:>8}) {:>8} ({:>8}) ",
                r.servers,
                ms(&r.subscribe),
                p95(&r.subscribe),
                ms(&r.notify),
                p95(&r.notify)
            );
        }
        if let Some(c) = report.comparison.get(i) {
            let _ = write!(
                line,
                "| {:>8} {:>11}",
                pct(c.subscribe_pct),
                pct(c.notify_pct)
            );
            if let Some(metric) = metric {
                let diff = c.difference_pp(metric);
                let _ = write!(
                    line,
                    " | {:>21} {:>8}",
                    pct(c.published_pct),
                    diff.map_or("-".to_owned(), |d| format!("{d:+.1}"))
                );
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// One line per row: `users`, then per mode (in the scenario's order) servers, request
/// counts, mean and p95 (µs) of subscribe and notify; then the reductions, the published
/// reduction and the difference (pp).
pub fn csv(report: &SimReport) -> String {
    let mut out = String::from("users,from_s,to_s");
    for run in &report.runs {
        let m = run.mode.as_str();
        for col in [
            "servers",
            "subscribe_n",
            "subscribe_mean_us",
            "subscribe_p95_us",
            "notify_n",
            "notify_mean_us",
            "notify_p95_us",
        ] {
            let _ = write!(out, ",{m}_{col}");
        }
    }
    out.push_str(
        ",subscribe_reduction_pct,notify_reduction_pct,published_reduction_pct,difference_pp\n",
    );
    let metric = report
        .scenario
        .published
        .as_ref()
        .map_or(Metric::Subscribe, |p| p.metric);
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    let rows = report.runs.first().map_or(0, |r| r.rows.len());
    for i in 0..rows {
        let r0 = &report.runs[0].rows[i];
        let _ = write!(out, "{},{:.3},{:.3}", r0.users, r0.from_s, r0.to_s);
        for run in &report.runs {
            let r = &run.rows[i];
            let _ = write!(
                out,
                ",{},{},{:.3},{:.3},{},{:.3},{:.3}",
                r.servers,
                r.subscribe.count,
                r.subscribe.mean_us,
                r.subscribe.p95_us,
                r.notify.count,
                r.notify.mean_us,
                r.notify.p95_us
            );
        }
        match report.comparison.get(i) {
            Some(c) => {
                let _ = writeln!(
                    out,
                    ",{},{},{},{}",
                    opt(c.subscribe_pct),
                    opt(c.notify_pct),
                    opt(c.published_pct),
                    opt(c.difference_pp(metric))
                );
            }
            None => out.push_str(",,,,\n"),
        }
    }
    out
}

/// A line chart of the mean processing time (ms) of the scenario's metric per mode: against
/// the user count for step scenarios, against time (h) for curve scenarios, with the number
/// of servers of the `multi` mode as a second, dashed series on the right axis.
pub fn svg(report: &SimReport) -> String {
    let s = &report.scenario;
    let metric = s.published.as_ref().map_or(
        if s.requests.subscribe_per_s > 0.0 {
            Metric::Subscribe
        } else {
            Metric::Notify
        },
        |p| p.metric,
    );
    let by_time = s.users.steps.is_empty();
    let x_of = |r: &super::Row| {
        if by_time {
            r.from_s / 3600.0
        } else {
            r.users as f64
        }
    };
    let value = |r: &super::Row| {
        let st = match metric {
            Metric::Subscribe => r.subscribe,
            Metric::Notify => r.notify,
        };
        st.mean_us / 1000.0
    };
    let mut x_max: f64 = 1.0;
    let mut y_max: f64 = 0.0;
    let mut srv_max: f64 = 1.0;
    for run in &report.runs {
        for r in &run.rows {
            x_max = x_max.max(x_of(r));
            y_max = y_max.max(value(r));
            srv_max = srv_max.max(f64::from(r.servers));
        }
    }
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (800, 480)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let caption = format!(
            "{}: mean {} time (profile {})",
            s.name,
            metric.as_str(),
            report.profile
        );
        let chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .right_y_label_area_size(50)
            .build_cartesian_2d(0f64..x_max * 1.05, 0f64..y_max);
        if let Ok(chart) = chart {
            let mut chart = chart.set_secondary_coord(0f64..x_max * 1.05, 0f64..srv_max * 1.2);
            let _ = chart
                .configure_mesh()
                .x_desc(if by_time { "time (h)" } else { "users" })
                .y_desc(format!("mean {} time (ms)", metric.as_str()))
                .draw();
            let _ = chart
                .configure_secondary_axes()
                .y_desc("servers (multi)")
                .draw();
            let colours = [RGBColor(200, 40, 40), RGBColor(30, 90, 200)];
            for (i, run) in report.runs.iter().enumerate() {
                let colour = colours[i % colours.len()];
                let points: Vec<(f64, f64)> =
                    run.rows.iter().map(|r| (x_of(r), value(r))).collect();
                if let Ok(series) =
                    chart.draw_series(LineSeries::new(points, colour.stroke_width(2)))
                {
                    series
                        .label(run.mode.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
                }
            }
            if let Some(multi) = run_of(report, Mode::Multi) {
                let points: Vec<(f64, f64)> = multi
                    .rows
                    .iter()
                    .map(|r| (x_of(r), f64::from(r.servers)))
                    .collect();
                let grey = RGBColor(120, 120, 120);
                if let Ok(series) = chart.draw_secondary_series(LineSeries::new(points, grey)) {
                    series
                        .label("servers (multi)")
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
                }
            }
            let _ = chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw();
        }
        let _ = root.present();
    }
    out
}

/// Writes `<out>/<name>.csv` and `<out>/<name>.svg`; returns their paths.
pub fn write(report: &SimReport, out: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let name = &report.scenario.name;
    let csv_path = out.join(format!("{name}.csv"));
    let svg_path = out.join(format!("{name}.svg"));
    std::fs::write(&csv_path, csv(report))?;
    std::fs::write(&svg_path, svg(report))?;
    Ok(vec![csv_path, svg_path])
}

/// The one-line summary of a report: worst difference from the published figures, peak
/// servers, requests simulated.
pub fn summary_line(report: &SimReport) -> String {
    let requests: u64 = report.runs.iter().map(|r| r.counters.requests).sum();
    let peak = run_of(report, Mode::Multi).map_or(1, |r| r.counters.peak_servers);
    let worst = report
        .worst_difference_pp()
        .map_or(String::new(), |d| format!(", worst difference {d:.1} pp"));
    format!(
        "{}: {} rows, {} requests, peak {} servers{}",
        report.scenario.name,
        report.runs.first().map_or(0, |r| r.rows.len()),
        requests,
        peak,
        worst
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{run, CostModel, Scenario};

    #[test]
    fn outputs_have_a_row_per_step_and_an_svg() {
        let s = Scenario::parse(
            r#"
name = "r"
[users]
steps = [10, 20]
step_s = 20.0
settle_s = 5.0
resources = 2
[requests]
notify_per_s = 1.0
[published]
metric = "notify"
reductions = [[20, 10.0]]
"#,
        )
        .unwrap();
        let rep = run(&s, &CostModel::paper(), 1);
        let csv = csv(&rep);
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(csv.lines().nth(2).unwrap().contains(",10.000,"), "{csv}");
        let table = table(&rep);
        assert!(table.contains("published notify"), "{table}");
        let svg = svg(&rep);
        assert!(svg.starts_with("<svg") && svg.contains("multi"), "{svg}");
        assert!(summary_line(&rep).starts_with("r: 2 rows"));
    }
}
