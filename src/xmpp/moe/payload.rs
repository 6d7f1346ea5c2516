//! The MOE-MP payloads (`docs/moe-mp.md` §1–§4): typed, read from and written to elements.

use std::collections::HashSet;

use crate::xml::Element;
use crate::xmpp::jid::Jid;
use crate::xmpp::stanza::IqType;

use super::error::{invalid, MoeError};
use super::*;

/// A listening P2P endpoint (§2): where the other side connects, with its one-time token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP literal.
    pub host: String,
    /// TCP port, 1–65535.
    pub port: u16,
    /// One-time token, 8–128 characters of `[A-Za-z0-9_-]`.
    pub token: String,
}

/// A file named in a request, offer or accept (§2.2–§2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDesc {
    /// Plain file name (no directory part).
    pub name: String,
    /// Size in bytes, when announced.
    pub size: Option<u64>,
    /// SHA-256 as 64 hex digits, when announced.
    pub sha256: Option<String>,
}

/// One entry of a shared work list (§2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    /// What the user sees.
    pub name: String,
    /// Where the document lives on the sharer's side, if told.
    pub path: Option<String>,
    /// Last modification (XEP-0082 date-time as sent), if told.
    pub modified: Option<String>,
}

/// What an exchange is about; decides which answers fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `<worklist-request/>` (§2.1).
    Worklist,
    /// `<file-request/>` (§2.2).
    FileRequest,
    /// `<offer/>`, alone or from a broadcast (§2.3, §2.4).
    Offer,
}

/// A request that opens an exchange (sent to the addressee).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Ask for the addressee's work list.
    Worklist {
        /// Exchange id.
        id: String,
    },
    /// Ask for files, which the addressee sends to the requester's endpoint.
    Files {
        /// Exchange id.
        id: String,
        /// The files wanted.
        files: Vec<FileDesc>,
        /// Where the requester listens.
        endpoint: Endpoint,
    },
    /// Offer files; the addressee answers with its endpoint.
    Offer {
        /// Exchange id.
        id: String,
        /// The files offered.
        files: Vec<FileDesc>,
    },
}

impl Request {
    /// The exchange id chosen by the requester.
    pub fn id(&self) -> &str {
        match self {
            Request::Worklist { id } | Request::Files { id, .. } | Request::Offer { id, .. } => id,
        }
    }

    /// The kind of exchange this request opens.
    pub fn kind(&self) -> Kind {
        match self {
            Request::Worklist { .. } => Kind::Worklist,
            Request::Files { .. } => Kind::FileRequest,
            Request::Offer { .. } => Kind::Offer,
        }
    }

    /// The same request under another id (a broadcast's per-addressee offers, §2.4).
    pub fn with_id(&self, id: &str) -> Request {
        let mut r = self.clone();
        match &mut r {
            Request::Worklist { id: i }
            | Request::Files { id: i, .. }
            | Request::Offer { id: i, .. } => *i = id.to_string(),
        }
        r
    }

    /// The payload element to put in the `<message/>`.
    pub fn to_element(&self) -> Element {
        match self {
            Request::Worklist { id } => Element::new("worklist-request", NS).with_attr("id", id),
            Request::Files {
                id,
                files,
                endpoint,
            } => with_files(Element::new("file-request", NS).with_attr("id", id), files)
                .with_child(endpoint.to_element()),
            Request::Offer { id, files } => {
                with_files(Element::new("offer", NS).with_attr("id", id), files)
            }
        }
    }
}

/// An answer from the addressee, sent to the requester's bare JID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The shared work list (answers a work-list request).
    Worklist {
        /// Exchange id.
        id: String,
        /// The requester's bare JID.
        requester: Jid,
        /// What is shared (possibly nothing).
        items: Vec<WorkItem>,
    },
    /// Accepts some of the requested or offered files.
    Accept {
        /// Exchange id.
        id: String,
        /// The requester's bare JID.
        requester: Jid,
        /// The accepted files.
        files: Vec<FileDesc>,
        /// Where the addressee listens (required for an offer, absent for a file request).
        endpoint: Option<Endpoint>,
    },
    /// Refuses the request (fits every kind).
    Decline {
        /// Exchange id.
        id: String,
        /// The requester's bare JID.
        requester: Jid,
    },
}

