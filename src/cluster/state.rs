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
//! Parsing follows the PIDF parser of the crate: namespace-aware, a `DOCTYPE` is
//! refused outright (no entity declarations, hence no entity expansion), only the
//! predefined entities and character references are accepted, the size and nesting
//! depth are bounded, and unknown elements (foreign or ours) are ignored. Errors
//! name the element at fault. Pure code: no I/O.

use super::xml::{escape_attr, escape_text};
use std::collections::HashMap;
use std::fmt::Write as _;

use quick_xml::escape::EscapeError;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::{NamespaceResolver, ResolveResult};
use quick_xml::reader::NsReader;
use quick_xml::XmlVersion;
use serde::{Deserialize, Serialize};

/// The namespace of the load-control elements (DESIGN §5, §6), bound to the `load`
/// prefix in every document we write.
pub const LOAD_NS: &str = "urn:rendezvous:params:xml:ns:load";

/// The PIDF namespace (RFC 3863 §4.1), the default namespace of the document.
const PIDF_NS: &str = "urn:ietf:params:xml:ns:pidf";

/// Largest body [`ClusterState::parse`] accepts (chunks are much smaller; a large
/// delta is the reason for the margin). [`ClusterState::parse_limited`] chooses another.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// Deepest element nesting the parser accepts (the root is depth 0).
pub const MAX_DEPTH: usize = 32;

// Qualified names used in the output and in error messages.
const E_STATE: &str = "load:state";
const E_SVR_LIST: &str = "load:svr-loadlevel-list";
const E_SVR_LOAD: &str = "load:svr-load";
const E_CURRENT: &str = "load:current-loadlevel";
const E_MAX: &str = "load:max-loadlevel";
const E_CANDIDATES: &str = "load:candidate-svr-list";
const E_SVR_URI: &str = "load:svr-uri";
const E_ACTIVE: &str = "load:active-svr-number";
const E_USERS_LIST: &str = "load:current-users-list";
const E_USERS_NUMBER: &str = "load:current-users-number";
const E_INFO_USERS: &str = "load:info-users";
const E_PRES_TYPE: &str = "load:pres-type";
const E_RESOURCES: &str = "load:resource-number";
const E_PRES_INFO: &str = "load:pres-info";
const E_TOTAL: &str = "load:total-users-number";
const E_REMOVED: &str = "load:removed-users";
const E_USER_ID: &str = "load:user-id";
const E_PRESENCE: &str = "presence";

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

impl ClusterState {
    /// Parses a body of at most [`MAX_DOCUMENT_BYTES`].
    pub fn parse(body: &[u8]) -> Result<ClusterState, StateError> {
        ClusterState::parse_limited(body, MAX_DOCUMENT_BYTES)
    }

    /// Parses a body, refusing it when it is larger than `max_bytes`.
    pub fn parse_limited(body: &[u8], max_bytes: usize) -> Result<ClusterState, StateError> {
        if body.len() > max_bytes {
            return Err(StateError::TooLarge {
                size: body.len(),
                max: max_bytes,
            });
        }
        let text = std::str::from_utf8(body).map_err(|_| StateError::NotUtf8)?;
        let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
        let root = parse_tree(text)?;
        state_from_tree(root)
    }

    /// Serialises the whole document (every user, the `chunk`/`chunks` of `self`),
    /// `entity` being the presentity (e.g. `sip:cluster@example.com`).
    pub fn to_xml(&self, entity: &str) -> String {
        let users: usize = self.users.iter().map(|g| g.users.len()).sum();
        let mut out = String::with_capacity(1024 + 64 * self.servers.len() + 160 * users);
        write_head(entity, &mut out);
        write_state(self.version, self.kind, self.chunk, self.chunks, &mut out);
        write_small_parts(self, &mut out);
        let mut body = String::new();
        for group in &self.users {
            body.clear();
            for user in &group.users {
                write_user(user, &mut body);
            }
            write_group(&group.server_id, group.users.len(), &body, &mut out);
        }
        write_tail(self.total_users, &self.removed, &mut out);
        out
    }

    /// A delta split into deltas of about `max_bytes` each, so that no NOTIFY passes the SIP
    /// message limit when many users change in one round (a rebalance, a burst of arrivals).
    /// Each part carries the small parts (servers, candidates, counts) and a share of the
    /// users, in document order; `removed` goes with the last part (split too when long).
    /// Part `i` (from 0) gets version `self.version + i`: a replica applies each part as a
    /// newer delta. The caller must count the versions used (`parts.len()`). A delta that
    /// fits, or a full snapshot (see [`ClusterState::chunks`]), is returned as itself.
    pub fn split_delta(&self, entity: &str, max_bytes: usize) -> Vec<ClusterState> {
        if self.kind == Kind::Full {
            return vec![self.clone()];
        }
        let mut bare = self.clone();
        bare.users.clear();
        bare.removed.clear();
        // The fixed part, and room for the removed-users wrapper.
        let fixed = bare.to_xml(entity).len() + 128;
        let budget = max_bytes.saturating_sub(fixed).max(1);
        let mut parts: Vec<ClusterState> = Vec::new();
        let mut current = bare.clone();
        let mut used = 0usize;
        let mut entry = String::with_capacity(256);
        let flush =
            |parts: &mut Vec<ClusterState>, current: &mut ClusterState, used: &mut usize| {
                parts.push(std::mem::replace(current, bare.clone()));
                *used = 0;
            };
        for group in &self.users {
            let overhead = group_overhead(&group.server_id, group.users.len());
            for user in &group.users {
                entry.clear();
                write_user(user, &mut entry);
                let opens_group = current
                    .users
                    .last()
                    .is_none_or(|g| g.server_id != group.server_id);
                let cost = entry.len() + if opens_group { overhead } else { 0 };
                if used > 0 && used + cost > budget {
                    flush(&mut parts, &mut current, &mut used);
                }
                match current.users.last_mut() {
                    Some(g) if g.server_id == group.server_id => g.users.push(user.clone()),
                    _ => current.users.push(ServerUsers {
                        server_id: group.server_id.clone(),
                        users: vec![user.clone()],
                    }),
                }
                used += entry.len() + if opens_group { overhead } else { 0 };
            }
        }
        for user in &self.removed {
            let cost = user.len() + 64;
            if used > 0 && used + cost > budget {
                flush(&mut parts, &mut current, &mut used);
            }
            current.removed.push(user.clone());
            used += cost;
        }
        if used > 0 || parts.is_empty() {
            flush(&mut parts, &mut current, &mut used);
        }
        for (i, part) in parts.iter_mut().enumerate() {
            part.version = self.version + i as u64;
        }
        parts
    }

    /// Splits a full snapshot into documents of at most `max_bytes` each, to be sent
    /// in order, each after the 200 for the previous one (RFC 6665; see the module
    /// documentation).
    ///
    /// Every chunk carries `load:state` (chunk `i` of `n`, the snapshot's version),
    /// the server list, the candidates, the active and total numbers; the users are
    /// spread over the chunks in order, a server's list being continued in the next
    /// chunk (with its `server-id` repeated) when it does not fit. A snapshot without
    /// users is one chunk; `removed` is not sent with a full snapshot. The bound holds
    /// whenever the fixed part plus one user entry fits in `max_bytes` (2048 bytes is
    /// ample for a small cluster); a chunk holds at least one user, whatever its size.
    /// A delta is returned as its single document, unsplit (see
    /// [`ClusterState::split_delta`]).
    pub fn chunks(&self, entity: &str, max_bytes: usize) -> Vec<String> {
        if self.kind == Kind::Delta {
            return vec![self.to_xml(entity)];
        }
        let mut head = String::with_capacity(256);
        write_head(entity, &mut head);
        let mut small = String::with_capacity(256 + 96 * self.servers.len());
        write_small_parts(self, &mut small);
        let mut tail = String::with_capacity(64);
        write_tail(self.total_users, &[], &mut tail);
        let mut widest_state = String::with_capacity(96);
        write_state(
            self.version,
            Kind::Full,
            u32::MAX,
            u32::MAX,
            &mut widest_state,
        );
        let budget =
            max_bytes.saturating_sub(head.len() + widest_state.len() + small.len() + tail.len());

        let mut packer = Packer {
            bodies: Vec::new(),
            current: String::new(),
            used: 0,
            pending: String::new(),
            pending_count: 0,
        };
        let mut entry = String::with_capacity(256);
        for group in &self.users {
            let overhead = group_overhead(&group.server_id, group.users.len());
            entry.clear();
            if let Some(first) = group.users.first() {
                write_user(first, &mut entry);
            }
            if packer.has_content() && packer.used + overhead + entry.len() > budget {
                packer.flush();
            }
            packer.used += overhead;
            for user in &group.users {
                entry.clear();
                write_user(user, &mut entry);
                if packer.pending_count > 0 && packer.used + entry.len() > budget {
                    packer.close_group(&group.server_id);
                    packer.flush();
                    packer.used = overhead;
                }
                packer.pending.push_str(&entry);
                packer.pending_count += 1;
                packer.used += entry.len();
            }
            packer.close_group(&group.server_id);
        }
        if packer.has_content() || packer.bodies.is_empty() {
            packer.flush();
        }

        let n = u32::try_from(packer.bodies.len()).unwrap_or(u32::MAX);
        packer
            .bodies
            .iter()
            .zip(1..=n)
            .map(|(body, i)| {
                let mut doc = String::with_capacity(
                    head.len() + widest_state.len() + small.len() + body.len() + tail.len(),
                );
                doc.push_str(&head);
                write_state(self.version, Kind::Full, i, n, &mut doc);
                doc.push_str(&small);
                doc.push_str(body);
                doc.push_str(&tail);
                doc
            })
            .collect()
    }
}

