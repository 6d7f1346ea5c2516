//! Stanza semantics on top of the element tree: kinds and types (RFC 6120 §8.1–8.2,
//! RFC 6121 §4.7, §5.2), stanza errors (RFC 6120 §8.3) and stream errors (RFC 6120 §4.9).

use crate::xml::{Element, CLIENT_NS, STREAM_NS};

/// Namespace of stanza error conditions (RFC 6120 §8.3.3).
pub const STANZAS_NS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// Namespace of stream error conditions (RFC 6120 §4.9.3).
pub const STREAMS_NS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

/// The three stanza kinds (RFC 6120 §8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaKind {
    /// `<message/>`
    Message,
    /// `<presence/>`
    Presence,
    /// `<iq/>`
    Iq,
}

impl StanzaKind {
    /// The kind of a top-level element in `jabber:client`, if it is a stanza.
    pub fn of(el: &Element) -> Option<StanzaKind> {
        if el.ns != CLIENT_NS {
            return None;
        }
        match el.name.as_str() {
            "message" => Some(StanzaKind::Message),
            "presence" => Some(StanzaKind::Presence),
            "iq" => Some(StanzaKind::Iq),
            _ => None,
        }
    }
}

/// `type` of an `<iq/>` (RFC 6120 §8.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqType {
    /// Request for information.
    Get,
    /// Request to change something.
    Set,
    /// Success answer.
    Result,
    /// Error answer.
    Error,
}

impl IqType {
    /// Parses the `type` attribute; `None` when missing or unknown (a `bad-request`).
    pub fn of(el: &Element) -> Option<IqType> {
        match el.attr("type")? {
            "get" => Some(IqType::Get),
            "set" => Some(IqType::Set),
            "result" => Some(IqType::Result),
            "error" => Some(IqType::Error),
            _ => None,
        }
    }
}

/// `type` of a `<message/>` (RFC 6121 §5.2.2); absent means `normal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// One-to-one chat.
    Chat,
    /// Error.
    Error,
    /// Multi-user chat.
    Groupchat,
    /// Alert, no reply expected.
    Headline,
    /// Single message (the default).
    Normal,
}

impl MessageType {
    /// Parses the `type` attribute; unknown values are treated as `normal` (RFC 6121 §5.2.2).
    pub fn of(el: &Element) -> MessageType {
        match el.attr("type") {
            Some("chat") => MessageType::Chat,
            Some("error") => MessageType::Error,
            Some("groupchat") => MessageType::Groupchat,
            Some("headline") => MessageType::Headline,
            _ => MessageType::Normal,
        }
    }
}

/// `type` of a `<presence/>` (RFC 6121 §4.7.1); absent means available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceType {
    /// Available (no type attribute).
    Available,
    /// Going offline.
    Unavailable,
    /// Subscription request.
    Subscribe,
    /// Subscription approval.
    Subscribed,
    /// Unsubscribe.
    Unsubscribe,
    /// Subscription cancelled or denied.
    Unsubscribed,
    /// Request for current presence (server-generated).
    Probe,
    /// Error.
    Error,
}

impl PresenceType {
    /// Parses the `type` attribute; `None` for an unknown value (a `bad-request`).
    pub fn of(el: &Element) -> Option<PresenceType> {
        Some(match el.attr("type") {
            None => PresenceType::Available,
            Some("unavailable") => PresenceType::Unavailable,
            Some("subscribe") => PresenceType::Subscribe,
            Some("subscribed") => PresenceType::Subscribed,
            Some("unsubscribe") => PresenceType::Unsubscribe,
            Some("unsubscribed") => PresenceType::Unsubscribed,
            Some("probe") => PresenceType::Probe,
            Some("error") => PresenceType::Error,
            Some(_) => return None,
        })
    }
}

/// The `<priority/>` of a presence (RFC 6121 §4.7.2.3): -128..127, default 0.
pub fn presence_priority(el: &Element) -> i8 {
    el.get_child("priority", CLIENT_NS)
        .and_then(|p| p.text().trim().parse::<i8>().ok())
        .unwrap_or(0)
}

