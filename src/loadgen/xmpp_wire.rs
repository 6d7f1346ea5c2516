//! The client side of XMPP on the wire, pure: framing of the server's stream into
//! first-level elements (RFC 6120 §4.1, §4.3), the measured-update marker, a fast scan of
//! presence stanzas for it, the stanzas a virtual user sends (RFC 6120 §6, §7, §8; RFC 6121
//! §2, §3, §4; XEP-0077 §3) and what it reads from the few elements it parses in full
//! (stream features, stream errors with `see-other-host` (RFC 6120 §4.9.3.19), roster items,
//! the XEP-0051 `urn:xmpp:cxfr` redirect).
//!
//! Receivers do not build a tree for every stanza: [`next_frame`] finds element boundaries
//! with `memchr` (quotes, comments and CDATA respected), [`scan_marker`] reads the marker
//! out of a presence stanza's bytes, and only the rest goes through [`parse_element`].

use memchr::{memchr, memchr3, memmem};

use crate::xml::{escape_attr, escape_text, Element};
use crate::xmpp::stream::{ParserLimits, StreamEvent, StreamParser};

/// `http://etherx.jabber.org/streams`.
pub const STREAM_NS: &str = "http://etherx.jabber.org/streams";
/// `urn:ietf:params:xml:ns:xmpp-streams` (stream error conditions).
pub const STREAMS_NS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// `urn:ietf:params:xml:ns:xmpp-sasl`.
pub const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// `urn:ietf:params:xml:ns:xmpp-tls`.
pub const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// `urn:ietf:params:xml:ns:xmpp-bind`.
pub const BIND_NS: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// `urn:ietf:params:xml:ns:xmpp-session` (RFC 3921 session establishment).
pub const SESSION_NS: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// `jabber:iq:roster`.
pub const ROSTER_NS: &str = "jabber:iq:roster";
/// `jabber:iq:register` (XEP-0077).
pub const REGISTER_NS: &str = "jabber:iq:register";
/// `urn:xmpp:cxfr` (XEP-0051 as DESIGN.md §4 uses it).
pub const CXFR_NS: &str = "urn:xmpp:cxfr";
/// `urn:xmpp:ping` (XEP-0199).
pub const PING_NS: &str = "urn:xmpp:ping";
/// `urn:ietf:params:xml:ns:xmpp-stanzas`.
pub const STANZAS_NS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The status text prefix of a measured update.
pub const MARKER_PREFIX: &str = "lg ";

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// The stream header's start tag `<stream:stream …>`.
    Header,
    /// A complete first-level element.
    Element,
    /// The closing `</stream:stream>`.
    Close,
    /// Only whitespace, an XML declaration or comments: consume and go on.
    Skip,
}

/// One unit found by [`next_frame`]: `buf[start..end]`; `end` bytes are consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// What it is.
    pub kind: FrameKind,
    /// First byte of the unit (after skipped whitespace).
    pub start: usize,
    /// One past its last byte.
    pub end: usize,
}

/// Why the server's bytes cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A first-level element is larger than the limit.
    #[error("a stanza exceeds {0} bytes")]
    TooLarge(usize),
    /// Not XML markup where markup must be.
    #[error("malformed XML: {0}")]
    Malformed(&'static str),
}

/// Index of the `>` ending the tag that starts at `buf[lt]` (`<`), skipping quoted
/// attribute values; `None` when the tag is incomplete.
fn tag_end(buf: &[u8], lt: usize) -> Option<usize> {
    let mut i = lt + 1;
    loop {
        let j = i + memchr3(b'>', b'"', b'\'', &buf[i..])?;
        if buf[j] == b'>' {
            return Some(j);
        }
        i = j + 1 + memchr(buf[j], &buf[j + 1..])? + 1;
    }
}

/// Index one past `needle` found at or after `from`.
fn skip_past(buf: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memmem::find(&buf[from..], needle).map(|p| from + p + needle.len())
}

