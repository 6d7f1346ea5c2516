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
//! The `xsi:type` attribute is written as RFC 6503 requires and not checked when reading.
//! Element text is trimmed when read (so pretty-printed documents are accepted); attribute
//! values other than numbers are kept as written.
//!
//! DESIGN.md §5 also requires every request to carry an HMAC-SHA256 of its body under the
//! cluster secret: [`sign`] computes the [`SIGNATURE_HEADER`] value and [`verify`] checks it in
//! constant time. Pure code: no I/O.

use super::xml::{escape_attr, escape_text};
use std::fmt::Write as _;
use std::str::FromStr;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use quick_xml::escape::EscapeError;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::{NamespaceResolver, ResolveResult};
use quick_xml::reader::NsReader;
use quick_xml::XmlVersion;
use sha2::Sha256;

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

/// The scheme that prefixes the hex HMAC in the [`SIGNATURE_HEADER`] value.
const SIGNATURE_SCHEME: &str = "hmac-sha256";

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

/// The protocol a user is connected with, as written in `protocol` (`xmpp` / `sip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// An XMPP client (text `xmpp`).
    Xmpp,
    /// A SIP user agent (text `sip`).
    Sip,
}

impl Protocol {
    /// The wire text: `xmpp` or `sip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Xmpp => "xmpp",
            Protocol::Sip => "sip",
        }
    }

    /// Reads the wire text, ignoring ASCII case and surrounding whitespace.
    pub fn from_name(text: &str) -> Option<Protocol> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("xmpp") {
            Some(Protocol::Xmpp)
        } else if text.eq_ignore_ascii_case("sip") {
            Some(Protocol::Sip)
        } else {
            None
        }
    }
}

/// One `<load:curr-load-level>` of a `pressvr-load` report: a server's load (DESIGN.md §4)
/// and the figures it was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadLevel {
    /// The server (`svr-id` attribute).
    pub svr_id: String,
    /// The load level (element text).
    pub level: u64,
    /// Users homed on the server (`users` attribute; 0 when absent).
    pub users: u64,
    /// Registered presence resources (`resources` attribute; 0 when absent).
    pub resources: u64,
    /// The reporter's counter, so that a late report cannot overwrite a newer one
    /// (`version` attribute; 0 when absent).
    pub version: u64,
}

/// One `<load:user>` of `pres-sys-users`: a user homed on the reporting server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysUser {
    /// The user's address (`id` attribute, e.g. `alice@example.com`).
    pub user: String,
    /// How the user is connected (`protocol` attribute).
    pub protocol: Protocol,
    /// The user's presence resources (`resources` attribute; 0 when absent).
    pub resources: u32,
}

/// A `<load:svr-info>`: the addresses a joining node announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvrInfo {
    /// The node id (`svr-id` attribute).
    pub svr_id: String,
    /// Its SIP URI (`sip` attribute, e.g. `sip:w1@10.0.0.2:5060`).
    pub sip: String,
    /// Its XMPP client address, `host:port` (`xmpp` attribute).
    pub xmpp: String,
    /// Its admin HTTP address, `host:port` (`admin` attribute), if it serves one.
    pub admin: Option<String>,
}

/// One payload element of an `extendedRequest` / `extendedResponse`, in [`LOAD_NS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    /// `<load:pressvr-load>` with one `<load:curr-load-level>` per server.
    PressvrLoad(Vec<LoadLevel>),
    /// `<load:pres-sys-users svr-id=".." full="..">`: the users of a server, with
    /// `<load:user>` for present users and `<load:gone id=".."/>` for departed ones.
    PresSysUsers {
        /// The server (`svr-id` attribute).
        svr_id: String,
        /// `full` attribute: `true` when `present` is the complete list (absent = `true`,
        /// the paper's meaning), `false` for a change since the last report.
        full: bool,
        /// The `<load:user>` children.
        present: Vec<SysUser>,
        /// The `id` of each `<load:gone>` child.
        gone: Vec<String>,
    },
    /// `<load:redirection-usr-addr>`: reserve a user on the receiving server before the
    /// primary redirects the client there (DESIGN.md §4, two-phase placement).
    RedirectionUsrAddr {
        /// `<load:user-addr>`: the user's address.
        user: String,
        /// `<load:protocol>`: how the user connects.
        protocol: Protocol,
        /// `<load:resource-number>` (0 when absent).
        resources: u32,
        /// `<load:user-record>`: the user's stored record, base64 on the wire.
        record: Option<Vec<u8>>,
        /// `<load:moved-from>` (ours): the `svr-id` the user moves away from (DESIGN.md §7),
        /// which hands over what changed there after `record` was taken; absent for a
        /// placement.
        moved_from: Option<String>,
    },
    /// `<load:svr-pool>` with one `<load:svr-uri>` per candidate server.
    SvrPool(Vec<String>),
    /// `<load:actv-svr-nums>`: the number of active servers.
    ActvSvrNums(u32),
    /// `<load:max-load>`: the load a server may reach.
    MaxLoad(u64),
    /// `<load:min-load>`: the mean load under which the cluster scales in.
    MinLoad(u64),
    /// `<load:user-update>`: write-through of a user's record to the primary (DESIGN.md §3).
    UserUpdate {
        /// `<load:user-addr>`: the user's address.
        user: String,
        /// `<load:user-record>`: the record, base64 on the wire.
        record: Vec<u8>,
    },
    /// `<load:migrate-user>`: move a user to another server (DESIGN.md §7).
    MigrateUser {
        /// `<load:user-addr>`: the user's address.
        user: String,
        /// `<load:svr-id>`: the new home.
        svr_id: String,
    },
    /// `<load:drain svr-id=".."/>`: empty a server before it leaves (DESIGN.md §7).
    Drain {
        /// The server to drain (`svr-id` attribute).
        svr_id: String,
    },
    /// `<load:svr-info .../>`: a joining node's addresses.
    SvrInfo(SvrInfo),
}

impl Element {
    /// The element's local name in [`LOAD_NS`] (e.g. `pressvr-load`).
    pub fn name(&self) -> &'static str {
        match self {
            Element::PressvrLoad(_) => "pressvr-load",
            Element::PresSysUsers { .. } => "pres-sys-users",
            Element::RedirectionUsrAddr { .. } => "redirection-usr-addr",
            Element::SvrPool(_) => "svr-pool",
            Element::ActvSvrNums(_) => "actv-svr-nums",
            Element::MaxLoad(_) => "max-load",
            Element::MinLoad(_) => "min-load",
            Element::UserUpdate { .. } => "user-update",
            Element::MigrateUser { .. } => "migrate-user",
            Element::Drain { .. } => "drain",
            Element::SvrInfo(_) => "svr-info",
        }
    }
}

/// A CCMP request (RFC 6503 §5.1) of type `ccmp-extended-request-message-type` (§5.3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcmpRequest {
    /// `<confUserID>`: the sender, `xcon-userid:<node>@<domain>` (see [`conf_user_id`]).
    pub conf_user_id: String,
    /// `<extensionName>`: one of [`EXTENSIONS`].
    pub extension: String,
    /// The payload elements, in document order.
    pub elements: Vec<Element>,
}

/// A CCMP response (RFC 6503 §5.2) of type `ccmp-extended-response-message-type` (§5.3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcmpResponse {
    /// `<confUserID>`: the responder, `xcon-userid:<node>@<domain>`.
    pub conf_user_id: String,
    /// `<response-code>` (RFC 6503 §5.4), e.g. [`OK`].
    pub code: u16,
    /// `<response-string>`, if any.
    pub reason: Option<String>,
    /// `<extensionName>`: the request's extension; may be empty in an error response to a
    /// request that could not be read.
    pub extension: String,
    /// The payload elements, in document order.
    pub elements: Vec<Element>,
}

