//! A deliberately small HTTP/1.1 server and client: the node's JSON admin API
//! (`GET /api/cluster`, `POST /api/nodes`, ...) and the `rendezvous ctl` command that talks to
//! it. A handful of JSON endpoints do not justify hyper or actix-web.
//!
//! Two layers live here. The pure part parses a request head ([`parse_head`]), serialises a
//! [`Response`] and parses a response for the client; it touches no sockets and is unit-tested on
//! byte strings. The I/O part ([`serve`], [`request`]) moves those bytes over tokio TCP streams.
//!
//! # What is implemented (RFC 9112, HTTP/1.1 message syntax)
//!
//! - §2.1 message format: start-line, field lines, empty line, optional body.
//! - §2.2 message parsing: a bare LF is accepted as a line terminator (the preceding CR is
//!   optional); a bare CR anywhere in the head is a 400; empty lines before the request-line are
//!   ignored; whitespace between the start-line and the first field line is a 400.
//! - §2.3 HTTP version: `HTTP/1.0` and `HTTP/1.1`. Any other well-formed version is answered
//!   505 (stricter than RFC 9110 §6.2, which would treat a future `HTTP/1.x` as 1.1); a malformed
//!   one is a 400. Responses are always sent as `HTTP/1.1`.
//! - §3 request line (`method SP request-target SP HTTP-version`, single spaces, token method).
//! - §3.2 request target: origin-form (§3.2.1), absolute-form (§3.2.2, reduced to its path and
//!   query) and asterisk-form (§3.2.4, `OPTIONS *` only); authority-form (§3.2.3, `CONNECT`) is a
//!   400. The path and query are split at the first `?` and are *not* percent-decoded. An
//!   HTTP/1.1 request without exactly one `Host` field is a 400 (§3.2).
//! - §4 status line, both written (server) and parsed (client).
//! - §5 field syntax: token names, compared case-insensitively (stored lower-cased), optional
//!   whitespace trimmed from values; whitespace before the colon (§5.1) and obs-fold line
//!   continuations (§5.2) are a 400, as are control characters in a value (§5.5).
//! - §6.1–6.3 message body length: `Transfer-Encoding` in a request is answered 501, as no
//!   transfer coding is implemented; the body is exactly `Content-Length` bytes (identical
//!   repeated values are accepted, differing or non-numeric ones are a 400); without
//!   `Content-Length` the body is empty, whatever the method. Too long a declared body is a 413.
//! - §9.3 and §9.6 connection management: every response carries `Connection: close`, and the
//!   server closes its write half first, then drains (briefly) what the client still sends, so
//!   that an early refusal (413, 503, ...) is not destroyed by a TCP reset.
//!
//! Also from RFC 9110: every response has `Date` (§6.6.1), `Content-Type` and `Content-Length`
//! (except 204 and 304, which carry no content, §8.6); a response to `HEAD` has no body
//! (§9.3.2); `Expect: 100-continue` is answered with `100 Continue` before the body is read
//! (§10.1.1). 431 is RFC 6585 §5.
//!
//! # What is left out
//!
//! - Chunked (or any transfer-coded) request bodies: 501, so `Content-Length` is required for a
//!   body (there is no 411: a body-bearing request without `Content-Length` has an empty body).
//!   Responses are never chunked, and the client refuses chunked responses.
//! - Keep-alive and pipelining: exactly one request per connection; bytes after the body are
//!   ignored.
//! - Trailers, percent-decoding, `Upgrade`, TLS and HTTP/2.
//!
//! # Server errors
//!
//! Malformed request line or field → 400, head larger than [`Limits::max_head_bytes`] → 431,
//! body larger than [`Limits::max_body_bytes`] → 413, `Transfer-Encoding` → 501, version other
//! than 1.0/1.1 → 505, request not complete within [`Limits::timeout`] → 408, more than
//! [`MAX_CONNECTIONS`] open connections → 503. Each refusal logs one `tracing::warn!` line with
//! the peer address and the reason; the handler's [`Response`] is sent otherwise (a panicking
//! handler gives a 500).

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Most connections [`serve`] handles at once; beyond it a connection gets a 503 and is closed.
pub const MAX_CONNECTIONS: usize = 64;