impl Answer {
    /// The exchange id the answer names.
    pub fn id(&self) -> &str {
        match self {
            Answer::Worklist { id, .. }
            | Answer::Accept { id, .. }
            | Answer::Decline { id, .. } => id,
        }
    }

    /// The requester whose exchange the answer closes.
    pub fn requester(&self) -> &Jid {
        match self {
            Answer::Worklist { requester, .. }
            | Answer::Accept { requester, .. }
            | Answer::Decline { requester, .. } => requester,
        }
    }

    /// The payload element to put in the `<message/>`.
    pub fn to_element(&self) -> Element {
        match self {
            Answer::Worklist {
                id,
                requester,
                items,
            } => {
                let mut el = Element::new("worklist", NS)
                    .with_attr("id", id)
                    .with_attr("requester", requester.to_string());
                for item in items {
                    let mut i = Element::new("item", NS).with_attr("name", &item.name);
                    if let Some(p) = &item.path {
                        i.set_attr("path", p);
                    }
                    if let Some(m) = &item.modified {
                        i.set_attr("modified", m);
                    }
                    el.push_child(i);
                }
                el
            }
            Answer::Accept {
                id,
                requester,
                files,
                endpoint,
            } => {
                let mut el = with_files(
                    Element::new("accept", NS)
                        .with_attr("id", id)
                        .with_attr("requester", requester.to_string()),
                    files,
                );
                if let Some(ep) = endpoint {
                    el.push_child(ep.to_element());
                }
                el
            }
            Answer::Decline { id, requester } => Element::new("decline", NS)
                .with_attr("id", id)
                .with_attr("requester", requester.to_string()),
        }
    }
}

/// One offer to several users at once, sent to the server (§2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// The broadcast id; each addressee's exchange is `id/<addressee bare JID>`.
    pub id: String,
    /// The addressees (1..=max_broadcast, distinct bare JIDs).
    pub to: Vec<Jid>,
    /// The files offered to each.
    pub files: Vec<FileDesc>,
}

impl Broadcast {
    /// The exchange id of `addressee`'s offer: `id/<addressee bare JID>` (§2.4).
    pub fn exchange_id(&self, addressee: &Jid) -> String {
        format!("{}/{}", self.id, addressee.to_bare())
    }

    /// The offer delivered to `addressee`, under its own exchange id (§2.4).
    pub fn offer_for(&self, addressee: &Jid) -> Request {
        Request::Offer {
            id: self.exchange_id(addressee),
            files: self.files.clone(),
        }
    }

    /// The `<broadcast/>` payload element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("broadcast", NS).with_attr("id", &self.id);
        for jid in &self.to {
            el.push_child(Element::new("to", NS).with_attr("jid", jid.to_string()));
        }
        el.with_child(with_files(Element::new("offer", NS), &self.files))
    }
}

/// The MOE payload a client put in a `<message/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessagePayload {
    /// Opens an exchange with the addressee.
    Request(Request),
    /// Closes an exchange of the requester named in it.
    Answer(Answer),
    /// Opens one offer exchange per addressee.
    Broadcast(Broadcast),
}

