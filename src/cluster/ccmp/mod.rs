//! CCMP documents that nodes exchange over SIP, and the HMAC signature of their bodies.
//!
//! The control plane of DESIGN.md §5 carries honest RFC 6503 (Centralized Conferencing
//! Manipulation Protocol) documents: the `<ccmpRequest>` envelope of RFC 6503 §5.1 and the
//! `<ccmpResponse>` envelope of §5.2, each with the `extendedRequest` / `extendedResponse` of
//! §5.3.11 (an `extensionName` followed by elements from another namespace, here
//! [`LOAD_NS`]), and the response codes of §5.4 ([`OK`], [`BAD_REQUEST`], [`FORBIDDEN`],
//! [`CONFLICT`]). The `confUserID` is the `xcon-userid:` URI of the XCON data model
//! (RFC 6501), built from a node id by [`conf_user_id`].
//!
//! RFC 6503's schema has no `elementFormDefault`, so its local elements are unqualified:
//! the inner `<ccmpRequest>`, `<confUserID>`, `<response-code>`, `<response-string>` and
//! `<extensionName>` are in no namespace, while the global `<ccmp:ccmpRequest>` root and
//! `<ccmp:extendedRequest>` (referenced with `ref=`) are in [`CCMP_NS`]. We write exactly
//! that, and accept every inner CCMP element both qualified and unqualified.
//!
//! The payload elements (DESIGN.md §5, from the CCMP load-control paper plus our own
//! `user-update`, `migrate-user`, `drain` and `svr-info`) are modelled by [`Element`]. The
//! parser is tolerant of foreign-namespace elements anywhere (RFC 6503 extends with
//! `xs:any namespace="##other"`) and ignores the optional RFC 6503 elements we do not use
//! (`subject`, `confObjID`, `operation`, `version`, ...); it refuses a `DOCTYPE` (no entity
//! declarations, so no XML bombs), bodies above [`MAX_BODY_BYTES`] or nested deeper than
//! [`MAX_DEPTH`], an unknown `extensionName`, and any element of [`LOAD_NS`] it does not know.
//! Bodies are parsed into the crate's one tree ([`crate::xml::parse_document`]) and read by
//! the typed readers of `read.rs`; `write.rs` writes them with the one escaper.
//! The `xsi:type` attribute is written as RFC 6503 requires and not checked when reading.
//! Element text is trimmed when read (so pretty-printed documents are accepted); attribute
//! values other than numbers are kept as written.
//!
//! DESIGN.md §5 also requires every request to carry an HMAC-SHA256 of its body under the
//! cluster secret: [`sign`] computes the [`SIGNATURE_HEADER`] value and [`verify`] checks it in
//! constant time. Pure code: no I/O.

mod error;
mod payload;
mod read;
mod request;
mod response;
mod signature;
mod write;

#[cfg(test)]
mod tests;

pub use error::CcmpError;
pub use payload::{Element, LoadLevel, Protocol, SvrInfo, SysUser};
pub use request::CcmpRequest;
pub use response::CcmpResponse;
pub use signature::{sign, verify, SignatureError};

/// The CCMP namespace (registered by RFC 6503), bound to the `ccmp` prefix in what we write.
pub const CCMP_NS: &str = "urn:ietf:params:xml:ns:xcon-ccmp";

/// Our namespace for the load-control payload elements (DESIGN.md §5), bound to `load`.
pub const LOAD_NS: &str = "urn:rendezvous:params:xml:ns:load";

/// The media type of a CCMP body on INVITE, 200 OK and INFO (DESIGN.md §5).
pub const CONTENT_TYPE: &str = "application/extd-ccmp";

/// The `Info-Package` of the in-dialog INFO requests that carry CCMP bodies (DESIGN.md §5).
pub const INFO_PACKAGE: &str = "extd-ccmp";

/// The SIP header that carries [`sign`]'s HMAC of the body (DESIGN.md §5).
pub const SIGNATURE_HEADER: &str = "Ccmp-Signature";

/// Largest body [`CcmpRequest::parse`] and [`CcmpResponse::parse`] accept, so that a hostile
/// peer cannot make us build an arbitrarily large tree.
pub const MAX_BODY_BYTES: usize = 65536;

/// Deepest element nesting the parser accepts (the root is depth 0; our own documents go
/// five levels deep, foreign extensions may add a few).
pub const MAX_DEPTH: usize = 16;

/// `response-code` 200, `success` (RFC 6503 §5.4): the request was carried out.
pub const OK: u16 = 200;
/// `response-code` 400, `badRequest` (RFC 6503 §5.4): the body could not be understood.
pub const BAD_REQUEST: u16 = 400;
/// `response-code` 403, `forbidden` (RFC 6503 §5.4): refused, e.g. a bad cluster secret.
pub const FORBIDDEN: u16 = 403;
/// `response-code` 409, `updateFailed` (RFC 6503 §5.4): the request conflicts with the
/// current state (e.g. a user already reserved elsewhere, a stale version).
pub const CONFLICT: u16 = 409;

/// The extension names (`extensionName`) we accept; DESIGN.md §5 lists their payloads.
pub const EXTENSIONS: &[&str] = &[
    "pressvr-load",
    "pres-sys-users",
    "redirection-usr-addr",
    "svr-pool",
    "actv-svr-nums",
    "max-load",
    "min-load",
    "user-update",
    "migrate-user",
    "drain",
];

/// The XML Schema instance namespace, for `xsi:type`.
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// The RFC 6503 §5.4 default `response-string` of the codes we use, `None` for others.
pub fn default_reason(code: u16) -> Option<&'static str> {
    match code {
        OK => Some("success"),
        BAD_REQUEST => Some("badRequest"),
        FORBIDDEN => Some("forbidden"),
        CONFLICT => Some("updateFailed"),
        _ => None,
    }
}

/// The `confUserID` of a node: `xcon-userid:<node_id>@<domain>`.
pub fn conf_user_id(node_id: &str, domain: &str) -> String {
    format!("xcon-userid:{node_id}@{domain}")
}

/// The node id in a `confUserID` built by [`conf_user_id`], or `None` when it has another
/// form (no `xcon-userid:` scheme, no `@`, or an empty node id).
pub fn node_of(conf_user_id: &str) -> Option<&str> {
    let user = conf_user_id.trim().strip_prefix("xcon-userid:")?;
    let (node, _domain) = user.rsplit_once('@')?;
    (!node.is_empty()).then_some(node)
}
