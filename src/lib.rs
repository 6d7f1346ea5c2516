//! Rendezvous: a presence cluster that speaks XMPP and SIP (see DESIGN.md).
//!
//! Layers: pure protocol modules under [`xmpp`], [`sip`] and [`pidf`]; the [`store`] behind a
//! trait; the [`presence`] core (sharded actors serving XMPP and SIP); [`node`] wires one
//! process together from [`config`].
#![warn(missing_docs)]

pub mod accounts;
pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod http;
pub mod loadgen;
pub mod node;
pub mod pidf;
pub mod presence;
pub mod replay;
pub mod sim;
pub mod sip;
pub mod store;
pub mod xml;
pub mod xmpp;
