//! XML escaping shared by the documents of the control plane ([`super::ccmp`] and
//! [`super::state`]): character data and double-quoted attribute values (XML 1.0 §2.4,
//! §3.3.3 — line ends and tabs as character references so that normalisation keeps them).

/// Appends `s` escaped as character data: `&`, `<`, `>` become entity references and `\r`
/// a character reference, so that it survives end-of-line normalisation.
pub(crate) fn escape_text(s: &str, out: &mut String) {
    escape_with(s, out, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '\r' => Some("&#13;"),
        _ => None,
    });
}

/// Appends `s` escaped for a double-quoted attribute value; tab, line feed and carriage
/// return become character references so that attribute-value normalisation keeps them.
pub(crate) fn escape_attr(s: &str, out: &mut String) {
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

/// Copies `s` into `out` in runs, replacing each character for which `rep` returns a
/// replacement.
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
