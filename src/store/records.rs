//! Typed, versioned records on top of any [`Store`]: accounts, rosters (RFC 6121 §2) with
//! pending inbound subscription requests (RFC 6121 §3.1.3), private XML storage
//! (XEP-0049), offline messages (XEP-0160) and SIP subscription dialogs (RFC 6665 §4.2).
//!
//! Every value is one version byte ([`RECORD_VERSION`]) followed by JSON, so a later
//! build can migrate old records and an older build refuses newer ones
//! ([`StoreError::Version`]) instead of misreading them.
//!
//! Keys: a user's local part (already case-normalised by the caller) is the key in
//! `Accounts` and `Rosters`; `Private` and `Offline` use `user\0…` composite keys, so a
//! prefix scan for "al" never sees "alice". User names must be non-empty and free of NUL.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::kv::{printable_key, Result, Space, Store, StoreError, RECORD_VERSION};
use crate::xmpp::roster::Roster;
use crate::xmpp::sasl::ScramCredentials;

/// How often [`Records::offline_push`] retries when a concurrent push took its sequence
/// number.
const OFFLINE_PUSH_RETRIES: usize = 16;

/// A user account. Only SCRAM verifiers are kept (RFC 5802 §3), never the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The normalised local part; also the record's key.
    pub username: String,
    /// Credentials for SCRAM-SHA-1.
    pub scram_sha1: ScramCredentials,
    /// Credentials for SCRAM-SHA-256.
    pub scram_sha256: ScramCredentials,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// SIP digest hashes (RFC 3261 §22.4, RFC 8760); absent for accounts made before SIP
    /// support, which must set their password again to use SIP.
    #[serde(default)]
    pub sip: Option<SipDigest>,
}

/// `H(username:realm:password)` for each digest algorithm a SIP client may choose
/// (RFC 8760 §2); enough to check a digest response, useless to log in over XMPP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipDigest {
    /// The realm the hashes were made for (the cluster domain at the time).
    pub realm: String,
    /// MD5 HA1, lowercase hex.
    pub md5: String,
    /// SHA-256 HA1, lowercase hex.
    pub sha256: String,
}

/// A SIP subscription dialog as the notifier keeps it across restarts (RFC 6665 §4.2,
/// RFC 3261 §12.1.1 dialog state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipSubscriptionRecord {
    /// Local part of the watched user.
    pub presentity: String,
    /// Call-ID of the dialog.
    pub call_id: String,
    /// Our tag (To tag of the SUBSCRIBE).
    pub local_tag: String,
    /// The watcher's tag (From tag of the SUBSCRIBE).
    pub remote_tag: String,
    /// The watcher's URI (From of the SUBSCRIBE).
    pub watcher: String,
    /// Local part of the watcher when it is a user of the cluster domain.
    #[serde(default)]
    pub watcher_user: Option<String>,
    /// Where in-dialog requests go (the watcher's Contact URI).
    pub remote_target: String,
    /// Record-Route set, in the order NOTIFY must use it.
    #[serde(default)]
    pub route_set: Vec<String>,
    /// "UDP" or "TCP".
    pub transport: String,
    /// Socket address NOTIFYs are sent to.
    pub peer: String,
    /// CSeq of our last NOTIFY.
    pub local_cseq: u32,
    /// CSeq of the watcher's last SUBSCRIBE.
    pub remote_cseq: u32,
    /// The Event header's `id` parameter.
    #[serde(default)]
    pub event_id: Option<String>,
    /// When the subscription expires, seconds since the Unix epoch.
    pub expires_unix: u64,
    /// Waiting for the presentity's authorization (RFC 6665 §4.2.1.2 "pending").
    pub pending: bool,
}

/// Decodes a stored roster value of `user` (as [`crate::cluster::record::UserRecord`]
/// carries it); an absent value is the empty roster.
pub fn decode_roster(user: &str, value: Option<&[u8]>) -> Result<Roster> {
    let key = user_key(Space::Rosters, user)?;
    value.map_or(Ok(Roster::default()), |v| decode(Space::Rosters, &key, v))
}