/// The MOE payload of a `<message/>` (first child in NS), Ok(None) when there is none. Validates
/// everything the docs require (ids, tokens, ports, names, requester a bare JID, 1..=max_broadcast <to/>,
/// at least one <file/> where needed, no duplicate file names).
///
/// A `type='error'` message is a bounce, never a request or answer: it yields `Ok(None)`.
/// `<contact-request/>` and `<contact-refused/>` are sent by the server only and are refused.
pub fn message_payload(
    msg: &Element,
    max_broadcast: usize,
) -> Result<Option<MessagePayload>, MoeError> {
    if msg.attr("type") == Some("error") {
        return Ok(None);
    }
    let Some(el) = msg.elements().find(|c| c.ns == NS) else {
        return Ok(None);
    };
    let payload = match el.name.as_str() {
        "worklist-request" => {
            let id = request_id(el)?;
            no_moe_children(el)?;
            MessagePayload::Request(Request::Worklist { id })
        }
        "file-request" => {
            let id = request_id(el)?;
            let (files, endpoint) = files_and_endpoint(el)?;
            let endpoint = endpoint.ok_or_else(|| {
                invalid("file-request needs an endpoint where the files are sent")
            })?;
            MessagePayload::Request(Request::Files {
                id,
                files,
                endpoint,
            })
        }
        "offer" => {
            let id = request_id(el)?;
            MessagePayload::Request(Request::Offer {
                id,
                files: files_only(el)?,
            })
        }
        "worklist" => {
            let (id, requester) = answer_head(el)?;
            let mut items = Vec::new();
            for c in moe_children(el) {
                if c.name != "item" {
                    return Err(unexpected_child(el, c));
                }
                items.push(WorkItem {
                    name: text_attr(c, "name", true)?.unwrap_or_default(),
                    path: text_attr(c, "path", false)?,
                    modified: text_attr(c, "modified", false)?,
                });
            }
            MessagePayload::Answer(Answer::Worklist {
                id,
                requester,
                items,
            })
        }
        "accept" => {
            let (id, requester) = answer_head(el)?;
            let (files, endpoint) = files_and_endpoint(el)?;
            MessagePayload::Answer(Answer::Accept {
                id,
                requester,
                files,
                endpoint,
            })
        }
        "decline" => {
            let (id, requester) = answer_head(el)?;
            no_moe_children(el)?;
            MessagePayload::Answer(Answer::Decline { id, requester })
        }
        "broadcast" => MessagePayload::Broadcast(broadcast(el, max_broadcast)?),
        other => {
            return Err(invalid(format!(
                "<{other}/> is not a MOE message payload a client may send"
            )))
        }
    };
    Ok(Some(payload))
}

/// A `<groups/>` operation (§3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOp {
    /// List the groups (iq get).
    List,
    /// Create an empty group.
    Create(String),
    /// Rename (or merge into) a group.
    Rename {
        /// The current name.
        name: String,
        /// The new name.
        to: String,
    },
    /// Delete a group and its members.
    Delete(String),
}

/// `<add-contact/>`: asks the server to propose a contact to another user (§4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddContact {
    /// The contact's bare JID.
    pub jid: Jid,
    /// The roster name the requester wants for the contact.
    pub name: Option<String>,
    /// The group the requester wants the contact in.
    pub group: Option<String>,
}

/// `<contact-response/>`: the contact accepts or refuses a pending request (§4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactResponse {
    /// The requester's bare JID.
    pub jid: Jid,
    /// Whether the contact agrees.
    pub accept: bool,
}

/// The MOE payload of an `<iq/>` the server answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IqPayload {
    /// `<settings/>` short-form fetch (§1, iq get).
    SettingsGet,
    /// A `<groups/>` list or change (§3).
    Groups(GroupOp),
    /// `<add-contact/>` (§4, iq set).
    AddContact(AddContact),
    /// `<contact-response/>` (§4, iq set).
    ContactResponse(ContactResponse),
}

