//! XML for XMPP streams: an owned element tree and an incremental stream parser.
//!
//! Covers RFC 6120 §4 (XML streams), §4.8 (namespaces), §4.9.3 (the stream error
//! conditions a parse failure maps to) and §11 (XML usage: the restricted subset,
//! UTF-8 only). Pure code: no I/O, no async runtime.

pub mod element;
pub mod parser;

pub use element::{escape_attr, escape_text, Element, Node, CLIENT_NS, STREAM_NS, XML_NS};
pub use parser::{
    ParserLimits, StreamEvent, StreamHeader, StreamParser, XmlError, DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_STANZA_BYTES,
};
