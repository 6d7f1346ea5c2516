//! PIDF presence documents: the model, a tolerant reader, a writer and composition.
//!
//! Implements RFC 3863 §4.1 (the `<presence>`, `<tuple>`, `<status>`, `<basic>`,
//! `<contact>`, `<note>` and `<timestamp>` elements) and §4.2 (extension elements
//! from other namespaces, kept here verbatim as [`Raw`]); the `<dm:person>` element
//! of the RFC 4479 data model (namespace `urn:ietf:params:xml:ns:pidf:data-model`)
//! with its `<dm:note>` and `<dm:timestamp>`; the RPID `<rpid:activities>` of
//! RFC 4480 §3.2 (see [`rpid`]); and the composition of several publications of one
//! presentity (RFC 3903 PUBLISH keeps one document per publication; RFC 4479 leaves
//! the composition policy to the compositor, and [`Presence::compose`] documents
//! ours). [`xmpp`] maps documents to and from XMPP presence (RFC 8048).
//!
//! Documents are read with [`crate::xml::parse_document`] into the crate's one tree and then
//! by typed readers over [`Element`](crate::xml::Element) ([`read`]); the [`mod@write`]
//! functions write the envelope and the elements with the crate's one escaper, so other PIDF
//! documents (the cluster state of [`crate::cluster::state`]) are written the same way.
//!
//! The reader is deliberately tolerant (RFC 3863 §4.2: a recipient ignores
//! extensions it does not understand): only malformed XML, a `DOCTYPE` (refused
//! outright: no entity declarations, so no XML bombs), an entity reference other
//! than the five predefined ones or a character reference, a wrong root element, a
//! missing `entity`, or a document above the size or depth limit are errors.
//! `mustUnderstand` (RFC 3863 §4.2) is not enforced: such extensions are kept as
//! [`Raw`] like any other. Pure code: no I/O.

mod error;
mod extension;
mod note;
mod person;
mod presence;
pub mod read;
pub mod rpid;
mod tuple;
pub mod write;
pub mod xmpp;

#[cfg(test)]
mod tests;

pub use error::PidfError;
pub use extension::Raw;
pub use note::Note;
pub use person::Person;
pub use presence::Presence;
pub use tuple::{Basic, Contact, Tuple};

/// The media type of a PIDF body (registered by RFC 3863), for `Content-Type` and `Accept`.
pub const CONTENT_TYPE: &str = "application/pidf+xml";

/// The PIDF namespace (RFC 3863 §4.1), the default namespace of every document we write.
pub const NS: &str = "urn:ietf:params:xml:ns:pidf";

/// The data-model namespace of RFC 4479 (`<dm:person>`, `<dm:note>`,
/// `<dm:timestamp>`), bound to the `dm` prefix when serialised.
pub const DM_NS: &str = "urn:ietf:params:xml:ns:pidf:data-model";

/// Largest document [`Presence::parse`] accepts, so that a hostile PUBLISH body
/// cannot make us build an arbitrarily large tree; use [`Presence::parse_limited`]
/// to choose another bound.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Deepest element nesting the reader accepts (the root is depth 0, so `MAX_DEPTH`
/// levels in all); it bounds the recursion of the writer for [`Raw`] extensions.
pub const MAX_DEPTH: usize = 32;