/// Why a CCMP body was refused; each message names the element or construct at fault.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum CcmpError {
    /// The body is above [`MAX_BODY_BYTES`].
    #[error("CCMP body of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the body in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not UTF-8 (the only encoding we accept).
    #[error("CCMP body is not valid UTF-8")]
    NotUtf8,
    /// The body is not well-formed XML (or uses an entity other than the predefined ones).
    #[error("malformed CCMP XML: {0}")]
    Xml(String),
    /// The body carries a document type declaration, refused to rule out entity expansion.
    #[error("<!DOCTYPE> is not allowed in a CCMP body")]
    Doctype,
    /// Elements are nested deeper than [`MAX_DEPTH`].
    #[error("<{element}> is nested deeper than {max} levels")]
    TooDeep {
        /// The element (qualified name) that went over the limit.
        element: String,
        /// The limit.
        max: usize,
    },
    /// The root element is not the expected one in [`CCMP_NS`].
    #[error("root element <{name}> in namespace '{ns}' is not <{expected}> in urn:ietf:params:xml:ns:xcon-ccmp")]
    WrongRoot {
        /// Local name of the root element.
        name: String,
        /// Its namespace (`""` when none).
        ns: String,
        /// The expected local name (`ccmpRequest` or `ccmpResponse`).
        expected: &'static str,
    },
    /// There is no (or an empty) `<confUserID>`.
    #[error("<confUserID> is missing or empty")]
    MissingConfUserId,
    /// There is no (or an empty) `<extensionName>` in the extended request or response.
    #[error("<extensionName> is missing or empty")]
    MissingExtensionName,
    /// An `extensionName` not in [`EXTENSIONS`], or an element of [`LOAD_NS`] we do not know.
    #[error("unknown CCMP extension or load element '{0}'")]
    UnknownExtension(String),
    /// A required child element is absent.
    #[error("<{element}> is missing from <{parent}>")]
    MissingElement {
        /// Local name of the missing element.
        element: &'static str,
        /// Local name of the element that should contain it.
        parent: &'static str,
    },
    /// A child element that may appear once appears twice.
    #[error("<{element}> appears more than once in <{parent}>")]
    Duplicate {
        /// Local name of the repeated element.
        element: &'static str,
        /// Local name of its parent.
        parent: &'static str,
    },
    /// An element's text is not a valid value (a number, a protocol, base64, an address).
    #[error("<{element}> has an invalid value '{value}'")]
    BadValue {
        /// The element (qualified name as written).
        element: String,
        /// The offending text (its first 64 characters).
        value: String,
    },
    /// A required attribute is absent.
    #[error("<{element}> has no {attribute} attribute")]
    MissingAttribute {
        /// The element (qualified name as written).
        element: String,
        /// The attribute's name.
        attribute: &'static str,
    },
    /// An attribute's value is invalid (not a number, an unknown protocol, empty).
    #[error("attribute {attribute} of <{element}> has an invalid value '{value}'")]
    BadAttribute {
        /// The element (qualified name as written).
        element: String,
        /// The attribute's name.
        attribute: &'static str,
        /// The offending value (its first 64 characters).
        value: String,
    },
}

impl CcmpError {
    /// The `response-code` to answer a body refused with this error: always
    /// [`BAD_REQUEST`] (RFC 6503 §5.4 `badRequest`), since the fault is in the body.
    pub fn response_code(&self) -> u16 {
        BAD_REQUEST
    }
}

/// Why a body's [`SIGNATURE_HEADER`] was refused (answer with [`FORBIDDEN`], DESIGN.md §5).
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The request has no signature header.
    #[error("the Ccmp-Signature header is missing")]
    Missing,
    /// The header is not `hmac-sha256=` followed by 64 hex digits.
    #[error("the Ccmp-Signature header is not hmac-sha256=<64 hex digits>")]
    Malformed,
    /// The HMAC does not match the body under our secret.
    #[error("the Ccmp-Signature does not match the body")]
    Mismatch,
}

impl SignatureError {
    /// The `response-code` to answer with: [`FORBIDDEN`] (a node without the secret).
    pub fn response_code(&self) -> u16 {
        FORBIDDEN
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

/// The [`SIGNATURE_HEADER`] value for `body`: `hmac-sha256=<lowercase hex>` of the
/// HMAC-SHA256 of the body under the cluster `secret` (an empty secret is still a key).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut out = String::with_capacity(SIGNATURE_SCHEME.len() + 1 + 64);
    out.push_str(SIGNATURE_SCHEME);
    out.push('=');
    if let Some(mut mac) = new_mac(secret) {
        mac.update(body);
        for byte in mac.finalize().into_bytes() {
            // Writing to a String cannot fail.
            let _ = write!(out, "{byte:02x}");
        }
    }
    out
}

/// Checks the [`SIGNATURE_HEADER`] value `header` against `body` under `secret`; the
/// comparison takes constant time. The scheme is matched without regard to ASCII case and
/// the hex digits may be of either case.
pub fn verify(secret: &str, body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let (scheme, hex) = header.split_once('=').ok_or(SignatureError::Malformed)?;
    if !scheme.trim().eq_ignore_ascii_case(SIGNATURE_SCHEME) {
        return Err(SignatureError::Malformed);
    }
    let tag = decode_hex(hex.trim()).ok_or(SignatureError::Malformed)?;
    if tag.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let mut mac = new_mac(secret).ok_or(SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&tag).map_err(|_| SignatureError::Mismatch)
}

/// HMAC-SHA256 keyed with `secret`. HMAC accepts keys of every length, so this is never
/// `None`; if it were, [`sign`] would produce a tag that never verifies (fail closed).
fn new_mac(secret: &str) -> Option<Hmac<Sha256>> {
    <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).ok()
}

/// Decodes hex digits of either case; `None` on an odd length or a non-hex character.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let digits = hex.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let value = |d: u8| -> Option<u8> {
        match d {
            b'0'..=b'9' => Some(d - b'0'),
            b'a'..=b'f' => Some(d - b'a' + 10),
            b'A'..=b'F' => Some(d - b'A' + 10),
            _ => None,
        }
    };
    digits
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some(value(*hi)? << 4 | value(*lo)?),
            _ => None,
        })
        .collect()
}

impl CcmpRequest {
    /// A request from `conf_user_id` for `extension` carrying `elements`.
    pub fn new(
        conf_user_id: impl Into<String>,
        extension: impl Into<String>,
        elements: Vec<Element>,
    ) -> CcmpRequest {
        CcmpRequest {
            conf_user_id: conf_user_id.into(),
            extension: extension.into(),
            elements,
        }
    }

    /// Serialises the request: an XML declaration, then `<ccmp:ccmpRequest>` with the inner
    /// unqualified `<ccmpRequest xsi:type="ccmp:ccmp-extended-request-message-type">`.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(512 + 96 * self.elements.len());
        write_open("ccmpRequest", "request", &mut out);
        write_conf_user_id(&self.conf_user_id, &mut out);
        write_extended("extendedRequest", &self.extension, &self.elements, &mut out);
        write_close("ccmpRequest", &mut out);
        out
    }

    /// Parses a request body of at most [`MAX_BODY_BYTES`].
    pub fn parse(body: &[u8]) -> Result<CcmpRequest, CcmpError> {
        let root = parse_body(body, "ccmpRequest")?;
        let inner = single(&root, is_ccmp, "ccmpRequest", "ccmpRequest")?.ok_or(
            CcmpError::MissingElement {
                element: "ccmpRequest",
                parent: "ccmpRequest",
            },
        )?;
        let conf_user_id = read_conf_user_id(inner, "ccmpRequest")?;
        let ext = single(inner, is_ccmp, "extendedRequest", "ccmpRequest")?.ok_or(
            CcmpError::MissingElement {
                element: "extendedRequest",
                parent: "ccmpRequest",
            },
        )?;
        let extension =
            read_extension_name(ext, "extendedRequest")?.ok_or(CcmpError::MissingExtensionName)?;
        let elements = read_elements(ext)?;
        Ok(CcmpRequest {
            conf_user_id,
            extension,
            elements,
        })
    }
}

impl CcmpResponse {
    /// A `200 success` response from `conf_user_id` for `extension` carrying `elements`.
    pub fn ok(
        conf_user_id: impl Into<String>,
        extension: impl Into<String>,
        elements: Vec<Element>,
    ) -> CcmpResponse {
        CcmpResponse {
            conf_user_id: conf_user_id.into(),
            code: OK,
            reason: default_reason(OK).map(str::to_owned),
            extension: extension.into(),
            elements,
        }
    }

    /// An error response (e.g. [`BAD_REQUEST`], [`FORBIDDEN`], [`CONFLICT`]) with the
    /// `response-string` `reason` and no payload.
    pub fn error(
        conf_user_id: impl Into<String>,
        extension: impl Into<String>,
        code: u16,
        reason: impl Into<String>,
    ) -> CcmpResponse {
        CcmpResponse {
            conf_user_id: conf_user_id.into(),
            code,
            reason: Some(reason.into()),
            extension: extension.into(),
            elements: Vec::new(),
        }
    }

