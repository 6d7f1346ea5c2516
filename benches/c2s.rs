//! c2s benchmark: `cargo bench --bench c2s` (or `scripts/bench.sh`).
//!
//! The node runs as a separate process — `rendezvous node --config <tmp>/cluster.toml`, the
//! binary cargo builds for this bench (`CARGO_BIN_EXE_rendezvous`, i.e.
//! `target/release/rendezvous`; override with `RENDEZVOUS_BIN=/path`) — on a free loopback
//! port with `tls = "optional"` and `allow_plain_without_tls = true`. Its store is filled
//! directly before it starts: accounts share one password and one fixed salt (so setup does
//! not run 2 × PBKDF2 per user; the records are the ones `rendezvous user add` writes), and
//! the fan-out rosters are written with `put_roster`. The server's log goes to
//! `<tmp>/server.log` (its default level is `info`; set `RUST_LOG` to change it); on a
//! failure the tail is printed. The server is killed on every exit path (guard with `Drop`,
//! plus a watchdog after `BENCH_MAX_SECS`, default 300).
//!
//! Scenarios, in this order (each bounded in count and time; every socket wait gives up
//! after 10 s):
//! 1. Idle session memory: 10,000 sessions authenticated with SCRAM-SHA-256 and bound (8
//!    login threads), held open 2 s; server VmRSS after startup vs. with the sessions open;
//!    KiB per session. A sample of 100 sessions must answer an XEP-0199 ping, then all are
//!    closed with `</stream:stream>`. Runs first so its baseline is the fresh server;
//!    `BENCH_IDLE_ROUNDS=N` repeats it (retention vs. leak check; the figure is round 1).
//! 2. SCRAM logins/s: 8 client threads doing full logins (connect, stream, SCRAM-SHA-256
//!    with the client's SaltedPassword cached per salt as RFC 5802 §5.1 allows, restart,
//!    bind, `</stream:stream>` and wait for the server's close) for 10 s or 20,000 logins;
//!    logins/s, p50/p99 latency (connect to bind result), server CPU per login.
//! 3. Presence fan-out: a sender with 1,000 contacts (subscription "both" both ways); the
//!    contacts log in and send initial presence, then the sender. (a) flood: 500 updates
//!    `<presence><status>SEQ:NANOS</status></presence>` as fast as possible, waiting until
//!    all 500,000 have arrived; done 3 times (one ~1 s flood on 2 shared cores varies up to
//!    2x), the median gives delivered/s, and delivered / server CPU-seconds over all rounds
//!    the per-core figure. (b) paced at half the median flood rate (or `BENCH_PACED_RATE`
//!    delivered/s) for 5 s → p50/p99 latency from send to receipt. Receivers are tasks on
//!    `BENCH_READERS` (default 2) current-thread tokio runtimes that scan for `<status>`.
//!
//! The load generator and the server share the machine's cores, so the per-core figures
//! divide by the server's own CPU time (utime + stime from /proc/<pid>/stat); the load
//! generator's CPU and the load average are printed too. Anything unexpected (client errors,
//! disconnects, missing stanzas, failed pings, WARN/ERROR lines in the server log) is listed
//! under "problems" in the summary rather than worked around.
//!
//! Environment: `BENCH_ONLY=idle` (stop after scenario 1), `RENDEZVOUS_BIN`, `BENCH_MAX_SECS`, `BENCH_IDLE_SESSIONS` (default 10000,
//! lowered automatically to fit the open-files limit), `BENCH_IDLE_ROUNDS`, `BENCH_READERS`,
//! `BENCH_PACED_RATE`, `RUST_LOG` (passed to the server).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rendezvous::sip::digest::{self, Algorithm};
use rendezvous::store::{Account, Records, Roster, RosterItem, SledStore, Store};
use rendezvous::xmpp::sasl::scram::client as scram;
use rendezvous::xmpp::sasl::{ScramCredentials, ScramHash};
use rendezvous::xmpp::subscription::Subscription;

const DOMAIN: &str = "localhost";
const PASSWORD: &str = "bench-secret";
const SALT: &[u8] = b"rendezvous-bench-salt";
const ITERATIONS: u32 = 4096;
const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const OPEN: &str = "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' \
                    xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
/// Every blocking socket operation of the load generator gives up after this.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

// Scenario sizes and bounds.
const LOGIN_THREADS: usize = 8;
const LOGIN_SECS: f64 = 10.0;
const LOGIN_MAX: usize = 20_000;
const IDLE_SESSIONS: usize = 10_000;
const IDLE_THREADS: usize = 8;
const IDLE_LOGIN_BUDGET: Duration = Duration::from_secs(90);
const IDLE_SETTLE: Duration = Duration::from_secs(2);
const ROSTER: usize = 1_000;
const FLOOD: u64 = 500;
/// The flood is repeated; the median rate sets the paced rate (one ~1 s flood on 2 shared
/// cores varies by 2x from run to run).
const FLOOD_ROUNDS: u64 = 3;
const FLOOD_BUDGET: Duration = Duration::from_secs(30);
const PACED_SECS: f64 = 5.0;
const PACED_MAX_RATE: f64 = 1_000.0; // updates/s, bounds the latency sample count
const PACED_BASE: u64 = 1_000_000; // sequence numbers of paced updates start here
const DRAIN_BUDGET: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Clock shared by senders and receivers.

static START: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

// ---------------------------------------------------------------------------------------
// Server process.

struct Server {
    child: Arc<Mutex<Option<Child>>>,
    pid: u32,
    addr: SocketAddr,
    log: PathBuf,
}

