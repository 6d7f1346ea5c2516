//! Mapping between XMPP presence and PIDF, after RFC 8048 (which obsoletes RFC 7248):
//! §4 (XMPP to SIP: a `<presence/>` stanza becomes a PIDF tuple) and §5 (SIP to XMPP:
//! a PIDF document becomes one `<presence/>` per tuple), with the RPID activities of
//! RFC 4480 §3.2 standing for the XMPP `<show/>` values (RFC 6121 §4.7.2.1).
//!
//! The mapping, both ways:
//!
//! | XMPP                               | PIDF / RPID                                         |
//! |------------------------------------|-----------------------------------------------------|
//! | no `type`                          | `<basic>open</basic>`                               |
//! | `type='unavailable'` (or any type) | `<basic>closed</basic>`                             |
//! | resourcepart                       | tuple `id` (see [`encode_tuple_id`])                |
//! | `<priority/>` p                    | `<contact priority>`: p/128 (3 decimals), 0 if p<0  |
//! | `<status/>`                        | tuple `<note>` and `<dm:note>` of the person        |
//! | `<show>away</show>`                | `<rpid:away/>`                                      |
//! | `<show>xa</show>`                  | `<rpid:away/>` (RPID has no "extended away")        |
//! | `<show>dnd</show>`                 | `<rpid:busy/>`                                      |
//! | `<show>chat</show>`                | no activity (open, available for anything)          |
//!
//! PIDF to XMPP, the activities of the (first) person give `<show/>`; when several
//! are present the most restrictive wins (dnd, then xa, then away):
//!
//! | RPID activities                                                                  | `<show/>` |
//! |----------------------------------------------------------------------------------|-----------|
//! | busy, on-the-phone, meeting, appointment, performance, presentation, worship, steering | `dnd` |
//! | vacation, holiday, permanent-absence, travel, sleeping                           | `xa`      |
//! | away, breakfast, lunch, dinner, meal, shopping, in-transit, playing, spectator, tv | `away`  |
//! | working, looking-for-work, unknown, other, none                                  | none      |
//!
//! The contact priority maps back as round(q × 128), at most 127, so every XMPP
//! priority from 0 to 127 survives a round trip; negative priorities come back as 0,
//! `xa` as `away` and `chat` as no `<show/>`. Pure code: no I/O.
//!
//! Provenance: the RFC 8048 text was not at hand when this was written. The
//! basic-status, status/note and priority rows follow RFC 7248/8048 as we recall
//! them (negative priority → 0, else divided by 128); the `<show/>`/activity rows,
//! especially the second table, are our own choices within RFC 4480's vocabulary.
//! Check them against RFC 8048 §4 and §5 before treating them as normative.

use crate::xml::{Element, CLIENT_NS};

use super::rpid::Activity;
use super::{Basic, Contact, Note, Person, Presence, Tuple};

/// The XMPP `<show/>` values of RFC 6121 §4.7.2.1, a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// `away`: temporarily away.
    Away,
    /// `chat`: actively interested in chatting.
    Chat,
    /// `dnd`: busy, do not disturb.
    Dnd,
    /// `xa`: away for an extended period.
    Xa,
}

impl Show {
    /// The `<show/>` text for this value.
    pub fn as_str(self) -> &'static str {
        match self {
            Show::Away => "away",
            Show::Chat => "chat",
            Show::Dnd => "dnd",
            Show::Xa => "xa",
        }
    }

    /// Parses `<show/>` text; anything else is `None` (and ignored by [`read_stanza`]).
    pub fn parse(s: &str) -> Option<Show> {
        match s {
            "away" => Some(Show::Away),
            "chat" => Some(Show::Chat),
            "dnd" => Some(Show::Dnd),
            "xa" => Some(Show::Xa),
            _ => None,
        }
    }
}

