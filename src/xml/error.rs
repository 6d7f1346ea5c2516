//! Why XML was refused.

/// Why XML input is unacceptable; every message names the element or construct at fault.
///
/// The first six variants are the stream error conditions of RFC 6120 §4.9.3 that bad XML
/// maps to, each with its text; the XMPP stream parser reports only those. The last four name
/// the constructs that document formats report in their own terms (PIDF, CCMP and the cluster
/// state each have a `Doctype`, `Entity`, `TooDeep` and `TooLarge` error of their own);
/// [`XmlError::categorised`] turns them into the first kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// `<not-well-formed/>` (§4.9.3.13): the input violates XML 1.0 or XML Namespaces.
    #[error("not-well-formed: {0}")]
    NotWellFormed(String),
    /// `<restricted-xml/>` (§4.9.3.18, §11.1): a DTD, comment, processing instruction or
    /// non-predefined entity reference.
    #[error("restricted-xml: {0}")]
    RestrictedXml(String),
    /// `<policy-violation/>` (§4.9.3.14): an element or header is too large or too deeply
    /// nested.
    #[error("policy-violation: {0}")]
    PolicyViolation(String),
    /// `<invalid-namespace/>` (§4.9.3.10): wrong stream or content namespace.
    #[error("invalid-namespace: {0}")]
    InvalidNamespace(String),
    /// `<bad-namespace-prefix/>` (§4.9.3.2): an undeclared or unsupported prefix.
    #[error("bad-namespace-prefix: {0}")]
    BadNamespacePrefix(String),
    /// `<unsupported-encoding/>` (§4.9.3.22, §11.6): input that is not UTF-8.
    #[error("unsupported-encoding: {0}")]
    UnsupportedEncoding(String),
    /// A document type declaration, refused outright: no entity declarations, so no entity
    /// expansion ("billion laughs").
    #[error("restricted-xml: <!DOCTYPE> is not allowed")]
    Doctype,
    /// An entity reference other than the five predefined ones.
    #[error("restricted-xml: {}", entity_text(.name, .element, .attribute.as_deref()))]
    Entity {
        /// The entity name (`nbsp` for `&nbsp;`).
        name: String,
        /// The element (qualified name as written) where it appeared.
        element: String,
        /// The attribute (qualified name) whose value holds it, if not in character data.
        attribute: Option<String>,
    },
    /// Elements nested deeper than [`Limits::max_depth`](super::Limits::max_depth).
    #[error("policy-violation: <{element}> is nested deeper than {max} levels")]
    TooDeep {
        /// The element (qualified name as written) that went over the limit.
        element: String,
        /// The limit.
        max: usize,
    },
    /// Input above [`Limits::max_bytes`](super::Limits::max_bytes).
    #[error("policy-violation: {size} bytes exceed the limit of {max} bytes")]
    TooLarge {
        /// Size of the input in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// The text of [`XmlError::Entity`].
fn entity_text(name: &str, element: &str, attribute: Option<&str>) -> String {
    match attribute {
        Some(a) => format!(
            "entity reference &{name}; in attribute '{a}' of <{element}> \
             (only the predefined entities are allowed)"
        ),
        None => format!(
            "entity reference &{name}; in <{element}> (only the predefined entities are allowed)"
        ),
    }
}

impl XmlError {
    /// The RFC 6120 §4.9.3 defined condition, e.g. `"not-well-formed"`.
    pub fn condition(&self) -> &'static str {
        match self {
            XmlError::NotWellFormed(_) => "not-well-formed",
            XmlError::RestrictedXml(_) | XmlError::Doctype | XmlError::Entity { .. } => {
                "restricted-xml"
            }
            XmlError::PolicyViolation(_) | XmlError::TooDeep { .. } | XmlError::TooLarge { .. } => {
                "policy-violation"
            }
            XmlError::InvalidNamespace(_) => "invalid-namespace",
            XmlError::BadNamespacePrefix(_) => "bad-namespace-prefix",
            XmlError::UnsupportedEncoding(_) => "unsupported-encoding",
        }
    }

    /// Human-readable detail, suitable for the `<text/>` of a stream error. The structured
    /// variants give a short description here; their `Display` (and
    /// [`XmlError::categorised`]) names the element at fault.
    pub fn text(&self) -> &str {
        match self {
            XmlError::NotWellFormed(t)
            | XmlError::RestrictedXml(t)
            | XmlError::PolicyViolation(t)
            | XmlError::InvalidNamespace(t)
            | XmlError::BadNamespacePrefix(t)
            | XmlError::UnsupportedEncoding(t) => t,
            XmlError::Doctype => "<!DOCTYPE> is not allowed",
            XmlError::Entity { .. } => "only the predefined entities are allowed",
            XmlError::TooDeep { .. } => "elements nested too deeply",
            XmlError::TooLarge { .. } => "input too large",
        }
    }

    /// The full detail of any variant: [`XmlError::text`] for the condition variants, the
    /// message naming the element for the structured ones.
    fn detail(&self) -> String {
        match self {
            XmlError::Entity {
                name,
                element,
                attribute,
            } => entity_text(name, element, attribute.as_deref()),
            XmlError::TooDeep { element, max } => {
                format!("<{element}> is nested deeper than {max} levels")
            }
            XmlError::TooLarge { size, max } => {
                format!("{size} bytes exceed the limit of {max} bytes")
            }
            other => other.text().to_owned(),
        }
    }

    /// The same error as one of the six RFC 6120 §4.9.3 conditions with its text, as an XMPP
    /// stream reports it.
    pub fn categorised(self) -> XmlError {
        match self {
            XmlError::Doctype | XmlError::Entity { .. } => XmlError::RestrictedXml(self.detail()),
            XmlError::TooDeep { .. } | XmlError::TooLarge { .. } => {
                XmlError::PolicyViolation(self.detail())
            }
            other => other,
        }
    }
}
