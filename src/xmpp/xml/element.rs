//! A small owned XML tree for stanzas, with namespace-aware serialisation.
//!
//! Implements the data model of RFC 6120 §4.7–§4.8 (stanzas as namespace-qualified
//! XML elements inside a stream) and the restricted XML subset of RFC 6120 §11:
//! the writer emits only elements, attributes and escaped character data, never
//! comments, processing instructions or entity references beyond the predefined
//! ones. Namespaces follow XML Namespaces 1.0: each element stores its resolved
//! namespace URI, and `xmlns` is written only where the default namespace changes.

use std::fmt;

/// The stream namespace of RFC 6120 §4.8.1; elements in it are written with the
/// `stream:` prefix that the stream header declares.
pub const STREAM_NS: &str = "http://etherx.jabber.org/streams";

/// The client content namespace of RFC 6120 §4.8.3, the default namespace of a
/// client-to-server stream.
pub const CLIENT_NS: &str = "jabber:client";

/// The namespace permanently bound to the `xml` prefix (XML Namespaces 1.0 §3).
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// One XML element: a local name, its resolved namespace, attributes and children.
///
/// Attribute values are stored unescaped. Namespace declarations (`xmlns`,
/// `xmlns:*`) are not stored as attributes; prefixed attributes such as
/// `xml:lang` keep their qualified name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Local name (without prefix).
    pub name: String,
    /// Resolved namespace URI, `""` if the element is in no namespace.
    pub ns: String,
    /// Attributes in document order, unescaped, without namespace declarations.
    pub attrs: Vec<(String, String)>,
    /// Child nodes in document order.
    pub children: Vec<Node>,
}

/// A child of an [`Element`]: either a nested element or character data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Unescaped character data (text and CDATA sections are both stored here).
    Text(String),
}

impl Element {
    /// Creates an empty element `name` in namespace `ns`.
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Element {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: sets attribute `key` to `value` (replacing an existing one).
    #[must_use]
    pub fn with_attr(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(key, value);
        self
    }

    /// Builder: appends a child element.
    #[must_use]
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: appends character data.
    #[must_use]
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.append_text(&text.into());
        self
    }

    /// Returns the value of attribute `key` (qualified name, e.g. `"xml:lang"`).
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets attribute `key` to `value`, replacing it in place if present,
    /// appending it otherwise.
    pub fn set_attr(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((key, value)),
        }
    }

    /// Removes attribute `key`, returning its value if it was present.
    pub fn remove_attr(&mut self, key: &str) -> Option<String> {
        let idx = self.attrs.iter().position(|(k, _)| k == key)?;
        Some(self.attrs.remove(idx).1)
    }

    /// The first child element named `name` in namespace `ns`.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    /// Mutable access to the first child element named `name` in namespace `ns`.
    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.elements_mut().find(|e| e.is(name, ns))
    }

    /// Whether a child element named `name` in namespace `ns` exists.
    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.get_child(name, ns).is_some()
    }

    /// Iterates over the child elements, skipping text nodes.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// Iterates mutably over the child elements, skipping text nodes.
    pub fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// Concatenation of the direct text children (not descendants).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                out.push_str(t);
            }
        }
        out
    }

    /// Removes and returns the first child element named `name` in namespace `ns`.
    pub fn remove_child(&mut self, name: &str, ns: &str) -> Option<Element> {
        let idx = self
            .children
            .iter()
            .position(|n| matches!(n, Node::Element(e) if e.is(name, ns)))?;
        match self.children.remove(idx) {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        }
    }

    /// Appends a child element.
    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// Appends character data, merging with a preceding text node.
    pub fn append_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if let Some(Node::Text(last)) = self.children.last_mut() {
            last.push_str(text);
        } else {
            self.children.push(Node::Text(text.to_owned()));
        }
    }

    /// Whether this element is named `name` in namespace `ns`.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// Serialises the element into `out`.
    ///
    /// `parent_ns` is the default namespace in scope where the element is written
    /// (for a stanza: the stream's content namespace, `jabber:client`). An
    /// `xmlns='…'` declaration is emitted only when the element's namespace differs
    /// from it. Elements in [`STREAM_NS`] are written as `stream:name` without a
    /// declaration (the stream header declares the prefix) and leave the default
    /// namespace of their children unchanged.
    pub fn write_to(&self, out: &mut Vec<u8>, parent_ns: &str) {
        let stream = self.ns == STREAM_NS;
        out.push(b'<');
        if stream {
            out.extend_from_slice(b"stream:");
        }
        out.extend_from_slice(self.name.as_bytes());
        let child_ns = if stream {
            parent_ns
        } else {
            if self.ns != parent_ns {
                out.extend_from_slice(b" xmlns='");
                escape_attr(&self.ns, out);
                out.push(b'\'');
            }
            self.ns.as_str()
        };
        for (k, v) in &self.attrs {
            out.push(b' ');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"='");
            escape_attr(v, out);
            out.push(b'\'');
        }
        if self.children.is_empty() {
            out.extend_from_slice(b"/>");
            return;
        }
        out.push(b'>');
        for child in &self.children {
            match child {
                Node::Element(e) => e.write_to(out, child_ns),
                Node::Text(t) => escape_text(t, out),
            }
        }
        out.extend_from_slice(b"</");
        if stream {
            out.extend_from_slice(b"stream:");
        }
        out.extend_from_slice(self.name.as_bytes());
        out.push(b'>');
    }

    /// Serialises the element to a string with `default_ns` as the namespace in
    /// scope (see [`Element::write_to`]).
    pub fn to_xml(&self, default_ns: &str) -> String {
        let mut out = Vec::with_capacity(128);
        self.write_to(&mut out, default_ns);
        // Only `&str` pieces and ASCII are written, so this is always valid UTF-8.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

impl fmt::Display for Element {
    /// Writes the element as it would appear inside a `jabber:client` stream.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_xml(CLIENT_NS))
    }
}