    /// True for a 2xx `response-code`.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Serialises the response: an XML declaration, then `<ccmp:ccmpResponse>` with the inner
    /// unqualified `<ccmpResponse xsi:type="ccmp:ccmp-extended-response-message-type">`.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(640 + 96 * self.elements.len());
        write_open("ccmpResponse", "response", &mut out);
        write_conf_user_id(&self.conf_user_id, &mut out);
        // Writing to a String cannot fail.
        let _ = write!(out, "<response-code>{:03}</response-code>", self.code);
        if let Some(reason) = &self.reason {
            out.push_str("<response-string>");
            escape_text(reason, &mut out);
            out.push_str("</response-string>");
        }
        write_extended(
            "extendedResponse",
            &self.extension,
            &self.elements,
            &mut out,
        );
        write_close("ccmpResponse", &mut out);
        out
    }

    /// Parses a response body of at most [`MAX_BODY_BYTES`]. A non-2xx response may lack
    /// `extendedResponse` or have an empty `extensionName` (the responder could not read
    /// the request); its `extension` is then empty.
    pub fn parse(body: &[u8]) -> Result<CcmpResponse, CcmpError> {
        let root = parse_body(body, "ccmpResponse")?;
        let inner = single(&root, is_ccmp, "ccmpResponse", "ccmpResponse")?.ok_or(
            CcmpError::MissingElement {
                element: "ccmpResponse",
                parent: "ccmpResponse",
            },
        )?;
        let conf_user_id = read_conf_user_id(inner, "ccmpResponse")?;
        let code_el = single(inner, is_ccmp, "response-code", "ccmpResponse")?.ok_or(
            CcmpError::MissingElement {
                element: "response-code",
                parent: "ccmpResponse",
            },
        )?;
        let code_text = code_el.text();
        let code_text = code_text.trim();
        // RFC 6503 response-codeType: a positiveInteger of exactly three digits.
        let code = match code_text.parse::<u16>() {
            Ok(c) if code_text.len() == 3 && (100..=999).contains(&c) => c,
            _ => return Err(bad_value(code_el, code_text)),
        };
        let reason = single(inner, is_ccmp, "response-string", "ccmpResponse")?
            .map(|r| r.text().trim().to_owned());
        let success = (200..300).contains(&code);
        let ext = single(inner, is_ccmp, "extendedResponse", "ccmpResponse")?;
        let (extension, elements) = match ext {
            Some(ext) => match read_extension_name(ext, "extendedResponse")? {
                Some(name) => (name, read_elements(ext)?),
                None if success => return Err(CcmpError::MissingExtensionName),
                None => (String::new(), read_elements(ext)?),
            },
            None if success => {
                return Err(CcmpError::MissingElement {
                    element: "extendedResponse",
                    parent: "ccmpResponse",
                })
            }
            None => (String::new(), Vec::new()),
        };
        Ok(CcmpResponse {
            conf_user_id,
            code,
            reason,
            extension,
            elements,
        })
    }
}

// ----- serialisation -------------------------------------------------------------

/// Writes the XML declaration, the root `<ccmp:{name}>` with its namespace declarations and
/// the inner `<{name}>` with its `xsi:type` (`kind` is `request` or `response`).
fn write_open(name: &str, kind: &str, out: &mut String) {
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ccmp:");
    out.push_str(name);
    out.push_str(" xmlns:ccmp=\"");
    out.push_str(CCMP_NS);
    out.push_str("\" xmlns:xsi=\"");
    out.push_str(XSI_NS);
    out.push_str("\" xmlns:load=\"");
    out.push_str(LOAD_NS);
    out.push_str("\"><");
    out.push_str(name);
    out.push_str(" xsi:type=\"ccmp:ccmp-extended-");
    out.push_str(kind);
    out.push_str("-message-type\">");
}

/// Closes the inner and the root element opened by [`write_open`].
fn write_close(name: &str, out: &mut String) {
    out.push_str("</");
    out.push_str(name);
    out.push_str("></ccmp:");
    out.push_str(name);
    out.push('>');
}

/// Writes `<confUserID>`.
fn write_conf_user_id(conf_user_id: &str, out: &mut String) {
    out.push_str("<confUserID>");
    escape_text(conf_user_id, out);
    out.push_str("</confUserID>");
}

/// Writes `<ccmp:{tag}>` (a global element of the RFC 6503 schema, hence qualified) with its
/// unqualified `<extensionName>` and the payload elements.
fn write_extended(tag: &str, extension: &str, elements: &[Element], out: &mut String) {
    out.push_str("<ccmp:");
    out.push_str(tag);
    out.push_str("><extensionName>");
    escape_text(extension, out);
    out.push_str("</extensionName>");
    for element in elements {
        write_element(element, out);
    }
    out.push_str("</ccmp:");
    out.push_str(tag);
    out.push('>');
}

/// Writes one payload element in the `load` prefix.
fn write_element(element: &Element, out: &mut String) {
    let name = element.name();
    match element {
        Element::PressvrLoad(levels) => {
            open_tag(name, out);
            for l in levels {
                out.push_str("<load:curr-load-level svr-id=\"");
                escape_attr(&l.svr_id, out);
                // Writing to a String cannot fail.
                let _ = write!(
                    out,
                    "\" users=\"{}\" resources=\"{}\" version=\"{}\">{}</load:curr-load-level>",
                    l.users, l.resources, l.version, l.level
                );
            }
            close_tag(name, out);
        }
        Element::PresSysUsers {
            svr_id,
            full,
            present,
            gone,
        } => {
            out.push_str("<load:pres-sys-users svr-id=\"");
            escape_attr(svr_id, out);
            out.push_str(if *full {
                "\" full=\"true\">"
            } else {
                "\" full=\"false\">"
            });
            for u in present {
                out.push_str("<load:user id=\"");
                escape_attr(&u.user, out);
                let _ = write!(
                    out,
                    "\" protocol=\"{}\" resources=\"{}\"/>",
                    u.protocol.as_str(),
                    u.resources
                );
            }
            for g in gone {
                out.push_str("<load:gone id=\"");
                escape_attr(g, out);
                out.push_str("\"/>");
            }
            close_tag(name, out);
        }
        Element::RedirectionUsrAddr {
            user,
            protocol,
            resources,
            record,
            moved_from,
        } => {
            open_tag(name, out);
            text_element("user-addr", user, out);
            text_element("protocol", protocol.as_str(), out);
            text_element("resource-number", &resources.to_string(), out);
            if let Some(record) = record {
                record_element(record, out);
            }
            if let Some(from) = moved_from {
                text_element("moved-from", from, out);
            }
            close_tag(name, out);
        }
        Element::SvrPool(uris) => {
            open_tag(name, out);
            for uri in uris {
                text_element("svr-uri", uri, out);
            }
            close_tag(name, out);
        }
        Element::ActvSvrNums(n) => text_element(name, &n.to_string(), out),
        Element::MaxLoad(n) | Element::MinLoad(n) => text_element(name, &n.to_string(), out),
        Element::UserUpdate { user, record } => {
            open_tag(name, out);
            text_element("user-addr", user, out);
            record_element(record, out);
            close_tag(name, out);
        }
        Element::MigrateUser { user, svr_id } => {
            open_tag(name, out);
            text_element("user-addr", user, out);
            text_element("svr-id", svr_id, out);
            close_tag(name, out);
        }
        Element::Drain { svr_id } => {
            out.push_str("<load:drain svr-id=\"");
            escape_attr(svr_id, out);
            out.push_str("\"/>");
        }
        Element::SvrInfo(info) => {
            out.push_str("<load:svr-info svr-id=\"");
            escape_attr(&info.svr_id, out);
            out.push_str("\" sip=\"");
            escape_attr(&info.sip, out);
            out.push_str("\" xmpp=\"");
            escape_attr(&info.xmpp, out);
            out.push('"');
            if let Some(admin) = &info.admin {
                out.push_str(" admin=\"");
                escape_attr(admin, out);
                out.push('"');
            }
            out.push_str("/>");
        }
    }
}

/// Writes `<load:{name}>`.
fn open_tag(name: &str, out: &mut String) {
    out.push_str("<load:");
    out.push_str(name);
    out.push('>');
}

/// Writes `</load:{name}>`.
fn close_tag(name: &str, out: &mut String) {
    out.push_str("</load:");
    out.push_str(name);
    out.push('>');
}

/// Writes `<load:{name}>text</load:{name}>` with the text escaped.
fn text_element(name: &str, text: &str, out: &mut String) {
    open_tag(name, out);
    escape_text(text, out);
    close_tag(name, out);
}

/// Writes `<load:user-record>` with the record in standard base64.
fn record_element(record: &[u8], out: &mut String) {
    open_tag("user-record", out);
    base64::engine::general_purpose::STANDARD.encode_string(record, out);
    close_tag("user-record", out);
}

// ----- parsing: a small namespace-resolved tree ------------------------------------

/// An element as parsed.
struct XElement {
    /// The qualified name as written, for error messages.
    qname: String,
    /// The resolved namespace (`""` when none).
    ns: String,
    /// The local name.
    local: String,
    /// The attributes other than namespace declarations.
    attrs: Vec<XAttr>,
    /// Child elements and text, in order.
    children: Vec<XNode>,
}

/// An attribute with its resolved namespace (`""` for unprefixed attributes).
struct XAttr {
    ns: String,
    local: String,
    value: String,
}

/// A child of an [`XElement`].
enum XNode {
    Element(XElement),
    Text(String),
}

impl XElement {
    /// The value of the unprefixed attribute `local`.
    fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_empty() && a.local == local)
            .map(|a| a.value.as_str())
    }

    /// Concatenation of the direct text children.
    fn text(&self) -> String {
        let mut out = String::new();
        for child in &self.children {
            if let XNode::Text(t) = child {
                out.push_str(t);
            }
        }
        out
    }

    /// The child elements.
    fn elements(&self) -> impl Iterator<Item = &XElement> {
        self.children.iter().filter_map(|c| match c {
            XNode::Element(e) => Some(e),
            XNode::Text(_) => None,
        })
    }

    /// Appends character data, merging it with a preceding text node.
    fn push_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if let Some(XNode::Text(last)) = self.children.last_mut() {
            last.push_str(text);
        } else {
            self.children.push(XNode::Text(text.to_owned()));
        }
    }
}

