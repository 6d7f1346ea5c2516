//! The cluster state document (DESIGN.md §6): the load-control PIDF the primary
//! publishes to `sip:cluster@<primary>`, its chunking for flow-controlled NOTIFYs,
//! and the [`Replica`] a worker keeps from it.
//!
//! The document is an RFC 3863 PIDF `<presence>` with one `<tuple id="cluster">`,
//! followed by the load-control elements of the multi-server paper in namespace
//! [`LOAD_NS`]. RFC 3863 §4.1 (and the schema of §4.1.1) lets extension elements
//! from other namespaces appear as children of `<presence>` after the tuples, which
//! is where ours go:
//!
//! - `load:state` (ours): version, `full` or `delta`, and chunk `i` of `n`;
//! - `load:svr-loadlevel-list/svr-load[@svr-id]/{current-loadlevel,max-loadlevel}`;
//! - `load:candidate-svr-list/svr-uri` (the pool), omitted when empty;
//! - `load:active-svr-number`;
//! - `load:current-users-list[@server-id]/{current-users-number,
//!   info-users[@user-id]/{pres-type,resource-number,pres-info}}`: the directory
//!   (user -> home, DESIGN §3) with live information;
//! - `load:total-users-number`;
//! - `load:removed-users/user-id` (ours, deltas only), omitted when empty.
//!
//! A full snapshot is too large for one NOTIFY once the cluster has many users, so
//! [`ClusterState::chunks`] splits it into documents of bounded size, numbered in
//! `load:state`. The sender must send chunk `i + 1` only after the 200 for chunk
//! `i`: RFC 6665 (§4.2.2) wants a notifier to have at most one NOTIFY outstanding in
//! a subscription dialog, and overlapping NOTIFYs would not keep their order anyway
//! (a request with a lower CSeq than one already received is refused, RFC 3261
//! §12.2.2). Waiting for the previous 200 is thus both the flow control (the
//! subscriber paces the transfer) and what keeps the chunks in order. The
//! [`Replica`] relies on that order and refuses a chunk that does not follow the
//! previous one.
//!
//! The document is read and written through [`crate::pidf`]: its envelope reader
//! ([`crate::pidf::read::parse_envelope`], on the crate's one XML tree) and its envelope and
//! tuple writers; this module adds the typed readers and writers of the load-control
//! extensions (`document.rs`) and the replica (`replica.rs`). So parsing follows the PIDF
//! parser: namespace-aware, a `DOCTYPE` is refused outright (no entity declarations, hence
//! no entity expansion), only the predefined entities and character references are
//! accepted, the size and nesting depth are bounded, and unknown elements (foreign or ours)
//! are ignored. Errors name the element at fault. Pure code: no I/O.

mod document;
mod replica;

#[cfg(test)]
mod tests;

pub use replica::{Replica, ReplicaError};

use serde::{Deserialize, Serialize};

use crate::pidf::PidfError;

/// The namespace of the load-control elements (DESIGN §5, §6), bound to the `load`
/// prefix in every document we write.
pub const LOAD_NS: &str = "urn:rendezvous:params:xml:ns:load";

/// Largest body [`ClusterState::parse`] accepts (chunks are much smaller; a large
/// delta is the reason for the margin). [`ClusterState::parse_limited`] chooses another.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// Deepest element nesting the parser accepts (the root is depth 0).
pub const MAX_DEPTH: usize = 32;

/// The protocol by which a user reaches the cluster (`load:pres-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresType {
    /// `xmpp`: the user's streams are XMPP (RFC 6120).
    Xmpp,
    /// `sip`: the user's dialogs are SIP (RFC 3261 / RFC 3856).
    Sip,
}

impl PresType {
    /// The element text: `xmpp` or `sip`.
    pub fn as_str(self) -> &'static str {
        match self {
            PresType::Xmpp => "xmpp",
            PresType::Sip => "sip",
        }
    }
}

/// The load of one server (`load:svr-load`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SvrLoad {
    /// The server (node) id, `svr-id`.
    pub id: String,
    /// `load:current-loadlevel` (DESIGN §4).
    pub current: u64,
    /// `load:max-loadlevel`.
    pub max: u64,
}

/// One user of the directory (`load:info-users`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The user id, `user-id` (the local part on the cluster domain, DESIGN §3).
    pub user_id: String,
    /// `load:pres-type`.
    pub pres_type: PresType,
    /// `load:resource-number`: the user's registered presence resources.
    pub resources: u32,
    /// `load:pres-info`: `open` when the user has a live session on its home, else `closed`.
    pub pres_info: String,
}

/// The users homed on one server (`load:current-users-list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerUsers {
    /// The home server id, `server-id`.
    pub server_id: String,
    /// The users, in document order.
    pub users: Vec<UserInfo>,
}

/// Whether a document is (a chunk of) a full snapshot or a change set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `full`: the whole state (possibly in several chunks).
    Full,
    /// `delta`: changes on top of the previous version (always 1 of 1).
    Delta,
}

impl Kind {
    /// The attribute value: `full` or `delta`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Delta => "delta",
        }
    }
}