/// Largest response head the client accepts.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Largest response body the client accepts.
const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;
/// How long the server drains a closing connection at most (RFC 9112 §9.6).
const LINGER: Duration = Duration::from_secs(2);
/// How many bytes the server drains from a closing connection at most.
const LINGER_BYTES: usize = 1024 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Fields the serialiser writes itself, or must never write.
const RESERVED_FIELDS: [&str; 5] = [
    "content-type",
    "content-length",
    "connection",
    "date",
    "transfer-encoding",
];

/// Content type of [`Response::json`].
const JSON: &str = "application/json";
/// Content type of [`Response::text`].
const TEXT: &str = "text/plain; charset=utf-8";

/// Everything that can go wrong in this module, on the server or on the client side.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Malformed request line or field, or an incomplete request (server answers 400).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request head exceeds the limit, in bytes (server answers 431).
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// The declared body exceeds the limit, in bytes (server answers 413).
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The request uses `Transfer-Encoding`, which is not implemented (server answers 501).
    #[error("Transfer-Encoding is not implemented")]
    TransferEncoding,
    /// A well-formed HTTP version other than 1.0 and 1.1 (server answers 505).
    #[error("HTTP version {0} is not supported")]
    VersionNotSupported(String),
    /// The exchange did not complete within the given time (server answers 408).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Socket error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Client: the server's response is malformed, too large or truncated.
    #[error("bad response: {0}")]
    BadResponse(&'static str),
    /// Client: a method, path or address that cannot be put in a request.
    #[error("invalid request: {0}")]
    InvalidArgument(&'static str),
}

impl HttpError {
    /// The status a server answers this error with; `None` for errors the server never answers
    /// (I/O failures and the client-side variants).
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::BadRequest(_) => Some(400),
            HttpError::HeadTooLarge(_) => Some(431),
            HttpError::BodyTooLarge(_) => Some(413),
            HttpError::TransferEncoding => Some(501),
            HttpError::VersionNotSupported(_) => Some(505),
            HttpError::Timeout(_) => Some(408),
            HttpError::Io(_) | HttpError::BadResponse(_) | HttpError::InvalidArgument(_) => None,
        }
    }

    /// The response a server sends for this error: its [`status`](Self::status) (500 if none)
    /// and a JSON body `{"error": "<message>"}`.
    pub fn to_response(&self) -> Response {
        Response::error(self.status().unwrap_or(500), &self.to_string())
    }
}

/// Size and time limits for one request on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line, fields, empty line) in bytes; beyond it, 431.
    pub max_head_bytes: usize,
    /// Largest request body in bytes; beyond it, 413.
    pub max_body_bytes: usize,
    /// Time allowed for reading the whole request (head and body); beyond it, 408. Writing the
    /// response is bounded by the same duration.
    pub timeout: Duration,
}

impl Default for Limits {
    /// 8 KiB head, 64 KiB body, 10 s.
    fn default() -> Self {
        Limits {
            max_head_bytes: 8192,
            max_body_bytes: 65536,
            timeout: Duration::from_secs(10),
        }
    }
}

/// A parsed request head (RFC 9112 §2.1 start-line and field lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Method, case-sensitive as sent (`GET`, `POST`, ...).
    pub method: String,
    /// Path of the request target, without the query, not percent-decoded (`*` for `OPTIONS *`).
    pub path: String,
    /// Query of the request target (after the first `?`), not percent-decoded.
    pub query: Option<String>,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Fields in order; names lower-cased, values with surrounding whitespace removed.
    pub headers: Vec<(String, String)>,
    /// Body length from `Content-Length`; 0 without one.
    pub content_length: usize,
}

