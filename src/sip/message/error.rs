//! What [`super::parse`] refuses: the size [`Limits`] and the [`ParseError`] whose text is the
//! reason phrase (the [`super::Rejection`] then drops or answers the message).

/// Size limits applied by [`parse`](super::parse); the value comes from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted; larger requests get 513 (RFC 3261 §18.1.1, §21.5.13).
    pub max_message_bytes: usize,
}

/// Why bytes are not a usable message; the `Display` text is the reason phrase of the 4xx/5xx
/// reply and names the header at fault.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The message is larger than [`Limits::max_message_bytes`].
    #[error("Message Too Large")]
    TooLarge,
    /// Nothing but CRLFs (a keep-alive) or no bytes at all.
    #[error("Empty message")]
    Empty,
    /// The first line is neither a request line nor a status line.
    #[error("Malformed start line")]
    MalformedStartLine,
    /// The request line is not `Method SP Request-URI SP SIP-Version` (RFC 3261 §7.1).
    #[error("Malformed request line")]
    MalformedRequestLine,
    /// The status line is not `SIP-Version SP 3DIGIT SP Reason-Phrase` (RFC 3261 §7.2).
    #[error("Malformed status line")]
    MalformedStatusLine,
    /// The SIP version is not 2.0 (answered with 505).
    #[error("Version Not Supported")]
    UnsupportedVersion,
    /// The Request-URI is malformed, or carries headers (RFC 3261 §19.1.1 forbids them there).
    #[error("Malformed Request-URI")]
    MalformedRequestUri,
    /// The URI scheme is not sip, sips, pres or im (answered with 416).
    #[error("Unsupported URI Scheme")]
    UnsupportedUriScheme,
    /// A URI given to [`Uri::parse`](super::Uri::parse) is malformed.
    #[error("Malformed URI")]
    MalformedUri,
    /// The bytes end inside the header section.
    #[error("Missing end of header section")]
    MissingEndOfHeaders,
    /// A header line has no colon, a bad name, a bare CR or LF, or a fold with nothing to fold.
    #[error("Malformed header line")]
    MalformedHeaderLine,
    /// The start line or the header section is not UTF-8.
    #[error("Start line or header section is not UTF-8")]
    NotUtf8,
    /// A mandatory header is absent.
    #[error("Missing {0} header")]
    MissingHeader(&'static str),
    /// A header that may appear once appears more than once.
    #[error("Duplicate {0} header")]
    DuplicateHeader(&'static str),
    /// A header value does not follow its grammar.
    #[error("Malformed {0} header")]
    MalformedHeader(&'static str),
    /// A numeric header value is not a number or is out of range.
    #[error("Bad {0} header")]
    BadHeaderValue(&'static str),
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq method does not match request method")]
    CSeqMethodMismatch,
    /// Content-Length promises more bytes than the datagram holds (RFC 3261 §18.3).
    #[error("Content-Length larger than body")]
    ContentLengthTooLarge,
    /// The method is not one this server implements (answered with 405 and [`ALLOW`]).
    #[error("Method Not Allowed")]
    UnknownMethod,
}
