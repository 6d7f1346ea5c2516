//! Account management shared by `rendezvous user …` and XEP-0077 in-band registration.
//! Passwords are turned into SCRAM-SHA-1 and SCRAM-SHA-256 credentials (RFC 5802 §3,
//! RFC 7677) at once and never stored.

use crate::store::{Account, Records, Store, StoreError};
use crate::xmpp::jid::{normalize_local, JidError};
use crate::xmpp::sasl::{ScramCredentials, ScramHash};

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The name is not a valid JID localpart.
    #[error("invalid user name: {0}")]
    InvalidName(#[from] JidError),
    /// Empty password.
    #[error("the password must not be empty")]
    EmptyPassword,
    /// `add` of an existing user.
    #[error("user {0} already exists")]
    Exists(String),
    /// `del`/`passwd` of an unknown user.
    #[error("no user {0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn account(username: String, password: &str, iterations: u32, created_unix: u64) -> Account {
    Account {
        scram_sha1: ScramCredentials::generate(ScramHash::Sha1, password, iterations),
        scram_sha256: ScramCredentials::generate(ScramHash::Sha256, password, iterations),
        username,
        created_unix,
    }
}

/// Creates `name` with `password`; returns the normalised localpart.
pub fn add(
    store: &dyn Store,
    name: &str,
    password: &str,
    iterations: u32,
) -> Result<String, AccountError> {
    let user = normalize_local(name)?;
    if password.is_empty() {
        return Err(AccountError::EmptyPassword);
    }
    if !store.create_account(&account(user.clone(), password, iterations, now_unix()))? {
        return Err(AccountError::Exists(user));
    }
    store.flush()?;
    Ok(user)
}

/// Replaces the password of `name`.
pub fn set_password(
    store: &dyn Store,
    name: &str,
    password: &str,
    iterations: u32,
) -> Result<(), AccountError> {
    let user = normalize_local(name)?;
    if password.is_empty() {
        return Err(AccountError::EmptyPassword);
    }
    let old = store
        .account(&user)?
        .ok_or_else(|| AccountError::NotFound(user.clone()))?;
    store.put_account(&account(user, password, iterations, old.created_unix))?;
    store.flush()?;
    Ok(())
}

/// Deletes `name` with everything stored for it.
pub fn delete(store: &dyn Store, name: &str) -> Result<(), AccountError> {
    let user = normalize_local(name)?;
    if !store.delete_user(&user)? {
        return Err(AccountError::NotFound(user));
    }
    store.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn add_normalises_and_refuses_duplicates() {
        let s = MemoryStore::new();
        assert_eq!(add(&s, "Alice", "pw", 4096).unwrap(), "alice");
        assert!(matches!(
            add(&s, "alice", "pw", 4096),
            Err(AccountError::Exists(_))
        ));
        let a = s.account("alice").unwrap().unwrap();
        assert!(a.scram_sha256.verify_password(ScramHash::Sha256, "pw"));
        assert!(a.scram_sha1.verify_password(ScramHash::Sha1, "pw"));
        assert!(!a.scram_sha256.verify_password(ScramHash::Sha256, "nope"));
    }

    #[test]
    fn passwd_and_delete() {
        let s = MemoryStore::new();
        add(&s, "bob", "one", 4096).unwrap();
        set_password(&s, "bob", "two", 4096).unwrap();
        let a = s.account("bob").unwrap().unwrap();
        assert!(a.scram_sha256.verify_password(ScramHash::Sha256, "two"));
        delete(&s, "bob").unwrap();
        assert!(matches!(delete(&s, "bob"), Err(AccountError::NotFound(_))));
        assert!(matches!(
            set_password(&s, "bob", "x", 4096),
            Err(AccountError::NotFound(_))
        ));
        assert!(matches!(
            add(&s, "a/b", "x", 4096),
            Err(AccountError::InvalidName(_))
        ));
        assert!(matches!(
            add(&s, "c", "", 4096),
            Err(AccountError::EmptyPassword)
        ));
    }
}
