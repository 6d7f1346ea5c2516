//! A raw SIP user agent for tests: builds requests as text, sends them over real UDP or TCP
//! sockets, answers digest challenges, and collects what the server sends (responses and
//! NOTIFY/MESSAGE requests) in arrival order.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use rendezvous::sip::digest::{self, Algorithm};
use rendezvous::sip::framing::{Frame, StreamDecoder};
use rendezvous::sip::message::{self, Limits, Message, Request, Response};

pub const WAIT: Duration = Duration::from_secs(5);

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream, StreamDecoder),
}

/// One SIP user agent of user `user` (password for digest, if the node wants it).
pub struct Ua {
    conn: Conn,
    pub server: SocketAddr,
    pub local: SocketAddr,
    pub user: String,
    pub password: Option<String>,
    /// Digest algorithm to answer challenges with.
    pub algorithm: Algorithm,
    inbox: VecDeque<Message>,
    seq: u32,
}

/// A request to send; `build` turns it into text.
#[derive(Clone)]
pub struct Req {
    pub method: String,
    pub uri: String,
    pub to: String,
    pub to_tag: Option<String>,
    pub from_tag: String,
    pub call_id: String,
    pub cseq: u32,
    pub branch: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<(String, String)>,
}

impl Req {
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Req {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body(mut self, content_type: &str, body: impl Into<String>) -> Req {
        self.body = Some((content_type.to_string(), body.into()));
        self
    }

    pub fn without(mut self, name: &str) -> Req {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }
}

pub fn rand_token() -> String {
    message::new_tag()
}

impl Ua {
    pub fn udp(server: SocketAddr, user: &str) -> Ua {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = sock.local_addr().unwrap();
        Ua::new(Conn::Udp(sock), server, local, user)
    }

    pub fn tcp(server: SocketAddr, user: &str) -> Ua {
        let stream = TcpStream::connect(server).unwrap();
        stream.set_nodelay(true).unwrap();
        let local = stream.local_addr().unwrap();
        Ua::new(
            Conn::Tcp(stream, StreamDecoder::new(65536)),
            server,
            local,
            user,
        )
    }

    fn new(conn: Conn, server: SocketAddr, local: SocketAddr, user: &str) -> Ua {
        Ua {
            conn,
            server,
            local,
            user: user.to_string(),
            password: None,
            algorithm: Algorithm::Sha256,
            inbox: VecDeque::new(),
            seq: 0,
        }
    }

    pub fn with_password(mut self, password: &str) -> Ua {
        self.password = Some(password.to_string());
        self
    }

    pub fn transport(&self) -> &'static str {
        match self.conn {
            Conn::Udp(_) => "UDP",
            Conn::Tcp(..) => "TCP",
        }
    }

    pub fn aor(&self) -> String {
        format!("sip:{}@localhost", self.user)
    }

    /// A new out-of-dialog request to `to_user` (Request-URI and To).
    pub fn req(&mut self, method: &str, to_user: &str) -> Req {
        self.seq += 1;
        let uri = format!("sip:{to_user}@{}", self.server);
        let contact = format!(
            "<sip:{}@{};transport={}>",
            self.user,
            self.local,
            self.transport().to_ascii_lowercase()
        );
        Req {
            method: method.to_string(),
            uri,
            to: format!("sip:{to_user}@localhost"),
            to_tag: None,
            from_tag: rand_token(),
            call_id: format!("{}@test", rand_token()),
            cseq: self.seq,
            branch: format!("z9hG4bK{}", rand_token()),
            headers: vec![("Contact".into(), contact)],
            body: None,
        }
    }