/// Error types (RFC 6120 §8.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// Retry after providing credentials.
    Auth,
    /// Do not retry.
    Cancel,
    /// Proceed (warning).
    Continue,
    /// Retry after changing the data sent.
    Modify,
    /// Retry after waiting.
    Wait,
}

impl ErrorType {
    fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// Stanza error conditions used by this server (RFC 6120 §8.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaError {
    /// §8.3.3.1
    BadRequest,
    /// §8.3.3.2
    Conflict,
    /// §8.3.3.3
    FeatureNotImplemented,
    /// §8.3.3.4
    Forbidden,
    /// §8.3.3.6
    InternalServerError,
    /// §8.3.3.7
    ItemNotFound,
    /// §8.3.3.8
    JidMalformed,
    /// §8.3.3.9
    NotAcceptable,
    /// §8.3.3.10
    NotAllowed,
    /// §8.3.3.11
    NotAuthorized,
    /// §8.3.3.12
    PolicyViolation,
    /// §8.3.3.15
    RemoteServerNotFound,
    /// §8.3.3.17
    ResourceConstraint,
    /// §8.3.3.18
    ServiceUnavailable,
    /// §8.3.3.21
    UnexpectedRequest,
}

impl StanzaError {
    /// The condition element's name.
    pub fn condition(self) -> &'static str {
        match self {
            StanzaError::BadRequest => "bad-request",
            StanzaError::Conflict => "conflict",
            StanzaError::FeatureNotImplemented => "feature-not-implemented",
            StanzaError::Forbidden => "forbidden",
            StanzaError::InternalServerError => "internal-server-error",
            StanzaError::ItemNotFound => "item-not-found",
            StanzaError::JidMalformed => "jid-malformed",
            StanzaError::NotAcceptable => "not-acceptable",
            StanzaError::NotAllowed => "not-allowed",
            StanzaError::NotAuthorized => "not-authorized",
            StanzaError::PolicyViolation => "policy-violation",
            StanzaError::RemoteServerNotFound => "remote-server-not-found",
            StanzaError::ResourceConstraint => "resource-constraint",
            StanzaError::ServiceUnavailable => "service-unavailable",
            StanzaError::UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120 §8.3.3 gives in its examples for this condition.
    pub fn error_type(self) -> ErrorType {
        match self {
            StanzaError::BadRequest
            | StanzaError::JidMalformed
            | StanzaError::NotAcceptable
            | StanzaError::PolicyViolation => ErrorType::Modify,
            StanzaError::Forbidden | StanzaError::NotAuthorized => ErrorType::Auth,
            StanzaError::ResourceConstraint | StanzaError::UnexpectedRequest => ErrorType::Wait,
            _ => ErrorType::Cancel,
        }
    }
}

/// The `<error/>` child for `err` with an optional human-readable text.
pub fn error_element(err: StanzaError, text: Option<&str>) -> Element {
    let mut e = Element::new("error", CLIENT_NS)
        .with_attr("type", err.error_type().as_str())
        .with_child(Element::new(err.condition(), STANZAS_NS));
    if let Some(t) = text {
        e = e.with_child(
            Element::new("text", STANZAS_NS)
                .with_attr("xml:lang", "en")
                .with_text(t),
        );
    }
    e
}

/// The error reply to `stanza` (RFC 6120 §8.3.1): same kind and id, `from`/`to` swapped,
/// `type='error'`; message and presence payloads are kept so the sender can tell which one
/// failed, iq payloads are not.
pub fn error_reply(stanza: &Element, err: StanzaError, text: Option<&str>) -> Element {
    let mut reply = Element::new(stanza.name.clone(), stanza.ns.clone());
    if let Some(id) = stanza.attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(to) = stanza.attr("to") {
        reply.set_attr("from", to);
    }
    if let Some(from) = stanza.attr("from") {
        reply.set_attr("to", from);
    }
    reply.set_attr("type", "error");
    if stanza.name != "iq" {
        for child in stanza.elements() {
            if child.name != "error" {
                reply
                    .children
                    .push(crate::xml::Node::Element(child.clone()));
            }
        }
    }
    reply
        .children
        .push(crate::xml::Node::Element(error_element(err, text)));
    reply
}

/// A `type='result'` answer to `iq` with an optional payload (RFC 6120 §8.2.3).
pub fn iq_result(iq: &Element, payload: Option<Element>) -> Element {
    let mut reply = Element::new("iq", CLIENT_NS).with_attr("type", "result");
    if let Some(id) = iq.attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(to) = iq.attr("to") {
        reply.set_attr("from", to);
    }
    if let Some(from) = iq.attr("from") {
        reply.set_attr("to", from);
    }
    if let Some(p) = payload {
        reply = reply.with_child(p);
    }
    reply
}

/// The first child element of an iq: its payload (RFC 6120 §8.2.3: get/set carry exactly one).
pub fn iq_payload(iq: &Element) -> Option<&Element> {
    iq.elements().find(|c| c.name != "error")
}

/// Stream error conditions (RFC 6120 §4.9.3) raised by this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamErrorCondition {
    /// §4.9.3.1
    BadFormat,
    /// §4.9.3.2
    BadNamespacePrefix,
    /// §4.9.3.3
    Conflict,
    /// §4.9.3.4
    ConnectionTimeout,
    /// §4.9.3.6
    HostUnknown,
    /// §4.9.3.8
    InternalServerError,
    /// §4.9.3.10
    InvalidNamespace,
    /// §4.9.3.12
    NotAuthorized,
    /// §4.9.3.13
    NotWellFormed,
    /// §4.9.3.14
    PolicyViolation,
    /// §4.9.3.16
    ResourceConstraint,
    /// §4.9.3.17
    RestrictedXml,
    /// §4.9.3.19
    SeeOtherHost,
    /// §4.9.3.20
    SystemShutdown,
    /// §4.9.3.22
    UnsupportedEncoding,
    /// §4.9.3.23
    UnsupportedFeature,
    /// §4.9.3.24
    UnsupportedStanzaType,
    /// §4.9.3.25
    UnsupportedVersion,
}

