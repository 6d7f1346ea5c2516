//! `rendezvous replay`: drives a live cluster with virtual XMPP and SIP users from a
//! simulation scenario (DESIGN.md §10), time-compressed and scaled, and sets what happened
//! beside what the simulator predicts.
//!
//! Users arrive in batches following the scenario's steps or curve ([`schedule`]); each batch
//! is one run of the load generator ([`crate::loadgen`]: SCRAM logins at the primary,
//! see-other-host / cxfr / 302 followed, HDR histograms) on one current-thread runtime. Every
//! online user issues SUBSCRIBEs at `requests.subscribe_per_s` × compress:
//! - SIP users: SUBSCRIBE (`Event: presence`) to another SIP user of their batch, then
//!   un-SUBSCRIBE after the 2xx and first NOTIFY; the latency is the SUBSCRIBE's (first
//!   send to 2xx, digest and 302 retries included).
//! - XMPP users: the RFC 6121 equivalent of a SUBSCRIBE, a roster presence subscription
//!   (`<presence type='subscribe'/>` to another XMPP user of their batch, which approves it;
//!   `unsubscribe` afterwards so rosters stay small); the latency runs to the
//!   `<presence type='subscribed'/>`. (A client's presence probe is not an option: servers
//!   drop probes from clients, RFC 6121 §4.3.)
//!
//! Meanwhile [`poller`] samples the primary's `GET /api/cluster` every 250 ms (servers
//! active, load per server); [`predict`] runs the simulator on the same scenario and
//! [`output`] writes the CSV, the SVG chart and the JSON summary. Every loop is bounded by
//! the schedule's length plus fixed logout and drain bounds.

pub mod output;
pub mod poller;
pub mod predict;
pub mod schedule;

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::loadgen::stats::{Counts, Latency};
use crate::loadgen::{self, ProgressMode, SaslChoice, Settings};
use crate::sim::Scenario;

use output::{Measured, Report, StepReport, TimeRow};
use schedule::Schedule;

/// Logout of every batch after the end gives up after this.
const FINISH_MAX: Duration = Duration::from_secs(20);
/// The main loop's period (arrivals, departures, windows, time series).
const TICK: Duration = Duration::from_millis(50);
/// A time-series row every this long.
const ROW_EVERY: Duration = Duration::from_millis(250);

/// The options of `rendezvous replay`.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// The scenario file (`simulations/*.toml`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The primary: HOST, or HOST:XMPP[,SIP[,ADMIN]] ports (defaults 5222, 5060, 5280).
    #[arg(
        long,
        default_value = "127.0.0.1:5222,5060,5280",
        value_name = "HOST:PORTS"
    )]
    pub primary: String,
    /// Time compression: a scenario second lasts 1/F s; request rates are multiplied by F.
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub compress: f64,
    /// Multiply every user count by S (rounded, at least 1), e.g. 0.01.
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    pub scale: f64,
    /// The users' domain.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// User name; `{}` is replaced by the user's index (1, 2, ...).
    #[arg(long, default_value = "user{}", value_name = "PAT")]
    pub pattern: String,
    /// Password; `{}` is replaced by the user's index.
    #[arg(long, default_value = "pass{}", value_name = "PAT")]
    pub password: String,
    /// Create every account first (XEP-0077 in-band registration; existing ones are fine).
    #[arg(long)]
    pub register: bool,
    /// SASL mechanism of the XMPP users.
    #[arg(long, value_enum, default_value = "scram-sha-256", value_name = "MECH")]
    pub sasl: SaslChoice,
    /// Logins in flight at once, per arrival batch.
    #[arg(long, default_value_t = 50, value_name = "C")]
    pub login_concurrency: usize,
    /// Directory of the CSV and SVG files.
    #[arg(long, default_value = "simulations/results/replay", value_name = "DIR")]
    pub out: PathBuf,
    /// Write the JSON summary to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Exit with status 1 when any request or login failed.
    #[arg(long)]
    pub fail_on_errors: bool,
    /// Progress bar on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

/// Why a replay could not run, or its output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A bad option or scenario (exit status 2).
    #[error("{0}")]
    Bad(String),
    /// Nothing could be done (runtime, targets) or the output failed (exit status 1).
    #[error("{0}")]
    Failed(String),
}

impl ReplayError {
    /// The exit status.
    pub fn exit_code(&self) -> u8 {
        match self {
            ReplayError::Bad(_) => 2,
            ReplayError::Failed(_) => 1,
        }
    }
}

/// The primary's three addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primary {
    /// XMPP c2s HOST:PORT.
    pub xmpp: String,
    /// SIP HOST:PORT (UDP).
    pub sip: String,
    /// Admin API HOST:PORT.
    pub admin: String,
}

