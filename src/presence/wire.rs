//! Stanzas as the presence core handles them: serialised once for delivery (default
//! namespace `jabber:client`, RFC 6120 §4.8.3), re-addressed per contact without
//! re-serialising (RFC 6121 §4.2.2 broadcast), and read back from the routing table or from
//! another node's relay.

use bytes::Bytes;

use crate::xml::{escape_attr, Element, CLIENT_NS};
use crate::xmpp::stanza::{error_reply, PresenceType, StanzaError};
use crate::xmpp::subscription::SubKind;

/// A stanza serialised once for delivery (default namespace `jabber:client`).
pub(crate) fn wire(el: &Element) -> Bytes {
    let mut out = Vec::with_capacity(256);
    el.write_to(&mut out, CLIENT_NS);
    Bytes::from(out)
}

/// Serialised presence (starting `<presence`) with a `to` attribute spliced in, so a
/// broadcast is serialised once and only re-addressed per contact.
pub(crate) fn with_to(presence: &Bytes, to: &str) -> Bytes {
    const OPEN: &[u8] = b"<presence";
    if !presence.starts_with(OPEN) {
        return presence.clone();
    }
    let mut out = Vec::with_capacity(presence.len() + to.len() + 8);
    out.extend_from_slice(OPEN);
    out.extend_from_slice(b" to='");
    escape_attr(to, &mut out);
    out.push(b'\'');
    out.extend_from_slice(&presence[OPEN.len()..]);
    Bytes::from(out)
}

/// The localpart of a bare JID string on `domain`.
pub(crate) fn local_of<'a>(jid: &'a str, domain: &str) -> Option<&'a str> {
    let (local, d) = jid.split_once('@')?;
    (d == domain).then_some(local)
}

/// The subscription stanza a presence type is, if it is one (RFC 6121 §3).
pub(crate) fn sub_kind(t: PresenceType) -> Option<SubKind> {
    match t {
        PresenceType::Subscribe => Some(SubKind::Subscribe),
        PresenceType::Subscribed => Some(SubKind::Subscribed),
        PresenceType::Unsubscribe => Some(SubKind::Unsubscribe),
        PresenceType::Unsubscribed => Some(SubKind::Unsubscribed),
        _ => None,
    }
}

/// The error a client gets when its change did not reach the primary's durable store.
pub(crate) fn not_written(iq: &Element) -> Element {
    error_reply(
        iq,
        StanzaError::InternalServerError,
        Some("the change is kept here but did not reach the cluster's primary"),
    )
}

/// Parses one serialised stanza (as kept in the routing table, or relayed by another node).
pub(crate) fn parse_stanza(bytes: &[u8]) -> Option<Element> {
    crate::xmpp::stream::parse_stanza(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_is_spliced_and_escaped() {
        let p = Bytes::from_static(b"<presence from='a@x/r'/>");
        assert_eq!(
            &with_to(&p, "b@x")[..],
            b"<presence to='b@x' from='a@x/r'/>"
        );
        assert_eq!(
            &with_to(&p, "o'b@x")[..],
            b"<presence to='o&apos;b@x' from='a@x/r'/>"
        );
    }

    #[test]
    fn local_of_checks_domain() {
        assert_eq!(local_of("a@x", "x"), Some("a"));
        assert_eq!(local_of("a@y", "x"), None);
        assert_eq!(local_of("x", "x"), None);
    }

    #[test]
    fn stored_presence_parses_back() {
        let el = parse_stanza(b"<presence from='a@x/r'><show>away</show></presence>").unwrap();
        assert_eq!(el.name, "presence");
        assert_eq!(el.attr("from"), Some("a@x/r"));
        assert!(parse_stanza(b"<presence").is_none());
    }
}
