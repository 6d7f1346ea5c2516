//! Account management shared by `rendezvous user …` and XEP-0077 in-band registration.
//! Passwords are turned into SCRAM-SHA-1 and SCRAM-SHA-256 credentials (RFC 5802 §3,
//! RFC 7677) and SIP digest hashes (RFC 3261 §22.4, RFC 8760) at once and never stored.

use crate::config::Config;
use crate::sip::digest::{self, Algorithm};
use crate::store::{Account, Records, SipDigest, Store, StoreError};
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
    /// A name the cluster uses for itself (`sip:cluster@...` is the control plane).
    #[error("the user name {0} is reserved")]
    Reserved(String),
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

/// How credentials are derived from a password.
#[derive(Debug, Clone)]
pub struct CredentialPolicy {
    /// PBKDF2 iterations for SCRAM (`xmpp.scram_iterations`).
    pub scram_iterations: u32,
    /// The SIP digest realm (the cluster domain).
    pub realm: String,
}

impl CredentialPolicy {
    /// The policy a configuration implies.
    pub fn from_config(config: &Config) -> Self {
        CredentialPolicy {
            scram_iterations: config.xmpp.scram_iterations,
            realm: config.cluster.domain.clone(),
        }
    }
}

fn account(
    username: String,
    password: &str,
    policy: &CredentialPolicy,
    created_unix: u64,
) -> Account {
    let iterations = policy.scram_iterations;
    let sip = SipDigest {
        realm: policy.realm.clone(),
        md5: digest::ha1(Algorithm::Md5, &username, &policy.realm, password),
        sha256: digest::ha1(Algorithm::Sha256, &username, &policy.realm, password),
    };
    Account {
        scram_sha1: ScramCredentials::generate(ScramHash::Sha1, password, iterations),
        scram_sha256: ScramCredentials::generate(ScramHash::Sha256, password, iterations),
        username,
        created_unix,
        sip: Some(sip),
    }
}

/// Creates `name` with `password`; returns the normalised localpart.
pub fn add(
    store: &dyn Store,
    name: &str,
    password: &str,
    policy: &CredentialPolicy,
) -> Result<String, AccountError> {
    let user = normalize_local(name)?;
    if user == crate::cluster::dialog::CLUSTER_USER {
        return Err(AccountError::Reserved(user));
    }
    if password.is_empty() {
        return Err(AccountError::EmptyPassword);
    }
    if !store.create_account(&account(user.clone(), password, policy, now_unix()))? {
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
    policy: &CredentialPolicy,
) -> Result<(), AccountError> {
    let user = normalize_local(name)?;
    if password.is_empty() {
        return Err(AccountError::EmptyPassword);
    }
    let old = store
        .account(&user)?
        .ok_or_else(|| AccountError::NotFound(user.clone()))?;
    store.put_account(&account(user, password, policy, old.created_unix))?;
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

    fn policy() -> CredentialPolicy {
        CredentialPolicy {
            scram_iterations: 4096,
            realm: "example.com".into(),
        }
    }

    #[test]
    fn sip_digest_hashes_are_stored_not_the_password() {
        let s = MemoryStore::new();
        add(&s, "carol", "secret", &policy()).unwrap();
        let sip = s.account("carol").unwrap().unwrap().sip.unwrap();
        assert_eq!(sip.realm, "example.com");
        assert_eq!(
            sip.md5,
            digest::ha1(Algorithm::Md5, "carol", "example.com", "secret")
        );
        assert_eq!(
            sip.sha256,
            digest::ha1(Algorithm::Sha256, "carol", "example.com", "secret")
        );
        assert_eq!(sip.md5.len(), 32);
        assert_eq!(sip.sha256.len(), 64);
        set_password(&s, "carol", "other", &policy()).unwrap();
        let sip2 = s.account("carol").unwrap().unwrap().sip.unwrap();
        assert_ne!(sip2.md5, sip.md5);
    }

    #[test]
    fn add_normalises_and_refuses_duplicates() {
        let s = MemoryStore::new();
        assert_eq!(add(&s, "Alice", "pw", &policy()).unwrap(), "alice");
        assert!(matches!(
            add(&s, "alice", "pw", &policy()),
            Err(AccountError::Exists(_))
        ));
        // The control plane's user part is not an account.
        assert!(matches!(
            add(&s, "Cluster", "pw", &policy()),
            Err(AccountError::Reserved(_))
        ));
        let a = s.account("alice").unwrap().unwrap();
        assert!(a.scram_sha256.verify_password(ScramHash::Sha256, "pw"));
        assert!(a.scram_sha1.verify_password(ScramHash::Sha1, "pw"));
        assert!(!a.scram_sha256.verify_password(ScramHash::Sha256, "nope"));
    }

    #[test]
    fn passwd_and_delete() {
        let s = MemoryStore::new();
        add(&s, "bob", "one", &policy()).unwrap();
        set_password(&s, "bob", "two", &policy()).unwrap();
        let a = s.account("bob").unwrap().unwrap();
        assert!(a.scram_sha256.verify_password(ScramHash::Sha256, "two"));
        delete(&s, "bob").unwrap();
        assert!(matches!(delete(&s, "bob"), Err(AccountError::NotFound(_))));
        assert!(matches!(
            set_password(&s, "bob", "x", &policy()),
            Err(AccountError::NotFound(_))
        ));
        assert!(matches!(
            add(&s, "a/b", "x", &policy()),
            Err(AccountError::InvalidName(_))
        ));
        assert!(matches!(
            add(&s, "c", "", &policy()),
            Err(AccountError::EmptyPassword)
        ));
    }
}