impl Head {
    /// First value of the field `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// A complete request as handed to the [`serve`] handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method, case-sensitive as sent (`GET`, `POST`, ...).
    pub method: String,
    /// Path of the request target, without the query, not percent-decoded.
    pub path: String,
    /// Query of the request target (after the first `?`), not percent-decoded.
    pub query: Option<String>,
    /// Fields in order; names lower-cased, values with surrounding whitespace removed.
    pub headers: Vec<(String, String)>,
    /// Body (`Content-Length` bytes; empty without `Content-Length`).
    pub body: Vec<u8>,
}

impl Request {
    /// First value of the field `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// A response to serialise. `Content-Type`, `Content-Length`, `Date` and `Connection: close`
/// are always written by the serialiser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code; anything outside 200..=599 is sent as 500.
    pub status: u16,
    /// `Content-Type` value.
    pub content_type: &'static str,
    /// Body (not sent for 204, 304 and responses to `HEAD`).
    pub body: Vec<u8>,
    /// Extra fields such as `Allow`, `Location` or `Retry-After`. Fields the serialiser writes
    /// itself, `Transfer-Encoding`, names that are not tokens and values with control characters
    /// are skipped.
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// A response with an `application/json` body.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type: JSON,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// A response with a `text/plain; charset=utf-8` body.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type: TEXT,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// A JSON error response: `{"error": "<message>"}`, with `message` escaped.
    pub fn error(status: u16, message: &str) -> Self {
        let mut body = String::with_capacity(message.len() + 12);
        body.push_str("{\"error\":\"");
        for c in message.chars() {
            match c {
                '"' => body.push_str("\\\""),
                '\\' => body.push_str("\\\\"),
                '\n' => body.push_str("\\n"),
                '\r' => body.push_str("\\r"),
                '\t' => body.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(body, "\\u{:04x}", c as u32);
                }
                c => body.push(c),
            }
        }
        body.push_str("\"}");
        Response::json(status, body)
    }

    /// 404 with a JSON error body.
    pub fn not_found() -> Self {
        Response::error(404, "not found")
    }

    /// 405 with a JSON error body and `Allow: <allow>` (e.g. `"GET, POST"`).
    pub fn method_not_allowed(allow: &str) -> Self {
        Response::error(405, "method not allowed").with_header("Allow", allow)
    }

    /// This response with one more field (see [`Response::headers`]).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The response as bytes: status line, `Date` (from `now`), `Content-Type`,
    /// `Content-Length`, `Connection: close`, the extra fields, the empty line and, unless
    /// `head_only` (a response to `HEAD`) or the status is 204 or 304, the body.
    pub fn serialize(&self, now: SystemTime, head_only: bool) -> Vec<u8> {
        let status = if (200..=599).contains(&self.status) {
            self.status
        } else {
            500
        };
        let no_content = status == 204 || status == 304;
        let mut head = String::with_capacity(160);
        let _ = write!(head, "HTTP/1.1 {status} {}\r\n", reason(status));
        let _ = write!(head, "Date: {}\r\n", http_date(now));
        if !no_content {
            let content_type = if is_field_value(self.content_type.as_bytes()) {
                self.content_type
            } else {
                "application/octet-stream"
            };
            let _ = write!(head, "Content-Type: {content_type}\r\n");
            let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        }
        head.push_str("Connection: close\r\n");
        for (name, value) in &self.headers {
            let reserved = RESERVED_FIELDS.iter().any(|r| name.eq_ignore_ascii_case(r));
            if reserved || !is_token(name.as_bytes()) || !is_field_value(value.as_bytes()) {
                continue;
            }
            let _ = write!(head, "{name}: {}\r\n", value.trim_matches([' ', '\t']));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !head_only && !no_content {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)`: the head is not complete yet
/// (read more). `Ok(Some((head, n)))`: the head takes the first `n` bytes of `buf` (including
/// the empty line); the body follows. Errors carry the status to answer
/// ([`HttpError::status`]): 400, 431, 413, 501 or 505.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(Head, usize)>, HttpError> {
    let Some((start, end)) = find_head(buf, 0) else {
        if buf.len() > limits.max_head_bytes {
            return Err(HttpError::HeadTooLarge(limits.max_head_bytes));
        }
        return Ok(None);
    };
    if end > limits.max_head_bytes {
        return Err(HttpError::HeadTooLarge(limits.max_head_bytes));
    }
    let mut lines = head_lines(&buf[start..end]).map_err(HttpError::BadRequest)?;
    let request_line = lines.next().unwrap_or_default();

    let (method, target, version) =
        split_request_line(request_line).map_err(HttpError::BadRequest)?;
    let minor_version = match parse_version(version).map_err(HttpError::BadRequest)? {
        (1, minor @ (0 | 1)) => minor,
        _ => {
            return Err(HttpError::VersionNotSupported(
                String::from_utf8_lossy(version).into_owned(),
            ))
        }
    };
    let method = String::from_utf8_lossy(method).into_owned();
    let (path, query) = parse_target(&method, target).map_err(HttpError::BadRequest)?;

    let headers = lines
        .map(parse_field)
        .collect::<Result<Vec<_>, _>>()
        .map_err(HttpError::BadRequest)?;

    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(HttpError::TransferEncoding);
    }
    let hosts = headers.iter().filter(|(n, _)| n == "host").count();
    if hosts > 1 || (minor_version == 1 && hosts == 0) {
        return Err(HttpError::BadRequest(
            "an HTTP/1.1 request needs exactly one Host field",
        ));
    }
    let content_length = match content_length(&headers).map_err(HttpError::BadRequest)? {
        None => 0,
        Some(n) if n > limits.max_body_bytes as u64 => {
            return Err(HttpError::BodyTooLarge(limits.max_body_bytes))
        }
        Some(n) => n as usize,
    };

    let head = Head {
        method,
        path,
        query,
        minor_version,
        headers,
        content_length,
    };
    Ok(Some((head, end)))
}

/// Runs the server: accepts connections on `listener` and, for each, reads one request, passes
/// it to `handler` (in its own task, so a panic becomes a 500), writes the response and closes.
/// Each connection runs in its own task; at most [`MAX_CONNECTIONS`] at once, beyond which a
/// connection gets a 503 and is closed. Returns once `shutdown` is `true` (if its sender is
/// dropped first, it serves forever); connections already accepted then finish on their own,
/// bounded by `limits.timeout`.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    limits: Limits,
    handler: F,
    mut shutdown: watch::Receiver<bool>,
) where
    F: Fn(Request) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    if let Ok(local) = listener.local_addr() {
        tracing::debug!(%local, "http: listening");
    }
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Bounds the tasks that only send a 503, so a flood cannot spawn without limit.
    let overflow = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut watching = true;
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = shutdown.changed(), if watching => {
                if changed.is_err() {
                    // The sender is gone: the value can no longer become true.
                    watching = false;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => {
                        let handler = handler.clone();
                        tokio::spawn(async move {
                            connection(stream, peer, limits, handler).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::warn!(
                            %peer,
                            reason = "too many connections",
                            "http: refused with 503: {MAX_CONNECTIONS} connections already open"
                        );
                        if let Ok(permit) = Arc::clone(&overflow).try_acquire_owned() {
                            let response = Response::error(503, "too many connections")
                                .with_header("Retry-After", "1");
                            tokio::spawn(async move {
                                let bytes = response.serialize(SystemTime::now(), false);
                                send_and_close(stream, &bytes, limits.timeout.min(LINGER)).await;
                                drop(permit);
                            });
                        }
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
    tracing::debug!("http: accept loop stopped");
}

/// Client for `rendezvous ctl`: sends one request to `addr` (`host:port`) and returns the status
/// and body of the response. With a body, sends `Content-Type: application/json`. Reads until
/// `Content-Length` bytes arrived or, without it, until the server closes. The whole exchange
/// (connect, send, receive) must finish within `timeout`, else [`HttpError::Timeout`].
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), HttpError> {
    let message = build_request(addr, method, path, body)?;
    let head_request = method == "HEAD";
    tokio::time::timeout(timeout, exchange(addr, &message, head_request))
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

// ---------------------------------------------------------------------------------------------
// Pure helpers.

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §5.6.2 `token`.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().copied().all(is_tchar)
}

/// RFC 9110 §5.5 field value: VCHAR, obs-text, SP and HTAB (no other control characters).
fn is_field_value(s: &[u8]) -> bool {
    s.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// A request target byte: visible ASCII except `#` (a fragment is never sent).
fn is_target_byte(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'#'
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Finds a message head in `buf` from `from`: skips empty lines (RFC 9112 §2.2) and returns
/// (start of the start-line, end just after the terminating empty line), or `None` if the
/// empty line has not arrived yet.
fn find_head(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut start = from;
    loop {
        match buf.get(start..)? {
            [b'\n', ..] => start += 1,
            [b'\r', b'\n', ..] => start += 2,
            [b'\r'] | [] => return None,
            _ => break,
        }
    }
    let mut pos = start;
    loop {
        let nl = pos + buf.get(pos..)?.iter().position(|&b| b == b'\n')?;
        let line = &buf[pos..nl];
        if line.is_empty() || line == b"\r" {
            return Some((start, nl + 1));
        }
        pos = nl + 1;
    }
}

/// The non-empty lines of a head found by [`find_head`], without their terminators. A CR not
/// directly before the LF is an error (RFC 9112 §2.2).
fn head_lines(head: &[u8]) -> Result<impl Iterator<Item = &[u8]>, &'static str> {
    let lines: Vec<&[u8]> = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect();
    if lines.iter().any(|l| l.contains(&b'\r')) {
        return Err("bare CR in the head");
    }
    Ok(lines.into_iter())
}

/// The three parts of a request line: method, request-target, HTTP-version.
type RequestLine<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// RFC 9112 §3: `method SP request-target SP HTTP-version`.
fn split_request_line(line: &[u8]) -> Result<RequestLine<'_>, &'static str> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if !is_token(method) {
        return Err("malformed method");
    }
    if target.is_empty() || !target.iter().copied().all(is_target_byte) {
        return Err("malformed request target");
    }
    Ok((method, target, version))
}

/// RFC 9112 §2.3: `HTTP/` DIGIT `.` DIGIT.
fn parse_version(version: &[u8]) -> Result<(u8, u8), &'static str> {
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Ok((major - b'0', minor - b'0'))
        }
        _ => Err("malformed HTTP version"),
    }
}