/// The availability of one XMPP resource: what the RFC 8048 mapping carries.
#[derive(Debug, Clone, PartialEq)]
pub struct XmppPresence {
    /// The resourcepart of the full JID this presence came from.
    pub resource: String,
    /// True for available presence (no `type`), false for `unavailable`.
    pub available: bool,
    /// The `<show/>` value, only meaningful when available.
    pub show: Option<Show>,
    /// The `<status/>` text.
    pub status: Option<String>,
    /// The `<priority/>` (RFC 6121 §4.7.2.3), 0 when absent.
    pub priority: i8,
}

/// Reads type/show/status/priority of a `jabber:client` `<presence/>` (missing/invalid priority = 0).
///
/// Children are looked up in the stanza's own namespace (so `jabber:server` works
/// too). Any `type` makes the presence unavailable: only availability presence
/// should be passed here. An unknown `<show/>` value is ignored, and `<show/>` is
/// ignored on unavailable presence. Of several `<status/>` elements the first
/// without `xml:lang` is taken, else the first.
pub fn read_stanza(resource: &str, presence: &Element) -> XmppPresence {
    let ns = presence.ns.as_str();
    let available = presence.attr("type").is_none();
    let show = if available {
        presence
            .get_child("show", ns)
            .and_then(|s| Show::parse(s.text().trim()))
    } else {
        None
    };
    let statuses = || presence.elements().filter(|e| e.is("status", ns));
    let status = statuses()
        .find(|e| e.attr("xml:lang").is_none())
        .or_else(|| statuses().next())
        .map(Element::text);
    let priority = presence
        .get_child("priority", ns)
        .and_then(|p| p.text().trim().parse::<i8>().ok())
        .unwrap_or(0);
    XmppPresence {
        resource: resource.to_owned(),
        available,
        show,
        status,
        priority,
    }
}

/// XMPP -> PIDF for one resource: tuple id = resource made a valid xs:ID (NCName) reversibly
/// (see [`encode_tuple_id`]), basic open/closed from available, `<contact priority>` from XMPP
/// priority (RFC 8048 §4: negative → 0, else priority/128, three decimals), tuple note from
/// status, a `<dm:person>` (id [`PERSON_ID`]) with the RPID activity for show (away → away,
/// xa → away, dnd → busy, chat → none) and the status as person note.
/// `contact_uri` e.g. "xmpp:alice@example.com/phone".
///
/// The person is present when the resource is available with a `<show/>` that maps
/// to an activity, or when there is a status.
pub fn to_pidf(entity: &str, contact_uri: &str, p: &XmppPresence) -> Presence {
    Presence {
        entity: entity.to_owned(),
        tuples: vec![tuple_for(contact_uri, p)],
        persons: person_for(p).into_iter().collect(),
        notes: Vec::new(),
        extensions: Vec::new(),
    }
}

/// Several resources of one user composed into one document (tuples in order, one person from
/// the highest-priority available resource).
///
/// Each tuple's contact is `xmpp:{bare_jid}/{resource}` with the resource
/// percent-encoded where RFC 3986 requires it. Among available resources of equal
/// priority the first wins; with none available there is no person.
pub fn resources_to_pidf(entity: &str, bare_jid: &str, resources: &[XmppPresence]) -> Presence {
    let tuples = resources
        .iter()
        .map(|r| tuple_for(&xmpp_uri(bare_jid, &r.resource), r))
        .collect();
    let mut best: Option<&XmppPresence> = None;
    for r in resources.iter().filter(|r| r.available) {
        if best.is_none_or(|b| r.priority > b.priority) {
            best = Some(r);
        }
    }
    Presence {
        entity: entity.to_owned(),
        tuples,
        persons: best.and_then(person_for).into_iter().collect(),
        notes: Vec::new(),
        extensions: Vec::new(),
    }
}

