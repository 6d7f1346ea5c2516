//! SIP messages: the message model, parsing and validation, the base headers, and builders.
//!
//! Implements RFC 3261 §7 (message format; §7.3.1 header folding; §7.3.3 compact forms), §8.2
//! (UAS request validation), §8.2.6 (building responses), §18.2.1 (the `received` parameter),
//! §18.2.2 (where responses go), §18.3 (datagram framing with Content-Length), §19.1 (SIP and
//! SIPS URIs), §19.3 (tags and branches), §20 (header fields) and the §25 grammar it needs;
//! RFC 3581 §4 (`rport`); the compact forms of RFC 6665 (`o`, `u`) and friends; `pres:`/`im:`
//! URIs (RFC 3859, RFC 3860). It is checked against the RFC 4475 torture messages in `torture/`.
//!
//! The header section lives in an `rsip::Headers` container (untyped, one entry per header line,
//! values kept verbatim), and builders serialise header lines through rsip's `Display`. The start
//! line is handled here because rsip 0.4 cannot represent extension methods, `pres:`/`im:` or
//! escaped Request-URIs, and it prints the body lossily as UTF-8.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;
use rsip::headers::UntypedHeader;

/// Allow header value of this server, sent with 405 replies to unknown methods.
pub const ALLOW: &str =
    "INVITE, ACK, CANCEL, OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, MESSAGE";

/// The magic cookie that starts every RFC 3261 branch (§8.1.1.7).
const BRANCH_COOKIE: &str = "z9hG4bK";
/// The only protocol version this code speaks (RFC 3261 §7.1).
const SIP_VERSION: &str = "SIP/2.0";
/// Max-Forwards put on requests we originate when the caller gives none (RFC 3261 §8.1.1.6).
const DEFAULT_MAX_FORWARDS: u32 = 70;
/// Largest CSeq number allowed: "MUST be less than 2**31" (RFC 3261 §8.1.1.5).
const MAX_CSEQ: u32 = (1 << 31) - 1;
/// Largest Max-Forwards value (RFC 3261 §20.22).
const MAX_MAX_FORWARDS: u32 = 255;

/// A SIP method; `Other` keeps extension methods (RFC 3261 §7.1) that rsip cannot represent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// OPTIONS (RFC 3261).
    Options,
    /// REGISTER (RFC 3261).
    Register,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// PUBLISH (RFC 3903).
    Publish,
    /// MESSAGE (RFC 3428).
    Message,
    /// INFO (RFC 6086).
    Info,
    /// UPDATE (RFC 3311).
    Update,
    /// PRACK (RFC 3262).
    Prack,
    /// REFER (RFC 3515).
    Refer,
    /// Any other method token, kept exactly as received (methods are case-sensitive).
    Other(String),
}

impl Method {
    /// The method token as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Message => "MESSAGE",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Refer => "REFER",
            Method::Other(token) => token,
        }
    }

    /// Maps a method token to a method; matching is case-sensitive as RFC 3261 §7.1 requires, so
    /// `invite` is an extension method.
    pub fn parse(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "PUBLISH" => Method::Publish,
            "MESSAGE" => Method::Message,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "REFER" => Method::Refer,
            other => Method::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Size limits applied by [`parse`]; the value comes from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted; larger requests get 513 (RFC 3261 §18.1.1, §21.5.13).
    pub max_message_bytes: usize,
}

/// Why bytes are not a usable message; the `Display` text is the reason phrase of the 4xx/5xx
/// reply and names the header at fault.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The message is larger than [`Limits::max_message_bytes`].
    #[error("Message Too Large")]
    TooLarge,
    /// Nothing but CRLFs (a keep-alive) or no bytes at all.
    #[error("Empty message")]
    Empty,
    /// The first line is neither a request line nor a status line.
    #[error("Malformed start line")]
    MalformedStartLine,
    /// The request line is not `Method SP Request-URI SP SIP-Version` (RFC 3261 §7.1).
    #[error("Malformed request line")]
    MalformedRequestLine,
    /// The status line is not `SIP-Version SP 3DIGIT SP Reason-Phrase` (RFC 3261 §7.2).
    #[error("Malformed status line")]
    MalformedStatusLine,
    /// The SIP version is not 2.0 (answered with 505).
    #[error("Version Not Supported")]
    UnsupportedVersion,
    /// The Request-URI is malformed, or carries headers (RFC 3261 §19.1.1 forbids them there).
    #[error("Malformed Request-URI")]
    MalformedRequestUri,
    /// The URI scheme is not sip, sips, pres or im (answered with 416).
    #[error("Unsupported URI Scheme")]
    UnsupportedUriScheme,
    /// A URI given to [`Uri::parse`] is malformed.
    #[error("Malformed URI")]
    MalformedUri,
    /// The bytes end inside the header section.
    #[error("Missing end of header section")]
    MissingEndOfHeaders,
    /// A header line has no colon, a bad name, a bare CR or LF, or a fold with nothing to fold.
    #[error("Malformed header line")]
    MalformedHeaderLine,
    /// The start line or the header section is not UTF-8.
    #[error("Start line or header section is not UTF-8")]
    NotUtf8,
    /// A mandatory header is absent.
    #[error("Missing {0} header")]
    MissingHeader(&'static str),
    /// A header that may appear once appears more than once.
    #[error("Duplicate {0} header")]
    DuplicateHeader(&'static str),
    /// A header value does not follow its grammar.
    #[error("Malformed {0} header")]
    MalformedHeader(&'static str),
    /// A numeric header value is not a number or is out of range.
    #[error("Bad {0} header")]
    BadHeaderValue(&'static str),
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq method does not match request method")]
    CSeqMethodMismatch,
    /// Content-Length promises more bytes than the datagram holds (RFC 3261 §18.3).
    #[error("Content-Length larger than body")]
    ContentLengthTooLarge,
    /// The method is not one this server implements (answered with 405 and [`ALLOW`]).
    #[error("Method Not Allowed")]
    UnknownMethod,
}

/// Top Via (RFC 3261 §20.42, §18.2.1; RFC 3581 rport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token, uppercased: "UDP", "TCP", "TLS", "SCTP", "WS", ...
    pub transport: String,
    /// Host of sent-by as written; an IPv6 reference keeps its brackets (`[::1]`).
    pub host: String,
    /// Port of sent-by, if given.
    pub port: Option<u16>,
    /// The branch parameter.
    pub branch: Option<String>,
    /// The received parameter.
    pub received: Option<String>,
    /// The rport parameter; `Some(None)` = "rport" without value (RFC 3581 §3).
    pub rport: Option<Option<u16>>,
    /// All params incl. the above, in order; this list is what `Display` writes.
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// Parses one Via value (one element of a possibly comma-joined Via header); only SIP/2.0.
    pub fn parse(value: &str) -> Result<Via, ParseError> {
        parse_via(value, false)
    }

    /// "host:port" or "host": the sent-by as it should be compared and re-serialised.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{}", self.host, port),
            None => self.host.clone(),
        }
    }

    /// True if the branch starts with the RFC 3261 magic cookie "z9hG4bK" (§8.1.1.7).
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch
            .as_deref()
            .is_some_and(|b| b.starts_with(BRANCH_COOKIE))
    }

    /// RFC 3261 §18.2.2 + RFC 3581 §4: where a response to this Via goes (host, port).
    ///
    /// Order: `maddr` (with the sent-by port), then `received` (with the `rport` value if one was
    /// filled in, else the sent-by port), then sent-by. The port defaults to 5061 for TLS and 5060
    /// otherwise. IPv6 hosts come back without brackets so `(host, port)` resolves directly. Over
    /// TCP/TLS the response should first go back on the connection the request came on.
    pub fn response_target(&self) -> (String, u16) {
        let default_port = if self.transport.eq_ignore_ascii_case("TLS") {
            5061
        } else {
            5060
        };
        let sent_by_port = self.port.unwrap_or(default_port);
        if let Some(Some(maddr)) = self.param("maddr") {
            return (unbracket(maddr).to_owned(), sent_by_port);
        }
        let rport = match self.rport {
            Some(Some(port)) => Some(port),
            _ => None,
        };
        if let Some(received) = &self.received {
            return (
                unbracket(received).to_owned(),
                rport.unwrap_or(sent_by_port),
            );
        }
        (
            unbracket(&self.host).to_owned(),
            rport.unwrap_or(sent_by_port),
        )
    }

    /// RFC 3261 §18.2.1 + RFC 3581 §4: records where the request really came from.
    ///
    /// Adds (or overwrites) `received` when sent-by is a name or a different address, and always
    /// when `rport` is present; fills `rport` with the source port when present. A new `received`
    /// goes just before `rport` (as in the RFC 3581 example), else at the end.
    pub fn stamp(&mut self, source: SocketAddr) {
        let ip = source.ip().to_canonical();
        let sent_by_ip = unbracket(&self.host).parse::<IpAddr>().ok();
        if self.rport.is_some() || sent_by_ip != Some(ip) {
            let value = ip.to_string();
            if let Some(slot) = self.param_slot("received") {
                slot.1 = Some(value.clone());
            } else {
                let at = self
                    .params
                    .iter()
                    .position(|(n, _)| n.eq_ignore_ascii_case("rport"))
                    .unwrap_or(self.params.len());
                self.params
                    .insert(at, ("received".to_owned(), Some(value.clone())));
            }
            self.received = Some(value);
        }
        if self.rport.is_some() {
            let port = source.port();
            if let Some(slot) = self.param_slot("rport") {
                slot.1 = Some(port.to_string());
            }
            self.rport = Some(Some(port));
        }
    }

    /// Value of the first param called `name` (case-insensitive): `Some(None)` for a flag.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    fn param_slot(&mut self, name: &str) -> Option<&mut (String, Option<String>)> {
        self.params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write_params(f, &self.params)
    }
}

/// name-addr / addr-spec with params, for From, To, Contact (RFC 3261 §20.10, §25.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted and unescaped (`"A \"B\""` gives `A "B"`).
    pub display: Option<String>,
    /// The URI exactly as written between `<` and `>` (or the bare addr-spec); any scheme.
    pub uri: String,
    /// Header params (tag, expires, q, ...) in order; quoted values keep their quotes.
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// Parses a From/To/Contact value (one element for Contact). In the addr-spec form (no `<>`)
    /// everything after the first `;` is a header param and a `?` is refused (§20.10).
    pub fn parse(value: &str) -> Result<NameAddr, ParseError> {
        parse_name_addr(value).ok_or(ParseError::MalformedHeader("name-addr"))
    }

    /// The tag param (RFC 3261 §19.3), which identifies a dialog side.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// Value of the first param called `name` (case-insensitive): `Some(None)` for a flag.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(display) = &self.display {
            f.write_str("\"")?;
            for c in display.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

