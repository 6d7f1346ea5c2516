//! Framing one message before it is parsed (RFC 3261 §7, §7.3.1 folding, §7.5 leading
//! CRLFs): the start line, the header lines unfolded and trimmed with canonical names, the
//! body bytes, and where the single-valued base headers are.

use std::borrow::Cow;

use super::error::ParseError;
use super::headers::canonical;
use crate::sip::grammar::{is_token, is_wsp};

/// One header line, unfolded and trimmed.
pub(super) struct RawHeader<'a> {
    /// Canonical name if known, else the name as written.
    pub(super) name: &'a str,
    /// The value, borrowed unless unfolding had to join lines.
    pub(super) value: Cow<'a, str>,
}

/// A framed message: start line, header lines, body bytes (all borrowed from the input).
pub(super) struct RawMessage<'a> {
    pub(super) start_line: &'a str,
    pub(super) headers: Vec<RawHeader<'a>>,
    pub(super) body: &'a [u8],
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Frames the message: start line, unfolded header lines (canonical names), body bytes.
pub(super) fn split_message(bytes: &[u8]) -> Result<RawMessage<'_>, ParseError> {
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
        if line.starts_with(is_wsp) {
            // RFC 3261 §7.3.1: a fold (CRLF + white space) is equivalent to one SP.
            let last = headers.last_mut().ok_or(ParseError::MalformedHeaderLine)?;
            let value = last.value.to_mut();
            value.push(' ');
            value.push_str(line.trim_start_matches(is_wsp));
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(ParseError::MalformedHeaderLine)?;
        let name = name.trim_end_matches(is_wsp);
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
            Cow::Borrowed(v) => *v = v.trim_matches(is_wsp),
            Cow::Owned(v) => {
                let trimmed = v.trim_matches(is_wsp);
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
pub(super) struct Scan {
    pub(super) via: Option<usize>,
    pub(super) from: Option<usize>,
    pub(super) to: Option<usize>,
    pub(super) call_id: Option<usize>,
    pub(super) cseq: Option<usize>,
    pub(super) max_forwards: Option<usize>,
    pub(super) content_length: Option<usize>,
    pub(super) expires: Option<usize>,
    pub(super) duplicate: Option<&'static str>,
}

pub(super) fn scan_headers(headers: &[RawHeader<'_>]) -> Scan {
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

pub(super) fn value_at<'a>(raw: &'a RawMessage<'_>, index: Option<usize>) -> Option<&'a str> {
    raw.headers.get(index?).map(|h| h.value.as_ref())
}
