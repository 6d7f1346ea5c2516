//! The message model: the base headers taken once at the edge ([`Base`]), and the validated
//! [`Request`], [`Response`] and [`Message`] that [`super::parse`] returns.

use std::net::SocketAddr;

use bytes::Bytes;
use rsip::headers::UntypedHeader;

use super::headers::{all_headers, first_header};
use super::{CSeq, Method, NameAddr, Uri, Via};
use crate::sip::grammar::{list_element_end, Angles};

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
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) raw_uri: String,
    pub(super) headers: rsip::Headers,
    pub(super) body: Bytes,
    pub(super) max_forwards: Option<u32>,
}

impl Request {
    /// The request method (never [`Method::Other`]: [`parse`](super::parse) answers those with 405).
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
    /// (use [`split_list`](super::split_list) for Via, Contact, Route, ...).
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

    /// Max-Forwards, if present (0..=255); a missing header is accepted (see [`parse`](super::parse)).
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
            let rest = &old[list_element_end(old, Angles::QuotesInside).0..];
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
    pub(super) headers: rsip::Headers,
    pub(super) body: Bytes,
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
