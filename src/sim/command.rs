//! `rendezvous sim`: runs scenario files and prints, writes and summarises the results
//! (DESIGN.md §10); `--calibrate` measures the cost model instead.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use super::cost::{CostModel, CALIBRATED_PATH};
use super::{report, run_with_progress, Scenario};

/// Options of `rendezvous sim`.
#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Scenario files (default: every `simulations/*.toml` but the cost model).
    pub files: Vec<PathBuf>,
    /// Cost profile: `paper`, `calibrated` (simulations/cost-model.toml) or a cost model
    /// file (default: the scenario's `profile`).
    #[arg(long)]
    pub profile: Option<String>,
    /// Seed (default: the scenario's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where the CSV and SVG files go.
    #[arg(long, default_value = "simulations/results")]
    pub out: PathBuf,
    /// Measure the real handlers and write simulations/cost-model.toml (profile
    /// `calibrated`) instead of simulating.
    #[arg(long)]
    pub calibrate: bool,
    /// Only the summary lines (no tables, no progress bar).
    #[arg(long)]
    pub quiet: bool,
}

/// The scenario files of `simulations/`, sorted by name.
pub fn shipped_scenarios(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "toml")
                && p.file_name().is_some_and(|n| n != "cost-model.toml")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Runs the command; exit status 0 on success, 2 on bad scenarios or options, 1 when
/// results cannot be written.
pub fn run(args: SimArgs) -> ExitCode {
    if args.calibrate {
        let model = super::calibrate::measure(&mut |what| {
            if !args.quiet {
                eprintln!("calibrate: {what}");
            }
        });
        let header = super::calibrate::header();
        let text = model.to_toml(&header);
        if let Err(e) = std::fs::write(CALIBRATED_PATH, &text) {
            eprintln!("error: {CALIBRATED_PATH}: {e}");
            return ExitCode::FAILURE;
        }
        print!("{text}");
        eprintln!("wrote {CALIBRATED_PATH}");
        return ExitCode::SUCCESS;
    }
    let files = if args.files.is_empty() {
        match shipped_scenarios(Path::new("simulations")) {
            Ok(f) if !f.is_empty() => f,
            Ok(_) => {
                eprintln!("error: no scenario files in simulations/");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("error: simulations/: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        args.files.clone()
    };
    // Load everything first: a bad file fails the command before any long run.
    let mut jobs = Vec::new();
    for file in &files {
        let scenario = match Scenario::load(file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        let profile = args.profile.as_deref().unwrap_or(&scenario.profile);
        let cost = match CostModel::profile(profile, Path::new(".")) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {}: profile: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        jobs.push((scenario, cost));
    }
    let started = Instant::now();
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let mut worst: Option<f64> = None;
    for (scenario, cost) in &jobs {
        let seed = args.seed.unwrap_or(scenario.seed);
        let bar = show_progress.then(|| {
            let bar = indicatif::ProgressBar::new(1000);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:24} [{bar:40}] {percent:>3}% {elapsed}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(scenario.name.clone());
            bar
        });
        let report = run_with_progress(scenario, cost, seed, &mut |f| {
            if let Some(bar) = &bar {
                bar.set_position((f * 1000.0) as u64);
            }
        });
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if !args.quiet {
            println!("{}", report::table(&report));
        }
        if let Err(e) = report::write(&report, &args.out) {
            eprintln!("error: {}: {e}", args.out.display());
            return ExitCode::FAILURE;
        }
        if let Some(d) = report.worst_difference_pp() {
            worst = Some(worst.map_or(d, |w: f64| w.max(d)));
        }
        println!("{}", report::summary_line(&report));
    }
    let worst = worst.map_or(String::new(), |w| {
        format!(", worst difference from the published figures {w:.1} pp")
    });
    eprintln!(
        "sim: {} scenario(s) in {:.2} s{worst}; results in {}",
        jobs.len(),
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    ExitCode::SUCCESS
}
