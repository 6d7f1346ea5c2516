//! PIDF presence documents: the model, a tolerant parser, a serialiser and composition.
//!
//! Implements RFC 3863 §4.1 (the `<presence>`, `<tuple>`, `<status>`, `<basic>`,
//! `<contact>`, `<note>` and `<timestamp>` elements) and §4.2 (extension elements
//! from other namespaces, kept here verbatim as [`Raw`]); the `<dm:person>` element
//! of the RFC 4479 data model (namespace `urn:ietf:params:xml:ns:pidf:data-model`)
//! with its `<dm:note>` and `<dm:timestamp>`; the RPID `<rpid:activities>` of
//! RFC 4480 §3.2 (see [`rpid`]); and the composition of several publications of one
//! presentity (RFC 3903 PUBLISH keeps one document per publication; RFC 4479 leaves
//! the composition policy to the compositor, and [`Presence::compose`] documents
//! ours). [`xmpp`] maps documents to and from XMPP presence (RFC 8048).
//!
//! The parser is deliberately tolerant (RFC 3863 §4.2: a recipient ignores
//! extensions it does not understand): only malformed XML, a `DOCTYPE` (refused
//! outright: no entity declarations, so no XML bombs), an entity reference other
//! than the five predefined ones or a character reference, a wrong root element, a
//! missing `entity`, or a document above the size or depth limit are errors.
//! `mustUnderstand` (RFC 3863 §4.2) is not enforced: such extensions are kept as
//! [`Raw`] like any other. Pure code: no I/O.

pub mod rpid;
pub mod xmpp;

use std::fmt::Write as _;

use quick_xml::escape::EscapeError;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::{NamespaceResolver, ResolveResult};
use quick_xml::reader::NsReader;
use quick_xml::XmlVersion;

use rpid::Activity;

/// The media type of a PIDF body (registered by RFC 3863), for `Content-Type` and `Accept`.
pub const CONTENT_TYPE: &str = "application/pidf+xml";

/// The PIDF namespace (RFC 3863 §4.1), the default namespace of every document we write.
pub const NS: &str = "urn:ietf:params:xml:ns:pidf";

/// The data-model namespace of RFC 4479 (`<dm:person>`, `<dm:note>`,
/// `<dm:timestamp>`), bound to the `dm` prefix when serialised.
pub const DM_NS: &str = "urn:ietf:params:xml:ns:pidf:data-model";

/// The namespace permanently bound to the `xml` prefix (for `xml:lang` on notes).
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Largest document [`Presence::parse`] accepts, so that a hostile PUBLISH body
/// cannot make us build an arbitrarily large tree; use [`Presence::parse_limited`]
/// to choose another bound.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Deepest element nesting the parser accepts; it bounds the recursion of the
/// serialiser for [`Raw`] extensions.
pub const MAX_DEPTH: usize = 32;

/// One PIDF document (RFC 3863 §4.1): the presentity, its tuples, the RFC 4479
/// persons, presentity-level notes and any other top-level extension elements.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Presence {
    /// The presentity URI (`entity` attribute, e.g. `pres:alice@example.com`).
    pub entity: String,
    /// The `<tuple>` elements (services in RFC 4479 terms), in document order.
    pub tuples: Vec<Tuple>,
    /// The `<dm:person>` elements (RFC 4479), in document order.
    pub persons: Vec<Person>,
    /// Presentity-level `<note>` elements.
    pub notes: Vec<Note>,
    /// Other top-level elements (e.g. `<dm:device>`), kept verbatim.
    pub extensions: Vec<Raw>,
}

/// One `<tuple>` (RFC 3863 §4.1): a communication service of the presentity.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuple {
    /// The `id` attribute (an `xs:ID`, unique in the document).
    pub id: String,
    /// `<basic>` inside `<status>`; `None` when absent or not `open`/`closed`.
    pub basic: Option<Basic>,
    /// Other elements inside `<status>` (e.g. `<im:im>`), kept verbatim.
    pub status_extensions: Vec<Raw>,
    /// The `<contact>` address of the service.
    pub contact: Option<Contact>,
    /// The tuple's `<note>` elements.
    pub notes: Vec<Note>,
    /// The `<timestamp>` text (an `xs:dateTime`, kept as written).
    pub timestamp: Option<String>,
    /// Other elements inside `<tuple>` (e.g. `<dm:deviceID>`), kept verbatim.
    pub extensions: Vec<Raw>,
}

/// The `<basic>` status of a tuple (RFC 3863 §4.1): whether the service can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basic {
    /// `open`: the service accepts communication.
    Open,
    /// `closed`: the service does not accept communication.
    Closed,
}

/// A `<contact>` (RFC 3863 §4.1): the URI to reach a tuple, with its relative priority.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    /// The contact URI (e.g. `sip:alice@pc.example.com`), trimmed.
    pub uri: String,
    /// The `priority` attribute, a qvalue in 0..=1 rounded to three decimals;
    /// `None` when absent or invalid.
    pub priority: Option<f32>,
}

/// A human-readable `<note>` (RFC 3863 §4.1, RFC 4479 `<dm:note>`) with its language.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// The note text, as written.
    pub text: String,
    /// The `xml:lang` attribute, if any.
    pub lang: Option<String>,
}

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

/// An extension element kept verbatim: serialised, self-contained XML that declares
/// every namespace prefix its element and attribute names use, so that it can be
/// written back anywhere in a document.
///
/// A `Raw` built by hand must be one well-formed element with its declarations;
/// the serialiser copies it as is.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw(pub String);

/// Why a PIDF body was refused; each message names the element or construct at fault.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PidfError {
    /// The body is above the size limit the caller chose.
    #[error("PIDF document of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the body in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not UTF-8 (the only encoding we accept).
    #[error("PIDF document is not valid UTF-8")]
    NotUtf8,
    /// The body is not well-formed XML.
    #[error("malformed PIDF XML: {0}")]
    Xml(String),
    /// The body carries a document type declaration, refused to rule out entity expansion.
    #[error("<!DOCTYPE> is not allowed in a PIDF document")]
    Doctype,
    /// An entity reference other than the predefined ones or a character reference.
    #[error("entity reference &{name}; in <{element}> is not allowed (only the predefined entities and character references are)")]
    Entity {
        /// The entity name.
        name: String,
        /// The element (qualified name) where it appeared.
        element: String,
    },
    /// Elements are nested deeper than [`MAX_DEPTH`].
    #[error("<{element}> is nested deeper than {max} levels")]
    TooDeep {
        /// The element (qualified name) that went over the limit.
        element: String,
        /// The limit.
        max: usize,
    },
    /// The root element is not `<presence>` in the PIDF namespace.
    #[error("root element <{name}> in namespace '{ns}' is not <presence> in urn:ietf:params:xml:ns:pidf")]
    NotPidf {
        /// Local name of the root element.
        name: String,
        /// Its namespace (`""` when none).
        ns: String,
    },
    /// `<presence>` has no (or an empty) `entity` attribute (RFC 3863 §4.1 requires it).
    #[error("<presence> has no entity attribute")]
    MissingEntity,
}

impl Tuple {
    /// A tuple with `<basic>closed</basic>` and nothing else: how a presentity with no
    /// published state is shown (RFC 3863 §4.1.4).
    pub fn closed(id: &str) -> Tuple {
        Tuple {
            id: id.to_string(),
            basic: Some(Basic::Closed),
            status_extensions: Vec::new(),
            contact: None,
            notes: Vec::new(),
            timestamp: None,
            extensions: Vec::new(),
        }
    }
}

impl Presence {
    /// Parses a PIDF body of at most [`MAX_DOCUMENT_BYTES`], keeping unknown
    /// elements as [`Raw`] extensions.
    pub fn parse(xml: &[u8]) -> Result<Presence, PidfError> {
        Presence::parse_limited(xml, MAX_DOCUMENT_BYTES)
    }