/// RFC 9112 §3.2: the request target as (path, query), not percent-decoded.
fn parse_target(method: &str, target: &[u8]) -> Result<(String, Option<String>), &'static str> {
    let target = std::str::from_utf8(target).map_err(|_| "malformed request target")?;
    let origin = if target.starts_with('/') {
        target
    } else if target == "*" && method == "OPTIONS" {
        return Ok(("*".to_owned(), None));
    } else if let Some(rest) = strip_scheme(target) {
        // absolute-form: drop the authority, keep path-abempty and query.
        let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
        if path_start == 0 {
            return Err("absolute-form target without authority");
        }
        &rest[path_start..]
    } else {
        return Err("unsupported request target form");
    };
    let (path, query) = match origin.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (origin, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    Ok((path.to_owned(), query))
}

fn strip_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// RFC 9112 §5: `field-name ":" OWS field-value OWS`; the name is returned lower-cased.
fn parse_field(line: &[u8]) -> Result<(String, String), &'static str> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err("obsolete line folding");
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or("field line without colon")?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if !is_token(name) {
        return Err("malformed field name");
    }
    let value = value.trim_ascii();
    if !is_field_value(value) {
        return Err("control character in a field value");
    }
    Ok((
        String::from_utf8_lossy(name).to_ascii_lowercase(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

/// RFC 9112 §6.3: the body length from all `Content-Length` fields (each possibly a list of
/// identical values). Too large a number saturates, so that it becomes a 413, not a 400.
fn content_length(headers: &[(String, String)]) -> Result<Option<u64>, &'static str> {
    let mut length = None;
    for (_, value) in headers.iter().filter(|(n, _)| n == "content-length") {
        for item in value.split(',') {
            let item = item.trim_matches([' ', '\t']);
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err("malformed Content-Length");
            }
            let n = item.parse::<u64>().unwrap_or(u64::MAX);
            match length {
                Some(previous) if previous != n => return Err("conflicting Content-Length"),
                _ => length = Some(n),
            }
        }
    }
    Ok(length)
}

/// RFC 9110 §15 reason phrases for the statuses this API is likely to use; empty otherwise
/// (RFC 9112 §4 allows an empty reason-phrase).
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// RFC 9110 §5.6.7 IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`, by the `httpdate`
/// crate; a time before the epoch is written as the epoch.
fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t.max(UNIX_EPOCH))
}

