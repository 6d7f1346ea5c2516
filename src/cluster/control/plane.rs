//! The control plane of one node, composed of its parts (DESIGN.md §2, §4–§7): it routes
//! each input — a control-plane SIP request or response, a timer, a load measurement, a
//! placement or admin request — to the part it concerns, carries each client transaction's
//! typed continuation ([`Purpose`]) back to the part that sent it, and returns the
//! [`Effect`]s for the actor to perform. Sans-IO: the time comes with every input.
//!
//! Roles:
//! - **primary**: accepts joins (INVITE), keeps the `svr-loadlevel-list` from `pressvr-load`
//!   reports and the live users from `pres-sys-users` ([`Primary`]), places users
//!   ([`Placement`]), moves them ([`Moves`]) and serves the cluster state document to
//!   members that SUBSCRIBE to `sip:cluster@primary` ([`Publisher`]).
//! - **member** (worker or joined pool server): joins (or is INVITEd), reports its load
//!   every `report_interval_ms`, reserves the users the primary sends it, keeps a replica of
//!   the directory from the state document and writes its users' records through to the
//!   primary ([`Member`]).
//!
//! The presence core hears of every real change of the directory and of every node that
//! dies or leaves, on both roles ([`HubCall`]).
//!
//! [`Primary`]: super::primary::Primary

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info, warn};

use crate::cluster::allocator::Health;
use crate::cluster::ccmp::{self, CcmpResponse, LoadLevel, Protocol};
use crate::cluster::dialog::{self, contact_addr, Dialog};
use crate::cluster::state::ClusterState;
use crate::cluster::view::{ClusterView, NodeAddrs};
use crate::sip::message::{self, Method, Request, Response};

use super::client::{ccmp_body, CcmpClient, Done};
use super::context::{Records, Settings};
use super::effect::{Answer, Effect, Out, Step, Ticket, Timer};
use super::error::ControlError;
use super::member::{self, Member};
use super::monitor::Live;
use super::moves::{self, DrainError, Moves, REBALANCE_ATTEMPTS};
use super::placement::{self, Placement, Then, Waiter};
use super::publisher::{NotifySent, Publisher};
use super::sessions::{self, Extra, ALLOW};
use super::shared::{ByeSent, Shared};

/// What a client transaction of the plane continues with: the part that sent it and its
/// own continuation.
#[derive(Debug)]
pub enum Purpose {
    /// Placement (reservation, pool probe, pool INVITE).
    Place(placement::Pending),
    /// A move (reservation at the target, eviction at the old home).
    Move(moves::Pending),
    /// The member side (join, state subscription, report, write-through).
    Member(member::Pending),
    /// A NOTIFY of the cluster state.
    Notify(NotifySent),
    /// An operator's `POST /api/nodes` of a `[[node]]` entry: its INVITE.
    AddNode {
        /// The dialog it starts.
        dialog: Dialog,
        /// The operator's request.
        ticket: Ticket,
        /// The node's SIP address.
        target: SocketAddr,
    },
    /// A BYE.
    Bye(ByeSent),
}

impl From<placement::Pending> for Purpose {
    fn from(p: placement::Pending) -> Self {
        Purpose::Place(p)
    }
}

impl From<moves::Pending> for Purpose {
    fn from(p: moves::Pending) -> Self {
        Purpose::Move(p)
    }
}

impl From<member::Pending> for Purpose {
    fn from(p: member::Pending) -> Self {
        Purpose::Member(p)
    }
}

impl From<NotifySent> for Purpose {
    fn from(p: NotifySent) -> Self {
        Purpose::Notify(p)
    }
}