/// Parses `--primary`: `HOST`, `HOST:XMPP`, `HOST:XMPP,SIP` or `HOST:XMPP,SIP,ADMIN`.
pub fn parse_primary(s: &str) -> Result<Primary, ReplayError> {
    let bad = || {
        ReplayError::Bad(format!(
            "--primary {s:?}: expected HOST or HOST:XMPP[,SIP[,ADMIN]] (ports 1..65535)"
        ))
    };
    let mut parts = s.split(',');
    let head = parts.next().unwrap_or("");
    let (host, xmpp) = match loadgen::options::split_host_port(head) {
        Some((h, p)) => (h.to_string(), p),
        None if !head.is_empty() && !head.contains(':') => (head.to_string(), 5222),
        None => return Err(bad()),
    };
    let mut port = |default: u16| -> Result<u16, ReplayError> {
        match parts.next() {
            None => Ok(default),
            Some(p) => p
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(bad),
        }
    };
    let (sip, admin) = (port(5060)?, port(5280)?);
    if parts.next().is_some() {
        return Err(bad());
    }
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(Primary {
        xmpp: format!("{host}:{xmpp}"),
        sip: format!("{host}:{sip}"),
        admin: format!("{host}:{admin}"),
    })
}

/// One arrival batch while it runs.
struct Live {
    index: usize,
    run: Rc<loadgen::Run>,
    handle: tokio::task::JoinHandle<Result<loadgen::Summary, loadgen::LoadgenError>>,
}

/// Runs the replay: plans it, predicts it, drives the cluster, writes the files. Returns
/// the report (also written as JSON with `--json`).
pub fn run(opts: Options) -> Result<Report, ReplayError> {
    let scenario = Scenario::load(&opts.file).map_err(|e| ReplayError::Bad(e.to_string()))?;
    let plan = schedule::plan(&scenario, opts.compress, opts.scale)
        .map_err(|e| ReplayError::Bad(e.to_string()))?;
    let primary = parse_primary(&opts.primary)?;
    // The loadgen's own checks of the shared options, once, before anything starts.
    batch_settings(&opts, &primary, &plan, None, 1.0)?;
    if plan.batches.is_empty() {
        return Err(ReplayError::Bad(format!(
            "{}: no users to replay",
            opts.file.display()
        )));
    }
    let base = opts.file.parent().unwrap_or(Path::new("."));
    let prediction = predict::predict(&scenario, base, opts.compress, opts.scale);
    let needed = plan.peak_users() + 256;
    let (limit, hard) = loadgen::raise_fd_limit(needed);
    if limit < needed {
        return Err(ReplayError::Failed(format!(
            "the open-files limit is {limit} but {needed} are needed: `ulimit -n {needed}` \
             (hard limit: {hard})"
        )));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ReplayError::Failed(format!("tokio runtime: {e}")))?;
    let local = tokio::task::LocalSet::new();
    let mut report = local.block_on(&rt, drive(&opts, &primary, &scenario, &plan))?;
    drop(local);
    rt.shutdown_timeout(Duration::from_millis(200));
    report.set_prediction(&prediction);
    output::write_all(&opts.out, opts.json.as_deref(), &report)
        .map_err(|e| ReplayError::Failed(e.to_string()))?;
    Ok(report)
}

/// The load generator's settings of one batch (`batch` `None`: only the shared options,
/// checked once at the start). `remaining_s` bounds its measurement phase.
fn batch_settings(
    opts: &Options,
    primary: &Primary,
    plan: &Schedule,
    batch: Option<&schedule::Batch>,
    remaining_s: f64,
) -> Result<Settings, ReplayError> {
    let (first, xmpp, sip) = batch.map_or((1, 1, 1), |b| (b.first, b.xmpp, b.sip));
    let users = (xmpp + sip) as usize;
    let rate = plan.subscribe_per_user_s;
    let lg = loadgen::Options {
        xmpp: primary.xmpp.clone(),
        sip: primary.sip.clone(),
        domain: opts.domain.clone(),
        users,
        pattern: opts.pattern.clone(),
        first,
        password: opts.password.clone(),
        sip_share: sip as f64 / users as f64,
        login_concurrency: opts.login_concurrency,
        sasl: opts.sasl,
        subscribe_cycle_rate: if sip >= 2 { sip as f64 * rate } else { 0.0 },
        duration: remaining_s.max(0.001),
        warmup: 0.0,
        follow_redirects: true,
        progress: ProgressMode::Never,
        ..loadgen::Options::default()
    };
    let mut set = Settings::new(lg).map_err(|e| ReplayError::Bad(e.to_string()))?;
    set.xmpp_subscribe_rate = if xmpp >= 2 { xmpp as f64 * rate } else { 0.0 };
    set.quiet = true;
    Ok(set)
}