impl StreamErrorCondition {
    /// The condition element's name.
    pub fn as_str(self) -> &'static str {
        use StreamErrorCondition::*;
        match self {
            BadFormat => "bad-format",
            BadNamespacePrefix => "bad-namespace-prefix",
            Conflict => "conflict",
            ConnectionTimeout => "connection-timeout",
            HostUnknown => "host-unknown",
            InternalServerError => "internal-server-error",
            InvalidNamespace => "invalid-namespace",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            ResourceConstraint => "resource-constraint",
            RestrictedXml => "restricted-xml",
            SeeOtherHost => "see-other-host",
            SystemShutdown => "system-shutdown",
            UnsupportedEncoding => "unsupported-encoding",
            UnsupportedFeature => "unsupported-feature",
            UnsupportedStanzaType => "unsupported-stanza-type",
            UnsupportedVersion => "unsupported-version",
        }
    }

    /// Maps a parser condition name (see `XmlError::condition`) to the enum.
    pub fn from_name(name: &str) -> StreamErrorCondition {
        use StreamErrorCondition::*;
        match name {
            "bad-format" => BadFormat,
            "bad-namespace-prefix" => BadNamespacePrefix,
            "invalid-namespace" => InvalidNamespace,
            "policy-violation" => PolicyViolation,
            "restricted-xml" => RestrictedXml,
            "unsupported-encoding" => UnsupportedEncoding,
            "not-well-formed" => NotWellFormed,
            _ => InternalServerError,
        }
    }
}

/// `<stream:error>` with `condition` and optional text (RFC 6120 §4.9.2).
pub fn stream_error(condition: StreamErrorCondition, text: Option<&str>) -> Element {
    let mut e =
        Element::new("error", STREAM_NS).with_child(Element::new(condition.as_str(), STREAMS_NS));
    if let Some(t) = text {
        e = e.with_child(
            Element::new("text", STREAMS_NS)
                .with_attr("xml:lang", "en")
                .with_text(t),
        );
    }
    e
}

