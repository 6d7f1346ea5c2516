//! A fake node for the parts' unit tests: settings, an in-memory store, a routing table, a
//! cluster directory, the shared SIP state (no socket) and a virtual clock. A part is driven
//! by calling it with [`World::cx`] and reading the effects it returns.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::context::{Cluster, Ctx};
use super::outbox::Outbox;
use super::routes::{ResourceRoute, Routes, Sink};
use super::shared::HubSettings;
use super::sip::runtime::SipShared;
use crate::cluster::view::{ClusterView, NodeAddrs};
use crate::sip::message::{self, Limits, Message, Request, Response};
use crate::store::MemoryStore;

/// The cluster domain of the tests.
pub(crate) const DOMAIN: &str = "example.com";

/// The cluster secret of the tests.
pub(crate) const SECRET: &str = "test-secret";

/// The fake node.
pub(crate) struct World {
    pub(crate) settings: HubSettings,
    pub(crate) store: MemoryStore,
    pub(crate) routes: Routes,
    pub(crate) view: Option<ClusterView>,
    pub(crate) sip: Option<SipShared>,
    /// The virtual clock.
    pub(crate) now: Instant,
}

impl World {
    /// A single node with SIP bound at 192.0.2.1:5060, `sip_auth` off (the From user is
    /// trusted) and `presence_policy = "domain"`.
    pub(crate) fn new() -> World {
        let sip = crate::config::SipConfig {
            sip_auth: false,
            presence_policy: crate::config::PresencePolicy::Domain,
            ..Default::default()
        };
        let settings = HubSettings {
            domain: DOMAIN.into(),
            max_roster_items: 100,
            max_offline_messages: 10,
            shards: 1,
            mailbox: 16,
            sip,
            limits: crate::config::Limits::default(),
        };
        let local: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        World {
            sip: Some(SipShared::new(local, &settings.sip)),
            settings,
            store: MemoryStore::new(),
            routes: Routes::new(4),
            view: None,
            now: Instant::now(),
        }
    }

    /// [`Self::new`] as node `n1` of a cluster whose nodes `n2` and `n3` are known.
    pub(crate) fn clustered() -> World {
        let mut w = World::new();
        let view = ClusterView::new("n1", false, true);
        for n in ["n2", "n3"] {
            view.set_node(node(n));
        }
        w.view = Some(view);
        w
    }

    /// The context of shard 0 at the virtual time.
    pub(crate) fn cx(&self) -> Ctx<'_> {
        Ctx {
            index: 0,
            settings: &self.settings,
            store: &self.store,
            routes: &self.routes,
            cluster: self.view.as_ref().map(|view| Cluster {
                view,
                secret: SECRET,
            }),
            sip: self.sip.as_ref(),
            now: self.now,
        }
    }

    /// Moves the virtual clock on.
    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Creates the account `user`.
    pub(crate) fn account(&self, user: &str) {
        let policy = crate::accounts::CredentialPolicy {
            scram_iterations: 4096,
            realm: DOMAIN.into(),
        };
        crate::accounts::add(&self.store, user, "secret", &policy).unwrap();
    }

    /// Binds an XMPP resource of `user` with `presence` (or none); its outbox.
    pub(crate) fn online(&self, user: &str, resource: &str, presence: Option<&str>) -> Outbox {
        let outbox = Outbox::new(1 << 20);
        let mut routes = self.routes.get(user).as_ref().clone();
        routes.push(ResourceRoute {
            resource: resource.into(),
            session_id: 1,
            sink: Sink::Xmpp(outbox.clone()),
            presence: presence.map(|p| Bytes::from(p.to_string())),
            priority: 0,
            interested: false,
        });
        self.routes.set(user, routes);
        outbox
    }
}

/// Node `id` of the test cluster (`n<k>`: SIP at 192.0.2.<k>:5060).
pub(crate) fn node(id: &str) -> NodeAddrs {
    let k: u8 = id[1..].parse().unwrap();
    NodeAddrs {
        id: id.into(),
        xmpp: SocketAddr::from(([192, 0, 2, k], 5222)),
        sip: SocketAddr::from(([192, 0, 2, k], 5060)),
    }
}

/// Parses SIP bytes.
pub(crate) fn sip(bytes: &[u8]) -> Message {
    let limits = Limits {
        max_message_bytes: 1 << 20,
    };
    message::parse(bytes, &limits).expect("a SIP message")
}

/// Parses a SIP request.
pub(crate) fn request(bytes: &[u8]) -> Request {
    match sip(bytes) {
        Message::Request(r) => r,
        Message::Response(r) => panic!("a response: {}", r.status),
    }
}

/// Parses a SIP response.
pub(crate) fn response(bytes: &[u8]) -> Response {
    match sip(bytes) {
        Message::Response(r) => r,
        Message::Request(r) => panic!("a request: {}", r.method()),
    }
}

/// The response `status` a user agent sends to `req`, its To tagged `tag`.
pub(crate) fn answer(req: &Request, status: u16, tag: &str, headers: &[(&str, &str)]) -> Response {
    let mut b = message::reply(req, status, "Whatever");
    if req.base.to.tag().is_none() {
        b = b.to_tag(tag);
    }
    for (name, value) in headers {
        b = b.header(name, value.to_string());
    }
    response(&b.build())
}

/// The request an [`Outgoing`](super::context::Outgoing) becomes, as the SIP part writes it
/// (with a fixed branch).
pub(crate) fn outgoing_request(out: &super::context::Outgoing) -> Request {
    let mut b = message::RequestBuilder::new(out.method.clone(), &out.target)
        .header("Via", "SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK-rdv0-test")
        .header("Max-Forwards", "70");
    for (name, value) in &out.headers {
        b = b.header(name, value.clone());
    }
    if let Some((ct, body)) = &out.body {
        b = b.body(ct, body.clone());
    }
    request(&b.build())
}
