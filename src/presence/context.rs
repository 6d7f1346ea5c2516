//! The narrow context the parts of a shard work in, and the vocabulary of the effects they
//! share.
//!
//! A part (the RFC 6121 roster core, the SIP user-agent core, the back-end subscriptions,
//! the hand-overs, MOE-MP) reads the node through a [`Ctx`]: its settings, the store, the
//! routing table, where users live, the node's SIP address and the time (`now` is passed
//! in, so timers run on a virtual clock in tests). What a part does to the outside it
//! returns as effects, which the shard shell performs; the requests it wants sent over SIP
//! are [`Outgoing`] (the shell starts their client transaction, RFC 3261 §17.1) and its
//! answers to requests it was handed are [`Reply`]s (sent through their server
//! transaction, §17.2).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use tracing::warn;

use super::routes::Routes;
use super::shared::{HubSettings, Shared};
use super::sip::runtime::SipShared;
use crate::cluster::dialog::CLUSTER_USER;
use crate::cluster::view::{ClusterView, NodeAddrs, Route};
use crate::sip::message::{self, Method, Request, Uri};
use crate::sip::transport::Peer;
use crate::store::{Records, Store};
use crate::xml::Element;
use crate::xmpp::jid::{normalize_local, Jid};

/// What a part of a shard may read of the node around it.
pub(crate) struct Ctx<'a> {
    /// The shard's index (logs, branch names, push ids).
    pub(crate) index: usize,
    /// The node's settings.
    pub(crate) settings: &'a HubSettings,
    /// The store.
    pub(crate) store: &'a dyn Store,
    /// The routing table (read by all shards, written by the owner of each user).
    pub(crate) routes: &'a Routes,
    /// The cluster, when this node is part of one.
    pub(crate) cluster: Option<Cluster<'a>>,
    /// The shared SIP state, once the transport is bound.
    pub(crate) sip: Option<&'a SipShared>,
    /// The time of the event being handled.
    pub(crate) now: Instant,
}

/// What the parts read of the cluster (DESIGN.md §3, §5).
#[derive(Clone, Copy)]
pub(crate) struct Cluster<'a> {
    /// Where users live.
    pub(crate) view: &'a ClusterView,
    /// `cluster.secret`: signs node-to-node requests.
    pub(crate) secret: &'a str,
}

impl<'a> Ctx<'a> {
    /// The context of shard `index` of the node `shared`, at `now`.
    pub(crate) fn of(shared: &'a Shared, index: usize, now: Instant) -> Ctx<'a> {
        Ctx {
            index,
            settings: &shared.settings,
            store: &*shared.store,
            routes: &shared.routes,
            cluster: shared.cluster.get().map(|c| Cluster {
                view: &c.view,
                secret: &c.secret,
            }),
            sip: shared.sip.get().map(|r| &r.shared),
            now,
        }
    }

    /// The cluster domain.
    pub(crate) fn domain(&self) -> &'a str {
        &self.settings.domain
    }

    /// `user@domain`.
    pub(crate) fn bare(&self, user: &str) -> Jid {
        Jid::bare(user, self.domain())
    }

    /// The node that handles `user`'s stanzas when it is not this one.
    pub(crate) fn remote_home(&self, user: &str) -> Option<NodeAddrs> {
        match self.cluster?.view.route(user) {
            Route::Here => None,
            Route::There(addrs) => Some(addrs),
        }
    }

    /// Whether `user` is an account: homed elsewhere (its home, or the primary, answers for
    /// it), online here, or in the store. (A user with roster state in a shard always has a
    /// route in the table.)
    pub(crate) fn user_exists(&self, user: &str) -> bool {
        if self.remote_home(user).is_some() {
            return true; // its home (or the primary) knows, and answers for it
        }
        if !self.routes.get(user).is_empty() {
            return true;
        }
        match self.store.has_account(user) {
            Ok(known) => known,
            Err(e) => {
                warn!(shard = self.index, %user, error = %e, "store read failed");
                false
            }
        }
    }

