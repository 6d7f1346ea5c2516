//! The writer: elements as XML 1.0 text, namespace-well-formed wherever they are written.
//!
//! Only elements, attributes and escaped character data are written (the restricted XML of
//! RFC 6120 §11: no comments, processing instructions or entity references beyond the
//! predefined ones). Names follow XML Namespaces 1.0: the writer keeps a scope of the bindings
//! it has declared on the way down and declares the default namespace (`xmlns='…'`) or a
//! prefix (`xmlns:p='…'`) on an element wherever the binding in scope is not the one that
//! element or one of its attributes needs. Elements keep the prefix they were read with; an
//! unprefixed element in a namespace the context binds to a prefix (the `stream` prefix of an
//! XMPP stream) is written with that prefix.

use std::borrow::Cow;
use std::fmt;

use super::element::{Attr, Element, Node};
use super::escape::{escape_attr, escape_attr_in, escape_text, Quote, Sink};
use super::{CLIENT_NS, STREAM_NS, XML_NS};

/// The prefixes an XMPP stream header declares besides the default namespace.
const STREAM_PREFIXES: &[(&str, &str)] = &[("stream", STREAM_NS)];

/// What is in scope where an element is written: the default namespace, the prefixes the
/// enclosing document has declared, and the quote used for attribute values.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The default namespace in scope; `None` when unknown (the element is to be pasted into
    /// any document), so that an unprefixed element always declares its namespace.
    default_ns: Option<&'a str>,
    /// Prefix bindings already declared by the enclosing document.
    prefixes: &'a [(&'a str, &'a str)],
    /// The quote delimiting attribute values.
    quote: Quote,
}

impl<'a> Context<'a> {
    /// Inside an XMPP stream (RFC 6120 §4.8): `default_ns` is the default namespace in scope
    /// (for a stanza, the content namespace `jabber:client`) and `stream` is bound to the
    /// stream namespace by the stream header. Values in single quotes.
    pub fn stream(default_ns: &'a str) -> Context<'a> {
        Context {
            default_ns: Some(default_ns),
            prefixes: STREAM_PREFIXES,
            quote: Quote::Single,
        }
    }

    /// Nothing in scope: the output declares every namespace it uses (even `xmlns=""`), so it
    /// can be stored or pasted anywhere and still mean the same.
    pub fn standalone(quote: Quote) -> Context<'static> {
        Context {
            default_ns: None,
            prefixes: &[],
            quote,
        }
    }

    /// Inside a document whose element at the insertion point has `default_ns` as its default
    /// namespace and `prefixes` declared.
    pub fn new(
        default_ns: Option<&'a str>,
        prefixes: &'a [(&'a str, &'a str)],
        quote: Quote,
    ) -> Context<'a> {
        Context {
            default_ns,
            prefixes,
            quote,
        }
    }
}

/// Serialises `el` into `out` where `ctx` is in scope.
pub(super) fn write_element<'a, S: Sink + ?Sized>(el: &'a Element, ctx: &Context<'a>, out: &mut S) {
    let mut writer = Writer {
        out,
        context: ctx.prefixes,
        quote: ctx.quote,
        scope: Vec::new(),
    };
    writer.element(el, ctx.default_ns);
}

struct Writer<'a, 'o, S: Sink + ?Sized> {
    out: &'o mut S,
    /// Prefixes the enclosing document declares.
    context: &'a [(&'a str, &'a str)],
    quote: Quote,
    /// Prefixes declared by the elements being written, innermost last. Allocated only when
    /// some element needs a prefix declaration.
    scope: Vec<(Cow<'a, str>, &'a str)>,
}

