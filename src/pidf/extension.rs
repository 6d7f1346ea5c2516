//! Extension elements (RFC 3863 §4.2) kept verbatim.

use crate::xml::{Context, Element, Quote};

/// An extension element kept verbatim: serialised, self-contained XML that declares
/// every namespace prefix its element and attribute names use, so that it can be
/// written back anywhere in a document.
///
/// A `Raw` built by hand must be one well-formed element with its declarations;
/// the writer copies it as is.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw(pub String);

impl From<&Element> for Raw {
    /// Writes `el` with nothing in scope ([`Context::standalone`]): its prefixes as read, each
    /// declared where first used, and the default namespace declared even when empty.
    fn from(el: &Element) -> Raw {
        let mut out = String::with_capacity(64);
        el.write(&Context::standalone(Quote::Double), &mut out);
        Raw(out)
    }
}