/// The bytes of a client request (see [`request`]).
fn build_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<Vec<u8>, HttpError> {
    if !is_token(method.as_bytes()) {
        return Err(HttpError::InvalidArgument("method is not a token"));
    }
    if !path.starts_with('/') || !path.bytes().all(is_target_byte) {
        return Err(HttpError::InvalidArgument(
            "path must start with '/' and contain only visible ASCII",
        ));
    }
    if addr.is_empty() || !addr.bytes().all(is_target_byte) {
        return Err(HttpError::InvalidArgument("malformed address"));
    }
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
         Connection: close\r\n"
    );
    match body {
        Some(body) => {
            let _ = write!(
                head,
                "Content-Type: {JSON}\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        None if matches!(method, "POST" | "PUT" | "PATCH") => {
            head.push_str("Content-Length: 0\r\n");
        }
        None => {}
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.unwrap_or_default());
    Ok(out)
}

/// Parses a response from `buf` for the client: `Ok(None)` while incomplete; `eof` says the
/// server has closed. Interim (1xx) responses are skipped.
fn parse_response(
    buf: &[u8],
    head_request: bool,
    eof: bool,
) -> Result<Option<(u16, Vec<u8>)>, HttpError> {
    let mut from = 0;
    loop {
        let Some((start, end)) = find_head(buf, from) else {
            if eof {
                return Err(HttpError::BadResponse("connection closed within the head"));
            }
            if buf.len() - from > MAX_RESPONSE_HEAD {
                return Err(HttpError::BadResponse("response head too large"));
            }
            return Ok(None);
        };
        let mut lines = head_lines(&buf[start..end]).map_err(HttpError::BadResponse)?;
        let status = parse_status_line(lines.next().unwrap_or_default())?;
        let headers = lines
            .map(parse_field)
            .collect::<Result<Vec<_>, _>>()
            .map_err(HttpError::BadResponse)?;
        if (100..200).contains(&status) {
            from = end;
            continue;
        }
        if head_request || status == 204 || status == 304 {
            return Ok(Some((status, Vec::new())));
        }
        if headers.iter().any(|(n, _)| n == "transfer-encoding") {
            return Err(HttpError::BadResponse(
                "transfer-coded responses are not supported",
            ));
        }
        let available = &buf[end..];
        return match content_length(&headers).map_err(HttpError::BadResponse)? {
            Some(n) if n > MAX_RESPONSE_BODY as u64 => {
                Err(HttpError::BadResponse("response body too large"))
            }
            Some(n) if available.len() as u64 >= n => {
                Ok(Some((status, available[..n as usize].to_vec())))
            }
            Some(_) if eof => Err(HttpError::BadResponse("connection closed within the body")),
            Some(_) => Ok(None),
            None if eof => Ok(Some((status, available.to_vec()))),
            None => Ok(None),
        };
    }
}

