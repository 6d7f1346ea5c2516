//! The owned element tree.

use std::borrow::Cow;

use super::XML_NS;

/// One XML element: its expanded name (namespace and local name), the prefix it was written
/// with, its attributes and its children.
///
/// Namespace declarations (`xmlns`, `xmlns:*`) are not attributes: the writer declares what
/// the names need where they are written (see [`super::Context`]). Equality compares expanded names,
/// attribute values and children, not prefixes (XML Namespaces 1.0 §5: a prefix only stands
/// for its namespace).
#[derive(Debug, Clone)]
pub struct Element {
    /// Local name (without prefix).
    pub name: String,
    /// Resolved namespace URI, `""` if the element is in no namespace.
    pub ns: String,
    /// The prefix the element was written with (`None`: unprefixed, in the default
    /// namespace). Kept so that it is written back the same way; never `xml` or `xmlns`.
    pub prefix: Option<Box<str>>,
    /// Attributes in document order, unescaped, without namespace declarations.
    pub attrs: Vec<Attr>,
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

/// One attribute: its qualified name as written, its value (unescaped) and, for a prefixed
/// attribute other than `xml:*`, the namespace its prefix is bound to.
///
/// Boxed strings keep it as small as the `(String, String)` pair it replaces (48 bytes), so
/// that the attribute vectors of a parsed stanza have the sizes they always had.
#[derive(Debug, Clone)]
pub struct Attr {
    /// Qualified name: `to`, `xml:lang`, `y:a`.
    pub name: Box<str>,
    /// Namespace of the prefix of a prefixed attribute; `None` for an unprefixed attribute
    /// (no namespace) and for `xml:*` (always [`XML_NS`]).
    pub ns: Option<Box<str>>,
    /// The value, unescaped.
    pub value: Box<str>,
}

impl Attr {
    /// An unprefixed attribute, or an `xml:*` one.
    pub fn new(name: impl Into<Box<str>>, value: impl Into<Box<str>>) -> Attr {
        Attr {
            name: name.into(),
            ns: None,
            value: value.into(),
        }
    }

    /// The prefix of the qualified name, if any.
    pub fn prefix(&self) -> Option<&str> {
        let i = self.name.bytes().position(|b| b == b':')?;
        Some(&self.name[..i])
    }

    /// The local part of the qualified name.
    pub fn local_name(&self) -> &str {
        match self.name.bytes().position(|b| b == b':') {
            Some(i) => &self.name[i + 1..],
            None => &self.name,
        }
    }

    /// The expanded name: `(namespace, local name)`, the namespace being `""` for an
    /// unprefixed attribute. A prefixed attribute whose namespace is unknown (built by hand
    /// without [`Attr::ns`]) yields `None` and its qualified name.
    fn expanded(&self) -> (Option<&str>, &str) {
        match self.name.split_once(':') {
            None => (Some(""), &*self.name),
            Some(("xml", local)) => (Some(XML_NS), local),
            Some((_, local)) => match &self.ns {
                Some(ns) => (Some(ns), local),
                None => (None, &*self.name),
            },
        }
    }

    /// Whether this attribute is `local` in namespace `ns` (`""`: unprefixed).
    pub fn is(&self, local: &str, ns: &str) -> bool {
        self.expanded() == (Some(ns), local)
    }
}

impl PartialEq for Attr {
    /// Same expanded name and value; prefixes are not compared.
    fn eq(&self, other: &Attr) -> bool {
        self.value == other.value && self.expanded() == other.expanded()
    }
}

impl Eq for Attr {}

impl PartialEq for Element {
    /// Same expanded name, attributes (in order) and children; prefixes are not compared.
    fn eq(&self, other: &Element) -> bool {
        self.name == other.name
            && self.ns == other.ns
            && self.attrs == other.attrs
            && self.children == other.children
    }
}

impl Eq for Element {}

impl Element {
    /// Creates an empty, unprefixed element `name` in namespace `ns`.
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Element {
            name: name.into(),
            ns: ns.into(),
            prefix: None,
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: writes the element with `prefix` (bound to its namespace where it is written).
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<Box<str>>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Builder: sets attribute `key` to `value` (replacing an existing one).
    #[must_use]
    pub fn with_attr(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(key, value);
        self
    }

    /// Builder: sets the attribute with qualified name `qname` (`prefix:local`) in namespace
    /// `ns` to `value`, replacing one with the same expanded name.
    #[must_use]
    pub fn with_attr_ns(
        mut self,
        ns: impl Into<Box<str>>,
        qname: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        let attr = Attr {
            name: qname.into().into_boxed_str(),
            ns: Some(ns.into()),
            value: value.into().into_boxed_str(),
        };
        match self
            .attrs
            .iter_mut()
            .find(|a| a.expanded() == attr.expanded())
        {
            Some(slot) => *slot = attr,
            None => self.attrs.push(attr),
        }
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

    /// The qualified name as written (`prefix:name` or `name`), e.g. for error messages.
    pub fn qname(&self) -> Cow<'_, str> {
        match &self.prefix {
            Some(p) => Cow::Owned(format!("{p}:{}", self.name)),
            None => Cow::Borrowed(&self.name),
        }
    }

    /// Returns the value of attribute `key` (qualified name, e.g. `"to"` or `"xml:lang"`).
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| *a.name == *key)
            .map(|a| &*a.value)
    }

    /// Returns the value of the attribute `local` in namespace `ns` (`""`: unprefixed),
    /// whatever prefix it was written with.
    pub fn attr_ns(&self, ns: &str, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.is(local, ns))
            .map(|a| &*a.value)
    }

    /// Sets attribute `key` to `value`, replacing it in place if present, appending it
    /// otherwise. `key` is unprefixed or `xml:*`; use [`Element::with_attr_ns`] for others.
    pub fn set_attr(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into().into_boxed_str();
        match self.attrs.iter_mut().find(|a| *a.name == *key) {
            Some(slot) => slot.value = value,
            None => self.attrs.push(Attr::new(key, value)),
        }
    }

    /// Removes attribute `key`, returning its value if it was present.
    pub fn remove_attr(&mut self, key: &str) -> Option<String> {
        let idx = self.attrs.iter().position(|a| *a.name == *key)?;
        Some(self.attrs.remove(idx).value.into_string())
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
        self.text_ref().into_owned()
    }

    /// Like [`Element::text`], without copying when there is at most one text child.
    pub fn text_ref(&self) -> Cow<'_, str> {
        let mut texts = self.children.iter().filter_map(|n| match n {
            Node::Text(t) => Some(t.as_str()),
            Node::Element(_) => None,
        });
        let Some(first) = texts.next() else {
            return Cow::Borrowed("");
        };
        match texts.next() {
            None => Cow::Borrowed(first),
            Some(second) => {
                let mut out = String::with_capacity(first.len() + second.len());
                out.push_str(first);
                out.push_str(second);
                texts.for_each(|t| out.push_str(t));
                Cow::Owned(out)
            }
        }
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
}
