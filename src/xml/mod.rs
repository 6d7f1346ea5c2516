//! The one XML tree of the crate: an owned, namespace-faithful [`Element`], its writer, the
//! escaper, the reader built on quick-xml and the [`XmlError`] they report.
//!
//! Every XML the server reads or writes goes through here: XMPP stanzas (the stream parser of
//! [`crate::xmpp::stream`] frames them and builds each one with [`read`]'s fragment builder
//! against the stream header's namespaces), PIDF documents ([`crate::pidf`]), CCMP bodies
//! ([`crate::cluster::ccmp`]) and the cluster state document ([`crate::cluster::state`]).
//!
//! Data model: XML 1.0 elements, attributes and character data, with names resolved as XML
//! Namespaces 1.0 (§3–§6) says. An [`Element`] keeps its expanded name (namespace URI and
//! local name), the prefix it was written with, and for each prefixed attribute its namespace;
//! the writer keeps a scope of the bindings it has written and declares a prefix (or the
//! default namespace) wherever the binding in scope is not the one an element or attribute
//! needs. So a subtree taken out of one document and written alone or inside another stays
//! namespace-well-formed and keeps its expanded names, and prefixes come out as they went in.
//!
//! The reader accepts the restricted XML that the formats we speak allow (RFC 6120 §11 for
//! XMPP; RFC 3863, RFC 6503 and our cluster documents follow the same rules): no document type
//! declaration, no entity references beyond the five predefined ones, no character references
//! to characters outside the XML 1.0 `Char` production, UTF-8 only; sizes and nesting are
//! bounded by [`Limits`]. Pure code: no I/O.

mod chars;
mod element;
mod error;
mod escape;
pub mod read;
#[cfg(test)]
mod tests;
mod write;

pub use element::{Attr, Element, Node};
pub use error::XmlError;
pub use escape::{escape_attr, escape_attr_in, escape_text, Quote, Sink};
pub use read::{parse_document, parse_fragment, Limits};
pub use write::Context;

pub(crate) use chars::{
    check_chars, display_name, is_name_start, is_whitespace, name_at, trim_end_whitespace,
};

/// The namespace permanently bound to the `xml` prefix (XML Namespaces 1.0 §3), e.g. for
/// `xml:lang`.
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The namespace of namespace declarations themselves (XML Namespaces 1.0 §3), which no
/// prefix may be bound to.
pub const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

/// The XMPP stream namespace of RFC 6120 §4.8.1; the stream header binds it to the `stream`
/// prefix, which [`Context::stream`] therefore treats as declared.
pub const STREAM_NS: &str = "http://etherx.jabber.org/streams";

/// The XMPP client content namespace of RFC 6120 §4.8.3, the default namespace of a
/// client-to-server stream.
pub const CLIENT_NS: &str = "jabber:client";