/// Checks the size and encoding of `body`, parses it and checks that the root is
/// `<{root}>` in [`CCMP_NS`].
fn parse_body(body: &[u8], root: &'static str) -> Result<XElement, CcmpError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(CcmpError::TooLarge {
            size: body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| CcmpError::NotUtf8)?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let el = parse_tree(text)?;
    if el.ns != CCMP_NS || el.local != root {
        return Err(CcmpError::WrongRoot {
            name: el.local,
            ns: el.ns,
            expected: root,
        });
    }
    Ok(el)
}

/// Parses `text` into a tree, resolving namespaces; refuses DOCTYPE, non-predefined
/// entities, illegal characters and nesting deeper than [`MAX_DEPTH`].
fn parse_tree(text: &str) -> Result<XElement, CcmpError> {
    if let Some(c) = text.chars().find(|&c| !is_xml_char(c)) {
        return Err(CcmpError::Xml(format!(
            "illegal character U+{:04X}",
            u32::from(c)
        )));
    }
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<XElement> = Vec::with_capacity(8);
    let mut root: Option<XElement> = None;
    loop {
        let event = reader.read_event().map_err(|e| {
            CcmpError::Xml(match stack.last() {
                Some(top) => format!("{e} in <{}>", top.qname),
                None => e.to_string(),
            })
        })?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                return Err(CcmpError::Xml(format!(
                    "element <{}> after the root element",
                    start.name().0
                )));
            }
            Event::Start(start) => {
                let el = open_element(reader.resolver(), &start, stack.len())?;
                stack.push(el);
            }
            Event::Empty(start) => {
                let el = open_element(reader.resolver(), &start, stack.len())?;
                attach(&mut stack, &mut root, el);
            }
            Event::End(_) => match stack.pop() {
                Some(el) => attach(&mut stack, &mut root, el),
                None => return Err(CcmpError::Xml("unmatched end tag".to_owned())),
            },
            Event::Text(t) => push_text(&mut stack, &t.xml10_content())?,
            Event::CData(c) => push_text(&mut stack, &c.xml10_content())?,
            Event::GeneralRef(r) => {
                let element = stack.last().map_or("", |e| e.qname.as_str()).to_owned();
                let c = resolve_reference(&r, &element)?;
                push_text(&mut stack, c.encode_utf8(&mut [0u8; 4]))?;
            }
            Event::DocType(_) => return Err(CcmpError::Doctype),
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(top) = stack.last() {
        return Err(CcmpError::Xml(format!("<{}> is not closed", top.qname)));
    }
    root.ok_or_else(|| CcmpError::Xml("no root element".to_owned()))
}

/// Attaches a closed element to its parent, or makes it the root.
fn attach(stack: &mut [XElement], root: &mut Option<XElement>, el: XElement) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(XNode::Element(el)),
        None => *root = Some(el),
    }
}

/// Appends text to the open element; outside the root only whitespace is allowed.
fn push_text(stack: &mut [XElement], text: &str) -> Result<(), CcmpError> {
    match stack.last_mut() {
        Some(top) => {
            top.push_text(text);
            Ok(())
        }
        None if text.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) => Ok(()),
        None => Err(CcmpError::Xml("text outside the root element".to_owned())),
    }
}

/// Builds the element for a start tag at nesting `depth`, resolving its name and attributes
/// against the declarations in scope (including its own).
fn open_element(
    resolver: &NamespaceResolver,
    start: &BytesStart<'_>,
    depth: usize,
) -> Result<XElement, CcmpError> {
    let qname = start.name();
    if depth >= MAX_DEPTH {
        return Err(CcmpError::TooDeep {
            element: qname.0.to_owned(),
            max: MAX_DEPTH,
        });
    }
    if qname.prefix().is_some_and(|p| p.is_xmlns()) {
        // XML Namespaces 1.0 §3: no element may use the xmlns prefix.
        return Err(CcmpError::Xml(format!(
            "reserved prefix 'xmlns' on <{}>",
            qname.0
        )));
    }
    let (resolved, local) = resolver.resolve_element(qname);
    let ns = match resolved {
        ResolveResult::Bound(ns) => ns.into_inner().to_owned(),
        ResolveResult::Unbound => String::new(),
        ResolveResult::Unknown(p) => {
            return Err(CcmpError::Xml(format!(
                "undeclared namespace prefix '{p}' on <{}>",
                qname.0
            )));
        }
    };
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr =
            attr.map_err(|e| CcmpError::Xml(format!("malformed attribute in <{}>: {e}", qname.0)))?;
        let key = attr.key;
        if key.as_namespace_binding().is_some() {
            continue;
        }
        let (resolved, attr_local) = resolver.resolve_attribute(key);
        let attr_ns = match resolved {
            ResolveResult::Bound(ns) => ns.into_inner().to_owned(),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(p) => {
                return Err(CcmpError::Xml(format!(
                    "undeclared namespace prefix '{p}' on attribute '{}' of <{}>",
                    key.0, qname.0
                )));
            }
        };
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| match e {
                quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => {
                    CcmpError::Xml(format!(
                        "entity reference &{name}; in <{}> is not allowed",
                        qname.0
                    ))
                }
                e => CcmpError::Xml(format!("attribute '{}' of <{}>: {e}", key.0, qname.0)),
            })?;
        if let Some(c) = value.chars().find(|&c| !is_xml_char(c)) {
            return Err(CcmpError::Xml(format!(
                "illegal character U+{:04X} in attribute '{}' of <{}>",
                u32::from(c),
                key.0,
                qname.0
            )));
        }
        attrs.push(XAttr {
            ns: attr_ns,
            local: attr_local.into_inner().to_owned(),
            value: value.into_owned(),
        });
    }
    Ok(XElement {
        qname: qname.0.to_owned(),
        ns,
        local: local.into_inner().to_owned(),
        attrs,
        children: Vec::new(),
    })
}

/// Resolves `&name;` in character data: the five predefined entities and character
/// references to XML characters only.
fn resolve_reference(r: &BytesRef<'_>, element: &str) -> Result<char, CcmpError> {
    let name: &str = r;
    match name {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ if r.is_char_ref() => match r.resolve_char_ref() {
            Ok(Some(c)) if is_xml_char(c) => Ok(c),
            _ => Err(CcmpError::Xml(format!(
                "invalid character reference &{name}; in <{element}>"
            ))),
        },
        _ => Err(CcmpError::Xml(format!(
            "entity reference &{name}; in <{element}> is not allowed"
        ))),
    }
}

/// XML 1.0 `Char` production.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

// ----- parsing: tree to model ------------------------------------------------------

/// Inner CCMP elements may be unqualified (as the schema says) or qualified.
fn is_ccmp(ns: &str) -> bool {
    ns.is_empty() || ns == CCMP_NS
}

/// Payload elements are in [`LOAD_NS`].
fn is_load(ns: &str) -> bool {
    ns == LOAD_NS
}

/// The child `<{local}>` of `parent` whose namespace satisfies `ns`, if any; an error when
/// there are several.
fn single<'a>(
    parent: &'a XElement,
    ns: fn(&str) -> bool,
    local: &'static str,
    parent_name: &'static str,
) -> Result<Option<&'a XElement>, CcmpError> {
    let mut found = parent.elements().filter(|e| ns(&e.ns) && e.local == local);
    let first = found.next();
    if found.next().is_some() {
        return Err(CcmpError::Duplicate {
            element: local,
            parent: parent_name,
        });
    }
    Ok(first)
}

/// The required child `<load:{local}>` of `parent`.
fn required_load<'a>(
    parent: &'a XElement,
    local: &'static str,
    parent_name: &'static str,
) -> Result<&'a XElement, CcmpError> {
    single(parent, is_load, local, parent_name)?.ok_or(CcmpError::MissingElement {
        element: local,
        parent: parent_name,
    })
}

/// Reads the non-empty, trimmed `<confUserID>`.
fn read_conf_user_id(inner: &XElement, parent: &'static str) -> Result<String, CcmpError> {
    single(inner, is_ccmp, "confUserID", parent)?
        .map(|e| e.text().trim().to_owned())
        .filter(|id| !id.is_empty())
        .ok_or(CcmpError::MissingConfUserId)
}

/// Reads `<extensionName>`: `None` when absent or empty, an error when not in [`EXTENSIONS`].
fn read_extension_name(ext: &XElement, parent: &'static str) -> Result<Option<String>, CcmpError> {
    let Some(name) = single(ext, is_ccmp, "extensionName", parent)? else {
        return Ok(None);
    };
    let name = name.text().trim().to_owned();
    if name.is_empty() {
        return Ok(None);
    }
    if !EXTENSIONS.contains(&name.as_str()) {
        return Err(CcmpError::UnknownExtension(name));
    }
    Ok(Some(name))
}

/// Reads the payload elements of an `extendedRequest` / `extendedResponse`, skipping
/// elements of other namespaces.
fn read_elements(ext: &XElement) -> Result<Vec<Element>, CcmpError> {
    ext.elements()
        .filter(|e| is_load(&e.ns))
        .map(read_element)
        .collect()
}