/// Takes the SUBSCRIBE latencies recorded since the last call out of every batch.
fn take_latency(live: &[Live], finished: &[Rc<loadgen::Run>]) -> Latency {
    let mut out = Latency::new();
    for run in live.iter().map(|l| &l.run).chain(finished) {
        out.merge(&std::mem::take(
            &mut run.stats.borrow_mut().xmpp_subscribe.latency,
        ));
        out.merge(&std::mem::take(&mut run.sip.borrow_mut().cycle_subscribe));
    }
    out
}

/// Users of a batch online now: XMPP users bound with their roster, SIP users whose
/// initial PUBLISH was answered.
fn online(run: &loadgen::Run) -> u64 {
    if run.stop.get() {
        return 0;
    }
    let x = run.online.iter().filter(|o| o.get()).count();
    (x + run.sip.borrow().setup_users_done) as u64
}

/// (sent, ok, failed) SUBSCRIBEs of a batch.
fn requests(run: &loadgen::Run) -> (u64, u64, u64) {
    let s = run.stats.borrow();
    let sip = run.sip.borrow();
    (
        s.xmpp_subscribe.sent + sip.cycle.sent,
        s.xmpp_subscribe.ok + sip.cycle.ok,
        s.xmpp_subscribe.failed + sip.cycle.failed,
    )
}

async fn drive(
    opts: &Options,
    primary: &Primary,
    scenario: &Scenario,
    plan: &Schedule,
) -> Result<Report, ReplayError> {
    let wall = Instant::now();
    if opts.register {
        let total = plan.total_users() as usize;
        let mut lg = batch_settings(opts, primary, plan, None, 1.0)?;
        lg.opts.users = total;
        lg.opts.sip_share = 0.0;
        let set = Settings::new(lg.opts).map_err(|e| ReplayError::Bad(e.to_string()))?;
        let run = Rc::new(loadgen::Run::new(set));
        eprintln!("replay: registering {total} accounts at {}", primary.xmpp);
        let (created, existing, failed) = loadgen::register_all(&run).await;
        eprintln!("replay: {created} created, {existing} existing, {failed} failed");
    }
    // A first sample says whether the admin API answers (the run goes on without it).
    if let Err(e) = poller::sample_once(&primary.admin, Duration::ZERO).await {
        eprintln!("replay: warning: {e} (servers over time will be missing)");
    }
    let start = Instant::now();
    let end = start + plan.duration;
    let samples = Rc::new(RefCell::new(poller::Samples::default()));
    let poll = tokio::task::spawn_local(poller::poll(
        primary.admin.clone(),
        start,
        end + Duration::from_millis(300),
        samples.clone(),
    ));
    let bar = progress_bar(opts.progress, plan.duration);
    let mut live: Vec<Live> = Vec::new();
    let mut finished: Vec<Rc<loadgen::Run>> = Vec::new();
    let mut next_batch = 0usize;
    let mut rows: Vec<TimeRow> = Vec::new();
    let mut steps: Vec<StepReport> = Vec::new();
    let mut total = Latency::new();
    let mut window = 0usize;
    let mut measuring = false;
    let mut next_row = Duration::ZERO;
    let mut interrupted = false;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => {
                eprintln!("replay: interrupted, logging out");
                interrupted = true;
            }
        }
        let now = Instant::now();
        let t = now - start;
        // Arrivals.
        while next_batch < plan.batches.len() && plan.batches[next_batch].at <= t && !interrupted {
            let b = &plan.batches[next_batch];
            let remaining = (plan.duration.saturating_sub(t)).as_secs_f64();
            let set = batch_settings(opts, primary, plan, Some(b), remaining)?;
            let run = Rc::new(loadgen::Run::new(set));
            let handle = tokio::task::spawn_local(loadgen::orchestrate_shared(run.clone()));
            live.push(Live {
                index: next_batch,
                run,
                handle,
            });
            next_batch += 1;
        }
        // Departures.
        for l in &live {
            if plan.batches[l.index].leave_at.is_some_and(|at| at <= t) {
                l.run.stop.set(true);
            }
        }
        let (done, going): (Vec<Live>, Vec<Live>) =
            live.into_iter().partition(|l| l.handle.is_finished());
        live = going;
        finished.extend(done.into_iter().map(|l| l.run));
        // Measurement windows.
        if let Some(w) = plan.windows.get(window) {
            if !measuring && t >= w.measure_from {
                total.merge(&take_latency(&live, &finished));
                measuring = true;
            }
            if t >= w.end || now >= end {
                let lat = take_latency(&live, &finished);
                total.merge(&lat);
                let s = samples.borrow();
                steps.push(StepReport {
                    users: w.users,
                    start_s: w.start.as_secs_f64(),
                    end_s: w.end.as_secs_f64(),
                    servers_observed: s.active_at(w.end),
                    servers_predicted: 0,
                    predicted_mean_ms: 0.0,
                    latency: lat.summary(),
                });
                window += 1;
                measuring = false;
            }
        }
        if t >= next_row {
            next_row = t + ROW_EVERY;
            let all = live.iter().map(|l| &l.run).chain(&finished);
            let (mut users, mut ok, mut errors) = (0, 0, 0);
            for r in all {
                users += online(r);
                ok += requests(r).1;
                errors += r.stats.borrow().errors.total();
            }
            let servers = samples.borrow().active_at(t);
            rows.push(TimeRow {
                t_s: t.as_secs_f64(),
                users_planned: plan.planned_users(t),
                users_online: users,
                servers_active: servers,
                servers_predicted: 0,
                subscribes_ok: ok,
                errors,
            });
            if let Some(b) = &bar {
                b.set_position(t.as_millis() as u64 / 100);
                b.set_message(format!(
                    "users {users}, servers {servers}, subscribes {ok}, errors {errors}"
                ));
            }
        }
        if now >= end || interrupted {
            break;
        }
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    // Logout of every batch, bounded.
    for l in &live {
        l.run.stop.set(true);
    }
    let deadline = Instant::now() + FINISH_MAX;
    while Instant::now() < deadline && !live.iter().all(|l| l.handle.is_finished()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), poll).await;
    total.merge(&take_latency(&live, &finished));
    let mut failures = Counts::default();
    let mut logins = (0u64, 0u64);
    let mut redirects = 0u64;
    let mut reqs = (0u64, 0u64, 0u64);
    let mut runs: Vec<Rc<loadgen::Run>> = finished;
    for l in live {
        if !l.handle.is_finished() {
            l.handle.abort();
            failures.add("batch_logout_unfinished", 1);
            runs.push(l.run);
            continue;
        }
        match l.handle.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failures.add(format!("batch_{}", e.kind()), 1),
            Err(_) => failures.add("batch_panicked", 1),
        }
        runs.push(l.run);
    }
    for r in &runs {
        let s = r.stats.borrow();
        failures.merge(&s.errors);
        logins.0 += s.logins_ok + r.sip.borrow().setup_users_done as u64;
        logins.1 += s.logins_failed;
        redirects += s.see_other_host + s.cxfr + s.sip_302;
        drop(s);
        let (a, b, c) = requests(r);
        reqs = (reqs.0 + a, reqs.1 + b, reqs.2 + c);
    }
    let samples = std::mem::take(&mut *samples.borrow_mut());
    let measured = Measured {
        counters: output::Counters {
            logins_ok: logins.0,
            logins_failed: logins.1,
            redirects,
            subscribes_sent: reqs.0,
            subscribes_ok: reqs.1,
            subscribes_failed: reqs.2,
        },
        latency: total.summary(),
        steps,
        rows,
        failures,
        interrupted,
    };
    Ok(Report::build(
        scenario,
        plan,
        measured,
        samples,
        wall.elapsed().as_secs_f64(),
    ))
}

