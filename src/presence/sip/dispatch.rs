//! Routes parsed SIP messages from the transport to the shard they concern: a request to
//! the shard of its user (the address-of-record of a REGISTER, else the Request-URI user),
//! a response to the shard named in its branch ([`BRANCH_PREFIX`]), so no shared table of
//! transactions is needed.

use std::sync::{Arc, Weak};

use tracing::debug;

use super::super::hub::Hub;
use super::super::shard::sip_in::{SipIn, SipStarted};
use super::super::shard::{post, Shards};
use super::state::BRANCH_PREFIX;
use crate::sip::message::{Message, Method, Request, Uri};
use crate::sip::transport::{Dispatch, Incoming};
use crate::xmpp::jid::normalize_local;

/// Routes parsed SIP messages from the transport to the owning shard. Holds the shards
/// weakly: the hub holds the transport's sender, and a strong cycle would keep the store
/// open after shutdown.
pub struct HubDispatch {
    shards: Weak<Shards>,
}

impl HubDispatch {
    /// A dispatcher into `hub`.
    pub fn new(hub: Hub) -> Self {
        HubDispatch {
            shards: Arc::downgrade(&hub.inner.shards),
        }
    }
}

impl Dispatch for HubDispatch {
    fn dispatch(&self, incoming: Incoming) {
        let Some(shards) = self.shards.upgrade() else {
            return; // shutting down
        };
        let shard = match &incoming.message {
            Message::Request(req) => shards.of(&routing_key(req)),
            Message::Response(resp) => {
                match resp
                    .base
                    .via
                    .branch
                    .as_deref()
                    .and_then(shard_of_branch)
                    .and_then(|i| shards.at(i))
                {
                    Some(s) => s,
                    None => {
                        debug!(
                            status = resp.status,
                            "response to no transaction of ours dropped"
                        );
                        return;
                    }
                }
            }
        };
        post(shard, SipIn(incoming));
    }
}

/// The user a request concerns: the address-of-record of a REGISTER (To), else the
/// Request-URI user; requests without one go by Call-ID.
fn routing_key(req: &Request) -> String {
    let user = if *req.method() == Method::Register {
        Uri::parse(&req.base.to.uri).ok().and_then(|u| u.user)
    } else {
        req.uri().user.clone()
    };
    match user {
        Some(u) => normalize_local(&u).unwrap_or(u),
        None => req.base.call_id.clone(),
    }
}

fn shard_of_branch(branch: &str) -> Option<usize> {
    let rest = branch.strip_prefix(BRANCH_PREFIX)?;
    let digits = rest.split('-').next()?;
    digits.parse().ok()
}

/// Starts the shards' SIP side once the transport is bound.
pub fn announce_started(hub: &Hub) {
    for shard in hub.inner.shards() {
        shard.do_send(SipStarted);
    }
}