fn kill(child: &Mutex<Option<Child>>) {
    let mut guard = match child.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(mut c) = guard.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Server {
    fn start(bin: &Path, config: &Path, addr: SocketAddr, log: PathBuf) -> Server {
        let log_file = std::fs::File::create(&log).expect("create server log");
        let child = Command::new(bin)
            .arg("node")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let pid = child.id();
        let server = Server {
            child: Arc::new(Mutex::new(Some(child))),
            pid,
            addr,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            server.check_alive("starting");
            // `rendezvous node` prints "… listening: xmpp ADDR" on stdout whatever the log
            // level once its listener is up.
            let text = std::fs::read_to_string(&server.log).unwrap_or_default();
            if text.contains("listening: xmpp") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "server did not print \"listening: xmpp\" within 20 s"
            );
            thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Panics (the guard then kills nothing and prints the log) if the server has exited.
    fn check_alive(&self, when: &str) {
        let mut guard = self.child.lock().unwrap();
        if let Some(c) = guard.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                guard.take();
                drop(guard);
                panic!("the server exited while {when}: {status}");
            }
        }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// utime + stime of the whole process, in seconds.
    fn cpu_secs(&self) -> f64 {
        let (u, s) = proc_cpu(&self.pid.to_string());
        u + s
    }

    /// (utime, stime) of the whole process, in seconds.
    fn cpu_split(&self) -> (f64, f64) {
        proc_cpu(&self.pid.to_string())
    }

    fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Lines of the server log at WARN or ERROR.
    fn log_problems(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .map(strip_ansi)
            .collect()
    }

    fn print_log_tail(&self, n: usize) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("--- last {n} lines of {} ---", self.log.display());
        for l in &lines[lines.len().saturating_sub(n)..] {
            eprintln!("{}", strip_ansi(l));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if thread::panicking() {
            self.print_log_tail(30);
        }
        kill(&self.child);
    }
}

/// (utime, stime) in seconds of `/proc/<pid>` (all threads).
fn proc_cpu(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    let rest = &stat[stat.rfind(')').expect("stat format") + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "(comm)": f[0] is field 3 (state); utime is field 14, stime field 15.
    let tick = |i: usize| f[i].parse::<u64>().unwrap_or(0) as f64 / clk_tck();
    (tick(11), tick(12))
}

/// CPU seconds used by this load generator so far.
fn self_cpu_secs() -> f64 {
    let (u, s) = proc_cpu("self");
    u + s
}

fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(1024)
}

/// The 1-minute load average.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

// ---------------------------------------------------------------------------------------
// Store population.

fn populate(store_dir: &Path, idle_users: usize) {
    let t = Instant::now();
    let store = SledStore::open(store_dir).expect("open store");
    let sha1 = ScramCredentials::derive(ScramHash::Sha1, PASSWORD, SALT, ITERATIONS);
    let sha256 = ScramCredentials::derive(ScramHash::Sha256, PASSWORD, SALT, ITERATIONS);
    let account = |name: String| Account {
        sip: Some(rendezvous::store::SipDigest {
            realm: "localhost".into(),
            md5: digest::ha1(Algorithm::Md5, &name, "localhost", PASSWORD),
            sha256: digest::ha1(Algorithm::Sha256, &name, "localhost", PASSWORD),
        }),
        username: name,
        scram_sha1: sha1.clone(),
        scram_sha256: sha256.clone(),
        created_unix: 1_700_000_000,
    };
    let names = (0..idle_users.max(LOGIN_THREADS))
        .map(|i| format!("u{i}"))
        .chain((0..ROSTER).map(|i| format!("f{i}")))
        .chain(std::iter::once("fsender".to_string()));
    let mut n = 0;
    for name in names {
        assert!(
            store.create_account(&account(name.clone())).unwrap(),
            "account {name} exists"
        );
        n += 1;
    }
    let sender_jid = format!("fsender@{DOMAIN}");
    let both = |jid: String| RosterItem {
        subscription: Subscription::Both,
        ..RosterItem::new(jid)
    };
    let mut sender_roster = Roster::default();
    for i in 0..ROSTER {
        let jid = format!("f{i}@{DOMAIN}");
        sender_roster.items.insert(jid.clone(), both(jid));
        let mut r = Roster::default();
        r.items.insert(sender_jid.clone(), both(sender_jid.clone()));
        store.put_roster(&format!("f{i}"), &r).unwrap();
    }
    store.put_roster("fsender", &sender_roster).unwrap();
    store.flush().unwrap();
    drop(store);
    println!(
        "setup: {n} accounts and {} rosters written in {:.2} s",
        ROSTER + 1,
        t.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// Raw-XML client; SCRAM-SHA-256 (RFC 5802 §3, RFC 7677) by the crate's one SCRAM client.

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from >= hay.len() || needle.len() > hay.len() - from {
        return None;
    }
    let first = needle[0];
    let mut i = from;
    let last = hay.len() - needle.len();
    while i <= last {
        match hay[i..=last].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => i += p,
        }
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.chars().count() > 600 {
        format!("{}…", s.chars().take(600).collect::<String>())
    } else {
        s.into_owned()
    }
}

/// Text content of the first `<name …>…</name>` in `el`.
fn text_of<'a>(el: &'a [u8], name: &str) -> &'a [u8] {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let Some(s) = find(el, open.as_bytes(), 0) else {
        return b"";
    };
    let Some(gt) = find(el, b">", s) else {
        return b"";
    };
    let end = find(el, close.as_bytes(), gt).unwrap_or(el.len());
    &el[(gt + 1).min(end)..end]
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let s =
            TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
        let _ = s.set_nodelay(true);
        s.set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|_| s.set_write_timeout(Some(IO_TIMEOUT)))
            .map_err(|e| format!("socket options: {e}"))?;
        Ok(Conn {
            s,
            buf: Vec::with_capacity(2048),
        })
    }

    fn send(&mut self, data: &[u8]) -> Result<(), String> {
        self.s.write_all(data).map_err(|e| format!("write: {e}"))
    }

    /// Reads until one of `needles` has arrived; returns its index and the data up to and
    /// including it (consumed). A stream error, EOF or `IO_TIMEOUT` is an error.
    fn read_until(&mut self, needles: &[&[u8]], what: &str) -> Result<(usize, Vec<u8>), String> {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut chunk = [0u8; 4096];
        loop {
            let best = needles
                .iter()
                .enumerate()
                .filter_map(|(k, n)| find(&self.buf, n, 0).map(|p| (p + n.len(), k)))
                .min();
            if let Some((end, k)) = best {
                return Ok((k, self.buf.drain(..end).collect()));
            }
            if find(&self.buf, b"</stream:error>", 0).is_some() {
                return Err(format!(
                    "stream error while waiting for {what}: {}",
                    lossy(&self.buf)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out after {IO_TIMEOUT:?} waiting for {what}; received {:?}",
                    lossy(&self.buf)
                ));
            }
            match self.s.read(&mut chunk) {
                Ok(0) => {
                    return Err(format!(
                        "server closed the connection while waiting for {what}; received {:?}",
                        lossy(&self.buf)
                    ))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(format!("read while waiting for {what}: {e}")),
            }
        }
    }

    /// Ends the stream (RFC 6120 §4.4) and waits for the server's close and EOF.
    fn close(mut self) -> Result<(), String> {
        self.send(b"</stream:stream>")?;
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut chunk = [0u8; 1024];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(format!("read while closing: {e}")),
            }
            if Instant::now() > deadline {
                return Err("server did not close the stream within 10 s".into());
            }
        }
    }
}

