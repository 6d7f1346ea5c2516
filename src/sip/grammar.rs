//! The RFC 3261 §25.1 basic rules that every SIP header parser shares: `token`, `LWS` /
//! `SWS`, `quoted-string` with `quoted-pair`, `generic-param` (`;name[=value]`, the value a
//! token, a host or a quoted string), comma-separated lists (`#rule`, RFC 3261 §7.3.1) whose
//! elements may hold commas inside quoted strings or `<…>`, and header-value trimming.
//!
//! Header values reach the parsers unfolded (RFC 3261 §7.3.1: a fold is one SP), so within a
//! message `LWS` is reduced to space and tab ([`is_wsp`]); the parsers that are also fed raw,
//! possibly folded text (Event, Subscription-State, Contact of a REGISTER, Authorization)
//! accept CR and LF as white space too ([`is_lws`]). Which one applies is the caller's choice,
//! passed as a `fn(char) -> bool`, so each parser keeps the leniency it always had.
//!
//! Pure: no I/O, no allocation except where a function returns an owned string.

use std::fmt;

/// White space inside an unfolded header value: `SP / HTAB` (RFC 3261 §25.1 `WSP`).
pub fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// White space of a value that may still hold line folds: `SP / HTAB / CR / LF`
/// (RFC 3261 §25.1 `LWS = [*WSP CRLF] 1*WSP`, taken byte by byte).
pub fn is_lws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// `s` without leading and trailing [`is_wsp`] white space.
pub fn trim_wsp(s: &str) -> &str {
    s.trim_matches(is_wsp)
}

/// `s` without leading and trailing [`is_lws`] white space.
pub fn trim_lws(s: &str) -> &str {
    s.trim_matches(is_lws)
}

/// Bytes without leading and trailing SP / HTAB, for scanners that work before UTF-8 is
/// checked (the stream framer reads Content-Length this way).
pub fn trim_wsp_bytes(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or(&[])
}

/// A `token` character (RFC 3261 §25.1): `alphanum / "-" / "." / "!" / "%" / "*" / "_" /
/// "+" / "`" / "'" / "~"`.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// `token = 1*(token characters)` (RFC 3261 §25.1).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Number of leading token characters of `s` (0 if it does not start with a token).
pub fn token_len(s: &str) -> usize {
    s.bytes().position(|b| !is_token_char(b)).unwrap_or(s.len())
}

/// Splits off a leading token: `(token, rest)`; `None` if `s` does not start with one.
pub fn take_token(s: &str) -> Option<(&str, &str)> {
    let end = token_len(s);
    (end > 0).then(|| s.split_at(end))
}

/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` (RFC 3261 §25.1, as RFC 3986 §3.1).
pub fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// `1*DIGIT` as a number; `None` if empty, not all digits, or over `u64`.
pub fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok()
}

/// `delta-seconds = 1*DIGIT` (RFC 3261 §25.1); values beyond `u32` saturate rather than wrap
/// (RFC 3261 §20.19 and RFC 6665 §4.1.3 treat a huge value as "a long time").
pub fn delta_seconds(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u32>().unwrap_or(u32::MAX))
}

/// Byte index just past the closing `DQUOTE` of the `quoted-string` that starts `s` (which
/// must start with `"`), honouring `quoted-pair`s (`\` escapes the next character); `None`
/// if the string is not closed.
pub fn quoted_end(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some(i + 1);
        }
    }
    None
}

/// True when `s` is exactly one `quoted-string`: an opening quote, `qdtext` and
/// `quoted-pair`s, and the closing quote as its last character.
pub fn is_quoted_string(s: &str) -> bool {
    s.starts_with('"') && quoted_end(s) == Some(s.len())
}

/// The content of a quoted string with its `quoted-pair`s decoded; `s` includes both quotes
/// (as returned up to [`quoted_end`]).
pub fn unquote(s: &str) -> String {
    let inner = s.get(1..s.len().saturating_sub(1)).unwrap_or("");
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if !escaped && c == '\\' {
            escaped = true;
        } else {
            out.push(c);
            escaped = false;
        }
    }
    out
}

