//! The user record that travels with a user to its home node (DESIGN.md §3, §4: the
//! `redirection-usr-addr` payload): the account (SCRAM credentials and SIP digest hashes —
//! never a password), the roster with its groups and pending requests, and private XML
//! storage. Values travel as the store's own versioned bytes, so the home decodes them with
//! the same code that wrote them.
//!
//! Import policy: the primary's store is the durable record of accounts, rosters and private
//! storage, and every home writes its user's changes through to it (`user-update`) before
//! answering the client. So both directions use [`import_authoritative`]: the home takes the
//! primary's record whole at placement (`redirection-usr-addr`), and the primary takes the
//! home's whole on a write-through. A copy a home kept from an earlier stay is therefore
//! replaced, never merged: whatever the user changed there already reached the primary.
//! [`import`] (credentials replaced, roster and private storage only where the target has
//! none) is for a target whose own copy may be newer than the source's.

use serde::{Deserialize, Serialize};

use crate::store::{Result, Space, Store, StoreError};

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

fn private_prefix(user: &str) -> Vec<u8> {
    let mut p = user.as_bytes().to_vec();
    p.push(0);
    p
}

/// Reads `user`'s record from `store`; `None` when there is no account.
pub fn export(store: &dyn Store, user: &str) -> Result<Option<UserRecord>> {
    let Some(account) = store.get(Space::Accounts, user.as_bytes())? else {
        return Ok(None);
    };
    let prefix = private_prefix(user);
    let private = store
        .scan_prefix(Space::Private, &prefix)?
        .into_iter()
        .map(|(k, v)| (k[prefix.len()..].to_vec(), v))
        .collect();
    Ok(Some(UserRecord {
        account: Some(account),
        roster: store.get(Space::Rosters, user.as_bytes())?,
        private,
    }))
}

/// The record as bytes for the wire (JSON; the CCMP layer base64-encodes it).
pub fn encode(record: &UserRecord) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

/// Decodes wire bytes.
pub fn decode(bytes: &[u8]) -> Result<UserRecord> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        space: Space::Accounts,
        key: "<user record>".into(),
        reason: e.to_string(),
    })
}

/// Writes `record` for `user` without overwriting a roster or private storage already
/// there; credentials are replaced (see the module doc for when this is the right policy).
pub fn import(store: &dyn Store, user: &str, record: &UserRecord) -> Result<()> {
    if let Some(account) = &record.account {
        store.put(Space::Accounts, user.as_bytes(), account)?;
    }
    if let Some(roster) = &record.roster {
        store.insert_new(Space::Rosters, user.as_bytes(), roster)?;
    }
    let prefix = private_prefix(user);
    if store.scan_prefix(Space::Private, &prefix)?.is_empty() {
        for (k, v) in &record.private {
            let mut key = prefix.clone();
            key.extend_from_slice(k);
            store.put(Space::Private, &key, v)?;
        }
    }
    Ok(())
}

/// Writes `record` for `user` replacing what is there: a home's write-through (`user-update`)
/// at the primary, and the primary's record at the home when the user is placed there
/// (DESIGN.md §3).
pub fn import_authoritative(store: &dyn Store, user: &str, record: &UserRecord) -> Result<()> {
    if let Some(account) = &record.account {
        store.put(Space::Accounts, user.as_bytes(), account)?;
    }
    if let Some(roster) = &record.roster {
        store.put(Space::Rosters, user.as_bytes(), roster)?;
    }
    let prefix = private_prefix(user);
    for (k, _) in store.scan_prefix(Space::Private, &prefix)? {
        store.remove(Space::Private, &k)?;
    }
    for (k, v) in &record.private {
        let mut key = prefix.clone();
        key.extend_from_slice(k);
        store.put(Space::Private, &key, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn a_record_moves_with_credentials_roster_and_private_storage() {
        let primary = MemoryStore::new();
        primary.put(Space::Accounts, b"alice", b"acct").unwrap();
        primary.put(Space::Rosters, b"alice", b"roster").unwrap();
        primary
            .put(Space::Private, b"alice\0ns:a", b"<a/>")
            .unwrap();
        primary.put(Space::Private, b"alicex\0ns:a", b"no").unwrap();
        let rec = export(&primary, "alice").unwrap().unwrap();
        assert_eq!(rec.private, vec![(b"ns:a".to_vec(), b"<a/>".to_vec())]);
        let rec = decode(&encode(&rec)).unwrap();

        let home = MemoryStore::new();
        home.put(Space::Rosters, b"alice", b"newer").unwrap();
        import(&home, "alice", &rec).unwrap();
        assert_eq!(
            home.get(Space::Accounts, b"alice").unwrap().unwrap(),
            b"acct"
        );
        // The home's own roster is newer than the primary's copy: kept.
        assert_eq!(
            home.get(Space::Rosters, b"alice").unwrap().unwrap(),
            b"newer"
        );
        assert_eq!(
            home.get(Space::Private, b"alice\0ns:a").unwrap().unwrap(),
            b"<a/>"
        );
        assert!(export(&primary, "bob").unwrap().is_none());
        assert!(decode(b"{nope").is_err());
    }

    #[test]
    fn an_authoritative_import_replaces_a_stale_copy_whole() {
        let primary = MemoryStore::new();
        primary.put(Space::Accounts, b"alice", b"acct").unwrap();
        primary.put(Space::Rosters, b"alice", b"current").unwrap();
        primary
            .put(Space::Private, b"alice\0ns:a", b"<a/>")
            .unwrap();
        let rec = export(&primary, "alice").unwrap().unwrap();

        // The home kept a copy from the user's earlier stay; since then the user changed
        // things on another home, which wrote them through to the primary.
        let home = MemoryStore::new();
        home.put(Space::Rosters, b"alice", b"stale").unwrap();
        home.put(Space::Private, b"alice\0ns:old", b"<old/>")
            .unwrap();
        home.put(Space::Private, b"alicex\0ns:old", b"other")
            .unwrap();
        import_authoritative(&home, "alice", &rec).unwrap();
        assert_eq!(export(&home, "alice").unwrap().unwrap(), rec);
        // Another user's entries sharing the prefix are untouched.
        assert_eq!(
            home.get(Space::Private, b"alicex\0ns:old")
                .unwrap()
                .unwrap(),
            b"other"
        );
    }
}
