//! The summary of a run, built from its shared state and the outcome of each measured step.

use super::run::Run;
use super::stats::{per_second, Latency};
use super::summary::*;

/// One measured step's outcome.
pub(crate) struct StepResult {
    pub(crate) rate: f64,
    pub(crate) secs: f64,
    /// Time waited after the step for its last deliveries.
    pub(crate) drain_secs: f64,
    pub(crate) sent: u64,
    pub(crate) expected: u64,
    pub(crate) received: u64,
    pub(crate) latency: Latency,
}

/// Builds the summary from the run's state.
pub(crate) fn build(
    run: &Run,
    login_secs: f64,
    steps: &[StepResult],
    window_secs: f64,
    wall_s: f64,
) -> Summary {
    let set = &run.set;
    let s = run.stats.borrow();
    let sip = run.sip.borrow();
    let mut total = PresenceSummary::default();
    let mut lat = Latency::new();
    let mut duration = 0.0;
    let mut delivering = 0.0;
    let mut ramp = Vec::new();
    for st in steps {
        duration += st.secs;
        delivering += st.secs + st.drain_secs;
        total.sent += st.sent;
        total.expected += st.expected;
        total.received += st.received;
        lat.merge(&st.latency);
        let l = st.latency.summary();
        let lost = st.expected.saturating_sub(st.received);
        ramp.push(RampStep {
            rate: st.rate,
            sent: st.sent,
            expected: st.expected,
            received: st.received,
            lost,
            delivered_per_s: per_second(st.received, st.secs + st.drain_secs),
            latency: l,
            ok: lost == 0 && l.p99_ms <= set.opts.p99_limit_ms,
        });
    }
    total.lost = total.expected.saturating_sub(total.received);
    total.sent_per_s = per_second(total.sent, duration);
    total.delivered_per_s = per_second(total.received, delivering);
    total.latency = lat.summary();
    let (mut sustained_rate, mut sustained_delivered) = (0.0, 0.0);
    if set.ramped {
        for r in ramp.iter().take_while(|r| r.ok) {
            sustained_rate = r.rate;
            sustained_delivered = r.delivered_per_s;
        }
    } else {
        ramp.clear();
    }
    Summary {
        version: VERSION,
        target: Target {
            xmpp: set.opts.xmpp.clone(),
            sip: set.opts.sip.clone(),
            domain: set.opts.domain.clone(),
        },
        users: Users {
            xmpp: set.n_xmpp as u64,
            sip: set.n_sip as u64,
        },
        logins: Logins {
            ok: s.logins_ok,
            failed: s.logins_failed
                + (set.n_xmpp as u64).saturating_sub(s.logins_ok + s.logins_failed),
            per_s: per_second(s.logins_ok, login_secs),
            latency: s.login_latency.summary(),
            repeat: RepeatLogins {
                rounds: s.repeat_rounds,
                ok: s.repeat_ok,
                failed: s.repeat_failed,
                per_s: per_second(s.repeat_ok, s.repeat_secs),
                latency: s.repeat_latency.summary(),
            },
        },
        registrations: Registrations {
            ok: s.reg_ok,
            existing: s.reg_existing,
            failed: s.reg_failed,
        },
        presence: total,
        ramp,
        sustained_rate,
        sustained_delivered_per_s: sustained_delivered,
        sip: SipSummary {
            publish: sip.publish.summary(window_secs),
            subscribe: sip.subscribe.summary(window_secs),
            cycle: sip.cycle.summary(window_secs),
            notify_received: sip.notify_received,
            active_subscriptions: sip.active_subscriptions,
            pending_subscriptions: sip.pending_subscriptions,
            codes: sip.codes.clone(),
        },
        redirects: Redirects {
            see_other_host: s.see_other_host,
            cxfr: s.cxfr,
            sip_302: s.sip_302,
        },
        errors: s.errors.clone(),
        duration_s: duration,
        wall_s,
        interrupted: run.stop.get(),
        error_samples: s.samples.clone(),
    }
}
