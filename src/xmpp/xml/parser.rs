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
//! element is then handed as one slice to `quick-xml` and built into an
//! [`Element`], with namespace prefixes resolved against a scope seeded by the
//! stream header's declarations.

use std::borrow::Cow;
use std::collections::VecDeque;

use quick_xml::escape::EscapeError;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::element::{Element, CLIENT_NS, STREAM_NS, XML_NS};

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

/// Why an inbound stream is unacceptable. Each variant maps to one stream error
/// condition of RFC 6120 §4.9.3; the string names the element or construct at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// `<not-well-formed/>` (§4.9.3.13): the input violates XML 1.0 or XML Namespaces.
    #[error("not-well-formed: {0}")]
    NotWellFormed(String),
    /// `<restricted-xml/>` (§4.9.3.18, §11.1): a DTD, comment, processing
    /// instruction or non-predefined entity reference.
    #[error("restricted-xml: {0}")]
    RestrictedXml(String),
    /// `<policy-violation/>` (§4.9.3.14): an element or header is too large or
    /// too deeply nested.
    #[error("policy-violation: {0}")]
    PolicyViolation(String),
    /// `<invalid-namespace/>` (§4.9.3.10): wrong stream or content namespace.
    #[error("invalid-namespace: {0}")]
    InvalidNamespace(String),
    /// `<bad-namespace-prefix/>` (§4.9.3.2): an undeclared or unsupported prefix.
    #[error("bad-namespace-prefix: {0}")]
    BadNamespacePrefix(String),
    /// `<unsupported-encoding/>` (§4.9.3.22, §11.6): input that is not UTF-8.
    #[error("unsupported-encoding: {0}")]
    UnsupportedEncoding(String),
}

impl XmlError {
    /// The RFC 6120 §4.9.3 defined condition, e.g. `"not-well-formed"`.
    pub fn condition(&self) -> &'static str {
        match self {
            XmlError::NotWellFormed(_) => "not-well-formed",
            XmlError::RestrictedXml(_) => "restricted-xml",
            XmlError::PolicyViolation(_) => "policy-violation",
            XmlError::InvalidNamespace(_) => "invalid-namespace",
            XmlError::BadNamespacePrefix(_) => "bad-namespace-prefix",
            XmlError::UnsupportedEncoding(_) => "unsupported-encoding",
        }
    }

    /// Human-readable detail, suitable for the `<text/>` of a stream error.
    pub fn text(&self) -> &str {
        match self {
            XmlError::NotWellFormed(t)
            | XmlError::RestrictedXml(t)
            | XmlError::PolicyViolation(t)
            | XmlError::InvalidNamespace(t)
            | XmlError::BadNamespacePrefix(t)
            | XmlError::UnsupportedEncoding(t) => t,
        }
    }
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
                build_element(bytes, &self.scope).map(|e| Some(StreamEvent::Stanza(e)))
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

