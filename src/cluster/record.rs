//! The user record that travels with a user to its home node (DESIGN.md §3, §4: the
//! `redirection-usr-addr` payload, `user-update` and the hand-over of a moved user): the
//! account (SCRAM credentials and SIP digest hashes — never a password), the roster with its
//! groups and pending requests, and private XML storage. Values travel as the store's own
//! versioned bytes, so the home decodes them with the same code that wrote them; how a store
//! exports, imports and merges a record is `crate::store::transfer`.

use serde::{Deserialize, Serialize};

/// A record that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not a user record.
    #[error("malformed user record: {0}")]
    Malformed(String),
}

/// A user's record as carried in CCMP.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserRecord {
    /// Raw `Space::Accounts` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Vec<u8>>,
    /// Raw `Space::Rosters` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roster: Option<Vec<u8>>,
    /// Raw `Space::Private` entries: (key suffix after `user\0`, value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub private: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The record as bytes for the wire (JSON; the CCMP layer base64-encodes it).
pub fn encode(record: &UserRecord) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

/// Decodes wire bytes.
pub fn decode(bytes: &[u8]) -> Result<UserRecord, RecordError> {
    serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_the_wire_and_garbage_is_refused() {
        let rec = UserRecord {
            account: Some(b"acct".to_vec()),
            roster: None,
            private: vec![(b"ns:a".to_vec(), b"<a/>".to_vec())],
        };
        assert_eq!(decode(&encode(&rec)).unwrap(), rec);
        assert!(matches!(decode(b"{nope"), Err(RecordError::Malformed(_))));
    }
}