    /// The next request in the same dialog (CSeq + 1, new branch).
    pub fn next_in_dialog(&self, prev: &Req, to_tag: &str) -> Req {
        let mut r = prev.clone();
        r.cseq += 1;
        r.to_tag = Some(to_tag.to_string());
        r.branch = format!("z9hG4bK{}", rand_token());
        r.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("Authorization"));
        r
    }

    pub fn build(&self, r: &Req) -> String {
        let mut s = format!("{} {} SIP/2.0\r\n", r.method, r.uri);
        s += &format!(
            "Via: SIP/2.0/{} {};branch={};rport\r\n",
            self.transport(),
            self.local,
            r.branch
        );
        s += "Max-Forwards: 70\r\n";
        s += &format!("From: <{}>;tag={}\r\n", self.aor(), r.from_tag);
        match &r.to_tag {
            Some(t) => s += &format!("To: <{}>;tag={t}\r\n", r.to),
            None => s += &format!("To: <{}>\r\n", r.to),
        }
        s += &format!("Call-ID: {}\r\n", r.call_id);
        s += &format!("CSeq: {} {}\r\n", r.cseq, r.method);
        for (n, v) in &r.headers {
            s += &format!("{n}: {v}\r\n");
        }
        match &r.body {
            Some((ct, body)) => {
                s += &format!(
                    "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
            None => s += "Content-Length: 0\r\n\r\n",
        }
        s
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.conn {
            Conn::Udp(sock) => {
                sock.send_to(bytes, self.server).unwrap();
            }
            Conn::Tcp(stream, _) => stream.write_all(bytes).unwrap(),
        }
    }

    pub fn send(&mut self, r: &Req) {
        let text = self.build(r);
        self.send_raw(text.as_bytes());
    }

    /// Reads what arrives within `wait` into the inbox; false if nothing came.
    fn pump(&mut self, wait: Duration) -> bool {
        let mut buf = vec![0u8; 70_000];
        match &mut self.conn {
            Conn::Udp(sock) => {
                sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                    .unwrap();
                match sock.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        let data = &buf[..n];
                        if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
                            return true;
                        }
                        let m = message::parse(
                            data,
                            &Limits {
                                max_message_bytes: 70_000,
                            },
                        )
                        .unwrap_or_else(|_| {
                            panic!(
                                "server sent an unparsable message: {}",
                                String::from_utf8_lossy(data)
                            )
                        });
                        self.inbox.push_back(m);
                        true
                    }
                    Err(_) => false,
                }
            }
            Conn::Tcp(stream, decoder) => {
                stream
                    .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                    .unwrap();
                let got = match stream.read(&mut buf) {
                    Ok(0) => return false,
                    Ok(n) => {
                        decoder.push(&buf[..n]);
                        true
                    }
                    Err(_) => false,
                };
                while let Ok(Some(frame)) = decoder.next_frame() {
                    if let Frame::Message(bytes) = frame {
                        let m = message::parse(
                            &bytes,
                            &Limits {
                                max_message_bytes: 70_000,
                            },
                        )
                        .expect("server sent an unparsable message");
                        self.inbox.push_back(m);
                    }
                }
                got
            }
        }
    }

    /// Raw bytes the server sends next (TCP only), e.g. a keep-alive pong.
    pub fn read_raw(&mut self, wait: Duration) -> Vec<u8> {
        let Conn::Tcp(stream, _) = &mut self.conn else {
            panic!("read_raw is for TCP");
        };
        stream.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 4096];
        match stream.read(&mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(_) => Vec::new(),
        }
    }

    /// The next response whose CSeq matches `r` (1xx skipped), within `wait`.
    pub fn response_to(&mut self, r: &Req, wait: Duration) -> Option<Response> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(pos) = self.inbox.iter().position(|m| {
                matches!(m, Message::Response(resp)
                    if resp.base.cseq.seq == r.cseq
                        && resp.base.call_id == r.call_id
                        && resp.status >= 200)
            }) {
                if let Some(Message::Response(resp)) = self.inbox.remove(pos) {
                    return Some(resp);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            self.pump(deadline - now);
        }
    }

    /// Sends `r` and returns the final response, answering one digest challenge if a
    /// password is set. The request actually answered is returned too (its CSeq may differ).
    pub fn transact(&mut self, r: Req) -> (Req, Response) {
        self.send(&r);
        let resp = self
            .response_to(&r, WAIT)
            .unwrap_or_else(|| panic!("no response to {} within {WAIT:?}", r.method));
        if resp.status != 401 || self.password.is_none() {
            return (r, resp);
        }
        let r2 = self.authorize(&r, &resp);
        self.send(&r2);
        let resp2 = self
            .response_to(&r2, WAIT)
            .unwrap_or_else(|| panic!("no response to authorized {}", r.method));
        (r2, resp2)
    }

    /// `r` again (CSeq + 1, new branch) with an Authorization for the challenge in `resp`.
    pub fn authorize(&self, r: &Req, resp: &Response) -> Req {
        let want = self.algorithm.token();
        let challenge = resp
            .headers("WWW-Authenticate")
            .into_iter()
            .find(|c| c.contains(&format!("algorithm={want}")))
            .expect("a challenge for our algorithm")
            .to_string();
        let param = |name: &str| -> String {
            let key = format!("{name}=\"");
            let start = challenge.find(&key).expect("challenge param") + key.len();
            challenge[start..].split('"').next().unwrap().to_string()
        };
        let (realm, nonce) = (param("realm"), param("nonce"));
        let ha1 = digest::ha1(
            self.algorithm,
            &self.user,
            &realm,
            self.password.as_deref().unwrap(),
        );
        let cnonce = rand_token();
        let response = digest::response(
            self.algorithm,
            &ha1,
            &nonce,
            Some("00000001"),
            Some(&cnonce),
            Some("auth"),
            &r.method,
            &r.uri,
        );
        let mut r2 = r.clone();
        r2.cseq += 1;
        r2.branch = format!("z9hG4bK{}", rand_token());
        r2.headers.push((
            "Authorization".into(),
            format!(
                "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{}\", \
                 response=\"{response}\", algorithm={want}, qop=auth, nc=00000001, cnonce=\"{cnonce}\"",
                self.user, r.uri
            ),
        ));
        r2
    }

    /// The next request of `method` the server sends us, within `wait`.
    pub fn next_request(&mut self, method: &str, wait: Duration) -> Option<Request> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(pos) = self
                .inbox
                .iter()
                .position(|m| matches!(m, Message::Request(req) if req.method().as_str() == method))
            {
                if let Some(Message::Request(req)) = self.inbox.remove(pos) {
                    return Some(req);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            self.pump(deadline - now);
        }
    }

    /// Answers a request the server sent us, to the address in its Via (RFC 3261 §18.2.2),
    /// which after a node restart is not the address we first talked to.
    pub fn answer(&mut self, req: &Request, status: u16, reason: &str) {
        let bytes = message::reply(req, status, reason).build();
        match &mut self.conn {
            Conn::Udp(sock) => {
                let (host, port) = req.base.via.response_target();
                let to: SocketAddr = format!("{host}:{port}").parse().unwrap_or(self.server);
                sock.send_to(&bytes, to).unwrap();
            }
            Conn::Tcp(stream, _) => stream.write_all(&bytes).unwrap(),
        }
    }

    /// Waits for a NOTIFY, answers 200 and returns it.
    pub fn notify(&mut self, wait: Duration) -> Option<Request> {
        let n = self.next_request("NOTIFY", wait)?;
        self.answer(&n, 200, "OK");
        Some(n)
    }

    /// Answers every NOTIFY that arrives within `wait` with 200 and returns them.
    pub fn notifies_within(&mut self, wait: Duration) -> Vec<Request> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        while let Some(n) = self.notify(deadline.saturating_duration_since(Instant::now())) {
            out.push(n);
        }
        out
    }
}

pub fn body(req: &Request) -> String {
    String::from_utf8_lossy(req.body()).into_owned()
}

/// A PIDF document with one tuple.
pub fn pidf(user: &str, tuple: &str, open: bool, note: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:{user}@localhost\">\r\n\
         <tuple id=\"{tuple}\"><status><basic>{}</basic></status><note>{note}</note></tuple>\r\n\
         </presence>\r\n",
        if open { "open" } else { "closed" }
    )
}