/// A SIP or SIPS URI split into parts (RFC 3261 §19.1), also accepting `pres:`/`im:` (RFC 3859/3860).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// Scheme, lowercased: "sip", "sips", "pres" or "im".
    pub scheme: String,
    /// User part with %HH escapes decoded (a password after `:` is dropped).
    pub user: Option<String>,
    /// Host as written; an IPv6 reference keeps its brackets.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// URI params in order, still escaped as on the wire (RFC 3261 §19.1.4 compares them so).
    pub params: Vec<(String, Option<String>)>,
    /// URI headers after `?`, raw (allowed in Contact/Refer-To, refused in a Request-URI).
    pub headers: Option<String>,
}

impl Uri {
    /// Parses a sip/sips/pres/im URI; other schemes give [`ParseError::UnsupportedUriScheme`].
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let (scheme, rest) = s.split_once(':').ok_or(ParseError::MalformedUri)?;
        if !is_scheme(scheme) {
            return Err(ParseError::MalformedUri);
        }
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "sip" | "sips" | "pres" | "im") {
            return Err(ParseError::UnsupportedUriScheme);
        }
        parse_uri_rest(scheme, rest).ok_or(ParseError::MalformedUri)
    }

    /// Value of the first URI param called `name` (case-insensitive): `Some(None)` for a flag.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(user) = &self.user {
            for b in user.bytes() {
                if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
                    write!(f, "{}", b as char)?;
                } else {
                    write!(f, "%{b:02X}")?;
                }
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for (name, value) in &self.params {
            match value {
                Some(v) => write!(f, ";{name}={v}")?,
                None => write!(f, ";{name}")?,
            }
        }
        if let Some(headers) = &self.headers {
            write!(f, "?{headers}")?;
        }
        Ok(())
    }
}

/// The CSeq header (RFC 3261 §20.16): orders requests within a dialog and names the method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number, below 2^31.
    pub seq: u32,
    /// Method of the request this CSeq belongs to.
    pub method: Method,
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`; leading zeros are fine, 2^31 and above is not.
    pub fn parse(value: &str) -> Result<CSeq, ParseError> {
        let bad = ParseError::BadHeaderValue("CSeq");
        let value = value.trim_matches(WSP);
        let split = value.find(WSP).ok_or(bad.clone())?;
        let (digits, method) = (&value[..split], value[split..].trim_start_matches(WSP));
        let seq = parse_digits(digits)
            .filter(|n| *n <= u64::from(MAX_CSEQ))
            .ok_or(bad.clone())?;
        if !is_token(method) {
            return Err(bad);
        }
        Ok(CSeq {
            seq: u32::try_from(seq).map_err(|_| bad)?,
            method: Method::parse(method),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// The headers every message must carry, extracted once at the edge (STYLE habit 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// Top Via (first value of the first Via header).
    pub via: Via,
    /// From.
    pub from: NameAddr,
    /// To.
    pub to: NameAddr,
    /// Call-ID, trimmed.
    pub call_id: String,
    /// CSeq.
    pub cseq: CSeq,
}

/// A validated SIP request: start line, base headers, every header line and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The base headers, parsed once.
    pub base: Base,
    method: Method,
    uri: Uri,
    raw_uri: String,
    headers: rsip::Headers,
    body: Bytes,
    max_forwards: Option<u32>,
}

impl Request {
    /// The request method (never [`Method::Other`]: [`parse`] answers those with 405).
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The parsed Request-URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The Request-URI exactly as received, for forwarding without re-escaping.
    pub fn raw_uri(&self) -> &str {
        &self.raw_uri
    }

    /// First value of a header; name case-insensitive, canonical or compact form (`i`, `v`, ...).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// All values of a header in order, one per header line: comma-joined lines are not split
    /// (use [`split_list`] for Via, Contact, Route, ...).
    pub fn headers(&self, name: &str) -> Vec<&str> {
        all_headers(&self.headers, name)
    }

    /// Every header line, in order, in rsip's container (typed parsing on demand via rsip).
    pub fn rsip_headers(&self) -> &rsip::Headers {
        &self.headers
    }

    /// The body: exactly Content-Length bytes, or the rest of the datagram if it was absent.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Max-Forwards, if present (0..=255); a missing header is accepted (see [`parse`]).
    pub fn max_forwards(&self) -> Option<u32> {
        self.max_forwards
    }

    /// RFC 3261 §18.2.1 + RFC 3581 §4: add received= (if source ip != sent-by host) and fill
    /// rport= (if rport present) on the top Via, in both `base.via` and the headers that replies copy.
    pub fn stamp_source(&mut self, source: SocketAddr) {
        self.base.via.stamp(source);
        let stamped = self.base.via.to_string();
        if let Some(rsip::Header::Via(via)) = self
            .headers
            .iter_mut()
            .find(|h| matches!(h, rsip::Header::Via(_)))
        {
            let old = via.value();
            let rest = &old[first_element_end(old)..];
            let new = format!("{stamped}{rest}");
            via.replace(new);
        }
    }
}

/// A validated SIP response: status, reason, base headers, every header line and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100..=699.
    pub status: u16,
    /// Reason phrase as received (may be empty, may be UTF-8).
    pub reason: String,
    /// The base headers, parsed once.
    pub base: Base,
    headers: rsip::Headers,
    body: Bytes,
}

impl Response {
    /// First value of a header; name case-insensitive, canonical or compact form.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// All values of a header in order, one per header line (comma-joined lines not split).
    pub fn headers(&self, name: &str) -> Vec<&str> {
        all_headers(&self.headers, name)
    }

    /// Every header line, in order, in rsip's container.
    pub fn rsip_headers(&self) -> &rsip::Headers {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// What to do with bytes that did not make a usable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not answerable (a response, or no usable Via/From/To/Call-ID/CSeq to answer with): drop and log `reason`.
    Drop {
        /// The fault, for the log.
        reason: String,
    },
    /// A request we can answer: send `response` to `via.response_target()` (UDP) or back on the
    /// same connection (TCP/TLS). Status is 400 (reason names the fault), 405 (+ Allow) for
    /// unknown methods, 416 for unsupported Request-URI schemes, 505 for a bad version, 513 for
    /// too large. `via` is not stamped: a caller that knows the source should `via.stamp(source)`.
    Reply {
        /// Status code of `response`.
        status: u16,
        /// Reason phrase of `response`.
        reason: String,
        /// The complete response bytes (Via, From, To + tag, Call-ID, CSeq copied verbatim).
        response: Bytes,
        /// The top Via of the request.
        via: Via,
    },
}

/// Parses one complete message (one UDP datagram, or one frame from `framing`).
/// UDP rule (RFC 3261 §18.3): Content-Length larger than the bytes present is an error (400);
/// smaller truncates the body; absent means "rest of the datagram".
/// For frames from TCP Content-Length is mandatory (the framer already enforced it).
///
/// Choices: a request without Max-Forwards is accepted (RFC 3261 §8.2 does not require it); a
/// header section that ends with the datagram without the empty line is accepted; extension
/// methods are answered 405 only after the whole message proved well-formed, so a malformed
/// request with an unknown method gets the 400 that names its fault; Date is not validated.
// A `Rejection` is large (it carries a `Via`), but it is the cold path and callers match on it
// directly; boxing it would only add an allocation to every rejected datagram.
#[allow(clippy::result_large_err)]
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Message, Rejection> {
    let too_large = bytes.len() > limits.max_message_bytes;
    let raw = split_message(bytes).map_err(|e| Rejection::Drop {
        reason: e.to_string(),
    })?;
    let is_response = raw
        .start_line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"));
    let scan = scan_headers(&raw.headers);
    if is_response {
        if too_large {
            return Err(Rejection::Drop {
                reason: ParseError::TooLarge.to_string(),
            });
        }
        return parse_response(raw, &scan)
            .map(Message::Response)
            .map_err(|e| Rejection::Drop {
                reason: e.to_string(),
            });
    }
    let outcome = if too_large {
        Err((513, ParseError::TooLarge))
    } else {
        validate_request(&raw, &scan)
    };
    match outcome {
        Ok(valid) => Ok(Message::Request(valid.into_request(raw))),
        Err((status, error)) => Err(reject(&raw, &scan, status, &error)),
    }
}

/// Builds a response to `req` (RFC 3261 §8.2.6): copies all Via (as stamped), From, To
/// (adding `to_tag` if given and To has none), Call-ID, CSeq; sets Content-Length.
pub fn reply(req: &Request, status: u16, reason: &str) -> ResponseBuilder {
    let mut headers = Vec::with_capacity(8);
    for h in req.headers.iter() {
        if matches!(h, rsip::Header::Via(_)) {
            headers.push(h.clone());
        }
    }
    for h in req.headers.iter() {
        if matches!(
            h,
            rsip::Header::From(_)
                | rsip::Header::To(_)
                | rsip::Header::CallId(_)
                | rsip::Header::CSeq(_)
        ) {
            headers.push(h.clone());
        }
    }
    ResponseBuilder {
        status,
        reason: sanitize(reason).into_owned(),
        headers,
        to_has_tag: req.base.to.tag().is_some(),
        body: None,
    }
}

/// Builder for a response to a received request; see [`reply`].
#[derive(Debug, Clone)]
pub struct ResponseBuilder {
    status: u16,
    reason: String,
    headers: Vec<rsip::Header>,
    to_has_tag: bool,
    body: Option<(String, Bytes)>,
}

impl ResponseBuilder {
    /// Adds `;tag=<tag>` to To unless the request's To already had a tag (RFC 3261 §8.2.6.2).
    pub fn to_tag(mut self, tag: &str) -> Self {
        if !self.to_has_tag {
            if let Some(rsip::Header::To(to)) = self
                .headers
                .iter_mut()
                .find(|h| matches!(h, rsip::Header::To(_)))
            {
                let new = format!("{};tag={}", to.value(), sanitize(tag));
                to.replace(new);
                self.to_has_tag = true;
            }
        }
        self
    }

    /// Appends a header line (after the copied ones, in call order); Content-Length is ignored
    /// because `build` computes it. CR and LF in name or value become spaces.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        push_header(&mut self.headers, name, value.into());
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.body = Some((sanitize(content_type).into_owned(), body.into()));
        self
    }

    /// The response bytes, always with Content-Length and CRLF line ends.
    pub fn build(self) -> Bytes {
        let start = format!("{} {} {}", SIP_VERSION, self.status, self.reason);
        serialize(&start, &self.headers, self.body)
    }
}

/// Builds a request we originate (NOTIFY, MESSAGE, later INVITE/INFO/BYE): start line, the
/// given headers in order, Max-Forwards: 70 if not given, Content-Length computed.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: Method,
    uri: String,
    headers: Vec<rsip::Header>,
    body: Option<(String, Bytes)>,
}

impl RequestBuilder {
    /// Starts a request for `method` to `uri` (written verbatim; whitespace, CR and LF are removed).
    pub fn new(method: Method, uri: &str) -> Self {
        RequestBuilder {
            method,
            uri: uri.chars().filter(|c| !c.is_whitespace()).collect(),
            headers: Vec::with_capacity(10),
            body: None,
        }
    }

    /// Appends a header line in call order; Content-Length is ignored (computed by `build`).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        push_header(&mut self.headers, name, value.into());
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.body = Some((sanitize(content_type).into_owned(), body.into()));
        self
    }

    /// The request bytes, always with Max-Forwards and Content-Length and CRLF line ends.
    pub fn build(mut self) -> Bytes {
        if !self
            .headers
            .iter()
            .any(|h| matches!(h, rsip::Header::MaxForwards(_)))
        {
            self.headers.push(rsip::Header::MaxForwards(
                DEFAULT_MAX_FORWARDS.to_string().into(),
            ));
        }
        let start = format!("{} {} {}", self.method, self.uri, SIP_VERSION);
        serialize(&start, &self.headers, self.body)
    }
}

/// A fresh RFC 3261 branch: "z9hG4bK" + 64 random bits in hex (§8.1.1.7).
pub fn new_branch() -> String {
    format!("{BRANCH_COOKIE}{:016x}", rand::thread_rng().gen::<u64>())
}

/// A fresh tag (§19.3): 64 random bits in hex.
pub fn new_tag() -> String {
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

/// Splits a comma-separated header value (Via, Contact, Route, Allow, ...) into trimmed
/// elements, ignoring commas inside quoted strings and `<...>`; empty elements are kept so
/// callers can refuse them.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = value;
    loop {
        let end = first_element_end(rest);
        out.push(rest[..end].trim_matches(WSP));
        if end >= rest.len() {
            return out;
        }
        rest = &rest[end + 1..];
    }
}

// ----------------------------------------------------------------------------------------------
// Lexical helpers (RFC 3261 §25.1)

const WSP: &[char] = &[' ', '\t'];

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

fn is_hex_escape(bytes: &[u8], i: usize) -> bool {
    bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
        && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
}

/// All-digit string to number; None if empty, non-digit or over u64.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok()
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Index just past the closing quote of the quoted string that starts `s` (which starts with `"`).
fn quoted_end(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some(i + 1);
        }
    }
    None
}