/// Whether the start tag `<…>` names the stream root (`<stream:stream`, any prefix).
fn is_stream_tag(tag: &[u8]) -> bool {
    let name_end = tag
        .iter()
        .position(|&b| b.is_ascii_whitespace() || b == b'>' || b == b'/')
        .unwrap_or(tag.len());
    let name = &tag[1..name_end];
    let local = match memchr(b':', name) {
        Some(c) => &name[c + 1..],
        None => name,
    };
    local == b"stream"
}

/// Finds the next unit in `buf`. `Ok(None)`: more bytes are needed. Units bigger than
/// `max` bytes are an error as soon as that is known.
pub fn next_frame(buf: &[u8], max: usize) -> Result<Option<Frame>, FrameError> {
    let mut i = 0;
    // Whitespace, declarations and comments between elements.
    loop {
        while i < buf.len() && buf[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= buf.len() {
            return Ok(skip(i));
        }
        if buf[i] != b'<' {
            return Err(FrameError::Malformed("text outside a stanza"));
        }
        match buf.get(i + 1) {
            None => return Ok(skip(i)),
            Some(b'?') => match skip_past(buf, i, b"?>") {
                Some(e) => i = e,
                None => return Ok(skip(i)),
            },
            Some(b'!') => {
                if buf.len() < i + 4 {
                    return Ok(skip(i));
                }
                if &buf[i..i + 4] != b"<!--" {
                    return Err(FrameError::Malformed("<! outside a stanza"));
                }
                match skip_past(buf, i + 4, b"-->") {
                    Some(e) => i = e,
                    None => return Ok(skip(i)),
                }
            }
            Some(_) => break,
        }
    }
    let start = i;
    let too_large = |end: usize| end - start > max;
    if buf[start + 1] == b'/' {
        return Ok(match tag_end(buf, start) {
            Some(gt) => Some(Frame {
                kind: FrameKind::Close,
                start,
                end: gt + 1,
            }),
            None if too_large(buf.len()) => return Err(FrameError::TooLarge(max)),
            None => skip(start),
        });
    }
    let mut depth = 0usize;
    let mut pos = start;
    loop {
        // `pos` is at a `<`.
        let next = buf.get(pos + 1).copied();
        let end = match next {
            None => None,
            Some(b'/') => tag_end(buf, pos).map(|gt| {
                depth = depth.saturating_sub(1);
                gt + 1
            }),
            Some(b'!') => {
                if buf[pos..].starts_with(b"<![CDATA[") {
                    skip_past(buf, pos + 9, b"]]>")
                } else if buf[pos..].starts_with(b"<!--") {
                    skip_past(buf, pos + 4, b"-->")
                } else if buf.len() - pos < 9 {
                    None
                } else {
                    return Err(FrameError::Malformed("<! inside a stanza"));
                }
            }
            Some(b'?') => skip_past(buf, pos, b"?>"),
            Some(_) => match tag_end(buf, pos) {
                Some(gt) => {
                    if pos == start && is_stream_tag(&buf[pos..gt]) {
                        return Ok(Some(Frame {
                            kind: FrameKind::Header,
                            start,
                            end: gt + 1,
                        }));
                    }
                    if buf[gt - 1] != b'/' {
                        depth += 1;
                    }
                    Some(gt + 1)
                }
                None => None,
            },
        };
        let Some(end) = end else {
            if too_large(buf.len()) {
                return Err(FrameError::TooLarge(max));
            }
            return Ok(skip(start));
        };
        if too_large(end) {
            return Err(FrameError::TooLarge(max));
        }
        if depth == 0 {
            return Ok(Some(Frame {
                kind: FrameKind::Element,
                start,
                end,
            }));
        }
        match memchr(b'<', &buf[end..]) {
            Some(p) => pos = end + p,
            None => {
                if too_large(buf.len()) {
                    return Err(FrameError::TooLarge(max));
                }
                return Ok(skip(start));
            }
        }
    }
}

/// `Some(Skip)` over `n` bytes, or `None` when there is nothing to skip.
fn skip(n: usize) -> Option<Frame> {
    (n > 0).then_some(Frame {
        kind: FrameKind::Skip,
        start: n,
        end: n,
    })
}

/// What a first-level element is, from its start tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stanza {
    /// `<presence`.
    Presence,
    /// `<iq`.
    Iq,
    /// `<message`.
    Message,
    /// `<stream:error` (any prefix).
    StreamError,
    /// Anything else (negotiation elements, unknown).
    Other,
}

