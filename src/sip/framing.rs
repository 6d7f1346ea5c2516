//! Resumable stream decoder for SIP over TCP/TLS: cuts the byte stream into messages.
//!
//! Implements RFC 3261 §18.3 (on streams a message ends after its header section plus exactly
//! Content-Length bytes, and Content-Length is mandatory), §7.5 (CRLFs before a start line are
//! ignored), §7.3.3 (compact `l`), and the RFC 5626 §4.4.1 keep-alive (a "\r\n\r\n" ping is
//! answered with a "\r\n" pong). Framing only: the frame is then given to
//! [`crate::sip::message::parse`].

use bytes::{Buf, Bytes, BytesMut};

use crate::sip::grammar::trim_wsp_bytes;

/// Why the stream cannot be framed; the connection is then closed.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The header section, or header section plus Content-Length, exceeds the size limit.
    #[error("SIP message exceeds the size limit")]
    TooLarge,
    /// The header section has no Content-Length (or `l`) header, mandatory on streams.
    #[error("Missing Content-Length header")]
    MissingContentLength,
    /// Content-Length is not a number, or appears twice.
    #[error("Bad Content-Length header")]
    BadContentLength,
}

/// One unit cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// "\r\n\r\n" ping: answer "\r\n" (pong). A lone "\r\n" between messages is skipped.
    KeepAlive,
    /// One complete message: header section and exactly Content-Length body bytes.
    Message(Bytes),
}

/// Buffers stream bytes and yields frames, remembering how far it has looked.
#[derive(Debug)]
pub struct StreamDecoder {
    buf: BytesMut,
    max_message_bytes: usize,
    /// Offset where the search for "\r\n\r\n" resumes (bytes before it hold no terminator).
    scan_from: usize,
    /// Total length of the current message once its header section has been read.
    frame_len: Option<usize>,
}

impl StreamDecoder {
    /// A decoder refusing messages larger than `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Self {
        StreamDecoder {
            buf: BytesMut::new(),
            max_message_bytes,
            scan_from: 0,
            frame_len: None,
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Next complete frame, `Ok(None)` when more bytes are needed; keeps its position between calls
    /// (no rescanning the whole buffer each time: remember where the header search stopped).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some(total) = self.frame_len {
                if self.buf.len() < total {
                    return Ok(None);
                }
                self.frame_len = None;
                self.scan_from = 0;
                return Ok(Some(Frame::Message(self.buf.split_to(total).freeze())));
            }
            // Between messages: keep-alives and stray CRLFs (RFC 5626 §4.4.1, RFC 3261 §7.5).
            if self.scan_from == 0 && self.buf.first() == Some(&b'\r') {
                match self.buf.get(..4) {
                    Some(b"\r\n\r\n") => {
                        self.buf.advance(4);
                        return Ok(Some(Frame::KeepAlive));
                    }
                    _ if self.buf.len() < 4 && b"\r\n\r\n".starts_with(&self.buf) => {
                        return Ok(None);
                    }
                    _ if self.buf.starts_with(b"\r\n") => {
                        self.buf.advance(2);
                        continue;
                    }
                    _ => {}
                }
            }
            let Some(end) = find_from(&self.buf, self.scan_from, b"\r\n\r\n") else {
                if self.buf.len() > self.max_message_bytes {
                    return Err(FrameError::TooLarge);
                }
                self.scan_from = self.buf.len().saturating_sub(3);
                return Ok(None);
            };
            let head_len = end + 4;
            let content_length = content_length(&self.buf[..end + 2])?;
            let total = head_len
                .checked_add(content_length)
                .filter(|t| *t <= self.max_message_bytes)
                .ok_or(FrameError::TooLarge)?;
            self.frame_len = Some(total);
        }
    }

    /// Bytes held (a partial message, or a lone CRLF waiting to be told from a ping).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

