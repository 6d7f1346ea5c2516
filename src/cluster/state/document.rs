//! The cluster state document itself: its typed readers and writers (the load-control
//! extensions inside the PIDF envelope of [`crate::pidf`]), its chunking and the splitting
//! of large deltas.

use std::fmt::Write as _;

use super::{
    ClusterState, Kind, PresType, ServerUsers, StateError, SvrLoad, UserInfo, LOAD_NS, MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
};
use crate::pidf::{self, Basic, Tuple};
use crate::xml::{escape_attr_in, escape_text, Element, Limits, Quote};

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

impl ClusterState {
    /// Parses a body of at most [`MAX_DOCUMENT_BYTES`].
    pub fn parse(body: &[u8]) -> Result<ClusterState, StateError> {
        ClusterState::parse_limited(body, MAX_DOCUMENT_BYTES)
    }

    /// Parses a body, refusing it when it is larger than `max_bytes`.
    pub fn parse_limited(body: &[u8], max_bytes: usize) -> Result<ClusterState, StateError> {
        let limits = Limits {
            max_bytes,
            max_depth: MAX_DEPTH,
        };
        let root = pidf::read::parse_envelope(body, &limits)?;
        ClusterState::try_from(&root)
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
    pidf::write::open_presence(entity, &[("load", LOAD_NS)], out);
    pidf::write::tuple(&Tuple::with_basic("cluster", Basic::Open), out);
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
            escape_attr_in(&svr.id, Quote::Double, out);
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
    escape_attr_in(&user.user_id, Quote::Double, out);
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
    escape_attr_in(server_id, Quote::Double, out);
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
    pidf::write::close_presence(out);
}

// ----- reading -----------------------------------------------------------------------

/// Whether `el` is `local` in [`LOAD_NS`].
fn is_load(el: &Element, local: &str) -> bool {
    el.ns == LOAD_NS && el.name == local
}

/// The children of `el` that are `local` in [`LOAD_NS`].
fn load_children<'a>(el: &'a Element, local: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
    el.elements().filter(move |c| is_load(c, local))
}

/// The only child `local` of `el` in [`LOAD_NS`]; `Missing`/`Duplicate` name `element` and
/// `parent`.
fn one_child<'a>(
    el: &'a Element,
    local: &'a str,
    element: &'static str,
    parent: &'static str,
) -> Result<&'a Element, StateError> {
    let mut it = load_children(el, local);
    let first = it.next().ok_or(StateError::Missing { element, parent })?;
    if it.next().is_some() {
        return Err(StateError::Duplicate { element, parent });
    }
    Ok(first)
}

/// Maps the parsed root to a [`ClusterState`].
impl TryFrom<&Element> for ClusterState {
    type Error = StateError;

    /// Reads the load-control extensions of a PIDF `<presence>` root (checked by
    /// [`pidf::read::parse_envelope`]); the tuple and unknown elements are ignored.
    fn try_from(root: &Element) -> Result<ClusterState, StateError> {
        state_from_tree(root)
    }
}

/// Reads the load-control extensions of `root`.
fn state_from_tree(root: &Element) -> Result<ClusterState, StateError> {
    let state = one_child(root, "state", E_STATE, E_PRESENCE)?;
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
    for list in load_children(root, "svr-loadlevel-list") {
        for svr in load_children(list, "svr-load") {
            servers.push(SvrLoad {
                id: required_attr(svr, E_SVR_LOAD, "svr-id")?.to_owned(),
                current: number(
                    one_child(svr, "current-loadlevel", E_CURRENT, E_SVR_LOAD)?,
                    E_CURRENT,
                )?,
                max: number(one_child(svr, "max-loadlevel", E_MAX, E_SVR_LOAD)?, E_MAX)?,
            });
        }
    }
    let mut candidates = Vec::new();
    for list in load_children(root, "candidate-svr-list") {
        for uri in load_children(list, "svr-uri") {
            candidates.push(non_empty(uri, E_SVR_URI)?);
        }
    }
    let active = number(
        one_child(root, "active-svr-number", E_ACTIVE, E_PRESENCE)?,
        E_ACTIVE,
    )?;
    let mut users = Vec::new();
    for list in load_children(root, "current-users-list") {
        users.push(users_from_tree(list)?);
    }
    let total_users = number(
        one_child(root, "total-users-number", E_TOTAL, E_PRESENCE)?,
        E_TOTAL,
    )?;
    let mut removed = Vec::new();
    for list in load_children(root, "removed-users") {
        for user in load_children(list, "user-id") {
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
fn users_from_tree(list: &Element) -> Result<ServerUsers, StateError> {
    let server_id = required_attr(list, E_USERS_LIST, "server-id")?.to_owned();
    let declared: Option<u64> = match load_children(list, "current-users-number").next() {
        Some(el) => Some(number(el, E_USERS_NUMBER)?),
        None => None,
    };
    let mut users = Vec::new();
    for info in load_children(list, "info-users") {
        let pres_type = match one_child(info, "pres-type", E_PRES_TYPE, E_INFO_USERS)?
            .text_ref()
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
                one_child(info, "resource-number", E_RESOURCES, E_INFO_USERS)?,
                E_RESOURCES,
            )?,
            pres_info: non_empty(
                one_child(info, "pres-info", E_PRES_INFO, E_INFO_USERS)?,
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
    el: &'a Element,
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
    el: &Element,
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
    el: &Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<Option<T>, StateError> {
    match el.attr(attribute) {
        None => Ok(None),
        Some(_) => number_attr(el, element, attribute).map(Some),
    }
}

/// The element's content as a non-negative decimal number.
fn number<T: std::str::FromStr>(el: &Element, element: &'static str) -> Result<T, StateError> {
    let text = el.text_ref();
    parse_number(&text).ok_or_else(|| StateError::BadValue {
        element,
        value: text.trim().to_owned(),
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
fn non_empty(el: &Element, element: &'static str) -> Result<String, StateError> {
    let text = el.text_ref();
    let t = text.trim();
    if t.is_empty() {
        return Err(StateError::BadValue {
            element,
            value: String::new(),
        });
    }
    Ok(t.to_owned())
}
