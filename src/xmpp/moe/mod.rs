//! MOE-MP, the mobile-office extensions of the rendezvous-server paper (DESIGN.md §9,
//! `docs/moe-mp.md`), as XMPP payloads in the namespace [`NS`]: settings restore (§1, stored
//! as XEP-0049 private data), office-environment exchanges (§2.1–§2.4: work lists, file
//! requests, offers, broadcasts), groups (§3, on top of RFC 6121 §2 rosters) and contact-add
//! confirmation (§4). Errors are RFC 6120 §8.3 stanza errors with a MOE condition beside the
//! standard one. Pure code: typed payloads parsed from and written to [`Element`]s, and the
//! table of open exchanges with time passed in.
//!
//! - [`error`]: the refusals and their stanza errors;
//! - [`payload`]: the typed payloads, read from and written to elements;
//! - [`exchange`]: the table of open exchanges.

use std::time::Duration;

pub mod error;
pub mod exchange;
pub mod payload;

#[cfg(test)]
mod tests;

pub use error::MoeError;
pub use exchange::{Exchange, Exchanges};
pub use payload::*;

/// The MOE-MP namespace: every MOE payload and condition element lives in it, and the server
/// lists it as a disco feature (XEP-0030).
pub const NS: &str = "urn:rendezvous:params:xml:ns:moe";

/// How long an exchange stays open after its request was forwarded (`docs/moe-mp.md` §2).
pub const EXCHANGE_TTL: Duration = Duration::from_secs(300);

/// The most `<to/>` addressees a broadcast may name (§2.4), the default of `max_broadcast`.
pub const MAX_BROADCAST: usize = 50;

/// Longest ttl [`Exchanges::open`] honours (longer ones are cut to it), so that instant
/// arithmetic cannot overflow whatever the configuration says.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest exchange id a requester may choose (§2).
pub const MAX_ID_LEN: usize = 64;

/// Shortest and longest one-time P2P token (§2), so tokens cannot be guessed nor bloat stanzas.
pub const TOKEN_LEN: std::ops::RangeInclusive<usize> = 8..=128;

/// Longest group name, contact name, work-list text attribute, in characters (§3).
pub const MAX_NAME_LEN: usize = 1023;

/// Longest file name in characters: the usual file-system limit, since the receiving client
/// writes the file under that name.
pub const MAX_FILE_NAME_LEN: usize = 255;
