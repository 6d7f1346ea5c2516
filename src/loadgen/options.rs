//! The `rendezvous loadgen` command line (the contract in `loadgen-contract.md`) and its
//! validation into [`Settings`]: user names and passwords from patterns, the protocol split,
//! the contact ring, the ramp. Pure: no I/O.

use std::path::PathBuf;

use super::error::LoadgenError;

/// SASL mechanism the XMPP virtual users authenticate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslChoice {
    /// SCRAM-SHA-256 (RFC 7677).
    #[value(name = "scram-sha-256")]
    ScramSha256,
    /// SCRAM-SHA-1 (RFC 5802).
    #[value(name = "scram-sha-1")]
    ScramSha1,
    /// PLAIN (RFC 4616): the password in the clear, only sane on loopback or under TLS.
    #[value(name = "plain")]
    Plain,
}

impl SaslChoice {
    /// The mechanism name as offered in `<mechanisms/>`.
    pub fn mechanism(self) -> &'static str {
        match self {
            SaslChoice::ScramSha256 => "SCRAM-SHA-256",
            SaslChoice::ScramSha1 => "SCRAM-SHA-1",
            SaslChoice::Plain => "PLAIN",
        }
    }
}

/// When to draw the progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// When stderr is a terminal.
    Auto,
    /// Always (on stderr).
    Always,
    /// Never: one line per phase on stderr instead.
    Never,
}

/// The options of `rendezvous loadgen` (every one has a default). Users
/// `first .. first+users-1` are named from `--pattern`; the first
/// `users - round(users * sip-share)` of them are XMPP users, the rest SIP users.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// XMPP target HOST:PORT (for a cluster: its primary).
    #[arg(long, default_value = "127.0.0.1:5222", value_name = "HOST:PORT")]
    pub xmpp: String,
    /// SIP target HOST:PORT (UDP).
    #[arg(long, default_value = "127.0.0.1:5060", value_name = "HOST:PORT")]
    pub sip: String,
    /// The users' domain (JIDs name@DOMAIN, AORs sip:name@DOMAIN).
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Number of virtual users.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub users: usize,
    /// User name; `{}` is replaced by the user's index.
    #[arg(long, default_value = "user{}", value_name = "PAT")]
    pub pattern: String,
    /// Index of the first user.
    #[arg(long, default_value_t = 1, value_name = "I")]
    pub first: u64,
    /// Password; `{}` is replaced by the user's index.
    #[arg(long, default_value = "pass{}", value_name = "PAT")]
    pub password: String,
    /// Create every account first with XEP-0077 in-band registration (an existing account
    /// is fine), then log in.
    #[arg(long)]
    pub register: bool,
    /// Contacts per XMPP user: the ring i±1 .. i±K/2 among the XMPP users (K even).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub roster: usize,
    /// Before measuring, make the ring contacts mutual (`both`) with subscription requests
    /// and approvals, and wait (bounded) until every roster shows it.
    #[arg(long)]
    pub setup_rosters: bool,
    /// Share of SIP users, 0.0 ..= 1.0; the rest are XMPP users.
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    pub sip_share: f64,
    /// Logins (and registrations, initial SIP requests) in flight at once.
    #[arg(long, default_value_t = 50, value_name = "C")]
    pub login_concurrency: usize,
    /// Before the run, R rounds in which every XMPP user logs in and out again, measured as
    /// `logins.repeat`: the first round caches each user's SaltedPassword (RFC 5802 §5.1, as
    /// real clients do), so the later rounds measure the server's side of SCRAM rather than
    /// this tool's PBKDF2. 0: none.
    #[arg(long, default_value_t = 0, value_name = "R")]
    pub login_rounds: u32,
    /// SASL mechanism.
    #[arg(long, value_enum, default_value = "scram-sha-256", value_name = "MECH")]
    pub sasl: SaslChoice,
    /// Presence updates per second over all XMPP users (0: only the initial presence).
    #[arg(long, default_value_t = 0.0, value_name = "R")]
    pub presence_rate: f64,
    /// Step the presence rate START, START*FACTOR, ... <= MAX, each step --step-secs long;
    /// stops at the first step with a loss or p99 above --p99-limit-ms.
    #[arg(long, value_name = "START:FACTOR:MAX")]
    pub ramp: Option<String>,
    /// Length of one ramp step, seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub step_secs: f64,
    /// A ramp step passes when its delivery latency p99 is at most this (and nothing is lost).
    #[arg(long, default_value_t = 100.0, value_name = "MS")]
    pub p99_limit_ms: f64,
    /// SIP PUBLISH requests per second over all SIP users.
    #[arg(long, default_value_t = 0.0, value_name = "R")]
    pub publish_rate: f64,
    /// SUBSCRIBEs held per SIP user, to the next SIP users' presence.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub subscribes: usize,
    /// SUBSCRIBE -> 200 + NOTIFY -> un-SUBSCRIBE cycles per second over all SIP users.
    #[arg(long, default_value_t = 0.0, value_name = "R")]
    pub subscribe_cycle_rate: f64,
    /// Measured time, seconds (without --ramp).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub duration: f64,
    /// Warm-up before measuring, seconds (same load, not counted).
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub warmup: f64,
    /// Follow see-other-host stream errors, the XEP-0051 cxfr iq and SIP 302.
    #[arg(long)]
    pub follow_redirects: bool,
    /// After login and roster setup keep every session idle this long, then measure.
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    pub hold: f64,
    /// Write the JSON summary to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Progress bar on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            xmpp: "127.0.0.1:5222".into(),
            sip: "127.0.0.1:5060".into(),
            domain: "localhost".into(),
            users: 100,
            pattern: "user{}".into(),
            first: 1,
            password: "pass{}".into(),
            register: false,
            roster: 0,
            setup_rosters: false,
            sip_share: 0.0,
            login_concurrency: 50,
            login_rounds: 0,
            sasl: SaslChoice::ScramSha256,
            presence_rate: 0.0,
            ramp: None,
            step_secs: 5.0,
            p99_limit_ms: 100.0,
            publish_rate: 0.0,
            subscribes: 0,
            subscribe_cycle_rate: 0.0,
            duration: 10.0,
            warmup: 2.0,
            follow_redirects: false,
            hold: 0.0,
            json: None,
            progress: ProgressMode::Auto,
        }
    }
}

