//! Incremental, bounded parser for an inbound XML stream.
//!
//! Implements RFC 6120 §4 (XML streams: the stream header, first-level elements,
//! the closing `</stream:stream>`), §4.8 (stream and content namespaces, the
//! `stream` prefix), §4.9.3 (the stream error conditions that parse failures map
//! to) and §11 (the restricted XML subset: no DTDs, comments, processing
//! instructions or non-predefined entity references), on top of XML 1.0 and XML
//! Namespaces 1.0.
//!
//! The parser frames before it parses: a resumable byte scanner keeps its place
//! across [`StreamParser::push`] calls and finds tag boundaries (honouring quoted
//! attribute values and CDATA sections), so size and depth limits are enforced
//! while bytes arrive, before a stanza is complete. Each complete first-level
//! element is then handed as one slice to the fragment builder of [`crate::xml`] and built
//! into an [`Element`], with namespace prefixes resolved against a scope seeded by the
//! stream header's declarations; errors come out as the RFC 6120 §4.9.3 condition they map
//! to ([`XmlError::categorised`]).

use std::collections::VecDeque;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::xml::read::{
    build_fragment, lookup, read_attributes, resolve, resolve_attributes, split_qname,
};
use crate::xml::{
    check_chars, display_name, is_name_start, is_whitespace, name_at, parse_fragment,
    trim_end_whitespace, Element, Limits, XmlError, CLIENT_NS, STREAM_NS,
};

/// The namespace bindings a client stream header declares (RFC 6120 §4.8): `jabber:client`
/// as the default namespace and the `stream` prefix. A stanza written into such a stream
/// ([`Element::write_to`] with [`CLIENT_NS`]) is read back against them.
pub const CLIENT_SCOPE: &[(&str, &str)] = &[("", CLIENT_NS), ("stream", STREAM_NS)];

/// Reads back one stanza as it was written into a `jabber:client` stream (kept in the routing
/// table, relayed by another node, stored): a fragment parse against [`CLIENT_SCOPE`] within
/// the default [`ParserLimits`], with the errors a stream would report.
pub fn parse_stanza(bytes: &[u8]) -> Result<Element, XmlError> {
    let limits = ParserLimits::default();
    let limits = Limits {
        max_bytes: limits.max_stanza_bytes,
        max_depth: limits.max_depth,
    };
    parse_fragment(bytes, CLIENT_SCOPE, &limits).map_err(XmlError::categorised)
}

/// An empty scope, for lookups in the header's own bindings.
const NO_SCOPE: &[(String, String)] = &[];

/// Default for [`ParserLimits::max_stanza_bytes`]: 64 KiB, well above the 10 000
/// bytes RFC 6120 §13.12 requires a server to accept.
pub const DEFAULT_MAX_STANZA_BYTES: usize = 64 * 1024;

/// Default for [`ParserLimits::max_depth`].
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Largest piece of pushed input scanned at once, which bounds how far the buffer
/// can overshoot `max_stanza_bytes` before an oversized element is refused.
const PUSH_CHUNK: usize = 8 * 1024;

/// A buffer whose capacity grew above this is shrunk back once nearly empty.
const BUFFER_SHRINK_ABOVE: usize = 4 * 1024;

/// Capacity an idle buffer is shrunk back to.
const BUFFER_RETAIN: usize = 1024;

/// Capacity the queue of framed units is shrunk back to once drained.
const FRAMES_RETAIN: usize = 16;

/// Opening of a CDATA section.
const CDATA_OPEN: &[u8] = b"<![CDATA[";

/// Limits that protect the server from oversized or deeply nested input
/// (RFC 6120 §13.12, answered with `<policy-violation/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserLimits {
    /// Largest accepted first-level element (stanza, `<auth/>`, …), and largest
    /// accepted stream header, in bytes of raw XML.
    pub max_stanza_bytes: usize,
    /// Deepest accepted element nesting inside a first-level element; the
    /// first-level element itself is level 1.
    pub max_depth: usize,
}

