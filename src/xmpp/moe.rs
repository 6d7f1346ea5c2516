//! MOE-MP, the mobile-office extensions of the rendezvous-server paper (DESIGN.md §9,
//! `docs/moe-mp.md`), as XMPP payloads in the namespace [`NS`]: settings restore (§1, stored
//! as XEP-0049 private data), office-environment exchanges (§2.1–§2.4: work lists, file
//! requests, offers, broadcasts), groups (§3, on top of RFC 6121 §2 rosters) and contact-add
//! confirmation (§4). Errors are RFC 6120 §8.3 stanza errors with a MOE condition beside the
//! standard one. Pure code: typed payloads parsed from and written to [`Element`]s, and the
//! table of open exchanges with time passed in.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::jid::Jid;
use super::stanza::{error_reply, IqType, StanzaError};
use crate::xml::{Element, Node};

/// The MOE-MP namespace: every MOE payload and condition element lives in it, and the server
/// lists it as a disco feature (XEP-0030).
pub const NS: &str = "urn:rendezvous:params:xml:ns:moe";

/// How long an exchange stays open after its request was forwarded (`docs/moe-mp.md` §2).
pub const EXCHANGE_TTL: Duration = Duration::from_secs(300);

/// The most `<to/>` addressees a broadcast may name (§2.4), the default of `max_broadcast`.
pub const MAX_BROADCAST: usize = 50;

/// Longest ttl [`Exchanges::open`] honours (longer ones are cut to it), so that instant
/// arithmetic cannot overflow whatever the configuration says.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest exchange id a requester may choose (§2).
pub const MAX_ID_LEN: usize = 64;

/// Shortest and longest one-time P2P token (§2), so tokens cannot be guessed nor bloat stanzas.
pub const TOKEN_LEN: std::ops::RangeInclusive<usize> = 8..=128;

/// Longest group name, contact name, work-list text attribute, in characters (§3).
pub const MAX_NAME_LEN: usize = 1023;

/// Longest file name in characters: the usual file-system limit, since the receiving client
/// writes the file under that name.
pub const MAX_FILE_NAME_LEN: usize = 255;

/// Why a MOE payload or action is refused; each maps to a stanza error plus a MOE condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoeError {
    /// The payload breaks the protocol; the text names the element or attribute at fault.
    #[error("{0}")]
    InvalidPayload(String),
    /// An answer names a (requester, id) that no open exchange has.
    #[error("answer names no open exchange of this requester")]
    UnknownExchange,
    /// An answer came after the exchange's expiry.
    #[error("the exchange has expired")]
    ExchangeExpired,
    /// An answer came from someone else than the exchange's addressee.
    #[error("only the addressee of the request may answer it")]
    NotAddressee,
    /// A `<groups/>` operation names a group the roster does not have.
    #[error("no group named {0:?}")]
    UnknownGroup(String),
    /// `<create/>` names a group that already exists.
    #[error("group {0:?} already exists")]
    GroupExists(String),
    /// A `<contact-response/>` without a pending `<add-contact/>`.
    #[error("no pending contact request from this user")]
    UnknownRequest,
    /// A request reuses the id of one of the requester's open exchanges.
    #[error("exchange id {0:?} is still open")]
    Conflict(String),
}

impl MoeError {
    /// The RFC 6120 §8.3.3 condition the docs give for this error.
    pub fn stanza_error(&self) -> StanzaError {
        match self {
            MoeError::InvalidPayload(_) => StanzaError::BadRequest,
            MoeError::UnknownExchange
            | MoeError::ExchangeExpired
            | MoeError::UnknownGroup(_)
            | MoeError::UnknownRequest => StanzaError::ItemNotFound,
            MoeError::NotAddressee => StanzaError::Forbidden,
            MoeError::GroupExists(_) | MoeError::Conflict(_) => StanzaError::Conflict,
        }
    }

    /// The name of the MOE condition element placed beside the standard one; `None` for a
    /// plain `conflict`.
    pub fn moe_condition(&self) -> Option<&'static str> {
        match self {
            MoeError::InvalidPayload(_) => Some("invalid-payload"),
            MoeError::UnknownExchange => Some("unknown-exchange"),
            MoeError::ExchangeExpired => Some("exchange-expired"),
            MoeError::NotAddressee => Some("not-addressee"),
            MoeError::UnknownGroup(_) => Some("unknown-group"),
            MoeError::GroupExists(_) => Some("group-exists"),
            MoeError::UnknownRequest => Some("unknown-request"),
            MoeError::Conflict(_) => None,
        }
    }

    /// The reply for `stanza` (an iq or message we refuse): like stanza::error_reply but with the
    /// MOE condition element and the text added inside `<error/>`.
    pub fn reply_to(&self, stanza: &Element) -> Element {
        let text = self.to_string();
        let mut reply = error_reply(stanza, self.stanza_error(), Some(&text));
        if let Some(cond) = self.moe_condition() {
            // error_reply appends the <error/> last: [standard condition, text].
            if let Some(Node::Element(err)) = reply.children.last_mut() {
                if err.name == "error" {
                    let at = err.children.len().min(1);
                    err.children
                        .insert(at, Node::Element(Element::new(cond, NS)));
                }
            }
        }
        reply
    }
}

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
    let Some(el) = super::stanza::iq_payload(iq) else {
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
    super::private::key(&empty_settings())
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

/// One open (or recently expired) exchange, as [`Exchanges::answer`] returns it when closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The addressee's bare JID: the only one who may answer.
    pub addressee: String,
    /// What the exchange is about.
    pub kind: Kind,
    /// Names of the requested (file request) or offered (offer) files an accept may name.
    pub offered: Vec<String>,
    /// When the exchange stops accepting answers.
    pub expires_at: Instant,
}

#[derive(Debug)]
struct Entry {
    exchange: Exchange,
    ttl: Duration,
    expired: bool,
}

impl Entry {
    fn is_expired(&self, now: Instant) -> bool {
        self.expired || now >= self.exchange.expires_at
    }

    /// When the entry is dropped: one ttl after its expiry.
    fn forget_at(&self) -> Instant {
        let at = self.exchange.expires_at;
        at.checked_add(self.ttl).unwrap_or(at)
    }
}

/// Open exchanges of the requesters of one shard (pure; time passed in).
///
/// Keyed by (requester bare JID, id); an expired entry is kept one more ttl so a late answer
/// gets `exchange-expired` rather than `unknown-exchange`.
#[derive(Debug, Default)]
pub struct Exchanges {
    entries: HashMap<(String, String), Entry>,
}

