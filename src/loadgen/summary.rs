//! The summary of a run: the JSON document of the contract (every key always present, zeros
//! for parts that did not run) and its human form.

use std::fmt::Write as _;

use serde::Serialize;

use super::stats::{per_second, Counts, Latency, LatencySummary};

/// Version of the JSON document.
pub const VERSION: u32 = 1;

/// The whole summary.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Document version ([`VERSION`]).
    pub version: u32,
    /// What was driven.
    pub target: Target,
    /// How many users of each protocol.
    pub users: Users,
    /// XMPP logins (connect to bound resource).
    pub logins: Logins,
    /// XEP-0077 registrations.
    pub registrations: Registrations,
    /// Measured presence updates, all steps together.
    pub presence: PresenceSummary,
    /// One entry per ramp step run (empty without `--ramp`).
    pub ramp: Vec<RampStep>,
    /// Presence updates/s of the highest passing ramp step (0 if none, or without a ramp).
    pub sustained_rate: f64,
    /// Deliveries/s of that step.
    pub sustained_delivered_per_s: f64,
    /// SIP transactions.
    pub sip: SipSummary,
    /// Redirects followed.
    pub redirects: Redirects,
    /// Errors by kind.
    pub errors: Counts,
    /// Measured time, seconds (the steps' sending time).
    pub duration_s: f64,
    /// Wall time of the whole run, seconds (not in the contract; added).
    pub wall_s: f64,
    /// Whether the run was stopped early by Ctrl-C (not in the contract; added).
    pub interrupted: bool,
    /// The first message of each error kind (for the human summary; not in the JSON).
    #[serde(skip)]
    pub error_samples: std::collections::BTreeMap<String, String>,
}

/// `target`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Target {
    /// XMPP HOST:PORT.
    pub xmpp: String,
    /// SIP HOST:PORT.
    pub sip: String,
    /// Domain.
    pub domain: String,
}

/// `users`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Users {
    /// XMPP users.
    pub xmpp: u64,
    /// SIP users.
    pub sip: u64,
}

/// `logins`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Logins {
    /// Logins that reached a bound resource.
    pub ok: u64,
    /// Users that never did.
    pub failed: u64,
    /// ok / (time from the first connect to the last bound resource).
    pub per_s: f64,
    /// Connect to bound resource (redirects included).
    pub latency: LatencySummary,
    /// The `--login-rounds` after the first (log in, then out; SaltedPassword cached).
    pub repeat: RepeatLogins,
}

/// `logins.repeat`: logins with the client's SaltedPassword cached (`--login-rounds`).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct RepeatLogins {
    /// Rounds measured (all but the first, or the only one).
    pub rounds: u32,
    /// Logins that reached a bound resource in those rounds.
    pub ok: u64,
    /// Those that did not.
    pub failed: u64,
    /// ok / the time of those rounds.
    pub per_s: f64,
    /// Connect to bound resource.
    pub latency: LatencySummary,
}

/// `registrations`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Registrations {
    /// Accounts created.
    pub ok: u64,
    /// Accounts that existed (`<conflict/>`).
    pub existing: u64,
    /// Other answers or no answer.
    pub failed: u64,
}

/// `presence`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct PresenceSummary {
    /// Measured updates sent.
    pub sent: u64,
    /// Deliveries expected: per update, the sender's online contacts with `from`/`both`.
    pub expected: u64,
    /// Deliveries received.
    pub received: u64,
    /// expected - received after the drain (0 if more arrived than expected).
    pub lost: u64,
    /// sent / measured seconds.
    pub sent_per_s: f64,
    /// received / (measured seconds + the drains after the steps).
    pub delivered_per_s: f64,
    /// Send to receipt.
    pub latency: LatencySummary,
}

/// One `ramp` entry.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct RampStep {
    /// Presence updates/s asked for.
    pub rate: f64,
    /// Updates sent.
    pub sent: u64,
    /// Deliveries expected.
    pub expected: u64,
    /// Deliveries received.
    pub received: u64,
    /// expected - received.
    pub lost: u64,
    /// received / (step seconds + the drain after it).
    pub delivered_per_s: f64,
    /// Send to receipt.
    pub latency: LatencySummary,
    /// No loss and p99 within the limit.
    pub ok: bool,
}

/// `TX`: one kind of SIP transaction (a logical request: digest retries, 302 and 423 retries
/// included).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Tx {
    /// Requests started.
    pub sent: u64,
    /// Ended with a 2xx.
    pub ok: u64,
    /// Ended with another final response or a timeout.
    pub failed: u64,
    /// 2xx during the measurement / measured seconds.
    pub per_s: f64,
    /// First send to the final 2xx (for cycles: SUBSCRIBE to the un-SUBSCRIBE's 2xx).
    pub latency: LatencySummary,
}

