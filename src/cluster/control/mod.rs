//! The control plane of a node in parts (DESIGN.md §2, §4–§7), each sans-IO: a plain struct
//! that takes inputs (requests, responses, timer fires, measurements, the time) and returns
//! [`effect::Effect`]s, like [`crate::sip::transaction`] and [`crate::cluster::allocator`].
//! The control actor (`crate::control`) performs the effects and nothing else.
//!
//! - [`client`]: the node's one client-transaction table for the control plane, on the RFC
//!   3261 machines of `sip::transaction`, with the CCMP deadline and typed outcomes
//!   ([`error::ControlError`]).
//! - [`sessions`]: the CCMP sessions (INVITE dialogs) and the signed requests and responses.
//! - [`monitor`]: this node's load level and its `pressvr-load` / `pres-sys-users` report.
//! - [`member`]: joining, reservations and moves received, write-through, and the replica
//!   of the cluster state from the state subscription.
//! - [`primary`]: the allocator, the members' reports and write-throughs, the state document.
//! - [`publisher`]: the state subscriptions of the members, chunked and flow-controlled.
//! - [`placement`]: jobs, candidates, two-phase reservation, pool acquisition.
//! - [`moves`]: drain, rebalance, migrate, scale-in.
//! - [`plane`]: the composition: routes inputs to the parts and continuations back.
//! - [`effect`], [`context`], [`shared`], [`error`]: what the parts have in common.

pub mod client;
pub mod context;
pub mod effect;
pub mod error;
pub mod member;
pub mod monitor;
pub mod moves;
pub mod placement;
pub mod plane;
pub mod primary;
pub mod publisher;
pub mod sessions;
pub mod shared;

#[cfg(test)]
mod tests;

pub use context::{Records, Settings};
pub use effect::{Answer, Command, Destination, Effect, HubCall, Ticket, Timer, TimerId};
pub use error::ControlError;
pub use monitor::Live;
pub use moves::DrainError;
pub use plane::Plane;