impl Exchanges {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a request (requester and addressee are bare JIDs as strings); Conflict if
    /// (requester, id) is open. An expired id may be reused; `ttl` is capped at [`MAX_TTL`].
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        requester: &str,
        id: &str,
        addressee: &str,
        kind: Kind,
        offered: Vec<String>,
        now: Instant,
        ttl: Duration,
    ) -> Result<(), MoeError> {
        let ttl = ttl.min(MAX_TTL);
        let key = (requester.to_string(), id.to_string());
        if let Some(e) = self.entries.get(&key) {
            if !e.is_expired(now) {
                return Err(MoeError::Conflict(id.to_string()));
            }
        }
        self.entries.insert(
            key,
            Entry {
                exchange: Exchange {
                    addressee: addressee.to_string(),
                    kind,
                    offered,
                    expires_at: now.checked_add(ttl).unwrap_or(now),
                },
                ttl,
                expired: false,
            },
        );
        Ok(())
    }

    /// Checks and closes an answer from `responder` (bare JID): UnknownExchange, ExchangeExpired
    /// (expired entries are remembered for one more ttl so the error is precise), NotAddressee,
    /// InvalidPayload when the answer does not fit the kind (worklist answer for a worklist
    /// request; accept of an offer needs an endpoint and only offered names; accept of a file
    /// request must not carry an endpoint and names only requested files; decline fits all).
    /// Returns the closed exchange; a refused answer leaves the exchange as it was.
    pub fn answer(
        &mut self,
        responder: &str,
        answer: &Answer,
        now: Instant,
    ) -> Result<Exchange, MoeError> {
        let key = (answer.requester().to_string(), answer.id().to_string());
        let Some(entry) = self.entries.get_mut(&key) else {
            return Err(MoeError::UnknownExchange);
        };
        if entry.is_expired(now) {
            entry.expired = true;
            return Err(MoeError::ExchangeExpired);
        }
        let ex = &entry.exchange;
        if ex.addressee != responder {
            return Err(MoeError::NotAddressee);
        }
        fits(ex, answer)?;
        match self.entries.remove(&key) {
            Some(e) => Ok(e.exchange),
            None => Err(MoeError::UnknownExchange),
        }
    }

    /// Drops expired entries older than 2*ttl; returns how many open exchanges expired now.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired_now = 0;
        self.entries.retain(|_, e| {
            if now >= e.forget_at() {
                if !e.expired {
                    expired_now += 1;
                }
                return false;
            }
            if !e.expired && now >= e.exchange.expires_at {
                e.expired = true;
                expired_now += 1;
            }
            true
        });
        expired_now
    }

    /// How many exchanges are open (not yet seen expired by `expire` or `answer`).
    pub fn open_count(&self) -> usize {
        self.entries.values().filter(|e| !e.expired).count()
    }

    /// The next instant at which [`Exchanges::expire`] has something to do: an open exchange
    /// expiring, or a remembered one to drop.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.entries
            .values()
            .map(|e| {
                if e.expired {
                    e.forget_at()
                } else {
                    e.exchange.expires_at
                }
            })
            .min()
    }
}

/// Whether `answer` fits the exchange it closes (§2.1–§2.3).
fn fits(ex: &Exchange, answer: &Answer) -> Result<(), MoeError> {
    match (answer, ex.kind) {
        (Answer::Decline { .. }, _) | (Answer::Worklist { .. }, Kind::Worklist) => Ok(()),
        (Answer::Worklist { .. }, _) => Err(invalid("worklist answers only a worklist-request")),
        (Answer::Accept { .. }, Kind::Worklist) => {
            Err(invalid("accept does not answer a worklist-request"))
        }
        (
            Answer::Accept {
                files, endpoint, ..
            },
            kind,
        ) => {
            match (kind, endpoint) {
                (Kind::Offer, None) => return Err(invalid("accept of an offer needs an endpoint")),
                (Kind::FileRequest, Some(_)) => {
                    return Err(invalid(
                        "accept of a file-request must not carry an endpoint",
                    ))
                }
                _ => {}
            }
            match files.iter().find(|f| !ex.offered.contains(&f.name)) {
                Some(f) => Err(invalid(format!(
                    "accept names file {:?} that was not {}",
                    f.name,
                    if kind == Kind::Offer {
                        "offered"
                    } else {
                        "requested"
                    }
                ))),
                None => Ok(()),
            }
        }
    }
}

fn invalid(msg: impl Into<String>) -> MoeError {
    MoeError::InvalidPayload(msg.into())
}