/// `sip`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SipSummary {
    /// PUBLISH (initial, modify, refresh, remove).
    pub publish: Tx,
    /// SUBSCRIBE of the held subscriptions (initial, refresh, un-SUBSCRIBE).
    pub subscribe: Tx,
    /// SUBSCRIBE → 2xx + NOTIFY → un-SUBSCRIBE cycles.
    pub cycle: Tx,
    /// NOTIFY requests received (each answered 200).
    pub notify_received: u64,
    /// Held subscriptions established (active or pending) when the measurement ended.
    pub active_subscriptions: u64,
    /// Of those, pending ones (not in the contract; added).
    pub pending_subscriptions: u64,
    /// Final responses by `METHOD code` (and `METHOD timeout`).
    pub codes: Counts,
}

/// `redirects`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Redirects {
    /// `see-other-host` stream errors followed.
    pub see_other_host: u64,
    /// XEP-0051 cxfr iqs followed.
    pub cxfr: u64,
    /// SIP 3xx followed.
    pub sip_302: u64,
}

/// Counts of one TX kind while the run goes on.
#[derive(Clone, Default)]
pub struct TxCounter {
    /// Started.
    pub sent: u64,
    /// 2xx.
    pub ok: u64,
    /// Other outcome.
    pub failed: u64,
    /// 2xx inside the measurement window.
    pub ok_in_window: u64,
    /// Latency of the 2xx ones.
    pub latency: Latency,
}

impl TxCounter {
    /// The JSON form, `per_s` over `secs` of measurement.
    pub fn summary(&self, secs: f64) -> Tx {
        Tx {
            sent: self.sent,
            ok: self.ok,
            failed: self.failed,
            per_s: per_second(self.ok_in_window, secs),
            latency: self.latency.summary(),
        }
    }
}

impl Summary {
    /// Whether anything could be done at all: some XMPP login or SIP request succeeded
    /// (a run without users of a protocol does not need it).
    pub fn did_anything(&self) -> bool {
        self.logins.ok > 0
            || self.sip.publish.ok + self.sip.subscribe.ok + self.sip.cycle.ok > 0
            || (self.users.xmpp == 0 && self.users.sip == 0)
    }

    /// The exit status of the contract: 0 when the run completed (errors counted), 1 when
    /// nothing could be done.
    pub fn exit_code(&self) -> u8 {
        if self.did_anything() {
            0
        } else {
            1
        }
    }