impl Default for ParserLimits {
    fn default() -> Self {
        ParserLimits {
            max_stanza_bytes: DEFAULT_MAX_STANZA_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// The attributes of an inbound stream header (RFC 6120 §4.7), unescaped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// The `to` attribute: the domain the initiating entity wants to reach.
    pub to: Option<String>,
    /// The `from` attribute: the initiating entity's claimed identity.
    pub from: Option<String>,
    /// The `id` attribute (normally absent on an initial stream).
    pub id: Option<String>,
    /// The `version` attribute (`"1.0"` for RFC 6120 streams).
    pub version: Option<String>,
    /// The `xml:lang` attribute: the default language of the stream.
    pub lang: Option<String>,
}

/// One unit of an inbound XML stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The stream header `<stream:stream …>` was received.
    Open(StreamHeader),
    /// A complete first-level element: a stanza or a negotiation element.
    Stanza(Element),
    /// The closing `</stream:stream>` was received.
    Close,
}

/// Where the byte scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Character data between markup.
    Content,
    /// Just after a `<`; the next byte decides what kind of markup follows.
    Lt,
    /// Inside a start tag; `quote` is the open quote of an attribute value, or 0.
    StartTag { quote: u8 },
    /// Inside an end tag.
    EndTag,
    /// Inside the `<?xml …?>` declaration.
    Decl,
    /// Inside a CDATA section.
    CData,
    /// After `</stream:stream>`: only whitespace may follow.
    Closed,
}

/// What a framed byte range contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    Decl,
    Header,
    Stanza,
    Close,
}

/// A complete unit found by the scanner: `buf[start..end]`.
#[derive(Debug, Clone, Copy)]
struct Frame {
    kind: FrameKind,
    start: usize,
    end: usize,
}

/// Incremental parser for one direction of an XML stream.
///
/// Feed received bytes with [`push`](Self::push) and drain events with
/// [`next_event`](Self::next_event) until it returns `Ok(None)`. Errors are
/// sticky: once one is reported, every later call reports it again until
/// [`reset`](Self::reset).
#[derive(Debug)]
pub struct StreamParser {
    limits: ParserLimits,
    /// Unconsumed input; bytes before `keep_from()` are no longer needed.
    buf: Vec<u8>,
    /// Scan position in `buf`.
    pos: usize,
    state: State,
    /// Index of the `<` of the markup being scanned.
    tag_start: usize,
    /// Start of the unfinished stream-level item (declaration, header,
    /// first-level element, closing tag, CDATA section at stream level).
    elem_start: Option<usize>,
    /// Open elements, including the stream root.
    depth: usize,
    /// Raw qualified name of the stream header, which the closing tag must repeat.
    root_name: Vec<u8>,
    /// No byte of this stream has been scanned yet (byte order mark detection).
    at_stream_start: bool,
    /// An XML declaration may still appear.
    decl_allowed: bool,
    /// Framed units not yet returned by `next_event`.
    frames: VecDeque<Frame>,
    /// Error found by the scanner, reported after the frames before it.
    scan_error: Option<XmlError>,
    /// Sticky error already reported by `next_event`.
    error: Option<XmlError>,
    /// Namespace bindings declared on the stream header: (prefix, URI), `""` = default.
    scope: Vec<(String, String)>,
}

impl StreamParser {
    /// Creates a parser waiting for a stream header.
    pub fn new(limits: ParserLimits) -> Self {
        StreamParser {
            limits,
            buf: Vec::new(),
            pos: 0,
            state: State::Content,
            tag_start: 0,
            elem_start: None,
            depth: 0,
            root_name: Vec::new(),
            at_stream_start: true,
            decl_allowed: true,
            frames: VecDeque::new(),
            scan_error: None,
            error: None,
            scope: Vec::new(),
        }
    }