/// Content of a quoted string with quoted-pairs decoded; `s` includes both quotes.
fn unquote(s: &str) -> String {
    let inner = s.get(1..s.len().saturating_sub(1)).unwrap_or("");
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if !escaped && c == '\\' {
            escaped = true;
        } else {
            out.push(c);
            escaped = false;
        }
    }
    out
}

/// Byte index of the first comma outside quotes and `<...>`, or `value.len()`.
fn first_element_end(value: &str) -> usize {
    let (mut quoted, mut escaped, mut angle) = (false, false, false);
    for (i, b) in value.bytes().enumerate() {
        if quoted {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = false;
            }
            continue;
        }
        match b {
            b'"' => quoted = true,
            b'<' => angle = true,
            b'>' => angle = false,
            b',' if !angle => return i,
            _ => {}
        }
    }
    value.len()
}

/// `*( SEMI generic-param )` with LWS allowed around `;` and `=` (RFC 3261 §25.1); None if
/// malformed (empty name, stray characters, unterminated quote).
fn parse_params(mut s: &str) -> Option<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches(WSP);
        if s.is_empty() {
            return Some(out);
        }
        s = s.strip_prefix(';')?.trim_start_matches(WSP);
        let name_end = s.bytes().position(|b| !is_token_char(b)).unwrap_or(s.len());
        let name = &s[..name_end];
        if name.is_empty() {
            return None;
        }
        s = s[name_end..].trim_start_matches(WSP);
        let value = match s.strip_prefix('=') {
            Some(rest) => {
                let rest = rest.trim_start_matches(WSP);
                let end = if rest.starts_with('"') {
                    quoted_end(rest)?
                } else {
                    let end = rest
                        .find(|c: char| c == ';' || WSP.contains(&c))
                        .unwrap_or(rest.len());
                    let ok = end > 0
                        && rest[..end]
                            .bytes()
                            .all(|b| is_token_char(b) || b"[]:".contains(&b));
                    if !ok {
                        return None;
                    }
                    end
                };
                s = &rest[end..];
                Some(rest[..end].to_owned())
            }
            None => None,
        };
        out.push((name.to_owned(), value));
    }
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &[(String, Option<String>)]) -> fmt::Result {
    for (name, value) in params {
        match value {
            Some(v) => write!(f, ";{name}={v}")?,
            None => write!(f, ";{name}")?,
        }
    }
    Ok(())
}

fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'
}

/// `host [ ":" port ]` (LWS allowed around the colon, as in sent-by); IPv6 in brackets.
fn parse_hostport(s: &str) -> Option<(String, Option<u16>)> {
    let (host, rest) = if s.starts_with('[') {
        let close = s.find(']')?;
        let host = &s[..=close];
        unbracket(host).parse::<Ipv6Addr>().ok()?;
        (host, &s[close + 1..])
    } else {
        let end = s.find(':').unwrap_or(s.len());
        let host = s[..end].trim_end_matches(WSP);
        if host.is_empty() || !host.bytes().all(is_host_char) {
            return None;
        }
        (host, &s[end..])
    };
    let rest = rest.trim_matches(WSP);
    let port = if rest.is_empty() {
        None
    } else {
        let digits = rest.strip_prefix(':')?.trim_start_matches(WSP);
        if digits.len() > 5 {
            return None;
        }
        Some(u16::try_from(parse_digits(digits)?).ok()?)
    };
    Some((host.to_owned(), port))
}

/// Splits off a leading token; None if `s` does not start with one.
fn take_token(s: &str) -> Option<(&str, &str)> {
    let end = s.bytes().position(|b| !is_token_char(b)).unwrap_or(s.len());
    (end > 0).then(|| (&s[..end], &s[end..]))
}

fn parse_via(value: &str, any_version: bool) -> Result<Via, ParseError> {
    via_inner(value, any_version).ok_or(ParseError::MalformedHeader("Via"))
}

fn via_inner(value: &str, any_version: bool) -> Option<Via> {
    let s = value.trim_matches(WSP);
    let (name, rest) = take_token(s)?;
    if !name.eq_ignore_ascii_case("SIP") {
        return None;
    }
    let rest = rest.trim_start_matches(WSP).strip_prefix('/')?;
    let (version, rest) = take_token(rest.trim_start_matches(WSP))?;
    if !any_version && version != "2.0" {
        return None;
    }
    let rest = rest.trim_start_matches(WSP).strip_prefix('/')?;
    let (transport, rest) = take_token(rest.trim_start_matches(WSP))?;
    if !rest.starts_with(WSP) {
        return None;
    }
    let rest = rest.trim_start_matches(WSP);
    let end = rest.find(';').unwrap_or(rest.len());
    let (host, port) = parse_hostport(rest[..end].trim_end_matches(WSP))?;
    let params = parse_params(&rest[end..])?;
    let mut via = Via {
        transport: transport.to_ascii_uppercase(),
        host,
        port,
        branch: None,
        received: None,
        rport: None,
        params,
    };
    for (name, value) in &via.params {
        if name.eq_ignore_ascii_case("branch") && via.branch.is_none() {
            via.branch = Some(value.clone()?);
        } else if name.eq_ignore_ascii_case("received") && via.received.is_none() {
            via.received = Some(value.clone()?);
        } else if name.eq_ignore_ascii_case("rport") && via.rport.is_none() {
            via.rport = Some(match value {
                None => None,
                Some(v) if v.len() <= 5 => Some(u16::try_from(parse_digits(v)?).ok()?),
                Some(_) => return None,
            });
        }
    }
    Some(via)
}

/// A URI inside a name-addr or addr-spec: a scheme, then no whitespace, quotes or brackets.
fn is_header_uri(uri: &str) -> bool {
    match uri.split_once(':') {
        Some((scheme, rest)) => {
            is_scheme(scheme)
                && !rest.is_empty()
                && !rest
                    .bytes()
                    .any(|b| b <= b' ' || b == 0x7f || b"\"<>".contains(&b))
        }
        None => false,
    }
}

fn parse_name_addr(value: &str) -> Option<NameAddr> {
    let s = value.trim_matches(WSP);
    let (display, after_display) = if s.starts_with('"') {
        let end = quoted_end(s)?;
        let rest = s[end..].trim_start_matches(WSP);
        if !rest.starts_with('<') {
            return None;
        }
        (Some(unquote(&s[..end])), rest)
    } else if let Some(lt) = s.find('<') {
        let display = s[..lt].trim_matches(WSP);
        if !display.split(WSP).filter(|w| !w.is_empty()).all(is_token) {
            return None;
        }
        let display = (!display.is_empty()).then(|| display.to_owned());
        (display, &s[lt..])
    } else {
        // addr-spec form: the URI ends at the first ';', and may not contain '?' (§20.10).
        let end = s.find(';').unwrap_or(s.len());
        let uri = s[..end].trim_end_matches(WSP);
        if !is_header_uri(uri) || uri.contains('?') {
            return None;
        }
        return Some(NameAddr {
            display: None,
            uri: uri.to_owned(),
            params: parse_params(&s[end..])?,
        });
    };
    let inner = after_display.strip_prefix('<')?;
    let close = inner.find('>')?;
    let uri = &inner[..close];
    if !is_header_uri(uri) {
        return None;
    }
    Some(NameAddr {
        display,
        uri: uri.to_owned(),
        params: parse_params(&inner[close + 1..])?,
    })
}

fn decode_escapes(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            if !is_hex_escape(bytes, i) {
                return None;
            }
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn uri_chars_ok(s: &str, extra: &[u8]) -> bool {
    let bytes = s.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        b.is_ascii_alphanumeric()
            || b"-_.!~*'()".contains(&b)
            || extra.contains(&b)
            || (b == b'%' && is_hex_escape(bytes, i))
    })
}

fn parse_uri_rest(scheme: String, rest: &str) -> Option<Uri> {
    // '@' cannot appear unescaped after the userinfo, while '?' and ';' can appear inside it,
    // so the userinfo ends at the first '@' (RFC 3261 §25.1 user / password / hostport).
    let (userinfo, hostpart) = match rest.find('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let user = match userinfo {
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            if user.is_empty() || !uri_chars_ok(user, b"&=+$,;?/") {
                return None;
            }
            if let Some(p) = password {
                if !uri_chars_ok(p, b"&=+$,") {
                    return None;
                }
            }
            Some(decode_escapes(user)?)
        }
        None => None,
    };
    let (hostpart, headers) = match hostpart.split_once('?') {
        Some((h, hdrs)) => {
            if !uri_chars_ok(hdrs, b"[]/?:+$=&") {
                return None;
            }
            (h, Some(hdrs.to_owned()))
        }
        None => (hostpart, None),
    };
    let mut pieces = hostpart.split(';');
    let hostport = pieces.next().unwrap_or("");
    if hostport.bytes().any(|b| b == b' ' || b == b'\t') {
        return None;
    }
    let (host, port) = parse_hostport(hostport)?;
    let mut params = Vec::new();
    for piece in pieces {
        let (name, value) = match piece.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (piece, None),
        };
        let ok = !name.is_empty()
            && uri_chars_ok(name, b"[]/:&+$")
            && value.is_none_or(|v| !v.is_empty() && uri_chars_ok(v, b"[]/:&+$"));
        if !ok {
            return None;
        }
        params.push((name.to_owned(), value.map(str::to_owned)));
    }
    Some(Uri {
        scheme,
        user,
        host,
        port,
        params,
        headers,
    })
}