    /// Parses a PIDF body, refusing it when it is larger than `max_bytes`.
    pub fn parse_limited(xml: &[u8], max_bytes: usize) -> Result<Presence, PidfError> {
        if xml.len() > max_bytes {
            return Err(PidfError::TooLarge {
                size: xml.len(),
                max: max_bytes,
            });
        }
        let text = std::str::from_utf8(xml).map_err(|_| PidfError::NotUtf8)?;
        let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
        let root = parse_tree(text)?;
        presence_from_tree(root)
    }

    /// Serialises the document: an XML declaration, then `<presence>` with the PIDF
    /// default namespace and the `dm`/`rpid` prefixes declared only when used.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(self.size_hint());
        self.write_xml(&mut out);
        out
    }

    /// Appends the serialised document to `out` (see [`Presence::to_xml`]), so that
    /// a caller building many NOTIFY bodies can reuse one buffer.
    pub fn write_xml(&self, out: &mut String) {
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"");
        out.push_str(NS);
        out.push('"');
        if !self.persons.is_empty() {
            out.push_str(" xmlns:dm=\"");
            out.push_str(DM_NS);
            out.push('"');
        }
        if self.persons.iter().any(|p| !p.activities.is_empty()) {
            out.push_str(" xmlns:rpid=\"");
            out.push_str(rpid::NS);
            out.push('"');
        }
        out.push_str(" entity=\"");
        escape_attr(&self.entity, out);
        out.push_str("\">");
        for tuple in &self.tuples {
            write_tuple(tuple, out);
        }
        for note in &self.notes {
            write_note("note", note, out);
        }
        for person in &self.persons {
            write_person(person, out);
        }
        for raw in &self.extensions {
            out.push_str(&raw.0);
        }
        out.push_str("</presence>");
    }

    /// Composition of several documents of one presentity into one (tuples merged by id, a later
    /// document's tuple replacing an earlier one with the same id; persons merged into one person
    /// whose activities/notes come from the most recent document that has any; presentity notes
    /// concatenated without duplicates). `entity` is the composed document's entity.
    ///
    /// `docs` go from oldest to most recent. A replaced tuple keeps the position of
    /// the one it replaces. The composed person takes its `id` from the most recent
    /// document with a person, and its timestamp and extensions, like its activities
    /// and notes, from the most recent document that has any. Presentity-level
    /// extensions are concatenated without duplicates, like the notes.
    pub fn compose<'a>(entity: &str, docs: impl IntoIterator<Item = &'a Presence>) -> Presence {
        let mut out = Presence {
            entity: entity.to_owned(),
            ..Presence::default()
        };
        let mut person: Option<Person> = None;
        for doc in docs {
            for tuple in &doc.tuples {
                match out.tuples.iter_mut().find(|t| t.id == tuple.id) {
                    Some(slot) => *slot = tuple.clone(),
                    None => out.tuples.push(tuple.clone()),
                }
            }
            for note in &doc.notes {
                if !out.notes.contains(note) {
                    out.notes.push(note.clone());
                }
            }
            for raw in &doc.extensions {
                if !out.extensions.contains(raw) {
                    out.extensions.push(raw.clone());
                }
            }
            let Some(first) = doc.persons.first() else {
                continue;
            };
            let merged = person.get_or_insert_with(|| Person {
                id: String::new(),
                activities: Vec::new(),
                notes: Vec::new(),
                timestamp: None,
                extensions: Vec::new(),
            });
            merged.id.clone_from(&first.id);
            let activities: Vec<Activity> = doc
                .persons
                .iter()
                .flat_map(|p| p.activities.iter().cloned())
                .collect();
            if !activities.is_empty() {
                merged.activities = activities;
            }
            let notes: Vec<Note> = doc
                .persons
                .iter()
                .flat_map(|p| p.notes.iter().cloned())
                .collect();
            if !notes.is_empty() {
                merged.notes = notes;
            }
            if let Some(ts) = doc.persons.iter().find_map(|p| p.timestamp.as_ref()) {
                merged.timestamp = Some(ts.clone());
            }
            let extensions: Vec<Raw> = doc
                .persons
                .iter()
                .flat_map(|p| p.extensions.iter().cloned())
                .collect();
            if !extensions.is_empty() {
                merged.extensions = extensions;
            }
        }
        out.persons.extend(person);
        out
    }

    /// True when any tuple has basic open.
    pub fn is_open(&self) -> bool {
        self.tuples.iter().any(|t| t.basic == Some(Basic::Open))
    }

    /// A capacity for [`Presence::to_xml`] large enough for most documents, so that
    /// the output string is allocated once.
    fn size_hint(&self) -> usize {
        let raw: usize = self
            .extensions
            .iter()
            .chain(
                self.tuples
                    .iter()
                    .flat_map(|t| t.extensions.iter().chain(t.status_extensions.iter())),
            )
            .chain(self.persons.iter().flat_map(|p| p.extensions.iter()))
            .map(|r| r.0.len())
            .sum();
        256 + self.entity.len() + 192 * self.tuples.len() + 160 * self.persons.len() + raw
    }
}

// ----- serialisation -------------------------------------------------------------

/// Writes one `<tuple>` in the element order of the RFC 3863 schema.
fn write_tuple(tuple: &Tuple, out: &mut String) {
    out.push_str("<tuple id=\"");
    escape_attr(&tuple.id, out);
    out.push_str("\"><status>");
    match tuple.basic {
        Some(Basic::Open) => out.push_str("<basic>open</basic>"),
        Some(Basic::Closed) => out.push_str("<basic>closed</basic>"),
        None => {}
    }
    for raw in &tuple.status_extensions {
        out.push_str(&raw.0);
    }
    out.push_str("</status>");
    for raw in &tuple.extensions {
        out.push_str(&raw.0);
    }
    if let Some(contact) = &tuple.contact {
        out.push_str("<contact");
        if let Some(q) = contact.priority {
            out.push_str(" priority=\"");
            write_qvalue(q, out);
            out.push('"');
        }
        out.push('>');
        escape_text(&contact.uri, out);
        out.push_str("</contact>");
    }
    for note in &tuple.notes {
        write_note("note", note, out);
    }
    if let Some(ts) = &tuple.timestamp {
        out.push_str("<timestamp>");
        escape_text(ts, out);
        out.push_str("</timestamp>");
    }
    out.push_str("</tuple>");
}

/// Writes one `<dm:person>`: activities, extensions, notes, timestamp (RFC 4479 order).
fn write_person(person: &Person, out: &mut String) {
    out.push_str("<dm:person id=\"");
    escape_attr(&person.id, out);
    out.push_str("\">");
    if !person.activities.is_empty() {
        out.push_str("<rpid:activities>");
        for activity in &person.activities {
            match activity {
                Activity::Other(text) if text.is_empty() => out.push_str("<rpid:other/>"),
                Activity::Other(text) => {
                    out.push_str("<rpid:other>");
                    escape_text(text, out);
                    out.push_str("</rpid:other>");
                }
                known => {
                    out.push_str("<rpid:");
                    out.push_str(known.name());
                    out.push_str("/>");
                }
            }
        }
        out.push_str("</rpid:activities>");
    }
    for raw in &person.extensions {
        out.push_str(&raw.0);
    }
    for note in &person.notes {
        write_note("dm:note", note, out);
    }
    if let Some(ts) = &person.timestamp {
        out.push_str("<dm:timestamp>");
        escape_text(ts, out);
        out.push_str("</dm:timestamp>");
    }
    out.push_str("</dm:person>");
}