    /// Appends received bytes and frames them.
    ///
    /// Complete elements stay buffered until [`next_event`](Self::next_event)
    /// returns them, so call it until it returns `Ok(None)` after each push.
    /// Size and depth limits and restricted-XML constructs are detected here, as
    /// the bytes arrive; such an error is reported by [`next_event`](Self::next_event)
    /// after the events framed before it, and the rest of the input is dropped.
    /// Returns `Err` only when the parser is already in an error state, so a
    /// caller that keeps pushing cannot make it buffer more.
    pub fn push(&mut self, data: &[u8]) -> Result<(), XmlError> {
        if let Some(e) = self.error.as_ref().or(self.scan_error.as_ref()) {
            return Err(e.clone());
        }
        for chunk in data.chunks(PUSH_CHUNK) {
            self.compact();
            self.buf.extend_from_slice(chunk);
            if let Err(e) = self.scan() {
                self.scan_error = Some(e);
                break;
            }
        }
        Ok(())
    }

    /// Returns the next complete event, or `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, XmlError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        while let Some(frame) = self.frames.pop_front() {
            match self.parse_frame(frame) {
                Ok(Some(event)) => return Ok(Some(event)),
                Ok(None) => {}
                Err(e) => {
                    self.fail(e.clone());
                    return Err(e);
                }
            }
        }
        if let Some(e) = self.scan_error.take() {
            self.fail(e.clone());
            return Err(e);
        }
        self.compact();
        if self.buf.capacity() > BUFFER_SHRINK_ABOVE && self.buf.len() <= BUFFER_RETAIN {
            self.buf.shrink_to(BUFFER_RETAIN);
        }
        if self.frames.capacity() > FRAMES_RETAIN {
            self.frames.shrink_to(FRAMES_RETAIN);
        }
        Ok(None)
    }

    /// Prepares for a new stream on the same connection (after STARTTLS or SASL
    /// success, RFC 6120 §5.4.3.3 and §6.4.6): drops all buffered input, the
    /// header's namespace scope and any error, and waits for a new header.
    pub fn reset(&mut self) {
        *self = StreamParser::new(self.limits);
    }

    /// Number of received bytes held that have not yet been returned as events.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() - self.keep_from()
    }

    /// Enters the sticky error state and releases the buffer.
    fn fail(&mut self, e: XmlError) {
        let limits = self.limits;
        *self = StreamParser::new(limits);
        self.error = Some(e);
    }

    /// First byte of `buf` that is still needed.
    fn keep_from(&self) -> usize {
        if let Some(f) = self.frames.front() {
            f.start
        } else if let Some(s) = self.elem_start {
            s
        } else {
            match self.state {
                State::Content | State::Closed => self.pos,
                _ => self.tag_start,
            }
        }
    }

    /// Drops the consumed prefix of the buffer.
    fn compact(&mut self) {
        let k = self.keep_from();
        if k == 0 {
            return;
        }
        self.buf.drain(..k);
        self.pos -= k;
        self.tag_start = self.tag_start.saturating_sub(k);
        if let Some(s) = &mut self.elem_start {
            *s -= k;
        }
        for f in &mut self.frames {
            f.start -= k;
            f.end -= k;
        }
    }

    /// Parses one framed unit; `Ok(None)` for units that produce no event.
    fn parse_frame(&mut self, frame: Frame) -> Result<Option<StreamEvent>, XmlError> {
        let bytes = &self.buf[frame.start..frame.end];
        match frame.kind {
            FrameKind::Decl => {
                parse_decl(bytes)?;
                Ok(None)
            }
            FrameKind::Header => {
                let (header, scope) = parse_header(bytes)?;
                self.scope = scope;
                Ok(Some(StreamEvent::Open(header)))
            }
            FrameKind::Stanza => {
                let mut el = build_fragment(bytes, &self.scope, usize::MAX)
                    .map_err(XmlError::categorised)?;
                // A stanza in the stream's content namespace is written unprefixed, as
                // stanzas are (RFC 6120 §4.8.3), whatever prefix the peer gave it; its
                // payloads keep theirs.
                if el.prefix.is_some() && lookup("", &self.scope, NO_SCOPE) == Some(&el.ns) {
                    el.prefix = None;
                }
                Ok(Some(StreamEvent::Stanza(el)))
            }
            FrameKind::Close => Ok(Some(StreamEvent::Close)),
        }
    }

    // ----- framing ------------------------------------------------------------

    /// Scans `buf[pos..]`, queueing complete frames. Returns when more input is needed.
    fn scan(&mut self) -> Result<(), XmlError> {
        loop {
            let len = self.buf.len();
            match self.state {
                State::Content => {
                    if self.at_stream_start {
                        let rest = &self.buf[self.pos..];
                        let Some(&first) = rest.first() else {
                            return Ok(());
                        };
                        match first {
                            0xEF => {
                                const BOM: &[u8] = b"\xEF\xBB\xBF";
                                if rest.len() < BOM.len() && BOM.starts_with(rest) {
                                    return Ok(());
                                }
                                if rest.starts_with(BOM) {
                                    self.pos += BOM.len();
                                }
                            }
                            0xFE | 0xFF | 0x00 => {
                                return Err(XmlError::UnsupportedEncoding(
                                    "stream starts with a UTF-16 or UTF-32 byte sequence; only UTF-8 is supported"
                                        .into(),
                                ));
                            }
                            _ => {}
                        }
                        self.at_stream_start = false;
                    }
                    let rest = &self.buf[self.pos..];
                    let found = rest.iter().position(|&b| b == b'<');
                    if self.depth == 0 {
                        let text = &rest[..found.unwrap_or(rest.len())];
                        if !is_whitespace(text) {
                            return Err(XmlError::NotWellFormed(
                                "text before the stream header".into(),
                            ));
                        }
                    }
                    match found {
                        None => {
                            self.pos = len;
                            return self.check_size();
                        }
                        Some(i) => {
                            self.tag_start = self.pos + i;
                            self.pos = self.tag_start + 1;
                            if self.depth <= 1 {
                                self.elem_start = Some(self.tag_start);
                            }
                            self.state = State::Lt;
                        }
                    }
                }
                State::Lt => {
                    let Some(&b) = self.buf.get(self.pos) else {
                        return self.check_size();
                    };
                    match b {
                        b'/' => {
                            self.pos += 1;
                            self.state = State::EndTag;
                        }
                        b'?' => {
                            if !self.scan_pi_start()? {
                                return self.check_size();
                            }
                        }
                        b'!' => {
                            if !self.scan_bang()? {
                                return self.check_size();
                            }
                        }
                        0 => {
                            return Err(XmlError::UnsupportedEncoding(
                                "NUL byte after '<': input looks like UTF-16; only UTF-8 is supported"
                                    .into(),
                            ));
                        }
                        _ => {
                            if !is_name_start(b) {
                                return Err(XmlError::NotWellFormed(format!(
                                    "invalid character {:?} after '<' {}",
                                    char::from(b),
                                    self.context()
                                )));
                            }
                            if self.depth > self.limits.max_depth {
                                return Err(XmlError::PolicyViolation(format!(
                                    "elements nested deeper than {} levels {}",
                                    self.limits.max_depth,
                                    self.context()
                                )));
                            }
                            self.state = State::StartTag { quote: 0 };
                        }
                    }
                }
                State::StartTag { quote: 0 } => {
                    let rest = &self.buf[self.pos..];
                    let Some(i) = rest
                        .iter()
                        .position(|&b| matches!(b, b'>' | b'"' | b'\'' | b'<'))
                    else {
                        self.pos = len;
                        return self.check_size();
                    };
                    let at = self.pos + i;
                    self.pos = at + 1;
                    match rest[i] {
                        b'<' => {
                            return Err(XmlError::NotWellFormed(format!(
                                "'<' inside the start tag of <{}>",
                                self.tag_name()
                            )));
                        }
                        b'>' => self.start_tag_done(at)?,
                        q => self.state = State::StartTag { quote: q },
                    }
                }
                State::StartTag { quote } => {
                    let rest = &self.buf[self.pos..];
                    let Some(i) = rest.iter().position(|&b| b == quote || b == b'<') else {
                        self.pos = len;
                        return self.check_size();
                    };
                    if rest[i] == b'<' {
                        return Err(XmlError::NotWellFormed(format!(
                            "'<' in an attribute value of <{}>",
                            self.tag_name()
                        )));
                    }
                    self.pos += i + 1;
                    self.state = State::StartTag { quote: 0 };
                }
                State::EndTag => {
                    let rest = &self.buf[self.pos..];
                    let Some(i) = rest.iter().position(|&b| b == b'>' || b == b'<') else {
                        self.pos = len;
                        return self.check_size();
                    };
                    if rest[i] == b'<' {
                        return Err(XmlError::NotWellFormed(format!(
                            "unterminated end tag </{}>",
                            self.tag_name()
                        )));
                    }
                    let gt = self.pos + i;
                    self.pos = gt + 1;
                    self.end_tag_done(gt)?;
                }
                State::Decl => {
                    let rest = &self.buf[self.pos..];
                    let Some(i) = rest.iter().position(|&b| b == b'>' || b == b'<') else {
                        self.pos = len;
                        return self.check_size();
                    };
                    if rest[i] == b'<' {
                        return Err(XmlError::NotWellFormed(
                            "'<' inside the XML declaration".into(),
                        ));
                    }
                    let gt = self.pos + i;
                    self.pos = gt + 1;
                    // `<?xml` precedes `pos`, so `gt - 1` can only be a '?' that
                    // really ends the declaration.
                    if self.buf[gt - 1] == b'?' {
                        self.state = State::Content;
                        self.finish_frame(FrameKind::Decl)?;
                    }
                }
                State::CData => {
                    let rest = &self.buf[self.pos..];
                    let Some(i) = rest.iter().position(|&b| b == b'>') else {
                        self.pos = len;
                        return self.check_size();
                    };
                    let gt = self.pos + i;
                    self.pos = gt + 1;
                    if gt >= self.tag_start + CDATA_OPEN.len() + 2 && &self.buf[gt - 2..gt] == b"]]"
                    {
                        self.state = State::Content;
                        if self.depth == 1 {
                            // Character data at stream level is ignored.
                            self.elem_start = None;
                        }
                    }
                }
                State::Closed => {
                    if !is_whitespace(&self.buf[self.pos..]) {
                        return Err(XmlError::NotWellFormed(
                            "data after the closing </stream:stream>".into(),
                        ));
                    }
                    self.pos = len;
                    return Ok(());
                }
            }
        }
    }

    /// Handles `<?`: the XML declaration before the header, or a forbidden
    /// processing instruction. Returns `Ok(false)` if more bytes are needed.
    fn scan_pi_start(&mut self) -> Result<bool, XmlError> {
        const MAX_TARGET: usize = 32;
        let avail = &self.buf[self.tag_start..];
        let target_len = avail[2..]
            .iter()
            .take_while(|&&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'?' | b'>'))
            .take(MAX_TARGET)
            .count();
        if target_len < MAX_TARGET && 2 + target_len == avail.len() {
            return Ok(false);
        }
        let target = &avail[2..2 + target_len];
        if target == b"xml" && self.depth == 0 && self.decl_allowed {
            self.decl_allowed = false;
            self.pos = self.tag_start + 5;
            self.state = State::Decl;
            return Ok(true);
        }
        Err(XmlError::RestrictedXml(format!(
            "processing instruction <?{}?> {} is not allowed",
            display_name(target),
            self.context()
        )))
    }

    /// Handles `<!`: a CDATA section, or a forbidden comment or markup
    /// declaration. Returns `Ok(false)` if more bytes are needed.
    fn scan_bang(&mut self) -> Result<bool, XmlError> {
        let avail = &self.buf[self.tag_start..];
        let Some(&third) = avail.get(2) else {
            return Ok(false);
        };
        match third {
            b'-' => Err(XmlError::RestrictedXml(format!(
                "comment {} is not allowed",
                self.context()
            ))),
            b'[' => {
                let n = avail.len().min(CDATA_OPEN.len());
                if avail[..n] != CDATA_OPEN[..n] {
                    return Err(XmlError::NotWellFormed(format!(
                        "malformed CDATA section {}",
                        self.context()
                    )));
                }
                if n < CDATA_OPEN.len() {
                    return Ok(false);
                }
                if self.depth == 0 {
                    return Err(XmlError::NotWellFormed(
                        "CDATA section before the stream header".into(),
                    ));
                }
                self.pos = self.tag_start + CDATA_OPEN.len();
                self.state = State::CData;
                Ok(true)
            }
            _ => {
                // Name the declaration (`<!DOCTYPE`, `<!ENTITY`, …) once it is complete.
                let word_len = avail[2..]
                    .iter()
                    .take_while(|b| b.is_ascii_uppercase())
                    .count();
                if word_len < 8 && 2 + word_len == avail.len() {
                    return Ok(false);
                }
                let word = String::from_utf8_lossy(&avail[2..2 + word_len]);
                Err(XmlError::RestrictedXml(format!(
                    "<!{word} declaration {} is not allowed",
                    self.context()
                )))
            }
        }
    }

    /// A start tag ended with the `>` at `gt`.
    fn start_tag_done(&mut self, gt: usize) -> Result<(), XmlError> {
        let empty = self.buf[gt - 1] == b'/';
        if !empty && trim_end_whitespace(&self.buf[self.tag_start..gt]).ends_with(b"/") {
            return Err(XmlError::NotWellFormed(format!(
                "whitespace between '/' and '>' in <{}>",
                self.tag_name()
            )));
        }
        self.state = State::Content;
        if self.depth == 0 {
            self.root_name = name_at(&self.buf, self.tag_start).to_vec();
            self.decl_allowed = false;
            self.finish_frame(FrameKind::Header)?;
            if empty {
                self.frames.push_back(Frame {
                    kind: FrameKind::Close,
                    start: self.pos,
                    end: self.pos,
                });
                self.state = State::Closed;
            } else {
                self.depth = 1;
            }
        } else if !empty {
            self.depth += 1;
        } else if self.depth == 1 {
            self.finish_frame(FrameKind::Stanza)?;
        }
        Ok(())
    }

    /// An end tag ended with the `>` at `gt`.
    fn end_tag_done(&mut self, gt: usize) -> Result<(), XmlError> {
        self.state = State::Content;
        let name = trim_end_whitespace(&self.buf[self.tag_start + 2..gt]);
        match self.depth {
            0 => Err(XmlError::NotWellFormed(format!(
                "end tag </{}> before the stream header",
                display_name(name)
            ))),
            1 => {
                if name != self.root_name.as_slice() {
                    return Err(XmlError::NotWellFormed(format!(
                        "end tag </{}> at stream level does not close <{}>",
                        display_name(name),
                        display_name(&self.root_name)
                    )));
                }
                self.depth = 0;
                self.finish_frame(FrameKind::Close)?;
                self.state = State::Closed;
                Ok(())
            }
            _ => {
                self.depth -= 1;
                if self.depth == 1 {
                    self.finish_frame(FrameKind::Stanza)?;
                }
                Ok(())
            }
        }
    }

    /// Queues the stream-level item that started at `elem_start` and ends at `pos`.
    fn finish_frame(&mut self, kind: FrameKind) -> Result<(), XmlError> {
        self.check_size()?;
        let start = self.elem_start.take().unwrap_or(self.tag_start);
        self.frames.push_back(Frame {
            kind,
            start,
            end: self.pos,
        });
        Ok(())
    }

    /// Refuses the unfinished stream-level item once it exceeds the size limit.
    fn check_size(&self) -> Result<(), XmlError> {
        let Some(start) = self.elem_start else {
            return Ok(());
        };
        let end = if self.state == State::Content && self.depth <= 1 {
            self.pos
        } else {
            self.buf.len()
        };
        if end - start > self.limits.max_stanza_bytes {
            let what = if self.depth == 0 {
                "stream header".to_string()
            } else {
                format!("<{}>", display_name(name_at(&self.buf, start)))
            };
            return Err(XmlError::PolicyViolation(format!(
                "{what} exceeds the limit of {} bytes",
                self.limits.max_stanza_bytes
            )));
        }
        Ok(())
    }

    /// Name of the tag being scanned, for messages.
    fn tag_name(&self) -> String {
        display_name(name_at(&self.buf, self.tag_start))
    }

    /// Where the scanner is, for messages: "in <message>", "at stream level", …
    fn context(&self) -> String {
        match (self.depth, self.elem_start) {
            (0, _) => "before the stream header".into(),
            (1, _) => "at stream level".into(),
            (_, Some(s)) => format!("in <{}>", display_name(name_at(&self.buf, s))),
            (_, None) => "in a stanza".into(),
        }
    }
}

