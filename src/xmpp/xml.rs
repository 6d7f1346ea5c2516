//! XML for XMPP streams, as the rest of the crate has always imported it: the element tree,
//! the escaper and the error of [`crate::xml`], and the incremental stream parser of
//! [`crate::xmpp::stream`]. New code imports those modules directly.

pub use crate::xml::{
    escape_attr, escape_text, Element, Node, XmlError, CLIENT_NS, STREAM_NS, XML_NS,
};
pub use crate::xmpp::stream::{
    ParserLimits, StreamEvent, StreamHeader, StreamParser, DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_STANZA_BYTES,
};

/// The element tree, at its former path.
pub mod element {
    pub use crate::xml::{escape_attr, escape_text, Element, Node, CLIENT_NS, STREAM_NS, XML_NS};
}

/// The stream parser, at its former path.
pub mod parser {
    pub use crate::xml::XmlError;
    pub use crate::xmpp::stream::{
        ParserLimits, StreamEvent, StreamHeader, StreamParser, DEFAULT_MAX_DEPTH,
        DEFAULT_MAX_STANZA_BYTES,
    };
}