impl From<ByeSent> for Purpose {
    fn from(p: ByeSent) -> Self {
        Purpose::Bye(p)
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Plane {
    sh: Shared,
    client: CcmpClient<Purpose>,
    member: Member,
    publisher: Publisher,
    placement: Placement,
    moves: Moves,
}

impl Plane {
    /// The control plane of a node starting at `now`.
    pub fn new(
        settings: Settings,
        view: Arc<ClusterView>,
        records: Arc<dyn Records>,
        now: Instant,
    ) -> Plane {
        let client = CcmpClient::new(settings.secret());
        Plane {
            sh: Shared::new(settings, view, records, now),
            client,
            member: Member::new(),
            publisher: Publisher::new(),
            placement: Placement::new(),
            moves: Moves::new(),
        }
    }

    /// The facts the parts share (tests and the admin figures read them).
    pub fn shared(&self) -> &Shared {
        &self.sh
    }

    /// Client transactions in flight.
    pub fn requests_in_flight(&self) -> usize {
        self.client.len()
    }

    /// Cluster state watchers (primary).
    pub fn watchers(&self) -> usize {
        self.publisher.len()
    }

    /// Whether `id` is being drained (primary).
    pub fn is_draining(&self, id: &str) -> bool {
        self.moves.is_draining(id)
    }

    /// The node starts: the primary loads the durable `directory` (user, home); a member
    /// listed in `[[node]]` (or started with `--join`) joins.
    pub fn start(&mut self, directory: Vec<(String, String)>, now: Instant) -> Vec<Effect> {
        self.sh.now = now;
        let mut out = Out::new();
        if self.sh.is_primary() {
            let me = self.sh.settings.me.id.clone();
            self.sh
                .primary
                .start(&me, directory, &self.sh.view, &mut out);
        } else if self.sh.settings.join.is_some()
            || self
                .sh
                .settings
                .config
                .nodes
                .iter()
                .any(|n| n.id == self.sh.settings.me.id)
        {
            self.member.join(&self.sh, &mut out);
        }
        self.finish(Vec::new(), out)
    }

    // ---- inputs ----------------------------------------------------------------------

    /// A control-plane request (`sip:cluster@…`); `reliable` when it came over TCP.
    pub fn on_request(&mut self, req: Request, reliable: bool, now: Instant) -> Vec<Effect> {
        self.sh.now = now;
        let mut out = Out::new();
        self.request(&req, reliable, &mut out);
        self.finish(Vec::new(), out)
    }

    /// A response to one of our control-plane requests.
    pub fn on_response(&mut self, resp: Response, now: Instant) -> Vec<Effect> {
        self.sh.now = now;
        if resp.status < 200 {
            return Vec::new();
        }
        let status = resp.status;
        let mut effects = Vec::new();
        let mut out = Out::new();
        match self.client.on_response(resp, &mut effects) {
            Some(done) => self.on_done(done, &mut out),
            None => debug!(status, "control response to no pending request"),
        }
        self.finish(effects, out)
    }

    /// A timer armed by an earlier effect fired.
    pub fn on_timer(&mut self, timer: Timer, now: Instant) -> Vec<Effect> {
        self.sh.now = now;
        let mut effects = Vec::new();
        let mut out = Out::new();
        let sh = &mut self.sh;
        match timer {
            Timer::Client(id) => {
                if let Some(done) = self.client.on_timer(id, &mut effects) {
                    self.on_done(done, &mut out);
                }
            }
            Timer::JoinRetry => self.member.join(sh, &mut out),
            Timer::Subscribe => {
                if sh.view.joined() {
                    self.member.subscribe(sh, &mut out);
                }
            }
            Timer::NotifyRetry(call_id) => self.publisher.on_retry(sh, &call_id, &mut out),
            Timer::PoolReset => self.placement.on_pool_reset(sh),
            Timer::SpawnPoll => self.placement.on_spawn_poll(sh, &mut out),
            Timer::Rebalance { to, attempts } => {
                self.moves
                    .rebalance(sh, &mut self.placement, &to, attempts, &mut out)
            }
            Timer::DrainRetry(id) => {
                self.moves
                    .on_drain_retry(sh, &mut self.placement, &id, &mut out)
            }
        }
        self.finish(effects, out)
    }

    /// A measurement of the presence core: the users live here now (DESIGN.md §4). The
    /// primary takes its own load, ticks the servers' liveness, publishes the round's
    /// changes and considers scaling in; a member reports to the primary.
    pub fn on_measured(&mut self, live: HashMap<String, Live>, now: Instant) -> Vec<Effect> {
        self.sh.now = now;
        let mut out = Out::new();
        let sh = &mut self.sh;
        let reserved = sh.view.settle_reservations(now, |u| live.contains_key(u)) as u64;
        sh.monitor
            .measured(&sh.settings.config.cluster, live, reserved);
        if sh.is_primary() {
            sh.report_own();
            let me = sh.settings.me.id.clone();
            let users = sh.monitor.sys_users();
            sh.primary.set_own_users(&me, users);
            for (id, health) in sh.primary.tick(now) {
                match health {
                    Health::Dead => {
                        warn!(node = %id, "node dead: no load report within dead_after_ms");
                        sh.mark_dead(&id, &mut out);
                        // Out of the published server list: members learn it (§6).
                        sh.primary.bump();
                    }
                    Health::Suspect => warn!(node = %id, "node suspect: three reports missed"),
                    Health::Active => info!(node = %id, "node active again"),
                }
            }
            self.publisher.flush(sh, &mut out);
            self.moves
                .consider_scale_in(sh, &mut self.placement, &mut out);
        } else if sh.view.joined() {
            self.member.report(sh, &mut out);
        }
        self.finish(Vec::new(), out)
    }

    /// The spawn command of pool entry `node` ran (`Ok`) or could not (the OS error).
    pub fn on_spawned(
        &mut self,
        node: &str,
        result: Result<(), String>,
        now: Instant,
    ) -> Vec<Effect> {
        self.sh.now = now;
        let mut out = Out::new();
        self.placement
            .on_spawned(&mut self.sh, node, result, &mut out);
        self.finish(Vec::new(), out)
    }

    /// Places `user` (primary): the answer comes as [`Answer::Placed`] for `ticket`.
    pub fn place(
        &mut self,
        user: &str,
        protocol: Protocol,
        ticket: Ticket,
        now: Instant,
    ) -> Vec<Effect> {
        self.sh.now = now;
        let mut out = Out::new();
        self.placement
            .start_job(&mut self.sh, user, Waiter { ticket, protocol }, &mut out);
        self.finish(Vec::new(), out)
    }

    /// Writes `user`'s record through to the primary (member): the answer comes as
    /// [`Answer::WriteThrough`] for `ticket`.
    pub fn write_through(&mut self, user: &str, ticket: Ticket, now: Instant) -> Vec<Effect> {
        self.sh.now = now;
        let mut out = Out::new();
        self.member
            .write_through(&mut self.sh, user, ticket, &mut out);
        self.finish(Vec::new(), out)
    }

    /// Takes a configured node into the cluster (`POST /api/nodes`, primary): a pool entry
    /// by acquisition, a `[[node]]` entry by INVITE; the answer comes as [`Answer::Admin`].
    pub fn add_node(&mut self, id: &str, ticket: Ticket, now: Instant) -> Vec<Effect> {
        self.sh.now = now;
        let mut out = Out::new();
        let sh = &mut self.sh;
        let config = sh.settings.config.clone();
        let refuse =
            |out: &mut Out<Purpose>, why: String| out.answer(ticket, Answer::Admin(Err(why)));
        if !sh.is_primary() {
            refuse(&mut out, "only the primary adds nodes".to_string());
        } else if sh.sessions.contains(id) {
            refuse(&mut out, format!("{id} is already a member"));
        } else if let Some(p) = config.pool.iter().find(|p| p.id == id) {
            self.placement
                .acquire(sh, vec![p.id.clone()], Then::Admin(ticket), &mut out);
        } else if let Some(n) = config.nodes.iter().find(|n| n.id == id) {
            let target = n.sip;
            let (dialog, invite) = sh.invite(target);
            out.request(
                invite,
                Purpose::AddNode {
                    dialog,
                    ticket,
                    target,
                },
            );
        } else {
            refuse(
                &mut out,
                format!("no [[node]] or [[pool]] entry has id \"{id}\""),
            );
        }
        self.finish(Vec::new(), out)
    }

    /// Ends a node's membership with BYE (`DELETE /api/nodes/<id>`, primary).
    pub fn remove_node(&mut self, id: &str, now: Instant) -> (Result<String, String>, Vec<Effect>) {
        self.sh.now = now;
        let mut out = Out::new();
        let result = if !self.sh.is_primary() {
            Err("only the primary removes nodes".to_string())
        } else {
            let r = self.sh.remove_node(id, "removed by the operator", &mut out);
            if r.is_ok() {
                self.moves.forget(id);
                self.member.session_down(&self.sh, id);
            }
            r
        };
        (result, self.finish(Vec::new(), out))
    }

    /// Empties a server and ends its membership (`POST /api/nodes/<id>/drain`, primary):
    /// how many users are being moved.
    pub fn drain(&mut self, id: &str, now: Instant) -> (Result<usize, DrainError>, Vec<Effect>) {
        self.sh.now = now;
        let mut out = Out::new();
        let result = self
            .moves
            .drain(&mut self.sh, &mut self.placement, id, &mut out);
        (result, self.finish(Vec::new(), out))
    }

    /// The cluster state document: the primary's, or a member's replica of it.
    pub fn state(&self) -> ClusterState {
        if self.sh.is_primary() {
            self.sh.snapshot()
        } else {
            self.member.state()
        }
    }

    /// This node's own figures (`GET /api/node`).
    pub fn node_figures(&self) -> serde_json::Value {
        let sh = &self.sh;
        let role = if sh.is_primary() {
            "primary"
        } else if sh.view.joined() {
            "member"
        } else {
            "idle"
        };
        serde_json::json!({
            "id": sh.settings.me.id,
            "role": role,
            "joined": sh.view.joined(),
            "xmpp": sh.settings.me.xmpp.to_string(),
            "sip": sh.settings.me.sip.to_string(),
            "load": sh.monitor.load(),
            "users": sh.monitor.users(),
            "resources": sh.monitor.resources(),
            "live_users": sh.monitor.live_users(),
            "primary": self.member.primary_id(),
            "max_load": sh.settings.cluster().max_load,
        })
    }

    // ---- requests --------------------------------------------------------------------

    fn respond(
        &self,
        req: &Request,
        status: u16,
        reason: &str,
        extra: Extra,
        out: &mut Out<Purpose>,
    ) {
        let bytes = sessions::respond(self.sh.settings.secret(), req, status, reason, extra);
        out.push(Effect::Respond(bytes));
    }

    fn refuse(&self, req: &Request, code: u16, why: &str, extension: &str, out: &mut Out<Purpose>) {
        let bytes = sessions::refuse(&self.sh.settings, req, code, why, extension);
        out.push(Effect::Respond(bytes));
    }

    fn request(&mut self, req: &Request, reliable: bool, out: &mut Out<Purpose>) {
        let method = req.method().clone();
        if method == Method::Options {
            let extra = Extra {
                headers: vec![
                    ("Allow", ALLOW.into()),
                    ("Accept", ccmp::CONTENT_TYPE.into()),
                    ("Recv-Info", ccmp::INFO_PACKAGE.into()),
                ],
                ..Default::default()
            };
            return self.respond(req, 200, "OK", extra, out);
        }
        if method == Method::Ack {
            return; // completes our 2xx (TCP: nothing to stop retransmitting)
        }
        if !reliable {
            return self.refuse(req, 403, "inter-node SIP runs over TCP", "", out);
        }
        if let Err(e) = sessions::verify(self.sh.settings.secret(), req) {
            return self.refuse(req, 403, &format!("bad cluster signature: {e}"), "", out);
        }
        match method {
            Method::Invite => self.on_invite(req, out),
            Method::Info => self.on_info(req, out),
            Method::Bye => self.on_bye(req, out),
            Method::Subscribe => self.publisher.on_subscribe(&self.sh, req, out),
            Method::Notify => self.member.on_notify(&self.sh, req, out),
            _ => {
                let extra = Extra {
                    headers: vec![("Allow", ALLOW.into())],
                    ..Default::default()
                };
                self.respond(req, 405, "Method Not Allowed", extra, out)
            }
        }
    }

    /// A join: a member INVITEs the primary, or the primary INVITEs a pool server.
    fn on_invite(&mut self, req: &Request, out: &mut Out<Purpose>) {
        let body = match sessions::ccmp_request(req) {
            Ok(b) => b,
            Err((code, why)) => return self.refuse(req, code, &why, "", out),
        };
        let ext = body.extension.as_str();
        let Some(addrs) = sessions::svr_addrs(&body.elements) else {
            return self.refuse(
                req,
                400,
                "svr-info with sip and xmpp addresses is required",
                ext,
                out,
            );
        };
        if ccmp::node_of(&body.conf_user_id) != Some(addrs.id.as_str()) {
            return self.refuse(
                req,
                400,
                "confUserID does not name the svr-info node",
                ext,
                out,
            );
        }
        if addrs.id == self.sh.settings.me.id {
            return self.refuse(req, 409, "that node id is mine", ext, out);
        }
        if !self.sh.is_primary() && addrs.id != self.sh.settings.primary_id() {
            return self.refuse(req, 403, "only the primary invites members", ext, out);
        }
        let target = req
            .header("Contact")
            .and_then(contact_addr)
            .unwrap_or(addrs.sip);
        let tag = message::new_tag();
        let dialog = Dialog::incoming(req, target, &tag);
        let load = sessions::load_of(&body.elements, &addrs.id);
        let settings = &self.sh.settings;
        let resp = CcmpResponse::ok(
            settings.conf_user(),
            body.extension.clone(),
            self.sh.welcome_elements(),
        )
        .to_xml();
        let extra = Extra {
            tag: Some(tag),
            headers: vec![(
                "Contact",
                format!("<{}>", dialog::cluster_uri(settings.local())),
            )],
            body: Some(resp),
            ..Default::default()
        };
        self.respond(req, 200, "OK", extra, out);
        self.session_up(addrs, dialog, load, out);
    }

    /// A control session is established with `addrs` (either direction).
    fn session_up(
        &mut self,
        addrs: NodeAddrs,
        dialog: Dialog,
        load: Option<LoadLevel>,
        out: &mut Out<Purpose>,
    ) {
        info!(peer = %addrs.id, sip = %addrs.sip, xmpp = %addrs.xmpp, "control session up");
        let sh = &mut self.sh;
        sh.view.set_node(addrs.clone());
        let id = addrs.id.clone();
        sh.sessions.insert(addrs, dialog);
        if sh.is_primary() {
            sh.primary.session_up(&id, load.as_ref(), sh.now);
            // Users queued for a server may fit now.
            self.placement.retry_waiting(sh, out);
        } else {
            self.member.session_up(sh, &id, out);
        }
    }

    fn on_info(&mut self, req: &Request, out: &mut Out<Purpose>) {
        let Some(peer_id) = self.sh.sessions.by_call_id(&req.base.call_id) else {
            return self.refuse(req, 481, "no control session", "", out);
        };
        let body = match sessions::ccmp_request(req) {
            Ok(b) => b,
            Err((code, why)) => return self.refuse(req, code, &why, "", out),
        };
        let sh = &mut self.sh;
        let result = if sh.is_primary() {
            sh.primary
                .on_info(&peer_id, &body, &sh.view, &*sh.records, sh.now)
        } else {
            self.member.on_info(sh, &body, out)
        };
        match result {
            Ok(elements) => {
                let resp = CcmpResponse::ok(self.sh.settings.conf_user(), body.extension, elements)
                    .to_xml();
                self.respond(req, 200, "OK", Extra::body(resp), out);
            }
            Err((code, why)) => self.refuse(req, code, &why, &body.extension, out),
        }
    }

    fn on_bye(&mut self, req: &Request, out: &mut Out<Purpose>) {
        let Some(id) = self.sh.sessions.by_call_id(&req.base.call_id) else {
            return self.refuse(req, 481, "no control session", "", out);
        };
        self.respond(req, 200, "OK", Extra::default(), out);
        self.sh.session_down(&id, "BYE received", out);
        self.moves.forget(&id);
        self.member.session_down(&self.sh, &id);
    }

    // ---- outcomes --------------------------------------------------------------------

    fn on_done(&mut self, done: Done<Purpose>, out: &mut Out<Purpose>) {
        let Done { purpose, result } = done;
        let sh = &mut self.sh;
        match purpose {
            Purpose::Place(placement::Pending::Reserve { job, server, addrs }) => self
                .placement
                .on_reserved(sh, job, server, addrs, result, out),
            Purpose::Place(placement::Pending::Probe) => self.placement.on_probed(sh, result, out),
            Purpose::Place(placement::Pending::Invite(dialog)) => {
                let joined = self.invited(dialog, result, out);
                if let Some(id) = self.placement.on_invited(&mut self.sh, joined, out) {
                    self.moves.rebalance(
                        &mut self.sh,
                        &mut self.placement,
                        &id,
                        REBALANCE_ATTEMPTS,
                        out,
                    );
                }
            }
            Purpose::Move(pending) => {
                self.moves
                    .on_done(sh, &mut self.placement, pending, result, out)
            }
            Purpose::Member(member::Pending::Join(dialog)) => {
                let joined = self.invited(dialog, result, out);
                self.member.on_joined(joined, out);
            }
            Purpose::Member(member::Pending::Subscribe(call_id)) => {
                self.member.on_subscribed(&call_id, result, out)
            }
            Purpose::Member(member::Pending::Report(reported)) => {
                self.member.on_reported(sh, reported, result)
            }
            Purpose::Member(member::Pending::WriteThrough { ticket, user }) => {
                self.member.on_written(sh, ticket, &user, result, out)
            }
            Purpose::Notify(sent) => self.publisher.on_notified(sh, sent, result, out),
            Purpose::AddNode {
                dialog,
                ticket,
                target,
            } => {
                let joined = self.invited(dialog, result, out);
                let answer = joined
                    .map(|id| format!("{id} joined"))
                    .map_err(|e| format!("{target}: {e}"));
                out.answer(ticket, Answer::Admin(answer));
            }
            Purpose::Bye(ByeSent) => {}
        }
    }

    /// Our INVITE ended: after a 2xx the dialog is confirmed, ACKed, and the session is up
    /// with the peer its `svr-info` names; the peer's id, or why not.
    fn invited(
        &mut self,
        mut dialog: Dialog,
        result: Result<Response, ControlError>,
        out: &mut Out<Purpose>,
    ) -> Result<String, ControlError> {
        let resp = result?;
        dialog.confirm(&resp);
        let ack = sessions::ack(&self.sh.settings, &mut dialog);
        out.push(Effect::Send {
            to: dialog.remote_target,
            bytes: ack,
        });
        let body = ccmp_body(self.sh.settings.secret(), &resp)?;
        let addrs = sessions::svr_addrs(&body.elements)
            .ok_or_else(|| ControlError::Malformed("the 200 carries no svr-info".into()))?;
        let load = sessions::load_of(&body.elements, &addrs.id);
        let id = addrs.id.clone();
        self.session_up(addrs, dialog, load, out);
        Ok(id)
    }

    /// Turns a part's steps into effects: requests go through the CCMP client.
    fn finish(&mut self, mut effects: Vec<Effect>, out: Out<Purpose>) -> Vec<Effect> {
        for step in out.into_steps() {
            match step {
                Step::Do(effect) => effects.push(effect),
                Step::Request(request, purpose) => {
                    self.client.start(request, purpose, &mut effects)
                }
            }
        }
        effects
    }
}
