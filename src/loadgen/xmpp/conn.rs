//! One XMPP connection of a virtual user and what it does before the session: connect,
//! STARTTLS, SASL (SCRAM with the SaltedPassword cached, or PLAIN), bind, redirects, and
//! XEP-0077 registration.

use std::rc::Rc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at};

use crate::loadgen::error::LoadgenError;
use crate::loadgen::net::{self, Stream};
use crate::loadgen::options::SaslChoice;
use crate::loadgen::run::{Run, IO_TIMEOUT};
use crate::loadgen::xmpp_wire::{self as wire, Features, FrameKind, StreamErrorInfo};
use crate::xml::Element;
use crate::xmpp::sasl::scram::{client as scram, ScramHash};

/// One login (connect to bound resource) gives up after this.
pub(super) const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed per user (see-other-host, cxfr) before giving up.
pub(super) const MAX_REDIRECTS: u32 = 3;
/// The resource every virtual user binds.
pub(super) const RESOURCE: &str = "lg";
/// Largest first-level element accepted from the server (a big roster fits).
pub(super) const MAX_STANZA: usize = 16 << 20;
/// Unused buffer capacity kept per connection once it is drained.
pub(super) const BUF_RETAIN: usize = 16 * 1024;

/// One XMPP connection: the stream, received bytes not yet consumed, the server's stream
/// header (namespace context for parsing).
pub(super) struct Conn {
    io: Stream,
    pub(super) buf: Vec<u8>,
    pos: usize,
    pub(super) header: Vec<u8>,
}

impl Conn {
    pub(super) async fn connect(run: &Run, target: &str) -> Result<Conn, LoadgenError> {
        let addr = net::resolve(run, target).await?;
        let tcp = timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| LoadgenError::Timeout("connect"))?
            .map_err(LoadgenError::Connect)?;
        let _ = tcp.set_nodelay(true);
        Ok(Conn {
            io: Stream::Plain(tcp),
            buf: Vec::with_capacity(4096),
            pos: 0,
            header: Vec::new(),
        })
    }

    pub(super) async fn send(&mut self, data: &[u8]) -> Result<(), LoadgenError> {
        let io = &mut self.io;
        timeout(IO_TIMEOUT, async move {
            io.write_all(data).await?;
            io.flush().await
        })
        .await
        .map_err(|_| LoadgenError::Timeout("write"))?
        .map_err(LoadgenError::Io)
    }

    /// Reads more bytes (cancel-safe: nothing is lost if the future is dropped).
    pub(super) async fn read_more(&mut self) -> std::io::Result<usize> {
        self.compact();
        if self.buf.capacity() - self.buf.len() < 2048 {
            self.buf.reserve(8192);
        }
        self.io.read_buf(&mut self.buf).await
    }

    pub(super) fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() > 4 * BUF_RETAIN && self.buf.len() < BUF_RETAIN / 2 {
            self.buf.shrink_to(BUF_RETAIN);
        }
    }

    /// The next element or close in the buffer (headers are recorded, whitespace skipped),
    /// as (kind, start, end) in `buf`; `None` when more bytes are needed.
    pub(super) fn next(&mut self) -> Result<Option<(FrameKind, usize, usize)>, LoadgenError> {
        loop {
            let f = wire::next_frame(&self.buf[self.pos..], MAX_STANZA)
                .map_err(|e| LoadgenError::Xml(e.to_string()))?;
            let Some(f) = f else { return Ok(None) };
            let (s, e) = (self.pos + f.start, self.pos + f.end);
            self.pos += f.end;
            match f.kind {
                FrameKind::Skip => {}
                FrameKind::Header => {
                    self.header.clear();
                    self.header.extend_from_slice(&self.buf[s..e]);
                }
                k => return Ok(Some((k, s, e))),
            }
        }
    }

    /// The next element, parsed; a stream error or close is an error.
    pub(super) async fn recv(&mut self, what: &'static str) -> Result<Element, LoadgenError> {
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        loop {
            if let Some((kind, s, e)) = self.next()? {
                if kind == FrameKind::Close {
                    return Err(LoadgenError::Closed);
                }
                let el = wire::parse_element(&self.header, &self.buf[s..e])
                    .map_err(LoadgenError::Xml)?;
                if el.name == "error" && el.ns == wire::STREAM_NS {
                    return Err(stream_error(&el));
                }
                return Ok(el);
            }
            match timeout_at(deadline, self.read_more()).await {
                Err(_) => return Err(LoadgenError::Timeout(what)),
                Ok(Ok(0)) => return Err(LoadgenError::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(LoadgenError::Io(e)),
            }
        }
    }

    /// Sends a stream header and returns the features that follow (RFC 6120 §4.3).
    pub(super) async fn open(&mut self, domain: &str) -> Result<Features, LoadgenError> {
        self.header.clear();
        self.send(&wire::stream_open(domain)).await?;
        loop {
            let el = self.recv("stream features").await?;
            if el.name == "features" && el.ns == wire::STREAM_NS {
                return Ok(Features::parse(&el));
            }
        }
    }

    /// Waits for the iq answering `id`, answering pings and taking a cxfr redirect on the way.
    pub(super) async fn expect_iq(
        &mut self,
        id: &str,
        what: &'static str,
    ) -> Result<Element, LoadgenError> {
        loop {
            let el = self.recv(what).await?;
            if el.name != "iq" {
                continue;
            }
            let kind = el.attr("type").unwrap_or("");
            if (kind == "result" || kind == "error") && el.attr("id") == Some(id) {
                return Ok(el);
            }
            let mut out = Vec::new();
            if kind == "set" {
                if let Some(server) = wire::cxfr_server(&el) {
                    wire::write_iq_result(&mut out, &el);
                    let _ = self.send(&out).await;
                    return Err(LoadgenError::Redirect {
                        kind: "cxfr",
                        to: server,
                    });
                }
            }
            if kind == "get" || kind == "set" {
                if el.has_child("ping", wire::PING_NS) || wire::roster_items(&el).is_some() {
                    wire::write_iq_result(&mut out, &el);
                } else {
                    wire::write_iq_unavailable(&mut out, &el);
                }
                self.send(&out).await?;
            }
        }
    }

    /// STARTTLS (RFC 6120 §5.4.2): `<starttls/>`, `<proceed/>`, handshake; the stream
    /// restarts on the new layer.
    pub(super) async fn starttls(mut self, run: &Run) -> Result<Conn, LoadgenError> {
        self.send(format!("<starttls xmlns='{}'/>", wire::TLS_NS).as_bytes())
            .await?;
        let el = self.recv("STARTTLS proceed").await?;
        if el.name != "proceed" {
            return Err(LoadgenError::Tls(format!("server answered <{}/>", el.name)));
        }
        let Stream::Plain(tcp) = self.io else {
            return Err(LoadgenError::Protocol("STARTTLS twice"));
        };
        Ok(Conn {
            io: net::start_tls(run, tcp, &run.set.opts.domain).await?,
            buf: Vec::with_capacity(4096),
            pos: 0,
            header: Vec::new(),
        })
    }
}