    /// The human summary, several lines.
    pub fn human(&self) -> String {
        let mut o = String::new();
        let lat = |l: &LatencySummary| {
            format!(
                "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.count
            )
        };
        let _ = writeln!(
            o,
            "loadgen: {} XMPP + {} SIP users against xmpp {} / sip {} (domain {}){}",
            self.users.xmpp,
            self.users.sip,
            self.target.xmpp,
            self.target.sip,
            self.target.domain,
            if self.interrupted {
                " - INTERRUPTED"
            } else {
                ""
            }
        );
        let r = &self.registrations;
        if r.ok + r.existing + r.failed > 0 {
            let _ = writeln!(
                o,
                "registrations  {} created, {} existing, {} failed",
                r.ok, r.existing, r.failed
            );
        }
        let _ = writeln!(
            o,
            "logins         {} ok, {} failed, {:.0}/s; {}",
            self.logins.ok,
            self.logins.failed,
            self.logins.per_s,
            lat(&self.logins.latency)
        );
        let r = &self.logins.repeat;
        if r.rounds > 0 {
            let _ = writeln!(
                o,
                "repeat logins  {} ok, {} failed, {:.0}/s over {} round(s); {}",
                r.ok,
                r.failed,
                r.per_s,
                r.rounds,
                lat(&r.latency)
            );
        }
        let p = &self.presence;
        let _ =
            writeln!(
            o,
            "presence       {} sent ({:.0}/s), {} of {} delivered ({:.0}/s), {} lost over {:.1} s",
            p.sent, p.sent_per_s, p.received, p.expected, p.delivered_per_s, p.lost, self.duration_s
        );
        let _ = writeln!(o, "  latency      {}", lat(&p.latency));
        for step in &self.ramp {
            let _ = writeln!(
                o,
                "  ramp {:>9.1}/s: {} sent, {}/{} delivered ({:.0}/s), lost {}, p99 {:.2} ms {}",
                step.rate,
                step.sent,
                step.received,
                step.expected,
                step.delivered_per_s,
                step.lost,
                step.latency.p99_ms,
                if step.ok { "pass" } else { "FAIL" }
            );
        }
        if !self.ramp.is_empty() {
            let _ = writeln!(
                o,
                "  sustained    {:.1} updates/s = {:.0} deliveries/s",
                self.sustained_rate, self.sustained_delivered_per_s
            );
        }
        if self.users.sip > 0 {
            for (name, tx) in [
                ("PUBLISH", &self.sip.publish),
                ("SUBSCRIBE", &self.sip.subscribe),
                ("cycles", &self.sip.cycle),
            ] {
                let _ = writeln!(
                    o,
                    "sip {name:<10} {} sent, {} ok, {} failed, {:.0}/s; {}",
                    tx.sent,
                    tx.ok,
                    tx.failed,
                    tx.per_s,
                    lat(&tx.latency)
                );
            }
            let _ = writeln!(
                o,
                "sip            {} NOTIFY received, {} subscriptions held ({} pending); codes {}",
                self.sip.notify_received,
                self.sip.active_subscriptions,
                self.sip.pending_subscriptions,
                serde_json::to_string(&self.sip.codes).unwrap_or_default()
            );
        }
        let rd = &self.redirects;
        if rd.see_other_host + rd.cxfr + rd.sip_302 > 0 {
            let _ = writeln!(
                o,
                "redirects      see-other-host {}, cxfr {}, SIP 302 {}",
                rd.see_other_host, rd.cxfr, rd.sip_302
            );
        }
        if self.errors.is_empty() {
            let _ = writeln!(o, "errors         none");
        } else {
            let _ = writeln!(
                o,
                "errors         {}",
                serde_json::to_string(&self.errors).unwrap_or_default()
            );
            for (k, m) in self.error_samples.iter().take(10) {
                let _ = writeln!(o, "  {k}: {m}");
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of the contract, as a JSON pointer.
    pub(crate) const CONTRACT_KEYS: &[&str] = &[
        "/version",
        "/target/xmpp",
        "/target/sip",
        "/target/domain",
        "/users/xmpp",
        "/users/sip",
        "/logins/ok",
        "/logins/failed",
        "/logins/per_s",
        "/logins/latency",
        "/registrations/ok",
        "/registrations/existing",
        "/registrations/failed",
        "/presence/sent",
        "/presence/expected",
        "/presence/received",
        "/presence/lost",
        "/presence/sent_per_s",
        "/presence/delivered_per_s",
        "/presence/latency",
        "/ramp",
        "/sustained_rate",
        "/sustained_delivered_per_s",
        "/sip/publish",
        "/sip/subscribe",
        "/sip/cycle",
        "/sip/notify_received",
        "/sip/active_subscriptions",
        "/sip/codes",
        "/redirects/see_other_host",
        "/redirects/cxfr",
        "/redirects/sip_302",
        "/errors",
        "/duration_s",
    ];
    const LAT_KEYS: &[&str] = &["count", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"];
    const TX_KEYS: &[&str] = &["sent", "ok", "failed", "per_s", "latency"];

    #[test]
    fn json_has_every_contract_key_even_when_empty() {
        let mut s = Summary {
            version: VERSION,
            ..Summary::default()
        };
        s.ramp.push(RampStep::default());
        let v = serde_json::to_value(&s).unwrap();
        for k in CONTRACT_KEYS {
            assert!(v.pointer(k).is_some(), "missing {k} in {v}");
        }
        for lat in ["/logins/latency", "/presence/latency", "/ramp/0/latency"] {
            for k in LAT_KEYS {
                assert!(v.pointer(&format!("{lat}/{k}")).is_some(), "{lat}/{k}");
            }
        }
        for tx in ["publish", "subscribe", "cycle"] {
            for k in TX_KEYS {
                assert!(v.pointer(&format!("/sip/{tx}/{k}")).is_some(), "{tx}/{k}");
            }
            for k in LAT_KEYS {
                assert!(v.pointer(&format!("/sip/{tx}/latency/{k}")).is_some());
            }
        }
        for k in [
            "rate",
            "sent",
            "expected",
            "received",
            "lost",
            "delivered_per_s",
            "ok",
        ] {
            assert!(v.pointer(&format!("/ramp/0/{k}")).is_some(), "ramp {k}");
        }
        assert!(v["errors"].is_object() && v["sip"]["codes"].is_object());
        assert_eq!(v["version"], 1);
    }

    #[test]
    fn exit_code_and_human_text() {
        let mut s = Summary {
            users: Users { xmpp: 2, sip: 0 },
            ..Summary::default()
        };
        assert_eq!(s.exit_code(), 1);
        s.errors.add("sasl_not-authorized", 2);
        s.error_samples
            .insert("sasl_not-authorized".into(), "SASL failure".into());
        let text = s.human();
        assert!(text.contains("sasl_not-authorized"), "{text}");
        s.logins.ok = 1;
        assert_eq!(s.exit_code(), 0);
    }
}
