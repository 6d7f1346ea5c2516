//! The facts every control-plane flow reads and writes (DESIGN.md §3–§7): the settings,
//! the view the edges read, the user records, the control sessions, this node's load and,
//! on the primary, the allocator. The plane owns them and lends them to one part at a time,
//! with the time of the input being handled: no part reads the clock.

use std::sync::Arc;
use std::time::Instant;

use tracing::info;

use crate::cluster::ccmp::{Element, LoadLevel};
use crate::cluster::dialog::Dialog;
use crate::cluster::state::ClusterState;
use crate::cluster::view::{ClusterView, NodeAddrs};

use super::context::{Records, Settings};
use super::effect::{Effect, HubCall, Out, Outgoing};
use super::error::ControlError;
use super::monitor::LoadMonitor;
use super::primary::Primary;
use super::sessions::{self, Sessions};

/// The continuation of a BYE: nothing waits for its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByeSent;

/// See the module documentation.
pub struct Shared {
    /// This node's settings.
    pub settings: Settings,
    /// What the edges know of the cluster; the control plane writes it.
    pub view: Arc<ClusterView>,
    /// The user records.
    pub records: Arc<dyn Records>,
    /// The time of the input being handled.
    pub now: Instant,
    /// The control sessions.
    pub sessions: Sessions,
    /// This node's load.
    pub monitor: LoadMonitor,
    /// The primary's state (an empty allocator on a member).
    pub primary: Primary,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("me", &self.settings.me.id)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The facts of a node starting at `now`. Every configured node is known by address,
    /// so a member can send a user straight to its home (DESIGN.md §3); a member knows the
    /// primary (`--join`'s address, else its configured one).
    pub fn new(
        settings: Settings,
        view: Arc<ClusterView>,
        records: Arc<dyn Records>,
        now: Instant,
    ) -> Shared {
        let config = &settings.config;
        let nodes = config.nodes.iter().map(|n| (&n.id, n.xmpp, n.sip));
        let pool = config.pool.iter().map(|p| (&p.id, p.xmpp, p.sip));
        for (id, xmpp, sip) in nodes.chain(pool) {
            if *id != settings.me.id {
                view.set_node(NodeAddrs {
                    id: id.clone(),
                    xmpp,
                    sip,
                });
            }
        }
        if !view.is_primary() {
            let primary = config.primary_node();
            view.set_primary(NodeAddrs {
                id: primary.id.clone(),
                xmpp: primary.xmpp,
                sip: settings.join.unwrap_or_else(|| config.primary_sip()),
            });
        }
        let primary = Primary::new(config, now);
        Shared {
            settings,
            view,
            records,
            now,
            sessions: Sessions::new(),
            monitor: LoadMonitor::new(),
            primary,
        }
    }

    /// Whether this node runs the allocator.
    pub fn is_primary(&self) -> bool {
        self.view.is_primary()
    }

    /// What placing `user` adds to a server's load (DESIGN.md §4).
    pub fn cost(&self, user: &str) -> u64 {
        self.settings.cost(self.records.watched(user))
    }

    /// This node's `curr-load-level`.
    pub fn own_level(&self) -> LoadLevel {
        self.monitor.level(&self.settings.me.id)
    }

    /// The primary takes its own load into the allocator.
    pub fn report_own(&mut self) {
        let level = self.own_level();
        self.primary.report(&level, self.now);
    }

    /// Marks a node dead in the view and, once per transition, tells the presence core.
    pub fn mark_dead<P>(&self, id: &str, out: &mut Out<P>) {
        if self.view.set_dead(id, true) {
            out.hub(HubCall::NodeDown(id.to_string()));
        }
    }

    /// The primary reserves `user` on itself (a placement or a move here): the view
    /// serves it here, and its load counts at once, as a member's 200 reports it.
    pub fn reserve_here<P>(&mut self, user: &str, cost: u64, out: &mut Out<P>) {
        if self.view.reserve(user, self.now) {
            out.hub(HubCall::HomeChanged(user.to_string()));
        }
        let me = self.settings.me.id.clone();
        self.primary.alloc.confirm(user, &me, 0);
        self.monitor.reserve(Some(cost));
        self.report_own();
    }

    /// Records a placement in the durable directory, the view and the state document.
    pub fn placed<P>(&mut self, user: &str, server: &str, out: &mut Out<P>) {
        out.push(Effect::PersistHome {
            user: user.to_string(),
            server: server.to_string(),
        });
        // The primary's word is the newest: a user placed elsewhere is not reserved here.
        if server != self.settings.me.id {
            self.view.end_reservation(user);
        }
        if self.view.set_home(user, server) {
            out.hub(HubCall::HomeChanged(user.to_string()));
        }
        self.primary.changed(user);
    }

    /// A user left this node (moved away): its load stops counting now.
    pub fn forget_live(&mut self, user: &str) {
        if self.monitor.forget(&self.settings.config.cluster, user) && self.is_primary() {
            self.report_own();
        }
    }

    /// What a 200 to a join carries: who we are and, from the primary, the cluster figures.
    pub fn welcome_elements(&self) -> Vec<Element> {
        let mut v = vec![Element::SvrInfo(self.settings.svr_info())];
        if self.is_primary() {
            let c = self.settings.cluster();
            v.push(Element::MaxLoad(c.max_load));
            v.push(Element::MinLoad(c.min_load));
            v.push(Element::ActvSvrNums(
                self.primary.alloc.servers().count() as u32
            ));
            v.push(Element::SvrPool(
                self.primary.pool_uris(&self.settings.config),
            ));
            v.push(Element::PressvrLoad(self.primary.load_levels()));
        } else {
            v.push(Element::PressvrLoad(vec![self.own_level()]));
        }
        v
    }

    /// An INVITE to `target` with our `svr-info` and load (a join, DESIGN.md §5).
    pub fn invite(&self, target: std::net::SocketAddr) -> (Dialog, Outgoing) {
        let elements = self
            .welcome_elements()
            .into_iter()
            .filter(|e| matches!(e, Element::SvrInfo(_) | Element::PressvrLoad(_)))
            .collect();
        sessions::invite(&self.settings, target, elements)
    }

    /// An in-dialog INFO to `peer`.
    pub fn info(
        &mut self,
        peer: &str,
        extension: &str,
        elements: Vec<Element>,
    ) -> Result<Outgoing, ControlError> {
        self.sessions
            .info(&self.settings, peer, extension, elements)
    }

    /// The cluster state document as the primary knows it.
    pub fn snapshot(&self) -> ClusterState {
        self.primary.snapshot(&self.settings.config)
    }

    /// The session with `id` ended (BYE either way): on the primary the server leaves the
    /// allocator and is dead to the view (the member side is the member's part).
    pub fn session_down<P>(&mut self, id: &str, why: &str, out: &mut Out<P>) {
        self.sessions.remove(id);
        info!(peer = %id, reason = why, "control session ended");
        if self.is_primary() {
            self.mark_dead(id, out);
            self.primary.session_down(&self.settings.config, id);
        }
    }

    /// Ends `id`'s membership with BYE (primary).
    pub fn remove_node<P>(
        &mut self,
        id: &str,
        why: &str,
        out: &mut Out<P>,
    ) -> Result<String, String>
    where
        P: From<ByeSent>,
    {
        let Some(bye) = self.sessions.bye(&self.settings, id) else {
            return Err(format!("{id} is not a member"));
        };
        out.request(bye, ByeSent);
        self.session_down(id, why, out);
        Ok(format!("{id} removed"))
    }
}
