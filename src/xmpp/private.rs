//! Private XML storage (XEP-0049 §2–3): one element per (name, namespace) per account.

use super::stanza::StanzaError;
use super::xml::Element;

/// `jabber:iq:private`.
pub const PRIVATE_NS: &str = "jabber:iq:private";

/// The storage key of a private element: its namespace and name (XEP-0049 §2).
pub fn key(el: &Element) -> String {
    format!("{} {}", el.ns, el.name)
}

/// The one child of a private `<query/>`, checked against XEP-0049 §3 rules: exactly one
/// child, with a namespace that is not reserved (`jabber:*`).
pub fn payload(query: &Element) -> Result<&Element, (StanzaError, &'static str)> {
    let mut children = query.elements();
    let first = children.next().ok_or((
        StanzaError::BadRequest,
        "private query needs one child element",
    ))?;
    if children.next().is_some() {
        return Err((StanzaError::NotAcceptable, "one element per request"));
    }
    if first.ns.is_empty() || first.ns.starts_with("jabber:") || first.ns == PRIVATE_NS {
        return Err((StanzaError::NotAcceptable, "reserved or missing namespace"));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep0049_example_payload() {
        let q = Element::new("query", PRIVATE_NS).with_child(
            Element::new("exodus", "exodus:prefs")
                .with_child(Element::new("defaultnick", "exodus:prefs").with_text("Hamlet")),
        );
        let p = payload(&q).unwrap();
        assert_eq!(key(p), "exodus:prefs exodus");
    }

    #[test]
    fn reserved_and_multiple_refused() {
        let q = Element::new("query", PRIVATE_NS).with_child(Element::new("x", "jabber:iq:roster"));
        assert_eq!(payload(&q).unwrap_err().0, StanzaError::NotAcceptable);
        let q = Element::new("query", PRIVATE_NS)
            .with_child(Element::new("a", "a:b"))
            .with_child(Element::new("b", "a:b"));
        assert_eq!(payload(&q).unwrap_err().0, StanzaError::NotAcceptable);
        assert_eq!(
            payload(&Element::new("query", PRIVATE_NS)).unwrap_err().0,
            StanzaError::BadRequest
        );
    }
}

/// Parses private XML as stored by this module (one element with its own `xmlns`).
pub fn parse_stored(xml: &str) -> Option<Element> {
    use super::xml::{ParserLimits, StreamEvent, StreamParser};
    let mut p = StreamParser::new(ParserLimits {
        max_stanza_bytes: xml.len() + 4096,
        max_depth: 256,
    });
    p.push(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
        .ok()?;
    p.push(xml.as_bytes()).ok()?;
    let _open = p.next_event().ok()??;
    match p.next_event().ok()?? {
        StreamEvent::Stanza(el) => Some(el),
        _ => None,
    }
}

#[cfg(test)]
mod stored_tests {
    use super::*;

    #[test]
    fn stored_roundtrip() {
        let el = Element::new("exodus", "exodus:prefs")
            .with_child(Element::new("defaultnick", "exodus:prefs").with_text("Ham & let"));
        let mut xml = Vec::new();
        el.write_to(&mut xml, "");
        assert_eq!(parse_stored(std::str::from_utf8(&xml).unwrap()), Some(el));
    }
}
