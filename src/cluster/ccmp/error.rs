//! Why a CCMP body was refused.

use super::BAD_REQUEST;
use crate::xml::XmlError;

/// Why a CCMP body was refused; each message names the element or construct at fault.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum CcmpError {
    /// The body is above [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES).
    #[error("CCMP body of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the body in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not UTF-8 (the only encoding we accept).
    #[error("CCMP body is not valid UTF-8")]
    NotUtf8,
    /// The body is not well-formed XML (or uses an entity other than the predefined ones).
    #[error("malformed CCMP XML: {0}")]
    Xml(String),
    /// The body carries a document type declaration, refused to rule out entity expansion.
    #[error("<!DOCTYPE> is not allowed in a CCMP body")]
    Doctype,
    /// Elements are nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("<{element}> is nested deeper than {max} levels")]
    TooDeep {
        /// The element (qualified name) that went over the limit.
        element: String,
        /// The limit.
        max: usize,
    },
    /// The root element is not the expected one in [`CCMP_NS`](super::CCMP_NS).
    #[error("root element <{name}> in namespace '{ns}' is not <{expected}> in urn:ietf:params:xml:ns:xcon-ccmp")]
    WrongRoot {
        /// Local name of the root element.
        name: String,
        /// Its namespace (`""` when none).
        ns: String,
        /// The expected local name (`ccmpRequest` or `ccmpResponse`).
        expected: &'static str,
    },
    /// There is no (or an empty) `<confUserID>`.
    #[error("<confUserID> is missing or empty")]
    MissingConfUserId,
    /// There is no (or an empty) `<extensionName>` in the extended request or response.
    #[error("<extensionName> is missing or empty")]
    MissingExtensionName,
    /// An `extensionName` not in [`EXTENSIONS`](super::EXTENSIONS), or an element of [`LOAD_NS`](super::LOAD_NS) we do not know.
    #[error("unknown CCMP extension or load element '{0}'")]
    UnknownExtension(String),
    /// A required child element is absent.
    #[error("<{element}> is missing from <{parent}>")]
    MissingElement {
        /// Local name of the missing element.
        element: &'static str,
        /// Local name of the element that should contain it.
        parent: &'static str,
    },
    /// A child element that may appear once appears twice.
    #[error("<{element}> appears more than once in <{parent}>")]
    Duplicate {
        /// Local name of the repeated element.
        element: &'static str,
        /// Local name of its parent.
        parent: &'static str,
    },
    /// An element's text is not a valid value (a number, a protocol, base64, an address).
    #[error("<{element}> has an invalid value '{value}'")]
    BadValue {
        /// The element (qualified name as written).
        element: String,
        /// The offending text (its first 64 characters).
        value: String,
    },
    /// A required attribute is absent.
    #[error("<{element}> has no {attribute} attribute")]
    MissingAttribute {
        /// The element (qualified name as written).
        element: String,
        /// The attribute's name.
        attribute: &'static str,
    },
    /// An attribute's value is invalid (not a number, an unknown protocol, empty).
    #[error("attribute {attribute} of <{element}> has an invalid value '{value}'")]
    BadAttribute {
        /// The element (qualified name as written).
        element: String,
        /// The attribute's name.
        attribute: &'static str,
        /// The offending value (its first 64 characters).
        value: String,
    },
}

impl CcmpError {
    /// The `response-code` to answer a body refused with this error: always
    /// [`BAD_REQUEST`] (RFC 6503 §5.4 `badRequest`), since the fault is in the body.
    pub fn response_code(&self) -> u16 {
        BAD_REQUEST
    }
}

impl From<XmlError> for CcmpError {
    fn from(e: XmlError) -> CcmpError {
        match e {
            XmlError::TooLarge { size, max } => CcmpError::TooLarge { size, max },
            XmlError::UnsupportedEncoding(_) => CcmpError::NotUtf8,
            XmlError::Doctype => CcmpError::Doctype,
            XmlError::Entity { name, element, .. } => CcmpError::Xml(format!(
                "entity reference &{name}; in <{element}> is not allowed"
            )),
            XmlError::TooDeep { element, max } => CcmpError::TooDeep { element, max },
            other => CcmpError::Xml(other.text().to_owned()),
        }
    }
}