/// `--ramp START:FACTOR:MAX`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp {
    /// First rate, updates/s.
    pub start: f64,
    /// Each step multiplies the rate by this (> 1).
    pub factor: f64,
    /// No step above this rate.
    pub max: f64,
}

/// Most steps a ramp may have (a bound on the run time).
pub const MAX_RAMP_STEPS: usize = 64;

impl Ramp {
    /// Parses `START:FACTOR:MAX`: START > 0, FACTOR > 1, MAX >= START, at most
    /// [`MAX_RAMP_STEPS`] steps.
    pub fn parse(s: &str) -> Result<Ramp, LoadgenError> {
        let bad = |why: &str| LoadgenError::BadOption(format!("--ramp {s:?}: {why}"));
        let parts: Vec<&str> = s.split(':').collect();
        let [start, factor, max] = parts.as_slice() else {
            return Err(bad("expected START:FACTOR:MAX"));
        };
        let num = |v: &str, what: &str| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(&format!("{what} is not a number")))
        };
        let ramp = Ramp {
            start: num(start, "START")?,
            factor: num(factor, "FACTOR")?,
            max: num(max, "MAX")?,
        };
        if ramp.start <= 0.0 {
            return Err(bad("START must be > 0"));
        }
        if ramp.factor <= 1.0 {
            return Err(bad("FACTOR must be > 1"));
        }
        if ramp.max < ramp.start {
            return Err(bad("MAX must be >= START"));
        }
        if ramp.steps().len() > MAX_RAMP_STEPS {
            return Err(bad(&format!("more than {MAX_RAMP_STEPS} steps")));
        }
        Ok(ramp)
    }

    /// The rates START, START*FACTOR, ... up to MAX (a rate within 1e-9 relative of MAX
    /// counts as MAX), at most [`MAX_RAMP_STEPS`] + 1 of them.
    pub fn steps(&self) -> Vec<f64> {
        let mut out = Vec::new();
        let mut r = self.start;
        while r <= self.max * (1.0 + 1e-9) && out.len() <= MAX_RAMP_STEPS {
            out.push(r);
            r *= self.factor;
        }
        out
    }
}

