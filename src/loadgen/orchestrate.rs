//! The phases of a run: register → login → roster setup → hold → warm-up → measure (steps,
//! each followed by a bounded drain) → logout → summary, and the presence scheduler that
//! paces the measured updates.

use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::error::LoadgenError;
use super::net;
use super::options::Settings;
use super::progress::Progress;
use super::report::{self, StepResult};
use super::run::{now_ns, Cmd, Run, SipPhase, Step, CMD_QUEUE, LOGOUT_MAX};
use super::sip;
use super::stats;
use super::stats::Latency;
use super::summary::Summary;
use super::xmpp;

/// How long the deliveries of a step may take to arrive after its last update.
const DRAIN_MAX: Duration = Duration::from_secs(2);

/// The presence scheduler's tick.
const TICK: Duration = Duration::from_millis(1);

/// Headroom of file descriptors beyond one per XMPP user.
const FD_HEADROOM: u64 = 256;

/// Runs the whole load: builds a current-thread runtime, runs every phase, writes the JSON
/// summary if `--json` was given and returns the summary. Errors are for runs that could not
/// start (targets, file descriptors, runtime) or whose summary could not be written.
pub fn run(set: Settings) -> Result<Summary, LoadgenError> {
    let needed = set.n_xmpp as u64 + FD_HEADROOM;
    let (limit, hard) = net::raise_fd_limit(needed);
    if limit < needed {
        return Err(LoadgenError::FdLimit {
            limit,
            hard,
            needed,
        });
    }
    let _ = now_ns();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(cores.max(1))
        .build()
        .map_err(|e| LoadgenError::Setup(format!("tokio runtime: {e}")))?;
    let local = tokio::task::LocalSet::new();
    let json = set.opts.json.clone();
    let summary = local.block_on(&rt, orchestrate(set))?;
    drop(local);
    rt.shutdown_timeout(Duration::from_millis(200));
    if let Some(path) = json {
        let text =
            serde_json::to_string_pretty(&summary).map_err(|e| LoadgenError::WriteSummary {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        std::fs::write(&path, text + "\n").map_err(|e| LoadgenError::WriteSummary {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    Ok(summary)
}

/// Raises the open-files limit towards `needed`: (soft limit now, hard limit).
pub(crate) fn raise_fd_limit(needed: u64) -> (u64, u64) {
    net::raise_fd_limit(needed)
}

/// Registers every user of `run` (XEP-0077 at the XMPP target; an existing account is
/// fine) under the login gate, bounded like the register phase. Returns (created,
/// existing, failed). `rendezvous replay --register` calls it before its users arrive.
pub(crate) async fn register_all(run: &Rc<Run>) -> (u64, u64, u64) {
    let n = run.set.opts.users;
    let tasks: Vec<_> = (0..n)
        .map(|k| tokio::task::spawn_local(xmpp::register_task(run.clone(), k)))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60) + Duration::from_millis(10) * n as u32;
    while run.stats.borrow().reg_done < n && Instant::now() < deadline && !run.stop.get() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for t in tasks {
        t.abort();
    }
    let s = run.stats.borrow();
    let unfinished = n.saturating_sub(s.reg_done) as u64;
    (s.reg_ok, s.reg_existing, s.reg_failed + unfinished)
}

/// Waits until `done()` or `deadline` or a stop, polling every 50 ms and updating the
/// progress bar with `show()`. Returns whether `done()` became true.
async fn wait_until(
    run: &Run,
    deadline: Instant,
    progress: &mut Progress,
    mut done: impl FnMut() -> bool,
    mut show: impl FnMut(&mut Progress),
) -> bool {
    loop {
        show(progress);
        if done() {
            return true;
        }
        if run.stop.get() || Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Spreads presence updates over the online XMPP users, round robin, from a token schedule.
struct Scheduler {
    cursor: usize,
    pending: Vec<u32>,
    touched: Vec<usize>,
}

impl Scheduler {
    fn new(n: usize) -> Scheduler {
        Scheduler {
            cursor: 0,
            pending: vec![0; n],
            touched: Vec::new(),
        }
    }

    /// Hands `due` updates to online users (at most one scan of all users per update).
    fn dispatch(&mut self, run: &Run, txs: &[mpsc::Sender<Cmd>], due: u64) {
        let n = self.pending.len();
        if n == 0 {
            return;
        }
        'updates: for _ in 0..due {
            for _ in 0..n {
                let k = self.cursor;
                self.cursor = (self.cursor + 1) % n;
                if run.online[k].get() {
                    if self.pending[k] == 0 {
                        self.touched.push(k);
                    }
                    self.pending[k] += 1;
                    continue 'updates;
                }
            }
            // Nobody online.
            break;
        }
        for k in self.touched.drain(..) {
            let count = std::mem::take(&mut self.pending[k]);
            if let Err(e) = txs[k].try_send(Cmd::Updates(count)) {
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    run.stats
                        .borrow_mut()
                        .errors
                        .add("presence_backlog", u64::from(count));
                }
            }
        }
    }
}

impl Scheduler {
    /// Hands `due` subscription cycles to online users, round robin (one per user per call).
    fn subscribe(&mut self, run: &Run, txs: &[mpsc::Sender<Cmd>], due: u64) {
        let n = txs.len();
        for _ in 0..due.min(n as u64) {
            let Some(k) = (0..n)
                .map(|i| (self.cursor + i) % n)
                .find(|&k| run.online[k].get())
            else {
                return;
            };
            self.cursor = (k + 1) % n;
            if txs[k].try_send(Cmd::Subscribe).is_err() {
                run.stats
                    .borrow_mut()
                    .errors
                    .add("xmpp_subscribe_backlog", 1);
            }
        }
    }
}

/// Sends presence updates at `rate`/s for `secs` (just waits when the rate is 0).
async fn drive(
    run: &Run,
    txs: &[mpsc::Sender<Cmd>],
    sched: &mut Scheduler,
    rate: f64,
    secs: f64,
    progress: &mut Progress,
) {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut issued: u64 = 0;
    let mut subscribes: u64 = 0;
    let sub_rate = run.set.xmpp_subscribe_rate;
    let mut last_show = start;
    // A tick hands out at most this many updates (bounds the work of a late tick).
    let max_per_tick = ((rate * 0.1) as u64).max(1000);
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= end || run.stop.get() {
            break;
        }
        if rate > 0.0 {
            let target = ((now - start).as_secs_f64() * rate) as u64;
            let due = target.saturating_sub(issued).min(max_per_tick);
            issued += due;
            if due > 0 {
                sched.dispatch(run, txs, due);
            }
        }
        if sub_rate > 0.0 {
            let target = ((now - start).as_secs_f64() * sub_rate) as u64;
            let due = target.saturating_sub(subscribes).min(max_per_tick);
            subscribes += due;
            sched.subscribe(run, txs, due);
        }
        if now - last_show >= Duration::from_millis(100) {
            last_show = now;
            let step = run.step.borrow();
            let el = (now - start).as_secs_f64().max(1e-3);
            let msg = if step.start_ns == u64::MAX {
                String::new() // warm-up: nothing is counted
            } else {
                format!(
                    "sent {:.0}/s, delivered {:.0}/s",
                    step.sent as f64 / el,
                    step.received as f64 / el
                )
            };
            progress.set(((now - start).as_millis() / 100) as u64, msg);
        }
    }
}

/// Counts the receivers that got fewer deliveries than expected in the step just ended
/// (`receivers_short`), or more (`receivers_extra`: duplicates, or presence from someone
/// whose roster does not list them), naming the first few of each.
fn check_receivers(run: &Run) {
    let (mut short, mut extra) = (Vec::new(), Vec::new());
    for k in 0..run.set.n_xmpp {
        let (e, r) = (run.rx_expected[k].get(), run.rx_received[k].get());
        if r < e {
            short.push((k, r, e));
        } else if r > e {
            extra.push((k, r, e));
        }
    }
    let mut s = run.stats.borrow_mut();
    for (kind, list) in [("receivers_short", short), ("receivers_extra", extra)] {
        if list.is_empty() {
            continue;
        }
        let names: Vec<String> = list
            .iter()
            .take(5)
            .map(|(k, r, e)| format!("{} got {r} of {e}", run.set.name(*k)))
            .collect();
        s.error(kind, || names.join(", "));
        s.errors.add(kind, list.len() as u64 - 1);
    }
}

async fn orchestrate(set: Settings) -> Result<Summary, LoadgenError> {
    orchestrate_shared(Rc::new(Run::new(set))).await
}

/// Every phase of a run whose state the caller keeps a handle on (`rendezvous replay`
/// runs one per arrival batch on its own local set, reads the counters while it goes and
/// ends it with [`Run::stop`]).
pub(crate) async fn orchestrate_shared(run: Rc<Run>) -> Result<Summary, LoadgenError> {
    let wall = Instant::now();
    // Resolve the targets once; a target that cannot be resolved means nothing can be done.
    if run.set.n_xmpp > 0 || run.set.opts.register {
        net::resolve(&run, &run.set.opts.xmpp).await?;
    }
    let sip_target = if run.set.n_sip > 0 {
        Some(net::resolve(&run, &run.set.opts.sip).await?)
    } else {
        None
    };
    {
        let run = run.clone();
        tokio::task::spawn_local(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("loadgen: interrupted, logging out (Ctrl-C again to quit at once)");
                run.stop.set(true);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }
    let mut progress = if run.set.quiet {
        Progress::silent()
    } else {
        Progress::new(run.set.opts.progress)
    };
    let n_x = run.set.n_xmpp;
    let n_users = run.set.opts.users;

    // 1. Registration.
    if run.set.opts.register && !run.stop.get() {
        progress.phase("register", Some(n_users as u64));
        for k in 0..n_users {
            tokio::task::spawn_local(xmpp::register_task(run.clone(), k));
        }
        let deadline =
            Instant::now() + Duration::from_secs(60) + Duration::from_millis(10) * n_users as u32;
        wait_until(
            &run,
            deadline,
            &mut progress,
            || run.stats.borrow().reg_done >= n_users,
            |p| p.set(run.stats.borrow().reg_done as u64, String::new()),
        )
        .await;
        let s = run.stats.borrow();
        progress.done(format!(
            "{} created, {} existing, {} failed",
            s.reg_ok, s.reg_existing, s.reg_failed
        ));
    }

    // 1b. Repeat logins (--login-rounds): every XMPP user logs in and out, round after round.
    let rounds = run.set.opts.login_rounds;
    if rounds > 0 && n_x > 0 && !run.stop.get() {
        progress.phase("login rounds", Some(u64::from(rounds) * n_x as u64));
        let mut done = 0u64;
        for r in 0..rounds {
            if run.stop.get() {
                break;
            }
            let t0 = Instant::now();
            let tasks: Vec<_> = (0..n_x)
                .map(|k| tokio::task::spawn_local(xmpp::login_once(run.clone(), k)))
                .collect();
            let (mut ok, mut failed, mut lat) = (0u64, 0u64, Latency::new());
            for t in tasks {
                match t.await {
                    Ok(Ok(d)) => {
                        ok += 1;
                        lat.record(d);
                    }
                    Ok(Err(e)) => {
                        failed += 1;
                        run.stats.borrow_mut().errors.add(e.kind(), 1);
                    }
                    Err(_) => failed += 1,
                }
                done += 1;
                progress.set(done, String::new());
            }
            // The first round pays this tool's PBKDF2 per user: measured only when alone.
            if r > 0 || rounds == 1 {
                let mut s = run.stats.borrow_mut();
                s.repeat_rounds += 1;
                s.repeat_ok += ok;
                s.repeat_failed += failed;
                s.repeat_secs += t0.elapsed().as_secs_f64();
                s.repeat_latency.merge(&lat);
            }
        }
        let s = run.stats.borrow();
        progress.done(format!(
            "{} repeat logins ok, {} failed ({:.0}/s over {} round(s))",
            s.repeat_ok,
            s.repeat_failed,
            stats::per_second(s.repeat_ok, s.repeat_secs),
            s.repeat_rounds
        ));
    }

    // 2. Login (XMPP) and the SIP users' initial PUBLISH and SUBSCRIBEs.
    progress.phase("login", Some(n_users as u64));
    let login_start = Instant::now();
    let mut txs = Vec::with_capacity(n_x);
    let mut users = Vec::with_capacity(n_x);
    for k in 0..n_x {
        let (tx, rx) = mpsc::channel(CMD_QUEUE);
        txs.push(tx);
        users.push(tokio::task::spawn_local(xmpp::user_task(
            run.clone(),
            k,
            rx,
        )));
    }
    run.sip_phase.set(SipPhase::Setup);
    let engines = match sip_target {
        Some(target) => sip::spawn_engines(&run, target).await?,
        None => Vec::new(),
    };
    let deadline =
        Instant::now() + Duration::from_secs(60) + Duration::from_millis(10) * n_users as u32;
    wait_until(
        &run,
        deadline,
        &mut progress,
        || run.stats.borrow().login_resolved >= n_x && run.sip.borrow().setup_remaining == 0,
        |p| {
            let done = run.stats.borrow().login_resolved + run.sip.borrow().setup_users_done;
            p.set(done as u64, String::new());
        },
    )
    .await;
    run.sip_phase.set(SipPhase::Idle);
    {
        let mut s = run.stats.borrow_mut();
        let unresolved = n_x.saturating_sub(s.login_resolved);
        if unresolved > 0 {
            s.errors.add("login_phase_timeout", unresolved as u64);
        }
        let secs = s
            .last_login
            .map(|t| (t - login_start).as_secs_f64())
            .unwrap_or(0.0);
        let sip = run.sip.borrow();
        progress.done(format!(
            "{} XMPP logins ok, {} failed ({:.0}/s); SIP: {} PUBLISH ok, {} SUBSCRIBE ok",
            s.logins_ok,
            s.logins_failed,
            stats::per_second(s.logins_ok, secs),
            sip.publish.ok,
            sip.subscribe.ok
        ));
    }
    let login_secs = run
        .stats
        .borrow()
        .last_login
        .map(|t| (t - login_start).as_secs_f64())
        .unwrap_or(0.0);

    // 3. Roster setup.
    if run.set.opts.setup_rosters && run.set.half_ring > 0 && !run.stop.get() {
        progress.phase("roster setup", Some(run.stats.borrow().ready as u64));
        for tx in &txs {
            let _ = tx.try_send(Cmd::Setup);
        }
        let deadline =
            Instant::now() + Duration::from_secs(30) + Duration::from_millis(5) * n_x as u32;
        let ok = wait_until(
            &run,
            deadline,
            &mut progress,
            || {
                let s = run.stats.borrow();
                s.setup_complete >= run.online.iter().filter(|o| o.get()).count()
            },
            |p| p.set(run.stats.borrow().setup_complete as u64, String::new()),
        )
        .await;
        let online = run.online.iter().filter(|o| o.get()).count();
        let complete = run.stats.borrow().setup_complete;
        if !ok && complete < online {
            run.stats
                .borrow_mut()
                .errors
                .add("roster_setup_incomplete", (online - complete) as u64);
        }
        // Let the last approvals' presence settle.
        tokio::time::sleep(Duration::from_millis(200)).await;
        progress.done(format!(
            "{complete} of {online} online users have every ring contact as `both`"
        ));
    }

    // 4. Hold.
    if run.set.opts.hold > 0.0 && !run.stop.get() {
        let secs = run.set.opts.hold;
        progress.phase("hold", Some((secs * 10.0) as u64));
        let start = Instant::now();
        wait_until(
            &run,
            start + Duration::from_secs_f64(secs),
            &mut progress,
            || false,
            |p| p.set((start.elapsed().as_millis() / 100) as u64, String::new()),
        )
        .await;
        progress.done(format!(
            "{} XMPP sessions held idle {secs:.1} s",
            run.online.iter().filter(|o| o.get()).count()
        ));
    }

    // 5. Warm-up and measurement.
    let mut sched = Scheduler::new(n_x);
    run.sip_phase.set(SipPhase::Running);
    if run.set.opts.warmup > 0.0 && !run.stop.get() {
        let secs = run.set.opts.warmup;
        progress.phase("warm-up", Some((secs * 10.0) as u64));
        drive(
            &run,
            &txs,
            &mut sched,
            run.set.steps[0],
            secs,
            &mut progress,
        )
        .await;
        progress.done(format!("{secs:.1} s at {} updates/s", run.set.steps[0]));
    }
    let mut results: Vec<StepResult> = Vec::new();
    let window_start = Instant::now();
    run.window.set(Some((window_start, None)));
    let steps = run.set.steps.clone();
    for (i, &rate) in steps.iter().enumerate() {
        if run.stop.get() {
            break;
        }
        let secs = if run.set.ramped {
            run.set.opts.step_secs
        } else {
            run.set.opts.duration
        };
        let label = if run.set.ramped {
            format!("step {}/{} ({rate:.0}/s)", i + 1, steps.len())
        } else {
            "measure".to_string()
        };
        progress.phase(&label, Some((secs * 10.0) as u64));
        for c in run.rx_expected.iter().chain(&run.rx_received) {
            c.set(0);
        }
        {
            let mut st = run.step.borrow_mut();
            *st = Step::closed();
            st.start_ns = now_ns();
        }
        let t = Instant::now();
        drive(&run, &txs, &mut sched, rate, secs, &mut progress).await;
        let secs = t.elapsed().as_secs_f64();
        run.step.borrow_mut().end_ns = now_ns();
        // Drain: the deliveries of the last updates may still be on their way.
        let drain_start = Instant::now();
        let drain_end = drain_start + DRAIN_MAX;
        loop {
            let (r, e) = {
                let s = run.step.borrow();
                (s.received, s.expected)
            };
            if r >= e || Instant::now() >= drain_end {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let st = std::mem::replace(&mut *run.step.borrow_mut(), Step::closed());
        check_receivers(&run);
        let res = StepResult {
            rate,
            secs,
            drain_secs: drain_start.elapsed().as_secs_f64(),
            sent: st.sent,
            expected: st.expected,
            received: st.received,
            latency: st.latency,
        };
        let lost = res.expected.saturating_sub(res.received);
        let lat = res.latency.summary();
        let ok = lost == 0 && lat.p99_ms <= run.set.opts.p99_limit_ms;
        progress.done(format!(
            "{} sent ({:.0}/s), {} of {} delivered ({:.0}/s), lost {lost}, p50 {:.2} ms, p99 {:.2} ms{}",
            res.sent,
            stats::per_second(res.sent, secs),
            res.received,
            res.expected,
            stats::per_second(res.received, secs + res.drain_secs),
            lat.p50_ms,
            lat.p99_ms,
            if run.set.ramped {
                if ok { " - pass" } else { " - FAIL" }
            } else {
                ""
            }
        ));
        results.push(res);
        if run.set.ramped && !ok {
            break;
        }
    }
    let window_end = Instant::now();
    run.window.set(Some((window_start, Some(window_end))));
    let window_secs = (window_end - window_start).as_secs_f64();

    // 6. Logout.
    progress.phase("logout", Some((n_x + engines.len()) as u64));
    run.sip_phase.set(SipPhase::Logout);
    drop(txs);
    let deadline = Instant::now() + LOGOUT_MAX + Duration::from_secs(1);
    let mut all = users;
    all.extend(engines);
    let total = all.len();
    let done = wait_until(
        &run,
        deadline,
        &mut progress,
        || all.iter().all(|h| h.is_finished()),
        |p| {
            p.set(
                all.iter().filter(|h| h.is_finished()).count() as u64,
                String::new(),
            )
        },
    )
    .await;
    if !done {
        // A stop request lands here too: give the tasks the logout bound anyway.
        let end = Instant::now() + LOGOUT_MAX;
        while Instant::now() < end && !all.iter().all(|h| h.is_finished()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let unfinished = all.iter().filter(|h| !h.is_finished()).count();
    for h in &all {
        h.abort();
    }
    if unfinished > 0 {
        run.stats
            .borrow_mut()
            .errors
            .add("logout_incomplete", unfinished as u64);
    }
    progress.done(format!("{} of {total} tasks ended", total - unfinished));

    Ok(report::build(
        &run,
        login_secs,
        &results,
        window_secs,
        wall.elapsed().as_secs_f64(),
    ))
}
