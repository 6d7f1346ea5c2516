//! `name-addr` / `addr-spec` with header parameters, for From, To and Contact (RFC 3261
//! §20.10, §20.20, §20.39, §25.1).

use std::fmt;

use super::ParseError;
use crate::sip::grammar::{
    is_scheme, is_token, is_wsp, parse_params, quoted_end, unquote, write_params,
};

/// name-addr / addr-spec with params, for From, To, Contact (RFC 3261 §20.10, §25.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted and unescaped (`"A \"B\""` gives `A "B"`).
    pub display: Option<String>,
    /// The URI exactly as written between `<` and `>` (or the bare addr-spec); any scheme.
    pub uri: String,
    /// Header params (tag, expires, q, ...) in order; quoted values keep their quotes.
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// Parses a From/To/Contact value (one element for Contact). In the addr-spec form (no `<>`)
    /// everything after the first `;` is a header param and a `?` is refused (§20.10).
    pub fn parse(value: &str) -> Result<NameAddr, ParseError> {
        parse_name_addr(value).ok_or(ParseError::MalformedHeader("name-addr"))
    }

    /// The tag param (RFC 3261 §19.3), which identifies a dialog side.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// Value of the first param called `name` (case-insensitive): `Some(None)` for a flag.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(display) = &self.display {
            f.write_str("\"")?;
            for c in display.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

/// A URI inside a name-addr or addr-spec: a scheme, then no whitespace, quotes or brackets.
fn is_header_uri(uri: &str) -> bool {
    match uri.split_once(':') {
        Some((scheme, rest)) => {
            is_scheme(scheme)
                && !rest.is_empty()
                && !rest
                    .bytes()
                    .any(|b| b <= b' ' || b == 0x7f || b"\"<>".contains(&b))
        }
        None => false,
    }
}

pub(super) fn parse_name_addr(value: &str) -> Option<NameAddr> {
    let s = value.trim_matches(is_wsp);
    let (display, after_display) = if s.starts_with('"') {
        let end = quoted_end(s)?;
        let rest = s[end..].trim_start_matches(is_wsp);
        if !rest.starts_with('<') {
            return None;
        }
        (Some(unquote(&s[..end])), rest)
    } else if let Some(lt) = s.find('<') {
        let display = s[..lt].trim_matches(is_wsp);
        if !display
            .split(is_wsp)
            .filter(|w| !w.is_empty())
            .all(is_token)
        {
            return None;
        }
        let display = (!display.is_empty()).then(|| display.to_owned());
        (display, &s[lt..])
    } else {
        // addr-spec form: the URI ends at the first ';', and may not contain '?' (§20.10).
        let end = s.find(';').unwrap_or(s.len());
        let uri = s[..end].trim_end_matches(is_wsp);
        if !is_header_uri(uri) || uri.contains('?') {
            return None;
        }
        return Some(NameAddr {
            display: None,
            uri: uri.to_owned(),
            params: parse_params(&s[end..])?,
        });
    };
    let inner = after_display.strip_prefix('<')?;
    let close = inner.find('>')?;
    let uri = &inner[..close];
    if !is_header_uri(uri) {
        return None;
    }
    Some(NameAddr {
        display,
        uri: uri.to_owned(),
        params: parse_params(&inner[close + 1..])?,
    })
}