/// PIDF -> XMPP: one XmppPresence per tuple (resource = decoded tuple id), available = basic open,
/// show from the person's activities (table in the module docs), status = tuple note, else
/// person note, else presentity note; priority from contact priority (round(q × 128), at most 127).
///
/// The first person with activities gives the show of every available tuple (PIDF
/// does not say which tuple a person's activities belong to); unavailable tuples
/// have no show. Of several notes the first is taken.
pub fn from_pidf(doc: &Presence) -> Vec<XmppPresence> {
    let show = doc
        .persons
        .iter()
        .find(|p| !p.activities.is_empty())
        .and_then(|p| show_for(&p.activities));
    let person_note = doc.persons.iter().find_map(|p| p.notes.first());
    doc.tuples
        .iter()
        .map(|t| {
            let available = t.basic == Some(Basic::Open);
            let status = t
                .notes
                .first()
                .or(person_note)
                .or_else(|| doc.notes.first())
                .map(|n| n.text.clone());
            XmppPresence {
                resource: decode_tuple_id(&t.id),
                available,
                show: if available { show } else { None },
                status,
                priority: t
                    .contact
                    .as_ref()
                    .and_then(|c| c.priority)
                    .map_or(0, priority_from_qvalue),
            }
        })
        .collect()
}

/// The `jabber:client` `<presence/>` element for it (type='unavailable' when not available), with
/// `from` = full JID given; no `to`.
///
/// `<show/>` and `<priority/>` (when not 0) are written for available presence
/// only; `<status/>` in both cases.
pub fn to_stanza(from_full_jid: &str, p: &XmppPresence) -> Element {
    let mut el = Element::new("presence", CLIENT_NS).with_attr("from", from_full_jid);
    if !p.available {
        el.set_attr("type", "unavailable");
    }
    if p.available {
        if let Some(show) = p.show {
            el.push_child(Element::new("show", CLIENT_NS).with_text(show.as_str()));
        }
    }
    if let Some(status) = &p.status {
        el.push_child(Element::new("status", CLIENT_NS).with_text(status.as_str()));
    }
    if p.available && p.priority != 0 {
        el.push_child(Element::new("priority", CLIENT_NS).with_text(p.priority.to_string()));
    }
    el
}

/// The `id` of the person [`to_pidf`] writes. It cannot collide with a tuple id
/// from [`encode_tuple_id`]: it starts with `x-` but is not followed by hex.
pub const PERSON_ID: &str = "x-person";

/// Prefix of encoded tuple ids.
const ENCODED_PREFIX: &str = "x-";

/// Makes an XMPP resourcepart a valid `xs:ID` (an NCName), reversibly (RFC 8048
/// §4 allows the gateway to transform it).
///
/// A resource that is an ASCII NCName (`[A-Za-z_][A-Za-z0-9._-]*`) not starting
/// with `x-` is used as is; any other resource (empty, starting with a digit,
/// containing `/`, `@`, spaces, non-ASCII, or starting with `x-`) becomes `x-`
/// followed by the lowercase hex of its UTF-8 bytes. `"phone"` stays `"phone"`;
/// `"my phone"` becomes `"x-6d792070686f6e65"`.
pub fn encode_tuple_id(resource: &str) -> String {
    if is_plain_ncname(resource) && !resource.starts_with(ENCODED_PREFIX) {
        return resource.to_owned();
    }
    let mut out = String::with_capacity(ENCODED_PREFIX.len() + 2 * resource.len());
    out.push_str(ENCODED_PREFIX);
    for b in resource.bytes() {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b & 0x0f));
    }
    out
}

/// Inverse of [`encode_tuple_id`]. A tuple id that is not one of our encodings
/// (another gateway's `x-…`, or uppercase hex) is returned unchanged.
pub fn decode_tuple_id(id: &str) -> String {
    id.strip_prefix(ENCODED_PREFIX)
        .and_then(decode_hex)
        .unwrap_or_else(|| id.to_owned())
}

/// Decodes lowercase hex into UTF-8, or `None`.
fn decode_hex(hex: &str) -> Option<String> {
    let bytes = hex.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for pair in bytes.chunks_exact(2) {
        let (&hi, &lo) = (pair.first()?, pair.get(1)?);
        out.push((hex_value(hi)? << 4) | hex_value(lo)?);
    }
    String::from_utf8(out).ok()
}

/// Value of a lowercase hex digit.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Lowercase hex digit for a nibble (0..=15).
fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble & 0x0f), 16).unwrap_or('0')
}