/// RFC 9112 §4: `HTTP-version SP status-code SP [reason-phrase]` (the second SP is optional
/// here, as some servers omit it).
fn parse_status_line(line: &[u8]) -> Result<u16, HttpError> {
    let bad = HttpError::BadResponse("malformed status line");
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(bad);
    };
    if !matches!(parse_version(version), Ok((1, _))) {
        return Err(bad);
    }
    match code {
        [a, b, c] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            Ok(code.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0')))
        }
        _ => Err(bad),
    }
}

// ---------------------------------------------------------------------------------------------
// I/O.

/// Serves one connection: read, handle, answer, close.
async fn connection<F, Fut>(mut stream: TcpStream, peer: SocketAddr, limits: Limits, handler: F)
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Response> + Send + 'static,
{
    let read = tokio::time::timeout(limits.timeout, read_request(&mut stream, &limits)).await;
    let (response, head_only) = match read {
        Ok(Ok(Some(request))) => {
            let head_only = request.method == "HEAD";
            let (method, path) = (request.method.clone(), request.path.clone());
            let response = match tokio::spawn(handler(request)).await {
                Ok(response) => response,
                Err(e) => {
                    tracing::error!(%peer, %method, %path, error = %e, "http: handler failed");
                    Response::error(500, "internal error")
                }
            };
            tracing::debug!(%peer, %method, %path, status = response.status, "http: request");
            (response, head_only)
        }
        Ok(Ok(None)) => {
            tracing::debug!(%peer, "http: connection closed without a request");
            return;
        }
        Ok(Err(HttpError::Io(e))) => {
            tracing::debug!(%peer, error = %e, "http: connection failed while reading");
            return;
        }
        Ok(Err(e)) => {
            refused(peer, &e);
            (e.to_response(), false)
        }
        Err(_) => {
            let e = HttpError::Timeout(limits.timeout);
            refused(peer, &e);
            (e.to_response(), false)
        }
    };
    let bytes = response.serialize(SystemTime::now(), head_only);
    send_and_close(stream, &bytes, limits.timeout).await;
}