/// Writes a note element named `tag` with its `xml:lang`.
fn write_note(tag: &str, note: &Note, out: &mut String) {
    out.push('<');
    out.push_str(tag);
    if let Some(lang) = &note.lang {
        out.push_str(" xml:lang=\"");
        escape_attr(lang, out);
        out.push('"');
    }
    out.push('>');
    escape_text(&note.text, out);
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

/// Writes a qvalue (RFC 3261 §25.1 `qvalue`, used by RFC 3863 for `priority`): `0`, `1` or `0.` and
/// up to three decimals, without allocating. Out-of-range values are clamped.
fn write_qvalue(q: f32, out: &mut String) {
    let thousandths = quantize(q);
    if thousandths >= 1000 {
        out.push('1');
        return;
    }
    out.push('0');
    if thousandths == 0 {
        return;
    }
    let mut digits = thousandths;
    let mut width = 3;
    while digits.is_multiple_of(10) {
        digits /= 10;
        width -= 1;
    }
    // Writing to a String cannot fail.
    let _ = write!(out, ".{digits:0width$}");
}

/// A qvalue in thousandths, clamped to 0..=1000 (NaN counts as 0).
fn quantize(q: f32) -> u32 {
    // `as` saturates and maps NaN to 0, so this never panics.
    ((q.clamp(0.0, 1.0) * 1000.0).round() as u32).min(1000)
}

/// Appends `s` escaped as character data: `&`, `<`, `>` become entity references
/// and `\r` a character reference, so that it survives end-of-line normalisation.
fn escape_text(s: &str, out: &mut String) {
    escape_with(s, out, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '\r' => Some("&#13;"),
        _ => None,
    });
}

/// Appends `s` escaped for a double-quoted attribute value; tab, line feed and
/// carriage return become character references so that attribute-value
/// normalisation on the receiving side keeps them.
fn escape_attr(s: &str, out: &mut String) {
    escape_with(s, out, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '"' => Some("&quot;"),
        '\t' => Some("&#9;"),
        '\n' => Some("&#10;"),
        '\r' => Some("&#13;"),
        _ => None,
    });
}

/// Copies `s` into `out` in runs, replacing each character for which `rep`
/// returns a replacement.
#[inline]
fn escape_with(s: &str, out: &mut String, rep: impl Fn(char) -> Option<&'static str>) {
    let mut last = 0;
    for (i, c) in s.char_indices() {
        if let Some(r) = rep(c) {
            if let Some(run) = s.get(last..i) {
                out.push_str(run);
            }
            out.push_str(r);
            last = i + c.len_utf8();
        }
    }
    if let Some(run) = s.get(last..) {
        out.push_str(run);
    }
}

// ----- parsing: a small namespace-resolved tree ------------------------------------

/// An element as parsed, with its original prefix kept so that [`Raw`] output
/// stays close to the input.
struct XElement {
    prefix: Option<String>,
    ns: String,
    local: String,
    attrs: Vec<XAttr>,
    children: Vec<XNode>,
}

/// An attribute with its resolved namespace (`""` for unprefixed attributes).
struct XAttr {
    prefix: Option<String>,
    ns: String,
    local: String,
    value: String,
}

/// A child of an [`XElement`].
enum XNode {
    Element(XElement),
    Text(String),
}

impl XElement {
    /// The qualified name, for error messages.
    fn qname(&self) -> String {
        match &self.prefix {
            Some(p) => format!("{p}:{}", self.local),
            None => self.local.clone(),
        }
    }

    /// The value of the attribute `local` in namespace `ns` (`""` = unprefixed).
    fn attr(&self, ns: &str, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns == ns && a.local == local)
            .map(|a| a.value.as_str())
    }

    /// Concatenation of the direct text children.
    fn text(&self) -> String {
        let mut out = String::new();
        for child in &self.children {
            if let XNode::Text(t) = child {
                out.push_str(t);
            }
        }
        out
    }

    /// Appends character data, merging it with a preceding text node.
    fn push_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if let Some(XNode::Text(last)) = self.children.last_mut() {
            last.push_str(text);
        } else {
            self.children.push(XNode::Text(text.to_owned()));
        }
    }

    /// Serialises this element as a self-contained [`Raw`].
    fn to_raw(&self) -> Raw {
        let mut out = String::with_capacity(64);
        let mut scope = Vec::new();
        write_raw(self, &mut out, &mut scope);
        Raw(out)
    }
}

/// Writes `el` keeping its prefixes, declaring each prefix (and the default
/// namespace) where the bindings written so far (`scope`) do not already give it
/// the right namespace. At the top of a `Raw` nothing is in scope, so the element
/// always declares what it uses, even `xmlns=""`.
fn write_raw(el: &XElement, out: &mut String, scope: &mut Vec<(String, String)>) {
    let mark = scope.len();
    out.push('<');
    write_qname(el.prefix.as_deref(), &el.local, out);
    declare(el.prefix.as_deref().unwrap_or(""), &el.ns, out, scope);
    for attr in &el.attrs {
        if let Some(p) = attr.prefix.as_deref() {
            if p != "xml" {
                declare(p, &attr.ns, out, scope);
            }
        }
    }
    for attr in &el.attrs {
        out.push(' ');
        write_qname(attr.prefix.as_deref(), &attr.local, out);
        out.push_str("=\"");
        escape_attr(&attr.value, out);
        out.push('"');
    }
    if el.children.is_empty() {
        out.push_str("/>");
    } else {
        out.push('>');
        for child in &el.children {
            match child {
                XNode::Element(e) => write_raw(e, out, scope),
                XNode::Text(t) => escape_text(t, out),
            }
        }
        out.push_str("</");
        write_qname(el.prefix.as_deref(), &el.local, out);
        out.push('>');
    }
    scope.truncate(mark);
}

/// Writes `prefix:local` or `local`.
fn write_qname(prefix: Option<&str>, local: &str, out: &mut String) {
    if let Some(p) = prefix {
        out.push_str(p);
        out.push(':');
    }
    out.push_str(local);
}

/// Declares `prefix` (`""` = default namespace) as `ns` unless already so bound.
fn declare(prefix: &str, ns: &str, out: &mut String, scope: &mut Vec<(String, String)>) {
    let bound = scope
        .iter()
        .rev()
        .find(|(p, _)| p == prefix)
        .map(|(_, n)| n.as_str());
    if bound == Some(ns) {
        return;
    }
    out.push_str(" xmlns");
    if !prefix.is_empty() {
        out.push(':');
        out.push_str(prefix);
    }
    out.push_str("=\"");
    escape_attr(ns, out);
    out.push('"');
    scope.push((prefix.to_owned(), ns.to_owned()));
}

/// Parses `text` into a tree, resolving namespaces; refuses DOCTYPE, non-predefined
/// entities, illegal characters and nesting deeper than [`MAX_DEPTH`].
fn parse_tree(text: &str) -> Result<XElement, PidfError> {
    if let Some(c) = text.chars().find(|&c| !is_xml_char(c)) {
        return Err(PidfError::Xml(format!(
            "illegal character U+{:04X}",
            u32::from(c)
        )));
    }
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<XElement> = Vec::with_capacity(8);
    let mut root: Option<XElement> = None;
    loop {
        let event = reader.read_event().map_err(|e| {
            PidfError::Xml(match stack.last() {
                Some(top) => format!("{e} in <{}>", top.qname()),
                None => e.to_string(),
            })
        })?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                return Err(PidfError::Xml(format!(
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
                None => return Err(PidfError::Xml("unmatched end tag".to_owned())),
            },
            Event::Text(t) => push_text(&mut stack, &t.xml10_content())?,
            Event::CData(c) => push_text(&mut stack, &c.xml10_content())?,
            Event::GeneralRef(r) => {
                let element = stack.last().map_or_else(String::new, XElement::qname);
                let c = resolve_reference(&r, &element)?;
                push_text(&mut stack, c.encode_utf8(&mut [0u8; 4]))?;
            }
            Event::DocType(_) => return Err(PidfError::Doctype),
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(top) = stack.last() {
        return Err(PidfError::Xml(format!("<{}> is not closed", top.qname())));
    }
    root.ok_or_else(|| PidfError::Xml("no root element".to_owned()))
}

/// Attaches a closed element to its parent, or makes it the root.
fn attach(stack: &mut [XElement], root: &mut Option<XElement>, el: XElement) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(XNode::Element(el)),
        None => *root = Some(el),
    }
}

/// Appends text to the open element; outside the root only whitespace is allowed.
fn push_text(stack: &mut [XElement], text: &str) -> Result<(), PidfError> {
    match stack.last_mut() {
        Some(top) => {
            top.push_text(text);
            Ok(())
        }
        None if text.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) => Ok(()),
        None => Err(PidfError::Xml("text outside the root element".to_owned())),
    }
}