fn moe_children(el: &Element) -> impl Iterator<Item = &Element> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::CLIENT_NS;
    use crate::xmpp::private::parse_stored;
    use crate::xmpp::stanza::STANZAS_NS;

    /// Parses one stanza as it arrives in a `jabber:client` stream.
    fn xml(s: &str) -> Element {
        parse_stored(s).unwrap_or_else(|| panic!("test XML does not parse: {s}"))
    }

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    fn msg(s: &str) -> Result<Option<MessagePayload>, MoeError> {
        message_payload(&xml(s), MAX_BROADCAST)
    }

    fn iq(s: &str) -> Result<Option<IqPayload>, MoeError> {
        iq_payload(&xml(s))
    }

    fn err(s: &str) -> MoeError {
        MoeError::InvalidPayload(s.to_string())
    }

    /// Wraps a payload element in a message, serialises and re-parses it: what travels.
    fn reparsed(payload: Element) -> Result<Option<MessagePayload>, MoeError> {
        let m = Element::new("message", CLIENT_NS)
            .with_attr("to", "x@localhost")
            .with_child(payload);
        message_payload(&xml(&m.to_string()), MAX_BROADCAST)
    }

    // The doc examples write checksums as '…'; these stand-ins are ours (64 hex digits).
    const H1: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const H2: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

    fn f(name: &str, size: Option<u64>, sha: Option<&str>) -> FileDesc {
        FileDesc {
            name: name.into(),
            size,
            sha256: sha.map(str::to_string),
        }
    }

    // ---- §2.1 work list ----

    #[test]
    fn doc_2_1_worklist_request_answer_and_decline() {
        let req = msg("<message to='bob@localhost' id='m1'>\
            <worklist-request xmlns='urn:rendezvous:params:xml:ns:moe' id='w1'/></message>");
        let want = Request::Worklist { id: "w1".into() };
        assert_eq!(req, Ok(Some(MessagePayload::Request(want.clone()))));
        assert_eq!(want.kind(), Kind::Worklist);
        assert_eq!(
            reparsed(want.to_element()),
            Ok(Some(MessagePayload::Request(want)))
        );

        let ans = msg("<message to='alice@localhost' id='m2'>\
            <worklist xmlns='urn:rendezvous:params:xml:ns:moe' id='w1' requester='alice@localhost'>\
            <item name='Budget 2027' path='docs/budget.ods' modified='2026-11-20T10:00:00Z'/>\
            <item name='Slides'/></worklist></message>");
        let want = Answer::Worklist {
            id: "w1".into(),
            requester: jid("alice@localhost"),
            items: vec![
                WorkItem {
                    name: "Budget 2027".into(),
                    path: Some("docs/budget.ods".into()),
                    modified: Some("2026-11-20T10:00:00Z".into()),
                },
                WorkItem {
                    name: "Slides".into(),
                    path: None,
                    modified: None,
                },
            ],
        };
        assert_eq!(ans, Ok(Some(MessagePayload::Answer(want.clone()))));
        assert_eq!(want.id(), "w1");
        assert_eq!(want.requester(), &jid("alice@localhost"));
        assert_eq!(
            reparsed(want.to_element()),
            Ok(Some(MessagePayload::Answer(want)))
        );

        let dec = msg("<message to='alice@localhost'>\
            <decline xmlns='urn:rendezvous:params:xml:ns:moe' id='w1' requester='alice@localhost'/></message>");
        let want = Answer::Decline {
            id: "w1".into(),
            requester: jid("alice@localhost"),
        };
        assert_eq!(dec, Ok(Some(MessagePayload::Answer(want.clone()))));
        assert_eq!(
            want.to_element().to_xml(NS),
            "<decline id='w1' requester='alice@localhost'/>"
        );
        assert_eq!(
            reparsed(want.to_element()),
            Ok(Some(MessagePayload::Answer(want)))
        );
    }

    #[test]
    fn item_needs_name() {
        assert_eq!(
            msg(
                "<message><worklist xmlns='urn:rendezvous:params:xml:ns:moe' id='w1' \
                 requester='alice@localhost'><item path='x'/></worklist></message>"
            ),
            Err(err("item needs name"))
        );
    }

    // ---- §2.2 file request ----

    #[test]
    fn doc_2_2_file_request_and_accept() {
        let req = msg("<message to='bob@localhost'>\
            <file-request xmlns='urn:rendezvous:params:xml:ns:moe' id='f1'>\
            <file name='budget.ods'/><file name='notes.txt'/>\
            <endpoint host='127.0.0.1' port='40001' token='tok-a1b2c3d4'/>\
            </file-request></message>");
        let want = Request::Files {
            id: "f1".into(),
            files: vec![f("budget.ods", None, None), f("notes.txt", None, None)],
            endpoint: Endpoint {
                host: "127.0.0.1".into(),
                port: 40001,
                token: "tok-a1b2c3d4".into(),
            },
        };
        assert_eq!(req, Ok(Some(MessagePayload::Request(want.clone()))));
        assert_eq!(want.kind(), Kind::FileRequest);
        assert_eq!(
            reparsed(want.to_element()),
            Ok(Some(MessagePayload::Request(want)))
        );

        // '…64 hex…' of the doc replaced by H1.
        let acc = msg(&format!(
            "<message to='alice@localhost'>\
            <accept xmlns='urn:rendezvous:params:xml:ns:moe' id='f1' requester='alice@localhost'>\
            <file name='budget.ods' size='5120' sha256='{H1}'/></accept></message>"
        ));
        let want = Answer::Accept {
            id: "f1".into(),
            requester: jid("alice@localhost"),
            files: vec![f("budget.ods", Some(5120), Some(H1))],
            endpoint: None,
        };
        assert_eq!(acc, Ok(Some(MessagePayload::Answer(want.clone()))));
        assert_eq!(
            reparsed(want.to_element()),
            Ok(Some(MessagePayload::Answer(want)))
        );
    }

    // ---- §2.3 offer ----

    #[test]
    fn doc_2_3_offer_and_accept() {
        let off = msg(&format!(
            "<message to='bob@localhost'>\
            <offer xmlns='urn:rendezvous:params:xml:ns:moe' id='o1'>\
            <file name='report.odt' size='20480' sha256='{H1}'/>\
            <file name='photo.jpg' size='90000' sha256='{H2}'/></offer></message>"
        ));
        let want = Request::Offer {
            id: "o1".into(),
            files: vec![
                f("report.odt", Some(20480), Some(H1)),
                f("photo.jpg", Some(90000), Some(H2)),
            ],
        };
        assert_eq!(off, Ok(Some(MessagePayload::Request(want.clone()))));
        assert_eq!(want.kind(), Kind::Offer);
        assert_eq!(
            reparsed(want.to_element()),
            Ok(Some(MessagePayload::Request(want.clone())))
        );
        let renamed = want.with_id("o2");
        assert_eq!(renamed.id(), "o2");
        assert_eq!(want.id(), "o1");

        let acc = msg("<message to='alice@localhost'>\
            <accept xmlns='urn:rendezvous:params:xml:ns:moe' id='o1' requester='alice@localhost'>\
            <file name='report.odt'/>\
            <endpoint host='127.0.0.1' port='40002' token='tok-b9c8d7e6'/>\
            </accept></message>");
        let want = Answer::Accept {
            id: "o1".into(),
            requester: jid("alice@localhost"),
            files: vec![f("report.odt", None, None)],
            endpoint: Some(Endpoint {
                host: "127.0.0.1".into(),
                port: 40002,
                token: "tok-b9c8d7e6".into(),
            }),
        };
        assert_eq!(acc, Ok(Some(MessagePayload::Answer(want.clone()))));
        assert_eq!(
            reparsed(want.to_element()),
            Ok(Some(MessagePayload::Answer(want)))
        );
    }

    // ---- §2.4 broadcast ----

    fn broadcast_xml(n: usize) -> String {
        let tos: String = (0..n)
            .map(|i| format!("<to jid='u{i}@localhost'/>"))
            .collect();
        format!(
            "<message to='localhost'><broadcast xmlns='urn:rendezvous:params:xml:ns:moe' id='b1'>\
             {tos}<offer><file name='minutes.pdf'/></offer></broadcast></message>"
        )
    }

    #[test]
    fn doc_2_4_broadcast() {
        let b = msg(&format!(
            "<message to='localhost'>\
            <broadcast xmlns='urn:rendezvous:params:xml:ns:moe' id='b1'>\
            <to jid='bob@localhost'/><to jid='carol@localhost'/><to jid='dave@localhost'/>\
            <offer><file name='minutes.pdf' size='1000' sha256='{H1}'/>\
            <file name='plan.pdf' size='2000' sha256='{H2}'/></offer>\
            </broadcast></message>"
        ));
        let want = Broadcast {
            id: "b1".into(),
            to: vec![
                jid("bob@localhost"),
                jid("carol@localhost"),
                jid("dave@localhost"),
            ],
            files: vec![
                f("minutes.pdf", Some(1000), Some(H1)),
                f("plan.pdf", Some(2000), Some(H2)),
            ],
        };
        assert_eq!(b, Ok(Some(MessagePayload::Broadcast(want.clone()))));
        assert_eq!(
            reparsed(want.to_element()),
            Ok(Some(MessagePayload::Broadcast(want.clone())))
        );
        let bob = jid("bob@localhost");
        assert_eq!(want.exchange_id(&bob), "b1/bob@localhost");
        let offer = want.offer_for(&bob);
        assert_eq!(offer.id(), "b1/bob@localhost");
        assert_eq!(
            offer,
            Request::Offer {
                id: "b1".into(),
                files: want.files.clone()
            }
            .with_id("b1/bob@localhost")
        );
        // bob's answer names the per-addressee id; the JID part is normalised.
        let acc = msg("<message to='alice@localhost'>\
            <decline xmlns='urn:rendezvous:params:xml:ns:moe' id='b1/Bob@LocalHost' \
            requester='alice@localhost'/></message>");
        assert_eq!(
            acc,
            Ok(Some(MessagePayload::Answer(Answer::Decline {
                id: "b1/bob@localhost".into(),
                requester: jid("alice@localhost")
            })))
        );
    }

    #[test]
    fn broadcast_bounds() {
        assert!(matches!(
            msg(&broadcast_xml(MAX_BROADCAST)),
            Ok(Some(MessagePayload::Broadcast(b))) if b.to.len() == MAX_BROADCAST
        ));
        assert_eq!(
            msg(&broadcast_xml(0)),
            Err(err("broadcast needs 1-50 <to/>"))
        );
        assert_eq!(
            msg(&broadcast_xml(MAX_BROADCAST + 1)),
            Err(err("broadcast needs 1-50 <to/>"))
        );
        assert_eq!(
            message_payload(&xml(&broadcast_xml(3)), 2),
            Err(err("broadcast needs 1-2 <to/>"))
        );
        assert_eq!(
            msg(
                "<message><broadcast xmlns='urn:rendezvous:params:xml:ns:moe' id='b1'>\
                 <to jid='bob@localhost'/><to jid='BOB@localhost'/>\
                 <offer><file name='a'/></offer></broadcast></message>"
            ),
            Err(err("broadcast names bob@localhost twice"))
        );
        assert_eq!(
            msg(
                "<message><broadcast xmlns='urn:rendezvous:params:xml:ns:moe' id='b1'>\
                 <to jid='bob@localhost'/></broadcast></message>"
            ),
            Err(err("broadcast needs an offer"))
        );
        assert_eq!(
            msg("<message><broadcast xmlns='urn:rendezvous:params:xml:ns:moe' id='b1'>\
                 <to jid='bob@localhost/phone'/><offer><file name='a'/></offer></broadcast></message>"),
            Err(err("to jid must be a user's bare JID"))
        );
    }

    // ---- message validation ----

    #[test]
    fn ids_are_checked() {
        let w = |id: &str| {
            msg(&format!(
                "<message><worklist-request xmlns='urn:rendezvous:params:xml:ns:moe' id='{id}'/></message>"
            ))
        };
        let bad = Err(err(
            "worklist-request id must be 1-64 characters of [A-Za-z0-9._-]",
        ));
        assert_eq!(w("a b"), bad);
        assert_eq!(w("a/b"), bad, "requests cannot use broadcast ids");
        assert_eq!(w("é"), bad);
        assert_eq!(w(""), bad);
        assert_eq!(w(&"x".repeat(65)), bad);
        assert!(w(&"x".repeat(64)).is_ok());
        assert!(w("A-z_0.9").is_ok());
        assert_eq!(
            msg("<message><worklist-request xmlns='urn:rendezvous:params:xml:ns:moe'/></message>"),
            Err(err("worklist-request needs an id"))
        );
        let d = |id: &str| {
            msg(&format!(
                "<message><decline xmlns='urn:rendezvous:params:xml:ns:moe' id='{id}' \
                 requester='alice@localhost'/></message>"
            ))
        };
        let bad = Err(err("decline id must be 1-64 characters of [A-Za-z0-9._-], or such an id, '/' and a bare JID"));
        assert_eq!(d("b1/bob@localhost/res"), bad);
        assert_eq!(d("b1/localhost"), bad);
        assert_eq!(d("b 1/bob@localhost"), bad);
        assert_eq!(d("b1/"), bad);
    }

    #[test]
    fn endpoints_are_checked() {
        let fr = |ep: &str| {
            msg(&format!(
                "<message><file-request xmlns='urn:rendezvous:params:xml:ns:moe' id='f1'>\
                 <file name='a'/>{ep}</file-request></message>"
            ))
        };
        assert_eq!(
            fr("<endpoint host='h' port='1' token='short'/>"),
            Err(err(
                "endpoint token must be 8-128 characters of [A-Za-z0-9_-]"
            ))
        );
        assert_eq!(
            fr("<endpoint host='h' port='1' token='tok a1b2c3d4'/>"),
            Err(err(
                "endpoint token must be 8-128 characters of [A-Za-z0-9_-]"
            ))
        );
        assert_eq!(
            fr(&format!(
                "<endpoint host='h' port='1' token='{}'/>",
                "t".repeat(129)
            )),
            Err(err(
                "endpoint token must be 8-128 characters of [A-Za-z0-9_-]"
            ))
        );
        assert!(fr(&format!(
            "<endpoint host='h' port='1' token='{}'/>",
            "t".repeat(128)
        ))
        .is_ok());
        assert!(fr("<endpoint host='::1' port='65535' token='12345678'/>").is_ok());
        for port in ["0", "65536", "+1", "x", ""] {
            assert_eq!(
                fr(&format!(
                    "<endpoint host='h' port='{port}' token='tok-a1b2c3d4'/>"
                )),
                Err(err("endpoint port must be 1-65535")),
                "{port}"
            );
        }
        assert_eq!(
            fr("<endpoint host='h' token='tok-a1b2c3d4'/>"),
            Err(err("endpoint needs host, port and token"))
        );
        assert_eq!(
            fr("<endpoint host='a b' port='1' token='tok-a1b2c3d4'/>"),
            Err(err("endpoint host must be a host name or an IP address"))
        );
        assert_eq!(
            fr(""),
            Err(err(
                "file-request needs an endpoint where the files are sent"
            ))
        );
        assert_eq!(
            fr("<endpoint host='h' port='1' token='tok-a1b2c3d4'/>\
                <endpoint host='h' port='2' token='tok-a1b2c3d4'/>"),
            Err(err("file-request has more than one endpoint"))
        );
        assert_eq!(
            msg(
                "<message><offer xmlns='urn:rendezvous:params:xml:ns:moe' id='o1'><file name='a'/>\
                 <endpoint host='h' port='1' token='tok-a1b2c3d4'/></offer></message>"
            ),
            Err(err("offer does not take <endpoint/>"))
        );
    }

    #[test]
    fn files_are_checked() {
        let off = |files: &str| {
            msg(&format!(
                "<message><offer xmlns='urn:rendezvous:params:xml:ns:moe' id='o1'>{files}</offer></message>"
            ))
        };
        assert_eq!(
            off("<file name='a.txt'/><file name='a.txt' size='3'/>"),
            Err(err("offer names file \"a.txt\" twice"))
        );
        assert_eq!(off(""), Err(err("offer needs at least one file")));
        assert_eq!(off("<file size='3'/>"), Err(err("file needs name")));
        for name in ["", "..", "a/b", "a\\b", "a&#9;b"] {
            assert!(
                matches!(off(&format!("<file name='{name}'/>")),
                    Err(MoeError::InvalidPayload(m)) if m.ends_with("must be a plain file name of 1-255 characters")),
                "{name}"
            );
        }
        assert_eq!(
            off("<file name='a' size='-1'/>"),
            Err(err("file \"a\" size must be a byte count"))
        );
        assert_eq!(
            off("<file name='a' sha256='abc'/>"),
            Err(err("file \"a\" sha256 must be 64 hex digits"))
        );
        assert_eq!(
            off("<file name='a'/><note/>"),
            Err(err("offer does not take <note/>"))
        );
        // Children in other namespaces are extensions and ignored.
        assert!(off("<file name='a'/><x xmlns='urn:other'/>").is_ok());
        assert_eq!(
            msg(
                "<message><accept xmlns='urn:rendezvous:params:xml:ns:moe' id='o1' \
                 requester='alice@localhost'/></message>"
            ),
            Err(err("accept needs at least one file"))
        );
    }

    #[test]
    fn requester_must_be_bare() {
        for r in ["alice@localhost/office", "localhost", "a b@localhost"] {
            assert_eq!(
                msg(&format!(
                    "<message><decline xmlns='urn:rendezvous:params:xml:ns:moe' id='w1' \
                     requester='{r}'/></message>"
                )),
                Err(err("decline requester must be a user's bare JID")),
                "{r}"
            );
        }
        assert_eq!(
            msg("<message><decline xmlns='urn:rendezvous:params:xml:ns:moe' id='w1'/></message>"),
            Err(err("decline needs requester"))
        );
    }

    #[test]
    fn messages_without_moe_or_bounced_or_server_only() {
        assert_eq!(
            msg("<message to='bob@localhost'><body>hi</body></message>"),
            Ok(None)
        );
        assert_eq!(
            msg("<message type='error'><offer xmlns='urn:rendezvous:params:xml:ns:moe' id='o1'/></message>"),
            Ok(None)
        );
        assert_eq!(
            msg("<message><contact-refused xmlns='urn:rendezvous:params:xml:ns:moe' jid='bob@localhost'/></message>"),
            Err(err("<contact-refused/> is not a MOE message payload a client may send"))
        );
        // The first MOE child counts, after foreign ones.
        assert_eq!(
            msg("<message><body>x</body><worklist-request xmlns='urn:rendezvous:params:xml:ns:moe' id='w'/></message>"),
            Ok(Some(MessagePayload::Request(Request::Worklist { id: "w".into() })))
        );
    }

    // ---- §1 settings ----

    #[test]
    fn doc_1_settings() {
        assert_eq!(
            iq("<iq type='get' id='s2'><settings xmlns='urn:rendezvous:params:xml:ns:moe'/></iq>"),
            Ok(Some(IqPayload::SettingsGet))
        );
        // The push the server sends is a set; a client sending it is refused.
        assert_eq!(
            iq(
                "<iq type='set' id='moe-push-1' to='alice@localhost/office'>\
                <settings xmlns='urn:rendezvous:params:xml:ns:moe' version='3'/></iq>"
            ),
            Err(err("<settings/> goes in an iq of type get"))
        );
        // XEP-0049 save: not MOE's payload.
        assert_eq!(
            iq("<iq type='set' id='s1'><query xmlns='jabber:iq:private'>\
                <settings xmlns='urn:rendezvous:params:xml:ns:moe' version='3'>\
                <desktop wallpaper='blue'/><recent file='report.odt'/></settings></query></iq>"),
            Ok(None)
        );
        assert_eq!(settings_key(), "urn:rendezvous:params:xml:ns:moe settings");
        let stored = xml(
            "<settings xmlns='urn:rendezvous:params:xml:ns:moe' version='3'>\
                          <desktop wallpaper='blue'/></settings>",
        );
        assert_eq!(crate::xmpp::private::key(&stored), settings_key());
        assert_eq!(
            empty_settings().to_string(),
            "<settings xmlns='urn:rendezvous:params:xml:ns:moe'/>"
        );
    }

    #[test]
    fn doc_1_push_flag() {
        let mut p = xml(
            "<presence><moe xmlns='urn:rendezvous:params:xml:ns:moe' settings='push'/></presence>",
        );
        assert!(take_push_flag(&mut p));
        assert_eq!(p.to_string(), "<presence/>");
        assert!(!take_push_flag(&mut p));
        let mut p = xml(
            "<presence><show>away</show><moe xmlns='urn:rendezvous:params:xml:ns:moe'/></presence>",
        );
        assert!(!take_push_flag(&mut p));
        assert_eq!(p.to_string(), "<presence><show>away</show></presence>");
    }

    // ---- §3 groups ----

    #[test]
    fn doc_3_groups() {
        assert_eq!(
            iq("<iq type='get' id='g0'><groups xmlns='urn:rendezvous:params:xml:ns:moe'/></iq>"),
            Ok(Some(IqPayload::Groups(GroupOp::List)))
        );
        // The result of the doc, built and compared as parsed XML.
        let result = xml(
            "<iq type='result' id='g0'><groups xmlns='urn:rendezvous:params:xml:ns:moe'>\
                          <group name='Friends'/><group name='Team'/></groups></iq>",
        );
        assert_eq!(
            result.get_child("groups", NS),
            Some(&groups_result(["Friends", "Team"]))
        );
        // The doc's '…moe' abbreviates the namespace.
        assert_eq!(
            iq("<iq type='set' id='g1'><groups xmlns='urn:rendezvous:params:xml:ns:moe'><create name='Team'/></groups></iq>"),
            Ok(Some(IqPayload::Groups(GroupOp::Create("Team".into()))))
        );
        assert_eq!(
            iq("<iq type='set' id='g2'><groups xmlns='urn:rendezvous:params:xml:ns:moe'><rename name='Team' to='Project X'/></groups></iq>"),
            Ok(Some(IqPayload::Groups(GroupOp::Rename {
                name: "Team".into(),
                to: "Project X".into()
            })))
        );
        assert_eq!(
            iq("<iq type='set' id='g3'><groups xmlns='urn:rendezvous:params:xml:ns:moe'><delete name='Project X'/></groups></iq>"),
            Ok(Some(IqPayload::Groups(GroupOp::Delete("Project X".into()))))
        );
    }

    #[test]
    fn groups_invalid() {
        let g = |ty: &str, inner: &str| {
            iq(&format!(
                "<iq type='{ty}' id='g'><groups xmlns='urn:rendezvous:params:xml:ns:moe'>{inner}</groups></iq>"
            ))
        };
        assert_eq!(
            g("set", "<move name='a'/>"),
            Err(err("unknown groups operation <move/>"))
        );
        let empty = Err(err(
            "create name: a group name must be 1-1023 characters without control characters",
        ));
        assert_eq!(g("set", "<create name=''/>"), empty);
        assert_eq!(
            g("set", "<create name='a&#10;b'/>"),
            Err(err(
                "create name: a group name must be 1-1023 characters without control characters"
            ))
        );
        assert_eq!(
            g("set", &format!("<create name='{}'/>", "é".repeat(1024))),
            Err(err(
                "create name: a group name must be 1-1023 characters without control characters"
            ))
        );
        assert!(g("set", &format!("<create name='{}'/>", "é".repeat(1023))).is_ok());
        assert_eq!(g("set", "<rename name='a'/>"), Err(err("rename needs to")));
        assert_eq!(
            g("set", ""),
            Err(err("<groups/> goes in an iq of type get"))
        );
        assert_eq!(
            g("get", "<create name='a'/>"),
            Err(err("<groups/> goes in an iq of type set"))
        );
        assert_eq!(
            g("set", "<create name='a'/><delete name='b'/>"),
            Err(err("groups takes one operation per iq"))
        );
        // result/error iqs are never answered with an error.
        assert_eq!(g("result", "<group name='a'/>"), Ok(None));
        assert_eq!(
            iq("<iq id='g'><groups xmlns='urn:rendezvous:params:xml:ns:moe'/></iq>"),
            Err(err("iq needs type get or set"))
        );
        assert_eq!(
            iq("<iq type='get' id='g'><offer xmlns='urn:rendezvous:params:xml:ns:moe' id='o'/></iq>"),
            Err(err("<offer/> is not a MOE iq payload"))
        );
        assert_eq!(
            iq("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>"),
            Ok(None)
        );
    }

    // ---- §4 contacts ----

    #[test]
    fn doc_4_contacts() {
        assert_eq!(
            iq(
                "<iq type='set' id='c1'><add-contact xmlns='urn:rendezvous:params:xml:ns:moe' \
                jid='bob@localhost' name='Bob' group='Team'/></iq>"
            ),
            Ok(Some(IqPayload::AddContact(AddContact {
                jid: jid("bob@localhost"),
                name: Some("Bob".into()),
                group: Some("Team".into())
            })))
        );
        assert_eq!(
            iq("<iq type='set' id='c1'><add-contact xmlns='urn:rendezvous:params:xml:ns:moe' jid='bob@localhost'/></iq>"),
            Ok(Some(IqPayload::AddContact(AddContact {
                jid: jid("bob@localhost"),
                name: None,
                group: None
            })))
        );
        // '…moe' and 'moe-c-…' of the doc spelled out.
        assert_eq!(
            iq("<iq type='set' id='c2'><contact-response xmlns='urn:rendezvous:params:xml:ns:moe' \
                jid='alice@localhost' accept='true'/></iq>"),
            Ok(Some(IqPayload::ContactResponse(ContactResponse {
                jid: jid("alice@localhost"),
                accept: true
            })))
        );
        assert_eq!(
            iq("<iq type='set' id='c2'><contact-response xmlns='urn:rendezvous:params:xml:ns:moe' \
                jid='alice@localhost' accept='false'/></iq>"),
            Ok(Some(IqPayload::ContactResponse(ContactResponse {
                jid: jid("alice@localhost"),
                accept: false
            })))
        );
        let delivered = xml("<message from='localhost' to='bob@localhost' id='moe-c-1'>\
            <contact-request xmlns='urn:rendezvous:params:xml:ns:moe' jid='alice@localhost' name='Bob'/></message>");
        assert_eq!(
            delivered.get_child("contact-request", NS),
            Some(&contact_request("alice@localhost", Some("Bob")))
        );
        let refused = xml("<message from='localhost' to='alice@localhost'>\
            <contact-refused xmlns='urn:rendezvous:params:xml:ns:moe' jid='bob@localhost'/></message>");
        assert_eq!(
            refused.get_child("contact-refused", NS),
            Some(&contact_refused("bob@localhost"))
        );
        assert_eq!(
            contact_request("alice@localhost", None).to_xml(NS),
            "<contact-request jid='alice@localhost'/>"
        );
    }

    #[test]
    fn contacts_invalid() {
        assert_eq!(
            iq("<iq type='get' id='c1'><add-contact xmlns='urn:rendezvous:params:xml:ns:moe' jid='bob@localhost'/></iq>"),
            Err(err("<add-contact/> goes in an iq of type set"))
        );
        assert_eq!(
            iq("<iq type='set' id='c1'><add-contact xmlns='urn:rendezvous:params:xml:ns:moe' jid='bob@localhost/x'/></iq>"),
            Err(err("add-contact jid must be a user's bare JID"))
        );
        assert_eq!(
            iq("<iq type='set' id='c1'><add-contact xmlns='urn:rendezvous:params:xml:ns:moe' jid='bob@localhost' group=''/></iq>"),
            Err(err("add-contact group: a group name must be 1-1023 characters without control characters"))
        );
        assert_eq!(
            iq("<iq type='set' id='c2'><contact-response xmlns='urn:rendezvous:params:xml:ns:moe' jid='alice@localhost'/></iq>"),
            Err(err("contact-response needs accept"))
        );
        assert_eq!(
            iq("<iq type='set' id='c2'><contact-response xmlns='urn:rendezvous:params:xml:ns:moe' jid='alice@localhost' accept='yes'/></iq>"),
            Err(err("contact-response accept must be true or false"))
        );
        assert_eq!(
            iq("<iq type='get' id='c2'><contact-response xmlns='urn:rendezvous:params:xml:ns:moe' jid='alice@localhost' accept='true'/></iq>"),
            Err(err("<contact-response/> goes in an iq of type set"))
        );
    }

    // ---- errors ----

    #[test]
    fn doc_error_example() {
        let m = xml(
            "<message from='alice@localhost/office' to='bob@localhost' id='m9'>\
            <file-request xmlns='urn:rendezvous:params:xml:ns:moe' id='f1'><file name='a'/>\
            <endpoint host='127.0.0.1'/></file-request></message>",
        );
        let e = message_payload(&m, MAX_BROADCAST).unwrap_err();
        assert_eq!(e, err("endpoint needs host, port and token"));
        let reply = e.reply_to(&m);
        assert_eq!(reply.attr("to"), Some("alice@localhost/office"));
        assert_eq!(reply.attr("from"), Some("bob@localhost"));
        assert_eq!(reply.attr("id"), Some("m9"));
        assert_eq!(reply.attr("type"), Some("error"));
        assert!(reply.has_child("file-request", NS), "message payload kept");
        // The doc's <error/>, plus the xml:lang stanza::error_element always writes.
        let want = xml("<error xmlns='jabber:client' type='modify'>\
            <bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
            <invalid-payload xmlns='urn:rendezvous:params:xml:ns:moe'/>\
            <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>endpoint needs host, port and token</text>\
            </error>");
        assert_eq!(reply.get_child("error", CLIENT_NS), Some(&want));
    }

    #[test]
    fn error_mapping_and_iq_reply() {
        let iq_el = xml("<iq type='set' id='g9' from='alice@localhost/office'>\
            <groups xmlns='urn:rendezvous:params:xml:ns:moe'><create name='Team'/></groups></iq>");
        let e = MoeError::GroupExists("Team".into());
        assert_eq!(
            e.reply_to(&iq_el).to_string(),
            "<iq id='g9' to='alice@localhost/office' type='error'><error type='cancel'>\
             <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <group-exists xmlns='urn:rendezvous:params:xml:ns:moe'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>group \"Team\" already exists</text>\
             </error></iq>"
        );
        let c = MoeError::Conflict("w1".into());
        assert_eq!(
            c.reply_to(&iq_el).to_string(),
            "<iq id='g9' to='alice@localhost/office' type='error'><error type='cancel'>\
             <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>exchange id \"w1\" is still open</text>\
             </error></iq>"
        );
        let table = [
            (
                err("x"),
                StanzaError::BadRequest,
                Some("invalid-payload"),
                "modify",
            ),
            (
                MoeError::UnknownExchange,
                StanzaError::ItemNotFound,
                Some("unknown-exchange"),
                "cancel",
            ),
            (
                MoeError::ExchangeExpired,
                StanzaError::ItemNotFound,
                Some("exchange-expired"),
                "cancel",
            ),
            (
                MoeError::NotAddressee,
                StanzaError::Forbidden,
                Some("not-addressee"),
                "auth",
            ),
            (
                MoeError::UnknownGroup("g".into()),
                StanzaError::ItemNotFound,
                Some("unknown-group"),
                "cancel",
            ),
            (
                MoeError::GroupExists("g".into()),
                StanzaError::Conflict,
                Some("group-exists"),
                "cancel",
            ),
            (
                MoeError::UnknownRequest,
                StanzaError::ItemNotFound,
                Some("unknown-request"),
                "cancel",
            ),
            (
                MoeError::Conflict("w".into()),
                StanzaError::Conflict,
                None,
                "cancel",
            ),
        ];
        for (e, se, cond, ty) in table {
            assert_eq!(e.stanza_error(), se, "{e:?}");
            assert_eq!(e.moe_condition(), cond, "{e:?}");
            let r = e.reply_to(&iq_el);
            let er = r.get_child("error", CLIENT_NS).unwrap();
            assert_eq!(er.attr("type"), Some(ty), "{e:?}");
            assert!(er.has_child(se.condition(), STANZAS_NS), "{e:?}");
            assert_eq!(
                moe_children(er).count(),
                usize::from(cond.is_some()),
                "{e:?}"
            );
            assert_eq!(r.get_child("groups", NS), None, "iq payload not echoed");
        }
    }

    // ---- exchanges ----

    fn accept(id: &str, files: &[&str], ep: bool) -> Answer {
        Answer::Accept {
            id: id.into(),
            requester: jid("alice@localhost"),
            files: files.iter().map(|n| f(n, None, None)).collect(),
            endpoint: ep.then(|| Endpoint {
                host: "127.0.0.1".into(),
                port: 40002,
                token: "tok-b9c8d7e6".into(),
            }),
        }
    }

    fn decline(id: &str) -> Answer {
        Answer::Decline {
            id: id.into(),
            requester: jid("alice@localhost"),
        }
    }

    const A: &str = "alice@localhost";
    const B: &str = "bob@localhost";
    const TTL: Duration = EXCHANGE_TTL;

    #[test]
    fn exchange_lifecycle() {
        let t0 = Instant::now();
        let mut x = Exchanges::new();
        assert_eq!(x.next_expiry(), None);
        let offered = vec!["report.odt".to_string(), "photo.jpg".to_string()];
        x.open(A, "o1", B, Kind::Offer, offered.clone(), t0, TTL)
            .unwrap();
        assert_eq!(x.open_count(), 1);
        assert_eq!(x.next_expiry(), Some(t0 + TTL));
        assert_eq!(
            x.open(A, "o1", B, Kind::Offer, vec![], t0, TTL),
            Err(MoeError::Conflict("o1".into()))
        );
        // Same id, another requester: independent.
        x.open(B, "o1", A, Kind::Worklist, vec![], t0, TTL).unwrap();
        assert_eq!(x.open_count(), 2);

        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(
            x.answer("carol@localhost", &decline("o1"), t1),
            Err(MoeError::NotAddressee)
        );
        assert_eq!(
            x.answer(B, &accept("o1", &["report.odt"], false), t1),
            Err(err("accept of an offer needs an endpoint"))
        );
        assert_eq!(
            x.answer(B, &accept("o1", &["secret.txt"], true), t1),
            Err(err("accept names file \"secret.txt\" that was not offered"))
        );
        let closed = x
            .answer(B, &accept("o1", &["report.odt"], true), t1)
            .unwrap();
        assert_eq!(
            closed,
            Exchange {
                addressee: B.into(),
                kind: Kind::Offer,
                offered,
                expires_at: t0 + TTL
            }
        );
        assert_eq!(
            x.answer(B, &accept("o1", &["report.odt"], true), t1),
            Err(MoeError::UnknownExchange)
        );
        assert_eq!(x.open_count(), 1);
        // The id is free again.
        x.open(A, "o1", B, Kind::Worklist, vec![], t1, TTL).unwrap();
        assert_eq!(
            x.answer("nobody@localhost", &decline("zzz"), t1),
            Err(MoeError::UnknownExchange)
        );
    }

    #[test]
    fn answers_must_fit_kind() {
        let t0 = Instant::now();
        let mut x = Exchanges::new();
        x.open(A, "w1", B, Kind::Worklist, vec![], t0, TTL).unwrap();
        assert_eq!(
            x.answer(B, &accept("w1", &["a"], false), t0),
            Err(err("accept does not answer a worklist-request"))
        );
        let wl = Answer::Worklist {
            id: "w1".into(),
            requester: jid(A),
            items: vec![],
        };
        assert_eq!(x.answer(B, &wl, t0).map(|e| e.kind), Ok(Kind::Worklist));

        let files = vec!["budget.ods".to_string(), "notes.txt".to_string()];
        x.open(A, "f1", B, Kind::FileRequest, files, t0, TTL)
            .unwrap();
        let wl_f1 = Answer::Worklist {
            id: "f1".into(),
            requester: jid(A),
            items: vec![],
        };
        assert_eq!(
            x.answer(B, &wl_f1, t0),
            Err(err("worklist answers only a worklist-request"))
        );
        assert_eq!(
            x.answer(B, &accept("f1", &["budget.ods"], true), t0),
            Err(err("accept of a file-request must not carry an endpoint"))
        );
        assert_eq!(
            x.answer(B, &accept("f1", &["other.ods"], false), t0),
            Err(err(
                "accept names file \"other.ods\" that was not requested"
            ))
        );
        assert!(x
            .answer(B, &accept("f1", &["budget.ods"], false), t0)
            .is_ok());

        x.open(A, "o9", B, Kind::Offer, vec!["a".into()], t0, TTL)
            .unwrap();
        assert_eq!(
            x.answer(B, &decline("o9"), t0).map(|e| e.kind),
            Ok(Kind::Offer)
        );
        assert_eq!(x.open_count(), 0);
    }

    #[test]
    fn expiry_with_virtual_clock() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(300);
        let mut x = Exchanges::new();
        x.open(A, "w1", B, Kind::Worklist, vec![], t0, ttl).unwrap();
        x.open(
            A,
            "w2",
            B,
            Kind::Worklist,
            vec![],
            t0 + Duration::from_secs(100),
            ttl,
        )
        .unwrap();
        assert_eq!(x.expire(t0 + Duration::from_secs(299)), 0);
        assert_eq!(x.open_count(), 2);

        // After the ttl, an answer is told the exchange expired, even before expire() ran.
        let t_late = t0 + ttl;
        assert_eq!(
            x.answer(B, &decline("w1"), t_late),
            Err(MoeError::ExchangeExpired)
        );
        assert_eq!(
            x.answer(B, &decline("w1"), t_late),
            Err(MoeError::ExchangeExpired)
        );
        assert_eq!(x.open_count(), 1, "w1 is seen expired");
        // answer() already marked w1; expire() counts only w2 when it goes.
        assert_eq!(x.expire(t_late), 0);
        assert_eq!(x.next_expiry(), Some(t0 + Duration::from_secs(400)));
        assert_eq!(x.expire(t0 + Duration::from_secs(400)), 1);
        assert_eq!(x.open_count(), 0);
        // Remembered for one more ttl: w1 until t0+600, w2 until t0+700.
        assert_eq!(x.next_expiry(), Some(t0 + Duration::from_secs(600)));
        assert_eq!(
            x.answer(B, &decline("w2"), t0 + Duration::from_secs(650)),
            Err(MoeError::ExchangeExpired)
        );
        assert_eq!(x.expire(t0 + Duration::from_secs(600)), 0);
        assert_eq!(
            x.answer(B, &decline("w1"), t0 + Duration::from_secs(650)),
            Err(MoeError::UnknownExchange)
        );
        assert_eq!(x.next_expiry(), Some(t0 + Duration::from_secs(700)));
        assert_eq!(x.expire(t0 + Duration::from_secs(700)), 0);
        assert_eq!(x.next_expiry(), None);

        // An expired id may be reused at once.
        let mut y = Exchanges::default();
        y.open(A, "w1", B, Kind::Worklist, vec![], t0, ttl).unwrap();
        y.open(A, "w1", B, Kind::Worklist, vec![], t0 + ttl, ttl)
            .unwrap();
        assert_eq!(y.open_count(), 1);
        // An exchange never seen expired and already past 2*ttl still counts when dropped.
        assert_eq!(y.expire(t0 + ttl * 5), 1);
        assert_eq!(y.open_count(), 0);

        // A huge configured ttl is capped, not a panic.
        let mut z = Exchanges::new();
        z.open(A, "w1", B, Kind::Worklist, vec![], t0, Duration::MAX)
            .unwrap();
        assert_eq!(z.next_expiry(), Some(t0 + MAX_TTL));
    }
}