/// `[A-Za-z_][A-Za-z0-9._-]*`: the ASCII subset of the NCName production.
fn is_plain_ncname(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// `xmpp:{bare}/{resource}` (RFC 5122), percent-encoding the resource outside
/// RFC 3986 `pchar`.
fn xmpp_uri(bare_jid: &str, resource: &str) -> String {
    let mut out = String::with_capacity(6 + bare_jid.len() + resource.len() + 1);
    out.push_str("xmpp:");
    out.push_str(bare_jid);
    out.push('/');
    for b in resource.bytes() {
        let plain = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            );
        if plain {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4).to_ascii_uppercase());
            out.push(hex_digit(b & 0x0f).to_ascii_uppercase());
        }
    }
    out
}

/// The tuple for one resource.
fn tuple_for(contact_uri: &str, p: &XmppPresence) -> Tuple {
    Tuple {
        id: encode_tuple_id(&p.resource),
        basic: Some(if p.available {
            Basic::Open
        } else {
            Basic::Closed
        }),
        status_extensions: Vec::new(),
        contact: Some(Contact {
            uri: contact_uri.to_owned(),
            priority: Some(qvalue_from_priority(p.priority)),
        }),
        notes: p.status.iter().map(|s| note(s)).collect(),
        timestamp: None,
        extensions: Vec::new(),
    }
}

/// The person for one resource, if it has anything to say.
fn person_for(p: &XmppPresence) -> Option<Person> {
    let activities = match (p.available, p.show) {
        (true, Some(show)) => activities_for(show),
        _ => Vec::new(),
    };
    if activities.is_empty() && p.status.is_none() {
        return None;
    }
    Some(Person {
        id: PERSON_ID.to_owned(),
        activities,
        notes: p.status.iter().map(|s| note(s)).collect(),
        timestamp: None,
        extensions: Vec::new(),
    })
}

/// A note without language.
fn note(text: &str) -> Note {
    Note {
        text: text.to_owned(),
        lang: None,
    }
}

/// XMPP `<show/>` to RPID activities (module table).
fn activities_for(show: Show) -> Vec<Activity> {
    match show {
        Show::Away | Show::Xa => vec![Activity::Away],
        Show::Dnd => vec![Activity::Busy],
        Show::Chat => Vec::new(),
    }
}

/// RPID activities to XMPP `<show/>`: the most restrictive one wins (module table).
fn show_for(activities: &[Activity]) -> Option<Show> {
    let rank = |a: &Activity| match a {
        Activity::Busy
        | Activity::OnThePhone
        | Activity::Meeting
        | Activity::Appointment
        | Activity::Performance
        | Activity::Presentation
        | Activity::Worship
        | Activity::Steering => 3,
        Activity::Vacation
        | Activity::Holiday
        | Activity::PermanentAbsence
        | Activity::Travel
        | Activity::Sleeping => 2,
        Activity::Away
        | Activity::Breakfast
        | Activity::Lunch
        | Activity::Dinner
        | Activity::Meal
        | Activity::Shopping
        | Activity::InTransit
        | Activity::Playing
        | Activity::Spectator
        | Activity::Tv => 1,
        Activity::Working | Activity::LookingForWork | Activity::Unknown | Activity::Other(_) => 0,
    };
    match activities.iter().map(rank).max() {
        Some(3) => Some(Show::Dnd),
        Some(2) => Some(Show::Xa),
        Some(1) => Some(Show::Away),
        _ => None,
    }
}

/// XMPP priority to PIDF contact priority: negative → 0, else p/128 rounded to
/// three decimals (so that it serialises exactly).
fn qvalue_from_priority(priority: i8) -> f32 {
    let p = f32::from(priority.max(0));
    (p / 128.0 * 1000.0).round() / 1000.0
}