/// The user lists of the chunks being built by [`ClusterState::chunks`].
struct Packer {
    /// The user-list part of each finished chunk.
    bodies: Vec<String>,
    /// The closed user lists of the chunk being filled.
    current: String,
    /// Upper bound of the size of the chunk's user lists, including the open one.
    used: usize,
    /// The entries of the open list (its header needs their number first).
    pending: String,
    /// Number of entries in `pending`.
    pending_count: usize,
}

impl Packer {
    /// True when the chunk being filled holds any list or entry.
    fn has_content(&self) -> bool {
        !self.current.is_empty() || self.pending_count > 0
    }

    /// Writes the open list (possibly empty) of `server_id` into the chunk.
    fn close_group(&mut self, server_id: &str) {
        write_group(
            server_id,
            self.pending_count,
            &self.pending,
            &mut self.current,
        );
        self.pending.clear();
        self.pending_count = 0;
    }

    /// Ends the chunk being filled.
    fn flush(&mut self) {
        self.bodies.push(std::mem::take(&mut self.current));
        self.used = 0;
    }
}

// ----- serialisation -------------------------------------------------------------

/// XML declaration, `<presence>` with its namespaces, and the cluster tuple.
fn write_head(entity: &str, out: &mut String) {
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"");
    out.push_str(PIDF_NS);
    out.push_str("\" xmlns:load=\"");
    out.push_str(LOAD_NS);
    out.push_str("\" entity=\"");
    escape_attr(entity, out);
    out.push_str("\"><tuple id=\"cluster\"><status><basic>open</basic></status></tuple>");
}

/// `<load:state .../>`.
fn write_state(version: u64, kind: Kind, chunk: u32, chunks: u32, out: &mut String) {
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "<{E_STATE} version=\"{version}\" kind=\"{}\" chunk=\"{chunk}\" chunks=\"{chunks}\"/>",
        kind.as_str()
    );
}

/// The parts repeated in every chunk before the users: servers, candidates, active number.
fn write_small_parts(state: &ClusterState, out: &mut String) {
    if state.servers.is_empty() {
        let _ = write!(out, "<{E_SVR_LIST}/>");
    } else {
        let _ = write!(out, "<{E_SVR_LIST}>");
        for svr in &state.servers {
            let _ = write!(out, "<{E_SVR_LOAD} svr-id=\"");
            escape_attr(&svr.id, out);
            let _ = write!(
                out,
                "\"><{E_CURRENT}>{}</{E_CURRENT}><{E_MAX}>{}</{E_MAX}></{E_SVR_LOAD}>",
                svr.current, svr.max
            );
        }
        let _ = write!(out, "</{E_SVR_LIST}>");
    }
    if !state.candidates.is_empty() {
        let _ = write!(out, "<{E_CANDIDATES}>");
        for uri in &state.candidates {
            let _ = write!(out, "<{E_SVR_URI}>");
            escape_text(uri, out);
            let _ = write!(out, "</{E_SVR_URI}>");
        }
        let _ = write!(out, "</{E_CANDIDATES}>");
    }
    let _ = write!(out, "<{E_ACTIVE}>{}</{E_ACTIVE}>", state.active);
}

/// One `<load:info-users>`.
fn write_user(user: &UserInfo, out: &mut String) {
    let _ = write!(out, "<{E_INFO_USERS} user-id=\"");
    escape_attr(&user.user_id, out);
    let _ = write!(
        out,
        "\"><{E_PRES_TYPE}>{}</{E_PRES_TYPE}><{E_RESOURCES}>{}</{E_RESOURCES}><{E_PRES_INFO}>",
        user.pres_type.as_str(),
        user.resources
    );
    escape_text(&user.pres_info, out);
    let _ = write!(out, "</{E_PRES_INFO}></{E_INFO_USERS}>");
}

/// One `<load:current-users-list>` of `count` entries already serialised in `entries`.
fn write_group(server_id: &str, count: usize, entries: &str, out: &mut String) {
    let _ = write!(out, "<{E_USERS_LIST} server-id=\"");
    escape_attr(server_id, out);
    let _ = write!(out, "\"><{E_USERS_NUMBER}>{count}</{E_USERS_NUMBER}>");
    out.push_str(entries);
    let _ = write!(out, "</{E_USERS_LIST}>");
}

/// Bytes a `<load:current-users-list>` adds around its entries, for at most `max_count` entries.
fn group_overhead(server_id: &str, max_count: usize) -> usize {
    let mut s = String::with_capacity(128);
    write_group(server_id, max_count, "", &mut s);
    s.len()
}

/// Total number, removed users, end of `<presence>`.
fn write_tail(total: u64, removed: &[String], out: &mut String) {
    let _ = write!(out, "<{E_TOTAL}>{total}</{E_TOTAL}>");
    if !removed.is_empty() {
        let _ = write!(out, "<{E_REMOVED}>");
        for user in removed {
            let _ = write!(out, "<{E_USER_ID}>");
            escape_text(user, out);
            let _ = write!(out, "</{E_USER_ID}>");
        }
        let _ = write!(out, "</{E_REMOVED}>");
    }
    out.push_str("</presence>");
}

// ----- parsing: a small namespace-resolved tree ------------------------------------

/// An element as parsed.
struct XElement {
    /// The qualified name as written, for error messages.
    qname: String,
    ns: String,
    local: String,
    /// Unprefixed attributes (name, normalised value); prefixed ones are not ours.
    attrs: Vec<(String, String)>,
    children: Vec<XElement>,
    /// Concatenated direct character data.
    text: String,
}

impl XElement {
    /// The unprefixed attribute `name`.
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// True when the element is `local` in [`LOAD_NS`].
    fn is_load(&self, local: &str) -> bool {
        self.ns == LOAD_NS && self.local == local
    }

    /// The children that are `local` in [`LOAD_NS`].
    fn load_children<'a>(&'a self, local: &'a str) -> impl Iterator<Item = &'a XElement> + 'a {
        self.children.iter().filter(move |c| c.is_load(local))
    }

    /// The only child `local` in [`LOAD_NS`]; `Missing`/`Duplicate` name `element` and `parent`.
    fn one_child<'a>(
        &'a self,
        local: &'a str,
        element: &'static str,
        parent: &'static str,
    ) -> Result<&'a XElement, StateError> {
        let mut it = self.load_children(local);
        let first = it.next().ok_or(StateError::Missing { element, parent })?;
        if it.next().is_some() {
            return Err(StateError::Duplicate { element, parent });
        }
        Ok(first)
    }
}

