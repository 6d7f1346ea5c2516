//! `<tuple>` (RFC 3863 §4.1.1): a communication service, its `<status>`, `<contact>` and the
//! qvalue of the contact's priority.

use std::fmt::Write as _;

use super::{Note, Raw};

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

impl Tuple {
    /// A tuple with `<basic>closed</basic>` and nothing else: how a presentity with no
    /// published state is shown (RFC 3863 §4.1.4).
    pub fn closed(id: &str) -> Tuple {
        Tuple::with_basic(id, Basic::Closed)
    }

    /// A tuple with `<basic>` `basic` and nothing else.
    pub fn with_basic(id: &str, basic: Basic) -> Tuple {
        Tuple {
            id: id.to_string(),
            basic: Some(basic),
            status_extensions: Vec::new(),
            contact: None,
            notes: Vec::new(),
            timestamp: None,
            extensions: Vec::new(),
        }
    }
}

/// Writes a qvalue (RFC 3261 §25.1 `qvalue`, used by RFC 3863 for `priority`): `0`, `1` or `0.` and
/// up to three decimals, without allocating. Out-of-range values are clamped.
pub(super) fn write_qvalue(q: f32, out: &mut String) {
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

/// Parses a qvalue leniently (any decimal in 0..=1), rounded to three decimals so
/// that it serialises and parses back to the same value.
pub(super) fn parse_qvalue(s: &str) -> Option<f32> {
    let q: f32 = s.trim().parse().ok()?;
    if !q.is_finite() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    Some(quantize(q) as f32 / 1000.0)
}

/// A qvalue in thousandths, clamped to 0..=1000 (NaN counts as 0).
fn quantize(q: f32) -> u32 {
    // `as` saturates and maps NaN to 0, so this never panics.
    ((q.clamp(0.0, 1.0) * 1000.0).round() as u32).min(1000)
}