fn find_from(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Content-Length of a header section (start line and header lines, each ending in CRLF).
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    let mut found: Option<usize> = None;
    let mut lines = head.split(|b| *b == b'\n').skip(1).peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            continue; // the continuation of some other header
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = trim_wsp_bytes(&line[..colon]);
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let mut value = trim_wsp_bytes(&line[colon + 1..]).to_vec();
        // A folded value continues on lines starting with white space (RFC 3261 §7.3.1).
        while let Some(next) =
            lines.next_if(|l| l.first().is_some_and(|b| *b == b' ' || *b == b'\t'))
        {
            value.extend_from_slice(trim_wsp_bytes(next.strip_suffix(b"\r").unwrap_or(next)));
        }
        if found.is_some() || value.is_empty() || value.len() > 19 {
            return Err(FrameError::BadContentLength);
        }
        let mut n: usize = 0;
        for b in value {
            if !b.is_ascii_digit() {
                return Err(FrameError::BadContentLength);
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(usize::from(b - b'0')))
                .ok_or(FrameError::BadContentLength)?;
        }
        found = Some(n);
    }
    found.ok_or(FrameError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse, Limits, Message};

    // Own vectors (not from an RFC).
    const MSG1: &[u8] = b"MESSAGE sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/TCP pc.example.com;branch=z9hG4bK776asdhds\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:alice@example.com>;tag=49583\r\n\
        To: <sip:bob@example.com>\r\n\
        Call-ID: asd88asd77a@pc.example.com\r\n\
        CSeq: 1 MESSAGE\r\n\
        Content-Type: text/plain\r\n\
        Content-Length: 12\r\n\
        \r\n\
        Hello\r\n\r\nBob";
    const MSG2: &[u8] = b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
        v: SIP/2.0/TCP pc.example.com;branch=z9hG4bK776asdhdt\r\n\
        f: <sip:alice@example.com>;tag=49584\r\n\
        t: <sip:bob@example.com>\r\n\
        i: b2@pc.example.com\r\n\
        CSeq: 2 OPTIONS\r\n\
        l   :   0\r\n\
        \r\n";

    fn drain(d: &mut StreamDecoder) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(frame) = d.next_frame().expect("framing error") {
            out.push(frame);
        }
        out
    }

    #[test]
    fn split_at_every_byte_position() {
        for cut in 0..=MSG1.len() {
            let mut d = StreamDecoder::new(4096);
            d.push(&MSG1[..cut]);
            let mut frames = drain(&mut d);
            d.push(&MSG1[cut..]);
            frames.extend(drain(&mut d));
            assert_eq!(
                frames,
                vec![Frame::Message(Bytes::from_static(MSG1))],
                "cut at {cut}"
            );
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn byte_by_byte_keeps_position() {
        let mut d = StreamDecoder::new(4096);
        let mut frames = Vec::new();
        for (i, b) in MSG2.iter().enumerate() {
            d.push(std::slice::from_ref(b));
            frames.extend(drain(&mut d));
            if i > 10 && i + 4 < MSG2.len() {
                assert!(
                    d.scan_from + 4 > d.buffered(),
                    "search restarted from scratch at {i}"
                );
            }
        }
        assert_eq!(frames, vec![Frame::Message(Bytes::from_static(MSG2))]);
    }

    #[test]
    fn two_messages_in_one_push_with_keepalives() {
        let mut d = StreamDecoder::new(4096);
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(MSG1);
        stream.extend_from_slice(b"\r\n"); // a pong: skipped
        stream.extend_from_slice(MSG2);
        stream.extend_from_slice(b"\r\n\r\n");
        d.push(&stream);
        assert_eq!(
            drain(&mut d),
            vec![
                Frame::KeepAlive,
                Frame::Message(Bytes::from_static(MSG1)),
                Frame::Message(Bytes::from_static(MSG2)),
                Frame::KeepAlive,
            ]
        );
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn lone_crlf_waits_to_be_told_from_a_ping() {
        let mut d = StreamDecoder::new(4096);
        d.push(b"\r\n");
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.buffered(), 2);
        d.push(b"\r");
        assert_eq!(d.next_frame(), Ok(None));
        d.push(b"\n");
        assert_eq!(d.next_frame(), Ok(Some(Frame::KeepAlive)));
        d.push(b"\r\nOPT");
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.buffered(), 3, "the pong before the message was skipped");
    }

    #[test]
    fn too_large_without_end_of_headers_fails_at_once() {
        let mut d = StreamDecoder::new(100);
        d.push(&MSG1[..100]);
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&MSG1[100..101]);
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge));
    }

    #[test]
    fn too_large_content_length_fails_before_the_body_arrives() {
        let head = b"MESSAGE sip:b@x SIP/2.0\r\nContent-Length: 5000\r\n\r\n";
        let mut d = StreamDecoder::new(1000);
        d.push(head);
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge));
    }

    #[test]
    fn content_length_is_mandatory_and_numeric() {
        let mut d = StreamDecoder::new(1000);
        d.push(b"OPTIONS sip:b@x SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n");
        assert_eq!(d.next_frame(), Err(FrameError::MissingContentLength));
        let mut d = StreamDecoder::new(1000);
        d.push(b"OPTIONS sip:b@x SIP/2.0\r\nContent-Length: 1x\r\n\r\n");
        assert_eq!(d.next_frame(), Err(FrameError::BadContentLength));
        let mut d = StreamDecoder::new(1000);
        d.push(b"OPTIONS sip:b@x SIP/2.0\r\nContent-Length: 0\r\nl: 0\r\n\r\n");
        assert_eq!(d.next_frame(), Err(FrameError::BadContentLength));
        let mut d = StreamDecoder::new(1000);
        d.push(b"OPTIONS sip:b@x SIP/2.0\r\ncontent-LENGTH:\r\n 3\r\n\r\nabcd");
        assert_eq!(
            d.next_frame(),
            Ok(Some(Frame::Message(Bytes::from_static(
                b"OPTIONS sip:b@x SIP/2.0\r\ncontent-LENGTH:\r\n 3\r\n\r\nabc"
            ))))
        );
        assert_eq!(d.buffered(), 1);
        // A folded line of another header is not a Content-Length line.
        let mut d = StreamDecoder::new(1000);
        d.push(b"OPTIONS sip:b@x SIP/2.0\r\nSubject: a\r\n l: 3\r\nl: 0\r\n\r\n");
        assert!(matches!(d.next_frame(), Ok(Some(Frame::Message(m))) if m.len() == 52));
    }

    #[test]
    fn frames_parse_as_messages() {
        let mut d = StreamDecoder::new(4096);
        d.push(MSG1);
        let Ok(Some(Frame::Message(frame))) = d.next_frame() else {
            panic!("no frame");
        };
        let limits = Limits {
            max_message_bytes: 4096,
        };
        match parse(&frame, &limits) {
            Ok(Message::Request(r)) => assert_eq!(r.body(), b"Hello\r\n\r\nBob"),
            other => panic!("expected a request, got {other:?}"),
        }
    }
}