/// Parses `text` into a tree, resolving namespaces; refuses DOCTYPE, non-predefined
/// entities, illegal characters and nesting deeper than [`MAX_DEPTH`].
fn parse_tree(text: &str) -> Result<XElement, StateError> {
    if let Some(c) = text.chars().find(|&c| !is_xml_char(c)) {
        return Err(StateError::Xml(format!(
            "illegal character U+{:04X}",
            u32::from(c)
        )));
    }
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<XElement> = Vec::with_capacity(8);
    let mut root: Option<XElement> = None;
    loop {
        let event = reader.read_event().map_err(|e| {
            StateError::Xml(match stack.last() {
                Some(top) => format!("{e} in <{}>", top.qname),
                None => e.to_string(),
            })
        })?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                return Err(StateError::Xml(format!(
                    "element <{}> after the root element",
                    start.name().0
                )));
            }
            Event::Start(start) => {
                let el = open_element(reader.resolver(), &start, stack.len())?;
                stack.push(el);
            }
            Event::Empty(start) => {
                let el = open_element(reader.resolver(), &start, stack.len())?;
                attach(&mut stack, &mut root, el);
            }
            Event::End(_) => match stack.pop() {
                Some(el) => attach(&mut stack, &mut root, el),
                None => return Err(StateError::Xml("unmatched end tag".to_owned())),
            },
            Event::Text(t) => push_text(&mut stack, &t.xml10_content())?,
            Event::CData(c) => push_text(&mut stack, &c.xml10_content())?,
            Event::GeneralRef(r) => {
                let element = stack.last().map_or("", |top| top.qname.as_str());
                let c = resolve_reference(&r, element)?;
                push_text(&mut stack, c.encode_utf8(&mut [0u8; 4]))?;
            }
            Event::DocType(_) => return Err(StateError::Doctype),
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(top) = stack.last() {
        return Err(StateError::Xml(format!("<{}> is not closed", top.qname)));
    }
    root.ok_or_else(|| StateError::Xml("no root element".to_owned()))
}

/// Attaches a closed element to its parent, or makes it the root.
fn attach(stack: &mut [XElement], root: &mut Option<XElement>, el: XElement) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

/// Appends text to the open element; outside the root only whitespace is allowed.
fn push_text(stack: &mut [XElement], text: &str) -> Result<(), StateError> {
    match stack.last_mut() {
        Some(top) => {
            top.text.push_str(text);
            Ok(())
        }
        None if text.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) => Ok(()),
        None => Err(StateError::Xml("text outside the root element".to_owned())),
    }
}

/// Builds the element for a start tag at nesting `depth`, resolving its name
/// against the declarations in scope and keeping its unprefixed attributes.
fn open_element(
    resolver: &NamespaceResolver,
    start: &BytesStart<'_>,
    depth: usize,
) -> Result<XElement, StateError> {
    let name = start.name();
    let qname = name.0.to_owned();
    if depth >= MAX_DEPTH {
        return Err(StateError::TooDeep {
            element: qname,
            max: MAX_DEPTH,
        });
    }
    let (resolved, local) = resolver.resolve_element(name);
    let ns = match resolved {
        ResolveResult::Bound(ns) => ns.into_inner().to_owned(),
        ResolveResult::Unbound => String::new(),
        ResolveResult::Unknown(p) => {
            return Err(StateError::Xml(format!(
                "undeclared namespace prefix '{p}' on <{qname}>"
            )));
        }
    };
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr =
            attr.map_err(|e| StateError::Xml(format!("malformed attribute in <{qname}>: {e}")))?;
        let key = attr.key;
        if key.as_namespace_binding().is_some() {
            continue;
        }
        let (resolved, _) = resolver.resolve_attribute(key);
        match resolved {
            ResolveResult::Unbound => {}
            ResolveResult::Bound(_) => continue,
            ResolveResult::Unknown(p) => {
                return Err(StateError::Xml(format!(
                    "undeclared namespace prefix '{p}' on an attribute of <{qname}>"
                )));
            }
        }
        let key_name = key.0.to_owned();
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| match e {
                quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => {
                    StateError::Entity {
                        name,
                        element: qname.clone(),
                    }
                }
                e => StateError::Xml(format!("attribute '{key_name}' of <{qname}>: {e}")),
            })?;
        if let Some(c) = value.chars().find(|&c| !is_xml_char(c)) {
            return Err(StateError::Xml(format!(
                "illegal character U+{:04X} in attribute '{key_name}' of <{qname}>",
                u32::from(c)
            )));
        }
        attrs.push((key_name, value.into_owned()));
    }
    Ok(XElement {
        qname,
        ns,
        local: local.into_inner().to_owned(),
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Resolves `&name;` in character data: the five predefined entities and
/// character references to XML characters only.
fn resolve_reference(r: &BytesRef<'_>, element: &str) -> Result<char, StateError> {
    let name: &str = r;
    match name {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ if r.is_char_ref() => match r.resolve_char_ref() {
            Ok(Some(c)) if is_xml_char(c) => Ok(c),
            _ => Err(StateError::Xml(format!(
                "invalid character reference &{name}; in <{element}>"
            ))),
        },
        _ => Err(StateError::Entity {
            name: name.to_owned(),
            element: element.to_owned(),
        }),
    }
}

/// XML 1.0 `Char` production.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

// ----- parsing: tree to model ------------------------------------------------------

/// Maps the parsed root to a [`ClusterState`].
fn state_from_tree(root: XElement) -> Result<ClusterState, StateError> {
    if root.ns != PIDF_NS || root.local != "presence" {
        return Err(StateError::NotPresence {
            name: root.local,
            ns: root.ns,
        });
    }
    let state = root.one_child("state", E_STATE, E_PRESENCE)?;
    let version = number_attr(state, E_STATE, "version")?;
    let kind = match required_attr(state, E_STATE, "kind")?.trim() {
        "full" => Kind::Full,
        "delta" => Kind::Delta,
        other => {
            return Err(StateError::BadAttribute {
                element: E_STATE,
                attribute: "kind",
                value: other.to_owned(),
            })
        }
    };
    let chunk = optional_number_attr(state, E_STATE, "chunk")?.unwrap_or(1);
    let chunks = optional_number_attr(state, E_STATE, "chunks")?.unwrap_or(1);
    if chunk == 0 || chunk > chunks || (kind == Kind::Delta && chunks != 1) {
        return Err(StateError::BadChunk {
            kind: kind.as_str(),
            chunk,
            chunks,
        });
    }

    let mut servers = Vec::new();
    for list in root.load_children("svr-loadlevel-list") {
        for svr in list.load_children("svr-load") {
            servers.push(SvrLoad {
                id: required_attr(svr, E_SVR_LOAD, "svr-id")?.to_owned(),
                current: number(
                    svr.one_child("current-loadlevel", E_CURRENT, E_SVR_LOAD)?,
                    E_CURRENT,
                )?,
                max: number(svr.one_child("max-loadlevel", E_MAX, E_SVR_LOAD)?, E_MAX)?,
            });
        }
    }
    let mut candidates = Vec::new();
    for list in root.load_children("candidate-svr-list") {
        for uri in list.load_children("svr-uri") {
            candidates.push(non_empty(uri, E_SVR_URI)?);
        }
    }
    let active = number(
        root.one_child("active-svr-number", E_ACTIVE, E_PRESENCE)?,
        E_ACTIVE,
    )?;
    let mut users = Vec::new();
    for list in root.load_children("current-users-list") {
        users.push(users_from_tree(list)?);
    }
    let total_users = number(
        root.one_child("total-users-number", E_TOTAL, E_PRESENCE)?,
        E_TOTAL,
    )?;
    let mut removed = Vec::new();
    for list in root.load_children("removed-users") {
        for user in list.load_children("user-id") {
            removed.push(non_empty(user, E_USER_ID)?);
        }
    }
    Ok(ClusterState {
        version,
        kind,
        chunk,
        chunks,
        servers,
        candidates,
        active,
        users,
        total_users,
        removed,
    })
}

/// One `<load:current-users-list>`.
fn users_from_tree(list: &XElement) -> Result<ServerUsers, StateError> {
    let server_id = required_attr(list, E_USERS_LIST, "server-id")?.to_owned();
    let declared: Option<u64> = match list.load_children("current-users-number").next() {
        Some(el) => Some(number(el, E_USERS_NUMBER)?),
        None => None,
    };
    let mut users = Vec::new();
    for info in list.load_children("info-users") {
        let pres_type = match info
            .one_child("pres-type", E_PRES_TYPE, E_INFO_USERS)?
            .text
            .trim()
        {
            "xmpp" => PresType::Xmpp,
            "sip" => PresType::Sip,
            other => return Err(StateError::UnknownPresType(other.to_owned())),
        };
        users.push(UserInfo {
            user_id: required_attr(info, E_INFO_USERS, "user-id")?.to_owned(),
            pres_type,
            resources: number(
                info.one_child("resource-number", E_RESOURCES, E_INFO_USERS)?,
                E_RESOURCES,
            )?,
            pres_info: non_empty(
                info.one_child("pres-info", E_PRES_INFO, E_INFO_USERS)?,
                E_PRES_INFO,
            )?,
        });
    }
    if let Some(declared) = declared {
        if usize::try_from(declared).ok() != Some(users.len()) {
            return Err(StateError::CountMismatch {
                server_id,
                declared,
                found: users.len(),
            });
        }
    }
    Ok(ServerUsers { server_id, users })
}

/// The attribute `attribute` of `el`, present and not blank.
fn required_attr<'a>(
    el: &'a XElement,
    element: &'static str,
    attribute: &'static str,
) -> Result<&'a str, StateError> {
    match el.attr(attribute) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(StateError::MissingAttribute { element, attribute }),
    }
}