/// A `<stream:error/>` as an error: redirects become [`LoadgenError::Redirect`].
pub(super) fn stream_error(el: &Element) -> LoadgenError {
    let info = StreamErrorInfo::parse(el);
    match (info.condition.as_str(), info.other_host) {
        ("see-other-host", Some(to)) => LoadgenError::Redirect {
            kind: "see_other_host",
            to,
        },
        _ => LoadgenError::StreamError(info.condition),
    }
}

/// `host:port` of a redirect target; a bare host gets the port of the current target.
pub(super) fn redirect_target(to: &str, current: &str) -> String {
    if crate::loadgen::options::split_host_port(to).is_some() {
        return to.to_string();
    }
    let port = crate::loadgen::options::split_host_port(current)
        .map(|(_, p)| p)
        .unwrap_or(5222);
    if to.contains(':') && !to.starts_with('[') {
        format!("[{to}]:{port}")
    } else {
        format!("{to}:{port}")
    }
}

/// Connects and negotiates up to the point where the stream is ready for SASL.
pub(super) async fn connect_and_open(
    run: &Run,
    target: &str,
) -> Result<(Conn, Features), LoadgenError> {
    let domain = &run.set.opts.domain;
    let mut conn = Conn::connect(run, target).await?;
    let mut features = conn.open(domain).await?;
    let mech = run.set.opts.sasl.mechanism();
    if features.starttls
        && (features.starttls_required || !features.mechanisms.iter().any(|m| m == mech))
    {
        conn = conn.starttls(run).await?;
        features = conn.open(domain).await?;
    }
    Ok((conn, features))
}

