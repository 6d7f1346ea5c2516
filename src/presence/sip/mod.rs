//! The SIP side of the presence core: the shard's SIP part (`state`, with its transaction
//! layer, notifier, compositor, registrar and digest authentication in the files beside
//! it), what all shards share once the transport is bound ([`SipRuntime`]), and the
//! dispatcher that hands each SIP message to the shard it concerns ([`HubDispatch`]).

mod auth;
pub(crate) mod dispatch;
mod publish;
mod register;
pub(crate) mod runtime;
pub(crate) mod state;
mod subscribe;
mod transactions;

pub use dispatch::{announce_started, HubDispatch};
pub use runtime::SipRuntime;

#[cfg(test)]
mod tests;