    /// The cluster secret, when this node is part of a cluster.
    pub(crate) fn secret(&self) -> Option<&'a str> {
        self.cluster.map(|c| c.secret)
    }

    /// `sip:cluster@<domain>`: who node-to-node requests are from.
    pub(crate) fn cluster_from(&self) -> String {
        format!("sip:{CLUSTER_USER}@{}", self.domain())
    }

    /// This node's SIP address, once the transport is bound.
    pub(crate) fn sip_addr(&self) -> Option<SocketAddr> {
        self.sip.map(|s| s.local_addr)
    }

    /// `sip:user@host:port;transport=...` of this node, for Contact headers.
    pub(crate) fn contact_uri(&self, user: &str, peer: Peer) -> String {
        let host = host_port(self.sip_addr().unwrap_or_else(|| peer.addr()));
        format!(
            "sip:{user}@{host};transport={}",
            peer.transport().to_ascii_lowercase()
        )
    }

    /// The Via of a request we send to `peer` (RFC 3261 §8.1.1.7).
    pub(crate) fn via(&self, peer: Peer, branch: &str) -> String {
        let host = host_port(self.sip_addr().unwrap_or_else(|| peer.addr()));
        format!("SIP/2.0/{} {host};branch={branch};rport", peer.transport())
    }

    /// The index of the shard that owns `user`.
    pub(crate) fn shard_of(&self, user: &str) -> usize {
        shard_index(user, self.settings.shards)
    }

    /// Seconds since the Unix epoch (wall clock: digest nonces, stored expiries).
    pub(crate) fn unix_now(&self) -> u64 {
        unix_now()
    }
}

/// The user a SIP URI names on this domain (local part, normalised), if any.
pub(crate) fn local_user(uri: &str) -> Option<String> {
    let uri = Uri::parse(uri).ok()?;
    normalize_local(uri.user.as_deref()?).ok()
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The index of the shard (of `shards`) that owns `user`.
pub(crate) fn shard_index(user: &str, shards: usize) -> usize {
    let mut h = DefaultHasher::new();
    user.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        SocketAddr::V4(a) => a.to_string(),
    }
}

/// A request a part wants sent in a new non-INVITE client transaction (RFC 3261 §17.1.2);
/// the SIP part adds Via (with a branch naming this shard) and Max-Forwards.
pub(crate) struct Outgoing {
    /// Where it goes.
    pub(crate) peer: Peer,
    /// Its method.
    pub(crate) method: Method,
    /// Its Request-URI.
    pub(crate) target: String,
    /// The headers after Via and Max-Forwards, in order.
    pub(crate) headers: Vec<(&'static str, String)>,
    /// Content-Type and body.
    pub(crate) body: Option<(&'static str, Bytes)>,
    /// Who is told its outcome.
    pub(crate) requester: Requester,
}

/// Who sent a request, so its outcome reaches the right part.
#[derive(Debug)]
pub(crate) enum Requester {
    /// A stanza relayed to another node (DESIGN.md §8), kept when its failure must be
    /// bounced to its sender; also publications and records handed over (`None`).
    Relay(Option<Box<Element>>),
    /// A back-end SUBSCRIBE (or refresh, or unsubscribe) with this Call-ID.
    Backend(String),
}

/// A response to a request a part was handed, sent through its server transaction.
pub(crate) struct Reply {
    /// Status code.
    pub(crate) status: u16,
    /// The response.
    pub(crate) bytes: Bytes,
}

/// A response built for `req` with a To tag (RFC 3261 §8.2.6.2).
pub(crate) fn reply(req: &Request, status: u16, reason: &str, headers: &[(&str, String)]) -> Reply {
    let mut b = message::reply(req, status, reason);
    if req.base.to.tag().is_none() {
        b = b.to_tag(&message::new_tag());
    }
    for (name, value) in headers {
        b = b.header(name, value.clone());
    }
    Reply {
        status,
        bytes: b.build(),
    }
}
