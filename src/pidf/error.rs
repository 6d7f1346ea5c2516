//! Why a PIDF body was refused.

use crate::xml::XmlError;

/// Why a PIDF body was refused; each message names the element or construct at fault.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PidfError {
    /// The body is above the size limit the caller chose.
    #[error("PIDF document of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the body in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not UTF-8 (the only encoding we accept).
    #[error("PIDF document is not valid UTF-8")]
    NotUtf8,
    /// The body is not well-formed XML.
    #[error("malformed PIDF XML: {0}")]
    Xml(String),
    /// The body carries a document type declaration, refused to rule out entity expansion.
    #[error("<!DOCTYPE> is not allowed in a PIDF document")]
    Doctype,
    /// An entity reference other than the predefined ones or a character reference.
    #[error("entity reference &{name}; in <{element}> is not allowed (only the predefined entities and character references are)")]
    Entity {
        /// The entity name.
        name: String,
        /// The element (qualified name) where it appeared.
        element: String,
    },
    /// Elements are nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("<{element}> is nested deeper than {max} levels")]
    TooDeep {
        /// The element (qualified name) that went over the limit.
        element: String,
        /// The limit.
        max: usize,
    },
    /// The root element is not `<presence>` in the PIDF namespace.
    #[error("root element <{name}> in namespace '{ns}' is not <presence> in urn:ietf:params:xml:ns:pidf")]
    NotPidf {
        /// Local name of the root element.
        name: String,
        /// Its namespace (`""` when none).
        ns: String,
    },
    /// `<presence>` has no (or an empty) `entity` attribute (RFC 3863 §4.1 requires it).
    #[error("<presence> has no entity attribute")]
    MissingEntity,
}

impl From<XmlError> for PidfError {
    fn from(e: XmlError) -> PidfError {
        match e {
            XmlError::TooLarge { size, max } => PidfError::TooLarge { size, max },
            XmlError::UnsupportedEncoding(_) => PidfError::NotUtf8,
            XmlError::Doctype => PidfError::Doctype,
            XmlError::Entity { name, element, .. } => PidfError::Entity { name, element },
            XmlError::TooDeep { element, max } => PidfError::TooDeep { element, max },
            other => PidfError::Xml(other.text().to_owned()),
        }
    }
}