/// SaltedPassword for SCRAM, cached for the run and computed on a blocking thread.
pub(super) async fn salted(
    run: &Run,
    hash: ScramHash,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Result<Rc<[u8]>, LoadgenError> {
    let key = (hash as u8, password.to_string(), salt.to_vec(), iterations);
    if let Some(v) = run.salted.borrow().get(&key) {
        return Ok(v.clone());
    }
    let _permit = run
        .cpu_gate
        .acquire()
        .await
        .map_err(|_| LoadgenError::Protocol("gate closed"))?;
    let (p, s) = (password.to_string(), salt.to_vec());
    let v = tokio::task::spawn_blocking(move || scram::salted_password(hash, &p, &s, iterations))
        .await
        .map_err(|e| LoadgenError::Setup(format!("PBKDF2 thread: {e}")))?;
    let v: Rc<[u8]> = v.into();
    run.salted.borrow_mut().insert(key, v.clone());
    Ok(v)
}

/// The text content of a SASL element, base64-decoded.
pub(super) fn sasl_data(el: &Element) -> Result<Vec<u8>, LoadgenError> {
    let t = el.text();
    let t = t.trim();
    if t == "=" {
        return Ok(Vec::new());
    }
    B64.decode(t)
        .map_err(|_| LoadgenError::Protocol("SASL data is not base64"))
}

pub(super) fn sasl_failure(el: &Element) -> LoadgenError {
    let cond = el
        .elements()
        .find(|e| e.name != "text")
        .map(|e| e.name.clone())
        .unwrap_or_else(|| "undefined".into());
    LoadgenError::Sasl(cond)
}

/// SASL (RFC 6120 §6.4) with the configured mechanism.
pub(super) async fn authenticate(
    run: &Run,
    slot: usize,
    conn: &mut Conn,
    features: &Features,
) -> Result<(), LoadgenError> {
    let choice = run.set.opts.sasl;
    let mech = choice.mechanism();
    if !features.mechanisms.iter().any(|m| m == mech) {
        return Err(LoadgenError::MechanismNotOffered(mech));
    }
    let name = run.set.name(slot);
    let password = run.set.password(slot);
    let hash = match choice {
        SaslChoice::Plain => {
            let creds = B64.encode(format!("\0{name}\0{password}"));
            conn.send(&wire::auth(mech, &creds)).await?;
            let el = conn.recv("SASL result").await?;
            return match el.name.as_str() {
                "success" => Ok(()),
                "failure" => Err(sasl_failure(&el)),
                _ => Err(LoadgenError::Protocol("unexpected answer to <auth/>")),
            };
        }
        SaslChoice::ScramSha1 => ScramHash::Sha1,
        SaslChoice::ScramSha256 => ScramHash::Sha256,
    };
    let first = scram::ClientFirst::new(hash, &name, &scram::new_nonce());
    conn.send(&wire::auth(mech, &B64.encode(first.message())))
        .await?;
    let el = conn.recv("SASL challenge").await?;
    match el.name.as_str() {
        "challenge" => {}
        "failure" => return Err(sasl_failure(&el)),
        _ => return Err(LoadgenError::Protocol("unexpected answer to <auth/>")),
    }
    let server_first = scram::parse_server_first(&first, &sasl_data(&el)?)?;
    let salted = salted(
        run,
        hash,
        &password,
        &server_first.salt,
        server_first.iterations,
    )
    .await?;
    let (fin, signature) = first.client_final(&server_first, &salted);
    conn.send(&wire::sasl_response(&B64.encode(fin))).await?;
    let el = conn.recv("SASL success").await?;
    match el.name.as_str() {
        "success" => {
            let data = sasl_data(&el)?;
            if !data.is_empty() {
                scram::verify_server_final(&data, &signature)?;
            }
            Ok(())
        }
        // Older servers send the server-final-message in a challenge, then success.
        "challenge" => {
            scram::verify_server_final(&sasl_data(&el)?, &signature)?;
            conn.send(&wire::sasl_response("")).await?;
            let el = conn.recv("SASL success").await?;
            if el.name == "success" {
                Ok(())
            } else {
                Err(sasl_failure(&el))
            }
        }
        "failure" => Err(sasl_failure(&el)),
        _ => Err(LoadgenError::Protocol("unexpected answer to SASL response")),
    }
}

/// A full login to `target`: stream, TLS if needed, SASL, restart, bind, session.
pub(super) async fn login(run: &Run, slot: usize, target: &str) -> Result<Conn, LoadgenError> {
    timeout(LOGIN_TIMEOUT, async {
        let (mut conn, features) = connect_and_open(run, target).await?;
        authenticate(run, slot, &mut conn, &features).await?;
        let features = conn.open(&run.set.opts.domain).await?;
        if !features.bind {
            return Err(LoadgenError::Protocol("resource binding not offered"));
        }
        conn.send(&wire::bind("bind1", RESOURCE)).await?;
        let el = conn.expect_iq("bind1", "bind result").await?;
        if el.attr("type") != Some("result") {
            return Err(LoadgenError::IqError {
                what: "bind",
                condition: wire::stanza_error_condition(&el),
            });
        }
        if features.session_required {
            conn.send(&wire::session("sess1")).await?;
            let el = conn.expect_iq("sess1", "session result").await?;
            if el.attr("type") != Some("result") {
                return Err(LoadgenError::IqError {
                    what: "session",
                    condition: wire::stanza_error_condition(&el),
                });
            }
        }
        Ok(conn)
    })
    .await
    .map_err(|_| LoadgenError::Timeout("login"))?
}

/// What a registration attempt found.
pub(super) enum Registered {
    Created,
    Existing,
}

/// XEP-0077 §3.1 registration of user `slot` on its own connection.
pub(super) async fn register(run: &Run, slot: usize) -> Result<Registered, LoadgenError> {
    let (mut conn, _features) = connect_and_open(run, &run.set.opts.xmpp).await?;
    conn.send(&wire::register_set(
        "reg1",
        &run.set.name(slot),
        &run.set.password(slot),
    ))
    .await?;
    let el = conn.expect_iq("reg1", "registration result").await?;
    let _ = conn.send(b"</stream:stream>").await;
    if el.attr("type") == Some("result") {
        return Ok(Registered::Created);
    }
    match wire::stanza_error_condition(&el).as_str() {
        "conflict" => Ok(Registered::Existing),
        c => Err(LoadgenError::IqError {
            what: "register",
            condition: c.to_string(),
        }),
    }
}