/// Appends `s` to `out` escaped as XML character data: `&`, `<` and `>` become
/// entity references, and `\r` becomes `&#13;` so that it survives the end-of-line
/// normalisation of the receiving parser.
pub fn escape_text(s: &str, out: &mut Vec<u8>) {
    escape_with(s, out, |b| match b {
        b'&' => Some(b"&amp;"),
        b'<' => Some(b"&lt;"),
        b'>' => Some(b"&gt;"),
        b'\r' => Some(b"&#13;"),
        _ => None,
    });
}

/// Appends `s` to `out` escaped for a single- or double-quoted attribute value:
/// `&`, `<`, `>`, `'` and `"` become entity references, and tab, line feed and
/// carriage return become character references so that attribute-value
/// normalisation on the receiving side preserves them.
pub fn escape_attr(s: &str, out: &mut Vec<u8>) {
    escape_with(s, out, |b| match b {
        b'&' => Some(b"&amp;"),
        b'<' => Some(b"&lt;"),
        b'>' => Some(b"&gt;"),
        b'\'' => Some(b"&apos;"),
        b'"' => Some(b"&quot;"),
        b'\t' => Some(b"&#9;"),
        b'\n' => Some(b"&#10;"),
        b'\r' => Some(b"&#13;"),
        _ => None,
    });
}