/// Classifies an element frame by its name.
pub fn classify(frame: &[u8]) -> Stanza {
    let name_end = frame
        .iter()
        .position(|&b| b.is_ascii_whitespace() || b == b'>' || b == b'/')
        .unwrap_or(frame.len());
    match frame.get(1..name_end).unwrap_or_default() {
        b"presence" => Stanza::Presence,
        b"iq" => Stanza::Iq,
        b"message" => Stanza::Message,
        name if name.ends_with(b":error") => Stanza::StreamError,
        _ => Stanza::Other,
    }
}

/// Whether the start tag of `frame` has a `type` attribute (available presence has none).
pub fn start_tag_has_type(frame: &[u8]) -> bool {
    let end = tag_end(frame, 0).unwrap_or(frame.len());
    memmem::find(&frame[..end], b" type=").is_some()
}

/// A measured update's marker: `lg <sender-index> <seq> <send-nanos>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// Index number of the sending user.
    pub sender: u64,
    /// The sender's sequence number of the update.
    pub seq: u64,
    /// When it was sent, nanoseconds on the process's monotonic clock.
    pub nanos: u64,
}

/// Appends a measured update `<presence><status>lg S Q N</status></presence>` to `out`.
pub fn write_update(out: &mut Vec<u8>, m: Marker) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "<presence><status>{MARKER_PREFIX}{} {} {}</status></presence>",
        m.sender, m.seq, m.nanos
    );
}

/// Parses marker text `lg S Q N` (the status element's content).
pub fn parse_marker(text: &[u8]) -> Option<Marker> {
    let rest = text.strip_prefix(MARKER_PREFIX.as_bytes())?;
    let mut it = rest.split(|&b| b == b' ');
    let mut num = || -> Option<u64> {
        let d = it.next()?;
        if d.is_empty() || d.len() > 20 || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(d).ok()?.parse().ok()
    };
    let m = Marker {
        sender: num()?,
        seq: num()?,
        nanos: num()?,
    };
    it.next().is_none().then_some(m)
}

/// Finds the marker in the raw bytes of a presence stanza (the first `<status>` whose text
/// is a marker), without parsing the stanza.
pub fn scan_marker(frame: &[u8]) -> Option<Marker> {
    let mut from = 0;
    while let Some(p) = memmem::find(&frame[from..], b"<status") {
        let at = from + p + 7;
        match frame.get(at) {
            Some(b'>') | Some(b' ') | Some(b'\t') | Some(b'\r') | Some(b'\n') => {
                let gt = at + memchr(b'>', &frame[at..])?;
                if frame[gt - 1] != b'/' {
                    let text_end = gt + 1 + memchr(b'<', &frame[gt + 1..])?;
                    if let Some(m) = parse_marker(&frame[gt + 1..text_end]) {
                        return Some(m);
                    }
                }
                from = gt;
            }
            _ => from = at,
        }
    }
    None
}

/// Parses one element frame into a tree, in the namespace context of the stream `header`
/// (the server's `<stream:stream …>` start tag).
pub fn parse_element(header: &[u8], frame: &[u8]) -> Result<Element, String> {
    let mut p = StreamParser::new(ParserLimits {
        max_stanza_bytes: frame.len().max(header.len()) + 1,
        max_depth: 256,
    });
    let fallback: &[u8] =
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    let header = if header.is_empty() { fallback } else { header };
    p.push(header).map_err(|e| e.to_string())?;
    p.push(frame).map_err(|e| e.to_string())?;
    loop {
        match p.next_event().map_err(|e| e.to_string())? {
            Some(StreamEvent::Open(_)) => continue,
            Some(StreamEvent::Stanza(el)) => return Ok(el),
            Some(StreamEvent::Close) | None => return Err("incomplete element".into()),
        }
    }
}

