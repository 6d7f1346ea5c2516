//! The XMPP client-to-server edge (RFC 6120, DESIGN.md §2, §14): the listener that accepts
//! connections, the connection task (framing, TLS, the outbound queue) and the session (stream
//! negotiation, SASL, binding, routing into the presence core). Everything below it is pure
//! protocol ([`crate::xmpp`]), the store and the presence core.

pub mod connection;
pub mod listener;
pub mod session;
pub mod tls;
