//! Building messages: responses to received requests (RFC 3261 §8.2.6), requests we
//! originate (§8.1.1), fresh branches and tags (§8.1.1.7, §19.3), and the serialiser that
//! writes CRLF-terminated header lines and Content-Length.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;
use rsip::headers::UntypedHeader;

use super::headers::{lookup_name, to_rsip_header};
use super::{Method, Request, BRANCH_COOKIE, DEFAULT_MAX_FORWARDS, SIP_VERSION};

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