/// Options checked and derived: what the run uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The options as given.
    pub opts: Options,
    /// XMPP users (indices `first .. first + n_xmpp`).
    pub n_xmpp: usize,
    /// SIP users (the indices after the XMPP users).
    pub n_sip: usize,
    /// Half the ring: contacts i±1 .. i±half.
    pub half_ring: usize,
    /// The presence rates of the measured steps: one (--presence-rate) or the ramp's.
    pub steps: Vec<f64>,
    /// Whether the steps come from --ramp.
    pub ramped: bool,
    /// SUBSCRIBEs held per SIP user.
    pub subscribes: usize,
    /// Roster subscription cycles per second over all XMPP users (`rendezvous replay`:
    /// `<presence type='subscribe'/>` → `subscribed` → `unsubscribe`); 0 in `loadgen`.
    pub(crate) xmpp_subscribe_rate: f64,
    /// No progress lines at all (`rendezvous replay` runs many batches and draws its own).
    pub(crate) quiet: bool,
}

fn finite_at_least(v: f64, min: f64, name: &str) -> Result<f64, LoadgenError> {
    if v.is_finite() && v >= min {
        Ok(v)
    } else {
        Err(LoadgenError::BadOption(format!(
            "--{name} {v}: must be a number >= {min}"
        )))
    }
}

/// Largest accepted rate (updates, PUBLISHes or cycles per second).
const MAX_RATE: f64 = 10_000_000.0;
/// Largest accepted duration of any phase, seconds (one day).
const MAX_SECS: f64 = 86_400.0;
/// Most virtual users one process accepts.
pub const MAX_USERS: usize = 1_000_000;

impl Settings {
    /// Checks the options; every refusal names the option.
    pub fn new(opts: Options) -> Result<Settings, LoadgenError> {
        let bad = |s: String| Err(LoadgenError::BadOption(s));
        if opts.users == 0 || opts.users > MAX_USERS {
            return bad(format!("--users {}: must be 1 ..= {MAX_USERS}", opts.users));
        }
        if !opts.pattern.contains("{}") && opts.users > 1 {
            return bad(format!(
                "--pattern {:?}: must contain {{}} (replaced by the user index) when --users > 1",
                opts.pattern
            ));
        }
        if opts.pattern.is_empty() || opts.password.is_empty() {
            return bad("--pattern and --password must not be empty".into());
        }
        if opts.domain.is_empty() || opts.domain.contains(['/', '@', ' ', '<', '>', '\'', '"']) {
            return bad(format!("--domain {:?}: not a domain", opts.domain));
        }
        for (name, v) in [("xmpp", &opts.xmpp), ("sip", &opts.sip)] {
            if split_host_port(v).is_none() {
                return bad(format!("--{name} {v:?}: expected HOST:PORT"));
            }
        }
        if opts.first.checked_add(opts.users as u64).is_none() {
            return bad(format!("--first {}: too large", opts.first));
        }
        if !(opts.sip_share.is_finite() && (0.0..=1.0).contains(&opts.sip_share)) {
            return bad(format!(
                "--sip-share {}: must be 0.0 ..= 1.0",
                opts.sip_share
            ));
        }
        if opts.login_concurrency == 0 || opts.login_concurrency > 100_000 {
            return bad(format!(
                "--login-concurrency {}: must be 1 ..= 100000",
                opts.login_concurrency
            ));
        }
        for (name, v) in [
            ("presence-rate", opts.presence_rate),
            ("publish-rate", opts.publish_rate),
            ("subscribe-cycle-rate", opts.subscribe_cycle_rate),
        ] {
            if finite_at_least(v, 0.0, name)? > MAX_RATE {
                return bad(format!("--{name} {v}: at most {MAX_RATE}"));
            }
        }
        for (name, v, min) in [
            ("duration", opts.duration, 0.001),
            ("warmup", opts.warmup, 0.0),
            ("hold", opts.hold, 0.0),
            ("step-secs", opts.step_secs, 0.001),
        ] {
            if finite_at_least(v, min, name)? > MAX_SECS {
                return bad(format!("--{name} {v}: at most {MAX_SECS} s"));
            }
        }
        finite_at_least(opts.p99_limit_ms, 0.0, "p99-limit-ms")?;
        let n_sip = ((opts.users as f64) * opts.sip_share).round() as usize;
        let n_sip = n_sip.min(opts.users);
        let n_xmpp = opts.users - n_sip;
        if !opts.roster.is_multiple_of(2) {
            return bad(format!(
                "--roster {}: must be even (the ring i±1 .. i±K/2)",
                opts.roster
            ));
        }
        if opts.roster > 0 && opts.roster >= n_xmpp.max(1) {
            return bad(format!(
                "--roster {}: needs more than {} XMPP users (there are {n_xmpp})",
                opts.roster, opts.roster
            ));
        }
        if opts.subscribes > 0 && opts.subscribes >= n_sip.max(1) {
            return bad(format!(
                "--subscribes {}: needs more than {} SIP users (there are {n_sip})",
                opts.subscribes, opts.subscribes
            ));
        }
        if opts.subscribe_cycle_rate > 0.0 && n_sip < 2 {
            return bad("--subscribe-cycle-rate needs at least 2 SIP users".into());
        }
        if opts.publish_rate > 0.0 && n_sip == 0 {
            return bad("--publish-rate needs SIP users (--sip-share)".into());
        }
        let (steps, ramped) = match &opts.ramp {
            Some(r) => {
                if opts.presence_rate > 0.0 {
                    return bad("give --presence-rate or --ramp, not both".into());
                }
                (Ramp::parse(r)?.steps(), true)
            }
            None => (vec![opts.presence_rate], false),
        };
        if (ramped || opts.presence_rate > 0.0) && n_xmpp == 0 {
            return bad("presence updates need XMPP users (--sip-share < 1)".into());
        }
        Ok(Settings {
            half_ring: opts.roster / 2,
            subscribes: opts.subscribes,
            n_xmpp,
            n_sip,
            steps,
            ramped,
            opts,
            xmpp_subscribe_rate: 0.0,
            quiet: false,
        })
    }

