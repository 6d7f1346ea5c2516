//! Rendezvous: a presence cluster that speaks XMPP and SIP (see DESIGN.md).
//!
//! The house is built in floors (DESIGN.md §14). A module imports only from its own floor or
//! a lower one, and no two files import each other, directly or through others;
//! `tests/layering.rs` reads every `crate::`/`super::` path and fails otherwise. A module
//! belongs to the floor of the longest path listed here that contains it.
//!
//! | floor | modules |
//! |---|---|
//! | 1 protocol | `xml`, `config`, `sip`, `xmpp`, `pidf`, `cluster` |
//! | 2 transport | `sip::transport` |
//! | 3 store | `store`, `accounts` |
//! | 4 presence | `presence` |
//! | 5 edges | `c2s`, `control`, `http` |
//! | 6 programs | `node`, `cli`, `loadgen`, `sim`, `replay` |
#![warn(missing_docs)]

pub mod accounts;
pub mod c2s;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
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
