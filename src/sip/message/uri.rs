//! SIP and SIPS URIs (RFC 3261 §19.1, §25.1), also `pres:` (RFC 3859) and `im:` (RFC 3860):
//! userinfo with %HH escapes, hostport, URI parameters and headers.

use std::fmt;
use std::net::Ipv6Addr;

use super::ParseError;
use crate::sip::grammar::{is_scheme, is_wsp, parse_digits};

/// A SIP or SIPS URI split into parts (RFC 3261 §19.1), also accepting `pres:`/`im:` (RFC 3859/3860).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// Scheme, lowercased: "sip", "sips", "pres" or "im".
    pub scheme: String,
    /// User part with %HH escapes decoded (a password after `:` is dropped).
    pub user: Option<String>,
    /// Host as written; an IPv6 reference keeps its brackets.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// URI params in order, still escaped as on the wire (RFC 3261 §19.1.4 compares them so).
    pub params: Vec<(String, Option<String>)>,
    /// URI headers after `?`, raw (allowed in Contact/Refer-To, refused in a Request-URI).
    pub headers: Option<String>,
}

impl Uri {
    /// Parses a sip/sips/pres/im URI; other schemes give [`ParseError::UnsupportedUriScheme`].
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        let (scheme, rest) = s.split_once(':').ok_or(ParseError::MalformedUri)?;
        if !is_scheme(scheme) {
            return Err(ParseError::MalformedUri);
        }
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "sip" | "sips" | "pres" | "im") {
            return Err(ParseError::UnsupportedUriScheme);
        }
        parse_uri_rest(scheme, rest).ok_or(ParseError::MalformedUri)
    }

    /// Value of the first URI param called `name` (case-insensitive): `Some(None)` for a flag.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(user) = &self.user {
            for b in user.bytes() {
                if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
                    write!(f, "{}", b as char)?;
                } else {
                    write!(f, "%{b:02X}")?;
                }
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for (name, value) in &self.params {
            match value {
                Some(v) => write!(f, ";{name}={v}")?,
                None => write!(f, ";{name}")?,
            }
        }
        if let Some(headers) = &self.headers {
            write!(f, "?{headers}")?;
        }
        Ok(())
    }
}

fn is_hex_escape(bytes: &[u8], i: usize) -> bool {
    bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
        && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
}

pub(super) fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'
}

/// `host [ ":" port ]` (LWS allowed around the colon, as in sent-by); IPv6 in brackets.
pub(super) fn parse_hostport(s: &str) -> Option<(String, Option<u16>)> {
    let (host, rest) = if s.starts_with('[') {
        let close = s.find(']')?;
        let host = &s[..=close];
        unbracket(host).parse::<Ipv6Addr>().ok()?;
        (host, &s[close + 1..])
    } else {
        let end = s.find(':').unwrap_or(s.len());
        let host = s[..end].trim_end_matches(is_wsp);
        if host.is_empty() || !host.bytes().all(is_host_char) {
            return None;
        }
        (host, &s[end..])
    };
    let rest = rest.trim_matches(is_wsp);
    let port = if rest.is_empty() {
        None
    } else {
        let digits = rest.strip_prefix(':')?.trim_start_matches(is_wsp);
        if digits.len() > 5 {
            return None;
        }
        Some(u16::try_from(parse_digits(digits)?).ok()?)
    };
    Some((host.to_owned(), port))
}

fn decode_escapes(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            if !is_hex_escape(bytes, i) {
                return None;
            }
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn uri_chars_ok(s: &str, extra: &[u8]) -> bool {
    let bytes = s.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| {
        b.is_ascii_alphanumeric()
            || b"-_.!~*'()".contains(&b)
            || extra.contains(&b)
            || (b == b'%' && is_hex_escape(bytes, i))
    })
}

fn parse_uri_rest(scheme: String, rest: &str) -> Option<Uri> {
    // '@' cannot appear unescaped after the userinfo, while '?' and ';' can appear inside it,
    // so the userinfo ends at the first '@' (RFC 3261 §25.1 user / password / hostport).
    let (userinfo, hostpart) = match rest.find('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let user = match userinfo {
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            if user.is_empty() || !uri_chars_ok(user, b"&=+$,;?/") {
                return None;
            }
            if let Some(p) = password {
                if !uri_chars_ok(p, b"&=+$,") {
                    return None;
                }
            }
            Some(decode_escapes(user)?)
        }
        None => None,
    };
    let (hostpart, headers) = match hostpart.split_once('?') {
        Some((h, hdrs)) => {
            if !uri_chars_ok(hdrs, b"[]/?:+$=&") {
                return None;
            }
            (h, Some(hdrs.to_owned()))
        }
        None => (hostpart, None),
    };
    let mut pieces = hostpart.split(';');
    let hostport = pieces.next().unwrap_or("");
    if hostport.bytes().any(|b| b == b' ' || b == b'\t') {
        return None;
    }
    let (host, port) = parse_hostport(hostport)?;
    let mut params = Vec::new();
    for piece in pieces {
        let (name, value) = match piece.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (piece, None),
        };
        let ok = !name.is_empty()
            && uri_chars_ok(name, b"[]/:&+$")
            && value.is_none_or(|v| !v.is_empty() && uri_chars_ok(v, b"[]/:&+$"));
        if !ok {
            return None;
        }
        params.push((name.to_owned(), value.map(str::to_owned)));
    }
    Some(Uri {
        scheme,
        user,
        host,
        port,
        params,
        headers,
    })
}