/// Client-side SaltedPassword, cached per (salt, iterations) as real clients do
/// (RFC 5802 §5.1).
fn salted_password(salt: &[u8], iterations: u32) -> Vec<u8> {
    type Cache = Mutex<HashMap<(Vec<u8>, u32), Vec<u8>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(&(salt.to_vec(), iterations)) {
        return v.clone();
    }
    let out = scram::salted_password(ScramHash::Sha256, PASSWORD, salt, iterations);
    cache
        .lock()
        .unwrap()
        .insert((salt.to_vec(), iterations), out.clone());
    out
}

/// Full login: stream, SCRAM-SHA-256 (the crate's SCRAM client), restart, bind. Returns the
/// bound connection and the time from connect to the bind result.
fn login(addr: SocketAddr, user: &str, resource: &str) -> Result<(Conn, Duration), String> {
    let t0 = Instant::now();
    let mut c = Conn::connect(addr)?;
    c.send(OPEN.as_bytes())?;
    let (_, features) = c.read_until(&[b"</stream:features>"], "stream features")?;
    if find(&features, b">SCRAM-SHA-256<", 0).is_none() {
        return Err(format!("SCRAM-SHA-256 not offered: {}", lossy(&features)));
    }
    let first = scram::ClientFirst::new(ScramHash::Sha256, user, &scram::new_nonce());
    c.send(
        format!(
            "<auth xmlns='{SASL_NS}' mechanism='SCRAM-SHA-256'>{}</auth>",
            B64.encode(first.message())
        )
        .as_bytes(),
    )?;
    let (k, challenge) = c.read_until(&[b"</challenge>", b"</failure>"], "SASL challenge")?;
    if k != 0 {
        return Err(format!("SASL failure: {}", lossy(&challenge)));
    }
    let server_first = B64
        .decode(text_of(&challenge, "challenge"))
        .map_err(|_| format!("bad challenge {}", lossy(&challenge)))?;
    let server_first = scram::parse_server_first(&first, &server_first)
        .map_err(|e| format!("server-first-message: {e}"))?;
    let salted = salted_password(&server_first.salt, server_first.iterations);
    let (client_final, server_sig) = first.client_final(&server_first, &salted);
    c.send(
        format!(
            "<response xmlns='{SASL_NS}'>{}</response>",
            B64.encode(client_final)
        )
        .as_bytes(),
    )?;
    let (k, success) = c.read_until(&[b"</success>", b"</failure>"], "SASL success")?;
    if k != 0 {
        return Err(format!("SASL failure: {}", lossy(&success)));
    }
    let expected = format!("v={}", B64.encode(server_sig));
    if B64.decode(text_of(&success, "success")).ok().as_deref() != Some(expected.as_bytes()) {
        return Err(format!("bad server signature in {}", lossy(&success)));
    }
    c.send(OPEN.as_bytes())?;
    let (_, features) = c.read_until(&[b"</stream:features>"], "features after SASL")?;
    if find(&features, b"urn:ietf:params:xml:ns:xmpp-bind", 0).is_none() {
        return Err(format!("bind not offered: {}", lossy(&features)));
    }
    c.send(
        format!(
            "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{resource}</resource></bind></iq>"
        )
        .as_bytes(),
    )?;
    let (_, reply) = c.read_until(&[b"</iq>"], "bind result")?;
    if find(&reply, b"type='result'", 0).is_none() {
        return Err(format!("bind failed: {}", lossy(&reply)));
    }
    Ok((c, t0.elapsed()))
}

// ---------------------------------------------------------------------------------------
// Statistics helpers.

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Errors seen in a scenario: counted, the first few kept verbatim.
#[derive(Default)]
struct Errors {
    count: AtomicUsize,
    first: Mutex<Vec<String>>,
}

impl Errors {
    fn add(&self, e: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first.lock().unwrap();
        if f.len() < 5 {
            f.push(e);
        }
    }

