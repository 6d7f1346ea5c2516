//! Character and name classes of XML 1.0 (§2.2 `Char`, §2.3 `NameStartChar`/`NameChar`), and
//! byte helpers the readers share for scanning and for naming the element at fault.

use super::XmlError;

/// XML 1.0 `Char` production.
#[inline]
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Whether `bytes` is only XML whitespace (space, tab, CR, LF).
#[inline]
pub(crate) fn is_whitespace(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// First byte of an XML name (ASCII subset of `NameStartChar`, any non-ASCII byte).
#[inline]
pub(crate) fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// Later byte of an NCName (ASCII subset of `NameChar` without ':').
#[inline]
pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') || b >= 0x80
}

/// `bytes` without trailing XML whitespace.
#[inline]
pub(crate) fn trim_end_whitespace(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

/// The raw tag name of the markup at `buf[start]` (`<name …` or `</name …`).
pub(crate) fn name_at(buf: &[u8], start: usize) -> &[u8] {
    let rest = buf.get(start..).unwrap_or_default();
    let rest = rest.strip_prefix(b"<").unwrap_or(rest);
    let rest = rest.strip_prefix(b"/").unwrap_or(rest);
    let end = rest
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>' | b'<'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// A name for messages: lossily decoded and truncated.
pub(crate) fn display_name(name: &[u8]) -> String {
    const MAX: usize = 64;
    let mut s = String::from_utf8_lossy(&name[..name.len().min(MAX)]).into_owned();
    if name.len() > MAX {
        s.push('…');
    }
    s
}

/// Checks that a framed element is UTF-8 without C0 control characters other than tab, line
/// feed and carriage return (the XML 1.0 `Char` production below U+0020), naming the element
/// that starts `bytes` when it is not.
pub(crate) fn check_chars(bytes: &[u8]) -> Result<&str, XmlError> {
    let s = std::str::from_utf8(bytes).map_err(|e| {
        XmlError::UnsupportedEncoding(format!(
            "invalid UTF-8 at byte {} of <{}>",
            e.valid_up_to(),
            display_name(name_at(bytes, 0))
        ))
    })?;
    if let Some(&b) = bytes
        .iter()
        .find(|&&b| b < 0x20 && b != b'\t' && b != b'\n' && b != b'\r')
    {
        return Err(XmlError::NotWellFormed(format!(
            "illegal character U+{b:04X} in <{}>",
            display_name(name_at(bytes, 0))
        )));
    }
    Ok(s)
}