/// Writes `s` as a `quoted-string`, escaping `"` and `\` as `quoted-pair`s.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Where a scan for an unquoted character stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The character was found at this byte index, outside any quoted string.
    Found(usize),
    /// The end of the text; `open_quote` if a quoted string was still open there.
    End { open_quote: bool },
}

/// Where a byte scan stands with respect to quoted strings (RFC 3261 §25.1 `quoted-string`
/// with `quoted-pair`s).
#[derive(Default)]
struct Quoting {
    /// Inside a quoted string.
    quoted: bool,
    /// The previous byte was the `\\` of a quoted-pair.
    escaped: bool,
}

impl Quoting {
    /// Takes the next byte; true when it belongs to a quoted string (its quotes included).
    fn takes(&mut self, b: u8) -> bool {
        if self.quoted {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.quoted = false;
            }
            true
        } else {
            self.quoted = b == b'"';
            self.quoted
        }
    }
}

/// Scans `s` for the first ASCII `target` outside quoted strings.
fn scan_unquoted(s: &str, target: u8) -> Stop {
    let mut q = Quoting::default();
    for (i, b) in s.bytes().enumerate() {
        if !q.takes(b) && b == target {
            return Stop::Found(i);
        }
    }
    Stop::End {
        open_quote: q.quoted,
    }
}

/// Byte index of the first ASCII `target` outside quoted strings.
pub fn find_unquoted(s: &str, target: char) -> Option<usize> {
    let target = u8::try_from(target).ok().filter(u8::is_ascii)?;
    match scan_unquoted(s, target) {
        Stop::Found(i) => Some(i),
        Stop::End { .. } => None,
    }
}

/// Splits `s` on the ASCII `sep` outside quoted strings (e.g. the `;` between parameters).
/// Pieces are not trimmed. The last piece is `Err(piece)` when a quoted string in it is not
/// closed, so a strict caller can refuse it and a lenient one take it as it is.
pub fn split_unquoted(s: &str, sep: char) -> SplitUnquoted<'_> {
    SplitUnquoted {
        rest: Some(s),
        sep: u8::try_from(sep).ok().filter(u8::is_ascii).unwrap_or(0),
    }
}

/// The iterator of [`split_unquoted`]; allocates nothing.
#[derive(Debug, Clone)]
pub struct SplitUnquoted<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Iterator for SplitUnquoted<'a> {
    type Item = Result<&'a str, &'a str>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest?;
        match scan_unquoted(rest, self.sep) {
            Stop::Found(i) => {
                self.rest = rest.get(i + 1..);
                Some(Ok(rest.get(..i).unwrap_or("")))
            }
            Stop::End { open_quote } => {
                self.rest = None;
                Some(if open_quote { Err(rest) } else { Ok(rest) })
            }
        }
    }
}

/// How a comma list treats `<…>` (which holds a URI whose commas do not separate elements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Angles {
    /// `<` to `>` hides commas, but a `"` inside still opens a quoted string: the message
    /// parser's long-standing reading, kept so [`crate::sip::message::split_list`] splits
    /// malformed values exactly as before.
    QuotesInside,
    /// Everything from `<` to the next `>` is opaque (an `addr-spec` holds no quoted
    /// string): the registrar's Contact reading.
    Opaque,
}

/// What was still open at the end of a comma-list element that ran to the end of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unclosed {
    /// A quoted string.
    Quote,
    /// A `<` without its `>`.
    Angle,
}

/// The end of the first element of a comma-separated list (RFC 3261 §7.3.1): the byte index
/// of the first comma outside quoted strings and `<…>`, or `value.len()` with what was left
/// open there (`None` if nothing).
pub fn list_element_end(value: &str, angles: Angles) -> (usize, Option<Unclosed>) {
    let (mut q, mut angle) = (Quoting::default(), false);
    for (i, b) in value.bytes().enumerate() {
        if q.quoted {
            q.takes(b);
            continue;
        }
        if angle && angles == Angles::Opaque {
            if b == b'>' {
                angle = false;
            }
            continue;
        }
        if q.takes(b) {
            continue;
        }
        match b {
            b'<' => angle = true,
            b'>' => angle = false,
            b',' if !angle => return (i, None),
            _ => {}
        }
    }
    let open = if q.quoted {
        Some(Unclosed::Quote)
    } else if angle {
        Some(Unclosed::Angle)
    } else {
        None
    };
    (value.len(), open)
}