/// One cluster state document (DESIGN §6): a full snapshot (or one chunk of it) or a delta.
///
/// In a delta, `servers`, `candidates`, `active` and `total_users` are the primary's
/// current values and replace the receiver's; `users` lists the users whose home or
/// live information changed (each under its new home) and `removed` the users that
/// left the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Version of the state, increased by the primary at every change.
    pub version: u64,
    /// Full snapshot or delta.
    pub kind: Kind,
    /// 1-based index of this chunk of a full snapshot (1 for a delta).
    pub chunk: u32,
    /// Number of chunks of the snapshot (1 for a delta).
    pub chunks: u32,
    /// `load:svr-loadlevel-list`.
    pub servers: Vec<SvrLoad>,
    /// `load:candidate-svr-list/svr-uri`: the pool.
    pub candidates: Vec<String>,
    /// `load:active-svr-number`.
    pub active: u32,
    /// `load:current-users-list` per server: the directory, with live information.
    pub users: Vec<ServerUsers>,
    /// `load:total-users-number`.
    pub total_users: u64,
    /// `load:removed-users/user-id`: users no longer in the directory (deltas only).
    pub removed: Vec<String>,
}

impl Default for ClusterState {
    /// An empty full snapshot, version 0, chunk 1 of 1.
    fn default() -> Self {
        ClusterState {
            version: 0,
            kind: Kind::Full,
            chunk: 1,
            chunks: 1,
            servers: Vec::new(),
            candidates: Vec::new(),
            active: 0,
            users: Vec::new(),
            total_users: 0,
            removed: Vec::new(),
        }
    }
}

/// Why a cluster state body was refused; each message names the element at fault.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The body is above the size limit.
    #[error("cluster state document of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the body in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not UTF-8.
    #[error("cluster state document is not valid UTF-8")]
    NotUtf8,
    /// The body is not well-formed XML.
    #[error("malformed cluster state XML: {0}")]
    Xml(String),
    /// The body carries a document type declaration (refused: no entity expansion).
    #[error("<!DOCTYPE> is not allowed in a cluster state document")]
    Doctype,
    /// An entity reference other than the predefined ones or a character reference.
    #[error("entity reference &{name}; in <{element}> is not allowed")]
    Entity {
        /// The entity name.
        name: String,
        /// The element (qualified name as written) where it appeared.
        element: String,
    },
    /// Elements nested deeper than [`MAX_DEPTH`].
    #[error("<{element}> is nested deeper than {max} levels")]
    TooDeep {
        /// The element (qualified name as written).
        element: String,
        /// The limit.
        max: usize,
    },
    /// The root is not `<presence>` in the PIDF namespace.
    #[error("root element <{name}> in namespace '{ns}' is not <presence> in urn:ietf:params:xml:ns:pidf")]
    NotPresence {
        /// Local name of the root element.
        name: String,
        /// Its namespace (`""` when none).
        ns: String,
    },
    /// A required element is absent.
    #[error("<{element}> is missing from <{parent}>")]
    Missing {
        /// The missing element.
        element: &'static str,
        /// The element that should contain it.
        parent: &'static str,
    },
    /// An element that may appear once appears again.
    #[error("<{element}> appears more than once in <{parent}>")]
    Duplicate {
        /// The repeated element.
        element: &'static str,
        /// Its parent.
        parent: &'static str,
    },
    /// A required attribute is absent or empty.
    #[error("<{element}> has no {attribute} attribute")]
    MissingAttribute {
        /// The element.
        element: &'static str,
        /// The attribute.
        attribute: &'static str,
    },
    /// An attribute value is not what the element allows.
    #[error("invalid {attribute}=\"{value}\" on <{element}>")]
    BadAttribute {
        /// The element.
        element: &'static str,
        /// The attribute.
        attribute: &'static str,
        /// The value found.
        value: String,
    },
    /// Element content is not a valid value (a number out of range, an empty id).
    #[error("invalid content '{value}' in <{element}>")]
    BadValue {
        /// The element.
        element: &'static str,
        /// The content found (trimmed).
        value: String,
    },
    /// `load:pres-type` is neither `xmpp` nor `sip`.
    #[error("unknown <load:pres-type> '{0}' (expected xmpp or sip)")]
    UnknownPresType(String),
    /// `load:state` numbers an impossible chunk (0, beyond `chunks`, or a delta not 1 of 1).
    #[error("<load:state> of kind {kind} cannot be chunk {chunk} of {chunks}")]
    BadChunk {
        /// `full` or `delta`.
        kind: &'static str,
        /// The `chunk` attribute.
        chunk: u32,
        /// The `chunks` attribute.
        chunks: u32,
    },
    /// `load:current-users-number` disagrees with the `load:info-users` that follow it.
    #[error("<load:current-users-number> of server '{server_id}' says {declared} but the list has {found} <load:info-users>")]
    CountMismatch {
        /// The `server-id` of the list.
        server_id: String,
        /// The number written.
        declared: u64,
        /// The number of entries found.
        found: usize,
    },
}

impl From<PidfError> for StateError {
    /// The PIDF envelope reader's errors, in this document's terms.
    fn from(e: PidfError) -> StateError {
        match e {
            PidfError::TooLarge { size, max } => StateError::TooLarge { size, max },
            PidfError::NotUtf8 => StateError::NotUtf8,
            PidfError::Xml(m) => StateError::Xml(m),
            PidfError::Doctype => StateError::Doctype,
            PidfError::Entity { name, element } => StateError::Entity { name, element },
            PidfError::TooDeep { element, max } => StateError::TooDeep { element, max },
            PidfError::NotPidf { name, ns } => StateError::NotPresence { name, ns },
            // The envelope reader does not check the entity; kept for completeness.
            other @ PidfError::MissingEntity => StateError::Xml(other.to_string()),
        }
    }
}
