//! Parsing and validating one message (RFC 3261 §7, §7.3.1 folding, §7.5 leading CRLFs,
//! §8.2 UAS checks, §18.3 datagram framing with Content-Length).

use bytes::Bytes;

use super::headers::to_rsip_header;
use super::name_addr::parse_name_addr;
use super::raw::{scan_headers, split_message, value_at, RawHeader, RawMessage, Scan};
use super::rejection::reject;
use super::{
    split_list, Base, CSeq, Limits, Message, Method, ParseError, Rejection, Request, Response, Uri,
    Via, MAX_MAX_FORWARDS, SIP_VERSION,
};
use crate::sip::grammar::{is_token, list_element_end, parse_digits, Angles};

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
    let via = Via::parse(&via_value[..list_element_end(via_value, Angles::QuotesInside).0])?;
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
