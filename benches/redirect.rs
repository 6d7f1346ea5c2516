//! What a redirect by the primary adds to a login (issue 4 speed target: < 2 ms on
//! loopback). A primary and a worker run in this process on loopback; a user homed on the
//! worker logs in (a) straight at the worker and (b) at the primary, which places it (a
//! two-phase `redirection-usr-addr` round trip to the worker) and answers `see-other-host`,
//! and then at the worker. Prints p50/p90 of both and of the difference. Not a test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use rendezvous::config::Config;

const ROUNDS: usize = 300;

fn free_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn start(config: &Config, id: &str) -> SocketAddr {
    let config = config.clone();
    let node = config.node(Some(id)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let system = actix_rt::System::new();
        system.block_on(async move {
            let store = rendezvous::node::open_store(&node).unwrap();
            let h = rendezvous::node::start(&config, &node, store).unwrap();
            tx.send(h.xmpp_addr).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

fn read_until(s: &mut TcpStream, buf: &mut String, pat: &[&str]) -> String {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(p) = pat.iter().find(|p| buf.contains(*p)) {
            let at = buf.find(p).unwrap() + p.len();
            let out = buf[..at].to_string();
            buf.drain(..at);
            return out;
        }
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "closed; have {buf}");
        buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
}

const OPEN: &str = "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

/// One PLAIN login; `Some(host:port)` when redirected, `None` when bound.
fn login(addr: SocketAddr, user: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut buf = String::new();
    s.write_all(OPEN.as_bytes()).unwrap();
    read_until(&mut s, &mut buf, &["</stream:features>"]);
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0pw"));
    write!(
        s,
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
    )
    .unwrap();
    read_until(&mut s, &mut buf, &["<success", "<failure"]);
    buf.clear();
    s.write_all(OPEN.as_bytes()).unwrap();
    let got = read_until(&mut s, &mut buf, &["</stream:features>", "</stream:error>"]);
    if let Some(i) = got.find("see-other-host") {
        let rest = &got[i..];
        return Some(
            rest.split('>')
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap()
                .to_string(),
        );
    }
    s.write_all(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        .unwrap();
    read_until(&mut s, &mut buf, &["</iq>"]);
    let _ = s.write_all(b"</stream:stream>");
    None
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let entry = |id: &str, role: &str| {
        format!(
            "[[node]]\nid = \"{id}\"\nrole = \"{role}\"\nxmpp = \"127.0.0.1:{}\"\nsip = \"127.0.0.1:{}\"\n\
             admin = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
            free_port(),
            free_port(),
            dir.path().join(id).display()
        )
    };
    let text = format!(
        "[cluster]\nsecret = \"bench\"\nmax_load = 1\nweight_resources = 0\nmin_load = 0\n\
         [xmpp]\ntls = \"optional\"\nallow_plain_without_tls = true\n{}{}",
        entry("p", "primary"),
        entry("w", "worker")
    );
    let config = Config::parse(&text, Path::new("bench.toml")).unwrap();
    {
        let store = rendezvous::node::open_store(config.primary_node()).unwrap();
        let policy = rendezvous::accounts::CredentialPolicy::from_config(&config);
        for u in ["filler", "roamer"] {
            rendezvous::accounts::add(&*store, u, "pw", &policy).unwrap();
        }
        store.flush().unwrap();
    }
    let p = start(&config, "p");
    let w = start(&config, "w");
    std::thread::sleep(Duration::from_millis(1500)); // the worker joins
                                                     // The filler keeps the primary full, so "roamer" is homed on the worker.
    assert!(login(p, "filler").is_none(), "filler served by the primary");
    let mut direct = Vec::new();
    let mut via = Vec::new();
    let _ = login(p, "roamer"); // first placement (and record transfer)
    for _ in 0..ROUNDS {
        let t = Instant::now();
        assert!(login(w, "roamer").is_none(), "served at home");
        direct.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let target = login(p, "roamer").expect("redirected by the primary");
        assert_eq!(target, w.to_string());
        assert!(login(w, "roamer").is_none());
        via.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (d50, d90) = (pct(&mut direct, 0.5), pct(&mut direct, 0.9));
    let (v50, v90) = (pct(&mut via, 0.5), pct(&mut via, 0.9));
    println!("redirect: {ROUNDS} logins each (PLAIN, loopback, release)");
    println!("  login at the home:             p50 {d50:.3} ms  p90 {d90:.3} ms");
    println!("  via the primary + redirect:    p50 {v50:.3} ms  p90 {v90:.3} ms");
    println!(
        "  added by the redirect:         p50 {:.3} ms  p90 {:.3} ms",
        v50 - d50,
        v90 - d90
    );
}
