//! How a refused message is answered: the [`Rejection`] that is either dropped or answered
//! (RFC 3261 §8.2: 400 naming the fault, 405 with Allow, 416, 505, 513), built from the
//! request's own Via, From, To, Call-ID and CSeq (§8.2.6).

use bytes::{BufMut, Bytes, BytesMut};

use super::build::new_tag;
use super::error::ParseError;
use super::name_addr::parse_name_addr;
use super::raw::{value_at, RawMessage, Scan};
use super::via::{parse_via, Via};
use super::{ALLOW, SIP_VERSION};
use crate::sip::grammar::{list_element_end, Angles};

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

/// Turns a request error into a reply when the request carries what a response needs (a
/// parseable top Via of any version, and From, To, Call-ID, CSeq to copy), else into a drop.
pub(super) fn reject(
    raw: &RawMessage<'_>,
    scan: &Scan,
    status: u16,
    error: &ParseError,
) -> Rejection {
    let reason = error.to_string();
    let via = value_at(raw, scan.via)
        .and_then(|v| parse_via(&v[..list_element_end(v, Angles::QuotesInside).0], true).ok());
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
