//! Writing PIDF documents (RFC 3863 §4.1, RFC 4479, RFC 4480) with the crate's one escaper:
//! the `<presence>` envelope and the elements of the model, in the element order of the
//! RFC 3863 schema. Attribute values are double-quoted.

use super::rpid::Activity;
use super::tuple::write_qvalue;
use super::{Basic, Note, Person, Tuple, NS};
use crate::xml::{escape_attr_in, escape_text, Quote};

/// Writes the XML declaration and the `<presence>` start tag of a document about `entity`,
/// with the PIDF default namespace and `prefixes` (prefix, namespace) declared.
pub fn open_presence(entity: &str, prefixes: &[(&str, &str)], out: &mut String) {
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"");
    out.push_str(NS);
    out.push('"');
    for (prefix, ns) in prefixes {
        out.push_str(" xmlns:");
        out.push_str(prefix);
        out.push_str("=\"");
        attr(ns, out);
        out.push('"');
    }
    out.push_str(" entity=\"");
    attr(entity, out);
    out.push_str("\">");
}

/// Closes the `<presence>` opened by [`open_presence`].
pub fn close_presence(out: &mut String) {
    out.push_str("</presence>");
}

/// Writes one `<tuple>` in the element order of the RFC 3863 schema.
pub fn tuple(tuple: &Tuple, out: &mut String) {
    out.push_str("<tuple id=\"");
    attr(&tuple.id, out);
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
        self::note("note", note, out);
    }
    if let Some(ts) = &tuple.timestamp {
        out.push_str("<timestamp>");
        escape_text(ts, out);
        out.push_str("</timestamp>");
    }
    out.push_str("</tuple>");
}

/// Writes one `<dm:person>`: activities, extensions, notes, timestamp (RFC 4479 order); the
/// document declares the `dm` and `rpid` prefixes.
pub(super) fn person(person: &Person, out: &mut String) {
    out.push_str("<dm:person id=\"");
    attr(&person.id, out);
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
        self::note("dm:note", note, out);
    }
    if let Some(ts) = &person.timestamp {
        out.push_str("<dm:timestamp>");
        escape_text(ts, out);
        out.push_str("</dm:timestamp>");
    }
    out.push_str("</dm:person>");
}

/// Writes a note element named `tag` with its `xml:lang`.
pub(super) fn note(tag: &str, note: &Note, out: &mut String) {
    out.push('<');
    out.push_str(tag);
    if let Some(lang) = &note.lang {
        out.push_str(" xml:lang=\"");
        attr(lang, out);
        out.push('"');
    }
    out.push('>');
    escape_text(&note.text, out);
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

/// Appends `s` escaped for a double-quoted attribute value.
fn attr(s: &str, out: &mut String) {
    escape_attr_in(s, Quote::Double, out);
}
