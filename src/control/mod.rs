//! The control plane's I/O edge (DESIGN.md §2, §14): the control actor that performs what
//! the sans-IO parts of [`crate::cluster::control`] decide, the SIP dispatch in front of the
//! presence hub (control traffic, `302`s, placements), the HTTP admin API and the local
//! operator socket ([`operator`]).
//!
//! One way only: the admin API holds the actor's address; the actor takes its input type
//! from the dispatch; the dispatch and the XMPP session hold `Recipient`s of messages
//! defined below them ([`crate::presence::placement`]), never the actor.

pub mod actor;
pub mod admin;
pub mod dispatch;
pub mod operator;

pub use actor::Control;