// ----------------------------------------------------------------------------------------------
// Header names

/// Compact forms (RFC 3261 §7.3.3 and the IANA registry: RFC 3841, 3892, 4028, 4474, 6665).
fn compact_form(c: u8) -> Option<&'static str> {
    Some(match c.to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'n' => "Identity-Info",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => return None,
    })
}

/// Canonical spellings of the header names we know; others keep their spelling.
#[rustfmt::skip]
const CANONICAL: &[&str] = &[
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Length",
    "Content-Type", "Expires", "Event", "Subscription-State", "Accept", "Allow", "Allow-Events",
    "Supported", "Require", "Proxy-Require", "Unsupported", "Route", "Record-Route", "User-Agent",
    "Server", "Authorization", "Proxy-Authorization", "WWW-Authenticate", "Proxy-Authenticate",
    "Authentication-Info", "Date", "Subject", "Min-Expires", "Retry-After", "Timestamp", "Warning",
    "Accept-Encoding", "Accept-Language", "Accept-Contact", "Alert-Info", "Call-Info",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Error-Info", "In-Reply-To",
    "MIME-Version", "Organization", "Priority", "Reply-To", "Refer-To", "Referred-By",
    "Reject-Contact", "Request-Disposition", "Session-Expires", "Identity", "Identity-Info",
    "SIP-ETag", "SIP-If-Match",
];

/// Canonical name for a full or compact header name, if we know it.
fn canonical(name: &str) -> Option<&'static str> {
    if let [c] = name.as_bytes() {
        return compact_form(*c);
    }
    CANONICAL
        .iter()
        .copied()
        .find(|c| c.eq_ignore_ascii_case(name))
}

macro_rules! rsip_headers {
    ($($name:literal => $variant:ident),* $(,)?) => {
        /// Wraps a value in the rsip variant for `name` (canonical spelling expected), or `Other`.
        fn to_rsip_header(name: &str, value: String) -> rsip::Header {
            $(
                if name.eq_ignore_ascii_case($name) {
                    return rsip::Header::$variant(rsip::headers::$variant::new(value));
                }
            )*
            rsip::Header::Other(name.to_owned(), value)
        }

        /// Name and value of an rsip header.
        fn header_parts(h: &rsip::Header) -> (&str, &str) {
            match h {
                $( rsip::Header::$variant(v) => ($name, v.value()), )*
                rsip::Header::Other(name, value) => (name.as_str(), value.as_str()),
            }
        }
    };
}

rsip_headers! {
    "Via" => Via, "From" => From, "To" => To, "Call-ID" => CallId, "CSeq" => CSeq,
    "Contact" => Contact, "Max-Forwards" => MaxForwards, "Content-Length" => ContentLength,
    "Content-Type" => ContentType, "Expires" => Expires, "Event" => Event,
    "Subscription-State" => SubscriptionState, "Accept" => Accept, "Allow" => Allow,
    "Supported" => Supported, "Require" => Require, "Proxy-Require" => ProxyRequire,
    "Unsupported" => Unsupported, "Route" => Route, "Record-Route" => RecordRoute,
    "User-Agent" => UserAgent, "Server" => Server, "Authorization" => Authorization,
    "Proxy-Authorization" => ProxyAuthorization, "WWW-Authenticate" => WwwAuthenticate,
    "Proxy-Authenticate" => ProxyAuthenticate, "Authentication-Info" => AuthenticationInfo,
    "Date" => Date, "Subject" => Subject, "Min-Expires" => MinExpires,
    "Retry-After" => RetryAfter, "Timestamp" => Timestamp, "Warning" => Warning,
    "Accept-Encoding" => AcceptEncoding, "Accept-Language" => AcceptLanguage,
    "Alert-Info" => AlertInfo, "Call-Info" => CallInfo,
    "Content-Disposition" => ContentDisposition, "Content-Encoding" => ContentEncoding,
    "Content-Language" => ContentLanguage, "Error-Info" => ErrorInfo,
    "In-Reply-To" => InReplyTo, "MIME-Version" => MimeVersion, "Organization" => Organization,
    "Priority" => Priority, "Reply-To" => ReplyTo,
}

fn lookup_name(name: &str) -> &str {
    canonical(name).unwrap_or(name)
}

fn first_header<'a>(headers: &'a rsip::Headers, name: &str) -> Option<&'a str> {
    let name = lookup_name(name);
    headers
        .iter()
        .map(header_parts)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn all_headers<'a>(headers: &'a rsip::Headers, name: &str) -> Vec<&'a str> {
    let name = lookup_name(name);
    headers
        .iter()
        .map(header_parts)
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// Replaces CR and LF so a value cannot inject header lines.
fn sanitize(s: &str) -> Cow<'_, str> {
    if s.contains(['\r', '\n']) {
        Cow::Owned(s.replace(['\r', '\n'], " "))
    } else {
        Cow::Borrowed(s)
    }
}

fn push_header(headers: &mut Vec<rsip::Header>, name: &str, value: String) {
    let name = sanitize(name);
    let name = lookup_name(name.trim());
    if name.eq_ignore_ascii_case("Content-Length") {
        return;
    }
    let value = match sanitize(&value) {
        Cow::Borrowed(_) => value,
        Cow::Owned(clean) => clean,
    };
    headers.push(to_rsip_header(name, value));
}

fn serialize(start: &str, headers: &[rsip::Header], body: Option<(String, Bytes)>) -> Bytes {
    use std::fmt::Write as _;
    let body_len = body.as_ref().map_or(0, |(_, b)| b.len());
    let mut head = String::with_capacity(256 + 64 * headers.len());
    head.push_str(start);
    head.push_str("\r\n");
    for h in headers {
        // rsip writes "Name: value" for every header kind.
        let _ = write!(head, "{h}\r\n");
    }
    if let Some((content_type, _)) = &body {
        let _ = write!(head, "Content-Type: {content_type}\r\n");
    }
    let _ = write!(head, "Content-Length: {body_len}\r\n\r\n");
    let mut out = BytesMut::with_capacity(head.len() + body_len);
    out.put_slice(head.as_bytes());
    if let Some((_, b)) = body {
        out.put_slice(&b);
    }
    out.freeze()
}

// ----------------------------------------------------------------------------------------------
// Parsing

struct RawHeader<'a> {
    /// Canonical name if known, else the name as written.
    name: &'a str,
    value: Cow<'a, str>,
}

struct RawMessage<'a> {
    start_line: &'a str,
    headers: Vec<RawHeader<'a>>,
    body: &'a [u8],
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Frames the message: start line, unfolded header lines (canonical names), body bytes.
fn split_message(bytes: &[u8]) -> Result<RawMessage<'_>, ParseError> {
    let mut bytes = bytes;
    while let Some(rest) = bytes.strip_prefix(b"\r\n") {
        bytes = rest; // RFC 3261 §7.5: CRLFs before the start line are ignored.
    }
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let line_end = find(bytes, b"\r\n").ok_or(ParseError::MalformedStartLine)?;
    let start_line = std::str::from_utf8(&bytes[..line_end]).map_err(|_| ParseError::NotUtf8)?;
    let rest = &bytes[line_end + 2..];
    let (section, body): (&[u8], &[u8]) = if let Some(body) = rest.strip_prefix(b"\r\n") {
        (&[], body)
    } else if let Some(end) = find(rest, b"\r\n\r\n") {
        (&rest[..end + 2], &rest[end + 4..])
    } else if rest.ends_with(b"\r\n") || rest.is_empty() {
        (rest, &[])
    } else {
        return Err(ParseError::MissingEndOfHeaders);
    };
    let section = std::str::from_utf8(section).map_err(|_| ParseError::NotUtf8)?;
    let mut headers: Vec<RawHeader<'_>> = Vec::with_capacity(16);
    for line in section.split("\r\n") {
        if line.is_empty() {
            continue;
        }
        if line.contains(['\r', '\n']) {
            return Err(ParseError::MalformedHeaderLine);
        }
        if line.starts_with(WSP) {
            // RFC 3261 §7.3.1: a fold (CRLF + white space) is equivalent to one SP.
            let last = headers.last_mut().ok_or(ParseError::MalformedHeaderLine)?;
            let value = last.value.to_mut();
            value.push(' ');
            value.push_str(line.trim_start_matches(WSP));
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(ParseError::MalformedHeaderLine)?;
        let name = name.trim_end_matches(WSP);
        if !is_token(name) {
            return Err(ParseError::MalformedHeaderLine);
        }
        headers.push(RawHeader {
            name: canonical(name).unwrap_or(name),
            value: Cow::Borrowed(value),
        });
    }
    for h in &mut headers {
        match &mut h.value {
            Cow::Borrowed(v) => *v = v.trim_matches(WSP),
            Cow::Owned(v) => {
                let trimmed = v.trim_matches(WSP);
                if trimmed.len() != v.len() {
                    *v = trimmed.to_owned();
                }
            }
        }
    }
    Ok(RawMessage {
        start_line,
        headers,
        body,
    })
}

/// Where the single-valued headers are; `duplicate` is the first one seen twice.
#[derive(Default)]
struct Scan {
    via: Option<usize>,
    from: Option<usize>,
    to: Option<usize>,
    call_id: Option<usize>,
    cseq: Option<usize>,
    max_forwards: Option<usize>,
    content_length: Option<usize>,
    expires: Option<usize>,
    duplicate: Option<&'static str>,
}

fn scan_headers(headers: &[RawHeader<'_>]) -> Scan {
    let mut scan = Scan::default();
    for (i, h) in headers.iter().enumerate() {
        let (slot, name) = match h.name {
            "Via" => {
                scan.via.get_or_insert(i);
                continue;
            }
            "From" => (&mut scan.from, "From"),
            "To" => (&mut scan.to, "To"),
            "Call-ID" => (&mut scan.call_id, "Call-ID"),
            "CSeq" => (&mut scan.cseq, "CSeq"),
            "Max-Forwards" => (&mut scan.max_forwards, "Max-Forwards"),
            "Content-Length" => (&mut scan.content_length, "Content-Length"),
            "Expires" => (&mut scan.expires, "Expires"),
            _ => continue,
        };
        if slot.is_some() {
            scan.duplicate.get_or_insert(name);
        } else {
            *slot = Some(i);
        }
    }
    scan
}

fn value_at<'a>(raw: &'a RawMessage<'_>, index: Option<usize>) -> Option<&'a str> {
    raw.headers.get(index?).map(|h| h.value.as_ref())
}

fn require<'a>(
    raw: &'a RawMessage<'_>,
    index: Option<usize>,
    name: &'static str,
) -> Result<&'a str, ParseError> {
    value_at(raw, index).ok_or(ParseError::MissingHeader(name))
}

/// Base headers, CSeq, numeric headers and body, shared by requests and responses.
struct Common<'a> {
    base: Base,
    max_forwards: Option<u32>,
    body: &'a [u8],
}

