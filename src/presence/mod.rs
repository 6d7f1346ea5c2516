//! The presence core of a node (DESIGN.md §2 `PresenceHub`, RFC 6121, RFC 8048): the
//! [`Hub`] handle, its shard actors ([`PresenceShard`], a thin shell over parts that own
//! their data and return effects), the routing table ([`Routes`]) and the sink of each XMPP
//! client ([`outbox::Outbox`]).
//!
//! Files, from the bottom: `outbox`, `routes`, `wire`, `date`; `sip::runtime`, `shared`
//! (what all shards share) and `context` (what a part reads, and the effects' vocabulary);
//! `relay` and `deliver` (stateless); the parts `roster/`, `sip/` (`state` and the files
//! beside it), `backend`, `handover`, `moe`; the shell `shard` (with `shard/sip_in`,
//! `shard/moves`); `hub`; `sip::dispatch`. Each imports only files before it; a `mod.rs`
//! only declares and re-exports.

pub mod backend;
mod context;
mod date;
mod deliver;
pub mod handover;
mod hub;
pub mod moe;
pub mod outbox;
pub mod placement;
pub mod relay;
pub mod roster;
pub mod routes;
pub mod shard;
mod shared;
pub mod sip;
#[cfg(test)]
mod testkit;
mod wire;

pub use backend::{BackendWatch, HomeChanged, NodeDown};
pub use handover::Arriving;
pub use hub::Hub;
pub use moe::{MoeOut, SettingsSaved};
pub use outbox::Outbox;
pub use roster::{
    AccountRemoved, Bind, ContactAnswered, ContactRequestIn, MoeIq, PresenceFromClient, RosterIq,
    SubscriptionIn, Unbind,
};
pub use routes::{ResourceRoute, Routes, Sink};
pub use shard::moves::{Evict, MovedAway};
pub use shard::sip_in::{SipIn, SipStarted};
pub use shard::{FlushStore, Inbound, LiveUser, LoadQuery, PresenceShard};
pub(crate) use shared::write_through;
pub use shared::{ClusterLink, HubSettings, WriteThrough};