/// Bytes of a stream error followed by the closing tag, ready to write.
pub fn stream_error_bytes(condition: StreamErrorCondition, text: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    stream_error(condition, text).write_to(&mut out, CLIENT_NS);
    out.extend_from_slice(b"</stream:stream>");
    out
}

/// `<see-other-host>host</see-other-host>` (RFC 6120 §4.9.3.19) and the end of the stream.
pub fn see_other_host_bytes(host: &str) -> Vec<u8> {
    let err = Element::new("error", STREAM_NS)
        .with_child(Element::new("see-other-host", STREAMS_NS).with_text(host));
    let mut out = Vec::with_capacity(160);
    err.write_to(&mut out, CLIENT_NS);
    out.extend_from_slice(b"</stream:stream>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_swaps_addresses_rfc6120_8_3_1() {
        // RFC 6120 §8.3.1 example: an iq get answered with service-unavailable.
        let iq = Element::new("iq", CLIENT_NS)
            .with_attr("from", "juliet@im.example.com/balcony")
            .with_attr("id", "ix61z")
            .with_attr("to", "im.example.com")
            .with_attr("type", "get")
            .with_child(Element::new("query", "jabber:iq:nope"));
        let reply = error_reply(&iq, StanzaError::ServiceUnavailable, None);
        assert_eq!(reply.attr("type"), Some("error"));
        assert_eq!(reply.attr("id"), Some("ix61z"));
        assert_eq!(reply.attr("to"), Some("juliet@im.example.com/balcony"));
        assert_eq!(reply.attr("from"), Some("im.example.com"));
        let err = reply.get_child("error", CLIENT_NS).unwrap();
        assert_eq!(err.attr("type"), Some("cancel"));
        assert!(err.has_child("service-unavailable", STANZAS_NS));
        assert!(
            reply.get_child("query", "jabber:iq:nope").is_none(),
            "iq payload not echoed"
        );
        assert_eq!(
            reply.to_xml(CLIENT_NS),
            "<iq id='ix61z' from='im.example.com' to='juliet@im.example.com/balcony' type='error'>\
             <error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        );
    }

    #[test]
    fn message_error_keeps_body() {
        let msg = Element::new("message", CLIENT_NS)
            .with_attr("to", "nobody@localhost")
            .with_child(Element::new("body", CLIENT_NS).with_text("hi"));
        let reply = error_reply(&msg, StanzaError::ServiceUnavailable, Some("no such user"));
        assert_eq!(reply.get_child("body", CLIENT_NS).unwrap().text(), "hi");
        let err = reply.get_child("error", CLIENT_NS).unwrap();
        assert_eq!(
            err.get_child("text", STANZAS_NS).unwrap().text(),
            "no such user"
        );
    }

    #[test]
    fn stream_error_rfc6120_4_9_2() {
        let bytes = stream_error_bytes(StreamErrorCondition::NotWellFormed, None);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
        );
    }

    #[test]
    fn types_parse() {
        let p = Element::new("presence", CLIENT_NS).with_attr("type", "subscribe");
        assert_eq!(PresenceType::of(&p), Some(PresenceType::Subscribe));
        let p = Element::new("presence", CLIENT_NS).with_attr("type", "bogus");
        assert_eq!(PresenceType::of(&p), None);
        let p = Element::new("presence", CLIENT_NS)
            .with_child(Element::new("priority", CLIENT_NS).with_text(" -5 "));
        assert_eq!(presence_priority(&p), -5);
        let m = Element::new("message", CLIENT_NS);
        assert_eq!(MessageType::of(&m), MessageType::Normal);
        let iq = Element::new("iq", CLIENT_NS).with_attr("type", "fetch");
        assert_eq!(IqType::of(&iq), None);
    }
}
