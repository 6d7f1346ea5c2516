//! Private XML storage (XEP-0049 §2–3): one element per (name, namespace) per account.

use super::stanza::StanzaError;
use super::stream::CLIENT_SCOPE;
use crate::xml::{parse_fragment, Element, Limits};

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

/// Deepest nesting accepted when private XML is read back (it was bounded by the stream
/// parser when it was stored).
const STORED_MAX_DEPTH: usize = 256;

/// Parses private XML as stored by this module (one element, written with
/// [`Element::write_to`], declaring its own namespace): a fragment parse against the
/// bindings of a client stream, never a made-up stream.
pub fn parse_stored(xml: &str) -> Option<Element> {
    let limits = Limits {
        max_bytes: xml.len(),
        max_depth: STORED_MAX_DEPTH,
    };
    parse_fragment(xml.as_bytes(), CLIENT_SCOPE, &limits).ok()
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

    /// Issue 16: private XML (here MOE-MP settings) with a prefixed attribute declared on its
    /// element, a prefixed element and a default-namespace change reads back the same.
    #[test]
    fn prefixed_names_survive_storage() {
        let scope = [("", "jabber:client"), ("stream", crate::xml::STREAM_NS)];
        let limits = Limits {
            max_bytes: 4096,
            max_depth: 16,
        };
        let sent = "<settings xmlns='urn:rendezvous:params:xml:ns:moe' version='3'>\
                    <ext xmlns:x='urn:example' x:level='2'><x:sub xml:lang='fr'/>\
                    <plain xmlns=''>t</plain></ext></settings>";
        let el = parse_fragment(sent.as_bytes(), &scope, &limits).unwrap();
        let mut xml = Vec::new();
        el.write_to(&mut xml, "");
        let stored = std::str::from_utf8(&xml).unwrap();
        let back = parse_stored(stored).expect("reads back");
        assert_eq!(back, el);
        let ext = back
            .get_child("ext", "urn:rendezvous:params:xml:ns:moe")
            .expect("ext");
        assert_eq!(ext.attr_ns("urn:example", "level"), Some("2"));
        assert!(ext.has_child("sub", "urn:example"));
        assert!(ext.has_child("plain", ""));
        assert_eq!(
            stored,
            "<settings xmlns='urn:rendezvous:params:xml:ns:moe' version='3'>\
             <ext xmlns:x='urn:example' x:level='2'><x:sub xml:lang='fr'/>\
             <plain xmlns=''>t</plain></ext></settings>"
        );
    }
}
