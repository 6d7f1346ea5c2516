//! SASL authentication, server side, for XMPP stream negotiation.
//!
//! Implements the SASL framework of RFC 4422 as profiled by RFC 6120 §6 (the failure
//! conditions of §6.5 are [`SaslError`]), with three mechanisms: SCRAM-SHA-1 (RFC 5802),
//! SCRAM-SHA-256 (RFC 7677) and PLAIN (RFC 4616). No -PLUS (channel binding) variant is
//! offered. Everything here is pure: the caller base64-decodes the XML element content,
//! looks up credentials and writes the `<challenge/>`, `<success/>` or `<failure/>` element.

pub mod plain;
pub mod scram;

use std::fmt;
use std::str::FromStr;

pub use plain::{parse_plain, PlainCredentials};
pub use scram::{
    new_server_nonce, parse_client_first, ClientFirst, ScramCredentials, ScramExchange, ScramHash,
};

/// Why a SASL exchange failed; each variant is one RFC 6120 §6.5 failure condition and
/// carries a human-readable message naming the field at fault (suitable for `<text/>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// `<malformed-request/>`: the client message does not follow the mechanism's syntax.
    #[error("malformed-request: {0}")]
    MalformedRequest(String),
    /// `<not-authorized/>`: the credentials (proof, password, channel binding) are wrong.
    #[error("not-authorized: {0}")]
    NotAuthorized(String),
    /// `<invalid-authzid/>`: the authorization identity is malformed or not permitted.
    #[error("invalid-authzid: {0}")]
    InvalidAuthzid(String),
    /// `<incorrect-encoding/>`: the data is not correctly encoded (base64 or UTF-8).
    #[error("incorrect-encoding: {0}")]
    IncorrectEncoding(String),
    /// `<invalid-mechanism/>`: the client asked for a mechanism we do not offer.
    #[error("invalid-mechanism: {0}")]
    InvalidMechanism(String),
    /// `<aborted/>`: the client aborted the exchange with `<abort/>`.
    #[error("aborted: {0}")]
    Aborted(String),
    /// `<encryption-required/>`: the mechanism may only be used over TLS.
    #[error("encryption-required: {0}")]
    EncryptionRequired(String),
    /// `<temporary-auth-failure/>`: a server-side problem (such as a store error).
    #[error("temporary-auth-failure: {0}")]
    TemporaryAuthFailure(String),
}

impl SaslError {
    /// The RFC 6120 §6.5 defined-condition element name for this error.
    pub fn condition(&self) -> &'static str {
        match self {
            SaslError::MalformedRequest(_) => "malformed-request",
            SaslError::NotAuthorized(_) => "not-authorized",
            SaslError::InvalidAuthzid(_) => "invalid-authzid",
            SaslError::IncorrectEncoding(_) => "incorrect-encoding",
            SaslError::InvalidMechanism(_) => "invalid-mechanism",
            SaslError::Aborted(_) => "aborted",
            SaslError::EncryptionRequired(_) => "encryption-required",
            SaslError::TemporaryAuthFailure(_) => "temporary-auth-failure",
        }
    }

    /// The message alone, without the condition prefix, for an optional `<text/>` child.
    pub fn message(&self) -> &str {
        match self {
            SaslError::MalformedRequest(m)
            | SaslError::NotAuthorized(m)
            | SaslError::InvalidAuthzid(m)
            | SaslError::IncorrectEncoding(m)
            | SaslError::InvalidMechanism(m)
            | SaslError::Aborted(m)
            | SaslError::EncryptionRequired(m)
            | SaslError::TemporaryAuthFailure(m) => m,
        }
    }
}

/// The SASL mechanisms this server implements, so that negotiation matches on a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-1 (RFC 5802).
    ScramSha1,
    /// PLAIN (RFC 4616); only to be offered over TLS.
    Plain,
}

impl Mechanism {
    /// All mechanisms, strongest first: the order in which to advertise them.
    pub const ALL: [Mechanism; 3] = [
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The registered SASL mechanism name, as sent in `<mechanism/>` and `<auth mechanism=''/>`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// Looks up a mechanism by its exact (upper-case, RFC 4422 §3.1) name.
    pub fn from_name(name: &str) -> Option<Self> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The hash function for a SCRAM mechanism, `None` for PLAIN.
    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha256 => Some(ScramHash::Sha256),
            Mechanism::ScramSha1 => Some(ScramHash::Sha1),
            Mechanism::Plain => None,
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mechanism {
    type Err = SaslError;

    /// Like [`Mechanism::from_name`], failing with `<invalid-mechanism/>`.
    fn from_str(name: &str) -> Result<Self, SaslError> {
        Mechanism::from_name(name).ok_or_else(|| {
            SaslError::InvalidMechanism(
                "auth mechanism attribute names no offered mechanism".to_string(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_match_rfc6120_names() {
        let cases = [
            (SaslError::MalformedRequest("x".into()), "malformed-request"),
            (SaslError::NotAuthorized("x".into()), "not-authorized"),
            (SaslError::InvalidAuthzid("x".into()), "invalid-authzid"),
            (
                SaslError::IncorrectEncoding("x".into()),
                "incorrect-encoding",
            ),
            (SaslError::InvalidMechanism("x".into()), "invalid-mechanism"),
            (SaslError::Aborted("x".into()), "aborted"),
            (
                SaslError::EncryptionRequired("x".into()),
                "encryption-required",
            ),
            (
                SaslError::TemporaryAuthFailure("x".into()),
                "temporary-auth-failure",
            ),
        ];
        for (err, condition) in cases {
            assert_eq!(err.condition(), condition);
            assert_eq!(err.message(), "x");
            assert_eq!(err.to_string(), format!("{condition}: x"));
        }
    }

    #[test]
    fn mechanism_names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
            assert_eq!(m.name().parse::<Mechanism>(), Ok(m));
            assert_eq!(m.to_string(), m.name());
        }
        assert_eq!(Mechanism::ScramSha256.name(), "SCRAM-SHA-256");
        assert_eq!(Mechanism::ScramSha1.name(), "SCRAM-SHA-1");
        assert_eq!(Mechanism::Plain.name(), "PLAIN");
        assert_eq!(Mechanism::ScramSha1.scram_hash(), Some(ScramHash::Sha1));
        assert_eq!(Mechanism::ScramSha256.scram_hash(), Some(ScramHash::Sha256));
        assert_eq!(Mechanism::Plain.scram_hash(), None);
    }

    #[test]
    fn unknown_mechanisms_are_rejected() {
        for name in [
            "",
            "plain",
            "DIGEST-MD5",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256-PLUS",
            "SCRAM-SHA-512",
            " PLAIN",
        ] {
            assert_eq!(Mechanism::from_name(name), None, "{name:?}");
            assert_eq!(
                name.parse::<Mechanism>(),
                Err(SaslError::InvalidMechanism(
                    "auth mechanism attribute names no offered mechanism".into()
                ))
            );
        }
    }
}
