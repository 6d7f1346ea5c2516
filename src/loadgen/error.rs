//! Why a run, or one virtual user's operation, failed, and the key the summary counts it
//! under.

use crate::xmpp::sasl::scram::client as scram;

/// Why a run, or one virtual user's operation, failed. Per-user failures are counted in the
/// summary under [`LoadgenError::kind`].
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// A command-line value is refused (exit status 2); the text names the option.
    #[error("{0}")]
    BadOption(String),
    /// The open-files limit cannot hold one socket per XMPP user.
    #[error(
        "the open-files limit is {limit} but {needed} are needed (one per XMPP user plus \
         headroom): raise it with `ulimit -n {needed}` (hard limit: {hard})"
    )]
    FdLimit {
        /// The soft limit after trying to raise it.
        limit: u64,
        /// The hard limit.
        hard: u64,
        /// What the run needs.
        needed: u64,
    },
    /// A target could not be resolved.
    #[error("cannot resolve {target}: {reason}")]
    Resolve {
        /// The HOST:PORT given.
        target: String,
        /// Why.
        reason: String,
    },
    /// The runtime could not be built, or a socket could not be opened.
    #[error("{0}")]
    Setup(String),
    /// The JSON summary could not be written.
    #[error("writing {path}: {reason}")]
    WriteSummary {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Connecting to the server failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// Reading or writing failed.
    #[error("i/o: {0}")]
    Io(std::io::Error),
    /// Nothing came within the time allowed for this step.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The server ended the stream or closed the connection.
    #[error("the server closed the stream")]
    Closed,
    /// A stream error (RFC 6120 §4.9) other than a followed redirect.
    #[error("stream error <{0}/>")]
    StreamError(String),
    /// The server sent the user elsewhere (followed when `--follow-redirects`).
    #[error("redirect ({kind}) to {to}")]
    Redirect {
        /// `see_other_host` or `cxfr`.
        kind: &'static str,
        /// Where to.
        to: String,
    },
    /// SASL `<failure/>` with this condition (RFC 6120 §6.5).
    #[error("SASL failure <{0}/>")]
    Sasl(String),
    /// The SCRAM exchange failed on our side.
    #[error("SCRAM: {0}")]
    Scram(#[from] scram::ScramError),
    /// The mechanism asked for is not offered.
    #[error("SASL mechanism {0} not offered")]
    MechanismNotOffered(&'static str),
    /// An iq was answered with an error (bind, session, registration): the condition.
    #[error("{what} failed: <{condition}/>")]
    IqError {
        /// Which request.
        what: &'static str,
        /// The stanza error condition.
        condition: String,
    },
    /// The server's XML could not be read.
    #[error("bad XML from the server: {0}")]
    Xml(String),
    /// The server did something the protocol does not allow at this point.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// TLS negotiation failed.
    #[error("TLS: {0}")]
    Tls(String),
}

impl LoadgenError {
    /// The key under which the summary counts this error.
    pub fn kind(&self) -> String {
        match self {
            LoadgenError::BadOption(_) => "bad_option".into(),
            LoadgenError::FdLimit { .. } => "fd_limit".into(),
            LoadgenError::Resolve { .. } => "resolve".into(),
            LoadgenError::Setup(_) => "setup".into(),
            LoadgenError::WriteSummary { .. } => "write_summary".into(),
            LoadgenError::Connect(e) => format!("connect_{}", io_kind(e)),
            LoadgenError::Io(e) => format!("io_{}", io_kind(e)),
            LoadgenError::Timeout(what) => format!("timeout_{}", what.replace(' ', "_")),
            LoadgenError::Closed => "server_closed".into(),
            LoadgenError::StreamError(c) => format!("stream_error_{c}"),
            LoadgenError::Redirect { kind, .. } => format!("redirect_not_followed_{kind}"),
            LoadgenError::Sasl(c) => format!("sasl_{c}"),
            LoadgenError::Scram(scram::ScramError::BadServerSignature) => {
                "scram_bad_server_signature".into()
            }
            LoadgenError::Scram(_) => "scram_protocol".into(),
            LoadgenError::MechanismNotOffered(m) => format!("mechanism_not_offered_{m}"),
            LoadgenError::IqError { what, condition } => {
                format!("{}_{condition}", what.replace(' ', "_"))
            }
            LoadgenError::Xml(_) => "bad_xml".into(),
            LoadgenError::Protocol(_) => "protocol".into(),
            LoadgenError::Tls(_) => "tls".into(),
        }
    }

    /// The exit status for a run that ends with this error: 2 for bad options, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            LoadgenError::BadOption(_) => 2,
            _ => 1,
        }
    }
}

fn io_kind(e: &std::io::Error) -> String {
    format!("{:?}", e.kind()).to_ascii_lowercase()
}