/// A required numeric attribute.
fn number_attr<T: std::str::FromStr>(
    el: &XElement,
    element: &'static str,
    attribute: &'static str,
) -> Result<T, StateError> {
    let value = required_attr(el, element, attribute)?;
    parse_number(value).ok_or_else(|| StateError::BadAttribute {
        element,
        attribute,
        value: value.to_owned(),
    })
}

/// An optional numeric attribute.
fn optional_number_attr<T: std::str::FromStr>(
    el: &XElement,
    element: &'static str,
    attribute: &'static str,
) -> Result<Option<T>, StateError> {
    match el.attr(attribute) {
        None => Ok(None),
        Some(_) => number_attr(el, element, attribute).map(Some),
    }
}

/// The element's content as a non-negative decimal number.
fn number<T: std::str::FromStr>(el: &XElement, element: &'static str) -> Result<T, StateError> {
    parse_number(&el.text).ok_or_else(|| StateError::BadValue {
        element,
        value: el.text.trim().to_owned(),
    })
}

/// Digits only (after trimming XML whitespace), within the range of `T`.
fn parse_number<T: std::str::FromStr>(text: &str) -> Option<T> {
    let t = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// The element's trimmed content, which must not be empty.
fn non_empty(el: &XElement, element: &'static str) -> Result<String, StateError> {
    let t = el.text.trim();
    if t.is_empty() {
        return Err(StateError::BadValue {
            element,
            value: String::new(),
        });
    }
    Ok(t.to_owned())
}

// ----- the replica ------------------------------------------------------------------

/// Why [`Replica::apply`] refused a document; the replica keeps its previous
/// complete state in every case.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ReplicaError {
    /// A chunk of a full snapshot that does not follow the previous one (wrong
    /// index, other version or other chunk count); the staged snapshot is dropped
    /// and the next one must start again at chunk 1.
    #[error("<load:state> chunk {chunk} of {chunks} of version {version} is out of order (expected {expected})")]
    OutOfOrder {
        /// Version of the refused chunk.
        version: u64,
        /// Its index.
        chunk: u32,
        /// Its chunk count.
        chunks: u32,
        /// What was expected, e.g. `chunk 1` or `chunk 3 of 5 of version 12`.
        expected: String,
    },
    /// A delta arrived before any complete snapshot.
    #[error("<load:state> delta version {version} arrived before a complete snapshot")]
    DeltaWithoutSnapshot {
        /// Version of the refused delta.
        version: u64,
    },
    /// The body did not parse ([`Replica::apply_xml`]).
    #[error(transparent)]
    Parse(#[from] StateError),
}

/// What the replica knows of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Index of the home in [`Table::ids`].
    home: u32,
    pres_type: PresType,
    resources: u32,
    pres_info: String,
}

/// One version of the cluster state, with the directory indexed by user.
#[derive(Debug, Clone, Default)]
struct Table {
    version: u64,
    servers: Vec<SvrLoad>,
    candidates: Vec<String>,
    active: u32,
    total_users: u64,
    /// Server ids that users are homed on (interned).
    ids: Vec<String>,
    /// Reverse of `ids`.
    id_index: HashMap<String, u32>,
    /// The directory.
    users: HashMap<String, Entry>,
}

impl Table {
    /// A table with the small parts of `doc` and no users.
    fn from_small_parts(doc: &mut ClusterState) -> Table {
        Table {
            version: doc.version,
            servers: std::mem::take(&mut doc.servers),
            candidates: std::mem::take(&mut doc.candidates),
            active: doc.active,
            total_users: doc.total_users,
            ..Table::default()
        }
    }

    /// Replaces the small parts with those of `doc` (a delta).
    fn set_small_parts(&mut self, doc: &mut ClusterState) {
        self.version = doc.version;
        self.servers = std::mem::take(&mut doc.servers);
        self.candidates = std::mem::take(&mut doc.candidates);
        self.active = doc.active;
        self.total_users = doc.total_users;
    }

    /// Index of `server_id`, interning it when new.
    fn intern(&mut self, server_id: String) -> u32 {
        if let Some(&i) = self.id_index.get(&server_id) {
            return i;
        }
        let i = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
        self.ids.push(server_id.clone());
        self.id_index.insert(server_id, i);
        i
    }

    /// Inserts or moves every user of `groups` (the last mention of a user wins).
    fn upsert(&mut self, groups: Vec<ServerUsers>) {
        for group in groups {
            let home = self.intern(group.server_id);
            for user in group.users {
                self.users.insert(
                    user.user_id,
                    Entry {
                        home,
                        pres_type: user.pres_type,
                        resources: user.resources,
                        pres_info: user.pres_info,
                    },
                );
            }
        }
    }
}

/// A staged full snapshot, waiting for its remaining chunks.
#[derive(Debug, Clone)]
struct Staging {
    table: Table,
    chunks: u32,
    next: u32,
}

/// The cluster state a worker keeps from the primary's NOTIFYs (DESIGN §3, §6):
/// the directory (user -> home) with live information, the server loads, the pool
/// and the active number.
///
/// A full snapshot is staged chunk by chunk and replaces the current state only
/// when its last chunk arrives, so the replica always answers from a complete
/// state. Deltas apply on top of the current complete state.
#[derive(Debug, Clone, Default)]
pub struct Replica {
    current: Table,
    complete: bool,
    staging: Option<Staging>,
}

impl Replica {
    /// An empty replica, not complete, version 0.
    pub fn new() -> Replica {
        Replica::default()
    }

    /// Applies one document.
    ///
    /// - A full chunk 1 starts a new snapshot (dropping any staged one); chunk `i > 1`
    ///   must be the next chunk of the staged snapshot (same version and count), else
    ///   [`ReplicaError::OutOfOrder`] and the staged snapshot is dropped. The last
    ///   chunk makes the staged snapshot the current state, whatever its version.
    /// - A delta whose version is above the current version replaces the server list,
    ///   candidates, active and total numbers, moves each listed user to the server
    ///   list it appears in (adding it when new), then drops the `removed` users. A
    ///   delta not newer than the current state is ignored (`Ok`). A delta before any
    ///   complete snapshot is [`ReplicaError::DeltaWithoutSnapshot`]. A staged
    ///   snapshot is left alone.
    pub fn apply(&mut self, mut doc: ClusterState) -> Result<(), ReplicaError> {
        match doc.kind {
            Kind::Full if doc.chunk <= 1 => {
                let mut table = Table::from_small_parts(&mut doc);
                table.upsert(std::mem::take(&mut doc.users));
                self.staging = Some(Staging {
                    table,
                    chunks: doc.chunks.max(1),
                    next: 2,
                });
            }
            Kind::Full => {
                let staged = self.staging.take();
                let expected = match &staged {
                    Some(s) => format!(
                        "chunk {} of {} of version {}",
                        s.next, s.chunks, s.table.version
                    ),
                    None => "chunk 1".to_owned(),
                };
                let mut staged = match staged {
                    Some(s)
                        if s.table.version == doc.version
                            && s.chunks == doc.chunks
                            && s.next == doc.chunk =>
                    {
                        s
                    }
                    _ => {
                        return Err(ReplicaError::OutOfOrder {
                            version: doc.version,
                            chunk: doc.chunk,
                            chunks: doc.chunks,
                            expected,
                        })
                    }
                };
                staged.table.upsert(std::mem::take(&mut doc.users));
                staged.next += 1;
                self.staging = Some(staged);
            }
            Kind::Delta => {
                if !self.complete {
                    return Err(ReplicaError::DeltaWithoutSnapshot {
                        version: doc.version,
                    });
                }
                if doc.version <= self.current.version {
                    return Ok(());
                }
                self.current.set_small_parts(&mut doc);
                self.current.upsert(std::mem::take(&mut doc.users));
                for user in &doc.removed {
                    self.current.users.remove(user);
                }
                return Ok(());
            }
        }
        if let Some(staged) = self.staging.take_if(|s| s.next > s.chunks) {
            self.current = staged.table;
            self.complete = true;
        }
        Ok(())
    }

