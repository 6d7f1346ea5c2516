//! SIP messages: the message model, parsing and validation, the base headers, and builders.
//!
//! Implements RFC 3261 §7 (message format; §7.3.1 header folding; §7.3.3 compact forms), §8.2
//! (UAS request validation), §8.2.6 (building responses), §18.2.1 (the `received` parameter),
//! §18.2.2 (where responses go), §18.3 (datagram framing with Content-Length), §19.1 (SIP and
//! SIPS URIs), §19.3 (tags and branches), §20 (header fields) and the §25 grammar it needs;
//! RFC 3581 §4 (`rport`); the compact forms of RFC 6665 (`o`, `u`) and friends; `pres:`/`im:`
//! URIs (RFC 3859, RFC 3860). It is checked against the RFC 4475 torture messages in `src/sip/torture/`.
//!
//! The header section lives in an `rsip::Headers` container (untyped, one entry per header line,
//! values kept verbatim), and builders serialise header lines through rsip's `Display`. The start
//! line is handled here because rsip 0.4 cannot represent extension methods, `pres:`/`im:` or
//! escaped Request-URIs, and it prints the body lossily as UTF-8.
//!
//! One file per concept, all re-exported here: `method` ([`Method`]), `uri` ([`Uri`]), `via`
//! ([`Via`]), `name_addr` ([`NameAddr`], for From/To/Contact), `cseq` ([`CSeq`]), `headers`
//! (names, compact forms, the rsip container), `base` ([`Base`], [`Request`], [`Response`],
//! [`Message`]), `parse` ([`parse`]), `build` ([`reply`], [`RequestBuilder`]) and `rejection`
//! ([`Limits`], [`ParseError`], [`Rejection`]). The RFC 3261 §25.1 rules they share (token,
//! LWS, quoted-string, generic-param, comma lists) are in [`crate::sip::grammar`].

mod base;
mod build;
mod cseq;
mod error;
mod headers;
mod method;
mod name_addr;
mod parse;
mod raw;
mod rejection;
mod uri;
mod via;

pub use base::{Base, Message, Request, Response};
pub use build::{new_branch, new_tag, reply, RequestBuilder, ResponseBuilder};
pub use cseq::CSeq;
pub use error::{Limits, ParseError};
pub use method::Method;
pub use name_addr::NameAddr;
pub use parse::parse;
pub use rejection::Rejection;
pub use uri::Uri;
pub use via::Via;

use crate::sip::grammar::{list_elements, trim_wsp, Angles};

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

/// Splits a comma-separated header value (Via, Contact, Route, Allow, ...) into trimmed
/// elements, ignoring commas inside quoted strings and `<...>`; empty elements are kept so
/// callers can refuse them.
pub fn split_list(value: &str) -> Vec<&str> {
    list_elements(value, Angles::QuotesInside)
        .map(|(element, _)| trim_wsp(element))
        .collect()
}

#[cfg(test)]
mod tests;