impl<'a, S: Sink + ?Sized> Writer<'a, '_, S> {
    /// The namespace `prefix` is bound to where the writer is.
    fn lookup(&self, prefix: &str) -> Option<&'a str> {
        if prefix == "xml" {
            return Some(XML_NS);
        }
        self.scope
            .iter()
            .rev()
            .find(|(p, _)| p == prefix)
            .map(|(_, ns)| *ns)
            .or_else(|| {
                self.context
                    .iter()
                    .rev()
                    .find(|(p, _)| *p == prefix)
                    .map(|(_, ns)| *ns)
            })
    }

    /// A prefix of the context still bound to `ns` here.
    fn context_prefix(&self, ns: &str) -> Option<&'a str> {
        self.context
            .iter()
            .find(|(p, uri)| *uri == ns && self.lookup(p) == Some(*uri))
            .map(|(p, _)| *p)
    }

    fn element(&mut self, el: &'a Element, default: Option<&'a str>) {
        let mark = self.scope.len();
        // The prefix to write the element with, and whether it must be declared here.
        let mut declare_default = false;
        let mut child_default = default;
        let prefix: Option<(&'a str, bool)> = match el.prefix.as_deref() {
            Some(p) if usable_prefix(p, &el.ns) => Some((p, self.lookup(p) != Some(&el.ns))),
            _ if default == Some(el.ns.as_str()) => None,
            _ => match self.context_prefix(&el.ns) {
                Some(p) => Some((p, false)),
                None => {
                    declare_default = true;
                    child_default = Some(&el.ns);
                    None
                }
            },
        };

        self.out.push_str("<");
        self.qname(prefix.map(|(p, _)| p), &el.name);
        if declare_default {
            self.declare("", &el.ns);
        }
        if let Some((p, true)) = prefix {
            self.declare(p, &el.ns);
            self.scope.push((Cow::Borrowed(p), &el.ns));
        }
        for attr in &el.attrs {
            if let Some((p, ns)) = namespaced(attr) {
                if self.lookup(p) != Some(ns) {
                    let p = if self.scope[mark..].iter().any(|(q, _)| q == p) {
                        // The prefix is bound to another namespace on this very element (a
                        // tree built by hand): write the attribute with a fresh prefix.
                        Cow::Owned(self.fresh_prefix())
                    } else {
                        Cow::Borrowed(p)
                    };
                    self.declare(&p, ns);
                    self.scope.push((p, ns));
                }
            }
        }
        for attr in &el.attrs {
            self.out.push_str(" ");
            match namespaced(attr) {
                Some((p, ns)) if self.lookup(p) != Some(ns) => {
                    let renamed = self.scope[mark..]
                        .iter()
                        .rev()
                        .find(|(_, uri)| *uri == ns)
                        .map(|(q, _)| q.clone());
                    self.qname(renamed.as_deref(), attr.local_name());
                }
                _ => self.out.push_str(&attr.name),
            }
            self.out.push_str("=");
            self.out.push_str(self.quote.as_str());
            self.value(&attr.value);
            self.out.push_str(self.quote.as_str());
        }
        if el.children.is_empty() {
            self.out.push_str("/>");
        } else {
            self.out.push_str(">");
            for child in &el.children {
                match child {
                    Node::Element(e) => self.element(e, child_default),
                    Node::Text(t) => escape_text(t, self.out),
                }
            }
            self.out.push_str("</");
            self.qname(prefix.map(|(p, _)| p), &el.name);
            self.out.push_str(">");
        }
        self.scope.truncate(mark);
    }

    /// Writes `prefix:local` or `local`.
    fn qname(&mut self, prefix: Option<&str>, local: &str) {
        if let Some(p) = prefix {
            self.out.push_str(p);
            self.out.push_str(":");
        }
        self.out.push_str(local);
    }

    /// Writes the declaration of `prefix` (`""`: the default namespace) as `ns`.
    fn declare(&mut self, prefix: &str, ns: &str) {
        self.out.push_str(" xmlns");
        if !prefix.is_empty() {
            self.out.push_str(":");
            self.out.push_str(prefix);
        }
        self.out.push_str("=");
        self.out.push_str(self.quote.as_str());
        self.value(ns);
        self.out.push_str(self.quote.as_str());
    }

    /// Writes an attribute value escaped for the quote in use. Single-quoted XMPP output
    /// escapes both quotes, as it always has.
    fn value(&mut self, v: &str) {
        match self.quote {
            Quote::Single => escape_attr(v, self.out),
            Quote::Double => escape_attr_in(v, Quote::Double, self.out),
        }
    }

    /// A prefix bound nowhere in scope.
    fn fresh_prefix(&self) -> String {
        (0u32..)
            .map(|n| format!("ns{n}"))
            .find(|p| self.lookup(p).is_none())
            .unwrap_or_default()
    }
}

/// The prefix and namespace of a prefixed attribute that needs a declaration (not `xml:*`).
fn namespaced(attr: &Attr) -> Option<(&str, &str)> {
    let ns = attr.ns.as_deref()?;
    let prefix = attr.prefix()?;
    (prefix != "xml" && prefix != "xmlns" && !ns.is_empty()).then_some((prefix, ns))
}

/// Whether an element can be written with `prefix` for namespace `ns` (XML Namespaces 1.0 §3:
/// `xmlns` is never an element prefix, `xml` only for its own namespace, and no prefix is
/// bound to the empty namespace).
fn usable_prefix(prefix: &str, ns: &str) -> bool {
    !prefix.is_empty() && !ns.is_empty() && prefix != "xmlns" && (prefix == "xml") == (ns == XML_NS)
}

/// Writing, the element's side.
impl Element {
    /// Serialises the element into `out` where `ctx` says which bindings are in scope; see
    /// [`Context`].
    pub fn write<S: Sink + ?Sized>(&self, ctx: &Context<'_>, out: &mut S) {
        write_element(self, ctx, out);
    }

    /// Serialises the element into `out` inside an XMPP stream: `parent_ns` is the default
    /// namespace in scope where it is written (for a stanza: the stream's content namespace,
    /// `jabber:client`), and the `stream` prefix is bound to [`super::STREAM_NS`] as the
    /// stream header declares it ([`Context::stream`]). An `xmlns='…'` declaration is emitted
    /// only where the default namespace changes, a prefix declaration only where the binding
    /// in scope differs.
    pub fn write_to(&self, out: &mut Vec<u8>, parent_ns: &str) {
        self.write(&Context::stream(parent_ns), out);
    }

    /// Serialises the element to a string with `default_ns` as the namespace in scope (see
    /// [`Element::write_to`]).
    pub fn to_xml(&self, default_ns: &str) -> String {
        let mut out = String::with_capacity(128);
        self.write(&Context::stream(default_ns), &mut out);
        out
    }
}

impl fmt::Display for Element {
    /// Writes the element as it would appear inside a `jabber:client` stream.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_xml(CLIENT_NS))
    }
}