    /// Parses a NOTIFY body and applies it (see [`Replica::apply`]).
    pub fn apply_xml(&mut self, body: &[u8]) -> Result<(), ReplicaError> {
        self.apply(ClusterState::parse(body)?)
    }

    /// The home server id of `user`, if the directory has it.
    pub fn home(&self, user: &str) -> Option<&str> {
        let entry = self.current.users.get(user)?;
        self.current
            .ids
            .get(usize::try_from(entry.home).ok()?)
            .map(String::as_str)
    }

    /// The server loads, in the order of the last document.
    pub fn servers(&self) -> &[SvrLoad] {
        &self.current.servers
    }

    /// The pool's candidate server URIs.
    pub fn candidates(&self) -> &[String] {
        &self.current.candidates
    }

    /// The active server number.
    pub fn active(&self) -> u32 {
        self.current.active
    }

    /// The total users number announced by the primary.
    pub fn total_users(&self) -> u64 {
        self.current.total_users
    }

    /// Version of the current state (0 before the first complete snapshot).
    pub fn version(&self) -> u64 {
        self.current.version
    }

    /// Number of users in the directory.
    pub fn len(&self) -> usize {
        self.current.users.len()
    }

    /// True when the directory has no user.
    pub fn is_empty(&self) -> bool {
        self.current.users.is_empty()
    }

    /// True once a full snapshot has been received completely.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The current state as a full snapshot, chunk 1 of 1, for the admin API's JSON:
    /// servers sorted by id, user lists by server id and users by user id (so the
    /// output is deterministic); servers without users have no user list.
    pub fn snapshot(&self) -> ClusterState {
        let t = &self.current;
        let mut servers = t.servers.clone();
        servers.sort_by(|a, b| a.id.cmp(&b.id));
        let mut groups: Vec<Vec<UserInfo>> = vec![Vec::new(); t.ids.len()];
        for (user_id, entry) in &t.users {
            if let Some(group) = usize::try_from(entry.home)
                .ok()
                .and_then(|i| groups.get_mut(i))
            {
                group.push(UserInfo {
                    user_id: user_id.clone(),
                    pres_type: entry.pres_type,
                    resources: entry.resources,
                    pres_info: entry.pres_info.clone(),
                });
            }
        }
        let mut users: Vec<ServerUsers> = t
            .ids
            .iter()
            .zip(groups)
            .filter(|(_, g)| !g.is_empty())
            .map(|(id, mut g)| {
                g.sort_by(|a, b| a.user_id.cmp(&b.user_id));
                ServerUsers {
                    server_id: id.clone(),
                    users: g,
                }
            })
            .collect();
        users.sort_by(|a, b| a.server_id.cmp(&b.server_id));
        ClusterState {
            version: t.version,
            kind: Kind::Full,
            chunk: 1,
            chunks: 1,
            servers,
            candidates: t.candidates.clone(),
            active: t.active,
            users,
            total_users: t.total_users,
            removed: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTITY: &str = "sip:cluster@example.com";

    fn user(id: &str, pres_type: PresType, resources: u32, open: bool) -> UserInfo {
        UserInfo {
            user_id: id.into(),
            pres_type,
            resources,
            pres_info: if open { "open" } else { "closed" }.into(),
        }
    }

    fn svr(id: &str, current: u64, max: u64) -> SvrLoad {
        SvrLoad {
            id: id.into(),
            current,
            max,
        }
    }

    fn sample_full() -> ClusterState {
        ClusterState {
            version: 12,
            kind: Kind::Full,
            chunk: 1,
            chunks: 1,
            servers: vec![svr("node1", 40, 100), svr("node2", 7, 100)],
            candidates: vec!["sip:pool1@10.0.0.4:5060".into()],
            active: 2,
            users: vec![
                ServerUsers {
                    server_id: "node1".into(),
                    users: vec![
                        user("alice", PresType::Xmpp, 3, true),
                        user("a&b<\"c\">", PresType::Sip, 0, false),
                    ],
                },
                ServerUsers {
                    server_id: "node2".into(),
                    users: vec![user("carol", PresType::Sip, 1, true)],
                },
            ],
            total_users: 3,
            removed: Vec::new(),
        }
    }

    fn delta(version: u64, users: Vec<ServerUsers>, removed: Vec<&str>) -> ClusterState {
        ClusterState {
            version,
            kind: Kind::Delta,
            servers: vec![svr("node1", 41, 100), svr("node2", 8, 100)],
            candidates: Vec::new(),
            active: 2,
            users,
            total_users: 2,
            removed: removed.into_iter().map(String::from).collect(),
            ..ClusterState::default()
        }
    }

    fn parse(xml: &str) -> ClusterState {
        match ClusterState::parse(xml.as_bytes()) {
            Ok(doc) => doc,
            Err(e) => panic!("{e}: {xml}"),
        }
    }

    fn err(xml: &str) -> StateError {
        match ClusterState::parse(xml.as_bytes()) {
            Ok(doc) => panic!("accepted {doc:?}"),
            Err(e) => e,
        }
    }

    /// Wraps load elements in a PIDF `<presence>`.
    fn doc(inner: &str) -> String {
        format!(
            "<presence xmlns='urn:ietf:params:xml:ns:pidf' xmlns:load='urn:rendezvous:params:xml:ns:load' entity='sip:cluster@example.com'>{inner}</presence>"
        )
    }

    const MIN_TAIL: &str =
        "<load:active-svr-number>1</load:active-svr-number><load:total-users-number>0</load:total-users-number>";

    #[test]
    fn full_document_round_trips_and_serialises_exactly() {
        let state = sample_full();
        let xml = state.to_xml(ENTITY);
        assert!(xml.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
             xmlns:load=\"urn:rendezvous:params:xml:ns:load\" entity=\"sip:cluster@example.com\">\
             <tuple id=\"cluster\"><status><basic>open</basic></status></tuple>\
             <load:state version=\"12\" kind=\"full\" chunk=\"1\" chunks=\"1\"/>\
             <load:svr-loadlevel-list><load:svr-load svr-id=\"node1\"><load:current-loadlevel>40</load:current-loadlevel>\
             <load:max-loadlevel>100</load:max-loadlevel></load:svr-load>"
        ), "{xml}");
        assert!(xml.contains(
            "<load:candidate-svr-list><load:svr-uri>sip:pool1@10.0.0.4:5060</load:svr-uri></load:candidate-svr-list>\
             <load:active-svr-number>2</load:active-svr-number>\
             <load:current-users-list server-id=\"node1\"><load:current-users-number>2</load:current-users-number>\
             <load:info-users user-id=\"alice\"><load:pres-type>xmpp</load:pres-type>\
             <load:resource-number>3</load:resource-number><load:pres-info>open</load:pres-info></load:info-users>\
             <load:info-users user-id=\"a&amp;b&lt;&quot;c&quot;&gt;\">"
        ), "{xml}");
        assert!(xml.ends_with("<load:total-users-number>3</load:total-users-number></presence>"));
        assert!(!xml.contains("removed-users"));
        assert_eq!(parse(&xml), state);
    }

    #[test]
    fn delta_document_round_trips() {
        let d = delta(
            13,
            vec![ServerUsers {
                server_id: "node2".into(),
                users: vec![user("alice", PresType::Xmpp, 2, true)],
            }],
            vec!["bob", "x<y"],
        );
        let xml = d.to_xml(ENTITY);
        assert!(
            xml.contains("<load:state version=\"13\" kind=\"delta\" chunk=\"1\" chunks=\"1\"/>")
        );
        assert!(xml.contains(
            "<load:removed-users><load:user-id>bob</load:user-id><load:user-id>x&lt;y</load:user-id></load:removed-users></presence>"
        ));
        assert!(!xml.contains("candidate-svr-list"));
        assert_eq!(parse(&xml), d);
        assert_eq!(d.chunks(ENTITY, 2048), vec![xml]);
    }

    #[test]
    fn parses_a_hand_written_document() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- the example of the design -->
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:load="urn:rendezvous:params:xml:ns:load" entity="sip:cluster@example.com">
  <tuple id="cluster"><status><basic>open</basic></status></tuple>
  <load:state version="12" kind="full" chunk="1" chunks="3"/>
  <load:svr-loadlevel-list>
    <load:svr-load svr-id="node1"><load:current-loadlevel> 40 </load:current-loadlevel><load:max-loadlevel>100</load:max-loadlevel></load:svr-load>
  </load:svr-loadlevel-list>
  <load:candidate-svr-list><load:svr-uri>
     sip:pool1@10.0.0.4:5060 </load:svr-uri></load:candidate-svr-list>
  <ext xmlns="urn:example:foreign"><load:state version="x"/></ext>
  <load:future-element/>
  <l:active-svr-number xmlns:l="urn:rendezvous:params:xml:ns:load">2</l:active-svr-number>
  <current-users-list xmlns="urn:rendezvous:params:xml:ns:load" server-id="node1">
    <current-users-number>1</current-users-number>
    <info-users user-id="alice"><pres-type>xmpp</pres-type><resource-number>3</resource-number><pres-info>open</pres-info><mood>ok</mood></info-users>
  </current-users-list>
  <load:total-users-number>90</load:total-users-number>
  <load:removed-users><load:user-id>bob</load:user-id></load:removed-users>
</presence>
"#;
        assert_eq!(
            parse(xml),
            ClusterState {
                version: 12,
                kind: Kind::Full,
                chunk: 1,
                chunks: 3,
                servers: vec![svr("node1", 40, 100)],
                candidates: vec!["sip:pool1@10.0.0.4:5060".into()],
                active: 2,
                users: vec![ServerUsers {
                    server_id: "node1".into(),
                    users: vec![user("alice", PresType::Xmpp, 3, true)],
                }],
                total_users: 90,
                removed: vec!["bob".into()],
            }
        );
    }