/// Maps one element of [`LOAD_NS`].
fn read_element(el: &XElement) -> Result<Element, CcmpError> {
    match el.local.as_str() {
        "pressvr-load" => {
            only_children(el, &["curr-load-level"])?;
            let levels = load_children(el, "curr-load-level")
                .map(|l| {
                    Ok(LoadLevel {
                        svr_id: id_attr(l, "svr-id")?,
                        level: number_text(l)?,
                        users: number_attr(l, "users")?,
                        resources: number_attr(l, "resources")?,
                        version: number_attr(l, "version")?,
                    })
                })
                .collect::<Result<_, CcmpError>>()?;
            Ok(Element::PressvrLoad(levels))
        }
        "pres-sys-users" => {
            only_children(el, &["user", "gone"])?;
            let full = match el.attr("full").map(str::trim) {
                None | Some("true" | "1") => true,
                Some("false" | "0") => false,
                Some(other) => return Err(bad_attribute(el, "full", other)),
            };
            let present = load_children(el, "user")
                .map(|u| {
                    let protocol = match u.attr("protocol") {
                        None => {
                            return Err(CcmpError::MissingAttribute {
                                element: u.qname.clone(),
                                attribute: "protocol",
                            })
                        }
                        Some(p) => {
                            Protocol::from_name(p).ok_or_else(|| bad_attribute(u, "protocol", p))?
                        }
                    };
                    Ok(SysUser {
                        user: id_attr(u, "id")?,
                        protocol,
                        resources: number_attr(u, "resources")?,
                    })
                })
                .collect::<Result<_, CcmpError>>()?;
            let gone = load_children(el, "gone")
                .map(|g| id_attr(g, "id"))
                .collect::<Result<_, CcmpError>>()?;
            Ok(Element::PresSysUsers {
                svr_id: id_attr(el, "svr-id")?,
                full,
                present,
                gone,
            })
        }
        "redirection-usr-addr" => {
            const NAME: &str = "redirection-usr-addr";
            only_children(
                el,
                &[
                    "user-addr",
                    "protocol",
                    "resource-number",
                    "user-record",
                    "moved-from",
                ],
            )?;
            let user = required_text(el, "user-addr", NAME)?;
            let protocol_el = required_load(el, "protocol", NAME)?;
            let protocol_text = protocol_el.text();
            let protocol = Protocol::from_name(&protocol_text)
                .ok_or_else(|| bad_value(protocol_el, protocol_text.trim()))?;
            let resources = match single(el, is_load, "resource-number", NAME)? {
                Some(r) => number_text(r)?,
                None => 0,
            };
            let record = single(el, is_load, "user-record", NAME)?
                .map(record_text)
                .transpose()?;
            let moved_from = single(el, is_load, "moved-from", NAME)?
                .map(non_empty_text)
                .transpose()?;
            Ok(Element::RedirectionUsrAddr {
                user,
                protocol,
                resources,
                record,
                moved_from,
            })
        }
        "svr-pool" => {
            only_children(el, &["svr-uri"])?;
            let uris = load_children(el, "svr-uri")
                .map(non_empty_text)
                .collect::<Result<_, CcmpError>>()?;
            Ok(Element::SvrPool(uris))
        }
        "actv-svr-nums" => {
            only_children(el, &[])?;
            Ok(Element::ActvSvrNums(number_text(el)?))
        }
        "max-load" => {
            only_children(el, &[])?;
            Ok(Element::MaxLoad(number_text(el)?))
        }
        "min-load" => {
            only_children(el, &[])?;
            Ok(Element::MinLoad(number_text(el)?))
        }
        "user-update" => {
            const NAME: &str = "user-update";
            only_children(el, &["user-addr", "user-record"])?;
            Ok(Element::UserUpdate {
                user: required_text(el, "user-addr", NAME)?,
                record: record_text(required_load(el, "user-record", NAME)?)?,
            })
        }
        "migrate-user" => {
            const NAME: &str = "migrate-user";
            only_children(el, &["user-addr", "svr-id"])?;
            Ok(Element::MigrateUser {
                user: required_text(el, "user-addr", NAME)?,
                svr_id: required_text(el, "svr-id", NAME)?,
            })
        }
        "drain" => {
            only_children(el, &[])?;
            Ok(Element::Drain {
                svr_id: id_attr(el, "svr-id")?,
            })
        }
        "svr-info" => {
            only_children(el, &[])?;
            Ok(Element::SvrInfo(SvrInfo {
                svr_id: id_attr(el, "svr-id")?,
                sip: id_attr(el, "sip")?,
                xmpp: id_attr(el, "xmpp")?,
                admin: el.attr("admin").map(str::to_owned),
            }))
        }
        other => Err(CcmpError::UnknownExtension(other.to_owned())),
    }
}

/// Refuses a child of `el` in [`LOAD_NS`] whose local name is not in `allowed`; children
/// in other namespaces are ignored.
fn only_children(el: &XElement, allowed: &[&str]) -> Result<(), CcmpError> {
    match el
        .elements()
        .find(|c| is_load(&c.ns) && !allowed.contains(&c.local.as_str()))
    {
        Some(c) => Err(CcmpError::UnknownExtension(c.local.clone())),
        None => Ok(()),
    }
}

/// The children `<load:{local}>` of `el`.
fn load_children<'a>(el: &'a XElement, local: &'a str) -> impl Iterator<Item = &'a XElement> {
    el.elements()
        .filter(move |c| is_load(&c.ns) && c.local == local)
}

/// The required, non-empty attribute `name` of `el`, as written.
fn id_attr(el: &XElement, name: &'static str) -> Result<String, CcmpError> {
    match el.attr(name) {
        None => Err(CcmpError::MissingAttribute {
            element: el.qname.clone(),
            attribute: name,
        }),
        Some(v) if v.trim().is_empty() => Err(bad_attribute(el, name, v)),
        Some(v) => Ok(v.to_owned()),
    }
}

/// The numeric attribute `name` of `el` (surrounding whitespace ignored); zero when absent.
fn number_attr<T: FromStr + Default>(el: &XElement, name: &'static str) -> Result<T, CcmpError> {
    match el.attr(name) {
        None => Ok(T::default()),
        Some(v) => v.trim().parse().map_err(|_| bad_attribute(el, name, v)),
    }
}

/// The text of `el` as a number (surrounding whitespace ignored).
fn number_text<T: FromStr>(el: &XElement) -> Result<T, CcmpError> {
    let text = el.text();
    let text = text.trim();
    text.parse().map_err(|_| bad_value(el, text))
}

/// The trimmed text of `el`, which must not be empty.
fn non_empty_text(el: &XElement) -> Result<String, CcmpError> {
    let text = el.text();
    let text = text.trim();
    if text.is_empty() {
        return Err(bad_value(el, text));
    }
    Ok(text.to_owned())
}

/// The trimmed, non-empty text of the required child `<load:{local}>` of `el`.
fn required_text(
    el: &XElement,
    local: &'static str,
    parent_name: &'static str,
) -> Result<String, CcmpError> {
    non_empty_text(required_load(el, local, parent_name)?)
}

/// The base64 text of a `<load:user-record>` (whitespace anywhere ignored, so that a
/// line-wrapped value is accepted).
fn record_text(el: &XElement) -> Result<Vec<u8>, CcmpError> {
    let mut text = el.text();
    text.retain(|c| !c.is_ascii_whitespace());
    base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|_| bad_value(el, &text))
}

/// A [`CcmpError::BadValue`] for the text of `el`.
fn bad_value(el: &XElement, value: &str) -> CcmpError {
    CcmpError::BadValue {
        element: el.qname.clone(),
        value: excerpt(value),
    }
}

/// A [`CcmpError::BadAttribute`] for the attribute `name` of `el`.
fn bad_attribute(el: &XElement, name: &'static str, value: &str) -> CcmpError {
    CcmpError::BadAttribute {
        element: el.qname.clone(),
        attribute: name,
        value: excerpt(value),
    }
}