/// Typed records on top of a raw [`Store`]; implemented for every store, including
/// `dyn Store` (so it works through `Arc<dyn Store>`).
pub trait Records {
    /// The account of `user`, if it exists.
    fn account(&self, user: &str) -> Result<Option<Account>>;
    /// Whether `user` has an account, without decoding it (the SIP edge asks on every
    /// request when digest authentication is off).
    fn has_account(&self, user: &str) -> Result<bool>;
    /// Creates `account` atomically; false (and nothing written) if the user exists.
    fn create_account(&self, account: &Account) -> Result<bool>;
    /// Creates or replaces `account` (e.g. a password change).
    fn put_account(&self, account: &Account) -> Result<()>;
    /// Removes the account, roster, private XML and offline messages of `user`; true if
    /// anything was removed. Other users, even "alice2" for "alice", are untouched.
    fn delete_user(&self, user: &str) -> Result<bool>;
    /// All account names, sorted.
    fn list_accounts(&self) -> Result<Vec<String>>;
    /// The roster of `user`; empty if none is stored.
    fn roster(&self, user: &str) -> Result<Roster>;
    /// Stores the roster of `user`.
    fn put_roster(&self, user: &str, roster: &Roster) -> Result<()>;
    /// The private XML stored by `user` under `key` (XEP-0049).
    fn private_get(&self, user: &str, key: &str) -> Result<Option<String>>;
    /// Stores private XML for `user` under `key`, replacing the previous one.
    fn private_put(&self, user: &str, key: &str, xml: &str) -> Result<()>;
    /// Appends an offline message for `user`; false (nothing stored) when `max` messages
    /// are already stored.
    fn offline_push(&self, user: &str, xml: &str, max: usize) -> Result<bool>;
    /// Removes and returns the offline messages of `user`, oldest first. If any stored
    /// message cannot be decoded, nothing is removed and the error is returned.
    fn offline_take(&self, user: &str) -> Result<Vec<String>>;
    /// Stores (or replaces) a SIP subscription dialog.
    fn put_sip_subscription(&self, sub: &SipSubscriptionRecord) -> Result<()>;
    /// Forgets a SIP subscription dialog; true if it was stored.
    fn remove_sip_subscription(
        &self,
        presentity: &str,
        call_id: &str,
        local_tag: &str,
    ) -> Result<bool>;
    /// Every stored SIP subscription dialog.
    fn sip_subscriptions(&self) -> Result<Vec<SipSubscriptionRecord>>;
}

impl<S: Store + ?Sized> Records for S {
    fn account(&self, user: &str) -> Result<Option<Account>> {
        let key = user_key(Space::Accounts, user)?;
        get_record(self, Space::Accounts, &key)
    }

    fn has_account(&self, user: &str) -> Result<bool> {
        let key = user_key(Space::Accounts, user)?;
        Ok(self.get(Space::Accounts, &key)?.is_some())
    }

    fn create_account(&self, account: &Account) -> Result<bool> {
        let key = user_key(Space::Accounts, &account.username)?;
        let value = encode(Space::Accounts, &key, account)?;
        self.insert_new(Space::Accounts, &key, &value)
    }

    fn put_account(&self, account: &Account) -> Result<()> {
        let key = user_key(Space::Accounts, &account.username)?;
        let value = encode(Space::Accounts, &key, account)?;
        self.put(Space::Accounts, &key, &value)
    }

    fn delete_user(&self, user: &str) -> Result<bool> {
        let key = user_key(Space::Accounts, user)?;
        let prefix = user_prefix(user);
        let mut removed = false;
        // Data first, the account last: an interrupted delete can simply be repeated.
        for space in [Space::Private, Space::Offline, Space::SipSubscriptions] {
            for (k, _) in self.scan_prefix(space, &prefix)? {
                removed |= self.remove(space, &k)?;
            }
        }
        removed |= self.remove(Space::Rosters, &key)?;
        removed |= self.remove(Space::Accounts, &key)?;
        Ok(removed)
    }

