//! The node's presence hub (DESIGN.md §2 `PresenceHub`, RFC 6121): a cheap handle to the
//! shards and what they share.
//!
//! Users are split over `runtime.presence_shards` shard actors, each on its own arbiter; a
//! shard owns its users' rosters, subscription states and resources, so everything about one
//! user happens on one thread without locks. Sessions talk to the shard of their user with
//! `send` (waits while the bounded mailbox is full, slowing that client only); fan-out reads
//! the shared [`Routes`] table and writes straight into the recipients' outboxes.

use std::ops::Deref;
use std::sync::Arc;

use actix::prelude::*;

use super::backend::{HomeChanged, NodeDown};
use super::handover::Arriving;
use super::routes::Routes;
use super::shard::moves::{Evict, MovedAway};
use super::shard::{post, PresenceShard, Shards};
use super::shared::{ClusterLink, HubSettings, Shared};
use crate::store::Store;

/// What the hub handle holds: the shared state and the shards.
pub(crate) struct HubInner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) shards: Arc<Shards>,
}

impl Deref for HubInner {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl HubInner {
    /// The shard that owns `user`.
    pub(crate) fn shard(&self, user: &str) -> &Addr<PresenceShard> {
        self.shards.of(user)
    }

    /// Every shard.
    pub(crate) fn shards(&self) -> &[Addr<PresenceShard>] {
        self.shards.all()
    }
}

/// Cheap handle to the node's presence hub.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

impl Hub {
    /// Starts the shards, each in its own arbiter (thread); the caller stops the arbiters.
    pub fn start(settings: HubSettings, store: Arc<dyn Store>) -> (Hub, Vec<Arbiter>) {
        let n = settings.shards.max(1);
        let shared = Arc::new(Shared::new(settings, store));
        let shards = Arc::new(Shards::new(n));
        let arbiters: Vec<Arbiter> = (0..n).map(|_| Arbiter::new()).collect();
        let addrs = arbiters
            .iter()
            .enumerate()
            .map(|(i, arbiter)| {
                let (shared, shards) = (shared.clone(), shards.clone());
                PresenceShard::start_in_arbiter(&arbiter.handle(), move |ctx| {
                    PresenceShard::new(i, shared, shards, ctx)
                })
            })
            .collect();
        shards.set(addrs);
        let inner = Arc::new(HubInner { shared, shards });
        (Hub { inner }, arbiters)
    }

    /// The shard that owns `user` (a localpart).
    pub fn shard(&self, user: &str) -> &Addr<PresenceShard> {
        self.inner.shard(user)
    }

    /// The routing table.
    pub fn routes(&self) -> &Routes {
        &self.inner.routes
    }

    /// The cluster domain.
    pub fn domain(&self) -> &str {
        &self.inner.settings.domain
    }

    /// Makes the presence core cluster-aware: stanzas and presence for users homed on other
    /// nodes travel over SIP, roster changes are written through. Set once, at start.
    pub fn link_cluster(&self, link: ClusterLink) {
        let _ = self.inner.cluster.set(link);
    }

    /// The directory changed `user`'s home (moved, placed, or forgotten): the back-end
    /// subscriptions of this node to that user follow it (DESIGN.md §7, §8).
    pub fn home_changed(&self, user: &str) {
        if self.inner.shards.started() {
            post(
                self.inner.shard(user),
                HomeChanged {
                    user: user.to_string(),
                },
            );
        }
    }

    /// Node `node` is dead or left: the presence of its users as seen here goes unavailable
    /// and the back-end subscriptions to it are made again where the directory now points.
    pub fn node_down(&self, node: &str) {
        for shard in self.inner.shards() {
            post(
                shard,
                NodeDown {
                    node: node.to_string(),
                },
            );
        }
    }

    /// `user` was moved to `to` (DESIGN.md §7; the directory already says so): its XMPP
    /// sessions here get `see-other-host` naming `to`, the SIP subscriptions it holds as
    /// watcher and the back-end subscriptions other nodes hold to it end with
    /// `terminated;reason=deactivated` (they subscribe again at once, at the new home), its
    /// publications and registrations here are dropped, and this node's own watchers of the
    /// user start watching it at its new home.
    pub fn evict(&self, user: &str, to: crate::cluster::view::NodeAddrs) {
        if !self.inner.shards.started() {
            return;
        }
        post(
            self.inner.shard(user),
            Evict {
                user: user.to_string(),
                to,
            },
        );
        for shard in self.inner.shards() {
            post(
                shard,
                MovedAway {
                    user: user.to_string(),
                },
            );
        }
    }

    /// `user` is moving here from another node (DESIGN.md §7), and `base` is the record this
    /// node took for it: the old home's hand-over is merged against it, and subscription
    /// stanzas for the user wait for that hand-over (see [`super::handover`]).
    pub fn arriving(&self, user: &str, base: crate::cluster::record::UserRecord) {
        if self.inner.shards.started() {
            post(
                self.inner.shard(user),
                Arriving {
                    user: user.to_string(),
                    base,
                },
            );
        }
    }
}