/// Splits a comma-separated header value into its elements, untrimmed, ignoring commas
/// inside quoted strings and `<…>` (read as `angles` says); allocates nothing. The last
/// element carries what was left open at the end of the value.
pub fn list_elements(value: &str, angles: Angles) -> ListElements<'_> {
    ListElements {
        rest: Some(value),
        angles,
    }
}

/// The iterator of [`list_elements`]: `(element, what was left open)`, the second always
/// `None` except on the last element.
#[derive(Debug, Clone)]
pub struct ListElements<'a> {
    rest: Option<&'a str>,
    angles: Angles,
}

impl<'a> Iterator for ListElements<'a> {
    type Item = (&'a str, Option<Unclosed>);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest?;
        let (end, open) = list_element_end(rest, self.angles);
        self.rest = rest.get(end + 1..).filter(|_| end < rest.len());
        Some((rest.get(..end).unwrap_or(""), open))
    }
}

/// The characters of a `gen-value` that is not a quoted string: a `token`, or a `host`
/// (RFC 3261 §25.1; an IPv6 reference adds `[`, `]` and `:`).
pub fn is_gen_value_char(b: u8) -> bool {
    is_token_char(b) || matches!(b, b'[' | b']' | b':')
}

/// `gen-value = token / host / quoted-string` (RFC 3261 §25.1), exactly.
pub fn is_gen_value(v: &str) -> bool {
    if v.starts_with('"') {
        is_quoted_string(v)
    } else {
        !v.is_empty() && v.bytes().all(is_gen_value_char)
    }
}

/// Why one `generic-param` does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamError<'a> {
    /// The name is not a token (empty, or stray characters).
    BadName,
    /// The value after `=` is not a `gen-value`; the (token) name is given.
    BadValue {
        /// The parameter name, as written.
        name: &'a str,
    },
}

/// One `generic-param = token [ EQUAL gen-value ]` (RFC 3261 §25.1), as one piece of a
/// [`split_unquoted`] on `;`: `(name, value)` trimmed of `ws` around the name, the `=` and
/// the value. Names and values are returned as written (quoted values keep their quotes).
pub fn generic_param(
    part: &str,
    ws: fn(char) -> bool,
) -> Result<(&str, Option<&str>), ParamError<'_>> {
    let (name, value) = match part.split_once('=') {
        Some((n, v)) => (n.trim_matches(ws), Some(v.trim_matches(ws))),
        None => (part.trim_matches(ws), None),
    };
    if !is_token(name) {
        return Err(ParamError::BadName);
    }
    match value {
        Some(v) if !is_gen_value(v) => Err(ParamError::BadValue { name }),
        _ => Ok((name, value)),
    }
}

/// `*( SEMI generic-param )` with [`is_wsp`] white space around `;` and `=` (RFC 3261
/// §25.1): the parameter list after a Via sent-by or a From/To/Contact address. Empty input
/// gives no parameters; anything else that is not such a list (text before the first `;`, an
/// empty or bad name, a bad value, an unclosed quote) gives `None`.
pub fn parse_params(s: &str) -> Option<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    let s = s.trim_start_matches(is_wsp);
    if s.is_empty() {
        return Some(out);
    }
    for part in split_unquoted(s.strip_prefix(';')?, ';') {
        let (name, value) = generic_param(part.ok()?, is_wsp).ok()?;
        out.push((name.to_owned(), value.map(str::to_owned)));
    }
    Some(out)
}

/// Writes a parameter list as `;name` / `;name=value`, in order.
pub fn write_params(
    f: &mut fmt::Formatter<'_>,
    params: &[(String, Option<String>)],
) -> fmt::Result {
    for (name, value) in params {
        match value {
            Some(v) => write!(f, ";{name}={v}")?,
            None => write!(f, ";{name}")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