    fn list_accounts(&self) -> Result<Vec<String>> {
        let mut names = self
            .scan_prefix(Space::Accounts, b"")?
            .into_iter()
            .map(|(k, _)| {
                String::from_utf8(k).map_err(|e| StoreError::Corrupt {
                    space: Space::Accounts,
                    key: printable_key(e.as_bytes()),
                    reason: "key is not UTF-8".into(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        names.sort();
        Ok(names)
    }

    fn roster(&self, user: &str) -> Result<Roster> {
        let key = user_key(Space::Rosters, user)?;
        Ok(get_record(self, Space::Rosters, &key)?.unwrap_or_default())
    }

    fn put_roster(&self, user: &str, roster: &Roster) -> Result<()> {
        let key = user_key(Space::Rosters, user)?;
        let value = encode(Space::Rosters, &key, roster)?;
        self.put(Space::Rosters, &key, &value)
    }

    fn private_get(&self, user: &str, key: &str) -> Result<Option<String>> {
        let key = composite_key(Space::Private, user, key.as_bytes())?;
        get_record(self, Space::Private, &key)
    }

    fn private_put(&self, user: &str, key: &str, xml: &str) -> Result<()> {
        let key = composite_key(Space::Private, user, key.as_bytes())?;
        let value = encode(Space::Private, &key, &xml)?;
        self.put(Space::Private, &key, &value)
    }

    fn offline_push(&self, user: &str, xml: &str, max: usize) -> Result<bool> {
        user_key(Space::Offline, user)?;
        let prefix = user_prefix(user);
        for _ in 0..OFFLINE_PUSH_RETRIES {
            let stored = self.scan_prefix(Space::Offline, &prefix)?;
            if stored.len() >= max {
                return Ok(false);
            }
            let next = match stored.last() {
                None => 0,
                Some((k, _)) => offline_seq(k, prefix.len())?
                    .checked_add(1)
                    .ok_or_else(|| StoreError::Corrupt {
                        space: Space::Offline,
                        key: printable_key(k),
                        reason: "sequence number exhausted".into(),
                    })?,
            };
            let mut key = prefix.clone();
            key.extend_from_slice(&next.to_be_bytes());
            let value = encode(Space::Offline, &key, &xml)?;
            if self.insert_new(Space::Offline, &key, &value)? {
                return Ok(true);
            }
        }
        Err(StoreError::Backend(format!(
            "offline store for {user:?}: no free sequence number after {OFFLINE_PUSH_RETRIES} attempts"
        )))
    }

    fn offline_take(&self, user: &str) -> Result<Vec<String>> {
        user_key(Space::Offline, user)?;
        let stored = self.scan_prefix(Space::Offline, &user_prefix(user))?;
        let decoded = stored
            .iter()
            .map(|(k, v)| decode::<String>(Space::Offline, k, v))
            .collect::<Result<Vec<_>>>()?;
        let mut taken = Vec::with_capacity(decoded.len());
        for ((k, _), xml) in stored.iter().zip(decoded) {
            // A concurrent take may have got it first; deliver each message once.
            if self.remove(Space::Offline, k)? {
                taken.push(xml);
            }
        }
        Ok(taken)
    }

    fn put_sip_subscription(&self, sub: &SipSubscriptionRecord) -> Result<()> {
        let key = sip_subscription_key(&sub.presentity, &sub.call_id, &sub.local_tag)?;
        let value = encode(Space::SipSubscriptions, &key, sub)?;
        self.put(Space::SipSubscriptions, &key, &value)
    }

    fn remove_sip_subscription(
        &self,
        presentity: &str,
        call_id: &str,
        local_tag: &str,
    ) -> Result<bool> {
        let key = sip_subscription_key(presentity, call_id, local_tag)?;
        self.remove(Space::SipSubscriptions, &key)
    }

    fn sip_subscriptions(&self) -> Result<Vec<SipSubscriptionRecord>> {
        self.scan_prefix(Space::SipSubscriptions, b"")?
            .iter()
            .map(|(k, v)| decode(Space::SipSubscriptions, k, v))
            .collect()
    }
}

/// `presentity\0call-id\0local-tag`.
fn sip_subscription_key(presentity: &str, call_id: &str, local_tag: &str) -> Result<Vec<u8>> {
    let mut rest = Vec::with_capacity(call_id.len() + local_tag.len() + 1);
    rest.extend_from_slice(call_id.as_bytes());
    rest.push(0);
    rest.extend_from_slice(local_tag.as_bytes());
    composite_key(Space::SipSubscriptions, presentity, &rest)
}

/// Checks a user name and returns it as a key.
fn user_key(space: Space, user: &str) -> Result<Vec<u8>> {
    let reason = if user.is_empty() {
        "user name is empty"
    } else if user.contains('\0') {
        "user name contains NUL"
    } else {
        return Ok(user.as_bytes().to_vec());
    };
    Err(StoreError::InvalidKey {
        space,
        key: printable_key(user.as_bytes()),
        reason,
    })
}

/// `user\0`: the prefix of every composite key of `user`.
fn user_prefix(user: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(user.len() + 1);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p
}

/// `user\0rest`, after checking the user name.
fn composite_key(space: Space, user: &str, rest: &[u8]) -> Result<Vec<u8>> {
    user_key(space, user)?;
    let mut key = user_prefix(user);
    key.extend_from_slice(rest);
    Ok(key)
}

/// The sequence number of an offline key `user\0<u64 big-endian>`.
fn offline_seq(key: &[u8], prefix_len: usize) -> Result<u64> {
    key.get(prefix_len..)
        .and_then(|tail| <[u8; 8]>::try_from(tail).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt {
            space: Space::Offline,
            key: printable_key(key),
            reason: "key does not end in an 8-byte sequence number".into(),
        })
}

fn get_record<S: Store + ?Sized, T: DeserializeOwned>(
    store: &S,
    space: Space,
    key: &[u8],
) -> Result<Option<T>> {
    store
        .get(space, key)?
        .map(|v| decode(space, key, &v))
        .transpose()
}

/// Version byte + JSON.
fn encode<T: Serialize + ?Sized>(space: Space, key: &[u8], value: &T) -> Result<Vec<u8>> {
    let mut out = vec![RECORD_VERSION];
    serde_json::to_writer(&mut out, value).map_err(|e| StoreError::Encode {
        space,
        key: printable_key(key),
        reason: e.to_string(),
    })?;
    Ok(out)
}

fn decode<T: DeserializeOwned>(space: Space, key: &[u8], bytes: &[u8]) -> Result<T> {
    let corrupt = |reason: String| StoreError::Corrupt {
        space,
        key: printable_key(key),
        reason,
    };
    match bytes.split_first() {
        None => Err(corrupt("empty value (no version byte)".into())),
        Some((&RECORD_VERSION, json)) => {
            serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))
        }
        Some((&found, _)) => Err(StoreError::Version {
            space,
            key: printable_key(key),
            found,
        }),
    }
}

#[cfg(test)]
mod tests;