fn parse_common<'a>(raw: &RawMessage<'a>, scan: &Scan) -> Result<Common<'a>, ParseError> {
    if let Some(name) = scan.duplicate {
        return Err(ParseError::DuplicateHeader(name));
    }
    let via_value = require(raw, scan.via, "Via")?;
    let from = require(raw, scan.from, "From")?;
    let to = require(raw, scan.to, "To")?;
    let call_id = require(raw, scan.call_id, "Call-ID")?;
    let cseq = require(raw, scan.cseq, "CSeq")?;
    let via = Via::parse(&via_value[..first_element_end(via_value)])?;
    let from = parse_name_addr(from).ok_or(ParseError::MalformedHeader("From"))?;
    let to = parse_name_addr(to).ok_or(ParseError::MalformedHeader("To"))?;
    if call_id.is_empty() || call_id.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ParseError::MalformedHeader("Call-ID"));
    }
    let cseq = CSeq::parse(cseq)?;
    let max_forwards = match value_at(raw, scan.max_forwards) {
        Some(v) => Some(
            parse_digits(v)
                .filter(|n| *n <= u64::from(MAX_MAX_FORWARDS))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or(ParseError::BadHeaderValue("Max-Forwards"))?,
        ),
        None => None,
    };
    if let Some(v) = value_at(raw, scan.expires) {
        parse_digits(v)
            .filter(|n| u32::try_from(*n).is_ok())
            .ok_or(ParseError::BadHeaderValue("Expires"))?;
    }
    let body = match value_at(raw, scan.content_length) {
        Some(v) => {
            let len = parse_digits(v)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(ParseError::BadHeaderValue("Content-Length"))?;
            raw.body
                .get(..len)
                .ok_or(ParseError::ContentLengthTooLarge)?
        }
        None => raw.body,
    };
    Ok(Common {
        base: Base {
            via,
            from,
            to,
            call_id: call_id.to_owned(),
            cseq,
        },
        max_forwards,
        body,
    })
}

fn check_contacts(raw: &RawMessage<'_>) -> Result<(), ParseError> {
    let bad = ParseError::MalformedHeader("Contact");
    for h in raw.headers.iter().filter(|h| h.name == "Contact") {
        if h.value == "*" {
            continue;
        }
        for element in split_list(&h.value) {
            parse_name_addr(element).ok_or(bad.clone())?;
        }
    }
    Ok(())
}

struct ValidRequest<'a> {
    method: Method,
    uri: Uri,
    raw_uri: &'a str,
    common: Common<'a>,
}

impl ValidRequest<'_> {
    fn into_request(self, raw: RawMessage<'_>) -> Request {
        Request {
            base: self.common.base,
            method: self.method,
            uri: self.uri,
            raw_uri: self.raw_uri.to_owned(),
            body: Bytes::copy_from_slice(self.common.body),
            max_forwards: self.common.max_forwards,
            headers: into_rsip(raw.headers),
        }
    }
}

fn into_rsip(headers: Vec<RawHeader<'_>>) -> rsip::Headers {
    headers
        .into_iter()
        .map(|h| to_rsip_header(h.name, h.value.into_owned()))
        .collect::<Vec<_>>()
        .into()
}

/// RFC 3261 §8.2 checks, in order; the error carries the status to answer with.
fn validate_request<'a>(
    raw: &RawMessage<'a>,
    scan: &Scan,
) -> Result<ValidRequest<'a>, (u16, ParseError)> {
    let bad = |e| (400, e);
    let mut parts = raw.start_line.split(' ');
    let (method, uri, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(u), Some(v), None) if is_token(m) && !u.is_empty() && !u.contains('\t') => {
            (m, u, v)
        }
        _ => return Err(bad(ParseError::MalformedRequestLine)),
    };
    if !version.eq_ignore_ascii_case(SIP_VERSION) {
        let looks_like_sip = version
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"));
        return Err(if looks_like_sip {
            (505, ParseError::UnsupportedVersion)
        } else {
            bad(ParseError::MalformedRequestLine)
        });
    }
    let method = Method::parse(method);
    let parsed_uri = match Uri::parse(uri) {
        Ok(u) if u.headers.is_none() => u,
        Ok(_) => return Err(bad(ParseError::MalformedRequestUri)),
        Err(ParseError::UnsupportedUriScheme) => {
            return Err((416, ParseError::UnsupportedUriScheme))
        }
        Err(_) => return Err(bad(ParseError::MalformedRequestUri)),
    };
    let common = parse_common(raw, scan).map_err(bad)?;
    if common.base.cseq.method != method {
        return Err(bad(ParseError::CSeqMethodMismatch));
    }
    check_contacts(raw).map_err(bad)?;
    if matches!(method, Method::Other(_)) {
        return Err((405, ParseError::UnknownMethod));
    }
    Ok(ValidRequest {
        method,
        uri: parsed_uri,
        raw_uri: uri,
        common,
    })
}

fn parse_response(raw: RawMessage<'_>, scan: &Scan) -> Result<Response, ParseError> {
    let line = raw.start_line;
    let (version, rest) = line
        .split_once(' ')
        .ok_or(ParseError::MalformedStatusLine)?;
    if !version.eq_ignore_ascii_case(SIP_VERSION) {
        return Err(ParseError::UnsupportedVersion);
    }
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = match code.as_bytes() {
        [a, b, c] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => code
            .parse::<u16>()
            .map_err(|_| ParseError::MalformedStatusLine)?,
        _ => return Err(ParseError::MalformedStatusLine),
    };
    if !(100..=699).contains(&status) || reason.contains(|c: char| c.is_control() && c != '\t') {
        return Err(ParseError::MalformedStatusLine);
    }
    let common = parse_common(&raw, scan)?;
    Ok(Response {
        status,
        reason: reason.to_owned(),
        base: common.base,
        body: Bytes::copy_from_slice(common.body),
        headers: into_rsip(raw.headers),
    })
}