/// The MOE payload of an `<iq/>` (type get/set as the docs say; wrong type → InvalidPayload),
/// Ok(None) when the iq's payload is not in NS.
///
/// A `result` or `error` iq is never answered with an error (RFC 6120 §8.2.3), so it yields
/// `Ok(None)` too.
pub fn iq_payload(iq: &Element) -> Result<Option<IqPayload>, MoeError> {
    let Some(el) = crate::xmpp::stanza::iq_payload(iq) else {
        return Ok(None);
    };
    if el.ns != NS {
        return Ok(None);
    }
    let set = match IqType::of(iq) {
        Some(IqType::Get) => false,
        Some(IqType::Set) => true,
        Some(IqType::Result | IqType::Error) => return Ok(None),
        None => return Err(invalid("iq needs type get or set")),
    };
    let need = |want_set: bool| {
        if set == want_set {
            Ok(())
        } else {
            Err(invalid(format!(
                "<{}/> goes in an iq of type {}",
                el.name,
                if want_set { "set" } else { "get" }
            )))
        }
    };
    let payload = match el.name.as_str() {
        "settings" => {
            need(false)?;
            IqPayload::SettingsGet
        }
        "groups" => {
            let mut ops = moe_children(el);
            let first = ops.next();
            if ops.next().is_some() {
                return Err(invalid("groups takes one operation per iq"));
            }
            match first {
                None => {
                    need(false)?;
                    IqPayload::Groups(GroupOp::List)
                }
                Some(op) => {
                    need(true)?;
                    IqPayload::Groups(group_op(op)?)
                }
            }
        }
        "add-contact" => {
            need(true)?;
            IqPayload::AddContact(AddContact {
                jid: user_jid(el, "jid")?,
                name: text_attr(el, "name", false)?,
                group: match el.attr("group") {
                    Some(g) => Some(group_name(el, "group", g)?),
                    None => None,
                },
            })
        }
        "contact-response" => {
            need(true)?;
            let accept = match el.attr("accept") {
                Some("true" | "1") => true,
                Some("false" | "0") => false,
                Some(_) => return Err(invalid("contact-response accept must be true or false")),
                None => return Err(invalid("contact-response needs accept")),
            };
            IqPayload::ContactResponse(ContactResponse {
                jid: user_jid(el, "jid")?,
                accept,
            })
        }
        other => return Err(invalid(format!("<{other}/> is not a MOE iq payload"))),
    };
    Ok(Some(payload))
}

/// The `<groups/>` result listing `names` (§3).
pub fn groups_result<'a>(names: impl IntoIterator<Item = &'a str>) -> Element {
    let mut el = Element::new("groups", NS);
    for n in names {
        el.push_child(Element::new("group", NS).with_attr("name", n));
    }
    el
}

/// The `<contact-request/>` the server delivers to the contact (§4); `jid` is the requester.
pub fn contact_request(jid: &str, name: Option<&str>) -> Element {
    let mut el = Element::new("contact-request", NS).with_attr("jid", jid);
    if let Some(n) = name {
        el.set_attr("name", n);
    }
    el
}

/// The `<contact-refused/>` the server sends the requester (§4); `jid` is the contact.
pub fn contact_refused(jid: &str) -> Element {
    Element::new("contact-refused", NS).with_attr("jid", jid)
}

/// The settings answered when the user has stored none (§1).
pub fn empty_settings() -> Element {
    Element::new("settings", NS)
}

/// XEP-0049 storage key of the settings element: (NS, "settings"), built by the same function
/// as every private-storage key so both fetch forms find the same data (§1).
pub fn settings_key() -> String {
    crate::xmpp::private::key(&empty_settings())
}

/// Whether an initial presence carries <moe xmlns=NS settings='push'/>, and removes that child
/// (every `<moe/>` child in NS is stripped before the presence is broadcast, §1).
pub fn take_push_flag(presence: &mut Element) -> bool {
    let mut push = false;
    while let Some(moe) = presence.remove_child("moe", NS) {
        push |= moe.attr("settings") == Some("push");
    }
    push
}

pub(super) fn moe_children(el: &Element) -> impl Iterator<Item = &Element> {
    el.elements().filter(|c| c.ns == NS)
}

fn unexpected_child(parent: &Element, child: &Element) -> MoeError {
    invalid(format!("{} does not take <{}/>", parent.name, child.name))
}

fn no_moe_children(el: &Element) -> Result<(), MoeError> {
    match moe_children(el).next() {
        Some(c) => Err(unexpected_child(el, c)),
        None => Ok(()),
    }
}

