//! Rendezvous: a presence cluster that speaks XMPP and SIP (see DESIGN.md).
//!
//! The house is built in floors (DESIGN.md §14). A module imports only from its own floor or
//! a lower one, and no two files import each other, directly or through others;
//! `tests/layering.rs` reads every `crate::`/`super::` path and fails otherwise. A module
//! belongs to the floor of the longest path listed here that contains it.
//!
//! | floor | modules | what |
//! |---|---|---|
//! | 1 protocol | `xml`, `config`, `sip`, `xmpp`, `pidf`, `cluster` | pure: types, parsers, writers, models and sans-IO state machines; no actix, no sockets |
//! | 2 transport | `sip::transport` | the SIP sockets (UDP, TCP framing) |
//! | 3 store | `store`, `accounts` | the `Store` trait, its backends, typed records |
//! | 4 presence | `presence` | the presence core: sharded actors over parts that return effects |
//! | 5 edges | `c2s`, `control`, `http` | XMPP client connections, the control actor, the admin API |
//! | 6 programs | `node`, `cli`, `loadgen`, `sim`, `replay` | what `main` runs |
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
