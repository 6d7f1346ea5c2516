//! Reading PIDF documents: [`parse_envelope`] parses a body into the crate's one tree and
//! checks its root, and typed readers turn elements into the model (RFC 3863 §4.1, RFC 4479,
//! RFC 4480 §3.2), keeping whatever they do not model as [`Raw`] (RFC 3863 §4.2).

use super::rpid::{self, Activity};
use super::tuple::parse_qvalue;
use super::{
    Basic, Contact, Note, Person, PidfError, Presence, Raw, Tuple, DM_NS, MAX_DEPTH,
    MAX_DOCUMENT_BYTES, NS,
};
use crate::xml::{parse_document, Element, Limits, XML_NS};

/// Parses a PIDF body within `limits` and returns its root, checked to be `<presence>` in
/// the PIDF namespace (RFC 3863 §4.1); what is inside is left to the caller (another PIDF
/// document, such as the cluster state, reads its own extensions).
pub fn parse_envelope(xml: &[u8], limits: &Limits) -> Result<Element, PidfError> {
    let root = parse_document(xml, limits)?;
    if root.ns != NS || root.name != "presence" {
        return Err(PidfError::NotPidf {
            name: root.name,
            ns: root.ns,
        });
    }
    Ok(root)
}

impl Presence {
    /// Parses a PIDF body of at most [`MAX_DOCUMENT_BYTES`], keeping unknown
    /// elements as [`Raw`] extensions.
    pub fn parse(xml: &[u8]) -> Result<Presence, PidfError> {
        Presence::parse_limited(xml, MAX_DOCUMENT_BYTES)
    }

    /// Parses a PIDF body, refusing it when it is larger than `max_bytes`.
    pub fn parse_limited(xml: &[u8], max_bytes: usize) -> Result<Presence, PidfError> {
        let limits = Limits {
            max_bytes,
            max_depth: MAX_DEPTH,
        };
        let root = parse_envelope(xml, &limits)?;
        Presence::try_from(&root)
    }
}

impl TryFrom<&Element> for Presence {
    type Error = PidfError;

    /// Reads a `<presence>` root: its `entity`, tuples, notes and persons; other children
    /// become [`Raw`] extensions.
    fn try_from(root: &Element) -> Result<Presence, PidfError> {
        if root.ns != NS || root.name != "presence" {
            return Err(PidfError::NotPidf {
                name: root.name.clone(),
                ns: root.ns.clone(),
            });
        }
        let entity = match root.attr("entity") {
            Some(e) if !e.trim().is_empty() => e.to_owned(),
            _ => return Err(PidfError::MissingEntity),
        };
        let mut doc = Presence {
            entity,
            ..Presence::default()
        };
        for el in root.elements() {
            match (el.ns.as_str(), el.name.as_str()) {
                (NS, "tuple") => doc.tuples.push(Tuple::from(el)),
                (NS, "note") => doc.notes.push(Note::from(el)),
                (DM_NS, "person") => doc.persons.push(Person::from(el)),
                _ => doc.extensions.push(Raw::from(el)),
            }
        }
        Ok(doc)
    }
}

impl From<&Element> for Tuple {
    /// Reads a `<tuple>`; a second `<status>`, `<contact>` or `<timestamp>` is ignored.
    fn from(el: &Element) -> Tuple {
        let mut tuple = Tuple {
            id: el.attr("id").unwrap_or_default().to_owned(),
            basic: None,
            status_extensions: Vec::new(),
            contact: None,
            notes: Vec::new(),
            timestamp: None,
            extensions: Vec::new(),
        };
        let mut seen_status = false;
        for c in el.elements() {
            match (c.ns.as_str(), c.name.as_str()) {
                (NS, "status") if !seen_status => {
                    seen_status = true;
                    let mut seen_basic = false;
                    for s in c.elements() {
                        if s.is("basic", NS) {
                            if !seen_basic {
                                seen_basic = true;
                                tuple.basic = match s.text_ref().trim() {
                                    "open" => Some(Basic::Open),
                                    "closed" => Some(Basic::Closed),
                                    _ => None,
                                };
                            }
                        } else {
                            tuple.status_extensions.push(Raw::from(s));
                        }
                    }
                }
                (NS, "status") => {}
                (NS, "contact") => {
                    if tuple.contact.is_none() {
                        tuple.contact = Some(Contact {
                            uri: c.text_ref().trim().to_owned(),
                            priority: c.attr("priority").and_then(parse_qvalue),
                        });
                    }
                }
                (NS, "note") => tuple.notes.push(Note::from(c)),
                (NS, "timestamp") => {
                    if tuple.timestamp.is_none() {
                        tuple.timestamp = Some(c.text_ref().trim().to_owned());
                    }
                }
                _ => tuple.extensions.push(Raw::from(c)),
            }
        }
        tuple
    }
}

impl From<&Element> for Person {
    /// Reads a `<dm:person>`; every `<rpid:activities>` contributes its activities.
    fn from(el: &Element) -> Person {
        let mut person = Person {
            id: el.attr("id").unwrap_or_default().to_owned(),
            activities: Vec::new(),
            notes: Vec::new(),
            timestamp: None,
            extensions: Vec::new(),
        };
        for c in el.elements() {
            match (c.ns.as_str(), c.name.as_str()) {
                (rpid::NS, "activities") => activities(c, &mut person.activities),
                (DM_NS, "note") => person.notes.push(Note::from(c)),
                (DM_NS, "timestamp") => {
                    if person.timestamp.is_none() {
                        person.timestamp = Some(c.text_ref().trim().to_owned());
                    }
                }
                _ => person.extensions.push(Raw::from(c)),
            }
        }
        person
    }
}

impl From<&Element> for Note {
    /// Reads a `<note>` or `<dm:note>`.
    fn from(el: &Element) -> Note {
        Note {
            text: el.text(),
            lang: el.attr_ns(XML_NS, "lang").map(str::to_owned),
        }
    }
}

/// Reads the activity elements of `<rpid:activities>` (RFC 4480 §3.2). Its
/// `<rpid:note>` children and `from`/`until`/`id` attributes are not modelled;
/// an element that is not an RFC 4480 activity becomes `Other(local name)`.
fn activities(el: &Element, out: &mut Vec<Activity>) {
    for c in el.elements() {
        if c.ns == rpid::NS {
            match c.name.as_str() {
                "note" => {}
                "other" => out.push(Activity::Other(c.text())),
                name => out.push(
                    Activity::from_name(name).unwrap_or_else(|| Activity::Other(name.to_owned())),
                ),
            }
        } else {
            out.push(Activity::Other(c.name.clone()));
        }
    }
}