/// The first 64 characters of `value`, so that an error never carries a whole body.
fn excerpt(value: &str) -> String {
    value.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_element() -> Vec<Element> {
        vec![
            Element::PressvrLoad(vec![
                LoadLevel {
                    svr_id: "w1".into(),
                    level: 43,
                    users: 40,
                    resources: 3,
                    version: 17,
                },
                LoadLevel {
                    svr_id: "primary".into(),
                    level: u64::MAX,
                    users: 0,
                    resources: 0,
                    version: 0,
                },
            ]),
            Element::PressvrLoad(Vec::new()),
            Element::PresSysUsers {
                svr_id: "w1".into(),
                full: false,
                present: vec![
                    SysUser {
                        user: "alice@example.com".into(),
                        protocol: Protocol::Xmpp,
                        resources: 3,
                    },
                    SysUser {
                        user: "sip:bob@example.com".into(),
                        protocol: Protocol::Sip,
                        resources: 0,
                    },
                ],
                gone: vec!["carol@example.com".into()],
            },
            Element::PresSysUsers {
                svr_id: "w2".into(),
                full: true,
                present: Vec::new(),
                gone: Vec::new(),
            },
            Element::RedirectionUsrAddr {
                user: "alice@example.com".into(),
                protocol: Protocol::Xmpp,
                resources: 20,
                record: Some(b"{\"roster\":[]}\0\xff".to_vec()),
                moved_from: Some("w1".into()),
            },
            Element::RedirectionUsrAddr {
                user: "bob@example.com".into(),
                protocol: Protocol::Sip,
                resources: 0,
                record: None,
                moved_from: None,
            },
            Element::RedirectionUsrAddr {
                user: "dave@example.com".into(),
                protocol: Protocol::Sip,
                resources: 1,
                record: Some(Vec::new()),
                moved_from: None,
            },
            Element::SvrPool(vec![
                "sip:pool1@10.0.0.3:5060".into(),
                "sip:pool2@10.0.0.4:5060;transport=tcp".into(),
            ]),
            Element::ActvSvrNums(3),
            Element::MaxLoad(100),
            Element::MinLoad(20),
            Element::UserUpdate {
                user: "alice@example.com".into(),
                record: vec![1, 2, 3, 250],
            },
            Element::MigrateUser {
                user: "alice@example.com".into(),
                svr_id: "w2".into(),
            },
            Element::Drain {
                svr_id: "w3".into(),
            },
            Element::SvrInfo(SvrInfo {
                svr_id: "w4".into(),
                sip: "sip:w4@10.0.0.5:5060".into(),
                xmpp: "10.0.0.5:5222".into(),
                admin: Some("10.0.0.5:8080".into()),
            }),
            Element::SvrInfo(SvrInfo {
                svr_id: "w5".into(),
                sip: "sip:w5@10.0.0.6:5060".into(),
                xmpp: "10.0.0.6:5222".into(),
                admin: None,
            }),
        ]
    }

    fn req(body: &str) -> Result<CcmpRequest, CcmpError> {
        CcmpRequest::parse(body.as_bytes())
    }

    /// A request around `payload` (inside `<ccmp:extendedRequest>`), with the usual prefixes.
    fn request_with(payload: &str) -> String {
        format!(
            "<ccmp:ccmpRequest xmlns:ccmp='urn:ietf:params:xml:ns:xcon-ccmp' \
             xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' \
             xmlns:load='urn:rendezvous:params:xml:ns:load'>\
             <ccmpRequest xsi:type='ccmp:ccmp-extended-request-message-type'>\
             <confUserID>xcon-userid:w1@example.com</confUserID>\
             <ccmp:extendedRequest><extensionName>pressvr-load</extensionName>{payload}\
             </ccmp:extendedRequest></ccmpRequest></ccmp:ccmpRequest>"
        )
    }

    #[test]
    fn every_element_round_trips_alone_and_together() {
        let all = every_element();
        for element in &all {
            let extension = match element.name() {
                "svr-info" => "pressvr-load",
                name => name,
            };
            let request = CcmpRequest::new(
                conf_user_id("w1", "example.com"),
                extension,
                vec![element.clone()],
            );
            assert_eq!(req(&request.to_xml()), Ok(request.clone()), "{element:?}");
            let response = CcmpResponse::ok(
                conf_user_id("primary", "example.com"),
                extension,
                vec![element.clone()],
            );
            assert_eq!(
                CcmpResponse::parse(response.to_xml().as_bytes()),
                Ok(response),
                "{element:?}"
            );
        }
        let request = CcmpRequest::new("xcon-userid:w1@example.com", "pres-sys-users", all.clone());
        assert_eq!(req(&request.to_xml()), Ok(request));
        let response = CcmpResponse {
            conf_user_id: "xcon-userid:primary@example.com".into(),
            code: CONFLICT,
            reason: None,
            extension: "redirection-usr-addr".into(),
            elements: all,
        };
        assert_eq!(
            CcmpResponse::parse(response.to_xml().as_bytes()),
            Ok(response)
        );
    }

    #[test]
    fn error_responses_round_trip() {
        for code in [BAD_REQUEST, FORBIDDEN, CONFLICT] {
            let reason = default_reason(code).unwrap_or_default();
            let response =
                CcmpResponse::error("xcon-userid:primary@example.com", "drain", code, reason);
            assert!(!response.is_success());
            assert_eq!(
                CcmpResponse::parse(response.to_xml().as_bytes()),
                Ok(response)
            );
        }
        // A responder that could not read the request names no extension.
        let response = CcmpResponse::error(
            "xcon-userid:primary@example.com",
            "",
            BAD_REQUEST,
            "badRequest",
        );
        assert_eq!(
            CcmpResponse::parse(response.to_xml().as_bytes()),
            Ok(response)
        );
        // A success must name one.
        let mut ok = CcmpResponse::ok("xcon-userid:primary@example.com", "", Vec::new());
        assert!(ok.is_success());
        assert_eq!(
            CcmpResponse::parse(ok.to_xml().as_bytes()),
            Err(CcmpError::MissingExtensionName)
        );
        ok.extension = "max-load".into();
        assert_eq!(ok.reason.as_deref(), Some("success"));
        assert_eq!(CcmpResponse::parse(ok.to_xml().as_bytes()), Ok(ok));
    }

    #[test]
    fn serialises_exactly() {
        let request = CcmpRequest::new(
            "xcon-userid:node1@example.com",
            "pressvr-load",
            vec![Element::PressvrLoad(vec![LoadLevel {
                svr_id: "w1".into(),
                level: 43,
                users: 40,
                resources: 3,
                version: 17,
            }])],
        );
        assert_eq!(
            request.to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <ccmp:ccmpRequest xmlns:ccmp=\"urn:ietf:params:xml:ns:xcon-ccmp\" \
             xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
             xmlns:load=\"urn:rendezvous:params:xml:ns:load\">\
             <ccmpRequest xsi:type=\"ccmp:ccmp-extended-request-message-type\">\
             <confUserID>xcon-userid:node1@example.com</confUserID>\
             <ccmp:extendedRequest><extensionName>pressvr-load</extensionName>\
             <load:pressvr-load><load:curr-load-level svr-id=\"w1\" users=\"40\" resources=\"3\" version=\"17\">43</load:curr-load-level></load:pressvr-load>\
             </ccmp:extendedRequest></ccmpRequest></ccmp:ccmpRequest>"
        );
        let response = CcmpResponse::error(
            "xcon-userid:primary@example.com",
            "drain",
            FORBIDDEN,
            "forbidden",
        );
        assert_eq!(
            response.to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <ccmp:ccmpResponse xmlns:ccmp=\"urn:ietf:params:xml:ns:xcon-ccmp\" \
             xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
             xmlns:load=\"urn:rendezvous:params:xml:ns:load\">\
             <ccmpResponse xsi:type=\"ccmp:ccmp-extended-response-message-type\">\
             <confUserID>xcon-userid:primary@example.com</confUserID>\
             <response-code>403</response-code><response-string>forbidden</response-string>\
             <ccmp:extendedResponse><extensionName>drain</extensionName></ccmp:extendedResponse>\
             </ccmpResponse></ccmp:ccmpResponse>"
        );
    }

    /// Hand-written in the shape of the RFC 6503 examples (§5.3, §6): pretty-printed, a
    /// `standalone` declaration, the optional `operation` and `response-string` elements,
    /// unqualified inner elements and a qualified extended element, plus the `load` payload
    /// with other prefixes.
    #[test]
    fn parses_rfc6503_shaped_documents() {
        let request = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<ccmp:ccmpRequest
    xmlns:info="urn:ietf:params:xml:ns:conference-info"
    xmlns:ccmp="urn:ietf:params:xml:ns:xcon-ccmp"
    xmlns:xcon="urn:ietf:params:xml:ns:xcon-conference-info"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
    <ccmpRequest xsi:type="ccmp:ccmp-extended-request-message-type">
        <confUserID> xcon-userid:w1@example.com </confUserID>
        <confObjID>xcon:8977794@example.com</confObjID>
        <operation>update</operation>
        <ccmp:extendedRequest>
            <extensionName>pressvr-load</extensionName>
            <l:pressvr-load xmlns:l="urn:rendezvous:params:xml:ns:load">
                <l:curr-load-level svr-id="w1"> 43 </l:curr-load-level>
                <l:curr-load-level svr-id="w2" users="7" resources="1" version="2">8</l:curr-load-level>
            </l:pressvr-load>
            <max-load xmlns="urn:rendezvous:params:xml:ns:load">100</max-load>
        </ccmp:extendedRequest>
    </ccmpRequest>
</ccmp:ccmpRequest>
"#;
        assert_eq!(
            req(request),
            Ok(CcmpRequest {
                conf_user_id: "xcon-userid:w1@example.com".into(),
                extension: "pressvr-load".into(),
                elements: vec![
                    Element::PressvrLoad(vec![
                        LoadLevel {
                            svr_id: "w1".into(),
                            level: 43,
                            users: 0,
                            resources: 0,
                            version: 0
                        },
                        LoadLevel {
                            svr_id: "w2".into(),
                            level: 8,
                            users: 7,
                            resources: 1,
                            version: 2
                        },
                    ]),
                    Element::MaxLoad(100),
                ],
            })
        );

        // Qualified inner elements (a default-namespace CCMP document; unqualified ones are
        // accepted as well), the optional version element, line-wrapped base64.
        let response = r#"<ccmpResponse xmlns="urn:ietf:params:xml:ns:xcon-ccmp"
                xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
            <ccmpResponse xsi:type="ccmp-extended-response-message-type">
                <confUserID>xcon-userid:primary@example.com</confUserID>
                <response-code>200</response-code>
                <response-string>success</response-string>
                <version>3</version>
                <extendedResponse>
                    <extensionName>redirection-usr-addr</extensionName>
                    <redirection-usr-addr xmlns="urn:rendezvous:params:xml:ns:load">
                        <user-addr>alice@example.com</user-addr>
                        <protocol>XMPP</protocol>
                        <user-record>
                            AAEC
                            /w==
                        </user-record>
                    </redirection-usr-addr>
                </extendedResponse>
            </ccmpResponse>
        </ccmpResponse>"#;
        assert_eq!(
            CcmpResponse::parse(response.as_bytes()),
            Ok(CcmpResponse {
                conf_user_id: "xcon-userid:primary@example.com".into(),
                code: OK,
                reason: Some("success".into()),
                extension: "redirection-usr-addr".into(),
                elements: vec![Element::RedirectionUsrAddr {
                    user: "alice@example.com".into(),
                    protocol: Protocol::Xmpp,
                    resources: 0,
                    record: Some(vec![0, 1, 2, 255]),
                    moved_from: None,
                }],
            })
        );
    }

    #[test]
    fn foreign_namespace_elements_are_ignored() {
        let body = request_with(
            "<x:hint xmlns:x='urn:example:other'><load:bogus/></x:hint>\
             <load:pressvr-load><x:note xmlns:x='urn:example:other'>hi</x:note>\
             <load:curr-load-level svr-id='w1' x:extra='1' xmlns:x='urn:example:other'>5</load:curr-load-level>\
             </load:pressvr-load><unqualified/>",
        );
        assert_eq!(
            req(&body).map(|r| r.elements),
            Ok(vec![Element::PressvrLoad(vec![LoadLevel {
                svr_id: "w1".into(),
                level: 5,
                users: 0,
                resources: 0,
                version: 0,
            }])])
        );
    }

    #[test]
    fn escapes_text_and_attributes() {
        let tricky = "a&b<c>\"d'\t\r\n";
        let request = CcmpRequest::new(
            "xcon-userid:w&1@example.com",
            "pres-sys-users",
            vec![
                Element::PresSysUsers {
                    svr_id: tricky.into(),
                    full: true,
                    present: vec![SysUser {
                        user: "x\"<&@example.com".into(),
                        protocol: Protocol::Xmpp,
                        resources: 1,
                    }],
                    gone: vec![tricky.into()],
                },
                Element::MigrateUser {
                    user: "a&b<c>\"d@example.com".into(),
                    svr_id: "w<2>".into(),
                },
            ],
        );
        let xml = request.to_xml();
        assert!(xml.contains("<confUserID>xcon-userid:w&amp;1@example.com</confUserID>"));
        assert!(xml.contains("svr-id=\"a&amp;b&lt;c&gt;&quot;d'&#9;&#13;&#10;\""));
        assert!(xml.contains("<load:user-addr>a&amp;b&lt;c&gt;\"d@example.com</load:user-addr>"));
        assert_eq!(req(&xml), Ok(request));
        let response = CcmpResponse::error(
            "xcon-userid:p@example.com",
            "drain",
            CONFLICT,
            "a < b & \"c\"",
        );
        assert_eq!(
            CcmpResponse::parse(response.to_xml().as_bytes()),
            Ok(response)
        );
    }

    #[test]
    fn refuses_with_exact_errors() {
        assert!(matches!(req("not xml at all"), Err(CcmpError::Xml(_))));
        assert!(matches!(
            req("<ccmp:ccmpRequest xmlns:ccmp='urn:ietf:params:xml:ns:xcon-ccmp'><ccmpRequest>"),
            Err(CcmpError::Xml(_))
        ));
        assert_eq!(req(""), Err(CcmpError::Xml("no root element".into())));
        assert_eq!(CcmpRequest::parse(b"<a \xff/>"), Err(CcmpError::NotUtf8));
        assert_eq!(
            req("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'/>"),
            Err(CcmpError::WrongRoot {
                name: "presence".into(),
                ns: "urn:ietf:params:xml:ns:pidf".into(),
                expected: "ccmpRequest",
            })
        );
        // An unqualified root is not the RFC 6503 element.
        assert_eq!(
            req("<ccmpRequest><ccmpRequest/></ccmpRequest>"),
            Err(CcmpError::WrongRoot {
                name: "ccmpRequest".into(),
                ns: String::new(),
                expected: "ccmpRequest",
            })
        );
        // A response is not a request, and the other way round.
        let response = CcmpResponse::ok("xcon-userid:p@example.com", "drain", Vec::new()).to_xml();
        assert!(matches!(req(&response), Err(CcmpError::WrongRoot { .. })));
        let request = CcmpRequest::new("xcon-userid:p@example.com", "drain", Vec::new()).to_xml();
        assert!(matches!(
            CcmpResponse::parse(request.as_bytes()),
            Err(CcmpError::WrongRoot { .. })
        ));

        let no_user =
            request_with("").replace("<confUserID>xcon-userid:w1@example.com</confUserID>", "");
        assert_eq!(req(&no_user), Err(CcmpError::MissingConfUserId));
        let empty_user = request_with("").replace("xcon-userid:w1@example.com", "  ");
        assert_eq!(req(&empty_user), Err(CcmpError::MissingConfUserId));

        let no_name = request_with("").replace("<extensionName>pressvr-load</extensionName>", "");
        assert_eq!(req(&no_name), Err(CcmpError::MissingExtensionName));
        let unknown_name = request_with("").replace(">pressvr-load<", ">blueprints<");
        assert_eq!(
            req(&unknown_name),
            Err(CcmpError::UnknownExtension("blueprints".into()))
        );
        let no_ext = request_with("")
            .replace("<ccmp:extendedRequest>", "")
            .replace("</ccmp:extendedRequest>", "")
            .replace("<extensionName>pressvr-load</extensionName>", "");
        assert_eq!(
            req(&no_ext),
            Err(CcmpError::MissingElement {
                element: "extendedRequest",
                parent: "ccmpRequest"
            })
        );
        assert_eq!(
            req("<ccmp:ccmpRequest xmlns:ccmp='urn:ietf:params:xml:ns:xcon-ccmp'/>"),
            Err(CcmpError::MissingElement {
                element: "ccmpRequest",
                parent: "ccmpRequest"
            })
        );

        assert_eq!(
            req(&request_with("<load:load-balance/>")),
            Err(CcmpError::UnknownExtension("load-balance".into()))
        );
        assert_eq!(
            req(&request_with(
                "<load:pressvr-load><load:svr-load/></load:pressvr-load>"
            )),
            Err(CcmpError::UnknownExtension("svr-load".into()))
        );
        assert_eq!(
            req(&request_with(
                "<load:pressvr-load><load:curr-load-level svr-id='w1'>high</load:curr-load-level></load:pressvr-load>"
            )),
            Err(CcmpError::BadValue {
                element: "load:curr-load-level".into(),
                value: "high".into()
            })
        );
        assert_eq!(
            req(&request_with(
                "<load:pressvr-load><load:curr-load-level svr-id='w1'>-1</load:curr-load-level></load:pressvr-load>"
            )),
            Err(CcmpError::BadValue {
                element: "load:curr-load-level".into(),
                value: "-1".into()
            })
        );
        assert_eq!(
            req(&request_with(
                "<load:pressvr-load><load:curr-load-level svr-id='w1' users='many'>1</load:curr-load-level></load:pressvr-load>"
            )),
            Err(CcmpError::BadAttribute {
                element: "load:curr-load-level".into(),
                attribute: "users",
                value: "many".into()
            })
        );
        assert_eq!(
            req(&request_with(
                "<load:pressvr-load><load:curr-load-level>1</load:curr-load-level></load:pressvr-load>"
            )),
            Err(CcmpError::MissingAttribute {
                element: "load:curr-load-level".into(),
                attribute: "svr-id"
            })
        );
        assert_eq!(
            req(&request_with(
                "<load:actv-svr-nums>4294967296</load:actv-svr-nums>"
            )),
            Err(CcmpError::BadValue {
                element: "load:actv-svr-nums".into(),
                value: "4294967296".into()
            })
        );
        assert_eq!(
            req(&request_with("<load:drain svr-id=''/>")),
            Err(CcmpError::BadAttribute {
                element: "load:drain".into(),
                attribute: "svr-id",
                value: String::new()
            })
        );
        assert_eq!(
            req(&request_with(
                "<load:pres-sys-users svr-id='w1' full='maybe'/>"
            )),
            Err(CcmpError::BadAttribute {
                element: "load:pres-sys-users".into(),
                attribute: "full",
                value: "maybe".into()
            })
        );
        assert_eq!(
            req(&request_with(
                "<load:pres-sys-users svr-id='w1'><load:user id='a@x' protocol='irc'/></load:pres-sys-users>"
            )),
            Err(CcmpError::BadAttribute {
                element: "load:user".into(),
                attribute: "protocol",
                value: "irc".into()
            })
        );
        assert_eq!(
            req(&request_with(
                "<load:redirection-usr-addr><load:user-addr>a@x</load:user-addr></load:redirection-usr-addr>"
            )),
            Err(CcmpError::MissingElement {
                element: "protocol",
                parent: "redirection-usr-addr"
            })
        );
        assert_eq!(
            req(&request_with(
                "<load:user-update><load:user-addr>a@x</load:user-addr><load:user-record>not base64!</load:user-record></load:user-update>"
            )),
            Err(CcmpError::BadValue {
                element: "load:user-record".into(),
                value: "notbase64!".into()
            })
        );
        assert_eq!(
            req(&request_with(
                "<load:migrate-user><load:user-addr>a@x</load:user-addr><load:user-addr>b@x</load:user-addr><load:svr-id>w2</load:svr-id></load:migrate-user>"
            )),
            Err(CcmpError::Duplicate {
                element: "user-addr",
                parent: "migrate-user"
            })
        );
        let bad_code = CcmpResponse::ok("xcon-userid:p@example.com", "drain", Vec::new())
            .to_xml()
            .replace(">200<", ">2000<");
        assert_eq!(
            CcmpResponse::parse(bad_code.as_bytes()),
            Err(CcmpError::BadValue {
                element: "response-code".into(),
                value: "2000".into()
            })
        );
        assert_eq!(
            req(&request_with("<load:max-load>&lol;</load:max-load>")),
            Err(CcmpError::Xml(
                "entity reference &lol; in <load:max-load> is not allowed".into()
            ))
        );
    }

    /// A "billion laughs" body (our own vector): refused at the DOCTYPE, before any entity
    /// could be expanded.
    #[test]
    fn doctype_is_refused() {
        let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
]>
<ccmp:ccmpRequest xmlns:ccmp="urn:ietf:params:xml:ns:xcon-ccmp"><ccmpRequest><confUserID>&lol1;</confUserID></ccmpRequest></ccmp:ccmpRequest>"#;
        assert_eq!(req(bomb), Err(CcmpError::Doctype));
        assert_eq!(
            CcmpResponse::parse(b"<!DOCTYPE x><x/>"),
            Err(CcmpError::Doctype)
        );
    }

    #[test]
    fn size_and_depth_limits() {
        let padding = "x".repeat(MAX_BODY_BYTES);
        let big = request_with(&format!("<!-- {padding} -->"));
        assert_eq!(
            req(&big),
            Err(CcmpError::TooLarge {
                size: big.len(),
                max: MAX_BODY_BYTES
            })
        );
        // Exactly at the limit is accepted.
        let base = request_with("<!--  -->");
        let fill = "x".repeat(MAX_BODY_BYTES - base.len());
        let exact = request_with(&format!("<!-- {fill} -->"));
        assert_eq!(exact.len(), MAX_BODY_BYTES);
        assert!(req(&exact).is_ok());

        let nest = |n: usize| {
            request_with(&format!(
                "{}{}",
                "<x:d xmlns:x='urn:x'>".repeat(n),
                "</x:d>".repeat(n)
            ))
        };
        // Root 0, inner 1, extendedRequest 2: the nested elements start at depth 3.
        assert!(req(&nest(MAX_DEPTH - 3)).is_ok());
        assert_eq!(
            req(&nest(MAX_DEPTH - 2)),
            Err(CcmpError::TooDeep {
                element: "x:d".into(),
                max: MAX_DEPTH
            })
        );
    }

    #[test]
    fn every_error_answers_bad_request() {
        let errors = [
            CcmpError::TooLarge { size: 1, max: 0 },
            CcmpError::NotUtf8,
            CcmpError::Xml("x".into()),
            CcmpError::Doctype,
            CcmpError::TooDeep {
                element: "x".into(),
                max: 1,
            },
            CcmpError::WrongRoot {
                name: "a".into(),
                ns: String::new(),
                expected: "ccmpRequest",
            },
            CcmpError::MissingConfUserId,
            CcmpError::MissingExtensionName,
            CcmpError::UnknownExtension("x".into()),
            CcmpError::MissingElement {
                element: "a",
                parent: "b",
            },
            CcmpError::Duplicate {
                element: "a",
                parent: "b",
            },
            CcmpError::BadValue {
                element: "a".into(),
                value: "b".into(),
            },
            CcmpError::MissingAttribute {
                element: "a".into(),
                attribute: "b",
            },
            CcmpError::BadAttribute {
                element: "a".into(),
                attribute: "b",
                value: "c".into(),
            },
        ];
        for e in &errors {
            assert_eq!(e.response_code(), BAD_REQUEST, "{e}");
        }
        assert_eq!(
            CcmpError::BadValue {
                element: "load:curr-load-level".into(),
                value: "high".into()
            }
            .to_string(),
            "<load:curr-load-level> has an invalid value 'high'"
        );
        assert_eq!(
            CcmpError::MissingElement {
                element: "user-addr",
                parent: "user-update"
            }
            .to_string(),
            "<user-addr> is missing from <user-update>"
        );
        assert_eq!(SignatureError::Mismatch.response_code(), FORBIDDEN);
    }

    #[test]
    fn conf_user_ids() {
        let id = conf_user_id("w1", "example.com");
        assert_eq!(id, "xcon-userid:w1@example.com");
        assert_eq!(node_of(&id), Some("w1"));
        assert_eq!(node_of("xcon-userid:a@b@example.com"), Some("a@b"));
        assert_eq!(node_of("xcon-userid:@example.com"), None);
        assert_eq!(node_of("xcon-userid:w1"), None);
        assert_eq!(node_of("sip:w1@example.com"), None);
    }

    #[test]
    fn signatures() {
        let body = CcmpRequest::new(
            "xcon-userid:w1@example.com",
            "max-load",
            vec![Element::MaxLoad(1)],
        )
        .to_xml();
        let body = body.as_bytes();
        let header = sign("s3cret", body);
        assert!(header.starts_with("hmac-sha256="));
        assert_eq!(header.len(), "hmac-sha256=".len() + 64);
        assert!(header
            .bytes()
            .skip("hmac-sha256=".len())
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(verify("s3cret", body, Some(&header)), Ok(()));
        assert_eq!(
            verify(
                "s3cret",
                body,
                Some(&format!(" {} ", header.to_uppercase()))
            ),
            Ok(())
        );

        assert_eq!(verify("s3cret", body, None), Err(SignatureError::Missing));
        for malformed in [
            "",
            "hmac-sha256",
            "hmac-sha1=00",
            "hmac-sha256=xyz",
            "hmac-sha256=abc",
            "hmac-sha256=00ff",
            &header.replace("hmac-sha256=", "hmac-sha256=zz"),
        ] {
            assert_eq!(
                verify("s3cret", body, Some(malformed)),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
        let mut flipped = body.to_vec();
        if let Some(b) = flipped.get_mut(100) {
            *b ^= 1;
        }
        assert_eq!(
            verify("s3cret", &flipped, Some(&header)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("other", body, Some(&header)),
            Err(SignatureError::Mismatch)
        );
        // An empty secret is still a key, distinct from any other.
        let empty = sign("", body);
        assert_eq!(verify("", body, Some(&empty)), Ok(()));
        assert_eq!(
            verify("s3cret", body, Some(&empty)),
            Err(SignatureError::Mismatch)
        );
        assert_ne!(empty, header);
    }

    /// RFC 4231 test case 2 (HMAC-SHA256, key "Jefe").
    #[test]
    fn hmac_matches_rfc4231() {
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "hmac-sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// Truncations and single-byte mutations of a full document never panic, and whatever
    /// is accepted serialises to a document that parses back equal.
    #[test]
    fn mutated_input_never_panics_and_accepted_input_round_trips() {
        let source = CcmpRequest::new(
            "xcon-userid:w1@example.com",
            "pres-sys-users",
            every_element(),
        )
        .to_xml();
        let bytes = source.as_bytes();
        let mut accepted = 0;
        let mut check = |input: &[u8]| {
            if let Ok(doc) = CcmpRequest::parse(input) {
                accepted += 1;
                assert_eq!(
                    CcmpRequest::parse(doc.to_xml().as_bytes()).as_ref(),
                    Ok(&doc),
                    "{}",
                    String::from_utf8_lossy(input)
                );
            }
        };
        for end in 0..=bytes.len() {
            check(bytes.get(..end).unwrap_or_default());
        }
        for i in 0..bytes.len() {
            for b in [b'<', b'>', b'&', b'"', b':', b'/', b'0'] {
                let mut m = bytes.to_vec();
                if let Some(slot) = m.get_mut(i) {
                    *slot = b;
                }
                check(&m);
            }
        }
        assert!(accepted > 100, "only {accepted} mutants accepted");
    }
}