/// Checks that a framed unit is UTF-8 made of XML 1.0 characters.
fn check_chars(bytes: &[u8]) -> Result<&str, XmlError> {
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
    let mut attrs: Vec<(String, String)> = Vec::new();
    read_attributes(&start, raw, &mut scope, &mut attrs)?;
    for (k, v) in attrs.iter_mut() {
        let slot = match k.as_str() {
            "to" => &mut header.to,
            "from" => &mut header.from,
            "id" => &mut header.id,
            "version" => &mut header.version,
            "xml:lang" => &mut header.lang,
            _ => continue,
        };
        *slot = Some(std::mem::take(v));
    }
    check_attr_prefixes(&attrs, raw, &[], &scope)?;

    let (prefix, local) = split_qname(raw, "element")?;
    let ns = resolve(prefix, &[], &scope).ok_or_else(|| {
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
    if let Some(default) = lookup("", &[], &scope) {
        if default != CLIENT_NS {
            return Err(XmlError::InvalidNamespace(format!(
                "content namespace '{default}' is not supported; expected '{CLIENT_NS}'"
            )));
        }
    }
    Ok((header, scope))
}

/// Builds the complete first-level element in `bytes`, resolving prefixes
/// against the stream header's `scope`.
fn build_element(bytes: &[u8], scope: &[(String, String)]) -> Result<Element, XmlError> {
    let s = check_chars(bytes)?;
    let mut reader = Reader::from_str(s);
    // Open elements, each with the length of `bindings` before its declarations.
    let mut stack: Vec<(Element, usize)> = Vec::with_capacity(8);
    let mut bindings: Vec<(String, String)> = Vec::new();
    loop {
        let event = reader.read_event().map_err(|e| {
            XmlError::NotWellFormed(format!("{e} in <{}>", display_name(name_at(bytes, 0))))
        })?;
        let done = match event {
            Event::Start(start) => {
                let mark = bindings.len();
                let el = open_element(&start, scope, &mut bindings)?;
                stack.push((el, mark));
                None
            }
            Event::Empty(start) => {
                let mark = bindings.len();
                let el = open_element(&start, scope, &mut bindings)?;
                bindings.truncate(mark);
                attach(&mut stack, el)
            }
            Event::End(_) => match stack.pop() {
                Some((el, mark)) => {
                    bindings.truncate(mark);
                    attach(&mut stack, el)
                }
                None => {
                    return Err(XmlError::NotWellFormed(format!(
                        "unmatched end tag in <{}>",
                        display_name(name_at(bytes, 0))
                    )));
                }
            },
            Event::Text(t) => {
                if let Some((top, _)) = stack.last_mut() {
                    top.append_text(&t.xml10_content());
                }
                None
            }
            Event::CData(t) => {
                if let Some((top, _)) = stack.last_mut() {
                    top.append_text(&t.xml10_content());
                }
                None
            }
            Event::GeneralRef(r) => {
                if let Some((top, _)) = stack.last_mut() {
                    let c = resolve_reference(&r, &top.name)?;
                    top.append_text(c.encode_utf8(&mut [0u8; 4]));
                }
                None
            }
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) | Event::DocType(_) => {
                // The scanner refuses these first; kept for defence in depth.
                return Err(XmlError::RestrictedXml(format!(
                    "markup other than elements and text in <{}>",
                    display_name(name_at(bytes, 0))
                )));
            }
            Event::Eof => {
                return Err(XmlError::NotWellFormed(format!(
                    "<{}> ends before it is closed",
                    display_name(name_at(bytes, 0))
                )));
            }
        };
        if let Some(el) = done {
            if reader.buffer_position() != s.len() as u64 {
                return Err(XmlError::NotWellFormed(format!(
                    "data after the end of <{}>",
                    display_name(name_at(bytes, 0))
                )));
            }
            return Ok(el);
        }
    }
}

/// Attaches a closed element to its parent, or returns it if it is the root.
fn attach(stack: &mut [(Element, usize)], el: Element) -> Option<Element> {
    match stack.last_mut() {
        Some((parent, _)) => {
            parent.push_child(el);
            None
        }
        None => Some(el),
    }
}

/// Creates the element for a start tag, pushing its namespace declarations onto
/// `bindings`.
fn open_element(
    start: &BytesStart<'_>,
    scope: &[(String, String)],
    bindings: &mut Vec<(String, String)>,
) -> Result<Element, XmlError> {
    let raw = start.name().0;
    let mut attrs = Vec::new();
    read_attributes(start, raw, bindings, &mut attrs)?;
    let (prefix, local) = split_qname(raw, "element")?;
    let ns = resolve(prefix, bindings, scope).ok_or_else(|| {
        XmlError::BadNamespacePrefix(format!(
            "undeclared namespace prefix '{}' on <{raw}>",
            prefix.unwrap_or_default()
        ))
    })?;
    check_attr_prefixes(&attrs, raw, bindings, scope)?;
    Ok(Element {
        name: local.to_owned(),
        ns: ns.to_owned(),
        attrs,
        children: Vec::new(),
    })
}

/// Splits the attributes of `start` into namespace declarations (appended to
/// `bindings`) and ordinary attributes (appended to `attrs`), unescaped.
fn read_attributes(
    start: &BytesStart<'_>,
    element: &str,
    bindings: &mut Vec<(String, String)>,
    attrs: &mut Vec<(String, String)>,
) -> Result<(), XmlError> {
    let mark = bindings.len();
    let mut iter = start.attributes();
    // Duplicates are checked below without the iterator's per-element allocation.
    iter.with_checks(false);
    for attr in iter {
        let attr = attr.map_err(|e| {
            XmlError::NotWellFormed(format!("malformed attribute in <{element}>: {e}"))
        })?;
        let value = attr_value(&attr, element)?;
        let key = attr.key.0;
        let declared = if key == "xmlns" {
            Some("")
        } else {
            key.strip_prefix("xmlns:")
        };
        if let Some(prefix) = declared {
            if key != "xmlns" && prefix.is_empty() {
                return Err(XmlError::NotWellFormed(format!(
                    "invalid attribute name '{key}' in <{element}>"
                )));
            }
            if bindings[mark..].iter().any(|(p, _)| p == prefix) {
                return Err(XmlError::NotWellFormed(format!(
                    "duplicate attribute '{key}' in <{element}>"
                )));
            }
            check_binding(prefix, &value, element)?;
            bindings.push((prefix.to_owned(), value.into_owned()));
        } else {
            split_qname(key, "attribute")?;
            if attrs.iter().any(|(k, _)| k == key) {
                return Err(XmlError::NotWellFormed(format!(
                    "duplicate attribute '{key}' in <{element}>"
                )));
            }
            attrs.push((key.to_owned(), value.into_owned()));
        }
    }
    Ok(())
}

/// Unescapes and normalises an attribute value (XML 1.0 §3.3.3).
fn attr_value<'a>(attr: &Attribute<'a>, element: &str) -> Result<Cow<'a, str>, XmlError> {
    let key = attr.key.0;
    if !attr.value.contains(['&', '\t', '\n', '\r']) {
        return Ok(attr.value.clone());
    }
    let value = attr
        .normalized_value(XmlVersion::Implicit1_0)
        .map_err(|e| match e {
            quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => {
                XmlError::RestrictedXml(format!(
                    "entity reference &{name}; in attribute '{key}' of <{element}> \
                     (only the predefined entities are allowed)"
                ))
            }
            e => XmlError::NotWellFormed(format!("attribute '{key}' of <{element}>: {e}")),
        })?;
    if let Some(c) = value.chars().find(|&c| !is_xml_char(c)) {
        return Err(XmlError::NotWellFormed(format!(
            "illegal character U+{:04X} in attribute '{key}' of <{element}>",
            u32::from(c)
        )));
    }
    Ok(value)
}

/// Checks a namespace declaration against XML Namespaces 1.0 §3.
fn check_binding(prefix: &str, uri: &str, element: &str) -> Result<(), XmlError> {
    let bad = |why: &str| XmlError::NotWellFormed(format!("{why} in <{element}>"));
    if prefix.is_empty() {
        if uri == XML_NS {
            return Err(bad("the xml namespace cannot be the default namespace"));
        }
        return Ok(());
    }
    if prefix.contains(':') || !prefix.as_bytes().first().is_some_and(|&b| is_name_start(b)) {
        return Err(bad(&format!("invalid namespace prefix '{prefix}'")));
    }
    if prefix == "xmlns" {
        return Err(bad("the xmlns prefix cannot be declared"));
    }
    if (prefix == "xml") != (uri == XML_NS) {
        return Err(bad(
            "the xml prefix must be bound to the xml namespace, and only it",
        ));
    }
    if uri.is_empty() {
        return Err(bad(&format!(
            "prefix '{prefix}' bound to an empty namespace"
        )));
    }
    Ok(())
}

/// Checks that every prefixed attribute uses a declared prefix.
fn check_attr_prefixes(
    attrs: &[(String, String)],
    element: &str,
    bindings: &[(String, String)],
    scope: &[(String, String)],
) -> Result<(), XmlError> {
    for (k, _) in attrs {
        if let Some((p, _)) = k.split_once(':') {
            if resolve(Some(p), bindings, scope).is_none() {
                return Err(XmlError::BadNamespacePrefix(format!(
                    "undeclared namespace prefix '{p}' on attribute '{k}' of <{element}>"
                )));
            }
        }
    }
    Ok(())
}

/// Splits a qualified name into prefix and local part (XML Namespaces 1.0 §4).
fn split_qname<'a>(qname: &'a str, what: &str) -> Result<(Option<&'a str>, &'a str), XmlError> {
    let (prefix, local) = match qname.split_once(':') {
        Some((p, l)) => (Some(p), l),
        None => (None, qname),
    };
    let valid = |n: &str| {
        let b = n.as_bytes();
        !b.is_empty() && is_name_start(b[0]) && b.iter().all(|&c| is_name_byte(c))
    };
    if !prefix.is_none_or(valid) || !valid(local) {
        return Err(XmlError::NotWellFormed(format!(
            "invalid {what} name '{qname}'"
        )));
    }
    Ok((prefix, local))
}

