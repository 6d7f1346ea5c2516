//! The presence core of a node (DESIGN.md §2 `PresenceHub`, RFC 6121).
//!
//! Users are split over `runtime.presence_shards` shard actors, each on its own arbiter; a
//! shard owns its users' rosters, subscription states and resources, so everything about one
//! user happens on one thread without locks. Sessions talk to the shard of their user with
//! `send` (waits while the bounded mailbox is full, slowing that client only); fan-out reads
//! the shared [`routes::Routes`] table and writes straight into the recipients' outboxes.

pub mod backend;
pub mod handover;
pub mod moe;
pub mod moving;
pub mod placement;
pub mod relay;
pub mod routes;
pub mod shard;
pub mod sip;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use actix::prelude::*;
use bytes::Bytes;

use crate::store::Store;
use crate::xmpp::connection::Outbox;
use crate::xmpp::jid::Jid;
use crate::xmpp::stanza::StanzaError;
use crate::xmpp::subscription::SubKind;
use crate::xmpp::xml::Element;

pub use routes::{ResourceRoute, Routes};
pub use shard::PresenceShard;
pub use shard::{LiveUser, LoadQuery};

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

pub(crate) struct HubInner {
    pub(crate) settings: HubSettings,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) routes: Routes,
    shards: OnceLock<Vec<Addr<PresenceShard>>>,
    /// The SIP transport and what all shards share for SIP; set once it is bound.
    pub(crate) sip: OnceLock<sip::SipRuntime>,
    /// The cluster, when this node is part of one (DESIGN.md §3, §8).
    pub(crate) cluster: OnceLock<ClusterLink>,
}

impl HubInner {
    pub(crate) fn shard(&self, user: &str) -> &Addr<PresenceShard> {
        let shards = self.shards.get().expect("hub shards are set before use");
        &shards[self.shard_index(user)]
    }

    /// The index of the shard that owns `user`.
    pub(crate) fn shard_index(&self, user: &str) -> usize {
        let mut h = DefaultHasher::new();
        user.hash(&mut h);
        (h.finish() % self.settings.shards.max(1) as u64) as usize
    }

    /// The shard with index `i`, if it exists.
    pub(crate) fn shard_at(&self, i: usize) -> Option<&Addr<PresenceShard>> {
        self.shards.get().and_then(|s| s.get(i))
    }

