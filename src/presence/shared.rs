//! What all shards of a node share: the settings, the store, the routing table, the SIP
//! runtime and the cluster link (DESIGN.md §2, §3). The shards read it; only the node sets
//! the SIP runtime and the cluster link, once, at start.

use crate::cluster::control::ControlError;
use std::sync::{Arc, OnceLock};

use actix::prelude::*;

use super::outbox::Outbox;
use super::routes::Routes;
use super::sip::runtime::SipRuntime;
use crate::store::Store;
use crate::xml::Element;

/// What the hub needs to know about the node.
#[derive(Clone)]
pub struct HubSettings {
    /// The cluster domain.
    pub domain: String,
    /// `limits.max_roster_items`.
    pub max_roster_items: usize,
    /// `limits.max_offline_messages`.
    pub max_offline_messages: usize,
    /// Number of shards (≥ 1).
    pub shards: usize,
    /// Mailbox capacity of each shard.
    pub mailbox: usize,
    /// `[sip]`.
    pub sip: crate::config::SipConfig,
    /// `[limits]` (the SIP ones are read by the shards).
    pub limits: crate::config::Limits,
}

/// What the presence core needs from the cluster.
pub struct ClusterLink {
    /// Where users live.
    pub view: Arc<crate::cluster::view::ClusterView>,
    /// `cluster.secret`: signs node-to-node SIP requests.
    pub secret: String,
    /// The control plane, which writes user records through to the primary.
    pub write_through: Recipient<WriteThrough>,
}

/// Writes `user`'s record (account, roster, private storage) through to the primary before
/// the client is answered (DESIGN.md §3). On the primary itself this is already done.
#[derive(Message)]
#[rtype(result = "Result<(), ControlError>")]
pub struct WriteThrough {
    /// Localpart.
    pub user: String,
}

/// The answer a client waits for until its change is written through: the outbox, the
/// result to send once the primary has the change, and the error to send if that failed.
pub(crate) type Ack = (Outbox, Element, Element);

/// The node-wide state every shard reads.
pub(crate) struct Shared {
    pub(crate) settings: HubSettings,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) routes: Routes,
    /// The SIP transport and what all shards share for SIP; set once it is bound.
    pub(crate) sip: OnceLock<SipRuntime>,
    /// The cluster, when this node is part of one (DESIGN.md §3, §8).
    pub(crate) cluster: OnceLock<ClusterLink>,
}

impl Shared {
    /// The state of a node that has neither SIP transport nor cluster yet.
    pub(crate) fn new(settings: HubSettings, store: Arc<dyn Store>) -> Shared {
        let n = settings.shards.max(1);
        Shared {
            routes: Routes::new(n * 16),
            settings,
            store,
            sip: OnceLock::new(),
            cluster: OnceLock::new(),
        }
    }
}

/// Sends `user`'s record through to the primary when this node is a member of a cluster
/// (DESIGN.md §3), then `ack`: its first element once the primary has it, its second if that
/// failed. Off a cluster, or on the primary, `ack` is answered at once.
pub(crate) fn write_through(hub: &Shared, user: &str, ack: Option<Ack>) {
    let link = hub
        .cluster
        .get()
        .filter(|c| !c.view.is_primary() && c.view.joined());
    let Some(link) = link else {
        if let Some((outbox, ok, _)) = ack {
            outbox.send_element(&ok);
        }
        return;
    };
    let recipient = link.write_through.clone();
    let view = link.view.clone();
    let user = user.to_string();
    actix_rt::spawn(async move {
        let result = match recipient.send(WriteThrough { user: user.clone() }).await {
            Ok(r) => r,
            Err(_) => Err(ControlError::Stopped),
        };
        match &result {
            Ok(()) => {}
            // Moved away meanwhile: the record's hand-over carries the change (DESIGN.md §7).
            Err(e) if matches!(view.route(&user), crate::cluster::view::Route::There(_)) => {
                tracing::debug!(%user, error = %e, "not written through: the user moved away");
            }
            Err(e) => tracing::warn!(%user, error = %e, "write-through to the primary failed"),
        }
        if let Some((outbox, ok, err)) = ack {
            outbox.send_element(if result.is_ok() { &ok } else { &err });
        }
    });
}