/// A progress bar over the replay's length (tenths of seconds), only on a terminal unless
/// `always`.
fn progress_bar(mode: ProgressMode, length: Duration) -> Option<indicatif::ProgressBar> {
    let show = match mode {
        ProgressMode::Never => false,
        ProgressMode::Auto => std::io::stderr().is_terminal(),
        ProgressMode::Always => true,
    };
    if !show {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(length.as_millis() as u64 / 100),
        indicatif::ProgressDrawTarget::stderr_with_hz(10),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("replay [{bar:25}] {elapsed}/{duration} {wide_msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_addresses() {
        let p = parse_primary("10.9.0.1:5222,5060,5280").unwrap();
        assert_eq!(
            (p.xmpp.as_str(), p.sip.as_str(), p.admin.as_str()),
            ("10.9.0.1:5222", "10.9.0.1:5060", "10.9.0.1:5280")
        );
        let p = parse_primary("node1").unwrap();
        assert_eq!(p.admin, "node1:5280");
        let p = parse_primary("127.0.0.1:6000,6001").unwrap();
        assert_eq!(
            (p.sip.as_str(), p.admin.as_str()),
            ("127.0.0.1:6001", "127.0.0.1:5280")
        );
        let p = parse_primary("[::1]:6000,6001,6002").unwrap();
        assert_eq!(p.admin, "[::1]:6002");
        for bad in ["", "a:0", "a:1,x", "a:1,2,3,4", "a:b:c"] {
            assert!(parse_primary(bad).is_err(), "{bad}");
        }
    }
}
