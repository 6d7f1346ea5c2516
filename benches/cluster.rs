//! Issue 5 speed targets on loopback, with every node in this process (on its own actix
//! system and thread, as in `benches/redirect.rs`). Prints figures; not a test.
//!
//! 1. **Move** (target: old session closed -> new session bound < 500 ms). A primary `p`
//!    kept full by idle filler sessions, and two workers `a` and `b`. A roaming user `r` is
//!    homed on one worker; each round re-adds the other worker (`POST /api/nodes`, it left
//!    after the previous drain) and drains the first (`POST /api/nodes/<id>/drain`), which
//!    is the real move path: `redirection-usr-addr` to the target, directory update,
//!    `migrate-user` to the old home, `<see-other-host>` to the client. The client waits on
//!    its own thread and reconnects at once (PLAIN rounds, then SCRAM-SHA-256 rounds with
//!    the SaltedPassword cached as real clients do). Then one drain of 100 more users at
//!    once. Times: drain request -> `<see-other-host>` received (server side), received ->
//!    bind result at the new home (the target), and the sum.
//! 2. **Presence** (target: cross-node delivery adds < 1 ms over same-node at p50). The
//!    watcher `w` is on the primary with its same-node contacts `s*`; its cross-node
//!    contacts `x*` are homed on the worker. Rosters (`both`) are written in the primary's
//!    store before start. Same-node and cross-node senders alternate, `PACE` apart, each
//!    update with a unique status; the time from the send to `w` reading it is measured.
//!    (a) one contact per side (`s0`, `x0`), as specified: each sender updates every ~4 ms;
//!    (b) the same pace rotating over 100 contacts per side: each contact updates only
//!    every ~400 ms (isolated changes). The difference between the two is the cross-node
//!    NOTIFY rate limit (`[sip] notify_min_interval_ms`, default 200 ms), which also holds
//!    back-end subscriptions; `BENCH_NOTIFY_MIN_INTERVAL_MS` sets it for a comparison.
//!
//! The nodes share the machine's cores with the client threads (and whatever else runs),
//! so figures are noisy: compare several runs. `RUST_LOG` enables the nodes' traces on
//! stderr. Environment: `BENCH_MOVE_ROUNDS` (default 30 per mechanism), `BENCH_BULK` (100),
//! `BENCH_PRESENCE_ROUNDS` (500 per side), `BENCH_PRESENCE_SECS` (time budget of each
//! presence scenario, 10), `BENCH_NOTIFY_MIN_INTERVAL_MS` (unset: the server default).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rendezvous::config::Config;
use rendezvous::store::{Account, Records, Roster, RosterItem};
use rendezvous::xmpp::sasl::scram::client as scram;
use rendezvous::xmpp::sasl::{ScramCredentials, ScramHash};
use rendezvous::xmpp::subscription::Subscription;

const PASSWORD: &str = "pw";
const SALT: &[u8] = b"rendezvous-cluster-bench";
const ITERATIONS: u32 = 4096;
const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const OPEN: &str = "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' \
                    xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const MOVE_TARGET_MS: f64 = 500.0;
const PRESENCE_TARGET_MS: f64 = 1.0;
/// Idle sessions that keep the primary at `max_load`, so moves go worker to worker.
const FILLERS: usize = 110;
const PACE: Duration = Duration::from_millis(2);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---- nodes -------------------------------------------------------------------------------

fn free_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A cluster configuration with `[[node]]` entries `(id, role)` on free loopback ports.
fn config(dir: &Path, cluster: &str, sections: &str, nodes: &[(&str, &str)]) -> Config {
    let mut text = format!(
        "[cluster]\nsecret = \"bench\"\nredirect = \"see-other-host\"\nmin_load = 0\n\
         weight_resources = 0\nscale_in_after_s = 0\n{cluster}\n\
         [xmpp]\ntls = \"optional\"\nallow_plain_without_tls = true\n{sections}\n"
    );
    for (id, role) in nodes {
        text += &format!(
            "[[node]]\nid = \"{id}\"\nrole = \"{role}\"\nxmpp = \"127.0.0.1:{}\"\n\
             sip = \"127.0.0.1:{}\"\nadmin = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
            free_port(),
            free_port(),
            dir.join(id).display()
        );
    }
    Config::parse(&text, Path::new("bench.toml")).unwrap()
}

