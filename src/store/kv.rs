//! The raw layer of the store: an ordered key-value [`Store`] split into [`Space`]s, and the
//! errors of the store layer.

use std::fmt;
use std::path::PathBuf;

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, sled internals, a poisoned lock).
    #[error("store backend error: {0}")]
    Backend(String),
    /// The store directory is locked by another process.
    #[error("store {} is in use by another process (is a node running?)", .0.display())]
    Locked(PathBuf),
    /// A stored value could not be decoded.
    #[error("corrupt record in {space} at key \"{key}\": {reason}")]
    Corrupt {
        /// The space holding the value.
        space: Space,
        /// The key, printable (escaped, see [`printable_key`]).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A stored value has a version byte this build does not understand.
    #[error("record in {space} at key \"{key}\" has unsupported version {found} (expected {expected})", expected = RECORD_VERSION)]
    Version {
        /// The space holding the value.
        space: Space,
        /// The key, printable (escaped, see [`printable_key`]).
        key: String,
        /// The version byte found.
        found: u8,
    },
    /// A key supplied by the caller cannot be stored (empty, or contains NUL, which is our
    /// composite-key separator).
    #[error("invalid key for {space}: \"{key}\": {reason}")]
    InvalidKey {
        /// The space the key was meant for.
        space: Space,
        /// The key, printable (escaped, see [`printable_key`]).
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A record could not be encoded.
    #[error("cannot encode record for {space} at key \"{key}\": {reason}")]
    Encode {
        /// The space the value was meant for.
        space: Space,
        /// The key, printable (escaped, see [`printable_key`]).
        key: String,
        /// The encoder's message.
        reason: String,
    },
}

/// The version byte written in front of every record (see [`super::records`]).
pub const RECORD_VERSION: u8 = 1;

/// Shorthand for results of this layer.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A keyspace of the store; each is a separate sled tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    /// `user` → [`Account`].
    Accounts,
    /// `user` → [`Roster`].
    Rosters,
    /// `user\0namespace-key` → private XML (XEP-0049).
    Private,
    /// `user\0<seq u64 big-endian>` → stored message stanza (XEP-0160).
    Offline,
    /// Store-wide metadata.
    Meta,
    /// `presentity\0dialog-id` → [`SipSubscriptionRecord`] (RFC 6665 dialogs that survive a
    /// restart).
    SipSubscriptions,
    /// `user` → home node id: the primary's directory (DESIGN.md §3).
    Directory,
}

impl Space {
    /// Every space, in declaration order (`ALL[space as usize] == space`).
    pub const ALL: [Space; 7] = [
        Space::Accounts,
        Space::Rosters,
        Space::Private,
        Space::Offline,
        Space::Meta,
        Space::SipSubscriptions,
        Space::Directory,
    ];

    /// The stable name (also the sled tree name); never change it, data is stored under it.
    pub fn name(self) -> &'static str {
        match self {
            Space::Accounts => "accounts",
            Space::Rosters => "rosters",
            Space::Private => "private",
            Space::Offline => "offline",
            Space::Meta => "meta",
            Space::SipSubscriptions => "sip_subscriptions",
            Space::Directory => "directory",
        }
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Renders a raw key for error messages: UTF-8 lossily, control characters, quotes and
/// backslashes escaped as in Rust (`\0`, `\u{1}`, `\"`).
pub fn printable_key(key: &[u8]) -> String {
    String::from_utf8_lossy(key).escape_debug().to_string()
}

/// A raw ordered key-value store split into [`Space`]s. Implementations must be safe to
/// share between threads; each call is atomic on its own.
pub trait Store: Send + Sync + 'static {
    /// The value at `key`, if any.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Sets `key` to `value`, replacing any previous value.
    fn put(&self, space: Space, key: &[u8], value: &[u8]) -> Result<()>;
    /// Sets `key` to `value` only if it is absent, atomically; true if it was inserted.
    fn insert_new(&self, space: Space, key: &[u8], value: &[u8]) -> Result<bool>;
    /// Removes `key`; true if it was present.
    fn remove(&self, space: Space, key: &[u8]) -> Result<bool>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, space: Space, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Makes every earlier write durable.
    fn flush(&self) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_names_are_stable_and_distinct() {
        let names: Vec<_> = Space::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "accounts",
                "rosters",
                "private",
                "offline",
                "meta",
                "sip_subscriptions",
                "directory"
            ]
        );
        assert_eq!(Space::Offline.to_string(), "offline");
        for (i, s) in Space::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
    }

    #[test]
    fn error_messages_name_the_record() {
        let e = StoreError::Version {
            space: Space::Accounts,
            key: printable_key(b"alice"),
            found: 7,
        };
        assert_eq!(
            e.to_string(),
            "record in accounts at key \"alice\" has unsupported version 7 (expected 1)"
        );
        let e = StoreError::Corrupt {
            space: Space::Private,
            key: printable_key(b"alice\0jabber:iq:private"),
            reason: "bad json".into(),
        };
        assert_eq!(
            e.to_string(),
            "corrupt record in private at key \"alice\\0jabber:iq:private\": bad json"
        );
        let e = StoreError::Locked(PathBuf::from("/var/lib/rv"));
        assert_eq!(
            e.to_string(),
            "store /var/lib/rv is in use by another process (is a node running?)"
        );
    }
}