/// The stream header a client sends (RFC 6120 §4.7).
pub fn stream_open(domain: &str) -> Vec<u8> {
    let mut out = b"<?xml version='1.0'?><stream:stream to='".to_vec();
    escape_attr(domain, &mut out);
    out.extend_from_slice(
        b"' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
    );
    out
}

/// `<auth mechanism=…>base64</auth>` (RFC 6120 §6.4.2).
pub fn auth(mechanism: &str, initial_b64: &str) -> Vec<u8> {
    format!("<auth xmlns='{SASL_NS}' mechanism='{mechanism}'>{initial_b64}</auth>").into_bytes()
}

/// `<response>base64</response>` (RFC 6120 §6.4.3).
pub fn sasl_response(b64: &str) -> Vec<u8> {
    format!("<response xmlns='{SASL_NS}'>{b64}</response>").into_bytes()
}

/// Resource binding request (RFC 6120 §7.6).
pub fn bind(id: &str, resource: &str) -> Vec<u8> {
    let mut out =
        format!("<iq type='set' id='{id}'><bind xmlns='{BIND_NS}'><resource>").into_bytes();
    escape_text(resource, &mut out);
    out.extend_from_slice(b"</resource></bind></iq>");
    out
}

/// Session establishment (RFC 3921 §3), for servers that still require it.
pub fn session(id: &str) -> Vec<u8> {
    format!("<iq type='set' id='{id}'><session xmlns='{SESSION_NS}'/></iq>").into_bytes()
}

/// Roster get (RFC 6121 §2.1.3).
pub fn roster_get(id: &str) -> Vec<u8> {
    format!("<iq type='get' id='{id}'><query xmlns='{ROSTER_NS}'/></iq>").into_bytes()
}

/// XEP-0077 §3.1 account creation.
pub fn register_set(id: &str, username: &str, password: &str) -> Vec<u8> {
    let mut out =
        format!("<iq type='set' id='{id}'><query xmlns='{REGISTER_NS}'><username>").into_bytes();
    escape_text(username, &mut out);
    out.extend_from_slice(b"</username><password>");
    escape_text(password, &mut out);
    out.extend_from_slice(b"</password></query></iq>");
    out
}

/// A directed presence of `kind` (`subscribe`, `subscribed`, …) to a bare JID (RFC 6121 §3).
pub fn write_presence_to(out: &mut Vec<u8>, to: &str, kind: &str) {
    out.extend_from_slice(b"<presence to='");
    escape_attr(to, out);
    out.extend_from_slice(b"' type='");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"'/>");
}

/// An empty `result` to an iq (roster push, ping, cxfr).
pub fn write_iq_result(out: &mut Vec<u8>, iq: &Element) {
    out.extend_from_slice(b"<iq type='result' id='");
    escape_attr(iq.attr("id").unwrap_or(""), out);
    if let Some(from) = iq.attr("from") {
        out.extend_from_slice(b"' to='");
        escape_attr(from, out);
    }
    out.extend_from_slice(b"'/>");
}

/// A `service-unavailable` error to an iq we do not handle (RFC 6120 §8.4).
pub fn write_iq_unavailable(out: &mut Vec<u8>, iq: &Element) {
    out.extend_from_slice(b"<iq type='error' id='");
    escape_attr(iq.attr("id").unwrap_or(""), out);
    if let Some(from) = iq.attr("from") {
        out.extend_from_slice(b"' to='");
        escape_attr(from, out);
    }
    out.extend_from_slice(b"'><error type='cancel'><service-unavailable xmlns='");
    out.extend_from_slice(STANZAS_NS.as_bytes());
    out.extend_from_slice(b"'/></error></iq>");
}

/// Stream features the client cares about (RFC 6120 §4.3.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// STARTTLS offered.
    pub starttls: bool,
    /// STARTTLS offered with `<required/>`.
    pub starttls_required: bool,
    /// SASL mechanisms offered.
    pub mechanisms: Vec<String>,
    /// Resource binding offered.
    pub bind: bool,
    /// RFC 3921 session establishment offered and not `<optional/>`.
    pub session_required: bool,
    /// XEP-0077 in-band registration offered.
    pub register: bool,
}

