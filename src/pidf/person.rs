//! `<dm:person>` of the RFC 4479 data model.

use super::rpid::Activity;
use super::{Note, Raw};

/// A `<dm:person>` (RFC 4479): the human behind the presentity, with the
/// RPID activities that the RFC 8048 mapping turns into XMPP `<show/>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// The `id` attribute (an `xs:ID`).
    pub id: String,
    /// The children of every `<rpid:activities>` element, in order.
    pub activities: Vec<Activity>,
    /// The `<dm:note>` elements.
    pub notes: Vec<Note>,
    /// The `<dm:timestamp>` text, as written.
    pub timestamp: Option<String>,
    /// Other children (e.g. `<rpid:mood>`), kept verbatim.
    pub extensions: Vec<Raw>,
}