/// Resolves an element prefix (`None` = default namespace) to a namespace URI.
/// The default namespace resolves to `""` when none is declared.
fn resolve<'a>(
    prefix: Option<&str>,
    bindings: &'a [(String, String)],
    scope: &'a [(String, String)],
) -> Option<&'a str> {
    match prefix {
        None => Some(lookup("", bindings, scope).unwrap_or("")),
        Some("xml") => Some(XML_NS),
        Some(p) => lookup(p, bindings, scope),
    }
}

/// Innermost binding of `prefix`, searching the stanza's declarations first.
fn lookup<'a>(
    prefix: &str,
    bindings: &'a [(String, String)],
    scope: &'a [(String, String)],
) -> Option<&'a str> {
    bindings
        .iter()
        .rev()
        .chain(scope.iter().rev())
        .find(|(p, _)| p == prefix)
        .map(|(_, uri)| uri.as_str())
}

/// Resolves `&name;` in character data: the five predefined entities and
/// character references only (RFC 6120 §11.1).
fn resolve_reference(r: &BytesRef<'_>, element: &str) -> Result<char, XmlError> {
    let name: &str = r;
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ if r.is_char_ref() => match r.resolve_char_ref() {
            Ok(Some(c)) if is_xml_char(c) => c,
            _ => {
                return Err(XmlError::NotWellFormed(format!(
                    "invalid character reference &{name}; in <{element}>"
                )));
            }
        },
        _ => {
            if split_qname(name, "entity").is_err() {
                return Err(XmlError::NotWellFormed(format!(
                    "malformed reference &{name}; in <{element}>"
                )));
            }
            return Err(XmlError::RestrictedXml(format!(
                "entity reference &{name}; in <{element}> (only the predefined entities are allowed)"
            )));
        }
    };
    Ok(c)
}

// ----- byte helpers -------------------------------------------------------------

/// XML 1.0 `Char` production.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Whether `bytes` is only XML whitespace (space, tab, CR, LF).
fn is_whitespace(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// First byte of an XML name (ASCII subset of `NameStartChar`, any non-ASCII byte).
fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// Later byte of an NCName (ASCII subset of `NameChar` without ':').
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') || b >= 0x80
}

