//! The `<presence>` document (RFC 3863 §4.1): reading, writing and composing whole documents.

use super::rpid::Activity;
use super::{write, Note, Person, Raw, Tuple};
use super::{Basic, DM_NS};

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

impl Presence {
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
        let mut prefixes = [("", ""); 2];
        let mut declared = 0;
        if !self.persons.is_empty() {
            prefixes[declared] = ("dm", DM_NS);
            declared += 1;
        }
        if self.persons.iter().any(|p| !p.activities.is_empty()) {
            prefixes[declared] = ("rpid", super::rpid::NS);
            declared += 1;
        }
        write::open_presence(&self.entity, &prefixes[..declared], out);
        for tuple in &self.tuples {
            write::tuple(tuple, out);
        }
        for note in &self.notes {
            write::note("note", note, out);
        }
        for person in &self.persons {
            write::person(person, out);
        }
        for raw in &self.extensions {
            out.push_str(&raw.0);
        }
        write::close_presence(out);
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
