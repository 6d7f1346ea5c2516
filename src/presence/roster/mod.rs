//! The RFC 6121 part of a shard (`RosterState`): the core rules in `state`, what sessions
//! do in `session`, roster queries and hand-overs in `iq`, the MOE-MP roster extensions in
//! `contacts`.

mod contacts;
mod iq;
mod session;
mod state;
#[cfg(test)]
mod tests;

pub(crate) use contacts::{local_account, stored_settings, ContactFx};
pub use contacts::{ContactAnswered, ContactRequestIn, MoeIq};
pub use iq::RosterIq;
pub(crate) use iq::WatcherAsks;
pub use session::{AccountRemoved, Bind, PresenceFromClient, Unbind};
pub use state::SubscriptionIn;
pub(crate) use state::{RosterFx, RosterState};