/// Builds the element for a start tag at nesting `depth`, resolving its name and
/// attributes against the declarations in scope (including its own).
fn open_element(
    resolver: &NamespaceResolver,
    start: &BytesStart<'_>,
    depth: usize,
) -> Result<XElement, PidfError> {
    let qname = start.name();
    if depth >= MAX_DEPTH {
        return Err(PidfError::TooDeep {
            element: qname.0.to_owned(),
            max: MAX_DEPTH,
        });
    }
    if qname.prefix().is_some_and(|p| p.is_xmlns()) {
        // XML Namespaces 1.0 §3: no element may use the xmlns prefix; copying one
        // into a Raw would make our own output ill-formed.
        return Err(PidfError::Xml(format!(
            "reserved prefix 'xmlns' on <{}>",
            qname.0
        )));
    }
    let (resolved, local) = resolver.resolve_element(qname);
    let ns = match resolved {
        ResolveResult::Bound(ns) => ns.into_inner().to_owned(),
        ResolveResult::Unbound => String::new(),
        ResolveResult::Unknown(p) => {
            return Err(PidfError::Xml(format!(
                "undeclared namespace prefix '{p}' on <{}>",
                qname.0
            )));
        }
    };
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr =
            attr.map_err(|e| PidfError::Xml(format!("malformed attribute in <{}>: {e}", qname.0)))?;
        let key = attr.key;
        if key.as_namespace_binding().is_some() {
            // The resolver binds the raw value; a namespace name that escaping would
            // change could not be written back to mean the same, and no URI needs
            // these characters.
            if attr.value.contains(['&', '<', '>', '"', '\t', '\n', '\r']) {
                return Err(PidfError::Xml(format!(
                    "unsupported namespace name in '{}' of <{}>",
                    key.0, qname.0
                )));
            }
            continue;
        }
        let (resolved, attr_local) = resolver.resolve_attribute(key);
        let attr_ns = match resolved {
            ResolveResult::Bound(ns) => ns.into_inner().to_owned(),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(p) => {
                return Err(PidfError::Xml(format!(
                    "undeclared namespace prefix '{p}' on attribute '{}' of <{}>",
                    key.0, qname.0
                )));
            }
        };
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| match e {
                quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => {
                    PidfError::Entity {
                        name,
                        element: qname.0.to_owned(),
                    }
                }
                e => PidfError::Xml(format!("attribute '{}' of <{}>: {e}", key.0, qname.0)),
            })?;
        if let Some(c) = value.chars().find(|&c| !is_xml_char(c)) {
            return Err(PidfError::Xml(format!(
                "illegal character U+{:04X} in attribute '{}' of <{}>",
                u32::from(c),
                key.0,
                qname.0
            )));
        }
        attrs.push(XAttr {
            prefix: key.prefix().map(|p| p.into_inner().to_owned()),
            ns: attr_ns,
            local: attr_local.into_inner().to_owned(),
            value: value.into_owned(),
        });
    }
    Ok(XElement {
        prefix: qname.prefix().map(|p| p.into_inner().to_owned()),
        ns,
        local: local.into_inner().to_owned(),
        attrs,
        children: Vec::new(),
    })
}

/// Resolves `&name;` in character data: the five predefined entities and
/// character references to XML characters only.
fn resolve_reference(r: &BytesRef<'_>, element: &str) -> Result<char, PidfError> {
    let name: &str = r;
    let refused = || PidfError::Entity {
        name: name.to_owned(),
        element: element.to_owned(),
    };
    match name {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ if r.is_char_ref() => match r.resolve_char_ref() {
            Ok(Some(c)) if is_xml_char(c) => Ok(c),
            _ => Err(PidfError::Xml(format!(
                "invalid character reference &{name}; in <{element}>"
            ))),
        },
        _ => Err(refused()),
    }
}

/// XML 1.0 `Char` production.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

// ----- parsing: tree to model ------------------------------------------------------

/// Maps the parsed root element to a [`Presence`].
fn presence_from_tree(root: XElement) -> Result<Presence, PidfError> {
    if root.ns != NS || root.local != "presence" {
        return Err(PidfError::NotPidf {
            name: root.local,
            ns: root.ns,
        });
    }
    let entity = match root.attr("", "entity") {
        Some(e) if !e.trim().is_empty() => e.to_owned(),
        _ => return Err(PidfError::MissingEntity),
    };
    let mut doc = Presence {
        entity,
        ..Presence::default()
    };
    for child in root.children {
        let XNode::Element(el) = child else {
            continue;
        };
        match (el.ns.as_str(), el.local.as_str()) {
            (NS, "tuple") => doc.tuples.push(tuple_from_tree(el)),
            (NS, "note") => doc.notes.push(note_from_tree(&el)),
            (DM_NS, "person") => doc.persons.push(person_from_tree(el)),
            _ => doc.extensions.push(el.to_raw()),
        }
    }
    Ok(doc)
}

/// Maps a `<tuple>`; a second `<status>`, `<contact>` or `<timestamp>` is ignored.
fn tuple_from_tree(el: XElement) -> Tuple {
    let mut tuple = Tuple {
        id: el.attr("", "id").unwrap_or_default().to_owned(),
        basic: None,
        status_extensions: Vec::new(),
        contact: None,
        notes: Vec::new(),
        timestamp: None,
        extensions: Vec::new(),
    };
    let mut seen_status = false;
    for child in el.children {
        let XNode::Element(c) = child else {
            continue;
        };
        match (c.ns.as_str(), c.local.as_str()) {
            (NS, "status") if !seen_status => {
                seen_status = true;
                let mut seen_basic = false;
                for s in c.children {
                    let XNode::Element(s) = s else {
                        continue;
                    };
                    if s.ns == NS && s.local == "basic" {
                        if !seen_basic {
                            seen_basic = true;
                            tuple.basic = match s.text().trim() {
                                "open" => Some(Basic::Open),
                                "closed" => Some(Basic::Closed),
                                _ => None,
                            };
                        }
                    } else {
                        tuple.status_extensions.push(s.to_raw());
                    }
                }
            }
            (NS, "status") => {}
            (NS, "contact") => {
                if tuple.contact.is_none() {
                    tuple.contact = Some(Contact {
                        uri: c.text().trim().to_owned(),
                        priority: c.attr("", "priority").and_then(parse_qvalue),
                    });
                }
            }
            (NS, "note") => tuple.notes.push(note_from_tree(&c)),
            (NS, "timestamp") => {
                if tuple.timestamp.is_none() {
                    tuple.timestamp = Some(c.text().trim().to_owned());
                }
            }
            _ => tuple.extensions.push(c.to_raw()),
        }
    }
    tuple
}

/// Maps a `<dm:person>`; every `<rpid:activities>` contributes its activities.
fn person_from_tree(el: XElement) -> Person {
    let mut person = Person {
        id: el.attr("", "id").unwrap_or_default().to_owned(),
        activities: Vec::new(),
        notes: Vec::new(),
        timestamp: None,
        extensions: Vec::new(),
    };
    for child in el.children {
        let XNode::Element(c) = child else {
            continue;
        };
        match (c.ns.as_str(), c.local.as_str()) {
            (rpid::NS, "activities") => activities_from_tree(&c, &mut person.activities),
            (DM_NS, "note") => person.notes.push(note_from_tree(&c)),
            (DM_NS, "timestamp") => {
                if person.timestamp.is_none() {
                    person.timestamp = Some(c.text().trim().to_owned());
                }
            }
            _ => person.extensions.push(c.to_raw()),
        }
    }
    person
}

/// Reads the activity elements of `<rpid:activities>` (RFC 4480 §3.2). Its
/// `<rpid:note>` children and `from`/`until`/`id` attributes are not modelled;
/// an element that is not an RFC 4480 activity becomes `Other(local name)`.
fn activities_from_tree(el: &XElement, out: &mut Vec<Activity>) {
    for child in &el.children {
        let XNode::Element(c) = child else {
            continue;
        };
        if c.ns == rpid::NS {
            match c.local.as_str() {
                "note" => {}
                "other" => out.push(Activity::Other(c.text())),
                name => out.push(
                    Activity::from_name(name).unwrap_or_else(|| Activity::Other(name.to_owned())),
                ),
            }
        } else {
            out.push(Activity::Other(c.local.clone()));
        }
    }
}