/// Accounts (one set of SCRAM credentials for all, as `benches/c2s.rs` does) and rosters
/// in the primary's store, before it starts.
fn populate(config: &Config, users: &[String], rosters: &[(&str, Roster)]) {
    let store = rendezvous::node::open_store(config.primary_node()).unwrap();
    let sha1 = ScramCredentials::derive(ScramHash::Sha1, PASSWORD, SALT, ITERATIONS);
    let sha256 = ScramCredentials::derive(ScramHash::Sha256, PASSWORD, SALT, ITERATIONS);
    for u in users {
        store
            .create_account(&Account {
                username: u.clone(),
                scram_sha1: sha1.clone(),
                scram_sha256: sha256.clone(),
                created_unix: 1_700_000_000,
                sip: None,
            })
            .unwrap();
    }
    for (u, r) in rosters {
        store.put_roster(u, r).unwrap();
    }
    store.flush().unwrap();
}

fn both(contacts: &[&str]) -> Roster {
    let mut r = Roster::default();
    for c in contacts {
        let jid = format!("{c}@localhost");
        r.items.insert(
            jid.clone(),
            RosterItem {
                subscription: Subscription::Both,
                ..RosterItem::new(jid)
            },
        );
    }
    r
}

struct Node {
    xmpp: SocketAddr,
    admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    fn start(config: &Config, id: &str) -> Node {
        let config = config.clone();
        let node = config.node(Some(id)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let store = rendezvous::node::open_store(&node).unwrap();
                let h = rendezvous::node::start(&config, &node, store).unwrap();
                tx.send((h.xmpp_addr, h.admin_addr.unwrap())).unwrap();
                let _ = stopped.await;
                h.shutdown().await;
            });
        });
        let (xmpp, admin) = rx.recv_timeout(IO_TIMEOUT).unwrap();
        Node {
            xmpp,
            admin,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// One admin API request; the status and the body.
    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.admin).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    /// Active server ids in the primary's cluster state, sorted.
    fn servers(&self) -> Vec<String> {
        let (status, body) = self.http("GET", "/api/cluster", "");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut ids: Vec<String> = v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Polls (every 10 ms, bounded) until the primary's state gives server `id` load `load`.
    fn wait_load(&self, id: &str, load: u64) {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let (_, body) = self.http("GET", "/api/cluster", "");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let now = v["servers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == id)
                .and_then(|s| s["current"].as_u64());
            if now == Some(load) {
                return;
            }
            assert!(Instant::now() < deadline, "{id}: load {now:?}, want {load}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Polls (every 2 ms, bounded) until the primary lists exactly `ids`.
    fn wait_servers(&self, ids: &[&str]) {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let now = self.servers();
            if now == ids {
                return;
            }
            assert!(Instant::now() < deadline, "servers {now:?}, want {ids:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- client ------------------------------------------------------------------------------

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mech {
    Plain,
    Scram,
}

enum Login {
    Bound(Conn),
    /// `<see-other-host>` with this `host:port`.
    Redirect(String),
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn see_other_host(text: &str) -> Option<String> {
    let at = text.find("see-other-host")?;
    let rest = &text[at..];
    Some(
        rest.split('>')
            .nth(1)?
            .split('<')
            .next()?
            .trim()
            .to_string(),
    )
}

impl Conn {
    fn connect(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        Conn { s, buf: Vec::new() }
    }

    fn send(&mut self, data: &str) {
        self.s.write_all(data.as_bytes()).unwrap();
    }

    /// Reads until one of `pats` is in the buffer; returns its index and everything up to
    /// the end of the match (which leaves the buffer).
    fn read_until(&mut self, pats: &[&str], what: &str) -> (usize, String) {
        let mut chunk = [0u8; 16384];
        loop {
            let hit = pats
                .iter()
                .enumerate()
                .filter_map(|(i, p)| find(&self.buf, p.as_bytes()).map(|at| (at + p.len(), i)))
                .min();
            if let Some((end, i)) = hit {
                let out = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end);
                return (i, out);
            }
            let n = match self.s.read(&mut chunk) {
                Ok(n) => n,
                Err(e) => panic!("{what}: {e}; have {}", String::from_utf8_lossy(&self.buf)),
            };
            assert!(
                n > 0,
                "{what}: closed; have {}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Login and bind (resource `r`) at `addr`.
    fn login(addr: SocketAddr, user: &str, mech: Mech) -> Login {
        let mut c = Conn::connect(addr);
        c.send(OPEN);
        c.read_until(&["</stream:features>"], "features");
        let answer = match mech {
            Mech::Plain => {
                let creds = B64.encode(format!("\0{user}\0{PASSWORD}"));
                c.send(&format!(
                    "<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{creds}</auth>"
                ));
                c.read_until(&["<success", "</failure>", "</stream:error>"], "PLAIN")
            }
            Mech::Scram => c.scram(user),
        };
        if let Some(to) = see_other_host(&answer.1) {
            return Login::Redirect(to);
        }
        assert_eq!(answer.0, 0, "{user}: {}", answer.1);
        c.send(OPEN);
        let (_, got) = c.read_until(&["</stream:features>", "</stream:error>"], "restart");
        if let Some(to) = see_other_host(&got) {
            return Login::Redirect(to);
        }
        c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>");
        let (_, got) = c.read_until(&["</iq>", "</stream:error>"], "bind");
        if let Some(to) = see_other_host(&got) {
            return Login::Redirect(to);
        }
        assert!(got.contains("type='result'"), "{user}: bind: {got}");
        Login::Bound(c)
    }

    fn bound(addr: SocketAddr, user: &str) -> Conn {
        match Conn::login(addr, user, Mech::Plain) {
            Login::Bound(c) => c,
            Login::Redirect(to) => panic!("{user}: redirected to {to}, expected to be served"),
        }
    }

    /// SCRAM-SHA-256 (RFC 5802, RFC 7677, the crate's one SCRAM client) up to the outcome;
    /// the server signature is not checked (an HMAC: negligible).
    fn scram(&mut self, user: &str) -> (usize, String) {
        let cnonce = format!("{:032x}", rand::random::<u128>());
        let first = scram::ClientFirst::new(ScramHash::Sha256, user, &cnonce);
        self.send(&format!(
            "<auth xmlns='{SASL_NS}' mechanism='SCRAM-SHA-256'>{}</auth>",
            B64.encode(first.message())
        ));
        let (k, got) = self.read_until(
            &["</challenge>", "</failure>", "</stream:error>"],
            "SCRAM challenge",
        );
        if k != 0 {
            return (k, got);
        }
        let b64 = got.rsplit("</challenge>").nth(1).unwrap();
        let b64 = &b64[b64.rfind('>').unwrap() + 1..];
        let server_first = scram::parse_server_first(&first, &B64.decode(b64).unwrap()).unwrap();
        let salted = salted_password(&server_first.salt, server_first.iterations);
        let (client_final, _) = first.client_final(&server_first, &salted);
        self.send(&format!(
            "<response xmlns='{SASL_NS}'>{}</response>",
            B64.encode(client_final)
        ));
        self.read_until(&["<success", "</failure>", "</stream:error>"], "SCRAM")
    }

    /// Waits for `<see-other-host>`; its target.
    fn wait_moved(&mut self) -> String {
        let (_, got) = self.read_until(&["</stream:error>"], "see-other-host");
        see_other_host(&got).unwrap_or_else(|| panic!("not see-other-host: {got}"))
    }
}

/// Client-side SaltedPassword, cached per (salt, iterations) as real clients do.
fn salted_password(salt: &[u8], iterations: u32) -> Vec<u8> {
    type Cached = Option<(Vec<u8>, u32, Vec<u8>)>;
    static CACHE: Mutex<Cached> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap();
    if let Some((s, i, v)) = &*cache {
        if s == salt && *i == iterations {
            return v.clone();
        }
    }
    let out = scram::salted_password(ScramHash::Sha256, PASSWORD, salt, iterations);
    *cache = Some((salt.to_vec(), iterations, out.clone()));
    out
}

// ---- figures -----------------------------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn line(label: &str, v: &[f64]) -> String {
    let v = sorted(v.to_vec());
    format!(
        "  {label:<34} p50 {:>8.3}  p90 {:>8.3}  p99 {:>8.3}  max {:>8.3} ms  (n={})",
        pct(&v, 0.5),
        pct(&v, 0.9),
        pct(&v, 0.99),
        v[v.len() - 1],
        v.len()
    )
}

/// One user's move as its client saw it.
struct Moved {
    conn: Conn,
    to: String,
    /// `<see-other-host>` read (the old session is closed).
    closed: Instant,
    /// Bind result read at the new home.
    bound: Instant,
    /// Redirected again by the new home before binding (should not happen).
    bounced: usize,
}

/// The client side of a move on its own thread: waits for `<see-other-host>`, then logs in
/// there at once.
fn follow(mut conn: Conn, user: String, mech: Mech) -> JoinHandle<Moved> {
    std::thread::spawn(move || {
        let mut to = conn.wait_moved();
        let closed = Instant::now();
        drop(conn);
        let mut bounced = 0;
        loop {
            match Conn::login(to.parse().unwrap(), &user, mech) {
                Login::Bound(conn) => {
                    return Moved {
                        conn,
                        to,
                        closed,
                        bound: Instant::now(),
                        bounced,
                    }
                }
                Login::Redirect(next) => {
                    bounced += 1;
                    assert!(bounced < 5, "{user}: redirected in circles");
                    to = next;
                }
            }
        }
    })
}

// ---- 1. moves ----------------------------------------------------------------------------

struct MoveFigures {
    server: Vec<f64>,
    client: Vec<f64>,
    total: Vec<f64>,
    bounced: usize,
}

impl MoveFigures {
    fn new() -> Self {
        MoveFigures {
            server: Vec::new(),
            client: Vec::new(),
            total: Vec::new(),
            bounced: 0,
        }
    }
}

struct MoveResults {
    plain: MoveFigures,
    scram: MoveFigures,
    bulk: MoveFigures,
    bulk_wall: f64,
    drain_answer: Vec<f64>,
    leave: Vec<f64>,
    readd: Vec<f64>,
}

fn moves(rounds: usize, bulk: usize) -> MoveResults {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("max_load = {FILLERS}\nreport_interval_ms = 200"),
        "",
        &[("p", "primary"), ("a", "worker"), ("b", "worker")],
    );
    let fillers: Vec<String> = (0..FILLERS).map(|i| format!("f{i}")).collect();
    let bulk_users: Vec<String> = (0..bulk).map(|i| format!("u{i}")).collect();
    let mut users = fillers.clone();
    users.extend(bulk_users.iter().cloned());
    users.push("r".into());
    populate(&cfg, &users, &[]);
    let p = Node::start(&cfg, "p");
    let workers = [Node::start(&cfg, "a"), Node::start(&cfg, "b")];
    const IDS: [&str; 2] = ["a", "b"];
    p.wait_servers(&["a", "b", "p"]);
    let t = Instant::now();
    let _fillers: Vec<Conn> = fillers.iter().map(|u| Conn::bound(p.xmpp, u)).collect();
    println!(
        "[move] {FILLERS} fillers keep p at max_load ({:.2} s)",
        t.elapsed().as_secs_f64()
    );
    let worker = |addr: &str| -> usize {
        (0..2)
            .find(|i| workers[*i].xmpp.to_string() == addr)
            .unwrap_or_else(|| panic!("{addr} is not a worker"))
    };
    let Login::Redirect(to) = Conn::login(p.xmpp, "r", Mech::Plain) else {
        panic!("r served by the full primary");
    };
    let mut home = worker(&to);
    let mut r = Conn::bound(workers[home].xmpp, "r");

    let mut out = MoveResults {
        plain: MoveFigures::new(),
        scram: MoveFigures::new(),
        bulk: MoveFigures::new(),
        bulk_wall: 0.0,
        drain_answer: Vec::new(),
        leave: Vec::new(),
        readd: Vec::new(),
    };
    // Drains worker `from` (the other one is re-added first: it left after the previous
    // drain); `clients` follow their users.
    let drain = |from: usize, clients: Vec<(Conn, String)>, mech: Mech, out: &mut MoveResults| {
        let other = IDS[1 - from];
        if !p.servers().iter().any(|s| s == other) {
            let t = Instant::now();
            let (status, body) = p.http("POST", "/api/nodes", &format!("{{\"id\":\"{other}\"}}"));
            assert_eq!(status, 200, "re-adding {other}: {body}");
            out.readd.push(ms(t.elapsed()));
        }
        let threads: Vec<_> = clients
            .into_iter()
            .map(|(c, u)| follow(c, u, mech))
            .collect();
        let t0 = Instant::now();
        let (status, body) = p.http("POST", &format!("/api/nodes/{}/drain", IDS[from]), "");
        out.drain_answer.push(ms(t0.elapsed()));
        assert_eq!(status, 200, "drain {}: {body}", IDS[from]);
        let moved: Vec<Moved> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        p.wait_servers(&[other, "p"]);
        out.leave.push(ms(t0.elapsed()));
        (t0, moved)
    };

    let t = Instant::now();
    for round in 0..2 * rounds {
        let mech = if round < rounds {
            Mech::Plain
        } else {
            Mech::Scram
        };
        let (t0, mut moved) = drain(home, vec![(r, "r".into())], mech, &mut out);
        let m = moved.pop().unwrap();
        let figs = if mech == Mech::Plain {
            &mut out.plain
        } else {
            &mut out.scram
        };
        figs.server.push(ms(m.closed - t0));
        figs.client.push(ms(m.bound - m.closed));
        figs.total.push(ms(m.bound - t0));
        figs.bounced += m.bounced;
        home = worker(&m.to);
        r = m.conn;
    }
    println!(
        "[move] {} single-user rounds in {:.2} s",
        2 * rounds,
        t.elapsed().as_secs_f64()
    );

    // Bulk: `bulk` more users onto r's home (the other worker is out, p is full), then one
    // drain moves them all, r included. A member counts each user moved in at once but one
    // moved away only at its next load measurement: wait for r's home to report 1 user.
    p.wait_load(IDS[home], 1);
    let mut clients = vec![(r, "r".to_string())];
    for u in &bulk_users {
        let Login::Redirect(to) = Conn::login(p.xmpp, u, Mech::Plain) else {
            panic!("{u} served by the full primary");
        };
        assert_eq!(worker(&to), home, "{u} placed on the only worker");
        clients.push((Conn::bound(workers[home].xmpp, u), u.clone()));
    }
    let (t0, moved) = drain(home, clients, Mech::Plain, &mut out);
    for m in &moved {
        out.bulk.server.push(ms(m.closed - t0));
        out.bulk.client.push(ms(m.bound - m.closed));
        out.bulk.total.push(ms(m.bound - t0));
        out.bulk.bounced += m.bounced;
    }
    out.bulk_wall = moved.iter().map(|m| ms(m.bound - t0)).fold(0.0, f64::max);
    drop(moved);
    out
}

// ---- 2. presence -------------------------------------------------------------------------

struct PresenceResults {
    same: Vec<f64>,
    cross: Vec<f64>,
    /// Rounds planned per sender kind, and whether the time budget cut them short.
    planned: usize,
    cut: bool,
}

/// Discards what a sender has received so far (its own presence echoed, pings).
fn discard(c: &mut Conn) {
    let mut chunk = [0u8; 16384];
    while let Ok(n) = c.s.read(&mut chunk) {
        if n == 0 {
            break;
        }
    }
}

/// Watcher `w` on the primary; `n` contacts `s*` on the primary and `n` contacts `x*` on the
/// worker, all `both` with `w`. Updates alternate same-node / cross-node senders, rotating
/// over the `n` of each, `PACE` apart, until `rounds` each or `budget`.
fn presence(n: usize, rounds: usize, budget: Duration, sip: &str) -> PresenceResults {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("max_load = {}", n + 1),
        sip,
        &[("p", "primary"), ("w", "worker")],
    );
    let same_names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let cross_names: Vec<String> = (0..n).map(|i| format!("x{i}")).collect();
    let contacts: Vec<&str> = same_names
        .iter()
        .chain(&cross_names)
        .map(String::as_str)
        .collect();
    let mut users = vec!["w".to_string()];
    users.extend(contacts.iter().map(|c| c.to_string()));
    let mut rosters = vec![("w", both(&contacts))];
    rosters.extend(contacts.iter().map(|c| (*c, both(&["w"]))));
    populate(&cfg, &users, &rosters);
    let p = Node::start(&cfg, "p");
    let worker = Node::start(&cfg, "w");
    p.wait_servers(&["p", "w"]);
    // The watcher and the s* fill the primary; the x* are placed on the worker.
    let mut w = Conn::bound(p.xmpp, "w");
    let mut same: Vec<Conn> = same_names.iter().map(|u| Conn::bound(p.xmpp, u)).collect();
    let mut cross: Vec<Conn> = cross_names
        .iter()
        .map(|u| {
            let Login::Redirect(to) = Conn::login(p.xmpp, u, Mech::Plain) else {
                panic!("{u} served by the full primary");
            };
            assert_eq!(to, worker.xmpp.to_string());
            Conn::bound(worker.xmpp, u)
        })
        .collect();
    for c in same.iter_mut().chain(cross.iter_mut()) {
        c.send("<presence/>");
        c.s.set_nonblocking(true).unwrap();
    }
    w.send("<presence/>");
    // Warm up: every sender until the watcher hears it (back-end subscriptions in place).
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut missing: Vec<usize> = (0..2 * n).collect();
    let mut heard = String::new();
    w.s.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    for attempt in 0.. {
        for &k in &missing {
            let c = if k < n {
                &mut same[k]
            } else {
                &mut cross[k - n]
            };
            discard(c);
            c.send(&format!(
                "<presence><status>warm-{k}-{attempt}</status></presence>"
            ));
        }
        let until = Instant::now() + Duration::from_millis(500);
        let mut chunk = [0u8; 65536];
        while Instant::now() < until && !missing.is_empty() {
            if let Ok(got) = w.s.read(&mut chunk) {
                heard.push_str(&String::from_utf8_lossy(&chunk[..got]));
            }
            missing.retain(|k| !heard.contains(&format!(">warm-{k}-{attempt}<")));
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} senders never reached the watcher",
            missing.len()
        );
    }
    // Past the NOTIFY rate-limit window of every sender's warm-up update.
    std::thread::sleep(Duration::from_millis(300));
    let mut chunk = [0u8; 65536];
    while w.s.read(&mut chunk).is_ok_and(|n| n > 0) {}
    w.buf.clear();
    w.s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();

    let mut out = PresenceResults {
        same: Vec::new(),
        cross: Vec::new(),
        planned: rounds,
        cut: false,
    };
    let started = Instant::now();
    for i in 0..2 * rounds {
        if started.elapsed() > budget {
            out.cut = true;
            break;
        }
        let k = (i / 2) % n;
        let (c, v) = if i % 2 == 0 {
            (&mut same[k], &mut out.same)
        } else {
            (&mut cross[k], &mut out.cross)
        };
        discard(c);
        let status = format!("st{i}");
        let stanza = format!("<presence><status>{status}</status></presence>");
        let t = Instant::now();
        c.send(&stanza);
        w.read_until(&[&format!(">{status}<")], "presence at w");
        v.push(ms(t.elapsed()));
        std::thread::sleep(PACE);
    }
    if out.same.len() > out.cross.len() {
        out.same.pop();
    }
    out
}

// ---- main --------------------------------------------------------------------------------

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let started = Instant::now();
    let rounds = env_usize("BENCH_MOVE_ROUNDS", 30);
    let bulk = env_usize("BENCH_BULK", 100);
    let presence_rounds = env_usize("BENCH_PRESENCE_ROUNDS", 500);
    println!(
        "cluster bench: nodes in this process on loopback, {} cores, loadavg {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    let m = moves(rounds, bulk);
    println!(
        "\n1. Move: drain of the user's home -> <see-other-host> -> login + bind at the new home"
    );
    for (name, f) in [
        ("PLAIN", &m.plain),
        ("SCRAM-SHA-256", &m.scram),
        ("bulk PLAIN", &m.bulk),
    ] {
        println!(
            " {name} ({} users moved{}):",
            f.total.len(),
            if f.bounced > 0 {
                format!(", {} redirected again by the new home", f.bounced)
            } else {
                String::new()
            }
        );
        println!("{}", line("drain request -> see-other-host", &f.server));
        println!("{}", line("see-other-host -> bound (client)", &f.client));
        println!("{}", line("drain request -> bound", &f.total));
    }
    println!(
        "  bulk: all {} users bound {:.1} ms after the drain request",
        m.bulk.total.len(),
        m.bulk_wall
    );
    println!("{}", line("admin: drain answered", &m.drain_answer));
    println!("{}", line("admin: drain -> node left (BYE)", &m.leave));
    println!("{}", line("admin: re-add (INVITE) answered", &m.readd));

    let sip = match std::env::var("BENCH_NOTIFY_MIN_INTERVAL_MS") {
        Ok(v) => format!("[sip]\nnotify_min_interval_ms = {v}\n"),
        Err(_) => String::new(),
    };
    println!(
        "\n2. Presence: send -> watcher w (on p) reads it, alternating same-node / cross-node \
         senders, {} ms apart{}",
        PACE.as_millis(),
        if sip.is_empty() {
            String::new()
        } else {
            format!(" [{}]", sip.trim().replace('\n', " "))
        }
    );
    let budget = Duration::from_secs(env_usize("BENCH_PRESENCE_SECS", 10) as u64);
    // (a) as specified: one contact per side, so each sender updates every ~2 * PACE.
    let a = presence(1, presence_rounds, budget, &sip);
    // (b) the same pace rotating over 100 contacts per side: each one updates only every
    // ~400 ms, as isolated changes.
    let b = presence(100, presence_rounds, budget, &sip);
    let mut diffs = Vec::new();
    for (name, r) in [
        ("(a) s1 and s2, back to back", &a),
        ("(b) 100 + 100 contacts, rotating", &b),
    ] {
        let (same, cross) = (sorted(r.same.clone()), sorted(r.cross.clone()));
        let diff50 = pct(&cross, 0.5) - pct(&same, 0.5);
        println!(
            " {name}: {} updates per side{}",
            same.len(),
            if r.cut {
                format!(
                    " (of {} planned: time budget {} s)",
                    r.planned,
                    budget.as_secs()
                )
            } else {
                String::new()
            }
        );
        println!("{}", line("same node  (s* on p -> w on p)", &same));
        println!("{}", line("cross node (x* on w -> w on p)", &cross));
        println!(
            "  added by crossing nodes:           p50 {diff50:+.3} ms  p90 {:+.3} ms  p99 {:+.3} ms",
            pct(&cross, 0.9) - pct(&same, 0.9),
            pct(&cross, 0.99) - pct(&same, 0.99)
        );
        diffs.push((diff50, pct(&same, 0.5), pct(&cross, 0.5)));
    }

    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    let worst_move = sorted(
        [&m.plain.client, &m.scram.client, &m.bulk.client]
            .iter()
            .flat_map(|v| v.iter().copied())
            .collect(),
    );
    let worst = worst_move[worst_move.len() - 1];
    println!("\nSummary (issue 5 targets, loopback, noisy shared cores)");
    println!(
        "  {} move: old session closed -> new session bound < {MOVE_TARGET_MS} ms: \
         max {worst:.1} ms over {} moves (p50 PLAIN {:.2}, SCRAM {:.2}, bulk {:.2} ms)",
        verdict(worst < MOVE_TARGET_MS),
        worst_move.len(),
        pct(&sorted(m.plain.client.clone()), 0.5),
        pct(&sorted(m.scram.client.clone()), 0.5),
        pct(&sorted(m.bulk.client.clone()), 0.5),
    );
    for ((diff50, same50, cross50), what) in diffs
        .iter()
        .zip(["(a) each sender back to back", "(b) isolated updates"])
    {
        println!(
            "  {} presence {what}: cross-node adds < {PRESENCE_TARGET_MS} ms at p50: \
             {diff50:+.3} ms (same {same50:.3} ms, cross {cross50:.3} ms)",
            verdict(*diff50 < PRESENCE_TARGET_MS),
        );
    }
    println!("  run time {:.1} s", started.elapsed().as_secs_f64());
}