fn is_plain_id(s: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn id_attr(el: &Element) -> Result<&str, MoeError> {
    el.attr("id")
        .ok_or_else(|| invalid(format!("{} needs an id", el.name)))
}

/// A requester-chosen id: 1–64 characters of `[A-Za-z0-9._-]`.
fn request_id(el: &Element) -> Result<String, MoeError> {
    let id = id_attr(el)?;
    if is_plain_id(id) {
        Ok(id.to_string())
    } else {
        Err(invalid(format!(
            "{} id must be 1-64 characters of [A-Za-z0-9._-]",
            el.name
        )))
    }
}

/// An answer's id: a requester-chosen id, or a broadcast exchange id `id/<bare JID>` (§2.4),
/// whose JID part is normalised.
fn answer_id(el: &Element) -> Result<String, MoeError> {
    let id = id_attr(el)?;
    let bad = || {
        invalid(format!(
            "{} id must be 1-64 characters of [A-Za-z0-9._-], or such an id, '/' and a bare JID",
            el.name
        ))
    };
    match id.split_once('/') {
        None if is_plain_id(id) => Ok(id.to_string()),
        Some((plain, jid)) if is_plain_id(plain) => match Jid::parse(jid) {
            Ok(j) if j.is_bare() && j.local().is_some() => Ok(format!("{plain}/{j}")),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// A user's bare JID in attribute `attr` (a localpart is required: exchanges and contacts are
/// between users).
fn user_jid(el: &Element, attr: &str) -> Result<Jid, MoeError> {
    let raw = el
        .attr(attr)
        .ok_or_else(|| invalid(format!("{} needs {attr}", el.name)))?;
    match Jid::parse(raw) {
        Ok(j) if j.is_bare() && j.local().is_some() => Ok(j),
        _ => Err(invalid(format!(
            "{} {attr} must be a user's bare JID",
            el.name
        ))),
    }
}

fn answer_head(el: &Element) -> Result<(String, Jid), MoeError> {
    Ok((answer_id(el)?, user_jid(el, "requester")?))
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// An optional (or, with `required`, mandatory) free-text attribute: 1–1023 characters, no
/// control characters.
fn text_attr(el: &Element, attr: &str, required: bool) -> Result<Option<String>, MoeError> {
    match el.attr(attr) {
        None if required => Err(invalid(format!("{} needs {attr}", el.name))),
        None => Ok(None),
        Some(v) if v.is_empty() || v.chars().count() > MAX_NAME_LEN || has_control(v) => {
            Err(invalid(format!(
                "{} {attr} must be 1-1023 characters without control characters",
                el.name
            )))
        }
        Some(v) => Ok(Some(v.to_string())),
    }
}

/// A group name (§3): 1–1023 characters, no control characters.
fn group_name(el: &Element, attr: &str, v: &str) -> Result<String, MoeError> {
    if v.is_empty() || v.chars().count() > MAX_NAME_LEN || has_control(v) {
        return Err(invalid(format!(
            "{} {attr}: a group name must be 1-1023 characters without control characters",
            el.name
        )));
    }
    Ok(v.to_string())
}

fn group_attr(el: &Element, attr: &str) -> Result<String, MoeError> {
    let v = el
        .attr(attr)
        .ok_or_else(|| invalid(format!("{} needs {attr}", el.name)))?;
    group_name(el, attr, v)
}

fn group_op(op: &Element) -> Result<GroupOp, MoeError> {
    Ok(match op.name.as_str() {
        "create" => GroupOp::Create(group_attr(op, "name")?),
        "rename" => GroupOp::Rename {
            name: group_attr(op, "name")?,
            to: group_attr(op, "to")?,
        },
        "delete" => GroupOp::Delete(group_attr(op, "name")?),
        other => return Err(invalid(format!("unknown groups operation <{other}/>"))),
    })
}

fn endpoint(el: &Element) -> Result<Endpoint, MoeError> {
    let (Some(host), Some(port), Some(token)) =
        (el.attr("host"), el.attr("port"), el.attr("token"))
    else {
        return Err(invalid("endpoint needs host, port and token"));
    };
    let host_ok = (1..=255).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
    if !host_ok {
        return Err(invalid(
            "endpoint host must be a host name or an IP address",
        ));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => return Err(invalid("endpoint port must be 1-65535")),
    };
    let token_ok = TOKEN_LEN.contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if !token_ok {
        return Err(invalid(
            "endpoint token must be 8-128 characters of [A-Za-z0-9_-]",
        ));
    }
    Ok(Endpoint {
        host: host.to_string(),
        port,
        token: token.to_string(),
    })
}

impl Endpoint {
    /// The `<endpoint/>` element.
    pub fn to_element(&self) -> Element {
        Element::new("endpoint", NS)
            .with_attr("host", &self.host)
            .with_attr("port", self.port.to_string())
            .with_attr("token", &self.token)
    }
}

impl FileDesc {
    /// The `<file/>` element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("file", NS).with_attr("name", &self.name);
        if let Some(s) = self.size {
            el.set_attr("size", s.to_string());
        }
        if let Some(h) = &self.sha256 {
            el.set_attr("sha256", h);
        }
        el
    }
}

fn with_files(mut el: Element, files: &[FileDesc]) -> Element {
    for f in files {
        el.push_child(f.to_element());
    }
    el
}

fn file(el: &Element) -> Result<FileDesc, MoeError> {
    let name = el.attr("name").ok_or_else(|| invalid("file needs name"))?;
    let plain = !name.is_empty()
        && name.chars().count() <= MAX_FILE_NAME_LEN
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
    if !plain {
        return Err(invalid(format!(
            "file name {name:?} must be a plain file name of 1-255 characters"
        )));
    }
    let size = match el.attr("size") {
        None => None,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(invalid(format!("file {name:?} size must be a byte count"))),
        },
    };
    let sha256 = match el.attr("sha256") {
        None => None,
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Some(h.to_string()),
        Some(_) => {
            return Err(invalid(format!(
                "file {name:?} sha256 must be 64 hex digits"
            )))
        }
    };
    Ok(FileDesc {
        name: name.to_string(),
        size,
        sha256,
    })
}

/// The `<file/>` children (at least one, distinct names) and at most one `<endpoint/>`.
fn files_and_endpoint(el: &Element) -> Result<(Vec<FileDesc>, Option<Endpoint>), MoeError> {
    let mut files: Vec<FileDesc> = Vec::new();
    let mut names = HashSet::new();
    let mut ep = None;
    for c in moe_children(el) {
        match c.name.as_str() {
            "file" => {
                let f = file(c)?;
                if !names.insert(f.name.clone()) {
                    return Err(invalid(format!(
                        "{} names file {:?} twice",
                        el.name, f.name
                    )));
                }
                files.push(f);
            }
            "endpoint" if ep.is_none() => ep = Some(endpoint(c)?),
            "endpoint" => return Err(invalid(format!("{} has more than one endpoint", el.name))),
            _ => return Err(unexpected_child(el, c)),
        }
    }
    if files.is_empty() {
        return Err(invalid(format!("{} needs at least one file", el.name)));
    }
    Ok((files, ep))
}

fn files_only(el: &Element) -> Result<Vec<FileDesc>, MoeError> {
    match files_and_endpoint(el)? {
        (files, None) => Ok(files),
        (_, Some(_)) => Err(invalid(format!("{} does not take <endpoint/>", el.name))),
    }
}

fn broadcast(el: &Element, max: usize) -> Result<Broadcast, MoeError> {
    let id = request_id(el)?;
    let mut to = Vec::new();
    let mut seen = HashSet::new();
    let mut files = None;
    for c in moe_children(el) {
        match c.name.as_str() {
            "to" => {
                let raw = c.attr("jid").ok_or_else(|| invalid("to needs jid"))?;
                let jid = match Jid::parse(raw) {
                    Ok(j) if j.is_bare() && j.local().is_some() => j,
                    _ => return Err(invalid("to jid must be a user's bare JID")),
                };
                if !seen.insert(jid.clone()) {
                    return Err(invalid(format!("broadcast names {jid} twice")));
                }
                to.push(jid);
            }
            "offer" if files.is_none() => files = Some(files_only(c)?),
            "offer" => return Err(invalid("broadcast has more than one offer")),
            _ => return Err(unexpected_child(el, c)),
        }
    }
    if to.is_empty() || to.len() > max {
        return Err(invalid(format!("broadcast needs 1-{max} <to/>")));
    }
    let files = files.ok_or_else(|| invalid("broadcast needs an offer"))?;
    Ok(Broadcast { id, to, files })
}
