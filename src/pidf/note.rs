//! `<note>` (RFC 3863 §4.1.6) and `<dm:note>` (RFC 4479).

/// A human-readable `<note>` (RFC 3863 §4.1, RFC 4479 `<dm:note>`) with its language.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// The note text, as written.
    pub text: String,
    /// The `xml:lang` attribute, if any.
    pub lang: Option<String>,
}