    /// Every shard.
    pub(crate) fn shards(&self) -> &[Addr<PresenceShard>] {
        self.shards.get().map(Vec::as_slice).unwrap_or(&[])
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
        let inner = Arc::new(HubInner {
            routes: Routes::new(n * 16),
            settings,
            store,
            shards: OnceLock::new(),
            sip: OnceLock::new(),
            cluster: OnceLock::new(),
        });
        let arbiters: Vec<Arbiter> = (0..n).map(|_| Arbiter::new()).collect();
        let shards = arbiters
            .iter()
            .enumerate()
            .map(|(i, arbiter)| {
                let inner = inner.clone();
                PresenceShard::start_in_arbiter(&arbiter.handle(), move |ctx| {
                    PresenceShard::new(i, inner, ctx)
                })
            })
            .collect();
        let _ = inner.shards.set(shards);
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
        if self.inner.shards.get().is_some() {
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
}

impl Hub {
    /// `user` was moved to `to` (DESIGN.md §7; the directory already says so): its XMPP
    /// sessions here get `see-other-host` naming `to`, the SIP subscriptions it holds as
    /// watcher and the back-end subscriptions other nodes hold to it end with
    /// `terminated;reason=deactivated` (they subscribe again at once, at the new home), its
    /// publications and registrations here are dropped, and this node's own watchers of the
    /// user start watching it at its new home.
    pub fn evict(&self, user: &str, to: crate::cluster::view::NodeAddrs) {
        if self.inner.shards.get().is_none() {
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
}

impl Hub {
    /// `user` is moving here from another node (DESIGN.md §7), and `base` is the record this
    /// node took for it: the old home's hand-over is merged against it, and subscription
    /// stanzas for the user wait for that hand-over (see [`handover`]).
    pub fn arriving(&self, user: &str, base: crate::cluster::record::UserRecord) {
        if self.inner.shards.get().is_some() {
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

/// See [`Hub::arriving`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Arriving {
    /// Localpart.
    pub user: String,
    /// The record as this node took it.
    pub base: crate::cluster::record::UserRecord,
}

/// See [`Hub::evict`]: to the user's shard.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Evict {
    /// Localpart.
    pub user: String,
    /// The new home.
    pub to: crate::cluster::view::NodeAddrs,
}

/// See [`Hub::evict`]: to every shard, whose online users may watch the user.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MovedAway {
    /// Localpart.
    pub user: String,
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
#[rtype(result = "Result<(), String>")]
pub struct WriteThrough {
    /// Localpart.
    pub user: String,
}

/// See [`Hub::home_changed`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct HomeChanged {
    /// Localpart.
    pub user: String,
}

/// See [`Hub::node_down`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct NodeDown {
    /// Node id.
    pub node: String,
}

/// Binds a resource for `user` (RFC 6120 §7); answers the resource actually bound.
/// A resource already bound by another session is taken over: newest wins, the old stream
/// gets `conflict` (RFC 6120 §7.7.2.2).
#[derive(Message)]
#[rtype(result = "Result<String, StanzaError>")]
pub struct Bind {
    /// Localpart of the authenticated user.
    pub user: String,
    /// Requested resource; `None` = server-generated.
    pub resource: Option<String>,
    /// Id of the binding session.
    pub session_id: u64,
    /// The session's outbox.
    pub outbox: Outbox,
}

/// Unbinds a resource when its session ends; goes unavailable first if it was available.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unbind {
    /// Localpart.
    pub user: String,
    /// Resourcepart.
    pub resource: String,
    /// Only the session that bound the resource may unbind it.
    pub session_id: u64,
}

/// A `<presence/>` sent by a bound resource, `from` already stamped (RFC 6121 §4, §3).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PresenceFromClient {
    /// The sender's full JID.
    pub from: Jid,
    /// The stanza.
    pub stanza: Element,
}

/// A roster get/set from a bound resource (RFC 6121 §2); the answer goes to `outbox`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RosterIq {
    /// The sender's full JID.
    pub from: Jid,
    /// The iq.
    pub iq: Element,
    /// Where the result goes.
    pub outbox: Outbox,
}

/// A `<message/>` or `<iq/>` for a local user, `from` stamped (RFC 6121 §8.5).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Inbound {
    /// The addressee (local domain, with a localpart).
    pub to: Jid,
    /// The stanza.
    pub stanza: Element,
}

/// A subscription stanza from `from` (bare) arriving at the contact `to` (RFC 6121 §3, A.3).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscriptionIn {
    /// Localpart of the addressee.
    pub to: String,
    /// Bare JID of the sender.
    pub from: Jid,
    /// Which subscription stanza.
    pub kind: SubKind,
    /// The stanza, `from` bare, to be delivered if the state machine says so.
    pub stanza: Element,
    /// Presence of the sender's resources to deliver right after `stanza`: current presence
    /// after an approval (RFC 6121 §3.1.5), unavailable after a cancellation (§3.2.2).
    /// Carried here so it cannot overtake the subscription stanza.
    pub then_presence: Vec<Bytes>,
}

/// The account was deleted: close its sessions and drop its state (XEP-0077 §3.2).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AccountRemoved {
    /// Localpart.
    pub user: String,
}

/// Sends `user`'s record through to the primary when this node is a member of a cluster
/// (DESIGN.md §3), then `ack`: its first element once the primary has it, its second if that
/// failed. Off a cluster, or on the primary, `ack` is answered at once.
pub(crate) fn write_through(hub: &HubInner, user: &str, ack: Option<(Outbox, Element, Element)>) {
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
            Err(e) => Err(e.to_string()),
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

/// Sends to a shard without waiting and without loss: `try_send` into the bounded mailbox,
/// and only when it is full a task that waits for room.
pub(crate) fn post<M>(addr: &Addr<PresenceShard>, msg: M)
where
    M: Message<Result = ()> + Send + 'static,
    PresenceShard: Handler<M>,
{
    if let Err(SendError::Full(msg)) = addr.try_send(msg) {
        let addr = addr.clone();
        actix_rt::spawn(async move {
            let _ = addr.send(msg).await;
        });
    }
}
