//! Persistent state behind our own trait: accounts (SCRAM credentials and SIP digest hashes,
//! never passwords), SIP subscriptions (RFC 6665),
//! rosters (RFC 6121 §2) with pending inbound subscription requests (§3.1.3), private XML
//! storage (XEP-0049) and offline messages (XEP-0160).
//!
//! [`Store`] is a raw ordered key-value store split into [`Space`]s; [`SledStore`] keeps it
//! on disk and [`MemoryStore`] in memory for tests. [`Records`] adds typed records on top
//! of any `Store`, each value carrying a version byte so it can be migrated later.

mod kv;
mod memory;
pub mod records;
mod sled;
pub mod transfer;

pub use self::kv::{printable_key, Result, Space, Store, StoreError, RECORD_VERSION};
pub use self::memory::MemoryStore;
pub use self::records::{Account, Records, SipDigest, SipSubscriptionRecord};
pub use self::sled::SledStore;
pub use crate::xmpp::roster::{PendingContact, PendingIn, Roster, RosterItem};
