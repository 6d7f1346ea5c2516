//! Why a MOE payload or action is refused; each refusal maps to an RFC 6120 §8.3 stanza error
//! plus a MOE condition (`docs/moe-mp.md`).

use crate::xml::{Element, Node};
use crate::xmpp::stanza::{error_reply, StanzaError};

use super::NS;

/// Why a MOE payload or action is refused; each maps to a stanza error plus a MOE condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoeError {
    /// The payload breaks the protocol; the text names the element or attribute at fault.
    #[error("{0}")]
    InvalidPayload(String),
    /// An answer names a (requester, id) that no open exchange has.
    #[error("answer names no open exchange of this requester")]
    UnknownExchange,
    /// An answer came after the exchange's expiry.
    #[error("the exchange has expired")]
    ExchangeExpired,
    /// An answer came from someone else than the exchange's addressee.
    #[error("only the addressee of the request may answer it")]
    NotAddressee,
    /// A `<groups/>` operation names a group the roster does not have.
    #[error("no group named {0:?}")]
    UnknownGroup(String),
    /// `<create/>` names a group that already exists.
    #[error("group {0:?} already exists")]
    GroupExists(String),
    /// A `<contact-response/>` without a pending `<add-contact/>`.
    #[error("no pending contact request from this user")]
    UnknownRequest,
    /// A request reuses the id of one of the requester's open exchanges.
    #[error("exchange id {0:?} is still open")]
    Conflict(String),
}

impl MoeError {
    /// The RFC 6120 §8.3.3 condition the docs give for this error.
    pub fn stanza_error(&self) -> StanzaError {
        match self {
            MoeError::InvalidPayload(_) => StanzaError::BadRequest,
            MoeError::UnknownExchange
            | MoeError::ExchangeExpired
            | MoeError::UnknownGroup(_)
            | MoeError::UnknownRequest => StanzaError::ItemNotFound,
            MoeError::NotAddressee => StanzaError::Forbidden,
            MoeError::GroupExists(_) | MoeError::Conflict(_) => StanzaError::Conflict,
        }
    }

    /// The name of the MOE condition element placed beside the standard one; `None` for a
    /// plain `conflict`.
    pub fn moe_condition(&self) -> Option<&'static str> {
        match self {
            MoeError::InvalidPayload(_) => Some("invalid-payload"),
            MoeError::UnknownExchange => Some("unknown-exchange"),
            MoeError::ExchangeExpired => Some("exchange-expired"),
            MoeError::NotAddressee => Some("not-addressee"),
            MoeError::UnknownGroup(_) => Some("unknown-group"),
            MoeError::GroupExists(_) => Some("group-exists"),
            MoeError::UnknownRequest => Some("unknown-request"),
            MoeError::Conflict(_) => None,
        }
    }

    /// The reply for `stanza` (an iq or message we refuse): like stanza::error_reply but with the
    /// MOE condition element and the text added inside `<error/>`.
    pub fn reply_to(&self, stanza: &Element) -> Element {
        let text = self.to_string();
        let mut reply = error_reply(stanza, self.stanza_error(), Some(&text));
        if let Some(cond) = self.moe_condition() {
            // error_reply appends the <error/> last: [standard condition, text].
            if let Some(Node::Element(err)) = reply.children.last_mut() {
                if err.name == "error" {
                    let at = err.children.len().min(1);
                    err.children
                        .insert(at, Node::Element(Element::new(cond, NS)));
                }
            }
        }
        reply
    }
}

/// A payload that breaks a rule of the protocol, named in `msg`.
pub(super) fn invalid(msg: impl Into<String>) -> MoeError {
    MoeError::InvalidPayload(msg.into())
}