/// Maps a `<note>` or `<dm:note>`.
fn note_from_tree(el: &XElement) -> Note {
    Note {
        text: el.text(),
        lang: el.attr(XML_NS, "lang").map(str::to_owned),
    }
}

/// Parses a qvalue leniently (any decimal in 0..=1), rounded to three decimals so
/// that it serialises and parses back to the same value.
fn parse_qvalue(s: &str) -> Option<f32> {
    let q: f32 = s.trim().parse().ok()?;
    if !q.is_finite() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    Some(quantize(q) as f32 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IM_NS: &str = "urn:ietf:params:xml:ns:pidf:im";

    fn note(text: &str, lang: Option<&str>) -> Note {
        Note {
            text: text.to_owned(),
            lang: lang.map(str::to_owned),
        }
    }

    fn raw(s: &str) -> Raw {
        Raw(s.to_owned())
    }

    fn tuple(id: &str, basic: Option<Basic>) -> Tuple {
        Tuple {
            id: id.to_owned(),
            basic,
            status_extensions: Vec::new(),
            contact: None,
            notes: Vec::new(),
            timestamp: None,
            extensions: Vec::new(),
        }
    }

    fn person(id: &str, activities: Vec<Activity>, notes: Vec<Note>) -> Person {
        Person {
            id: id.to_owned(),
            activities,
            notes,
            timestamp: None,
            extensions: Vec::new(),
        }
    }

    fn parse(xml: &str) -> Presence {
        match Presence::parse(xml.as_bytes()) {
            Ok(doc) => doc,
            Err(e) => panic!("{e}\n{xml}"),
        }
    }

    fn err(xml: &str) -> PidfError {
        match Presence::parse(xml.as_bytes()) {
            Ok(doc) => panic!("accepted: {doc:?}"),
            Err(e) => e,
        }
    }

    /// Serialises and parses back, asserting the model is unchanged.
    fn assert_round_trip(doc: &Presence) {
        let xml = doc.to_xml();
        assert_eq!(&parse(&xml), doc, "round trip of\n{xml}");
    }

    /// RFC 3863's basic example, with a namespace prefix and with a default
    /// namespace (indentation as reproduced, not necessarily as in the RFC).
    const RFC3863_PREFIXED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
   <impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf"
       entity="pres:someone@example.com">
     <impp:tuple id="sg89ae">
       <impp:status>
         <impp:basic>open</impp:basic>
       </impp:status>
       <impp:contact priority="0.8">tel:+09012345678</impp:contact>
     </impp:tuple>
   </impp:presence>"#;

    const RFC3863_DEFAULT_NS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
   <presence xmlns="urn:ietf:params:xml:ns:pidf"
       entity="pres:someone@example.com">
     <tuple id="sg89ae">
       <status>
         <basic>open</basic>
       </status>
       <contact priority="0.8">tel:+09012345678</contact>
     </tuple>
   </presence>"#;

    #[test]
    fn rfc3863_basic_example_both_namespace_styles() {
        let expected = Presence {
            entity: "pres:someone@example.com".into(),
            tuples: vec![Tuple {
                contact: Some(Contact {
                    uri: "tel:+09012345678".into(),
                    priority: Some(0.8),
                }),
                ..tuple("sg89ae", Some(Basic::Open))
            }],
            ..Presence::default()
        };
        assert_eq!(parse(RFC3863_PREFIXED), expected);
        assert_eq!(parse(RFC3863_DEFAULT_NS), expected);
        assert!(expected.is_open());
        assert_eq!(
            expected.to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:someone@example.com\">\
             <tuple id=\"sg89ae\"><status><basic>open</basic></status>\
             <contact priority=\"0.8\">tel:+09012345678</contact></tuple></presence>"
        );
        assert_round_trip(&expected);
    }

    /// RFC 3863's example of a status extension (indentation as reproduced).
    #[test]
    fn rfc3863_status_extension_is_kept_raw() {
        let doc = parse(
            r#"<?xml version="1.0" encoding="UTF-8"?>
   <presence xmlns="urn:ietf:params:xml:ns:pidf"
       xmlns:local="urn:example-com:pidf-status-type"
       entity="pres:someone@example.com">
     <tuple id="ub93s3">
       <status>
         <basic>open</basic>
         <local:location>home</local:location>
       </status>
       <contact>im:someone@example.com</contact>
     </tuple>
   </presence>"#,
        );
        let t = &doc.tuples[0];
        assert_eq!(t.basic, Some(Basic::Open));
        assert_eq!(
            t.status_extensions,
            vec![raw(
                "<local:location xmlns:local=\"urn:example-com:pidf-status-type\">home</local:location>"
            )]
        );
        assert_eq!(
            t.contact,
            Some(Contact {
                uri: "im:someone@example.com".into(),
                priority: None
            })
        );
        assert_round_trip(&doc);
    }

    /// RFC 3863's full example: two tuples, status extensions, notes in two
    /// languages, a timestamp and a presentity note (indentation as reproduced).
    const RFC3863_FULL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
   <presence xmlns="urn:ietf:params:xml:ns:pidf"
        xmlns:im="urn:ietf:params:xml:ns:pidf:im"
        xmlns:myex="http://id.example.com/presence/"
        entity="pres:someone@example.com">
     <tuple id="bs35r9">
       <status>
         <basic>open</basic>
         <im:im>busy</im:im>
         <myex:location>home</myex:location>
       </status>
       <contact priority="0.8">im:someone@mobilecarrier.net</contact>
       <note xml:lang="en">Don't Disturb Please!</note>
       <note xml:lang="fr">Ne derangez pas, s'il vous plait</note>
       <timestamp>2001-10-27T16:49:29Z</timestamp>
     </tuple>
     <tuple id="eg92n8">
       <status>
         <basic>open</basic>
       </status>
       <contact priority="1.0">mailto:someone@example.com</contact>
     </tuple>
     <note>I'll be in Tokyo next week</note>
   </presence>"#;

    #[test]
    fn rfc3863_full_example_exact_model_and_round_trip() {
        let doc = parse(RFC3863_FULL);
        let expected = Presence {
            entity: "pres:someone@example.com".into(),
            tuples: vec![
                Tuple {
                    status_extensions: vec![
                        raw(&format!("<im:im xmlns:im=\"{IM_NS}\">busy</im:im>")),
                        raw("<myex:location xmlns:myex=\"http://id.example.com/presence/\">home</myex:location>"),
                    ],
                    contact: Some(Contact {
                        uri: "im:someone@mobilecarrier.net".into(),
                        priority: Some(0.8),
                    }),
                    notes: vec![
                        note("Don't Disturb Please!", Some("en")),
                        note("Ne derangez pas, s'il vous plait", Some("fr")),
                    ],
                    timestamp: Some("2001-10-27T16:49:29Z".into()),
                    ..tuple("bs35r9", Some(Basic::Open))
                },
                Tuple {
                    contact: Some(Contact {
                        uri: "mailto:someone@example.com".into(),
                        priority: Some(1.0),
                    }),
                    ..tuple("eg92n8", Some(Basic::Open))
                },
            ],
            notes: vec![note("I'll be in Tokyo next week", None)],
            ..Presence::default()
        };
        assert_eq!(doc, expected);
        let xml = doc.to_xml();
        assert!(xml.contains(
            "<note xml:lang=\"fr\">Ne derangez pas, s'il vous plait</note>\
             <timestamp>2001-10-27T16:49:29Z</timestamp></tuple>"
        ));
        assert!(xml.contains("<contact priority=\"1\">mailto:someone@example.com</contact>"));
        assert!(!xml.contains("xmlns:dm"), "no person, no dm prefix: {xml}");
        assert_round_trip(&doc);
    }

    /// RFC 3863's examples of tuple and presentity extensions, and of
    /// `mustUnderstand` (indentation as reproduced).
    #[test]
    fn rfc3863_tuple_presentity_and_must_understand_extensions() {
        let doc = parse(
            r#"<?xml version="1.0" encoding="UTF-8"?>
   <impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf"
        xmlns:myex="http://id.example.com/presence/"
        entity="pres:someone@example.com">
     <impp:tuple id="ck38g9">
       <impp:status>
         <impp:basic>open</impp:basic>
       </impp:status>
       <myex:mytupletag>Extended value in tuple</myex:mytupletag>
       <impp:contact priority="0.65">tel:+09012345678</impp:contact>
     </impp:tuple>
     <impp:tuple id="md66je">
       <impp:status>
         <impp:basic>open</impp:basic>
       </impp:status>
       <impp:contact priority="1.0">
          im:someone@mobilecarrier.net</impp:contact>
     </impp:tuple>
     <myex:mytag>My extended presentity information</myex:mytag>
   </impp:presence>"#,
        );
        assert_eq!(
            doc.tuples[0].extensions,
            vec![raw("<myex:mytupletag xmlns:myex=\"http://id.example.com/presence/\">Extended value in tuple</myex:mytupletag>")]
        );
        assert_eq!(
            doc.tuples[0].contact.as_ref().and_then(|c| c.priority),
            Some(0.65)
        );
        assert_eq!(
            doc.tuples[1].contact.as_ref().map(|c| c.uri.as_str()),
            Some("im:someone@mobilecarrier.net")
        );
        assert_eq!(
            doc.extensions,
            vec![raw("<myex:mytag xmlns:myex=\"http://id.example.com/presence/\">My extended presentity information</myex:mytag>")]
        );
        assert_round_trip(&doc);

        let doc = parse(
            r#"<?xml version="1.0" encoding="UTF-8"?>
   <impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf"
        xmlns:myex="http://id.mycompany.com/presence/"
        entity="pres:someone@example.com">
     <impp:tuple id="tj25ds">
       <impp:status>
         <impp:basic>open</impp:basic>
       </impp:status>
       <myex:complexExtension>
         <myex:ex1 impp:mustUnderstand="1">val1</myex:ex1>
         <myex:ex2>val2</myex:ex2>
       </myex:complexExtension>
       <impp:contact priority="0.725">tel:+09012345678</impp:contact>
     </impp:tuple>
     <myex:mytag>My extended presentity information</myex:mytag>
   </impp:presence>"#,
        );
        assert_eq!(
            doc.tuples[0].extensions,
            vec![raw(
                "<myex:complexExtension xmlns:myex=\"http://id.mycompany.com/presence/\">\n         \
                 <myex:ex1 xmlns:impp=\"urn:ietf:params:xml:ns:pidf\" impp:mustUnderstand=\"1\">val1</myex:ex1>\n         \
                 <myex:ex2>val2</myex:ex2>\n       </myex:complexExtension>"
            )]
        );
        assert_eq!(
            doc.tuples[0].contact.as_ref().and_then(|c| c.priority),
            Some(0.725)
        );
        assert_round_trip(&doc);
    }

    /// RFC 4480's example document (as reproduced in resiprocate's test suite).
    const RFC4480_EXAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
          xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
          xmlns:lt="urn:ietf:params:xml:ns:location-type"
          xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
       entity="pres:someone@example.com">

  <tuple id="bs35r9">
    <status>
      <basic>open</basic>
    </status>
    <dm:deviceID>urn:device:0003ba4811e3</dm:deviceID>
    <rpid:relationship><rpid:self/></rpid:relationship>
    <rpid:service-class><rpid:electronic/></rpid:service-class>
    <contact priority="0.8">im:someone@mobile.example.net</contact>
    <note xml:lang="en">Don't Disturb Please!</note>
    <note xml:lang="fr">Ne derangez pas, s'il vous plait</note>
    <timestamp>2005-10-27T16:49:29Z</timestamp>
  </tuple>

  <tuple id="ty4658">
    <status>
      <basic>open</basic>
    </status>
    <rpid:relationship><rpid:assistant/></rpid:relationship>
    <contact priority="1.0">mailto:secretary@example.com</contact>
  </tuple>

  <tuple id="eg92n8">
    <status>
      <basic>open</basic>
    </status>
    <dm:deviceID>urn:x-mac:0003ba4811e3</dm:deviceID>
    <rpid:class>email</rpid:class>
    <rpid:service-class><rpid:electronic/></rpid:service-class>
    <rpid:status-icon>http://example.com/mail.png</rpid:status-icon>
    <contact priority="1.0">mailto:someone@example.com</contact>
  </tuple>

  <note>I'll be in Tokyo next week</note>

  <dm:device id="pc147">
    <rpid:user-input idle-threshold="600" last-input="2004-10-21T13:20:00-05:00">idle</rpid:user-input>
    <dm:deviceID>urn:device:0003ba4811e3</dm:deviceID>
    <dm:note>PC</dm:note>
  </dm:device>

  <dm:person id="p1">
    <rpid:activities from="2005-05-30T12:00:00+05:00" until="2005-05-30T17:00:00+05:00">
      <rpid:note>Far away</rpid:note>
      <rpid:away/>
    </rpid:activities>
    <rpid:class>calendar</rpid:class>
    <rpid:mood>
      <rpid:angry/>
      <rpid:other>brooding</rpid:other>
    </rpid:mood>
    <rpid:place-is>
      <rpid:audio>
        <rpid:noisy/>
      </rpid:audio>
    </rpid:place-is>
    <rpid:place-type><lt:residence/></rpid:place-type>
    <rpid:privacy><rpid:unknown/></rpid:privacy>
    <rpid:sphere>bowling league</rpid:sphere>
    <rpid:status-icon>http://example.com/play.gif</rpid:status-icon>
    <rpid:time-offset>-240</rpid:time-offset>
    <dm:note>Scoring 120</dm:note>
    <dm:timestamp>2005-05-30T16:09:44+05:00</dm:timestamp>
  </dm:person>
</presence>
"#;

    #[test]
    fn rfc4480_example_parses_and_round_trips() {
        let doc = parse(RFC4480_EXAMPLE);
        let r = "xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\"";
        assert_eq!(doc.entity, "pres:someone@example.com");
        assert_eq!(doc.tuples.len(), 3);
        let t = &doc.tuples[0];
        assert_eq!(
            t.extensions,
            vec![
                raw(&format!(
                    "<dm:deviceID xmlns:dm=\"{DM_NS}\">urn:device:0003ba4811e3</dm:deviceID>"
                )),
                raw(&format!(
                    "<rpid:relationship {r}><rpid:self/></rpid:relationship>"
                )),
                raw(&format!(
                    "<rpid:service-class {r}><rpid:electronic/></rpid:service-class>"
                )),
            ]
        );
        assert_eq!(
            t.notes,
            vec![
                note("Don't Disturb Please!", Some("en")),
                note("Ne derangez pas, s'il vous plait", Some("fr"))
            ]
        );
        assert_eq!(t.timestamp.as_deref(), Some("2005-10-27T16:49:29Z"));
        assert_eq!(doc.tuples[2].extensions.len(), 4);
        assert_eq!(doc.notes, vec![note("I'll be in Tokyo next week", None)]);
        assert_eq!(
            doc.extensions,
            vec![raw(&format!(
                "<dm:device xmlns:dm=\"{DM_NS}\" id=\"pc147\">\n    \
                 <rpid:user-input {r} idle-threshold=\"600\" last-input=\"2004-10-21T13:20:00-05:00\">idle</rpid:user-input>\n    \
                 <dm:deviceID>urn:device:0003ba4811e3</dm:deviceID>\n    \
                 <dm:note>PC</dm:note>\n  </dm:device>"
            ))]
        );

        assert_eq!(doc.persons.len(), 1);
        let p = &doc.persons[0];
        assert_eq!(p.id, "p1");
        assert_eq!(p.activities, vec![Activity::Away]);
        assert_eq!(p.notes, vec![note("Scoring 120", None)]);
        assert_eq!(p.timestamp.as_deref(), Some("2005-05-30T16:09:44+05:00"));
        assert_eq!(p.extensions.len(), 8);
        assert_eq!(
            p.extensions[1],
            raw(&format!(
                "<rpid:mood {r}>\n      <rpid:angry/>\n      <rpid:other>brooding</rpid:other>\n    </rpid:mood>"
            ))
        );
        assert_eq!(
            p.extensions[3],
            raw(&format!(
                "<rpid:place-type {r}><lt:residence xmlns:lt=\"urn:ietf:params:xml:ns:location-type\"/></rpid:place-type>"
            ))
        );

        let xml = doc.to_xml();
        assert!(xml.contains(&format!(
            "<presence xmlns=\"{NS}\" xmlns:dm=\"{DM_NS}\" {r} entity=\"pres:someone@example.com\">"
        )));
        assert!(xml.contains(
            "<dm:person id=\"p1\"><rpid:activities><rpid:away/></rpid:activities><rpid:class "
        ));
        // Persons come after the presentity notes, other extensions last.
        assert!(xml.contains(
            "<dm:note>Scoring 120</dm:note>\
             <dm:timestamp>2005-05-30T16:09:44+05:00</dm:timestamp></dm:person><dm:device "
        ));
        assert!(xml.ends_with("</dm:device></presence>"));
        assert_round_trip(&doc);
    }

    /// Our own vector: activity elements RFC 4480 does not define (in its
    /// namespace and in another) become `Other(local name)`; the activities'
    /// `<rpid:note>` is not modelled; several activities elements accumulate.
    #[test]
    fn unknown_activities_become_other() {
        let doc = parse(
            r#"<presence xmlns="urn:ietf:params:xml:ns:pidf"
                xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
                xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@example.com">
              <dm:person id="p">
                <rpid:activities>
                  <rpid:note>not modelled</rpid:note>
                  <rpid:juggling/>
                  <ex:knitting xmlns:ex="urn:example:activities"/>
                  <rpid:other>brooding</rpid:other>
                  <rpid:other/>
                </rpid:activities>
                <rpid:activities><rpid:on-the-phone/></rpid:activities>
              </dm:person>
            </presence>"#,
        );
        assert_eq!(
            doc.persons[0].activities,
            vec![
                Activity::Other("juggling".into()),
                Activity::Other("knitting".into()),
                Activity::Other("brooding".into()),
                Activity::Other(String::new()),
                Activity::OnThePhone,
            ]
        );
        assert!(doc.persons[0].extensions.is_empty());
        let xml = doc.to_xml();
        assert!(xml.contains(
            "<rpid:activities><rpid:other>juggling</rpid:other><rpid:other>knitting</rpid:other>\
             <rpid:other>brooding</rpid:other><rpid:other/><rpid:on-the-phone/></rpid:activities>"
        ));
        assert_round_trip(&doc);
    }

    /// Our own vector: prefixes redeclared inside an extension, namespaced
    /// attributes, a default-namespace extension, an element in no namespace,
    /// and escaping that must survive a round trip.
    #[test]
    fn raw_extensions_are_self_contained() {
        let doc = parse(
            "<presence xmlns='urn:ietf:params:xml:ns:pidf' xmlns:a='urn:a' entity='pres:x@example.com'>\
               <a:ext a:attr='1&amp;2' plain='&quot;q&quot;&#9;'><inner>t&lt;&#13;</inner><a:b xmlns:a='urn:other'/></a:ext>\
               <ext2 xmlns='urn:d'><c/><![CDATA[<raw>]]></ext2>\
               <nons xmlns=''/>\
               <note>line\r\nbreak &amp; &#x263A;</note>\
             </presence>",
        );
        assert_eq!(
            doc.extensions,
            vec![
                raw(
                    "<a:ext xmlns:a=\"urn:a\" a:attr=\"1&amp;2\" plain=\"&quot;q&quot;&#9;\">\
                     <inner xmlns=\"urn:ietf:params:xml:ns:pidf\">t&lt;&#13;</inner>\
                     <a:b xmlns:a=\"urn:other\"/></a:ext>"
                ),
                raw("<ext2 xmlns=\"urn:d\"><c/>&lt;raw&gt;</ext2>"),
                raw("<nons xmlns=\"\"/>"),
            ]
        );
        assert_eq!(doc.notes, vec![note("line\nbreak & \u{263A}", None)]);
        assert_round_trip(&doc);
        assert_eq!(parse(&doc.to_xml()).extensions, doc.extensions);
    }

    #[test]
    fn serialises_exactly_and_escapes() {
        let doc = Presence {
            entity: "pres:a&b\"c@example.com".into(),
            tuples: vec![Tuple {
                contact: Some(Contact {
                    uri: "sip:a@example.com;x=<y>".into(),
                    priority: Some(0.05),
                }),
                notes: vec![note("a < b\r\n", Some("en"))],
                timestamp: Some("2024-01-01T00:00:00Z".into()),
                ..tuple("t1", None)
            }],
            persons: vec![person("p", vec![], vec![note("x", None)])],
            notes: vec![note("&", None)],
            extensions: vec![raw("<x xmlns=\"urn:x\"/>")],
        };
        assert_eq!(
            doc.to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
             entity=\"pres:a&amp;b&quot;c@example.com\">\
             <tuple id=\"t1\"><status></status>\
             <contact priority=\"0.05\">sip:a@example.com;x=&lt;y&gt;</contact>\
             <note xml:lang=\"en\">a &lt; b&#13;\n</note><timestamp>2024-01-01T00:00:00Z</timestamp></tuple>\
             <note>&amp;</note>\
             <dm:person id=\"p\"><dm:note>x</dm:note></dm:person>\
             <x xmlns=\"urn:x\"/></presence>"
        );
        assert_round_trip(&doc);
        let mut buf = String::from("prefix:");
        doc.write_xml(&mut buf);
        assert_eq!(buf, format!("prefix:{}", doc.to_xml()));
    }

    #[test]
    fn qvalues_format_and_parse() {
        let fmt = |q: f32| {
            let mut s = String::new();
            write_qvalue(q, &mut s);
            s
        };
        assert_eq!(fmt(0.0), "0");
        assert_eq!(fmt(1.0), "1");
        assert_eq!(fmt(0.8), "0.8");
        assert_eq!(fmt(0.05), "0.05");
        assert_eq!(fmt(0.125), "0.125");
        assert_eq!(fmt(0.9921875), "0.992");
        assert_eq!(fmt(1.5), "1");
        assert_eq!(fmt(-1.0), "0");
        assert_eq!(fmt(f32::NAN), "0");
        assert_eq!(parse_qvalue("0.8"), Some(0.8));
        assert_eq!(parse_qvalue(" 1.000 "), Some(1.0));
        assert_eq!(parse_qvalue("0.12345"), Some(0.123));
        assert_eq!(parse_qvalue("1.5"), None);
        assert_eq!(parse_qvalue("-0.1"), None);
        assert_eq!(parse_qvalue("NaN"), None);
        assert_eq!(parse_qvalue("high"), None);
        for t in 0..=1000u32 {
            let q = t as f32 / 1000.0;
            assert_eq!(parse_qvalue(&fmt(q)), Some(q), "{t}");
        }
    }

    #[test]
    fn tolerant_of_odd_but_harmless_content() {
        let doc = parse(
            "\u{FEFF}<?xml version='1.0'?><!-- hi --><presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'>\
             <tuple><status><basic> sideways </basic></status><contact priority='2'>sip:x</contact>\
             <contact>sip:second</contact><status><basic>open</basic></status></tuple>\
             <?pi data?></presence>\n",
        );
        assert_eq!(
            doc.tuples,
            vec![Tuple {
                contact: Some(Contact {
                    uri: "sip:x".into(),
                    priority: None
                }),
                ..tuple("", None)
            }]
        );
        assert!(!doc.is_open());
    }

    #[test]
    fn invalid_documents_are_refused_with_exact_errors() {
        assert_eq!(
            err("hello"),
            PidfError::Xml("text outside the root element".into())
        );
        assert_eq!(err(""), PidfError::Xml("no root element".into()));
        assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><tuple id='t'>"),
            PidfError::Xml("<tuple> is not closed".into())
        );
        assert!(matches!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><note></tuple></presence>"),
            PidfError::Xml(m) if m.contains("<note>")
        ));
        assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'/><presence/>"),
            PidfError::Xml("element <presence> after the root element".into())
        );
        assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><x:y/></presence>"),
            PidfError::Xml("undeclared namespace prefix 'x' on <x:y>".into())
        );
        assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><xmlns:y/></presence>"),
            PidfError::Xml("reserved prefix 'xmlns' on <xmlns:y>".into())
        );
        assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><a:x xmlns:a='urn:a&amp;b'/></presence>"),
            PidfError::Xml("unsupported namespace name in 'xmlns:a' of <a:x>".into())
        );
        assert!(matches!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' xmlns:a='http://www.w3.org/2000/xmlns/' entity='e'/>"),
            PidfError::Xml(_)
        ));
        assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:cpim-pidf' entity='pres:a@example.com'/>"),
            PidfError::NotPidf {
                name: "presence".into(),
                ns: "urn:ietf:params:xml:ns:cpim-pidf".into()
            }
        );
        assert_eq!(
            err("<presence entity='pres:a@example.com'/>"),
            PidfError::NotPidf {
                name: "presence".into(),
                ns: String::new()
            }
        );
        assert_eq!(
            err("<?xml version='1.0'?><presence xmlns='urn:ietf:params:xml:ns:pidf'><tuple id='t'/></presence>"),
            PidfError::MissingEntity
        );
        assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity=''/>"),
            PidfError::MissingEntity
        );
        assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><note>&lol;</note></presence>"),
            PidfError::Entity {
                name: "lol".into(),
                element: "note".into()
            }
        );
        assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='&lol;'/>"),
            PidfError::Entity {
                name: "lol".into(),
                element: "presence".into()
            }
        );
        assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><note>&#1;</note></presence>"),
            PidfError::Xml("invalid character reference &#1; in <note>".into())
        );
        assert_eq!(
            err("<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'>\u{1}</presence>"),
            PidfError::Xml("illegal character U+0001".into())
        );
        assert_eq!(
            Presence::parse(b"<presence \xff/>"),
            Err(PidfError::NotUtf8)
        );
    }

    /// A "billion laughs" body (our own vector): refused at the DOCTYPE, before
    /// any entity could be expanded.
    #[test]
    fn doctype_is_refused() {
        let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE presence [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@example.com"><note>&lol2;</note></presence>"#;
        assert_eq!(err(bomb), PidfError::Doctype);
        assert_eq!(
            err("<!DOCTYPE presence><presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'/>"),
            PidfError::Doctype
        );
    }

    #[test]
    fn size_and_depth_limits() {
        let small = "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'/>";
        assert_eq!(
            Presence::parse_limited(small.as_bytes(), 10),
            Err(PidfError::TooLarge {
                size: small.len(),
                max: 10
            })
        );
        assert!(Presence::parse_limited(small.as_bytes(), small.len()).is_ok());
        let big = format!(
            "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'><note>{}</note></presence>",
            "x".repeat(MAX_DOCUMENT_BYTES)
        );
        assert!(matches!(
            Presence::parse(big.as_bytes()),
            Err(PidfError::TooLarge {
                max: MAX_DOCUMENT_BYTES,
                ..
            })
        ));

        let nest = |n: usize| {
            format!(
                "<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='e'>{}{}</presence>",
                "<x:d xmlns:x='urn:x'>".repeat(n),
                "</x:d>".repeat(n)
            )
        };
        // The root is depth 0, so MAX_DEPTH - 1 nested elements are accepted.
        let ok = parse(&nest(MAX_DEPTH - 1));
        assert_eq!(ok.extensions.len(), 1);
        assert_round_trip(&ok);
        assert_eq!(
            err(&nest(MAX_DEPTH)),
            PidfError::TooDeep {
                element: "x:d".into(),
                max: MAX_DEPTH
            }
        );
    }

    #[test]
    fn error_messages_name_the_element() {
        assert_eq!(
            PidfError::Entity {
                name: "lol".into(),
                element: "note".into()
            }
            .to_string(),
            "entity reference &lol; in <note> is not allowed (only the predefined entities and character references are)"
        );
        assert_eq!(
            PidfError::MissingEntity.to_string(),
            "<presence> has no entity attribute"
        );
        assert_eq!(
            PidfError::NotPidf {
                name: "foo".into(),
                ns: "urn:x".into()
            }
            .to_string(),
            "root element <foo> in namespace 'urn:x' is not <presence> in urn:ietf:params:xml:ns:pidf"
        );
    }

    /// Truncations and single-byte mutations of the RFC examples never panic, and
    /// whatever is accepted serialises to a document that parses back equal.
    #[test]
    fn mutated_input_never_panics_and_accepted_input_round_trips() {
        let mut accepted = 0;
        for source in [RFC4480_EXAMPLE, RFC3863_FULL, RFC3863_PREFIXED] {
            let bytes = source.as_bytes();
            let mut check = |input: &[u8]| {
                if let Ok(doc) = Presence::parse(input) {
                    accepted += 1;
                    let again = Presence::parse(doc.to_xml().as_bytes());
                    assert_eq!(
                        again.as_ref(),
                        Ok(&doc),
                        "{}",
                        String::from_utf8_lossy(input)
                    );
                }
            };
            for end in 0..=bytes.len() {
                check(bytes.get(..end).unwrap_or_default());
            }
            for i in 0..bytes.len() {
                for b in [b'<', b'>', b'&', b'"', b':', b'/'] {
                    let mut m = bytes.to_vec();
                    if let Some(slot) = m.get_mut(i) {
                        *slot = b;
                    }
                    check(&m);
                }
            }
        }
        assert!(accepted > 1000, "only {accepted} mutants accepted");
    }

    fn publication(tuples: Vec<Tuple>, notes: Vec<Note>, persons: Vec<Person>) -> Presence {
        Presence {
            entity: "pres:alice@example.com".into(),
            tuples,
            persons,
            notes,
            extensions: Vec::new(),
        }
    }

    #[test]
    fn compose_merges_tuples_persons_and_notes() {
        let t1_open = Tuple {
            notes: vec![note("v1", None)],
            ..tuple("t1", Some(Basic::Open))
        };
        let t2 = tuple("t2", Some(Basic::Closed));
        let t1_closed = Tuple {
            notes: vec![note("v3", None)],
            ..tuple("t1", Some(Basic::Closed))
        };
        let tokyo = note("Tokyo next week", None);
        let first = publication(
            vec![t1_open.clone()],
            vec![tokyo.clone()],
            vec![person(
                "pa",
                vec![Activity::Busy],
                vec![note("in a meeting", None)],
            )],
        );
        let second = publication(
            vec![t2.clone()],
            vec![tokyo.clone()],
            vec![person("pb", vec![], vec![note("lunch soon", None)])],
        );
        let third = publication(vec![t1_closed.clone()], vec![note("Paris", None)], vec![]);
        assert!(first.is_open());

        let composed = Presence::compose("sip:alice@example.com", [&first, &second, &third]);
        assert_eq!(
            composed,
            Presence {
                entity: "sip:alice@example.com".into(),
                tuples: vec![t1_closed, t2.clone()],
                persons: vec![person(
                    "pb",
                    vec![Activity::Busy],
                    vec![note("lunch soon", None)]
                )],
                notes: vec![tokyo, note("Paris", None)],
                extensions: Vec::new(),
            }
        );
        assert!(!composed.is_open());

        // Order matters: the most recent publication wins.
        let reversed = Presence::compose("e", [&third, &second, &first]);
        assert_eq!(reversed.tuples, vec![t1_open, t2]);
        assert!(reversed.is_open());
        assert_eq!(reversed.persons[0].id, "pa");
        assert_eq!(reversed.persons[0].notes, vec![note("in a meeting", None)]);

        let empty = Presence::compose("e", []);
        assert_eq!(
            empty,
            Presence {
                entity: "e".into(),
                ..Presence::default()
            }
        );
    }
}