// ----- parsing of framed units ------------------------------------------------

/// Validates `<?xml version='1.0' encoding='UTF-8'?>`.
fn parse_decl(bytes: &[u8]) -> Result<(), XmlError> {
    let s = check_chars(bytes)?;
    let bad = |e: &dyn std::fmt::Display| XmlError::NotWellFormed(format!("XML declaration: {e}"));
    let mut reader = Reader::from_str(s);
    let decl = match reader.read_event() {
        Ok(Event::Decl(d)) => d,
        Ok(_) => return Err(bad(&"malformed")),
        Err(e) => return Err(bad(&e)),
    };
    let version = decl.version().map_err(|e| bad(&e))?;
    if version != "1.0" {
        return Err(XmlError::NotWellFormed(format!(
            "XML version {version} is not supported; XMPP uses XML 1.0"
        )));
    }
    if let Some(enc) = decl.encoding() {
        let enc = enc.map_err(|e| bad(&e))?;
        if !enc.eq_ignore_ascii_case("UTF-8") {
            return Err(XmlError::UnsupportedEncoding(format!(
                "XML declaration names encoding '{enc}'; only UTF-8 is supported"
            )));
        }
    }
    Ok(())
}

/// Parses the stream header, returning it and the namespace bindings it declares.
fn parse_header(bytes: &[u8]) -> Result<(StreamHeader, Vec<(String, String)>), XmlError> {
    let s = check_chars(bytes)?;
    let mut reader = Reader::from_str(s);
    let start = match reader.read_event() {
        Ok(Event::Start(e)) | Ok(Event::Empty(e)) => e,
        Ok(_) => return Err(XmlError::NotWellFormed("malformed stream header".into())),
        Err(e) => return Err(XmlError::NotWellFormed(format!("stream header: {e}"))),
    };
    let raw = start.name().0;
    let mut header = StreamHeader::default();
    let mut scope: Vec<(String, String)> = Vec::new();
    let mut attrs = Vec::new();
    read_attributes(&start, raw, &mut scope, &mut attrs, false).map_err(XmlError::categorised)?;
    for attr in attrs.iter_mut() {
        let slot = match &*attr.name {
            "to" => &mut header.to,
            "from" => &mut header.from,
            "id" => &mut header.id,
            "version" => &mut header.version,
            "xml:lang" => &mut header.lang,
            _ => continue,
        };
        *slot = Some(std::mem::take(&mut attr.value).into_string());
    }
    resolve_attributes(&mut attrs, raw, &scope, NO_SCOPE)?;

    let (prefix, local) = split_qname(raw, "element")?;
    let ns = resolve(prefix, &scope, NO_SCOPE).ok_or_else(|| {
        XmlError::BadNamespacePrefix(format!("undeclared prefix on the stream header <{raw}>"))
    })?;
    if local != "stream" || ns != STREAM_NS {
        return Err(XmlError::InvalidNamespace(format!(
            "stream header <{raw}> is not <stream> in namespace '{STREAM_NS}' (found namespace '{ns}')"
        )));
    }
    if prefix != Some("stream") {
        return Err(XmlError::BadNamespacePrefix(format!(
            "stream header <{raw}> must use the 'stream' prefix"
        )));
    }
    if let Some(default) = lookup("", &scope, NO_SCOPE) {
        if default != CLIENT_NS {
            return Err(XmlError::InvalidNamespace(format!(
                "content namespace '{default}' is not supported; expected '{CLIENT_NS}'"
            )));
        }
    }
    Ok((header, scope))
}

#[cfg(test)]
mod tests;