/// PIDF contact priority to XMPP priority: round(q × 128), clamped to 0..=127.
fn priority_from_qvalue(q: f32) -> i8 {
    // `as` saturates and maps NaN to 0; the clamp keeps it in i8's positive range.
    (q * 128.0).round().clamp(0.0, 127.0) as i8
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTITY: &str = "pres:juliet@example.com";

    fn xp(
        resource: &str,
        available: bool,
        show: Option<Show>,
        status: Option<&str>,
        priority: i8,
    ) -> XmppPresence {
        XmppPresence {
            resource: resource.to_owned(),
            available,
            show,
            status: status.map(str::to_owned),
            priority,
        }
    }

    fn child(name: &str, text: &str) -> Element {
        Element::new(name, CLIENT_NS).with_text(text)
    }

    /// XMPP -> PIDF -> bytes -> PIDF -> XMPP, as a SIP watcher's gateway would see it.
    fn through_pidf(p: &XmppPresence) -> XmppPresence {
        let doc = to_pidf(ENTITY, "xmpp:juliet@example.com/balcony", p);
        let parsed = match Presence::parse(doc.to_xml().as_bytes()) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(parsed, doc);
        let mut out = from_pidf(&parsed);
        assert_eq!(out.len(), 1);
        out.remove(0)
    }

    /// Modelled on the presence stanzas of RFC 6121 §4.7 (our own vector):
    /// show, two statuses with languages, priority.
    #[test]
    fn read_stanza_takes_show_status_priority() {
        let stanza = Element::new("presence", CLIENT_NS)
            .with_attr("xml:lang", "en")
            .with_child(child("show", "dnd"))
            .with_child(child("status", "Dvořím se Julii").with_attr("xml:lang", "cs"))
            .with_child(child("status", "Wooing Juliet"))
            .with_child(child("priority", "1"));
        assert_eq!(
            read_stanza("balcony", &stanza),
            xp("balcony", true, Some(Show::Dnd), Some("Wooing Juliet"), 1)
        );

        let only_lang = Element::new("presence", CLIENT_NS)
            .with_child(child("status", "Dvořím se Julii").with_attr("xml:lang", "cs"));
        assert_eq!(
            read_stanza("r", &only_lang).status.as_deref(),
            Some("Dvořím se Julii")
        );
        assert_eq!(read_stanza("r", &only_lang).priority, 0, "missing priority");
    }

    #[test]
    fn read_stanza_invalid_and_unavailable() {
        for (text, expected) in [
            ("abc", 0),
            ("200", 0),
            ("-129", 0),
            ("", 0),
            (" -5 ", -5),
            ("127", 127),
            ("-128", -128),
        ] {
            let stanza = Element::new("presence", CLIENT_NS).with_child(child("priority", text));
            assert_eq!(read_stanza("r", &stanza).priority, expected, "{text:?}");
        }
        let odd_show = Element::new("presence", CLIENT_NS).with_child(child("show", "busy"));
        assert_eq!(read_stanza("r", &odd_show).show, None);
        for show in ["away", "chat", "dnd", "xa"] {
            let stanza = Element::new("presence", CLIENT_NS).with_child(child("show", show));
            assert_eq!(read_stanza("r", &stanza).show.map(Show::as_str), Some(show));
        }
        let gone = Element::new("presence", CLIENT_NS)
            .with_attr("type", "unavailable")
            .with_child(child("show", "away"))
            .with_child(child("status", "gone home"));
        assert_eq!(
            read_stanza("r", &gone),
            xp("r", false, None, Some("gone home"), 0)
        );
        let server = Element::new("presence", "jabber:server")
            .with_child(Element::new("show", "jabber:server").with_text("xa"));
        assert_eq!(read_stanza("r", &server).show, Some(Show::Xa));
        let wrong_ns = Element::new("presence", CLIENT_NS)
            .with_child(Element::new("show", "urn:other").with_text("xa"));
        assert_eq!(read_stanza("r", &wrong_ns).show, None);
    }

    #[test]
    fn to_pidf_exact_model_and_body() {
        let p = xp("balcony", true, Some(Show::Away), Some("Stepped out"), 64);
        let doc = to_pidf(ENTITY, "xmpp:juliet@example.com/balcony", &p);
        assert_eq!(
            doc,
            Presence {
                entity: ENTITY.into(),
                tuples: vec![Tuple {
                    id: "balcony".into(),
                    basic: Some(Basic::Open),
                    status_extensions: vec![],
                    contact: Some(Contact {
                        uri: "xmpp:juliet@example.com/balcony".into(),
                        priority: Some(0.5),
                    }),
                    notes: vec![note("Stepped out")],
                    timestamp: None,
                    extensions: vec![],
                }],
                persons: vec![Person {
                    id: PERSON_ID.into(),
                    activities: vec![Activity::Away],
                    notes: vec![note("Stepped out")],
                    timestamp: None,
                    extensions: vec![],
                }],
                notes: vec![],
                extensions: vec![],
            }
        );
        assert_eq!(
            doc.to_xml(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
             xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
             xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"pres:juliet@example.com\">\
             <tuple id=\"balcony\"><status><basic>open</basic></status>\
             <contact priority=\"0.5\">xmpp:juliet@example.com/balcony</contact>\
             <note>Stepped out</note></tuple>\
             <dm:person id=\"x-person\"><rpid:activities><rpid:away/></rpid:activities>\
             <dm:note>Stepped out</dm:note></dm:person></presence>"
        );

        // Available, no show, no status: just the tuple.
        let plain = to_pidf(
            ENTITY,
            "xmpp:j@example.com/r",
            &xp("r", true, None, None, 0),
        );
        assert!(plain.persons.is_empty());
        assert_eq!(plain.tuples[0].notes, vec![]);
        assert_eq!(
            plain.tuples[0].contact.as_ref().and_then(|c| c.priority),
            Some(0.0)
        );

        // Unavailable: basic closed, show ignored, status kept as notes.
        let gone = to_pidf(
            ENTITY,
            "xmpp:j@example.com/r",
            &xp("r", false, Some(Show::Dnd), Some("bye"), 5),
        );
        assert_eq!(gone.tuples[0].basic, Some(Basic::Closed));
        assert_eq!(gone.persons[0].activities, vec![]);
        assert_eq!(gone.persons[0].notes, vec![note("bye")]);
        assert!(!gone.is_open());
    }

    fn note(text: &str) -> Note {
        Note {
            text: text.to_owned(),
            lang: None,
        }
    }

    #[test]
    fn show_maps_to_activities() {
        let acts = |show| {
            to_pidf(ENTITY, "u", &xp("r", true, Some(show), None, 0))
                .persons
                .first()
                .map(|p| p.activities.clone())
        };
        assert_eq!(acts(Show::Away), Some(vec![Activity::Away]));
        assert_eq!(acts(Show::Xa), Some(vec![Activity::Away]));
        assert_eq!(acts(Show::Dnd), Some(vec![Activity::Busy]));
        assert_eq!(acts(Show::Chat), None, "chat has no activity and no person");
    }

    #[test]
    fn activities_map_to_show() {
        use Activity::*;
        let table = [
            (Busy, Some(Show::Dnd)),
            (OnThePhone, Some(Show::Dnd)),
            (Meeting, Some(Show::Dnd)),
            (Appointment, Some(Show::Dnd)),
            (Performance, Some(Show::Dnd)),
            (Presentation, Some(Show::Dnd)),
            (Worship, Some(Show::Dnd)),
            (Steering, Some(Show::Dnd)),
            (Vacation, Some(Show::Xa)),
            (Holiday, Some(Show::Xa)),
            (PermanentAbsence, Some(Show::Xa)),
            (Travel, Some(Show::Xa)),
            (Sleeping, Some(Show::Xa)),
            (Away, Some(Show::Away)),
            (Breakfast, Some(Show::Away)),
            (Lunch, Some(Show::Away)),
            (Dinner, Some(Show::Away)),
            (Meal, Some(Show::Away)),
            (Shopping, Some(Show::Away)),
            (InTransit, Some(Show::Away)),
            (Playing, Some(Show::Away)),
            (Spectator, Some(Show::Away)),
            (Tv, Some(Show::Away)),
            (Working, None),
            (LookingForWork, None),
            (Unknown, None),
            (Other("brooding".into()), None),
        ];
        assert_eq!(table.len(), 27, "every RFC 4480 activity");
        for (activity, show) in table {
            assert_eq!(
                show_for(std::slice::from_ref(&activity)),
                show,
                "{activity:?}"
            );
        }
        assert_eq!(show_for(&[]), None);
        assert_eq!(show_for(&[Away, Busy]), Some(Show::Dnd));
        assert_eq!(show_for(&[Lunch, Vacation, Working]), Some(Show::Xa));
    }

    #[test]
    fn from_pidf_reads_rfc4480_example_shape() {
        // Our own vector in the shape of RFC 4480's example.
        let doc = match Presence::parse(
            br#"<presence xmlns="urn:ietf:params:xml:ns:pidf"
                  xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
                  xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="pres:someone@example.com">
                 <tuple id="bs35r9"><status><basic>open</basic></status>
                   <contact priority="0.8">im:someone@mobile.example.net</contact>
                   <note xml:lang="en">Don't Disturb Please!</note></tuple>
                 <tuple id="eg92n8"><status><basic>closed</basic></status>
                   <contact priority="1.0">mailto:someone@example.com</contact></tuple>
                 <tuple id="x-6d7920706332"><status><basic>open</basic></status></tuple>
                 <note>I'll be in Tokyo next week</note>
                 <dm:person id="p1"><rpid:activities><rpid:meeting/></rpid:activities>
                   <dm:note>Scoring 120</dm:note></dm:person>
               </presence>"#,
        ) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            from_pidf(&doc),
            vec![
                xp(
                    "bs35r9",
                    true,
                    Some(Show::Dnd),
                    Some("Don't Disturb Please!"),
                    102
                ),
                xp("eg92n8", false, None, Some("Scoring 120"), 127),
                xp("my pc2", true, Some(Show::Dnd), Some("Scoring 120"), 0),
            ]
        );
        let without_person = Presence {
            persons: vec![],
            ..doc
        };
        assert_eq!(
            from_pidf(&without_person)[1].status.as_deref(),
            Some("I'll be in Tokyo next week")
        );
        assert_eq!(from_pidf(&without_person)[0].show, None);
    }

    #[test]
    fn round_trips_through_pidf() {
        // Each show value: xa and chat have no RPID equivalent of their own.
        for (show, back) in [
            (None, None),
            (Some(Show::Away), Some(Show::Away)),
            (Some(Show::Xa), Some(Show::Away)),
            (Some(Show::Dnd), Some(Show::Dnd)),
            (Some(Show::Chat), None),
        ] {
            let p = xp("balcony", true, show, Some("status text"), 10);
            assert_eq!(
                through_pidf(&p),
                XmppPresence { show: back, ..p },
                "{show:?}"
            );
        }
        // Every non-negative priority survives; negative ones become 0.
        for priority in 0..=127i8 {
            let p = xp("r", true, None, None, priority);
            assert_eq!(through_pidf(&p).priority, priority);
        }
        assert_eq!(through_pidf(&xp("r", true, None, None, -1)).priority, 0);
        assert_eq!(through_pidf(&xp("r", true, None, None, -128)).priority, 0);
        // Unavailable, with and without status.
        let gone = xp("r", false, None, Some("gone"), 0);
        assert_eq!(through_pidf(&gone), gone);
        let silent = xp("r", false, None, None, 0);
        assert_eq!(through_pidf(&silent), silent);
        // Status with markup-significant characters.
        let tricky = xp("r", true, None, Some("a < b & \"c\"\r\n"), 0);
        assert_eq!(through_pidf(&tricky), tricky);
    }

    #[test]
    fn priority_conversions() {
        assert_eq!(qvalue_from_priority(-5), 0.0);
        assert_eq!(qvalue_from_priority(0), 0.0);
        assert_eq!(qvalue_from_priority(64), 0.5);
        assert_eq!(qvalue_from_priority(1), 0.008);
        assert_eq!(qvalue_from_priority(127), 0.992);
        assert_eq!(priority_from_qvalue(1.0), 127);
        assert_eq!(priority_from_qvalue(0.8), 102);
        assert_eq!(priority_from_qvalue(0.0), 0);
        assert_eq!(priority_from_qvalue(f32::NAN), 0);
    }

    #[test]
    fn resource_names_become_ncnames_reversibly() {
        for (resource, id) in [
            ("phone", "phone"),
            ("balcony_2.a-b", "balcony_2.a-b"),
            ("my phone", "x-6d792070686f6e65"),
            ("x-foo", "x-782d666f6f"),
            ("", "x-"),
            ("1234", "x-31323334"),
            ("a/b@c", "x-612f624063"),
            ("téléphone", "x-74c3a96cc3a970686f6e65"),
        ] {
            assert_eq!(encode_tuple_id(resource), id, "{resource:?}");
            assert_eq!(decode_tuple_id(id), resource, "{id:?}");
        }
        assert!(encode_tuple_id("Conversations.Xy12").eq("Conversations.Xy12"));
        // Tuple ids we did not produce come back unchanged.
        for foreign in ["x-ZZ", "x-abc", "x-4A", "x-ff", "x-person", "sg89ae"] {
            assert_eq!(decode_tuple_id(foreign), foreign);
        }
        // A resource needing the encoding, through the whole pipeline.
        let p = xp("Juliet's phone ☎", true, Some(Show::Dnd), None, 3);
        assert_eq!(through_pidf(&p), p);
    }

    #[test]
    fn resources_compose_into_one_document() {
        let resources = [
            xp("phone", true, Some(Show::Away), Some("on the go"), 1),
            xp("my desk", true, Some(Show::Dnd), Some("coding"), 5),
            xp("laptop", false, None, None, 50),
            xp("tablet", true, None, None, 5),
        ];
        let doc = resources_to_pidf(ENTITY, "juliet@example.com", &resources);
        let ids: Vec<&str> = doc.tuples.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["phone", "x-6d79206465736b", "laptop", "tablet"]);
        assert_eq!(
            doc.tuples[1].contact,
            Some(Contact {
                uri: "xmpp:juliet@example.com/my%20desk".into(),
                priority: Some(0.039),
            })
        );
        assert_eq!(
            doc.persons,
            vec![Person {
                id: PERSON_ID.into(),
                activities: vec![Activity::Busy],
                notes: vec![note("coding")],
                timestamp: None,
                extensions: vec![],
            }],
            "the first available resource with the highest priority"
        );
        let back = from_pidf(&doc);
        assert_eq!(back.len(), 4);
        assert_eq!(back[1].resource, "my desk");
        assert!(!back[2].available);
        assert_eq!(
            back[3].show,
            Some(Show::Dnd),
            "the person's show applies to all"
        );

        let none_available = resources_to_pidf(ENTITY, "j@example.com", &resources[2..3]);
        assert!(none_available.persons.is_empty());
        assert_eq!(
            xmpp_uri("j@example.com", "a%b/ü"),
            "xmpp:j@example.com/a%25b%2F%C3%BC"
        );
    }

    #[test]
    fn to_stanza_builds_jabber_client_presence() {
        let p = xp("balcony", true, Some(Show::Dnd), Some("Wooing Juliet"), 5);
        assert_eq!(
            to_stanza("juliet@example.com/balcony", &p).to_string(),
            "<presence from='juliet@example.com/balcony'><show>dnd</show>\
             <status>Wooing Juliet</status><priority>5</priority></presence>"
        );
        let gone = xp("balcony", false, Some(Show::Dnd), Some("bye"), 5);
        assert_eq!(
            to_stanza("juliet@example.com/balcony", &gone).to_string(),
            "<presence from='juliet@example.com/balcony' type='unavailable'><status>bye</status></presence>"
        );
        let plain = xp("r", true, None, None, 0);
        let el = to_stanza("j@example.com/r", &plain);
        assert_eq!(el.to_string(), "<presence from='j@example.com/r'/>");
        assert_eq!(read_stanza("r", &el), plain);
        assert_eq!(read_stanza("balcony", &to_stanza("j/balcony", &p)), p);
    }
}