impl Features {
    /// Reads `<stream:features/>`.
    pub fn parse(el: &Element) -> Features {
        let tls = el.get_child("starttls", TLS_NS);
        let session = el.get_child("session", SESSION_NS);
        Features {
            starttls: tls.is_some(),
            starttls_required: tls.is_some_and(|t| t.has_child("required", TLS_NS)),
            mechanisms: el
                .get_child("mechanisms", SASL_NS)
                .map(|m| {
                    m.elements()
                        .filter(|e| e.name == "mechanism")
                        .map(|e| e.text().trim().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            bind: el.has_child("bind", BIND_NS),
            session_required: session.is_some_and(|s| !s.has_child("optional", SESSION_NS)),
            register: el.has_child("register", "http://jabber.org/features/iq-register"),
        }
    }
}

/// A stream error (RFC 6120 §4.9): its condition and, for `see-other-host`, the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamErrorInfo {
    /// The defined condition, e.g. `see-other-host`, `conflict`.
    pub condition: String,
    /// The `see-other-host` text (`host:port`, `[v6]:port` or a host).
    pub other_host: Option<String>,
}

impl StreamErrorInfo {
    /// Reads `<stream:error/>`.
    pub fn parse(el: &Element) -> StreamErrorInfo {
        let cond = el
            .elements()
            .find(|e| e.ns == STREAMS_NS && e.name != "text")
            .map(|e| e.name.clone())
            .unwrap_or_else(|| "undefined-condition".into());
        let other_host = el
            .get_child("see-other-host", STREAMS_NS)
            .map(|e| e.text().trim().to_string())
            .filter(|t| !t.is_empty());
        StreamErrorInfo {
            condition: cond,
            other_host,
        }
    }
}

/// The first stanza error condition of an `type='error'` stanza, or `undefined-condition`.
pub fn stanza_error_condition(el: &Element) -> String {
    el.elements()
        .find(|e| e.name == "error")
        .and_then(|e| {
            e.elements()
                .find(|c| c.ns == STANZAS_NS && c.name != "text")
        })
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "undefined-condition".into())
}

/// The subscription state of a roster item (RFC 6121 §2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// Neither way.
    None,
    /// The user receives the contact's presence.
    To,
    /// The contact receives the user's presence.
    From,
    /// Both ways.
    Both,
    /// The item was removed (pushes only).
    Remove,
}

impl Subscription {
    /// Whether the contact receives our presence.
    pub fn contact_sees_us(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    /// Whether we receive the contact's presence.
    pub fn we_see_contact(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }
}

/// One roster item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's bare JID.
    pub jid: String,
    /// Its subscription.
    pub subscription: Subscription,
    /// `ask='subscribe'`: our request is pending.
    pub ask: bool,
}

/// The items of a roster result or push (`<query xmlns='jabber:iq:roster'>`), if the iq
/// carries one.
pub fn roster_items(iq: &Element) -> Option<Vec<RosterItem>> {
    let q = iq.get_child("query", ROSTER_NS)?;
    Some(
        q.elements()
            .filter(|e| e.name == "item")
            .filter_map(|e| {
                let sub = match e.attr("subscription").unwrap_or("none") {
                    "to" => Subscription::To,
                    "from" => Subscription::From,
                    "both" => Subscription::Both,
                    "remove" => Subscription::Remove,
                    _ => Subscription::None,
                };
                Some(RosterItem {
                    jid: e.attr("jid")?.to_string(),
                    subscription: sub,
                    ask: e.attr("ask") == Some("subscribe"),
                })
            })
            .collect(),
    )
}

