//! A real node on an ephemeral loopback port, and a raw-XML client for it.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use rendezvous::config::Config;
use rendezvous::xml::CLIENT_NS;
use rendezvous::xmpp::sasl::scram::{client as scram, ScramHash};
use rendezvous::xmpp::stream::{ParserLimits, StreamEvent, StreamParser};

pub const DOMAIN: &str = "localhost";

/// Config for tests: loopback, TLS optional, PLAIN allowed without TLS, registration open.
pub fn test_config(data_dir: &Path, extra_limits: &str) -> String {
    format!(
        "[xmpp]\ntls = \"optional\"\nallow_plain_without_tls = true\nregistration = \"open\"\n\
         [limits]\n{extra_limits}\n\
         [runtime]\nworkers = 2\npresence_shards = 2\n\
         [[node]]\nid = \"t1\"\nxmpp = \"127.0.0.1:0\"\nsip = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
        data_dir.display()
    )
}

pub mod sip;

pub struct TestNode {
    pub addr: SocketAddr,
    pub sip_addr: SocketAddr,
    pub data_dir: PathBuf,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestNode {
    pub fn start(config_text: &str) -> TestNode {
        let config = Config::parse(config_text, Path::new("test.toml")).expect("test config");
        let node = config.node(None).unwrap().clone();
        let data_dir = node.data_dir();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                let store = rendezvous::node::open_store(&node).expect("store");
                let handle = rendezvous::node::start(&config, &node, store).expect("node starts");
                addr_tx.send((handle.xmpp_addr, handle.sip_addr)).unwrap();
                // Wait for the stop request without blocking the runtime.
                loop {
                    if stop_rx.try_recv().is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                handle.shutdown().await;
            });
        });
        let (addr, sip_addr) = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("node reports its address");
        TestNode {
            addr,
            sip_addr,
            data_dir,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("node thread");
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Adds accounts to a node's store before the node starts.
pub fn add_users(data_dir: &Path, users: &[(&str, &str)]) {
    let store = rendezvous::store::SledStore::open(&data_dir.join("store")).unwrap();
    for (u, p) in users {
        rendezvous::accounts::add(
            &store,
            u,
            p,
            &rendezvous::accounts::CredentialPolicy {
                scram_iterations: 4096,
                realm: "localhost".into(),
            },
        )
        .unwrap();
    }
}

pub struct Client {
    pub stream: TcpStream,
    parser: StreamParser,
    /// Received top-level elements, serialised, not yet matched by an `expect`.
    pending: std::collections::VecDeque<String>,
    eof: bool,
    pub jid: String,
}

pub const OPEN: &str = "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' \
                        xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Client {
            stream,
            parser: StreamParser::new(ParserLimits {
                max_stanza_bytes: 1 << 24,
                max_depth: 64,
            }),
            pending: Default::default(),
            eof: false,
            jid: String::new(),
        }
    }

    pub fn send(&mut self, s: &str) {
        self.stream.write_all(s.as_bytes()).unwrap();
    }

    /// Waits for a received stanza (or `<stream:…>` marker) containing `needle`; returns it.
    /// Stanzas that do not match stay queued for later expectations.
    pub fn expect(&mut self, needle: &str) -> String {
        self.try_expect(needle, Duration::from_secs(5))
            .unwrap_or_else(|| {
                panic!(
                    "timed out waiting for {needle:?}; received {:?}",
                    self.pending
                )
            })
    }

    pub fn try_expect(&mut self, needle: &str, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(i) = self.pending.iter().position(|s| s.contains(needle)) {
                return self.pending.remove(i);
            }
            if Instant::now() > deadline || self.eof {
                return None;
            }
            self.read_some();
        }
    }

    /// Waits until a stanza matching each needle has arrived and asserts they arrived in
    /// that order; returns them.
    pub fn expect_in_order(&mut self, needles: &[&str]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let positions: Vec<Option<usize>> = needles
                .iter()
                .map(|n| self.pending.iter().position(|s| s.contains(n)))
                .collect();
            if positions.iter().all(Option::is_some) {
                let positions: Vec<usize> = positions.into_iter().flatten().collect();
                assert!(
                    positions.windows(2).all(|w| w[0] < w[1]),
                    "expected {needles:?} in this order; received {:?}",
                    self.pending
                );
                return positions.iter().map(|&i| self.pending[i].clone()).collect();
            }
            assert!(
                Instant::now() < deadline && !self.eof,
                "timed out waiting for {needles:?}; received {:?}",
                self.pending
            );
            self.read_some();
        }
    }

    /// All queued stanzas, drained.
    pub fn drain(&mut self) -> Vec<String> {
        self.pending.drain(..).collect()
    }

    fn read_some(&mut self) {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.eof = true,
            Ok(n) => {
                self.parser
                    .push(&chunk[..n])
                    .expect("server sends well-formed XML");
                while let Some(ev) = self
                    .parser
                    .next_event()
                    .expect("server sends well-formed XML")
                {
                    self.pending.push_back(match ev {
                        StreamEvent::Open(h) => {
                            format!("<stream:stream id='{}'>", h.id.unwrap_or_default())
                        }
                        StreamEvent::Stanza(el) => el.to_xml(CLIENT_NS),
                        StreamEvent::Close => "</stream:stream>".to_string(),
                    });
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => self.eof = true,
        }
    }

    /// True when the server closed the socket within `wait` (what came before is kept).
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && !self.eof {
            self.read_some();
        }
        self.eof
    }

    /// The server restarts the stream after TLS and SASL: a new parser state.
    pub fn restart(&mut self) {
        self.parser.reset();
    }

    pub fn open_stream(&mut self) -> String {
        self.send(OPEN);
        self.expect("<stream:stream");
        self.expect("<stream:features")
    }

    /// PLAIN login (loopback test config allows it without TLS) and bind.
    pub fn login_plain(addr: SocketAddr, user: &str, password: &str, resource: &str) -> Client {
        let mut c = Client::connect(addr);
        c.open_stream();
        let creds =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
        ));
        c.expect("<success");
        c.restart();
        c.bind(resource);
        c
    }

    /// SCRAM-SHA-256 login (RFC 5802 §3 / RFC 7677, with the crate's one SCRAM client) and bind.
    pub fn login_scram(addr: SocketAddr, user: &str, password: &str, resource: &str) -> Client {
        let mut c = Client::connect(addr);
        c.open_stream();
        let b64 = base64::engine::general_purpose::STANDARD;
        let cnonce = "rOprNGfwEbeRWgbNEkqO";
        let first = scram::ClientFirst::new(ScramHash::Sha256, user, cnonce);
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{}</auth>",
            b64.encode(first.message())
        ));
        let challenge = c.expect("<challenge");
        let data = between(&challenge, ">", "</challenge>");
        let server_first =
            scram::parse_server_first(&first, &b64.decode(data.trim()).unwrap()).unwrap();
        assert!(server_first.nonce.starts_with(cnonce));
        let salted = scram::salted_password(
            ScramHash::Sha256,
            password,
            &server_first.salt,
            server_first.iterations,
        );
        let (final_msg, server_sig) = first.client_final(&server_first, &salted);
        c.send(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            b64.encode(final_msg)
        ));
        let success = c.expect("<success");
        c.restart();
        let v = b64
            .decode(between(&success, ">", "</success>").trim())
            .unwrap();
        assert_eq!(
            String::from_utf8(v).unwrap(),
            format!("v={}", b64.encode(server_sig)),
            "server signature"
        );
        c.bind(resource);
        c
    }

    pub fn bind(&mut self, resource: &str) {
        self.open_stream();
        self.send(&format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ));
        let reply = self.expect("id='bind1'");
        assert!(reply.contains("type='result'"), "bind failed: {reply}");
        self.jid = between(&reply, "<jid>", "</jid>").to_string();
    }

    /// Sends an XEP-0199 ping and waits for its result: proof the session is alive.
    pub fn ping(&mut self, id: &str) {
        self.send(&format!(
            "<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ));
        let r = self.expect(&format!("id='{id}'"));
        assert!(r.contains("type='result'"), "{r}");
    }
}

pub fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let i = s.find(start).map(|i| i + start.len()).unwrap_or(0);
    let j = s[i..].find(end).map(|j| i + j).unwrap_or(s.len());
    &s[i..j]
}