/// Turns a request error into a reply when the request carries what a response needs (a
/// parseable top Via of any version, and From, To, Call-ID, CSeq to copy), else into a drop.
fn reject(raw: &RawMessage<'_>, scan: &Scan, status: u16, error: &ParseError) -> Rejection {
    let reason = error.to_string();
    let via =
        value_at(raw, scan.via).and_then(|v| parse_via(&v[..first_element_end(v)], true).ok());
    let copied = (
        value_at(raw, scan.from),
        value_at(raw, scan.to),
        value_at(raw, scan.call_id),
        value_at(raw, scan.cseq),
    );
    let (Some(via), (Some(from), Some(to), Some(call_id), Some(cseq))) = (via, copied) else {
        return Rejection::Drop { reason };
    };
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(format!("{SIP_VERSION} {status} {reason}\r\n").as_bytes());
    let mut line = |name: &str, value: &str| {
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    };
    for h in raw.headers.iter().filter(|h| h.name == "Via") {
        line("Via", &h.value);
    }
    line("From", from);
    let needs_tag = parse_name_addr(to).is_some_and(|t| t.tag().is_none());
    if needs_tag {
        line("To", &format!("{to};tag={}", new_tag()));
    } else {
        line("To", to);
    }
    line("Call-ID", call_id);
    line("CSeq", cseq);
    if status == 405 {
        line("Allow", ALLOW);
    }
    line("Content-Length", "0");
    out.put_slice(b"\r\n");
    Rejection::Reply {
        status,
        reason,
        response: out.freeze(),
        via,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_message_bytes: 65_535,
    };

    fn request(bytes: &[u8]) -> Request {
        match parse(bytes, &LIMITS) {
            Ok(Message::Request(r)) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn response(bytes: &[u8]) -> Response {
        match parse(bytes, &LIMITS) {
            Ok(Message::Response(r)) => r,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// (status, reason, response bytes as text) of a `Rejection::Reply`.
    fn replied(bytes: &[u8]) -> (u16, String, String) {
        match parse(bytes, &LIMITS) {
            Err(Rejection::Reply {
                status,
                reason,
                response,
                ..
            }) => (
                status,
                reason,
                String::from_utf8_lossy(&response).into_owned(),
            ),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn dropped(bytes: &[u8]) -> String {
        match parse(bytes, &LIMITS) {
            Err(Rejection::Drop { reason }) => reason,
            other => panic!("expected a drop, got {other:?}"),
        }
    }

    fn crlf(text: &str) -> Vec<u8> {
        text.replace('\n', "\r\n").into_bytes()
    }

    // Own vector (not from an RFC): a plain REGISTER through a NAT.
    const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\n\
        Via: SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKkjshdyff\n\
        Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKkjsh77\n\
        Max-Forwards: 70\n\
        From: \"Alice\" <sip:alice@example.com>;tag=a73kszlfl\n\
        To: <sip:alice@example.com>\n\
        Call-ID: 1j9FpLxk3uxtm8tn@10.1.1.1\n\
        CSeq: 1 REGISTER\n\
        Contact: <sip:alice@10.1.1.1:4540>;expires=3600\n\
        Content-Length: 0\n\n";

    // ---------------------------------------------------------------- RFC 4475 §3.1.1 (valid)

    #[test]
    fn rfc4475_wsinv_short_tortuous_invite() {
        let r = request(include_bytes!("torture/wsinv.sip"));
        assert_eq!(r.method(), &Method::Invite);
        assert_eq!(r.base.call_id, "wsinv.ndaksdj@192.0.2.1");
        assert_eq!(r.uri().user.as_deref(), Some("vivekg"));
        assert_eq!(r.uri().host, "chair-dnrc.example.com");
        assert_eq!(r.uri().params, vec![("unknownparam".to_owned(), None)]);
        assert_eq!(r.base.to.uri, "sip:vivekg@chair-dnrc.example.com");
        assert_eq!(r.base.to.tag(), Some("1918181833n"));
        assert_eq!(r.base.from.display.as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(r.base.from.tag(), Some("98asjd8"));
        assert_eq!(r.max_forwards(), Some(68));
        assert_eq!(
            r.base.cseq,
            CSeq {
                seq: 9,
                method: Method::Invite
            }
        );
        assert_eq!(r.base.via.transport, "UDP");
        assert_eq!(r.base.via.host, "192.0.2.2");
        assert_eq!(r.base.via.branch.as_deref(), Some("390skdjuw"));
        assert!(!r.base.via.is_rfc3261_branch());
        let vias = r.headers("Via");
        assert_eq!(vias.len(), 2);
        let second: Vec<Via> = split_list(vias[1])
            .into_iter()
            .map(|v| Via::parse(v).unwrap())
            .collect();
        assert_eq!(second[0].host, "spindle.example.com");
        assert_eq!(second[0].branch.as_deref(), Some("z9hG4bK9ikj8"));
        assert_eq!(second[1].host, "192.168.255.111");
        assert_eq!(second[1].branch.as_deref(), Some("z9hG4bK30239"));
        assert_eq!(r.header("Subject"), Some(""));
        assert_eq!(
            r.header("NewFangledHeader"),
            Some("newfangled value continued newfangled value")
        );
        assert_eq!(r.header("UnknownHeaderWithUnusualValue"), Some(";;,,;;,;"));
        let contact = NameAddr::parse(r.header("Contact").unwrap()).unwrap();
        assert_eq!(contact.display.as_deref(), Some("Quoted string \"\""));
        assert_eq!(contact.param("newparam"), Some(Some("newvalue")));
        assert_eq!(contact.param("secondparam"), Some(None));
        assert_eq!(contact.param("q"), Some(Some("0.33")));
        assert_eq!(r.body().len(), 150);
    }

    #[test]
    fn header_access_by_compact_and_full_names() {
        let r = request(include_bytes!("torture/wsinv.sip"));
        assert_eq!(r.header("i"), Some("wsinv.ndaksdj@192.0.2.1"));
        assert_eq!(r.header("call-id"), r.header("Call-ID"));
        assert_eq!(r.header("s"), Some(""));
        assert_eq!(r.header("l"), Some("150"));
        assert_eq!(r.header("c"), Some("application/sdp"));
        assert_eq!(r.headers("v"), r.headers("VIA"));
        assert_eq!(r.headers("m").len(), 1);
        assert_eq!(r.header("MAX-FORWARDS"), Some("0068"));
        assert_eq!(r.header("X-Absent"), None);
        assert!(r.headers("X-Absent").is_empty());
    }

    #[test]
    fn rfc4475_intmeth_parses_then_gets_405() {
        // Syntactically valid; RFC 4475 §3.1.1.2 lets endpoints refuse the unknown method
        // (it says 501; this server says 405 + Allow, as RFC 3261 §8.2.1 prescribes for a UAS).
        let bytes = include_bytes!("torture/intmeth.sip");
        let (status, reason, text) = replied(bytes);
        assert_eq!((status, reason.as_str()), (405, "Method Not Allowed"));
        assert!(text.contains(&format!("Allow: {ALLOW}\r\n")));
        assert!(text.contains("CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\r\n"));
        let answer = response(text.as_bytes());
        assert_eq!(answer.status, 405);
        assert_eq!(
            answer.base.call_id,
            "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
        );
        assert_eq!(
            answer.base.cseq.method,
            Method::Other("!interesting-Method0123456789_*+`.%indeed'~".to_owned())
        );
        assert!(answer.base.to.tag().is_some(), "a tag is added to To");
        let to = NameAddr::parse(
            "\"BEL:\\\u{7} NUL:\\\u{0} DEL:\\\u{7f}\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>",
        )
        .unwrap();
        assert_eq!(
            to.display.as_deref(),
            Some("BEL:\u{7} NUL:\u{0} DEL:\u{7f}")
        );
        let uri = Uri::parse("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com").unwrap();
        assert_eq!(
            uri.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(uri.host, "example.com");
    }

    #[test]
    fn rfc4475_esc01_escapes_decoded_where_allowed() {
        let r = request(include_bytes!("torture/esc01.sip"));
        assert_eq!(r.base.call_id, "esc01.239409asdfakjkn23onasd0-3234");
        assert_eq!(r.uri().user.as_deref(), Some("sips:user@example.com"));
        assert_eq!(r.uri().host, "example.net");
        assert_eq!(
            r.uri().to_string(),
            "sip:sips%3Auser%40example.com@example.net"
        );
        assert_eq!(
            Uri::parse(&r.base.to.uri).unwrap().user.as_deref(),
            Some("user")
        );
        assert_eq!(
            Uri::parse(&r.base.from.uri).unwrap().user.as_deref(),
            Some("I have spaces")
        );
        let contact = NameAddr::parse(r.header("m").unwrap()).unwrap();
        let contact_uri = Uri::parse(&contact.uri).unwrap();
        assert_eq!(contact_uri.user.as_deref(), Some("caller"));
        assert_eq!(
            contact_uri.params,
            vec![
                ("%6C%72".to_owned(), None),
                ("n%61me".to_owned(), Some("v%61lue%25%34%31".to_owned()))
            ]
        );
    }

    #[test]
    fn rfc4475_escnull_keeps_nul_in_user() {
        let r = request(include_bytes!("torture/escnull.sip"));
        assert_eq!(r.method(), &Method::Register);
        assert_eq!(
            Uri::parse(&r.base.to.uri).unwrap().user.as_deref(),
            Some("null-\u{0}-null")
        );
        assert_eq!(
            r.headers("Contact"),
            vec![
                "<sip:%00@host5.example.com>",
                "<sip:%00%00@host5.example.com>"
            ]
        );
        assert_eq!(r.header("l"), Some("0"));
    }

    #[test]
    fn rfc4475_esc02_percent_method_is_unknown() {
        // RE%47IST%45R is not REGISTER (% is no escape in a method); well-formed, so 405.
        let (status, _, text) = replied(include_bytes!("torture/esc02.sip"));
        assert_eq!(status, 405);
        assert!(text.contains("CSeq: 29344 RE%47IST%45R\r\n"));
    }

    #[test]
    fn rfc4475_lwsdisp_display_name_without_space() {
        let r = request(include_bytes!("torture/lwsdisp.sip"));
        assert_eq!(r.base.from.display.as_deref(), Some("caller"));
        assert_eq!(r.base.from.uri, "sip:caller@example.com");
        assert_eq!(r.base.call_id, "lwsdisp.1234abcd@funky.example.com");
    }

    #[test]
    fn rfc4475_longreq_long_values() {
        let r = request(include_bytes!("torture/longreq.sip"));
        assert_eq!(r.method(), &Method::Invite);
        assert_eq!(r.headers("Via").len(), 34);
        assert_eq!(r.base.via.host, "sip33.example.com");
        assert_eq!(r.base.via.transport, "TCP");
        assert_eq!(r.base.via.branch, None);
        assert_eq!(
            r.base.to.display.as_deref(),
            Some(format!("I have a user name of {} proportion", "extreme".repeat(10)).as_str())
        );
        assert_eq!(Uri::parse(&r.base.to.uri).unwrap().port, Some(6000));
        assert_eq!(
            r.base.from.tag(),
            Some(format!("12{}424", "982".repeat(50)).as_str())
        );
        assert_eq!(
            r.base.call_id,
            format!("longreq.one{}longcallid", "really".repeat(20))
        );
        assert_eq!(r.body().len(), 150);
    }

    #[test]
    fn rfc4475_dblreq_ignores_trailing_octets() {
        let r = request(include_bytes!("torture/dblreq.sip"));
        assert_eq!(r.method(), &Method::Register);
        assert_eq!(r.base.call_id, "dblreq.0ha0isndaksdj99sdfafnl3lk233412");
        assert_eq!(r.body(), b"");
    }

    #[test]
    fn rfc4475_semiuri_semicolon_in_user() {
        let r = request(include_bytes!("torture/semiuri.sip"));
        assert_eq!(r.method(), &Method::Options);
        assert_eq!(r.uri().user.as_deref(), Some("user;par=u@example.net"));
        assert_eq!(r.uri().host, "example.com");
        assert!(r.uri().params.is_empty());
        assert_eq!(
            r.uri().to_string(),
            "sip:user;par=u%40example.net@example.com"
        );
        assert_eq!(r.raw_uri(), "sip:user;par=u%40example.net@example.com");
    }

    #[test]
    fn rfc4475_transports_unknown_transport_kept() {
        let r = request(include_bytes!("torture/transports.sip"));
        assert_eq!(r.base.call_id, "transports.kijh4akdnaqjkwendsasfdj");
        let transports: Vec<String> = r
            .headers("Via")
            .into_iter()
            .map(|v| Via::parse(v).unwrap().transport)
            .collect();
        assert_eq!(transports, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    }

    #[test]
    fn rfc4475_mpart01_binary_body() {
        let r = request(include_bytes!("torture/mpart01.sip"));
        assert_eq!(r.method(), &Method::Message);
        assert_eq!(
            r.base.call_id,
            "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA.."
        );
        assert_eq!(r.body().len(), 553);
        assert!(r.body().ends_with(b"\r\n--7a9cbec02ceef655--\r\n"));
        assert_eq!(r.base.via.rport, Some(None));
        assert_eq!(r.base.via.port, Some(5070));
    }

    #[test]
    fn rfc4475_unreason_and_noreason_responses() {
        let r = response(include_bytes!("torture/unreason.sip"));
        assert_eq!(r.status, 200);
        assert_eq!(r.reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
        assert_eq!(r.base.call_id, "unreason.1234ksdfak3j2erwedfsASdf");
        assert_eq!(r.body().len(), 154);
        let r = response(include_bytes!("torture/noreason.sip"));
        assert_eq!((r.status, r.reason.as_str()), (100, ""));
        assert_eq!(r.base.call_id, "noreason.asndj203insdf99223ndf");
    }

    // -------------------------------------------------------------- RFC 4475 §3.1.2 (invalid)

    #[test]
    fn rfc4475_invalid_requests_get_400_naming_the_fault() {
        let cases: [(&[u8], &str); 13] = [
            (
                include_bytes!("torture/clerr.sip"),
                "Content-Length larger than body",
            ),
            (
                include_bytes!("torture/ncl.sip"),
                "Bad Content-Length header",
            ),
            (include_bytes!("torture/scalar02.sip"), "Bad CSeq header"),
            (include_bytes!("torture/quotbal.sip"), "Malformed To header"),
            (
                include_bytes!("torture/ltgtruri.sip"),
                "Malformed Request-URI",
            ),
            (
                include_bytes!("torture/lwsruri.sip"),
                "Malformed request line",
            ),
            (
                include_bytes!("torture/lwsstart.sip"),
                "Malformed request line",
            ),
            // trws: RFC 3261 grammar has no SP after SIP-Version; we are strict.
            (include_bytes!("torture/trws.sip"), "Malformed request line"),
            (
                include_bytes!("torture/escruri.sip"),
                "Malformed Request-URI",
            ),
            (
                include_bytes!("torture/regbadct.sip"),
                "Malformed Contact header",
            ),
            (
                include_bytes!("torture/badaspec.sip"),
                "Malformed To header",
            ),
            (include_bytes!("torture/baddn.sip"), "Malformed From header"),
            (
                include_bytes!("torture/mismatch01.sip"),
                "CSeq method does not match request method",
            ),
        ];
        for (bytes, expected) in cases {
            let (status, reason, text) = replied(bytes);
            assert_eq!((status, reason.as_str()), (400, expected));
            assert!(
                text.starts_with(&format!("SIP/2.0 400 {expected}\r\n")),
                "{text}"
            );
            assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
        }
    }

    #[test]
    fn rfc4475_quotbal_reply_copies_the_bad_to_verbatim() {
        let (_, _, text) = replied(include_bytes!("torture/quotbal.sip"));
        assert!(
            text.contains("\r\nTo: \"Mr. J. User <sip:j.user@example.com>\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nVia: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\r\n"));
        assert!(text.contains("\r\nCall-ID: quotbal.aksdj\r\n"));
    }

    #[test]
    fn rfc4475_mismatch02_unknown_method_with_mismatch_is_400() {
        // RFC 4475 §3.1.2.18 accepts 400 (or 501); the syntax fault is reported before 405.
        let (status, reason, _) = replied(include_bytes!("torture/mismatch02.sip"));
        assert_eq!(
            (status, reason.as_str()),
            (400, "CSeq method does not match request method")
        );
    }

    #[test]
    fn rfc4475_badvers_gets_505() {
        let (status, reason, text) = replied(include_bytes!("torture/badvers.sip"));
        assert_eq!((status, reason.as_str()), (505, "Version Not Supported"));
        assert!(text.contains("\r\nVia: SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\r\n"));
    }

    #[test]
    fn rfc4475_unanswerable_messages_are_dropped() {
        // badinv01: the only Via is malformed, so there is nowhere to send the 400 RFC 4475 wants.
        assert_eq!(
            dropped(include_bytes!("torture/badinv01.sip")),
            "Malformed Via header"
        );
        // Responses are never answered.
        assert_eq!(
            dropped(include_bytes!("torture/scalarlg.sip")),
            "Bad CSeq header"
        );
        assert_eq!(
            dropped(include_bytes!("torture/bigcode.sip")),
            "Malformed status line"
        );
        // insuf lacks From, To and Call-ID: nothing to build a response from.
        assert_eq!(
            dropped(include_bytes!("torture/insuf.sip")),
            "Missing From header"
        );
    }

    #[test]
    fn rfc4475_baddate_accepted() {
        // RFC 4475 §3.1.2.12 lets an element ignore a bad Date; nothing here reads Date.
        let r = request(include_bytes!("torture/baddate.sip"));
        assert_eq!(r.header("Date"), Some("Fri, 01 Jan 2010 16:00:00 EST"));
    }

    // ------------------------------------------------- RFC 4475 §3.2, §3.3, §3.4 (semantics)

    #[test]
    fn rfc4475_badbranch_is_just_a_short_branch() {
        let r = request(include_bytes!("torture/badbranch.sip"));
        assert_eq!(r.base.via.branch.as_deref(), Some("z9hG4bK"));
        assert!(r.base.via.is_rfc3261_branch());
    }

    #[test]
    fn rfc4475_unknown_request_uri_schemes_get_416() {
        for bytes in [
            &include_bytes!("torture/unkscm.sip")[..],
            &include_bytes!("torture/novelsc.sip")[..],
        ] {
            let (status, reason, _) = replied(bytes);
            assert_eq!((status, reason.as_str()), (416, "Unsupported URI Scheme"));
        }
    }

    #[test]
    fn rfc4475_duplicates_of_single_valued_headers_get_400() {
        let (status, reason, _) = replied(include_bytes!("torture/multi01.sip"));
        assert_eq!((status, reason.as_str()), (400, "Duplicate CSeq header"));
        let (status, reason, _) = replied(include_bytes!("torture/mcl01.sip"));
        assert_eq!(
            (status, reason.as_str()),
            (400, "Duplicate Content-Length header")
        );
    }

    #[test]
    fn rfc4475_application_layer_cases_parse() {
        // unksm2: odd schemes in To/From/Contact are the registrar's business, not the parser's.
        let r = request(include_bytes!("torture/unksm2.sip"));
        assert_eq!(r.base.to.uri, "isbn:2983792873");
        assert_eq!(r.base.from.uri, "http://www.example.com");
        let r = request(include_bytes!("torture/bext01.sip"));
        assert_eq!(
            r.header("Require"),
            Some("nothingSupportsThis, nothingSupportsThisEither")
        );
        assert_eq!(r.base.via.transport, "TLS");
        let r = request(include_bytes!("torture/invut.sip"));
        assert_eq!(r.header("Content-Type"), Some("application/unknownformat"));
        assert_eq!(
            r.body(),
            b"<audio>\r\n <pcmu port=\"443\"/>\r\n</audio>\r\n"
        );
        let r = request(include_bytes!("torture/regaut01.sip"));
        assert_eq!(
            r.header("Authorization"),
            Some("NoOneKnowsThisScheme opaque-data=here")
        );
        let r = request(include_bytes!("torture/zeromf.sip"));
        assert_eq!(r.max_forwards(), Some(0));
        let r = request(include_bytes!("torture/sdp01.sip"));
        assert_eq!(r.header("Accept"), Some("text/nobodyKnowsThis"));
        let r = response(include_bytes!("torture/bcast.sip"));
        assert_eq!(r.headers("Via").len(), 2);
        assert_eq!(r.base.call_id, "bcast.0384840201234ksdfak3j2erwedfsASdf");
    }

    #[test]
    fn rfc4475_contact_params_and_uri_params() {
        // cparam01: without <>, ";unknownparam" belongs to the Contact header, not the URI.
        let r = request(include_bytes!("torture/cparam01.sip"));
        let c = NameAddr::parse(r.header("Contact").unwrap()).unwrap();
        assert_eq!(c.uri, "sip:+19725552222@gw1.example.net");
        assert_eq!(c.param("unknownparam"), Some(None));
        // cparam02: inside <>, it is a URI param.
        let r = request(include_bytes!("torture/cparam02.sip"));
        let c = NameAddr::parse(r.header("Contact").unwrap()).unwrap();
        assert!(c.params.is_empty());
        assert_eq!(
            Uri::parse(&c.uri).unwrap().param("unknownparam"),
            Some(None)
        );
        // regescrt: escaped headers inside <> are legal in a Contact.
        let r = request(include_bytes!("torture/regescrt.sip"));
        let c = NameAddr::parse(r.header("m").unwrap()).unwrap();
        let uri = Uri::parse(&c.uri).unwrap();
        assert_eq!(
            uri.headers.as_deref(),
            Some("Route=%3Csip:sip.example.com%3E")
        );
    }

    #[test]
    fn rfc4475_inv2543_old_style_request_accepted() {
        // No Max-Forwards, no Content-Length (body = rest of datagram), no branch.
        let r = request(include_bytes!("torture/inv2543.sip"));
        assert_eq!(r.max_forwards(), None);
        assert_eq!(r.body().len(), 105);
        assert_eq!(r.base.via.branch, None);
        assert!(!r.base.via.is_rfc3261_branch());
        assert_eq!(r.base.to.param("user"), Some(Some("phone")));
    }

    // ------------------------------------------------------------------------ own vectors

    #[test]
    fn round_trip_parse_reply_parse() {
        let mut req = request(&crlf(REGISTER));
        req.stamp_source("192.0.2.1:9988".parse().unwrap());
        let bytes = reply(&req, 200, "OK")
            .to_tag("8321234356")
            .header("Contact", "<sip:alice@10.1.1.1:4540>;expires=3600")
            .header("Expires", "3600")
            .build();
        let resp = response(&bytes);
        assert_eq!((resp.status, resp.reason.as_str()), (200, "OK"));
        assert_eq!(resp.base.call_id, req.base.call_id);
        assert_eq!(resp.base.cseq, req.base.cseq);
        assert_eq!(resp.base.from, req.base.from);
        assert_eq!(resp.base.to.tag(), Some("8321234356"));
        assert_eq!(
            resp.headers("Via"),
            vec![
                "SIP/2.0/UDP 10.1.1.1:4540;received=192.0.2.1;rport=9988;branch=z9hG4bKkjshdyff",
                "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKkjsh77",
            ]
        );
        assert_eq!(
            resp.base.via.response_target(),
            ("192.0.2.1".to_owned(), 9988)
        );
        assert_eq!(resp.header("Expires"), Some("3600"));
        assert_eq!(resp.header("Content-Length"), Some("0"));
        assert!(bytes.ends_with(b"Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn reply_keeps_an_existing_to_tag_and_sets_body() {
        let text = REGISTER.replace(
            "To: <sip:alice@example.com>",
            "To: <sip:alice@example.com>;tag=x1",
        );
        let req = request(&crlf(&text));
        let bytes = reply(&req, 202, "Accepted")
            .to_tag("ignored")
            .header("Content-Length", "99")
            .header("X-Evil", "a\r\nInjected: yes")
            .body("text/plain", Bytes::from_static(b"hello"))
            .build();
        let resp = response(&bytes);
        assert_eq!(resp.base.to.tag(), Some("x1"));
        assert_eq!(resp.body(), b"hello");
        assert_eq!(resp.headers("Content-Length"), vec!["5"]);
        assert_eq!(resp.header("Content-Type"), Some("text/plain"));
        assert_eq!(resp.header("X-Evil"), Some("a  Injected: yes"));
        assert_eq!(resp.header("Injected"), None);
    }

    #[test]
    fn request_builder_output_parses() {
        let branch = new_branch();
        let bytes = RequestBuilder::new(Method::Notify, "sip:bob@192.0.2.4:5060")
            .header(
                "Via",
                format!("SIP/2.0/TCP pres.example.com;branch={branch}"),
            )
            .header("From", "<sip:alice@example.com>;tag=f1")
            .header("To", "<sip:bob@example.com>;tag=t1")
            .header("Call-ID", "n1@pres.example.com")
            .header(
                "CSeq",
                CSeq {
                    seq: 7,
                    method: Method::Notify,
                }
                .to_string(),
            )
            .header("o", "presence")
            .header("Subscription-State", "active;expires=600")
            .body("application/pidf+xml", Bytes::from_static(b"<presence/>"))
            .build();
        let r = request(&bytes);
        assert_eq!(r.method(), &Method::Notify);
        assert_eq!(r.max_forwards(), Some(70));
        assert_eq!(r.base.via.branch.as_deref(), Some(branch.as_str()));
        assert_eq!(r.header("Event"), Some("presence"));
        assert_eq!(r.header("Content-Type"), Some("application/pidf+xml"));
        assert_eq!(r.body(), b"<presence/>");
        let with_mf = RequestBuilder::new(Method::Message, "sip:bob@example.com")
            .header("Max-Forwards", "10")
            .build();
        let text = String::from_utf8_lossy(&with_mf);
        assert_eq!(text.matches("Max-Forwards").count(), 1);
        assert!(text.starts_with("MESSAGE sip:bob@example.com SIP/2.0\r\nMax-Forwards: 10\r\n"));
    }

    #[test]
    fn via_parse_display_ipv6() {
        let v = Via::parse("SIP/2.0/tcp [::1]:5060;branch=z9hG4bKabc").unwrap();
        assert_eq!(v.transport, "TCP");
        assert_eq!(v.host, "[::1]");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.sent_by(), "[::1]:5060");
        assert_eq!(v.to_string(), "SIP/2.0/TCP [::1]:5060;branch=z9hG4bKabc");
        assert_eq!(v.response_target(), ("::1".to_owned(), 5060));
        assert!(Via::parse("SIP/2.0/UDP [::g]:5060").is_err());
        assert!(Via::parse("SIP/2.0/UDP host:70000").is_err());
        assert!(Via::parse("SIP/2.0/UDPhost").is_err());
        assert_eq!(
            Via::parse("SIP/3.0/UDP host"),
            Err(ParseError::MalformedHeader("Via"))
        );
    }

    #[test]
    fn via_rfc3581_section4_example() {
        let mut v = Via::parse("SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKkjshdyff").unwrap();
        v.stamp("192.0.2.1:9988".parse().unwrap());
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP 10.1.1.1:4540;received=192.0.2.1;rport=9988;branch=z9hG4bKkjshdyff"
        );
        assert_eq!(v.received.as_deref(), Some("192.0.2.1"));
        assert_eq!(v.rport, Some(Some(9988)));
        assert_eq!(v.response_target(), ("192.0.2.1".to_owned(), 9988));
    }

    #[test]
    fn via_stamp_rfc3261_received_rules() {
        // Same address, no rport: nothing to add (RFC 3261 §18.2.1).
        let mut v = Via::parse("SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK1").unwrap();
        v.stamp("192.0.2.7:40000".parse().unwrap());
        assert_eq!(v.to_string(), "SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK1");
        assert_eq!(v.response_target(), ("192.0.2.7".to_owned(), 5062));
        // A host name always gets received, appended at the end.
        let mut v = Via::parse("SIP/2.0/TLS pc.example.com;branch=z9hG4bK2").unwrap();
        v.stamp("[2001:db8::9]:5061".parse().unwrap());
        assert_eq!(
            v.to_string(),
            "SIP/2.0/TLS pc.example.com;branch=z9hG4bK2;received=2001:db8::9"
        );
        assert_eq!(v.response_target(), ("2001:db8::9".to_owned(), 5061));
        // IPv4-mapped source addresses are written as IPv4.
        let mut v = Via::parse("SIP/2.0/UDP pc.example.com").unwrap();
        v.stamp("[::ffff:192.0.2.9]:5060".parse().unwrap());
        assert_eq!(v.received.as_deref(), Some("192.0.2.9"));
        // maddr wins over received (RFC 3261 §18.2.2).
        let v = Via::parse("SIP/2.0/UDP a.example.com;maddr=239.1.1.1;received=192.0.2.3").unwrap();
        assert_eq!(v.response_target(), ("239.1.1.1".to_owned(), 5060));
    }

    #[test]
    fn stamp_source_rewrites_only_the_top_via_element() {
        let text = REGISTER.replace(
            "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKkjsh77\n",
            "",
        );
        let text = text.replace(
            "branch=z9hG4bKkjshdyff\n",
            "branch=z9hG4bKkjshdyff , SIP/2.0/UDP proxy.example.com;branch=z9hG4bKkjsh77\n",
        );
        let mut req = request(&crlf(&text));
        req.stamp_source("192.0.2.1:9988".parse().unwrap());
        assert_eq!(
            req.header("Via"),
            Some("SIP/2.0/UDP 10.1.1.1:4540;received=192.0.2.1;rport=9988;branch=z9hG4bKkjshdyff, SIP/2.0/UDP proxy.example.com;branch=z9hG4bKkjsh77")
        );
        assert_eq!(req.base.via.received.as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn name_addr_forms_and_display() {
        let a = NameAddr::parse("sip:alice@example.com;tag=1").unwrap();
        assert_eq!(a.to_string(), "<sip:alice@example.com>;tag=1");
        let b =
            NameAddr::parse("\"A \\\"B\\\"\" <sip:b@example.com;transport=tcp> ; q=0.5").unwrap();
        assert_eq!(b.display.as_deref(), Some("A \"B\""));
        assert_eq!(
            b.to_string(),
            "\"A \\\"B\\\"\" <sip:b@example.com;transport=tcp>;q=0.5"
        );
        assert_eq!(NameAddr::parse(&b.to_string()), Ok(b));
        assert_eq!(
            NameAddr::parse("Bob Smith <sip:bob@x>")
                .unwrap()
                .display
                .as_deref(),
            Some("Bob Smith")
        );
        for bad in [
            "",
            "<sip:a@b",
            "sip:a@b?x=y",
            "\"open <sip:a@b>",
            "<sip:a@b>;",
            "< sip:a@b>",
            "a,b <sip:c@d>",
            "<nouri>",
        ] {
            assert_eq!(
                NameAddr::parse(bad),
                Err(ParseError::MalformedHeader("name-addr")),
                "{bad}"
            );
        }
    }

    #[test]
    fn uri_schemes_and_round_trip() {
        let u = Uri::parse("pres:alice@example.com").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.user.as_deref(), u.host.as_str()),
            ("pres", Some("alice"), "example.com")
        );
        assert_eq!(
            Uri::parse("IM:bob@example.org").unwrap().to_string(),
            "im:bob@example.org"
        );
        let s = "sips:alice@[2001:db8::1]:5061;transport=tcp;lr?subject=hi";
        let u = Uri::parse(s).unwrap();
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.to_string(), s);
        assert_eq!(
            Uri::parse("tel:+1-201-555-0123"),
            Err(ParseError::UnsupportedUriScheme)
        );
        for bad in [
            "sip:",
            "sip:a@",
            "sip:a b@c",
            "sip:%zz@c",
            "sip:a@b;",
            "sip:a@b:x",
            "nocolon",
            "1sip:a@b",
        ] {
            assert_eq!(Uri::parse(bad), Err(ParseError::MalformedUri), "{bad}");
        }
    }

    #[test]
    fn cseq_limits() {
        assert_eq!(CSeq::parse("2147483647 INVITE").unwrap().seq, 2_147_483_647);
        assert_eq!(
            CSeq::parse("2147483648 INVITE"),
            Err(ParseError::BadHeaderValue("CSeq"))
        );
        assert_eq!(CSeq::parse("12"), Err(ParseError::BadHeaderValue("CSeq")));
        assert_eq!(
            CSeq::parse("x INVITE"),
            Err(ParseError::BadHeaderValue("CSeq"))
        );
        assert_eq!(
            CSeq::parse("1 invite").unwrap().method,
            Method::Other("invite".to_owned())
        );
    }

    #[test]
    fn method_tokens_are_case_sensitive() {
        assert_eq!(Method::parse("SUBSCRIBE"), Method::Subscribe);
        assert_eq!(
            Method::parse("Subscribe"),
            Method::Other("Subscribe".to_owned())
        );
        assert_eq!(Method::Prack.to_string(), "PRACK");
        assert_eq!(Method::Other("FOO".to_owned()).as_str(), "FOO");
    }

    #[test]
    fn split_list_respects_quotes_and_brackets() {
        assert_eq!(
            split_list("\"a, b\" <sip:x@y;p=1,2>;q=1 , <sip:z@w>,"),
            vec!["\"a, b\" <sip:x@y;p=1,2>;q=1", "<sip:z@w>", ""]
        );
        assert_eq!(split_list("one"), vec!["one"]);
    }

    #[test]
    fn header_level_faults() {
        let base = crlf(REGISTER);
        let text = String::from_utf8(base).unwrap();
        let with = |from: &str, to: &str| text.replace(from, to).into_bytes();
        let (s, r, _) = replied(&with("Max-Forwards: 70", "Max-Forwards: seventy"));
        assert_eq!((s, r.as_str()), (400, "Bad Max-Forwards header"));
        let (s, r, _) = replied(&with("Max-Forwards: 70", "Max-Forwards: 256"));
        assert_eq!((s, r.as_str()), (400, "Bad Max-Forwards header"));
        let (_, r, _) = replied(&with(
            "Content-Length: 0",
            "Expires: soon\r\nContent-Length: 0",
        ));
        assert_eq!(r, "Bad Expires header");
        let (_, r, _) = replied(&with(
            "CSeq: 1 REGISTER",
            "CSeq: 1 REGISTER\r\nTo: <sip:b@x>",
        ));
        assert_eq!(r, "Duplicate To header");
        let (_, r, _) = replied(&with("Content-Length: 0", "Content-Length: 1"));
        assert_eq!(r, "Content-Length larger than body");
        let (_, r, _) = replied(&with("Call-ID: 1j9FpLxk3uxtm8tn@10.1.1.1", "Call-ID: a b"));
        assert_eq!(r, "Malformed Call-ID header");
        assert_eq!(
            dropped(&with("Call-ID: 1j9FpLxk3uxtm8tn@10.1.1.1\r\n", "")),
            "Missing Call-ID header"
        );
        assert_eq!(
            dropped(&with("Max-Forwards: 70", "Max-Forwards 70")),
            "Malformed header line"
        );
        assert_eq!(
            dropped(&with("Max-Forwards: 70", "Max-Forwards: 7\u{0}0\n0")),
            "Malformed header line"
        );
        let mut latin1 = with("Alice", "Al\u{e9}ce");
        let pos = latin1.windows(2).position(|w| w == "é".as_bytes()).unwrap();
        latin1.splice(pos..pos + 2, [0xe9]);
        assert_eq!(
            dropped(&latin1),
            "Start line or header section is not UTF-8"
        );
        // No Max-Forwards is accepted (RFC 3261 §8.2 does not demand it).
        assert_eq!(
            request(&with("Max-Forwards: 70\r\n", "")).max_forwards(),
            None
        );
    }

    #[test]
    fn size_limit_gives_513_or_drop() {
        let small = Limits {
            max_message_bytes: 100,
        };
        match parse(&crlf(REGISTER), &small) {
            Err(Rejection::Reply {
                status,
                reason,
                response,
                via,
            }) => {
                assert_eq!((status, reason.as_str()), (513, "Message Too Large"));
                assert!(response.starts_with(b"SIP/2.0 513 Message Too Large\r\n"));
                assert_eq!(via.host, "10.1.1.1");
            }
            other => panic!("expected 513, got {other:?}"),
        }
        let junk = vec![b'x'; 200];
        assert_eq!(
            parse(&junk, &small),
            Err(Rejection::Drop {
                reason: "Malformed start line".to_owned()
            })
        );
        let response_bytes = include_bytes!("torture/noreason.sip");
        assert_eq!(
            parse(response_bytes, &small),
            Err(Rejection::Drop {
                reason: "Message Too Large".to_owned()
            })
        );
    }

    #[test]
    fn keepalive_datagrams_and_truncation() {
        assert_eq!(dropped(b"\r\n\r\n"), "Empty message");
        assert_eq!(dropped(b""), "Empty message");
        let text = String::from_utf8(crlf(REGISTER)).unwrap();
        let cut = &text.as_bytes()[..text.len() - 30];
        assert_eq!(dropped(cut), "Missing end of header section");
        // CRLFs before the start line are ignored (RFC 3261 §7.5).
        let mut padded = b"\r\n".to_vec();
        padded.extend_from_slice(text.as_bytes());
        assert_eq!(request(&padded).base.call_id, "1j9FpLxk3uxtm8tn@10.1.1.1");
    }

    #[test]
    fn branch_and_tag_are_fresh() {
        let (a, b) = (new_branch(), new_branch());
        assert!(a.starts_with("z9hG4bK") && a.len() == 23, "{a}");
        assert_ne!(a, b);
        let (t, u) = (new_tag(), new_tag());
        assert_eq!(t.len(), 16);
        assert_ne!(t, u);
    }
}