    /// The index number of user slot `k` (0-based): `first + k`.
    pub fn index(&self, k: usize) -> u64 {
        self.opts.first + k as u64
    }

    /// The user name of slot `k`.
    pub fn name(&self, k: usize) -> String {
        fill(&self.opts.pattern, self.index(k))
    }

    /// The password of slot `k`.
    pub fn password(&self, k: usize) -> String {
        fill(&self.opts.password, self.index(k))
    }

    /// Seconds of measurement the steps add up to.
    pub fn measured_secs(&self) -> f64 {
        if self.ramped {
            self.opts.step_secs * self.steps.len() as f64
        } else {
            self.opts.duration
        }
    }
}

/// `pat` with every `{}` replaced by `index`.
pub fn fill(pat: &str, index: u64) -> String {
    pat.replace("{}", &index.to_string())
}

/// Splits `host:port` (`[v6]:port` too); `None` without a valid port or host.
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || (host.contains(':') && !s.starts_with('[')) {
        return None;
    }
    Some((host, port))
}

/// The ring contacts of slot `k` among `n`: k±1 .. k±half, without `k` and duplicates
/// (which only occur when the ring is smaller than 2·half + 1).
pub fn ring(k: usize, n: usize, half: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(2 * half);
    if n < 2 {
        return out;
    }
    for d in 1..=half {
        let d = d % n;
        for c in [(k + d) % n, (k + n - d) % n] {
            if c != k && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// The contacts slot `k` asks for subscription during roster setup: k+1 .. k+half.
pub fn ring_forward(k: usize, n: usize, half: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(half);
    if n < 2 {
        return out;
    }
    for d in 1..=half {
        let c = (k + d % n) % n;
        if c != k && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        o: Options,
    }

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut v = vec!["loadgen"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v).map_err(|e| e.to_string())?;
        Settings::new(cli.o).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = parse(&[]).unwrap();
        let o = &s.opts;
        assert_eq!(o.xmpp, "127.0.0.1:5222");
        assert_eq!(o.sip, "127.0.0.1:5060");
        assert_eq!(o.domain, "localhost");
        assert_eq!((o.users, o.first), (100, 1));
        assert_eq!(
            (o.pattern.as_str(), o.password.as_str()),
            ("user{}", "pass{}")
        );
        assert_eq!((o.roster, o.login_concurrency), (0, 50));
        assert_eq!(o.sasl, SaslChoice::ScramSha256);
        assert_eq!(
            (o.duration, o.warmup, o.step_secs, o.p99_limit_ms),
            (10.0, 2.0, 5.0, 100.0)
        );
        assert_eq!(o.progress, ProgressMode::Auto);
        assert_eq!((s.n_xmpp, s.n_sip), (100, 0));
        assert_eq!(s.steps, vec![0.0]);
        assert!(!s.ramped);
        // Options::default() is the same as the parsed defaults.
        let d = Options::default();
        assert_eq!(format!("{d:?}"), format!("{o:?}"));
    }

    #[test]
    fn patterns_are_filled_with_the_index() {
        let s = parse(&[
            "--users",
            "3",
            "--first",
            "7",
            "--pattern",
            "lg{}x",
            "--password",
            "p-{}-{}",
        ])
        .unwrap();
        assert_eq!(s.name(0), "lg7x");
        assert_eq!(s.name(2), "lg9x");
        assert_eq!(s.password(1), "p-8-8");
        // A fixed password is fine; a fixed name only for one user.
        assert!(parse(&["--users", "2", "--password", "same"]).is_ok());
        assert!(parse(&["--users", "1", "--pattern", "alice"]).is_ok());
        let e = parse(&["--users", "2", "--pattern", "alice"]).unwrap_err();
        assert!(e.contains("--pattern"), "{e}");
    }

    #[test]
    fn protocol_split_and_rings() {
        let s = parse(&[
            "--users",
            "10",
            "--sip-share",
            "0.3",
            "--roster",
            "4",
            "--subscribes",
            "2",
        ])
        .unwrap();
        assert_eq!((s.n_xmpp, s.n_sip, s.half_ring), (7, 3, 2));
        assert_eq!(ring(0, 7, 2), vec![1, 6, 2, 5]);
        assert_eq!(ring_forward(6, 7, 2), vec![0, 1]);
        // A ring smaller than K+1 has no duplicates.
        assert_eq!(ring(0, 3, 2), vec![1, 2]);
        assert_eq!(ring(0, 1, 2), Vec::<usize>::new());
    }

    #[test]
    fn ramp_parses_and_bad_ramps_are_refused() {
        let r = Ramp::parse("1000:2:8000").unwrap();
        assert_eq!(r.steps(), vec![1000.0, 2000.0, 4000.0, 8000.0]);
        assert_eq!(
            Ramp::parse("100:1.5:300").unwrap().steps(),
            vec![100.0, 150.0, 225.0]
        );
        for bad in [
            "",
            "1:2",
            "0:2:10",
            "10:1:100",
            "10:2:5",
            "a:2:3",
            "1:2:3:4",
            "1:1.0001:1e9",
        ] {
            assert!(Ramp::parse(bad).is_err(), "{bad}");
        }
        let s = parse(&["--ramp", "100:2:400", "--step-secs", "3"]).unwrap();
        assert!(s.ramped);
        assert_eq!(s.steps, vec![100.0, 200.0, 400.0]);
        assert_eq!(s.measured_secs(), 9.0);
        assert!(parse(&["--ramp", "100:2:400", "--presence-rate", "5"]).is_err());
    }

    #[test]
    fn bad_values_are_errors_naming_the_option() {
        for (args, opt) in [
            (&["--users", "0"][..], "--users"),
            (&["--sip-share", "1.5"][..], "--sip-share"),
            (&["--sip-share", "NaN"][..], "--sip-share"),
            (&["--roster", "3"][..], "--roster"),
            (&["--users", "4", "--roster", "4"][..], "--roster"),
            (&["--presence-rate=-1"][..], "--presence-rate"),
            (&["--duration", "0"][..], "--duration"),
            (&["--login-concurrency", "0"][..], "--login-concurrency"),
            (&["--xmpp", "localhost"][..], "--xmpp"),
            (&["--sip", "host:0"][..], "--sip"),
            (&["--subscribes", "1"][..], "--subscribes"),
            (&["--publish-rate", "5"][..], "--publish-rate"),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(opt), "{args:?}: {e}");
        }
        // clap refuses unknown values itself.
        assert!(parse(&["--sasl", "digest-md5"]).is_err());
        assert!(parse(&["--progress", "sometimes"]).is_err());
        assert!(parse(&["--users", "many"]).is_err());
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("127.0.0.1:5222"), Some(("127.0.0.1", 5222)));
        assert_eq!(split_host_port("[::1]:5060"), Some(("::1", 5060)));
        assert_eq!(
            split_host_port("example.com:5222"),
            Some(("example.com", 5222))
        );
        assert_eq!(split_host_port("::1:5060"), None);
        assert_eq!(split_host_port(":5060"), None);
        assert_eq!(split_host_port("host:99999"), None);
    }
}