/// The `<server>` of an XEP-0051 cxfr iq, if `iq` is one.
pub fn cxfr_server(iq: &Element) -> Option<String> {
    iq.get_child("query", CXFR_NS)
        .and_then(|q| q.get_child("server", CXFR_NS))
        .map(|s| s.text().trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The local part of a JID `local@domain[/resource]` when its domain is `domain`.
pub fn local_part<'a>(jid: &'a str, domain: &str) -> Option<&'a str> {
    let bare = jid.split('/').next()?;
    let (local, d) = bare.split_once('@')?;
    d.eq_ignore_ascii_case(domain).then_some(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' id='x' from='localhost' version='1.0'>";

    fn frames(input: &[u8]) -> Vec<(FrameKind, String)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(f) = next_frame(&input[pos..], 1 << 20).unwrap() {
            if f.kind != FrameKind::Skip {
                out.push((
                    f.kind,
                    String::from_utf8_lossy(&input[pos + f.start..pos + f.end]).into_owned(),
                ));
            }
            pos += f.end;
        }
        out
    }

    #[test]
    fn frames_a_stream_with_tricky_content() {
        let s = b"<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' a='>'>\
            <stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features> \
            <presence from='a@b' x=\"/>\"/><message><body><![CDATA[</message>]]></body><!-- c --></message>\
            <iq type='result' id='1'/></stream:stream>";
        let f = frames(s);
        let kinds: Vec<_> = f.iter().map(|(k, _)| *k).collect();
        use FrameKind::*;
        assert_eq!(
            kinds,
            vec![Header, Element, Element, Element, Element, Close]
        );
        assert!(f[2].1.starts_with("<presence") && f[2].1.ends_with("\"/>"));
        assert!(f[3].1.ends_with("--></message>"), "{}", f[3].1);
    }

    #[test]
    fn incomplete_input_waits_and_every_split_frames_alike() {
        let s: &[u8] = b"<presence from='a'><status>lg 1 2 3</status></presence><iq id='z'/>";
        for cut in 0..s.len() {
            match next_frame(&s[..cut], 1 << 20).unwrap() {
                None => {}
                Some(f) => assert!(
                    f.kind == FrameKind::Skip || f.end <= cut,
                    "cut {cut}: {f:?}"
                ),
            }
        }
        let f = next_frame(s, 1 << 20).unwrap().unwrap();
        assert_eq!((f.kind, f.start, f.end), (FrameKind::Element, 0, 55));
        assert_eq!(
            next_frame(b"   ", 100).unwrap().unwrap().kind,
            FrameKind::Skip
        );
        assert_eq!(next_frame(b"", 100).unwrap(), None);
    }

    #[test]
    fn oversized_and_garbage_input_are_errors() {
        let big = format!("<message><body>{}</body></message>", "x".repeat(200));
        assert_eq!(
            next_frame(big.as_bytes(), 100),
            Err(FrameError::TooLarge(100))
        );
        assert_eq!(
            next_frame(&big.as_bytes()[..150], 100),
            Err(FrameError::TooLarge(100))
        );
        assert!(next_frame(b"hello <a/>", 100).is_err());
        assert!(next_frame(b"<!DOCTYPE x>", 100).is_err());
    }

    #[test]
    fn marker_format_and_scan() {
        let m = Marker {
            sender: 42,
            seq: 7,
            nanos: 123_456_789_012,
        };
        let mut out = Vec::new();
        write_update(&mut out, m);
        assert_eq!(
            out,
            b"<presence><status>lg 42 7 123456789012</status></presence>".to_vec()
        );
        // As a server forwards it: attributes added, maybe other children first.
        let fwd =
            b"<presence from='user42@localhost/lg' to='user7@localhost/lg'><priority>0</priority>\
            <status xml:lang='en'>lg 42 7 123456789012</status><x xmlns='v'/></presence>";
        assert_eq!(scan_marker(fwd), Some(m));
        assert_eq!(
            scan_marker(b"<presence><status>away</status></presence>"),
            None
        );
        assert_eq!(scan_marker(b"<presence><status/></presence>"), None);
        assert_eq!(
            scan_marker(b"<presence><statusx>lg 1 2 3</statusx></presence>"),
            None
        );
        assert_eq!(
            scan_marker(b"<presence><status>x</status><status>lg 1 2 3</status></presence>"),
            Some(Marker {
                sender: 1,
                seq: 2,
                nanos: 3
            })
        );
        for bad in [
            "lg 1 2",
            "lg 1 2 3 4",
            "lg a 2 3",
            "lg  1 2 3",
            "xx 1 2 3",
            "lg 1 2 -3",
            "lg-sip 1 2 3",
        ] {
            assert_eq!(parse_marker(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn classification_and_type_detection() {
        assert_eq!(classify(b"<presence/>"), Stanza::Presence);
        assert_eq!(classify(b"<presence from='a'>"), Stanza::Presence);
        assert_eq!(classify(b"<iq type='set'>"), Stanza::Iq);
        assert_eq!(classify(b"<message>"), Stanza::Message);
        assert_eq!(classify(b"<stream:error>"), Stanza::StreamError);
        assert_eq!(classify(b"<success xmlns='x'/>"), Stanza::Other);
        assert!(start_tag_has_type(b"<presence from='a' type='subscribe'/>"));
        assert!(!start_tag_has_type(
            b"<presence from='a'><status> type='x'</status></presence>"
        ));
    }

    #[test]
    fn parses_features_errors_rosters_and_cxfr() {
        let el = parse_element(
            HEADER,
            b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
              <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism>\
              <mechanism>PLAIN</mechanism></mechanisms>\
              <register xmlns='http://jabber.org/features/iq-register'/></stream:features>",
        )
        .unwrap();
        let f = Features::parse(&el);
        assert!(f.starttls && f.starttls_required && f.register && !f.bind);
        assert_eq!(f.mechanisms, vec!["SCRAM-SHA-1", "PLAIN"]);

        let el = parse_element(
            HEADER,
            b"<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>[::1]:5223</see-other-host>\
              <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>moved</text></stream:error>",
        )
        .unwrap();
        let e = StreamErrorInfo::parse(&el);
        assert_eq!(e.condition, "see-other-host");
        assert_eq!(e.other_host.as_deref(), Some("[::1]:5223"));

        let el = parse_element(
            HEADER,
            b"<iq type='set' id='p1'><query xmlns='jabber:iq:roster'>\
              <item jid='user2@localhost' subscription='both'/>\
              <item jid='user3@localhost' ask='subscribe'/></query></iq>",
        )
        .unwrap();
        let items = roster_items(&el).unwrap();
        assert_eq!(items[0].subscription, Subscription::Both);
        assert!(items[1].ask && items[1].subscription == Subscription::None);
        let mut out = Vec::new();
        write_iq_result(&mut out, &el);
        assert_eq!(out, b"<iq type='result' id='p1'/>".to_vec());

        let el = parse_element(
            HEADER,
            b"<iq type='set' id='cxfr1' from='localhost'><query xmlns='urn:xmpp:cxfr'>\
              <domain>localhost</domain><server>127.0.0.1:5223</server></query></iq>",
        )
        .unwrap();
        assert_eq!(cxfr_server(&el).as_deref(), Some("127.0.0.1:5223"));

        let el = parse_element(
            HEADER,
            b"<iq type='error' id='r'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        )
        .unwrap();
        assert_eq!(stanza_error_condition(&el), "conflict");
        assert_eq!(local_part("user1@LocalHost/lg", "localhost"), Some("user1"));
        assert_eq!(local_part("user1@other", "localhost"), None);
    }

    #[test]
    fn builders_escape() {
        assert_eq!(
            register_set("r", "a<b", "p&q"),
            b"<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>a&lt;b</username>\
              <password>p&amp;q</password></query></iq>"
                .to_vec()
        );
        let mut out = Vec::new();
        write_presence_to(&mut out, "o'k@localhost", "subscribe");
        assert_eq!(
            out,
            b"<presence to='o&apos;k@localhost' type='subscribe'/>".to_vec()
        );
        assert!(String::from_utf8(stream_open("localhost"))
            .unwrap()
            .contains("to='localhost'"));
    }
}