/// Copies `s` into `out` in runs, replacing each byte for which `rep` returns a
/// replacement. Only ASCII bytes are replaced, so UTF-8 sequences stay intact.
#[inline]
fn escape_with(s: &str, out: &mut Vec<u8>, rep: impl Fn(u8) -> Option<&'static [u8]>) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len());
    let mut last = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(r) = rep(b) {
            out.extend_from_slice(&bytes[last..i]);
            out.extend_from_slice(r);
            last = i + 1;
        }
    }
    out.extend_from_slice(&bytes[last..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster_query() -> Element {
        Element::new("iq", CLIENT_NS)
            .with_attr("type", "result")
            .with_attr("id", "r1")
            .with_child(
                Element::new("query", "jabber:iq:roster").with_child(
                    Element::new("item", "jabber:iq:roster")
                        .with_attr("jid", "romeo@example.net")
                        .with_attr("name", "Romeo")
                        .with_child(Element::new("group", "jabber:iq:roster").with_text("Friends")),
                ),
            )
    }

    #[test]
    fn builders_and_accessors() {
        let mut e = roster_query();
        assert_eq!(e.attr("type"), Some("result"));
        assert_eq!(e.attr("to"), None);
        e.set_attr("type", "set");
        assert_eq!(e.attr("type"), Some("set"));
        assert_eq!(e.attrs.len(), 2, "set_attr replaces in place");
        e.set_attr("to", "juliet@example.com");
        assert_eq!(e.attrs[2].0, "to");
        assert_eq!(e.remove_attr("to").as_deref(), Some("juliet@example.com"));
        assert_eq!(e.remove_attr("to"), None);

        assert!(e.has_child("query", "jabber:iq:roster"));
        assert!(!e.has_child("query", CLIENT_NS));
        let q = e.get_child("query", "jabber:iq:roster").expect("query");
        let item = q.get_child("item", "jabber:iq:roster").expect("item");
        assert_eq!(
            item.get_child("group", "jabber:iq:roster")
                .map(Element::text)
                .as_deref(),
            Some("Friends")
        );
        assert!(e.is("iq", CLIENT_NS));
        assert!(!e.is("iq", "jabber:server"));

        e.get_child_mut("query", "jabber:iq:roster")
            .expect("query")
            .set_attr("ver", "v2");
        assert_eq!(
            e.get_child("query", "jabber:iq:roster")
                .and_then(|q| q.attr("ver")),
            Some("v2")
        );

        let removed = e
            .remove_child("query", "jabber:iq:roster")
            .expect("removed");
        assert_eq!(removed.name, "query");
        assert!(e.children.is_empty());
        assert_eq!(e.remove_child("query", "jabber:iq:roster"), None);
    }

    #[test]
    fn text_concatenates_direct_children_only() {
        let e = Element::new("body", CLIENT_NS)
            .with_text("Wherefore ")
            .with_child(Element::new("b", "x").with_text("not"))
            .with_text("art thou");
        assert_eq!(e.text(), "Wherefore art thou");
        assert_eq!(e.elements().count(), 1);
        let merged = Element::new("body", CLIENT_NS)
            .with_text("a")
            .with_text("b");
        assert_eq!(merged.children, vec![Node::Text("ab".into())]);
        let empty = Element::new("body", CLIENT_NS).with_text("");
        assert!(empty.children.is_empty());
    }

    #[test]
    fn writes_xmlns_only_where_default_namespace_changes() {
        assert_eq!(
            roster_query().to_xml(CLIENT_NS),
            "<iq type='result' id='r1'><query xmlns='jabber:iq:roster'>\
             <item jid='romeo@example.net' name='Romeo'><group>Friends</group></item>\
             </query></iq>"
        );
        assert_eq!(
            Element::new("presence", CLIENT_NS).to_xml("jabber:server"),
            "<presence xmlns='jabber:client'/>"
        );
        assert_eq!(Element::new("x", "").to_xml(CLIENT_NS), "<x xmlns=''/>");
    }

    #[test]
    fn stream_namespace_uses_prefix_and_keeps_default_for_children() {
        let err = Element::new("error", STREAM_NS)
            .with_child(Element::new(
                "not-well-formed",
                "urn:ietf:params:xml:ns:xmpp-streams",
            ))
            .with_child(
                Element::new("text", "urn:ietf:params:xml:ns:xmpp-streams")
                    .with_attr("xml:lang", "en")
                    .with_text("bad"),
            );
        assert_eq!(
            err.to_xml(CLIENT_NS),
            "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>bad</text></stream:error>"
        );
        let features = Element::new("features", STREAM_NS)
            .with_child(Element::new("bind", "urn:ietf:params:xml:ns:xmpp-bind"))
            .with_child(Element::new("ver", CLIENT_NS));
        assert_eq!(
            features.to_xml(CLIENT_NS),
            "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><ver/></stream:features>"
        );
    }

    #[test]
    fn escapes_text_and_attributes() {
        let e = Element::new("body", CLIENT_NS)
            .with_attr("a", "<'&\">\t\n\r")
            .with_text("a<b & c>d 'q' \"dq\"\r\n☺");
        assert_eq!(
            e.to_string(),
            "<body a='&lt;&apos;&amp;&quot;&gt;&#9;&#10;&#13;'>a&lt;b &amp; c&gt;d 'q' \"dq\"&#13;\n☺</body>"
        );
        let mut out = Vec::new();
        escape_text("plain", &mut out);
        escape_attr("", &mut out);
        assert_eq!(out, b"plain");
    }
}