fn trim_end_whitespace(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

/// The raw tag name of the markup at `buf[start]` (`<name …` or `</name …`).
fn name_at(buf: &[u8], start: usize) -> &[u8] {
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
fn display_name(name: &[u8]) -> String {
    const MAX: usize = 64;
    let mut s = String::from_utf8_lossy(&name[..name.len().min(MAX)]).into_owned();
    if name.len() > MAX {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::xml::element::Node;

    /// Stream header in the style of RFC 6120 §9.1.1 (step 1).
    const HEADER: &str = "<?xml version='1.0'?>\
        <stream:stream from='juliet@im.example.com' to='im.example.com' version='1.0' \
        xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

    const LIMITS: ParserLimits = ParserLimits {
        max_stanza_bytes: 4096,
        max_depth: 8,
    };

    /// Drains all available events.
    fn drain(p: &mut StreamParser, out: &mut Vec<StreamEvent>) -> Result<(), XmlError> {
        while let Some(ev) = p.next_event()? {
            out.push(ev);
        }
        Ok(())
    }

    /// Feeds `input` in one push; returns the events, or the first error.
    fn parse_all(input: &[u8]) -> Result<Vec<StreamEvent>, XmlError> {
        let mut p = StreamParser::new(LIMITS);
        let mut out = Vec::new();
        p.push(input)?;
        drain(&mut p, &mut out)?;
        Ok(out)
    }

    /// Feeds `input` one byte at a time, draining after each byte.
    fn parse_bytewise(input: &[u8]) -> Result<Vec<StreamEvent>, XmlError> {
        let mut p = StreamParser::new(LIMITS);
        let mut out = Vec::new();
        for b in input {
            p.push(std::slice::from_ref(b))?;
            drain(&mut p, &mut out)?;
        }
        Ok(out)
    }

    /// Parses `HEADER + body`, checks byte-at-a-time feeding agrees, and returns
    /// the stanzas.
    fn stanzas(body: &str) -> Result<Vec<Element>, XmlError> {
        let input = format!("{HEADER}{body}");
        let whole = parse_all(input.as_bytes());
        assert_eq!(
            whole,
            parse_bytewise(input.as_bytes()),
            "bytewise differs for {body}"
        );
        let events = whole?;
        assert!(matches!(events.first(), Some(StreamEvent::Open(_))));
        Ok(events
            .into_iter()
            .skip(1)
            .filter_map(|e| match e {
                StreamEvent::Stanza(el) => Some(el),
                _ => None,
            })
            .collect())
    }

    fn stanza(body: &str) -> Element {
        let mut v = stanzas(body).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(v.len(), 1, "{body}");
        v.remove(0)
    }

    fn err(body: &str) -> XmlError {
        match stanzas(body) {
            Ok(v) => panic!("{body} parsed as {v:?}"),
            Err(e) => e,
        }
    }

    fn header_err(header: &str) -> XmlError {
        let whole = parse_all(header.as_bytes());
        assert_eq!(whole, parse_bytewise(header.as_bytes()));
        whole.expect_err(header)
    }

    fn attrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // ----- valid input ----------------------------------------------------

    #[test]
    fn stream_header_rfc6120_9_1_1() {
        let events = parse_all(HEADER.as_bytes()).expect("header");
        assert_eq!(
            events,
            vec![StreamEvent::Open(StreamHeader {
                to: Some("im.example.com".into()),
                from: Some("juliet@im.example.com".into()),
                id: None,
                version: Some("1.0".into()),
                lang: Some("en".into()),
            })]
        );
    }

    #[test]
    fn stream_header_variants() {
        // No XML declaration, double quotes, '>' inside a quoted value, a BOM,
        // whitespace before the header, an extra declared prefix.
        let h = "\u{FEFF}\n <stream:stream to=\"a>b&amp;c\" id='x' xmlns:stream=\"http://etherx.jabber.org/streams\" \
                 xmlns=\"jabber:client\" xmlns:db='jabber:server:dialback'>";
        let events = parse_bytewise(h.as_bytes()).expect("header");
        assert_eq!(
            events,
            vec![StreamEvent::Open(StreamHeader {
                to: Some("a>b&c".into()),
                id: Some("x".into()),
                ..StreamHeader::default()
            })]
        );
        // Prefix-free canonicalisation (RFC 6120 §4.8.2): no default namespace.
        let h = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>\
                 <message xmlns='jabber:client'/><presence/>";
        let events = parse_all(h.as_bytes()).expect("prefix-free");
        assert_eq!(
            events[1],
            StreamEvent::Stanza(Element::new("message", CLIENT_NS))
        );
        assert_eq!(events[2], StreamEvent::Stanza(Element::new("presence", "")));
    }

    #[test]
    fn xml_declaration_forms() {
        for decl in [
            "<?xml version='1.0'?>",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
            "<?xml version='1.0' encoding='utf-8' standalone='yes' ?>",
        ] {
            let input =
                format!("{decl}<stream:stream xmlns='jabber:client' xmlns:stream='{STREAM_NS}'>");
            assert_eq!(
                parse_bytewise(input.as_bytes()).map(|v| v.len()),
                Ok(1),
                "{decl}"
            );
        }
    }

    #[test]
    fn message_rfc6121_5_2_1() {
        let m = stanza(
            "<message from='juliet@example.com/balcony' id='ktx72v49' to='romeo@example.net' \
             type='chat' xml:lang='en'><body>Art thou not Romeo, and a Montague?</body></message>",
        );
        assert_eq!(m.name, "message");
        assert_eq!(m.ns, CLIENT_NS);
        assert_eq!(
            m.attrs,
            attrs(&[
                ("from", "juliet@example.com/balcony"),
                ("id", "ktx72v49"),
                ("to", "romeo@example.net"),
                ("type", "chat"),
                ("xml:lang", "en"),
            ])
        );
        let body = m.get_child("body", CLIENT_NS).expect("body");
        assert_eq!(body.text(), "Art thou not Romeo, and a Montague?");
        assert_eq!(m.children.len(), 1);
    }

    #[test]
    fn presence_rfc6121_with_caps() {
        let p = stanza(
            "<presence id='pres1' xml:lang='en'>\n  <show>dnd</show>\n  <status>Wooing Juliet</status>\n  \
             <priority>1</priority>\n  <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
             node='http://psi-im.org' ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/>\n</presence>",
        );
        assert!(p.is("presence", CLIENT_NS));
        assert_eq!(
            p.get_child("show", CLIENT_NS).map(Element::text).as_deref(),
            Some("dnd")
        );
        assert_eq!(
            p.get_child("priority", CLIENT_NS)
                .map(Element::text)
                .as_deref(),
            Some("1")
        );
        let c = p
            .get_child("c", "http://jabber.org/protocol/caps")
            .expect("caps");
        assert_eq!(c.attr("ver"), Some("q07IKJEyjvHSyhy//CH0CxmKi8w="));
        assert_eq!(c.attrs.len(), 3, "xmlns is not an attribute");
        assert_eq!(p.elements().count(), 4);
        assert_eq!(p.text().trim(), "", "only indentation between children");
    }

    #[test]
    fn iq_roster_result_rfc6121_2_1_4() {
        let iq = stanza(
            "<iq id='bv1bs71f' to='juliet@example.com/chamber' type='result'>\
             <query xmlns='jabber:iq:roster' ver='ver11'>\
             <item jid='romeo@example.net' name='Romeo' subscription='both'><group>Friends</group></item>\
             <item jid='mercutio@example.com' name='Mercutio' subscription='from'/>\
             </query></iq>",
        );
        let q = iq.get_child("query", "jabber:iq:roster").expect("query");
        assert_eq!(q.attr("ver"), Some("ver11"));
        let items: Vec<_> = q.elements().collect();
        assert_eq!(items.len(), 2);
        assert!(
            items.iter().all(|i| i.ns == "jabber:iq:roster"),
            "default ns inherited"
        );
        assert_eq!(
            items[0]
                .get_child("group", "jabber:iq:roster")
                .map(Element::text)
                .as_deref(),
            Some("Friends")
        );
        assert!(items[1].children.is_empty());
    }

    #[test]
    fn prefixed_and_undeclared_namespaces() {
        let iq = stanza(
            "<iq type='get' id='1'><r:query xmlns:r='jabber:iq:roster' r:ver='2'>\
             <r:item/><plain/><none xmlns=''><deep/></none></r:query></iq>",
        );
        let q = iq.get_child("query", "jabber:iq:roster").expect("query");
        assert_eq!(q.attrs, attrs(&[("r:ver", "2")]));
        let kids: Vec<_> = q
            .elements()
            .map(|e| (e.name.as_str(), e.ns.as_str()))
            .collect();
        assert_eq!(
            kids,
            vec![
                ("item", "jabber:iq:roster"),
                ("plain", CLIENT_NS),
                ("none", "")
            ]
        );
        let none = q.get_child("none", "").expect("none");
        assert!(none.has_child("deep", ""));
    }

    #[test]
    fn stream_prefix_elements_from_header_scope() {
        let e = stanza(
            "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>x</text></stream:error>",
        );
        assert!(e.is("error", STREAM_NS));
        assert!(e.has_child("not-well-formed", "urn:ietf:params:xml:ns:xmpp-streams"));
        let t = e
            .get_child("text", "urn:ietf:params:xml:ns:xmpp-streams")
            .expect("text");
        assert_eq!(t.attr("xml:lang"), Some("en"));
    }

    #[test]
    fn negotiation_elements() {
        let v = stanzas(
            "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\
             <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldAByMG0zMG15cjBtMzA=</auth>",
        )
        .expect("parse");
        assert_eq!(
            v[0],
            Element::new("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        );
        assert_eq!(
            v[1],
            Element::new("auth", "urn:ietf:params:xml:ns:xmpp-sasl")
                .with_attr("mechanism", "PLAIN")
                .with_text("AGp1bGlldAByMG0zMG15cjBtMzA=")
        );
    }

    #[test]
    fn text_entities_char_refs_and_cdata() {
        let m = stanza(
            "<message id='&lt;&#x263A;&amp;&quot;&apos;&#65;'><body>&lt;&amp;&#x263A;&#65;&gt;&quot;&apos; \
             a>b</body><x xmlns='y'><![CDATA[<b>&amp;]]]]><![CDATA[>]]></x></message>",
        );
        assert_eq!(m.attr("id"), Some("<☺&\"'A"));
        let body = m.get_child("body", CLIENT_NS).expect("body");
        assert_eq!(
            body.children,
            vec![Node::Text("<&☺A>\"' a>b".into())],
            "one merged text node"
        );
        assert_eq!(
            m.get_child("x", "y").map(Element::text).as_deref(),
            Some("<b>&amp;]]>")
        );
    }

    #[test]
    fn end_of_line_and_attribute_normalisation() {
        let m = stanza("<message a='x\ty\r\nz' b='&#10;'><body>l1\r\nl2\rl3</body></message>");
        assert_eq!(m.attr("a"), Some("x y z"));
        assert_eq!(m.attr("b"), Some("\n"));
        assert_eq!(
            m.get_child("body", CLIENT_NS).map(Element::text).as_deref(),
            Some("l1\nl2\nl3")
        );
    }

    #[test]
    fn tricky_but_valid_markup() {
        let m = stanza(
            "<message id='a>b' x=\"'/>\" ><a><a><a/></a></a><body >t</body ><e/></message >",
        );
        assert_eq!(m.attrs, attrs(&[("id", "a>b"), ("x", "'/>")]));
        assert_eq!(m.elements().count(), 3);
        let a = m
            .get_child("a", CLIENT_NS)
            .and_then(|a| a.get_child("a", CLIENT_NS));
        assert!(a.is_some_and(|a| a.has_child("a", CLIENT_NS)));
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let input = format!(
            "{HEADER}\n<message to='a@b' id='1'><body>hi &amp; &#x263A; ☺ <![CDATA[ ]]> ]]></body></message> \
             <iq type='get' id='2'><query xmlns='jabber:iq:roster'/></iq>\n\t<presence/></stream:stream>"
        );
        let whole = parse_all(input.as_bytes()).expect("whole");
        assert_eq!(whole.len(), 5);
        assert_eq!(whole.last(), Some(&StreamEvent::Close));
        assert_eq!(parse_bytewise(input.as_bytes()).expect("bytewise"), whole);
        // Also in every two-way split.
        for cut in 0..input.len() {
            let mut p = StreamParser::new(LIMITS);
            let mut out = Vec::new();
            p.push(&input.as_bytes()[..cut]).expect("push");
            drain(&mut p, &mut out).expect("first half");
            p.push(&input.as_bytes()[cut..]).expect("push");
            drain(&mut p, &mut out).expect("second half");
            assert_eq!(out, whole, "split at {cut}");
        }
    }

    #[test]
    fn two_stanzas_in_one_push_and_split_stanza() {
        let mut p = StreamParser::new(LIMITS);
        p.push(HEADER.as_bytes()).expect("push");
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
        assert_eq!(p.next_event(), Ok(None));
        p.push(b"<presence/><message><body>x</body></message><iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/")
            .expect("push");
        assert_eq!(
            p.next_event(),
            Ok(Some(StreamEvent::Stanza(Element::new(
                "presence", CLIENT_NS
            ))))
        );
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Stanza(m))) if m.name == "message"));
        assert_eq!(p.next_event(), Ok(None));
        assert!(p.buffered_bytes() > 0);
        p.push(b"></iq").expect("push");
        assert_eq!(p.next_event(), Ok(None));
        p.push(b">").expect("push");
        let iq = match p.next_event() {
            Ok(Some(StreamEvent::Stanza(iq))) => iq,
            other => panic!("{other:?}"),
        };
        assert!(iq.has_child("ping", "urn:xmpp:ping"));
        assert_eq!(p.next_event(), Ok(None));
        assert_eq!(p.buffered_bytes(), 0);
    }

    #[test]
    fn whitespace_keepalives_and_stream_level_text() {
        let mut p = StreamParser::new(LIMITS);
        p.push(HEADER.as_bytes()).expect("push");
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
        for _ in 0..1000 {
            p.push(b" \n\t\r ").expect("keepalive");
            assert_eq!(p.next_event(), Ok(None));
            assert_eq!(p.buffered_bytes(), 0);
        }
        p.push(b"stray text<![CDATA[ignored]]> <presence/>")
            .expect("push");
        assert_eq!(
            p.next_event(),
            Ok(Some(StreamEvent::Stanza(Element::new(
                "presence", CLIENT_NS
            ))))
        );
        assert_eq!(p.next_event(), Ok(None));
    }

    #[test]
    fn stream_close() {
        let events = parse_bytewise(format!("{HEADER}<presence/></stream:stream >\n ").as_bytes())
            .expect("close");
        assert_eq!(events.len(), 3);
        assert_eq!(events[2], StreamEvent::Close);
        assert_eq!(
            parse_all(format!("{HEADER}</stream:stream><presence/>").as_bytes()),
            Err(XmlError::NotWellFormed(
                "data after the closing </stream:stream>".into()
            ))
        );
        // An empty stream header opens and closes the stream.
        let events = parse_all(
            format!("<stream:stream xmlns='jabber:client' xmlns:stream='{STREAM_NS}'/>").as_bytes(),
        )
        .expect("empty header");
        assert!(matches!(
            events.as_slice(),
            [StreamEvent::Open(_), StreamEvent::Close]
        ));
    }

    #[test]
    fn stanzas_before_an_error_are_delivered_first() {
        let mut p = StreamParser::new(LIMITS);
        p.push(format!("{HEADER}<presence/><!-- x --><presence/>").as_bytes())
            .expect("push");
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Stanza(_)))));
        let e = p.next_event().expect_err("comment");
        assert_eq!(
            e,
            XmlError::RestrictedXml("comment at stream level is not allowed".into())
        );
        // Sticky: the same error again, from both entry points.
        assert_eq!(p.next_event(), Err(e.clone()));
        assert_eq!(p.push(b"<presence/>"), Err(e.clone()));
        assert_eq!(p.buffered_bytes(), 0);
    }

    #[test]
    fn reset_expects_a_new_header() {
        let mut p = StreamParser::new(LIMITS);
        p.push(
            format!("{HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\x16\x03\x01")
                .as_bytes(),
        )
        .expect("push");
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Stanza(e))) if e.name == "starttls"));
        p.reset();
        assert_eq!(p.buffered_bytes(), 0);
        p.push(format!("{HEADER}<presence/>").as_bytes())
            .expect("push");
        assert!(
            matches!(p.next_event(), Ok(Some(StreamEvent::Open(h))) if h.lang.as_deref() == Some("en"))
        );
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Stanza(_)))));
        // Reset also clears an error.
        p.push(b"</x>").expect("push");
        assert!(p.next_event().is_err());
        p.reset();
        p.push(HEADER.as_bytes()).expect("push after reset");
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
    }

    #[test]
    fn many_stanzas_leave_little_buffered() {
        let mut p = StreamParser::new(LIMITS);
        p.push(HEADER.as_bytes()).expect("push");
        let mut count = 0;
        let msg =
            b"<message to='romeo@example.net' type='chat' id='x'><body>hello</body></message>";
        for i in 0..10_000 {
            // Alternate single stanzas, batches and a stanza split across pushes.
            if i % 100 == 0 {
                let batch: Vec<u8> = msg.iter().copied().cycle().take(msg.len() * 50).collect();
                p.push(&batch).expect("batch");
            } else {
                p.push(&msg[..10]).expect("push");
                p.push(&msg[10..]).expect("push");
            }
            while let Some(ev) = p.next_event().expect("event") {
                if matches!(ev, StreamEvent::Stanza(_)) {
                    count += 1;
                }
            }
            assert_eq!(p.buffered_bytes(), 0);
        }
        assert_eq!(count, 9_900 + 100 * 50);
        assert!(
            p.buf.capacity() <= BUFFER_SHRINK_ABOVE,
            "capacity {}",
            p.buf.capacity()
        );
    }

    #[test]
    fn serialisation_round_trip() {
        let input = "<iq type='result' id='r&amp;1'><query xmlns='jabber:iq:roster' ver='v&apos;1'>\
             <item jid='romeo@example.net' name='R &lt;3 &quot;J&quot;'><group>Friends &amp; &lt;Foes&gt;</group></item>\
             <x:y xmlns:x='urn:x' x:attr='1'><x:z/>tail</x:y></query></iq>";
        let parsed = stanza(input);
        let xml = parsed.to_xml(CLIENT_NS);
        assert_eq!(
            xml,
            "<iq type='result' id='r&amp;1'><query xmlns='jabber:iq:roster' ver='v&apos;1'>\
             <item jid='romeo@example.net' name='R &lt;3 &quot;J&quot;'><group>Friends &amp; &lt;Foes&gt;</group></item>\
             <y xmlns='urn:x' x:attr='1'><z/>tail</y></query></iq>",
            "the x: prefix is dropped, so x:attr would need its declaration: see below"
        );
        // Prefixed attributes other than xml:* lose their declaration when written,
        // so compare a round trip without them.
        let mut no_prefixed = parsed.clone();
        no_prefixed
            .get_child_mut("query", "jabber:iq:roster")
            .and_then(|q| q.get_child_mut("y", "urn:x"))
            .map(|y| y.remove_attr("x:attr"));
        let again = stanza(&no_prefixed.to_xml(CLIENT_NS));
        assert_eq!(again, no_prefixed);

        let m = Element::new("message", CLIENT_NS)
            .with_attr("to", "a'b\"c<d>&\t\n\r")
            .with_attr("xml:lang", "en")
            .with_child(Element::new("body", CLIENT_NS).with_text("<&>\"' ☺ \r\n ]]>"))
            .with_child(Element::new("error", STREAM_NS).with_child(Element::new("x", "")));
        assert_eq!(stanza(&m.to_xml(CLIENT_NS)), m);
    }

    // ----- errors -----------------------------------------------------------

    #[test]
    fn oversized_stanza_refused_before_it_is_complete() {
        let limits = ParserLimits {
            max_stanza_bytes: 1024,
            max_depth: 8,
        };
        let mut p = StreamParser::new(limits);
        p.push(HEADER.as_bytes()).expect("header");
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
        p.push(b"<message><body>").expect("start");
        let chunk = [b'a'; 100];
        let mut pushed = 0usize;
        let error = loop {
            assert!(pushed < 10 * 1024 * 1024, "never refused");
            if let Err(e) = p.push(&chunk) {
                break e;
            }
            pushed += chunk.len();
            if let Err(e) = p.next_event() {
                break e;
            }
            assert!(p.buf.len() <= 1024 + PUSH_CHUNK);
        };
        assert_eq!(
            error,
            XmlError::PolicyViolation("<message> exceeds the limit of 1024 bytes".into())
        );
        assert!(pushed <= 1024 + chunk.len(), "refused after {pushed} bytes");
        assert_eq!(p.push(b"x"), Err(error));

        // A complete but oversized stanza in one push, and a single 10 MB push.
        let big = format!(
            "{HEADER}<message><body>{}</body></message>",
            "b".repeat(5000)
        );
        assert_eq!(
            parse_all(big.as_bytes()),
            Err(XmlError::PolicyViolation(
                "<message> exceeds the limit of 4096 bytes".into()
            ))
        );
        let mut p = StreamParser::new(LIMITS);
        let huge = format!("{HEADER}<message><body>{}", "c".repeat(10 * 1024 * 1024));
        p.push(huge.as_bytes()).expect("push latches");
        assert!(
            p.buf.len() <= 4096 + HEADER.len() + PUSH_CHUNK,
            "buffered {}",
            p.buf.len()
        );
        let mut out = Vec::new();
        assert!(matches!(
            drain(&mut p, &mut out),
            Err(XmlError::PolicyViolation(_))
        ));
        assert_eq!(out.len(), 1, "the header is still delivered");
    }

    #[test]
    fn oversized_header_and_whitespace_are_bounded() {
        let header = format!("<stream:stream to='{}'", "x".repeat(5000));
        assert_eq!(
            header_err(&header),
            XmlError::PolicyViolation("stream header exceeds the limit of 4096 bytes".into())
        );
        // Endless whitespace before the header is not buffered.
        let mut p = StreamParser::new(LIMITS);
        for _ in 0..100 {
            p.push(&[b' '; 1000]).expect("ws");
            assert_eq!(p.next_event(), Ok(None));
            assert_eq!(p.buffered_bytes(), 0);
        }
    }

    #[test]
    fn too_deep() {
        let nested = |n: usize| format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        // The stanza itself is level 1; max_depth is 8.
        assert!(stanzas(&nested(8)).is_ok());
        assert_eq!(
            err(&nested(9)),
            XmlError::PolicyViolation("elements nested deeper than 8 levels in <a>".into())
        );
        assert_eq!(
            err(&format!("<message>{}<x/></message>", "<a>".repeat(7))),
            XmlError::PolicyViolation("elements nested deeper than 8 levels in <message>".into())
        );
    }

    #[test]
    fn doctype_and_entity_declarations() {
        assert_eq!(
            header_err("<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]><stream:stream>"),
            XmlError::RestrictedXml(
                "<!DOCTYPE declaration before the stream header is not allowed".into()
            )
        );
        assert_eq!(
            err("<message><!ENTITY lol 'lol'></message>"),
            XmlError::RestrictedXml("<!ENTITY declaration in <message> is not allowed".into())
        );
    }

    #[test]
    fn comments() {
        assert_eq!(
            err("<message><body>a<!-- c --></body></message>"),
            XmlError::RestrictedXml("comment in <message> is not allowed".into())
        );
        assert_eq!(
            header_err("<!-- hi --><stream:stream>"),
            XmlError::RestrictedXml("comment before the stream header is not allowed".into())
        );
    }

    #[test]
    fn processing_instructions() {
        assert_eq!(
            err("<message><?php echo 1; ?></message>"),
            XmlError::RestrictedXml(
                "processing instruction <?php?> in <message> is not allowed".into()
            )
        );
        assert_eq!(
            err("<?xml version='1.0'?>"),
            XmlError::RestrictedXml(
                "processing instruction <?xml?> at stream level is not allowed".into()
            )
        );
        assert_eq!(
            header_err("<?xml-stylesheet href='a'?><stream:stream>"),
            XmlError::RestrictedXml(
                "processing instruction <?xml-stylesheet?> before the stream header is not allowed"
                    .into()
            )
        );
        assert_eq!(
            header_err("<?xml version='1.0'?><?xml version='1.0'?>"),
            XmlError::RestrictedXml(
                "processing instruction <?xml?> before the stream header is not allowed".into()
            )
        );
    }

    #[test]
    fn unknown_entities() {
        assert_eq!(
            err("<message><body>&foo;</body></message>"),
            XmlError::RestrictedXml(
                "entity reference &foo; in <body> (only the predefined entities are allowed)"
                    .into()
            )
        );
        assert_eq!(
            err("<message to='&nbsp;'/>"),
            XmlError::RestrictedXml(
                "entity reference &nbsp; in attribute 'to' of <message> (only the predefined entities are allowed)"
                    .into()
            )
        );
        assert_eq!(
            err("<message><body>a & b</body></message>").condition(),
            "not-well-formed"
        );
        assert_eq!(err("<message to='a & b'/>").condition(), "not-well-formed");
    }

    #[test]
    fn invalid_character_references_and_characters() {
        for bad in ["&#0;", "&#x1;", "&#xZZ;", "&#xFFFE;", "&#xD800;", "&#;"] {
            let e = err(&format!("<message><body>{bad}</body></message>"));
            assert_eq!(
                e,
                XmlError::NotWellFormed(format!("invalid character reference {bad} in <body>")),
                "{bad}"
            );
        }
        assert_eq!(
            err("<message to='&#x1;'/>"),
            XmlError::NotWellFormed(
                "illegal character U+0001 in attribute 'to' of <message>".into()
            )
        );
        assert_eq!(
            err("<message><body>a\u{7}</body></message>"),
            XmlError::NotWellFormed("illegal character U+0007 in <message>".into())
        );
    }

    #[test]
    fn mismatched_and_stray_end_tags() {
        let e = err("<message><body>x</bodx></message>");
        assert_eq!(e.condition(), "not-well-formed");
        assert!(
            e.text().contains("</body>") && e.text().contains("<message>"),
            "{e}"
        );
        assert_eq!(
            err("<presence/></iq>"),
            XmlError::NotWellFormed(
                "end tag </iq> at stream level does not close <stream:stream>".into()
            )
        );
        assert_eq!(
            header_err("</stream:stream>"),
            XmlError::NotWellFormed("end tag </stream:stream> before the stream header".into())
        );
    }

    #[test]
    fn malformed_tags_and_attributes() {
        assert_eq!(
            err("<message to='a<b'/>"),
            XmlError::NotWellFormed("'<' in an attribute value of <message>".into())
        );
        assert_eq!(
            err("<message to='a' to='b'/>"),
            XmlError::NotWellFormed("duplicate attribute 'to' in <message>".into())
        );
        assert_eq!(
            err("<message xmlns='jabber:client' xmlns='jabber:client'/>"),
            XmlError::NotWellFormed("duplicate attribute 'xmlns' in <message>".into())
        );
        assert_eq!(err("<message to/>").condition(), "not-well-formed");
        assert_eq!(err("<message to=a/>").condition(), "not-well-formed");
        assert_eq!(
            err("<message <body/>"),
            XmlError::NotWellFormed("'<' inside the start tag of <message>".into())
        );
        assert_eq!(
            err("< message/>"),
            XmlError::NotWellFormed("invalid character ' ' after '<' at stream level".into())
        );
        assert_eq!(
            err("<message><1a/></message>"),
            XmlError::NotWellFormed("invalid character '1' after '<' in <message>".into())
        );
        assert_eq!(
            err("<a:b:c xmlns:a='x'/>"),
            XmlError::NotWellFormed("invalid element name 'a:b:c'".into())
        );
        assert_eq!(
            err("<m xmlns:p=''/>"),
            XmlError::NotWellFormed("prefix 'p' bound to an empty namespace in <m>".into())
        );
        assert_eq!(
            err("<m xmlns:xmlns='urn:x'/>"),
            XmlError::NotWellFormed("the xmlns prefix cannot be declared in <m>".into())
        );
        assert_eq!(
            err("<m><e/ ></m>"),
            XmlError::NotWellFormed("whitespace between '/' and '>' in <e>".into())
        );
        assert_eq!(
            err("<m><![CDATX[x]]></m>"),
            XmlError::NotWellFormed("malformed CDATA section in <m>".into())
        );
        assert_eq!(
            header_err("hello <stream:stream>"),
            XmlError::NotWellFormed("text before the stream header".into())
        );
    }

    #[test]
    fn undeclared_prefixes() {
        assert_eq!(
            err("<message><foo:bar/></message>"),
            XmlError::BadNamespacePrefix("undeclared namespace prefix 'foo' on <foo:bar>".into())
        );
        assert_eq!(
            err("<message foo:x='1'/>"),
            XmlError::BadNamespacePrefix(
                "undeclared namespace prefix 'foo' on attribute 'foo:x' of <message>".into()
            )
        );
        // A prefix declared on an element is out of scope after it closes.
        assert_eq!(
            err("<m><a xmlns:p='urn:p'><p:b/></a><p:c/></m>"),
            XmlError::BadNamespacePrefix("undeclared namespace prefix 'p' on <p:c>".into())
        );
        assert_eq!(
            header_err("<stream:stream xmlns='jabber:client'>"),
            XmlError::BadNamespacePrefix(
                "undeclared prefix on the stream header <stream:stream>".into()
            )
        );
    }

    #[test]
    fn stream_header_namespace_errors() {
        // RFC 6120 §4.9.3.10: wrong content namespace.
        assert_eq!(
            header_err(&format!(
                "<stream:stream xmlns='jabber:server' xmlns:stream='{STREAM_NS}'>"
            )),
            XmlError::InvalidNamespace(
                "content namespace 'jabber:server' is not supported; expected 'jabber:client'"
                    .into()
            )
        );
        // RFC 6120 §4.9.3.10: wrong stream namespace.
        assert_eq!(
            header_err("<stream:stream xmlns='jabber:client' xmlns:stream='http://wrong.namespace.example.org/'>"),
            XmlError::InvalidNamespace(
                "stream header <stream:stream> is not <stream> in namespace 'http://etherx.jabber.org/streams' \
                 (found namespace 'http://wrong.namespace.example.org/')"
                    .into()
            )
        );
        // Wrong root element.
        assert_eq!(
            header_err(&format!(
                "<stream:foo xmlns='jabber:client' xmlns:stream='{STREAM_NS}'>"
            ))
            .condition(),
            "invalid-namespace"
        );
        assert_eq!(
            header_err("<message xmlns='jabber:client'>").condition(),
            "invalid-namespace"
        );
        // RFC 6120 §4.9.3.2: a prefix other than "stream", or none.
        assert_eq!(
            header_err(&format!(
                "<foobar:stream xmlns='jabber:client' xmlns:foobar='{STREAM_NS}'>"
            )),
            XmlError::BadNamespacePrefix(
                "stream header <foobar:stream> must use the 'stream' prefix".into()
            )
        );
        assert_eq!(
            header_err(&format!("<stream xmlns='{STREAM_NS}'>")).condition(),
            "bad-namespace-prefix"
        );
    }

    #[test]
    fn encodings() {
        let bad_utf8 = [
            HEADER.as_bytes(),
            b"<message><body>\xC3\x28</body></message>",
        ]
        .concat();
        let e = parse_all(&bad_utf8).expect_err("bad utf-8");
        assert_eq!(
            e,
            XmlError::UnsupportedEncoding("invalid UTF-8 at byte 15 of <message>".into())
        );
        assert_eq!(parse_bytewise(&bad_utf8), Err(e));
        assert_eq!(
            parse_all(b"<stream:stream to='\xFF'>")
                .expect_err("header")
                .condition(),
            "unsupported-encoding"
        );
        assert_eq!(
            header_err("<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream>"),
            XmlError::UnsupportedEncoding(
                "XML declaration names encoding 'ISO-8859-1'; only UTF-8 is supported".into()
            )
        );
        assert_eq!(
            parse_all(b"\xFE\xFF\x00<").expect_err("utf-16").condition(),
            "unsupported-encoding"
        );
        assert_eq!(
            parse_all(b"<\x00s\x00").expect_err("utf-16le").condition(),
            "unsupported-encoding"
        );
        assert_eq!(
            header_err("<?xml version='1.1'?><stream:stream>"),
            XmlError::NotWellFormed("XML version 1.1 is not supported; XMPP uses XML 1.0".into())
        );
    }

    #[test]
    fn error_conditions_and_text() {
        let cases = [
            (XmlError::NotWellFormed("a".into()), "not-well-formed"),
            (XmlError::RestrictedXml("a".into()), "restricted-xml"),
            (XmlError::PolicyViolation("a".into()), "policy-violation"),
            (XmlError::InvalidNamespace("a".into()), "invalid-namespace"),
            (
                XmlError::BadNamespacePrefix("a".into()),
                "bad-namespace-prefix",
            ),
            (
                XmlError::UnsupportedEncoding("a".into()),
                "unsupported-encoding",
            ),
        ];
        for (e, cond) in cases {
            assert_eq!(e.condition(), cond);
            assert_eq!(e.text(), "a");
            assert_eq!(e.to_string(), format!("{cond}: a"));
        }
        assert_eq!(
            ParserLimits::default().max_stanza_bytes,
            DEFAULT_MAX_STANZA_BYTES
        );
    }

    #[test]
    fn byte_at_a_time_is_linear() {
        // 60 KB fed one byte at a time: a scanner that rescanned from the start
        // of the element would need ~1.8e9 steps here.
        let body = "x".repeat(60 * 1024);
        let input = format!("{HEADER}<message><body>{body}</body></message>");
        let mut p = StreamParser::new(ParserLimits::default());
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        for b in input.as_bytes() {
            p.push(std::slice::from_ref(b)).expect("push");
            drain(&mut p, &mut out).expect("drain");
        }
        assert_eq!(out.len(), 2);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn mutated_input_never_panics_and_chunking_agrees() {
        let base = format!(
            "{HEADER}<message to='a@b' id='1'><body>hi &amp; &#x263A; <![CDATA[x]]></body>\
             <r:x xmlns:r='urn:r' r:a='&lt;'/></message><iq type='get'><q xmlns='q'/></iq></stream:stream>"
        );
        let base = base.as_bytes();
        let interesting = b"<>/'\"&;![]-?=: \x00\xffax#\r";
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut input = base.to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % input.len();
                let b = interesting[(next() as usize) % interesting.len()];
                match next() % 3 {
                    0 => input[at] = b,
                    1 => input.insert(at, b),
                    _ => {
                        input.remove(at);
                    }
                }
            }
            let whole = parse_all(&input);
            assert_eq!(
                whole,
                parse_bytewise(&input),
                "{}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    /// Throughput check: `cargo test --release -- --ignored --nocapture throughput`.
    #[test]
    #[ignore]
    fn throughput() {
        let msg = b"<message to='romeo@example.net/orchard' from='juliet@example.com/balcony' type='chat' \
                    id='ktx72v49' xml:lang='en'><body>Art thou not Romeo, and a Montague?</body>\
                    <active xmlns='http://jabber.org/protocol/chatstates'/></message>";
        let n = 1_000_000;
        let mut p = StreamParser::new(ParserLimits::default());
        p.push(HEADER.as_bytes()).expect("push");
        assert!(matches!(p.next_event(), Ok(Some(StreamEvent::Open(_)))));
        let batch: Vec<u8> = msg.iter().copied().cycle().take(msg.len() * 20).collect();
        let started = std::time::Instant::now();
        let mut count = 0;
        for _ in 0..n / 20 {
            p.push(&batch).expect("push");
            while let Some(ev) = p.next_event().expect("event") {
                if matches!(ev, StreamEvent::Stanza(_)) {
                    count += 1;
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(count, n);
        println!(
            "{:.0} stanzas/s ({} bytes each)",
            n as f64 / secs,
            msg.len()
        );
    }
}
