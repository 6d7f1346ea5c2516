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
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn parse(bytes: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
        parse_head(bytes, &limits())
    }

    fn parse_err(bytes: &[u8]) -> HttpError {
        match parse(bytes) {
            Err(e) => e,
            Ok(r) => panic!("expected an error, got {r:?}"),
        }
    }

    #[test]
    fn parses_a_get() {
        let raw = b"GET /api/cluster HTTP/1.1\r\nHost: node1:8080\r\nAccept: */*\r\n\r\n";
        let (head, len) = parse(raw).unwrap().unwrap();
        assert_eq!(len, raw.len());
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/api/cluster");
        assert_eq!(head.query, None);
        assert_eq!(head.minor_version, 1);
        assert_eq!(
            head.headers,
            vec![
                ("host".to_owned(), "node1:8080".to_owned()),
                ("accept".to_owned(), "*/*".to_owned())
            ]
        );
        assert_eq!(head.content_length, 0);
    }

    #[test]
    fn parses_a_post_with_body() {
        let raw = b"POST /api/nodes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                    Content-Length: 13\r\n\r\n{\"id\":\"n2\"}\r\nEXTRA";
        let (head, len) = parse(raw).unwrap().unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.content_length, 13);
        assert_eq!(&raw[len..len + 13], b"{\"id\":\"n2\"}\r\n");
        assert_eq!(head.header("content-type"), Some("application/json"));
    }

    #[test]
    fn incomplete_head_is_none() {
        assert!(parse(b"").unwrap().is_none());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r").unwrap().is_none());
        assert!(parse(b"\r\n").unwrap().is_none());
    }

    #[test]
    fn splits_path_and_query_without_decoding() {
        let raw = b"GET /api/nodes/n%2F1?verbose=1&x=%20y HTTP/1.1\r\nHost: x\r\n\r\n";
        let (head, _) = parse(raw).unwrap().unwrap();
        assert_eq!(head.path, "/api/nodes/n%2F1");
        assert_eq!(head.query.as_deref(), Some("verbose=1&x=%20y"));

        let (head, _) = parse(b"GET /a? HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.path.as_str(), head.query.as_deref()),
            ("/a", Some(""))
        );
    }

    #[test]
    fn absolute_and_asterisk_forms() {
        let raw = b"GET http://node1:8080/api/cluster?a=b HTTP/1.1\r\nHost: node1\r\n\r\n";
        let (head, _) = parse(raw).unwrap().unwrap();
        assert_eq!(head.path, "/api/cluster");
        assert_eq!(head.query.as_deref(), Some("a=b"));
        let raw = b"GET HTTP://node1 HTTP/1.1\r\nHost: node1\r\n\r\n";
        assert_eq!(parse(raw).unwrap().unwrap().0.path, "/");
        let raw = b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse(raw).unwrap().unwrap().0.path, "*");
        assert!(matches!(
            parse_err(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"),
            HttpError::BadRequest(_)
        ));
        assert!(matches!(
            parse_err(b"CONNECT node1:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
            HttpError::BadRequest(_)
        ));
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let raw = b"POST /x HTTP/1.1\r\nHOST: x\r\ncOnTeNt-LeNgTh: 2\r\nX-Thing:\t v \t\r\n\r\nok";
        let (head, _) = parse(raw).unwrap().unwrap();
        assert_eq!(head.content_length, 2);
        assert_eq!(head.header("Content-Length"), Some("2"));
        assert_eq!(head.header("x-thing"), Some("v"));
        assert_eq!(head.headers[0].0, "host");
    }

    #[test]
    fn lenient_line_endings_and_leading_empty_lines() {
        let raw = b"\r\n\nGET /a HTTP/1.0\nX: y\n\n";
        let (head, len) = parse(raw).unwrap().unwrap();
        assert_eq!(len, raw.len());
        assert_eq!((head.path.as_str(), head.minor_version), ("/a", 0));
        assert_eq!(head.header("x"), Some("y"));
    }

    #[test]
    fn malformed_is_400() {
        let cases: &[&[u8]] = &[
            b"GET /\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1\r\nHost: x\r\n\r\n",
            b"GET / http/1.1\r\nHost: x\r\n\r\n",
            b"GET relative HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n  folded\r\n\r\n",
            b"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n",
        ];
        for raw in cases {
            let e = parse_err(raw);
            assert!(
                matches!(e, HttpError::BadRequest(_)),
                "{:?}: {e:?}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(e.status(), Some(400));
        }
        // Identical repeated lengths are fine (RFC 9112 §6.3).
        let raw =
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(parse(raw).unwrap().unwrap().0.content_length, 3);
        // HTTP/1.0 needs no Host.
        assert!(parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn head_too_large_is_431() {
        let small = Limits {
            max_head_bytes: 64,
            ..Limits::default()
        };
        let mut raw = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 60));
        // Incomplete and already over the limit.
        let e = parse_head(&raw, &small).unwrap_err();
        assert!(matches!(e, HttpError::HeadTooLarge(64)), "{e:?}");
        assert_eq!(e.status(), Some(431));
        // Complete but over the limit.
        raw.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(
            parse_head(&raw, &small),
            Err(HttpError::HeadTooLarge(64))
        ));
        // Exactly at the limit is fine.
        let exact = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let at = Limits {
            max_head_bytes: exact.len(),
            ..Limits::default()
        };
        assert!(parse_head(exact, &at).unwrap().is_some());
    }

    #[test]
    fn body_too_large_is_413() {
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n";
        let e = parse_err(raw);
        assert!(matches!(e, HttpError::BodyTooLarge(65536)), "{e:?}");
        assert_eq!(e.status(), Some(413));
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert!(matches!(parse_err(raw), HttpError::BodyTooLarge(_)));
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n";
        assert_eq!(parse(raw).unwrap().unwrap().0.content_length, 65536);
    }

    #[test]
    fn transfer_encoding_is_501() {
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        let e = parse_err(raw);
        assert!(matches!(e, HttpError::TransferEncoding), "{e:?}");
        assert_eq!(e.status(), Some(501));
        // Also when Content-Length is given (RFC 9112 §6.3: Transfer-Encoding overrides it).
        let raw =
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ntransfer-encoding: gzip\r\n\r\n";
        assert!(matches!(parse_err(raw), HttpError::TransferEncoding));
    }

    #[test]
    fn unsupported_version_is_505() {
        for raw in [
            &b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"[..],
            b"GET / HTTP/0.9\r\n\r\n",
            b"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
        ] {
            let e = parse_err(raw);
            assert!(matches!(e, HttpError::VersionNotSupported(_)), "{e:?}");
            assert_eq!(e.status(), Some(505));
        }
    }

    #[test]
    fn timeout_is_408() {
        let e = HttpError::Timeout(Duration::from_secs(1));
        assert_eq!(e.status(), Some(408));
        assert_eq!(e.to_response().status, 408);
        assert_eq!(HttpError::BadResponse("x").status(), None);
    }

    #[test]
    fn formats_http_dates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(http_date(t(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(t(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(t(951_868_799)), "Tue, 29 Feb 2000 23:59:59 GMT");
    }

    #[test]
    fn serialises_a_response() {
        let r = Response::json(200, "{\"ok\":true}");
        let bytes = r.serialize(UNIX_EPOCH, false);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
             Content-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n\
             {\"ok\":true}"
        );
        let head_only = r.serialize(UNIX_EPOCH, true);
        assert!(String::from_utf8(head_only)
            .unwrap()
            .ends_with("Content-Length: 11\r\nConnection: close\r\n\r\n"));
    }

    #[test]
    fn serialises_405_with_allow_and_skips_unsafe_fields() {
        let r = Response::method_not_allowed("GET, POST")
            .with_header("Content-Length", "999")
            .with_header("X-Bad", "a\r\nInjected: yes")
            .with_header("Bad Name", "v");
        let text = String::from_utf8(r.serialize(UNIX_EPOCH, false)).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: GET, POST\r\n"), "{text}");
        assert!(!text.contains("999") && !text.contains("Injected") && !text.contains("Bad Name"));
        let body = "{\"error\":\"method not allowed\"}";
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(text.ends_with(body));
    }

    #[test]
    fn serialises_edge_statuses() {
        let text = |r: Response| String::from_utf8(r.serialize(UNIX_EPOCH, false)).unwrap();
        let no_content = text(Response::json(204, "ignored"));
        assert!(no_content.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(!no_content.contains("Content-Length") && no_content.ends_with("\r\n\r\n"));
        assert!(text(Response::text(99, "x")).starts_with("HTTP/1.1 500 Internal Server Error"));
        assert!(text(Response::text(299, "x")).starts_with("HTTP/1.1 299 \r\n"));
        let not_found = text(Response::not_found());
        assert!(not_found.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(not_found.contains("Content-Type: application/json\r\n"));
    }

    #[test]
    fn error_bodies_are_escaped_json() {
        let r = Response::error(400, "bad \"x\"\\\n\u{1}");
        assert_eq!(r.body, b"{\"error\":\"bad \\\"x\\\"\\\\\\n\\u0001\"}");
    }

    #[test]
    fn builds_client_requests() {
        let get = build_request("127.0.0.1:1", "GET", "/api/cluster", None).unwrap();
        assert_eq!(
            get,
            b"GET /api/cluster HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAccept: application/json\r\n\
              Connection: close\r\n\r\n"
        );
        let post = build_request("h:1", "POST", "/api/nodes", Some(b"{}")).unwrap();
        let post = String::from_utf8(post).unwrap();
        assert!(post.contains("Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"));
        let empty_post = String::from_utf8(build_request("h:1", "POST", "/", None).unwrap());
        assert!(empty_post.unwrap().ends_with("Content-Length: 0\r\n\r\n"));
        for (method, path, addr) in [
            ("G T", "/", "h:1"),
            ("GET", "x", "h:1"),
            ("GET", "/a b", "h:1"),
            ("GET", "/a\r\nX: y", "h:1"),
            ("GET", "/", "h:1\r\n"),
        ] {
            assert!(matches!(
                build_request(addr, method, path, None),
                Err(HttpError::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn parses_client_responses() {
        let full =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}junk";
        assert_eq!(
            parse_response(full, false, false).unwrap(),
            Some((201, b"{}".to_vec()))
        );
        let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab";
        assert_eq!(parse_response(partial, false, false).unwrap(), None);
        assert!(matches!(
            parse_response(partial, false, true),
            Err(HttpError::BadResponse(_))
        ));
        assert_eq!(
            parse_response(partial, true, false).unwrap(),
            Some((200, Vec::new()))
        );
        let until_close = b"HTTP/1.0 200\r\n\r\nabc";
        assert_eq!(parse_response(until_close, false, false).unwrap(), None);
        assert_eq!(
            parse_response(until_close, false, true).unwrap(),
            Some((200, b"abc".to_vec()))
        );
        for bad in [
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
            b"SIP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(matches!(
                parse_response(bad, false, true),
                Err(HttpError::BadResponse(_))
            ));
        }
    }

    // --- I/O ------------------------------------------------------------------------------

    struct Server {
        addr: String,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(serve(listener, limits, handle, shutdown));
        Server { addr, stop, task }
    }

    async fn handle(request: Request) -> Response {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET" | "HEAD", "/api/cluster") => Response::json(200, "{\"nodes\":[\"n1\"]}"),
            ("POST", "/api/nodes") => {
                let mut body = b"{\"received\":".to_vec();
                body.extend_from_slice(&request.body);
                body.extend_from_slice(b",\"query\":\"");
                body.extend_from_slice(request.query.unwrap_or_default().as_bytes());
                body.extend_from_slice(b"\"}");
                Response::json(201, body)
            }
            ("GET", "/panic") => panic!("handler panics"),
            (_, "/api/nodes" | "/api/cluster") => Response::method_not_allowed("GET, POST"),
            _ => Response::not_found(),
        }
    }

    async fn raw_exchange(addr: &str, bytes: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn round_trip_with_json_body() {
        let server = start(Limits::default()).await;
        let (status, body) = request(&server.addr, "GET", "/api/cluster", None, T)
            .await
            .unwrap();
        assert_eq!(
            (status, body.as_slice()),
            (200, &b"{\"nodes\":[\"n1\"]}"[..])
        );

        let (status, body) = request(
            &server.addr,
            "POST",
            "/api/nodes?dry=1",
            Some(b"{\"id\":\"n2\"}"),
            T,
        )
        .await
        .unwrap();
        assert_eq!(status, 201);
        assert_eq!(body, b"{\"received\":{\"id\":\"n2\"},\"query\":\"dry=1\"}");

        let (status, body) = request(&server.addr, "HEAD", "/api/cluster", None, T)
            .await
            .unwrap();
        assert_eq!((status, body.len()), (200, 0));
        server.stop.send(true).unwrap();
    }

    #[tokio::test]
    async fn handler_404_405_and_panic() {
        let server = start(Limits::default()).await;
        let (status, body) = request(&server.addr, "GET", "/nope", None, T)
            .await
            .unwrap();
        assert_eq!(
            (status, body.as_slice()),
            (404, &b"{\"error\":\"not found\"}"[..])
        );
        let (status, _) = request(&server.addr, "DELETE", "/api/cluster", None, T)
            .await
            .unwrap();
        assert_eq!(status, 405);
        let text = raw_exchange(&server.addr, b"PUT /api/nodes HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(text.contains("\r\nAllow: GET, POST\r\n"), "{text}");
        let (status, _) = request(&server.addr, "GET", "/panic", None, T)
            .await
            .unwrap();
        assert_eq!(status, 500);
    }

    #[tokio::test]
    async fn oversize_body_is_413() {
        let server = start(Limits::default()).await;
        let body = vec![b'x'; 100_000];
        let mut raw = format!(
            "POST /api/nodes HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(&body);
        let text = raw_exchange(&server.addr, &raw).await;
        assert!(
            text.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.contains("\r\nContent-Type: application/json\r\n"));
        assert!(text.ends_with("{\"error\":\"request body larger than 65536 bytes\"}"));
    }

    #[tokio::test]
    async fn raw_refusals() {
        let server = start(Limits::default()).await;
        for (raw, status) in [
            (&b"GARBAGE\r\n\r\n"[..], "400 Bad Request"),
            (
                b"GET / HTTP/3.0\r\nHost: x\r\n\r\n",
                "505 HTTP Version Not Supported",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "501 Not Implemented",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
                "400 Bad Request",
            ),
        ] {
            let mut stream = TcpStream::connect(&server.addr).await.unwrap();
            stream.write_all(raw).await.unwrap();
            stream.shutdown().await.unwrap(); // ends the truncated body early
            let mut out = Vec::new();
            stream.read_to_end(&mut out).await.unwrap();
            let text = String::from_utf8_lossy(&out);
            assert!(
                text.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{text}"
            );
        }
        let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 10_000));
        let text = raw_exchange(&server.addr, &big).await;
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
    }

    #[tokio::test]
    async fn expect_continue_gets_100() {
        let server = start(Limits::default()).await;
        let mut stream = TcpStream::connect(&server.addr).await.unwrap();
        stream
            .write_all(b"POST /api/nodes HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
            .await
            .unwrap();
        let mut interim = [0u8; 25];
        stream.read_exact(&mut interim).await.unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        stream.write_all(b"{}").await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        assert_eq!(parse_response(&out, false, true).unwrap().unwrap().0, 201);
    }

    #[tokio::test]
    async fn slow_client_gets_408() {
        let server = start(Limits {
            timeout: Duration::from_millis(200),
            ..Limits::default()
        })
        .await;
        let mut stream = TcpStream::connect(&server.addr).await.unwrap();
        stream
            .write_all(b"GET /api/cluster HTTP/1.1\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(T, stream.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn client_times_out() {
        // A listener that accepts but never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let short = Duration::from_millis(100);
        let e = request(&addr, "GET", "/", None, short).await.unwrap_err();
        assert!(matches!(e, HttpError::Timeout(d) if d == short), "{e:?}");
        drop(listener);
    }

    #[tokio::test]
    async fn over_the_connection_cap_is_503() {
        let server = start(Limits {
            timeout: Duration::from_secs(3),
            ..Limits::default()
        })
        .await;
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(&server.addr).await.unwrap());
        }
        let text = raw_exchange(
            &server.addr,
            b"GET /api/cluster HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
        drop(idle);
        // Permits come back once the idle connections are gone.
        let mut status = 0;
        for _ in 0..50 {
            status = request(&server.addr, "GET", "/api/cluster", None, T)
                .await
                .unwrap()
                .0;
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn shutdown_stops_the_accept_loop() {
        let server = start(Limits::default()).await;
        assert_eq!(
            request(&server.addr, "GET", "/api/cluster", None, T)
                .await
                .unwrap()
                .0,
            200
        );
        server.stop.send(true).unwrap();
        tokio::time::timeout(T, server.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
        assert!(TcpStream::connect(&server.addr).await.is_err());
    }

    #[tokio::test]
    async fn dropped_shutdown_sender_keeps_serving() {
        let server = start(Limits::default()).await;
        drop(server.stop);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!server.task.is_finished());
        let (status, _) = request(&server.addr, "GET", "/api/cluster", None, T)
            .await
            .unwrap();
        assert_eq!(status, 200);
        server.task.abort();
    }
}