fn refused(peer: SocketAddr, e: &HttpError) {
    tracing::warn!(
        %peer,
        reason = %e,
        "http: refused with {}",
        e.status().unwrap_or(500)
    );
}

/// Reads one request. `Ok(None)`: the peer closed without sending anything.
async fn read_request(
    stream: &mut TcpStream,
    limits: &Limits,
) -> Result<Option<Request>, HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (head, head_len) = loop {
        if let Some(parsed) = parse_head(&buf, limits)? {
            break parsed;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(HttpError::BadRequest(
                "connection closed before the head was complete",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };

    let mut body = buf.split_off(head_len);
    body.truncate(head.content_length);
    if body.len() < head.content_length {
        let expects_continue = head.minor_version == 1
            && head
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        if expects_continue && body.is_empty() {
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let have = body.len();
        body.resize(head.content_length, 0);
        stream
            .read_exact(&mut body[have..])
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    HttpError::BadRequest("connection closed before the body was complete")
                }
                _ => HttpError::Io(e),
            })?;
    }
    Ok(Some(Request {
        method: head.method,
        path: head.path,
        query: head.query,
        headers: head.headers,
        body,
    }))
}

/// Writes `bytes` (within `timeout`), then closes as RFC 9112 §9.6 recommends: write half
/// first, then drain the read half briefly, so unread request bytes do not turn the close into
/// a reset that destroys the response before the client read it.
async fn send_and_close(mut stream: TcpStream, bytes: &[u8], timeout: Duration) {
    match tokio::time::timeout(timeout, stream.write_all(bytes)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "http: writing the response failed");
            return;
        }
        Err(_) => {
            tracing::debug!("http: writing the response timed out");
            return;
        }
    }
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(timeout.min(LINGER), drain).await;
}

/// The client side of [`request`] without the timeout.
async fn exchange(
    addr: &str,
    message: &[u8],
    head_request: bool,
) -> Result<(u16, Vec<u8>), HttpError> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(message).await?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await?;
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE_HEAD + MAX_RESPONSE_BODY {
            return Err(HttpError::BadResponse("response too large"));
        }
        if let Some(done) = parse_response(&buf, head_request, n == 0)? {
            return Ok(done);
        }
    }
}

#[cfg(test)]
mod tests;