    #[test]
    fn invalid_documents_are_refused_naming_the_element() {
        let state = "<load:state version='1' kind='full'/>";
        assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:cpim-pidf' entity='e'/>"),
            StateError::NotPresence {
                name: "presence".into(),
                ns: "urn:ietf:params:xml:ns:cpim-pidf".into()
            }
        );
        assert_eq!(
            err("<load:state xmlns:load='urn:rendezvous:params:xml:ns:load' version='1' kind='full'/>"),
            StateError::NotPresence {
                name: "state".into(),
                ns: LOAD_NS.into()
            }
        );
        assert_eq!(
            err(&doc(MIN_TAIL)),
            StateError::Missing {
                element: "load:state",
                parent: "presence"
            }
        );
        // Our element in another namespace is not ours.
        assert_eq!(
            err(&doc(&format!(
                "<state xmlns='urn:other' version='1' kind='full'/>{MIN_TAIL}"
            ))),
            StateError::Missing {
                element: "load:state",
                parent: "presence"
            }
        );
        assert_eq!(
            err(&doc(&format!("{state}{state}{MIN_TAIL}"))),
            StateError::Duplicate {
                element: "load:state",
                parent: "presence"
            }
        );
        assert_eq!(
            err(&doc(&format!("<load:state kind='full'/>{MIN_TAIL}"))),
            StateError::MissingAttribute {
                element: "load:state",
                attribute: "version"
            }
        );
        assert_eq!(
            err(&doc(&format!(
                "<load:state version='-1' kind='full'/>{MIN_TAIL}"
            ))),
            StateError::BadAttribute {
                element: "load:state",
                attribute: "version",
                value: "-1".into()
            }
        );
        assert_eq!(
            err(&doc(&format!(
                "<load:state version='1' kind='partial'/>{MIN_TAIL}"
            ))),
            StateError::BadAttribute {
                element: "load:state",
                attribute: "kind",
                value: "partial".into()
            }
        );
        assert_eq!(
            err(&doc(&format!(
                "<load:state version='1' kind='full' chunk='4' chunks='3'/>{MIN_TAIL}"
            ))),
            StateError::BadChunk {
                kind: "full",
                chunk: 4,
                chunks: 3
            }
        );
        assert_eq!(
            err(&doc(&format!(
                "<load:state version='1' kind='full' chunk='0' chunks='3'/>{MIN_TAIL}"
            ))),
            StateError::BadChunk {
                kind: "full",
                chunk: 0,
                chunks: 3
            }
        );
        assert_eq!(
            err(&doc(&format!(
                "<load:state version='1' kind='delta' chunk='1' chunks='2'/>{MIN_TAIL}"
            ))),
            StateError::BadChunk {
                kind: "delta",
                chunk: 1,
                chunks: 2
            }
        );
        assert_eq!(
            err(&doc(&format!(
                "{state}<load:svr-loadlevel-list><load:svr-load svr-id='n'><load:current-loadlevel>4x</load:current-loadlevel>\
                 <load:max-loadlevel>1</load:max-loadlevel></load:svr-load></load:svr-loadlevel-list>{MIN_TAIL}"
            ))),
            StateError::BadValue {
                element: "load:current-loadlevel",
                value: "4x".into()
            }
        );
        assert_eq!(
            err(&doc(&format!(
                "{state}<load:svr-loadlevel-list><load:svr-load svr-id='n'><load:current-loadlevel>4</load:current-loadlevel>\
                 </load:svr-load></load:svr-loadlevel-list>{MIN_TAIL}"
            ))),
            StateError::Missing {
                element: "load:max-loadlevel",
                parent: "load:svr-load"
            }
        );
        assert_eq!(
            err(&doc(&format!(
                "{state}<load:svr-loadlevel-list><load:svr-load><load:current-loadlevel>4</load:current-loadlevel>\
                 <load:max-loadlevel>1</load:max-loadlevel></load:svr-load></load:svr-loadlevel-list>{MIN_TAIL}"
            ))),
            StateError::MissingAttribute {
                element: "load:svr-load",
                attribute: "svr-id"
            }
        );
        assert_eq!(
            err(&doc(&format!(
                "{state}<load:active-svr-number>99999999999</load:active-svr-number><load:total-users-number>0</load:total-users-number>"
            ))),
            StateError::BadValue {
                element: "load:active-svr-number",
                value: "99999999999".into()
            }
        );
        assert_eq!(
            err(&doc(&format!(
                "{state}<load:active-svr-number>1</load:active-svr-number>"
            ))),
            StateError::Missing {
                element: "load:total-users-number",
                parent: "presence"
            }
        );
        let info = |pres_type: &str, count: &str| {
            doc(&format!(
                "{state}<load:active-svr-number>1</load:active-svr-number>\
                 <load:current-users-list server-id='n'><load:current-users-number>{count}</load:current-users-number>\
                 <load:info-users user-id='u'><load:pres-type>{pres_type}</load:pres-type>\
                 <load:resource-number>1</load:resource-number><load:pres-info>open</load:pres-info></load:info-users>\
                 </load:current-users-list><load:total-users-number>1</load:total-users-number>"
            ))
        };
        assert_eq!(
            parse(&info("sip", "1")).users[0].users[0].pres_type,
            PresType::Sip
        );
        assert_eq!(
            err(&info("irc", "1")),
            StateError::UnknownPresType("irc".into())
        );
        assert_eq!(
            err(&info("sip", "2")),
            StateError::CountMismatch {
                server_id: "n".into(),
                declared: 2,
                found: 1
            }
        );
        assert_eq!(
            err(&info("xmpp", "")),
            StateError::BadValue {
                element: "load:current-users-number",
                value: String::new()
            }
        );
        assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><tuple>"),
            StateError::Xml("<tuple> is not closed".into())
        );
        assert!(matches!(
            err(&doc(&format!("{state}<load:state>"))),
            StateError::Xml(m) if m.ends_with("in <load:state>")
        ));
        assert!(matches!(err(""), StateError::Xml(_)));
        assert_eq!(
            err(&doc(&format!(
                "{state}<load:active-svr-number>&lol;</load:active-svr-number>"
            ))),
            StateError::Entity {
                name: "lol".into(),
                element: "load:active-svr-number".into()
            }
        );
        assert_eq!(
            ClusterState::parse(b"<presence \xff/>"),
            Err(StateError::NotUtf8)
        );
        let body = sample_full().to_xml(ENTITY);
        assert_eq!(
            ClusterState::parse_limited(body.as_bytes(), 100),
            Err(StateError::TooLarge {
                size: body.len(),
                max: 100
            })
        );
        let deep = doc(&format!(
            "{state}{}{}{MIN_TAIL}",
            "<x:d xmlns:x='urn:x'>".repeat(MAX_DEPTH),
            "</x:d>".repeat(MAX_DEPTH)
        ));
        assert_eq!(
            err(&deep),
            StateError::TooDeep {
                element: "x:d".into(),
                max: MAX_DEPTH
            }
        );
        assert_eq!(
            StateError::Missing {
                element: "load:state",
                parent: "presence"
            }
            .to_string(),
            "<load:state> is missing from <presence>"
        );
        assert_eq!(
            StateError::UnknownPresType("irc".into()).to_string(),
            "unknown <load:pres-type> 'irc' (expected xmpp or sip)"
        );
    }

    #[test]
    fn doctype_is_refused() {
        let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE presence [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:load="urn:rendezvous:params:xml:ns:load" entity="e">
<load:state version="1" kind="full"/><load:active-svr-number>&lol1;</load:active-svr-number></presence>"#;
        assert_eq!(err(bomb), StateError::Doctype);
    }

    /// 1,000 users over 3 servers.
    fn big_snapshot() -> ClusterState {
        let mut users: Vec<ServerUsers> = (1..=3)
            .map(|n| ServerUsers {
                server_id: format!("node{n}"),
                users: Vec::new(),
            })
            .collect();
        for i in 0..1000u32 {
            let pres_type = if i % 2 == 0 {
                PresType::Xmpp
            } else {
                PresType::Sip
            };
            users[(i % 3) as usize].users.push(user(
                &format!("user{i:04}@example.com"),
                pres_type,
                i % 7,
                i % 5 != 0,
            ));
        }
        ClusterState {
            version: 77,
            servers: vec![
                svr("node1", 334, 400),
                svr("node2", 333, 400),
                svr("node3", 333, 400),
            ],
            candidates: vec![
                "sip:pool1@10.0.0.4:5060".into(),
                "sip:pool2@10.0.0.5:5060".into(),
            ],
            active: 3,
            users,
            total_users: 1000,
            ..ClusterState::default()
        }
    }

    #[test]
    fn chunks_fit_parse_and_rebuild_the_directory() {
        let state = big_snapshot();
        let chunks = state.chunks(ENTITY, 4096);
        let n = u32::try_from(chunks.len()).unwrap();
        assert!(n > 10, "{n} chunks");
        let mut replica = Replica::new();
        let mut seen = 0;
        for (i, xml) in chunks.iter().enumerate() {
            assert!(xml.len() <= 4096, "chunk {i} has {} bytes", xml.len());
            let parsed = parse(xml);
            assert_eq!(parsed.version, 77);
            assert_eq!(parsed.kind, Kind::Full);
            assert_eq!(
                (parsed.chunk, parsed.chunks),
                (u32::try_from(i).unwrap() + 1, n)
            );
            assert_eq!(parsed.servers, state.servers);
            assert_eq!(parsed.candidates, state.candidates);
            assert_eq!((parsed.active, parsed.total_users), (3, 1000));
            assert!(parsed.users.iter().all(|g| !g.users.is_empty()));
            seen += parsed.users.iter().map(|g| g.users.len()).sum::<usize>();
            assert!(!replica.is_complete());
            replica.apply(parsed).unwrap();
        }
        assert_eq!(seen, 1000);
        assert!(replica.is_complete());
        assert_eq!(replica.len(), 1000);
        assert_eq!(replica.version(), 77);
        assert_eq!(replica.active(), 3);
        assert_eq!(replica.total_users(), 1000);
        assert_eq!(replica.servers(), state.servers.as_slice());
        assert_eq!(replica.candidates(), state.candidates.as_slice());
        for group in &state.users {
            for u in &group.users {
                assert_eq!(replica.home(&u.user_id), Some(group.server_id.as_str()));
            }
        }
        assert_eq!(replica.home("nobody"), None);
        // The replica's snapshot is the (already sorted) original.
        assert_eq!(replica.snapshot(), state);
        // A server list split over chunks repeats its server-id.
        let lists: usize = chunks
            .iter()
            .map(|c| c.matches("<load:current-users-list ").count())
            .sum();
        assert!(lists > 3);
    }

    #[test]
    fn a_big_delta_is_split_into_newer_deltas_that_fit() {
        // A replica that has an empty snapshot of version 76, then 1,000 users moved in one
        // round (one delta of version 77, about 100 KB): more than a 64 KiB SIP message.
        let mut base = big_snapshot();
        base.users.clear();
        base.version = 76;
        let mut replica = Replica::new();
        for xml in base.chunks(ENTITY, 4096) {
            replica.apply(parse(&xml)).unwrap();
        }
        let mut delta = big_snapshot();
        delta.kind = Kind::Delta;
        delta.removed = (0..300).map(|i| format!("gone{i}")).collect();
        assert!(delta.to_xml(ENTITY).len() > 65_536);
        let parts = delta.split_delta(ENTITY, 8192);
        assert!(parts.len() > 10, "{} parts", parts.len());
        let mut seen = 0;
        for (i, part) in parts.iter().enumerate() {
            let xml = part.to_xml(ENTITY);
            assert!(xml.len() <= 8192, "part {i} has {} bytes", xml.len());
            let parsed = parse(&xml);
            assert_eq!(parsed.kind, Kind::Delta);
            assert_eq!(parsed.version, 77 + i as u64, "consecutive versions");
            assert_eq!(parsed.servers, delta.servers);
            seen += parsed.users.iter().map(|g| g.users.len()).sum::<usize>();
            replica.apply(parsed).unwrap();
        }
        assert_eq!(seen, 1000);
        assert_eq!(replica.version(), 77 + parts.len() as u64 - 1);
        for group in &delta.users {
            for u in &group.users {
                assert_eq!(replica.home(&u.user_id), Some(group.server_id.as_str()));
            }
        }
        let removed: usize = parts.iter().map(|p| p.removed.len()).sum();
        assert_eq!(removed, 300);
        // A delta that fits is one part, unchanged; a full snapshot is never split here.
        let mut small = delta.clone();
        small.users.truncate(1);
        small.users[0].users.truncate(3);
        small.removed.clear();
        assert_eq!(small.split_delta(ENTITY, 65_536), vec![small.clone()]);
        assert_eq!(big_snapshot().split_delta(ENTITY, 8192).len(), 1);
    }

    #[test]
    fn chunking_edge_cases() {
        let mut empty = big_snapshot();
        empty.users.clear();
        empty.chunk = 5;
        empty.chunks = 9;
        let chunks = empty.chunks(ENTITY, 2048);
        assert_eq!(chunks.len(), 1);
        let only = parse(&chunks[0]);
        assert_eq!((only.chunk, only.chunks), (1, 1));
        assert!(only.users.is_empty());

        // A small snapshot is one chunk, equal to its document; removed is not sent.
        let mut small = sample_full();
        small.removed = vec!["zed".into()];
        let chunks = small.chunks(ENTITY, 2048);
        small.removed.clear();
        assert_eq!(chunks, vec![small.to_xml(ENTITY)]);

        // An entry larger than the budget still goes out, alone.
        let mut huge = sample_full();
        huge.users[0].users[0].user_id = "x".repeat(3000);
        let chunks = huge.chunks(ENTITY, 2048);
        assert_eq!(chunks.len(), 2);
        assert!(chunks[0].len() > 3000);
        let mut replica = Replica::new();
        for c in &chunks {
            replica.apply(parse(c)).unwrap();
        }
        assert_eq!(
            replica
                .snapshot()
                .users
                .iter()
                .map(|g| g.users.len())
                .sum::<usize>(),
            3
        );
        assert!(chunks[1].len() <= 2048);
    }

    fn fed(state: &ClusterState, max_bytes: usize) -> (Replica, Vec<ClusterState>) {
        let docs: Vec<ClusterState> = state
            .chunks(ENTITY, max_bytes)
            .iter()
            .map(|c| parse(c))
            .collect();
        let mut replica = Replica::new();
        for d in docs.clone() {
            replica.apply(d).unwrap();
        }
        (replica, docs)
    }

    #[test]
    fn out_of_order_chunks_are_refused_and_the_previous_state_kept() {
        let first = sample_full();
        let (mut replica, _) = fed(&first, 2048);
        let before = replica.snapshot();
        let mut sorted = first.clone();
        sorted.users[0].users.reverse();
        assert_eq!(before, sorted);

        let mut next = big_snapshot();
        next.version = 80;
        let docs: Vec<ClusterState> = next.chunks(ENTITY, 4096).iter().map(|c| parse(c)).collect();
        replica.apply(docs[0].clone()).unwrap();
        replica.apply(docs[1].clone()).unwrap();
        let e = replica.apply(docs[3].clone()).unwrap_err();
        assert_eq!(
            e,
            ReplicaError::OutOfOrder {
                version: 80,
                chunk: 4,
                chunks: docs[0].chunks,
                expected: format!("chunk 3 of {} of version 80", docs[0].chunks),
            }
        );
        assert!(replica.is_complete());
        assert_eq!(replica.snapshot(), before);
        // The staged snapshot is gone: the following chunks are refused too.
        assert!(matches!(
            replica.apply(docs[2].clone()),
            Err(ReplicaError::OutOfOrder { expected, .. }) if expected == "chunk 1"
        ));
        // A chunk of another version does not continue a staged snapshot.
        replica.apply(docs[0].clone()).unwrap();
        let mut other = docs[1].clone();
        other.version = 81;
        assert!(replica.apply(other).is_err());
        assert_eq!(replica.snapshot(), before);
        // Starting again at chunk 1 works, and only the last chunk switches state.
        let last = docs.len() - 1;
        for (i, d) in docs.iter().enumerate() {
            replica.apply(d.clone()).unwrap();
            assert_eq!(replica.version(), if i == last { 80 } else { 12 });
        }
        assert_eq!(replica.len(), 1000);
        // A fresh replica refuses a chunk that is not first.
        assert!(Replica::new().apply(docs[1].clone()).is_err());
    }

    #[test]
    fn delta_moves_removes_and_older_deltas_are_ignored() {
        let (mut replica, _) = fed(&sample_full(), 2048);
        assert_eq!(replica.home("alice"), Some("node1"));
        assert_eq!(
            Replica::new().apply(delta(13, Vec::new(), Vec::new())),
            Err(ReplicaError::DeltaWithoutSnapshot { version: 13 })
        );

        let d = delta(
            13,
            vec![ServerUsers {
                server_id: "node2".into(),
                users: vec![
                    user("alice", PresType::Xmpp, 1, false),
                    user("dave", PresType::Sip, 2, true),
                ],
            }],
            vec!["carol"],
        );
        replica.apply(parse(&d.to_xml(ENTITY))).unwrap();
        assert_eq!(replica.version(), 13);
        assert_eq!(replica.home("alice"), Some("node2"));
        assert_eq!(replica.home("dave"), Some("node2"));
        assert_eq!(replica.home("carol"), None);
        assert_eq!(replica.home("a&b<\"c\">"), Some("node1"));
        assert_eq!(replica.len(), 3);
        assert_eq!(replica.servers(), d.servers.as_slice());
        assert!(replica.candidates().is_empty());
        let after = replica.snapshot();
        assert_eq!(
            after.users,
            vec![
                ServerUsers {
                    server_id: "node1".into(),
                    users: vec![user("a&b<\"c\">", PresType::Sip, 0, false)],
                },
                ServerUsers {
                    server_id: "node2".into(),
                    users: vec![
                        user("alice", PresType::Xmpp, 1, false),
                        user("dave", PresType::Sip, 2, true)
                    ],
                },
            ]
        );

        // Older and equal versions change nothing.
        let stale = delta(
            12,
            vec![ServerUsers {
                server_id: "node1".into(),
                users: vec![user("alice", PresType::Xmpp, 9, true)],
            }],
            vec!["dave"],
        );
        replica.apply(stale).unwrap();
        replica.apply(delta(13, Vec::new(), vec!["alice"])).unwrap();
        assert_eq!(replica.snapshot(), after);

        // Removing every user of a server drops its list from the snapshot.
        replica
            .apply(delta(14, Vec::new(), vec!["a&b<\"c\">"]))
            .unwrap();
        let snap = replica.snapshot();
        assert_eq!(snap.version, 14);
        assert_eq!(snap.users.len(), 1);
        assert_eq!(snap.users[0].server_id, "node2");
    }

    #[test]
    fn apply_xml_parses_then_applies() {
        let mut replica = Replica::new();
        replica
            .apply_xml(sample_full().to_xml(ENTITY).as_bytes())
            .unwrap();
        assert_eq!(replica.home("carol"), Some("node2"));
        assert!(matches!(
            replica.apply_xml(b"<nope/>"),
            Err(ReplicaError::Parse(StateError::NotPresence { .. }))
        ));
        assert_eq!(replica.len(), 3);
    }

    #[test]
    fn snapshot_is_sorted_and_serialises_to_json() {
        let mut state = sample_full();
        state.servers.reverse();
        state.users.reverse();
        let (replica, _) = fed(&state, 2048);
        let snap = replica.snapshot();
        assert_eq!(snap.servers[0].id, "node1");
        assert_eq!(snap.users[0].server_id, "node1");
        assert_eq!(snap.users[0].users[0].user_id, "a&b<\"c\">");
        assert_eq!(snap.users[0].users[1].user_id, "alice");

        let json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&snap).unwrap()).unwrap();
        let obj = json.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "active",
                "candidates",
                "chunk",
                "chunks",
                "kind",
                "removed",
                "servers",
                "total_users",
                "users",
                "version"
            ]
        );
        assert_eq!(json["kind"], "full");
        assert_eq!(json["version"], 12);
        assert_eq!(
            json["servers"][0],
            serde_json::json!({"id": "node1", "current": 40, "max": 100})
        );
        assert_eq!(json["candidates"][0], "sip:pool1@10.0.0.4:5060");
        assert_eq!(json["users"][0]["server_id"], "node1");
        assert_eq!(
            json["users"][0]["users"][1],
            serde_json::json!({"user_id": "alice", "pres_type": "xmpp", "resources": 3, "pres_info": "open"})
        );
        assert_eq!(json["total_users"], 3);
        let back: ClusterState = serde_json::from_value(json).unwrap();
        assert_eq!(back, snap);
        assert_eq!(serde_json::to_value(Kind::Delta).unwrap(), "delta");
        assert_eq!(serde_json::to_value(PresType::Sip).unwrap(), "sip");
    }

    /// Truncations and byte mutations never panic; what is accepted round-trips.
    #[test]
    fn mutated_input_never_panics() {
        let source = sample_full().to_xml(ENTITY);
        let bytes = source.as_bytes();
        let mut accepted = 0;
        let mut check = |input: &[u8]| {
            if let Ok(doc) = ClusterState::parse(input) {
                accepted += 1;
                assert_eq!(parse(&doc.to_xml(ENTITY)), doc);
            }
        };
        for end in 0..=bytes.len() {
            check(&bytes[..end]);
        }
        for i in 0..bytes.len() {
            for b in [b'<', b'>', b'&', b'"', b':', b'/', b'9'] {
                let mut m = bytes.to_vec();
                m[i] = b;
                check(&m);
            }
        }
        assert!(accepted > 50, "{accepted}");
    }
}
