//! SIP (RFC 3261) for the presence server: pure message, framing, transaction, digest,
//! event, subscription, publication and registrar modules, and the [`transport`] that owns the sockets.
//! The user-agent logic that uses them lives with the presence state in
//! [`crate::presence::sip`].

pub mod digest;
pub mod event;
pub mod framing;
pub mod grammar;
#[cfg(test)]
mod junk;
pub mod message;
pub mod publication;
pub mod registrar;
pub mod subscription;
pub mod timer;
pub mod transaction;
pub mod transport;
