//! Why a control-plane request failed (DESIGN.md §5): one typed error for the CCMP client
//! and the flows built on it, so callers match variants instead of comparing strings.

/// A failed control-plane request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No final response within the CCMP deadline (`cluster.ccmp_timeout_ms`) or the
    /// transaction's RFC 3261 timer (F or B).
    #[error("timeout")]
    Timeout,
    /// `481 Call/Transaction Does Not Exist`: the peer has no such session or
    /// subscription (it restarted, or ended it).
    #[error("481: the peer has no such session")]
    Gone,
    /// A final response other than 2xx and 481, or a CCMP `response-code` other than
    /// 200; `reason` is the CCMP `response-string` when the body says one, else the SIP
    /// reason phrase.
    #[error("{status} {reason}")]
    Refused {
        /// The SIP status (or the CCMP response code of a 2xx).
        status: u16,
        /// Why.
        reason: String,
    },
    /// The response's `Ccmp-Signature` does not verify under the cluster secret.
    #[error("response signature: {0}")]
    BadSignature(String),
    /// The response body is not a CCMP document we can read (the message names the
    /// element at fault), or lacks an element the request needs.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// No control session with that node.
    #[error("no session with {0}")]
    NoSession(String),
    /// This member has no session with the primary.
    #[error("not joined to the cluster")]
    NotJoined,
    /// The user has no account here.
    #[error("no such account")]
    NoAccount,
    /// The store failed.
    #[error("{0}")]
    Store(String),
    /// The control plane (its actor) stopped before it answered.
    #[error("the control plane stopped")]
    Stopped,
}