    fn report(&self, scenario: &str, problems: &mut Vec<String>) {
        let n = self.count.load(Ordering::Relaxed);
        if n > 0 {
            let first = self.first.lock().unwrap();
            let msg = format!("{scenario}: {n} client-side errors; first: {:?}", *first);
            println!("  !! {msg}");
            problems.push(msg);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Scenario 1: idle session memory.

struct IdleResult {
    sessions: usize,
    rss_before: u64,
    rss_after: u64,
    rss_closed: u64,
    login_rate: f64,
    alive: usize,
    sampled: usize,
}

fn idle_sessions(server: &Server, n: usize, problems: &mut Vec<String>) -> IdleResult {
    let rss_before = server.rss_kib();
    let errors = Arc::new(Errors::default());
    let t0 = Instant::now();
    let deadline = t0 + IDLE_LOGIN_BUDGET;
    let addr = server.addr;
    let handles: Vec<_> = (0..IDLE_THREADS)
        .map(|t| {
            let errors = errors.clone();
            thread::spawn(move || {
                let mut conns = Vec::with_capacity(n / IDLE_THREADS + 1);
                let mut i = t;
                while i < n && Instant::now() < deadline {
                    match login(addr, &format!("u{i}"), "idle") {
                        Ok((c, _)) => conns.push(c),
                        Err(e) => {
                            errors.add(format!("u{i}: {e}"));
                            if errors.count.load(Ordering::Relaxed) > 50 {
                                break;
                            }
                        }
                    }
                    i += IDLE_THREADS;
                }
                conns
            })
        })
        .collect();
    let mut conns: Vec<Conn> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("idle login thread"))
        .collect();
    let login_secs = t0.elapsed().as_secs_f64();
    errors.report("idle sessions", problems);
    if conns.len() < n {
        let msg = format!(
            "idle sessions: only {} of {n} sessions opened in {login_secs:.1} s",
            conns.len()
        );
        println!("  !! {msg}");
        problems.push(msg);
    }
    thread::sleep(IDLE_SETTLE);
    server.check_alive("holding idle sessions");
    let rss_after = server.rss_kib();
    // Proof that the sessions are alive: ping a sample.
    let step = (conns.len() / 100).max(1);
    let (mut alive, mut sampled) = (0, 0);
    for c in conns.iter_mut().step_by(step) {
        sampled += 1;
        let r = c
            .send(b"<iq type='get' id='bp'><ping xmlns='urn:xmpp:ping'/></iq>")
            .and_then(|_| c.read_until(&[b"/>", b"</iq>"], "ping result"));
        match r {
            Ok((_, reply)) if find(&reply, b"type='result'", 0).is_some() => alive += 1,
            Ok((_, reply)) => errors.add(format!("ping: {}", lossy(&reply))),
            Err(e) => errors.add(format!("ping: {e}")),
        }
    }
    if alive < sampled {
        let msg =
            format!("idle sessions: only {alive} of {sampled} sampled sessions answered a ping");
        println!("  !! {msg}");
        problems.push(msg);
    }
    // Close them all: send every closing tag first, then wait for each server close.
    let sessions = conns.len();
    for c in conns.iter_mut() {
        let _ = c.send(b"</stream:stream>");
    }
    let close_errors = Errors::default();
    let close_deadline = Instant::now() + Duration::from_secs(30);
    for c in conns {
        if Instant::now() > close_deadline {
            close_errors.add("closing took over 30 s; rest dropped".into());
            break;
        }
        let mut c = c;
        let _ = c.s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut chunk = [0u8; 512];
        loop {
            match c.s.read(&mut chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => {
                    close_errors.add(format!("waiting for the server's close: {e}"));
                    break;
                }
            }
        }
    }
    close_errors.report("idle sessions (close)", problems);
    thread::sleep(Duration::from_secs(1));
    let rss_closed = server.rss_kib();
    IdleResult {
        sessions,
        rss_before,
        rss_after,
        rss_closed,
        login_rate: sessions as f64 / login_secs,
        alive,
        sampled,
    }
}

// ---------------------------------------------------------------------------------------
// Scenario 2: SCRAM logins/s.

struct LoginResult {
    logins: usize,
    secs: f64,
    p50_us: u64,
    p99_us: u64,
    server_cpu: f64,
}

fn logins(server: &Server, users: usize, problems: &mut Vec<String>) -> LoginResult {
    let done = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Errors::default());
    let addr = server.addr;
    let per_thread_users = users / LOGIN_THREADS;
    // Warm the client-side SaltedPassword cache so the first logins do not pay for it.
    let _ = salted_password(SALT, ITERATIONS);
    let cpu0 = server.cpu_secs();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(LOGIN_SECS);
    let handles: Vec<_> = (0..LOGIN_THREADS)
        .map(|t| {
            let (done, errors) = (done.clone(), errors.clone());
            thread::spawn(move || {
                let mut lat = Vec::with_capacity(LOGIN_MAX / LOGIN_THREADS + 16);
                let mut k = 0usize;
                while Instant::now() < end && done.fetch_add(1, Ordering::Relaxed) < LOGIN_MAX {
                    // Thread t uses users t, t+8, t+16, …: disjoint across threads.
                    let user = format!("u{}", t + LOGIN_THREADS * (k % per_thread_users.max(1)));
                    k += 1;
                    match login(addr, &user, "bench").and_then(|(c, d)| c.close().map(|_| d)) {
                        Ok(d) => lat.push(d.as_micros() as u64),
                        Err(e) => {
                            errors.add(format!("{user}: {e}"));
                            if errors.count.load(Ordering::Relaxed) > 50 {
                                break;
                            }
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("login thread"))
        .collect();
    let secs = t0.elapsed().as_secs_f64();
    let server_cpu = server.cpu_secs() - cpu0;
    server.check_alive("running logins");
    errors.report("logins", problems);
    lat.sort_unstable();
    LoginResult {
        logins: lat.len(),
        secs,
        p50_us: percentile(&lat, 50.0),
        p99_us: percentile(&lat, 99.0),
        server_cpu,
    }
}

// ---------------------------------------------------------------------------------------
// Scenario 3: presence fan-out.

#[derive(Default)]
struct FanShared {
    stop: AtomicBool,
    flood_delivered: AtomicU64,
    flood_expected: AtomicU64,
    flood_done_ns: AtomicU64,
    paced_delivered: AtomicU64,
    paced_expected: AtomicU64,
    paced_done_ns: AtomicU64,
    disconnects: AtomicU64,
    errors: Errors,
}

/// Per-receiver outcome.
struct Received {
    flood: u64,
    paced: u64,
}

struct ReaderOut {
    receivers: Vec<Received>,
    flood_lat_us: Vec<u64>,
    paced_lat_us: Vec<u64>,
}

/// Finds complete `<status>SEQ:NANOS</status>` in `buf`, records them, and drops what was
/// consumed (keeping a possible partial tag at the end).
fn scan_statuses(buf: &mut Vec<u8>, mut on_status: impl FnMut(u64, u64)) {
    const OPEN: &[u8] = b"<status>";
    const CLOSE: &[u8] = b"</status>";
    let mut pos = 0;
    loop {
        let Some(i) = find(buf, OPEN, pos) else {
            let keep_from = buf.len().saturating_sub(OPEN.len() - 1).max(pos);
            buf.drain(..keep_from);
            return;
        };
        let Some(j) = find(buf, CLOSE, i + OPEN.len()) else {
            buf.drain(..i);
            return;
        };
        let text = &buf[i + OPEN.len()..j];
        if let Some(colon) = text.iter().position(|&b| b == b':') {
            let num = |b: &[u8]| {
                std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
            };
            if let (Some(seq), Some(ns)) = (num(&text[..colon]), num(&text[colon + 1..])) {
                on_status(seq, ns);
            }
        }
        pos = j + CLOSE.len();
    }
}

async fn receive(
    stream: std::net::TcpStream,
    shared: Arc<FanShared>,
    flood_lat: Rc<RefCell<Vec<u64>>>,
    paced_lat: Rc<RefCell<Vec<u64>>>,
) -> Received {
    use tokio::io::AsyncReadExt;
    let mut got = Received { flood: 0, paced: 0 };
    let _ = stream.set_nonblocking(true);
    let mut s = match tokio::net::TcpStream::from_std(stream) {
        Ok(s) => s,
        Err(e) => {
            shared.errors.add(format!("receiver socket: {e}"));
            return got;
        }
    };
    let mut chunk = vec![0u8; 16 * 1024];
    let mut buf: Vec<u8> = Vec::with_capacity(32 * 1024);
    while !shared.stop.load(Ordering::Relaxed) {
        let n = match tokio::time::timeout(Duration::from_millis(100), s.read(&mut chunk)).await {
            Err(_) => continue,
            Ok(Ok(0)) => {
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
                shared.errors.add(format!(
                    "receiver: server closed the connection; last data {:?}",
                    lossy(&buf)
                ));
                break;
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
                shared.errors.add(format!("receiver read: {e}"));
                break;
            }
        };
        let data = &chunk[..n];
        if find(data, b"<stream:error", 0).is_some() {
            shared
                .errors
                .add(format!("receiver got a stream error: {}", lossy(data)));
        }
        buf.extend_from_slice(data);
        let now = now_ns();
        let (mut nf, mut np) = (0u64, 0u64);
        scan_statuses(&mut buf, |seq, sent| {
            let lat = now.saturating_sub(sent) / 1000;
            if seq >= PACED_BASE {
                np += 1;
                paced_lat.borrow_mut().push(lat);
            } else {
                nf += 1;
                flood_lat.borrow_mut().push(lat);
            }
        });
        if nf > 0 {
            got.flood += nf;
            let before = shared.flood_delivered.fetch_add(nf, Ordering::AcqRel);
            let expected = shared.flood_expected.load(Ordering::Acquire);
            if expected > 0 && before < expected && before + nf >= expected {
                shared.flood_done_ns.store(now, Ordering::Release);
            }
        }
        if np > 0 {
            got.paced += np;
            let before = shared.paced_delivered.fetch_add(np, Ordering::AcqRel);
            let expected = shared.paced_expected.load(Ordering::Acquire);
            if expected > 0 && before < expected && before + np >= expected {
                shared.paced_done_ns.store(now, Ordering::Release);
            }
        }
    }
    got
}

fn reader_thread(socks: Vec<std::net::TcpStream>, shared: Arc<FanShared>) -> ReaderOut {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let flood_lat = Rc::new(RefCell::new(Vec::with_capacity(
        socks.len() * (FLOOD * FLOOD_ROUNDS) as usize,
    )));
    let paced_lat = Rc::new(RefCell::new(Vec::new()));
    let receivers = local.block_on(&rt, async {
        let handles: Vec<_> = socks
            .into_iter()
            .map(|s| {
                tokio::task::spawn_local(receive(
                    s,
                    shared.clone(),
                    flood_lat.clone(),
                    paced_lat.clone(),
                ))
            })
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.expect("receiver task"));
        }
        out
    });
    let flood_lat_us = std::mem::take(&mut *flood_lat.borrow_mut());
    let paced_lat_us = std::mem::take(&mut *paced_lat.borrow_mut());
    ReaderOut {
        receivers,
        flood_lat_us,
        paced_lat_us,
    }
}

struct FanResult {
    flood_rounds: usize,
    flood_rate: f64,
    flood_rate_min: f64,
    flood_rate_max: f64,
    flood_delivered: u64,
    flood_secs: f64,
    flood_cpu: f64,
    flood_user: f64,
    flood_sys: f64,
    flood_gen_cpu: f64,
    paced_gen_cpu: f64,
    flood_p50_us: u64,
    flood_p99_us: u64,
    paced_updates: u64,
    paced_rate: f64,
    paced_delivered: u64,
    paced_expected: u64,
    paced_p50_us: u64,
    paced_p99_us: u64,
    paced_max_us: u64,
    paced_cpu: f64,
    paced_secs: f64,
}

fn fan_out(server: &Server, readers: usize, problems: &mut Vec<String>) -> FanResult {
    let addr = server.addr;
    let shared = Arc::new(FanShared::default());
    // The contacts log in and send initial presence; each waits for its own presence to come
    // back, which proves the server has processed it (RFC 6121 §4.2.2).
    let t0 = Instant::now();
    let handles: Vec<_> = (0..LOGIN_THREADS)
        .map(|t| {
            let shared = shared.clone();
            thread::spawn(move || {
                let mut socks = Vec::new();
                for i in (t..ROSTER).step_by(LOGIN_THREADS) {
                    let r = login(addr, &format!("f{i}"), "r").and_then(|(mut c, _)| {
                        c.send(b"<presence/>")?;
                        c.read_until(&[b"<presence"], "own initial presence")?;
                        Ok(c)
                    });
                    match r {
                        Ok(c) => socks.push(c.s),
                        Err(e) => shared.errors.add(format!("f{i}: {e}")),
                    }
                }
                socks
            })
        })
        .collect();
    let socks: Vec<TcpStream> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("contact login thread"))
        .collect();
    println!(
        "  fan-out setup: {} contacts online in {:.2} s",
        socks.len(),
        t0.elapsed().as_secs_f64()
    );
    let receivers_online = socks.len() as u64;
    let mut groups: Vec<Vec<TcpStream>> = (0..readers).map(|_| Vec::new()).collect();
    for (i, s) in socks.into_iter().enumerate() {
        groups[i % readers].push(s);
    }
    let reader_handles: Vec<_> = groups
        .into_iter()
        .map(|g| {
            let shared = shared.clone();
            thread::spawn(move || reader_thread(g, shared))
        })
        .collect();

    // The sender, with a thread draining (and counting) what it receives.
    let (sender, _) = login(addr, "fsender", "s").expect("sender login");
    let mut out = sender.s;
    let mut inp = out.try_clone().expect("clone sender socket");
    let _ = inp.set_read_timeout(Some(Duration::from_millis(100)));
    let sender_presences = Arc::new(AtomicU64::new(0));
    let drain = {
        let (shared, count) = (shared.clone(), sender_presences.clone());
        let mut carry = sender.buf;
        thread::spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            while !shared.stop.load(Ordering::Relaxed) {
                match inp.read(&mut chunk) {
                    Ok(0) => {
                        shared
                            .errors
                            .add("sender: server closed the connection".into());
                        shared.disconnects.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Ok(n) => {
                        carry.extend_from_slice(&chunk[..n]);
                        let mut pos = 0;
                        while let Some(i) = find(&carry, b"<presence", pos) {
                            count.fetch_add(1, Ordering::Relaxed);
                            pos = i + 1;
                        }
                        if find(&carry, b"<stream:error", 0).is_some() {
                            shared.errors.add(format!("sender: {}", lossy(&carry)));
                        }
                        let keep = carry.len().saturating_sub(8).max(pos);
                        carry.drain(..keep);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => {
                        shared.errors.add(format!("sender read: {e}"));
                        break;
                    }
                }
            }
        })
    };
    out.write_all(b"<presence/>")
        .expect("sender initial presence");
    // Its own presence back, plus one probe answer per online contact.
    let want = receivers_online + 1;
    let wait_end = Instant::now() + Duration::from_secs(10);
    while sender_presences.load(Ordering::Relaxed) < want && Instant::now() < wait_end {
        thread::sleep(Duration::from_millis(5));
    }
    let got = sender_presences.load(Ordering::Relaxed);
    if got < want {
        let msg = format!(
            "fan-out: the sender got {got} presences after its initial presence, expected {want} \
             (own + one per available contact)"
        );
        println!("  !! {msg}");
        problems.push(msg);
    }

    // (a) Flood, FLOOD_ROUNDS times; each round waits until every stanza has arrived.
    let expected_flood = FLOOD * receivers_online;
    let mut rounds: Vec<(u64, f64, f64)> = Vec::new(); // (delivered, secs, server CPU)
    let (user0, sys0) = server.cpu_split();
    let gen0 = self_cpu_secs();
    for round in 0..FLOOD_ROUNDS {
        shared.flood_done_ns.store(0, Ordering::Release);
        shared.flood_delivered.store(0, Ordering::Release);
        shared
            .flood_expected
            .store(expected_flood, Ordering::Release);
        let cpu0 = server.cpu_secs();
        let start = now_ns();
        for seq in 1..=FLOOD {
            let stanza = format!(
                "<presence><status>{}:{}</status></presence>",
                round * 1000 + seq,
                now_ns()
            );
            out.write_all(stanza.as_bytes()).expect("sender write");
        }
        let flood_end = Instant::now() + FLOOD_BUDGET;
        while shared.flood_done_ns.load(Ordering::Acquire) == 0 && Instant::now() < flood_end {
            thread::sleep(Duration::from_millis(1));
        }
        let cpu = server.cpu_secs() - cpu0;
        let done = shared.flood_done_ns.load(Ordering::Acquire);
        let delivered = shared.flood_delivered.load(Ordering::Acquire);
        let secs = if done > 0 {
            (done - start) as f64 / 1e9
        } else {
            let msg = format!(
                "fan-out flood round {}: only {delivered} of {expected_flood} stanzas delivered within {FLOOD_BUDGET:?}",
                round + 1
            );
            println!("  !! {msg}");
            problems.push(msg);
            (now_ns() - start) as f64 / 1e9
        };
        println!(
            "  flood round {}: {delivered} delivered in {secs:.3} s = {:.0}/s, server CPU {cpu:.2} s = {:.0}/CPU-s",
            round + 1,
            delivered as f64 / secs,
            delivered as f64 / cpu.max(1e-9)
        );
        rounds.push((delivered, secs, cpu));
        if done == 0 {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let (user1, sys1) = server.cpu_split();
    let flood_gen_cpu = self_cpu_secs() - gen0;
    let mut rates: Vec<f64> = rounds.iter().map(|r| r.0 as f64 / r.1).collect();
    rates.sort_by(f64::total_cmp);
    let flood_rate = rates[rates.len() / 2];
    let flood_delivered: u64 = rounds.iter().map(|r| r.0).sum();
    let flood_secs: f64 = rounds.iter().map(|r| r.1).sum();
    let flood_cpu: f64 = rounds.iter().map(|r| r.2).sum();

    // (b) Paced at half the flood's delivered rate (or BENCH_PACED_RATE delivered/s).
    let target = std::env::var("BENCH_PACED_RATE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(flood_rate / 2.0);
    let rate = (target / receivers_online.max(1) as f64).clamp(1.0, PACED_MAX_RATE);
    let updates = ((rate * PACED_SECS).round() as u64).max(1);
    shared
        .paced_expected
        .store(updates * receivers_online, Ordering::Release);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let cpu0 = server.cpu_secs();
    let gen0 = self_cpu_secs();
    let t_paced = Instant::now();
    for k in 0..updates {
        let due = t_paced + interval * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let stanza = format!(
            "<presence><status>{}:{}</status></presence>",
            PACED_BASE + k,
            now_ns()
        );
        out.write_all(stanza.as_bytes()).expect("sender write");
    }
    let drain_end = Instant::now() + DRAIN_BUDGET;
    while shared.paced_done_ns.load(Ordering::Acquire) == 0 && Instant::now() < drain_end {
        thread::sleep(Duration::from_millis(1));
    }
    let paced_secs = t_paced.elapsed().as_secs_f64();
    let paced_cpu = server.cpu_secs() - cpu0;
    let paced_gen_cpu = self_cpu_secs() - gen0;
    let paced_delivered = shared.paced_delivered.load(Ordering::Acquire);
    let paced_expected = updates * receivers_online;
    if paced_delivered < paced_expected {
        let msg =
            format!("fan-out paced: only {paced_delivered} of {paced_expected} stanzas delivered");
        println!("  !! {msg}");
        problems.push(msg);
    }
    server.check_alive("running fan-out");

    // Stop the readers and collect.
    shared.stop.store(true, Ordering::Relaxed);
    let mut flood_lat = Vec::new();
    let mut paced_lat = Vec::new();
    let mut short = 0;
    for h in reader_handles {
        let r = h.join().expect("reader thread");
        short += r
            .receivers
            .iter()
            .filter(|x| x.flood < FLOOD * rounds.len() as u64 || x.paced < updates)
            .count();
        flood_lat.extend(r.flood_lat_us);
        paced_lat.extend(r.paced_lat_us);
    }
    let _ = drain.join();
    let _ = out.write_all(b"</stream:stream>");
    if short > 0 {
        let msg = format!("fan-out: {short} receivers missed stanzas");
        println!("  !! {msg}");
        problems.push(msg);
    }
    let d = shared.disconnects.load(Ordering::Relaxed);
    if d > 0 {
        let msg = format!("fan-out: {d} connections closed by the server during the run");
        println!("  !! {msg}");
        problems.push(msg);
    }
    shared.errors.report("fan-out", problems);
    flood_lat.sort_unstable();
    paced_lat.sort_unstable();
    FanResult {
        flood_rounds: rounds.len(),
        flood_rate,
        flood_rate_min: rates[0],
        flood_rate_max: rates[rates.len() - 1],
        flood_delivered,
        flood_secs,
        flood_cpu,
        flood_user: user1 - user0,
        flood_sys: sys1 - sys0,
        flood_gen_cpu,
        paced_gen_cpu,
        flood_p50_us: percentile(&flood_lat, 50.0),
        flood_p99_us: percentile(&flood_lat, 99.0),
        paced_updates: updates,
        paced_rate: rate,
        paced_delivered,
        paced_expected,
        paced_p50_us: percentile(&paced_lat, 50.0),
        paced_p99_us: percentile(&paced_lat, 99.0),
        paced_max_us: paced_lat.last().copied().unwrap_or(0),
        paced_cpu,
        paced_secs,
    }
}

// ---------------------------------------------------------------------------------------

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let _ = now_ns();
    let wall = Instant::now();
    let bin = std::env::var_os("RENDEZVOUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rendezvous")));
    assert!(bin.exists(), "server binary {} not found", bin.display());
    let max_secs = env_usize("BENCH_MAX_SECS", 300) as u64;
    let readers = env_usize("BENCH_READERS", 2).max(1);
    let fd_limit = open_files_limit();
    let mut idle_n = env_usize("BENCH_IDLE_SESSIONS", IDLE_SESSIONS);
    // Each side holds one fd per session, plus headroom for the rest.
    let fit = fd_limit.saturating_sub(1_500);
    let mut problems: Vec<String> = Vec::new();
    if idle_n > fit {
        let msg = format!(
            "open-files limit is {fd_limit}: idle sessions lowered from {idle_n} to {fit} (run scripts/bench.sh, or `ulimit -n 20000`)"
        );
        println!("!! {msg}");
        problems.push(msg);
        idle_n = fit;
    }
    // Other work on the machine skews every figure; the load average shows it.
    let load_start = loadavg();
    let cores = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);

    let tmp = tempfile::Builder::new()
        .prefix("rendezvous-bench-")
        .tempdir()
        .expect("temp dir");
    let data_dir = tmp.path().join("bench");
    std::fs::create_dir_all(&data_dir).unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config_path = tmp.path().join("cluster.toml");
    std::fs::write(
        &config_path,
        format!(
            "[xmpp]\ntls = \"optional\"\nallow_plain_without_tls = true\n\
             [limits]\nmax_connections = 20000\n\
             [[node]]\nid = \"bench\"\nxmpp = \"{addr}\"\nsip = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\ndata_dir = '{}'\n",
            data_dir.display()
        ),
    )
    .unwrap();
    println!(
        "rendezvous c2s bench: server {} on {addr}, {cores} cores shared with the load generator, \
         open-files limit {fd_limit}, server RUST_LOG={}",
        bin.display(),
        std::env::var("RUST_LOG").unwrap_or_else(|_| "(unset: info)".into())
    );
    populate(&data_dir.join("store"), idle_n);

    let server = Server::start(&bin, &config_path, addr, tmp.path().join("server.log"));
    // Watchdog: kill the server and exit if the whole run exceeds its budget.
    {
        let child = server.child.clone();
        let (log, dir) = (server.log.clone(), tmp.path().to_path_buf());
        thread::spawn(move || {
            let end = wall + Duration::from_secs(max_secs);
            while Instant::now() < end {
                thread::sleep(Duration::from_millis(250));
            }
            eprintln!("!! bench exceeded BENCH_MAX_SECS={max_secs}; killing the server");
            kill(&child);
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            for l in &lines[lines.len().saturating_sub(20)..] {
                eprintln!("{}", strip_ansi(l));
            }
            let _ = std::fs::remove_dir_all(&dir);
            std::process::exit(3);
        });
    }
    thread::sleep(Duration::from_millis(300));
    println!(
        "server pid {} started: RSS {} KiB, {} threads",
        server.pid,
        server.rss_kib(),
        server.threads()
    );

    // 1. Idle session memory. The figure is from the first round (fresh server); further
    // rounds (BENCH_IDLE_ROUNDS) show whether memory kept after closing is reused or leaks.
    let mut idle_rounds = Vec::new();
    for round in 1..=env_usize("BENCH_IDLE_ROUNDS", 1).clamp(1, 5) {
        let t = Instant::now();
        let idle = idle_sessions(&server, idle_n, &mut problems);
        let per_session =
            (idle.rss_after as f64 - idle.rss_before as f64) / idle.sessions.max(1) as f64;
        println!(
            "[idle]    round {round}: {} sessions: RSS {} KiB -> {} KiB = {per_session:.2} KiB/session (target <= 8); \
             {}/{} sampled sessions answered ping; RSS after closing all: {} KiB; opened at {:.0} logins/s ({:.1} s)",
            idle.sessions,
            idle.rss_before,
            idle.rss_after,
            idle.alive,
            idle.sampled,
            idle.rss_closed,
            idle.login_rate,
            t.elapsed().as_secs_f64()
        );
        idle_rounds.push((idle, per_session));
    }
    let (idle, per_session) = idle_rounds.swap_remove(0);
    if std::env::var("BENCH_ONLY").as_deref() == Ok("idle") {
        // For memory profiles of idle sessions (e.g. the server under heaptrack): the peak
        // of the run is then the idle round.
        println!("BENCH_ONLY=idle: stopping after the idle round");
        drop(server);
        return;
    }

    // 2. SCRAM logins/s.
    let t = Instant::now();
    let lg = logins(&server, idle_n.max(LOGIN_THREADS), &mut problems);
    let login_rate = lg.logins as f64 / lg.secs;
    println!(
        "[logins]  {} full SCRAM-SHA-256 logins in {:.2} s with {LOGIN_THREADS} threads = {login_rate:.0}/s \
         (target >= 5000); latency p50 {:.2} ms, p99 {:.2} ms; server CPU {:.2} s = {:.0} logins per server CPU-second ({:.1} s)",
        lg.logins,
        lg.secs,
        ms(lg.p50_us),
        ms(lg.p99_us),
        lg.server_cpu,
        lg.logins as f64 / lg.server_cpu.max(1e-9),
        t.elapsed().as_secs_f64()
    );

    // 3. Presence fan-out.
    let t = Instant::now();
    let fo = fan_out(&server, readers, &mut problems);
    let flood_rate = fo.flood_rate;
    let flood_per_cpu = fo.flood_delivered as f64 / fo.flood_cpu.max(1e-9);
    let paced_delivered_rate =
        fo.paced_rate * (fo.paced_expected as f64 / fo.paced_updates.max(1) as f64);
    println!(
        "[fan-out] flood: {} rounds of {FLOOD} updates to {ROSTER} contacts: median {flood_rate:.0} delivered/s \
         (min {:.0}, max {:.0}); all rounds {} delivered in {:.3} s with server CPU {:.2} s \
         (user {:.2}, sys {:.2}) = {flood_per_cpu:.0} delivered per server CPU-second (target >= 100000); \
         load generator CPU {:.2} s; latency under flood p50 {:.1} ms, p99 {:.1} ms",
        fo.flood_rounds,
        fo.flood_rate_min,
        fo.flood_rate_max,
        fo.flood_delivered,
        fo.flood_secs,
        fo.flood_cpu,
        fo.flood_user,
        fo.flood_sys,
        fo.flood_gen_cpu,
        ms(fo.flood_p50_us),
        ms(fo.flood_p99_us),
    );
    println!(
        "[fan-out] paced: {} updates at {:.1}/s (= {:.0} delivered/s): {}/{} delivered; latency p50 {:.2} ms, \
         p99 {:.2} ms (target < 10), max {:.2} ms; server CPU {:.0}%, load generator CPU {:.0}% ({:.1} s)",
        fo.paced_updates,
        fo.paced_rate,
        paced_delivered_rate,
        fo.paced_delivered,
        fo.paced_expected,
        ms(fo.paced_p50_us),
        ms(fo.paced_p99_us),
        ms(fo.paced_max_us),
        100.0 * fo.paced_cpu / fo.paced_secs,
        100.0 * fo.paced_gen_cpu / fo.paced_secs,
        t.elapsed().as_secs_f64()
    );

    server.check_alive("finishing");
    let log_problems = server.log_problems();
    let total_cpu = server.cpu_secs();
    let rss_end = server.rss_kib();
    drop(server);

    println!();
    println!("==================== rendezvous c2s benchmark summary ====================");
    println!(
        "machine: {cores} cores, shared by the server and the load generator; load average \
         at start {load_start}, at end {}",
        loadavg()
    );
    println!(
        "SCRAM logins/s           {:>12.0}   (target >= 5000; p50 {:.2} ms, p99 {:.2} ms; {} logins, {LOGIN_THREADS} threads)",
        login_rate,
        ms(lg.p50_us),
        ms(lg.p99_us),
        lg.logins
    );
    println!(
        "idle session memory      {:>12.2}   KiB/session (target <= 8; {} sessions, RSS {} -> {} KiB)",
        per_session, idle.sessions, idle.rss_before, idle.rss_after
    );
    println!(
        "fan-out flood delivered  {:>12.0}   stanzas/s wall, median of {} floods (min {:.0}, max {:.0})",
        flood_rate, fo.flood_rounds, fo.flood_rate_min, fo.flood_rate_max
    );
    println!(
        "fan-out per server core  {:>12.0}   stanzas per server CPU-second (target >= 100000; {} in {:.2} CPU-s)",
        flood_per_cpu, fo.flood_delivered, fo.flood_cpu
    );
    println!(
        "fan-out paced latency    {:>12.2}   ms p99 (target < 10; p50 {:.2} ms, max {:.2} ms, {:.0} delivered/s)",
        ms(fo.paced_p99_us),
        ms(fo.paced_p50_us),
        ms(fo.paced_max_us),
        paced_delivered_rate
    );
    println!(
        "server total CPU {:.1} s, RSS at end {} KiB; server log WARN/ERROR lines: {}",
        total_cpu,
        rss_end,
        log_problems.len()
    );
    for l in log_problems.iter().take(5) {
        println!("  log: {l}");
    }
    if problems.is_empty() {
        println!("problems: none");
    } else {
        println!("problems:");
        for p in &problems {
            println!("  - {p}");
        }
    }
    println!("total runtime {:.1} s", wall.elapsed().as_secs_f64());
    println!("==========================================================================");
}
