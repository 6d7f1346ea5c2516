//! `Control`: the control plane of one node (DESIGN.md §2 `CcmpSession`, `LoadMonitor`,
//! `Allocator`; §4–§7).
//!
//! One actor per node owns every control session (the INVITE dialogs carrying
//! `application/extd-ccmp`, see [`super::dialog`]), the load monitor and, on the primary, the
//! allocator, the directory, the pool and the cluster state subscriptions. Control traffic is
//! low-rate (a report per node and interval, one reservation per placement), so one actor is
//! enough, and keeping the sessions beside the allocator makes a placement one synchronous
//! decision followed by one INFO round trip.
//!
//! Roles:
//! - **primary**: accepts joins (INVITE), keeps the `svr-loadlevel-list` from `pressvr-load`
//!   reports and the live users from `pres-sys-users`, places users (two-phase:
//!   `redirection-usr-addr` to the chosen server, redirect only after its 200), takes a server
//!   from the pool (OPTIONS, spawn, INVITE) when every one is full, and serves the cluster
//!   state document to members that SUBSCRIBE to `sip:cluster@primary`.
//! - **member** (worker or joined pool server): joins (or is INVITEd), reports its load
//!   every `report_interval_ms`, reserves the users the primary sends it, keeps a replica
//!   of the directory from the state document and writes its users' records through to the
//!   primary (`user-update`, DESIGN.md §3).
//!
//! The presence core hears of every real change of the directory (`Hub::home_changed`) and
//! of every node that dies or leaves (`Hub::node_down`), on both roles.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tracing::{debug, error, info, warn};

use super::allocator::{self, Allocator, Decision, Health, Params};
use super::ccmp::{
    self, CcmpRequest, CcmpResponse, Element, LoadLevel, Protocol, SvrInfo, SysUser,
};
use super::dialog::{self, contact_addr, Dialog, CLUSTER_USER};
use super::record;
use super::state::{ClusterState, Kind, PresType, Replica, ServerUsers, SvrLoad, UserInfo};
use super::view::{ClusterView, NodeAddrs};
use crate::config::{Config, PoolConfig, Role};
use crate::presence::shard::{LiveUser, LoadQuery};
use crate::presence::{Hub, WriteThrough};
use crate::sip::message::{self, Method, Request, Response};
use crate::sip::transport::{Incoming, Peer, SipSender};
use crate::store::{Records, Space, Store};

/// What the primary tells an edge about a user it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// Serve the user here.
    Local,
    /// Redirect the client there.
    Redirect(NodeAddrs),
}

/// Place a user (primary): the XMPP session waits for this after SASL success.
#[derive(Message)]
#[rtype(result = "Placed")]
pub struct Place {
    /// Local part.
    pub user: String,
    /// How the user arrived.
    pub protocol: Protocol,
}

/// A SIP request whose user only the allocator can place; answered with `302` or handed to
/// the presence hub.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PlaceSip {
    /// The request.
    pub incoming: Incoming,
    /// Its user (local part).
    pub user: String,
}

/// Control-plane SIP traffic from the transport.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ControlIn(pub Incoming);

/// The cluster state document as JSON (`GET /api/cluster`).
#[derive(Message)]
#[rtype(result = "String")]
pub struct StateJson;

/// This node's own view as JSON (`GET /api/node`).
#[derive(Message)]
#[rtype(result = "String")]
pub struct NodeJson;

/// Adds a configured node to the cluster (`POST /api/nodes`, primary only).
#[derive(Message)]
#[rtype(result = "Result<String, String>")]
pub struct AddNode(pub String);

/// Ends a node's membership (`DELETE /api/nodes/<id>`, primary only).
#[derive(Message)]
#[rtype(result = "Result<String, String>")]
pub struct RemoveNode(pub String);

/// Empties a server and ends its membership (`POST /api/nodes/<id>/drain`, primary only,
/// DESIGN.md §7): answered with how many users are being moved.
#[derive(Message)]
#[rtype(result = "Result<usize, DrainError>")]
pub struct Drain(pub String);

/// Why a drain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrainError {
    /// Only the primary drains.
    #[error("only the primary drains nodes")]
    NotPrimary,
    /// No member server has that id.
    #[error("{0} is not a member")]
    Unknown(String),
    /// The primary itself, or the last server that could take the users.
    #[error("{0}")]
    Conflict(String),
}

impl DrainError {
    /// The HTTP status the admin API answers with.
    pub fn status(&self) -> u16 {
        match self {
            DrainError::Unknown(_) => 404,
            DrainError::NotPrimary | DrainError::Conflict(_) => 409,
        }
    }
}

/// How a node's control plane is set up.
pub struct ControlSettings {
    /// The whole configuration.
    pub config: Arc<Config>,
    /// This node's advertised addresses (bound ports resolved).
    pub me: NodeAddrs,
    /// Admin API address, if served.
    pub admin: Option<SocketAddr>,
    /// `--join`: the primary to INVITE at start (members listed as workers join anyway).
    pub join: Option<SocketAddr>,
}

type Done = Box<dyn FnOnce(&mut Control, &mut Context<Control>, Option<Response>)>;

struct Session {
    dialog: Dialog,
    addrs: NodeAddrs,
}

enum Reply {
    Xmpp(tokio::sync::oneshot::Sender<Placed>),
    Sip(Box<Incoming>),
}

/// A user to move away from `from` (DESIGN.md §7); to `to`, or where the allocator says.
struct Move {
    user: String,
    from: String,
    to: Option<String>,
}

struct Job {
    user: String,
    protocol: Protocol,
    cost: u64,
    tried: Vec<String>,
    reply: Reply,
}

/// A member subscribed to the cluster state (primary side, DESIGN.md §6).
struct Watcher {
    dialog: Dialog,
    queue: VecDeque<String>,
    in_flight: bool,
    expires: u32,
    /// NOTIFYs that failed in a row (timeout or error other than 481).
    failures: u32,
}

/// A state watcher whose NOTIFYs fail this many times in a row is dropped; before that, it is
/// sent a fresh snapshot after [`STATE_RETRY`]: a member that missed a delta would otherwise
/// route with a stale directory until its refresh, minutes later.
const STATE_MAX_FAILURES: u32 = 3;
const STATE_RETRY: Duration = Duration::from_secs(1);

/// Result of a pool acquisition.
type Acquired = Box<dyn FnOnce(&mut Control, &mut Context<Control>, Result<String, String>)>;

/// The control actor.
pub struct Control {
    config: Arc<Config>,
    me: NodeAddrs,
    admin: Option<SocketAddr>,
    join: Option<SocketAddr>,
    view: Arc<ClusterView>,
    hub: Hub,
    local_dispatch: Arc<dyn crate::sip::transport::Dispatch>,
    store: Arc<dyn Store>,
    sender: SipSender,
    started: Instant,
    pending: HashMap<String, Done>,
    /// Peer node id -> its control session.
    sessions: HashMap<String, Session>,
    // ---- load monitor (both roles)
    version: u64,
    level: u64,
    users: u64,
    resources: u64,
    live: HashMap<String, LiveUser>,
    reported: Option<HashMap<String, LiveUser>>,
    measuring: bool,
    // ---- member
    primary_id: Option<String>,
    join_backoff: Duration,
    refused: bool,
    replica: Replica,
    state_dialog: Option<Dialog>,
    /// Servers listed by the last complete state document: one that disappears from it is
    /// dead or gone (DESIGN.md §5, §6).
    servers_seen: BTreeSet<String>,
    // ---- primary
    alloc: Allocator,
    /// Live users per server, from `pres-sys-users` (and our own monitor).
    live_by_server: BTreeMap<String, HashMap<String, SysUser>>,
    waiting: Vec<Job>,
    /// Users being placed, with the requests that wait for the same answer.
    placing: HashMap<String, Vec<Reply>>,
    acquiring: bool,
    /// Users to move (drain, rebalance), started at most [`MAX_MOVES_IN_FLIGHT`] at once.
    moves: VecDeque<Move>,
    /// Moves in flight: user -> the server it leaves.
    moving: HashMap<String, String>,
    /// Servers being drained, with the rounds of retries left for users whose move failed.
    draining: BTreeMap<String, u32>,
    /// `[[node]]` workers released by a drain (scale-in or `ctl drain`): pool candidates
    /// from then on, like `[[pool]]` entries (without spawn or stop commands).
    released: BTreeSet<String>,
    /// Since when the mean load has been below `min_load` (scale-in, DESIGN.md §7).
    low_since: Option<Instant>,
    /// `pump_moves` is running (a move that ends at once does not recurse into it).
    pumping: bool,
    watchers: HashMap<String, Watcher>,
    state_version: u64,
    changed: BTreeSet<String>,
}

fn millis(since: Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

fn addrs_of(info: &SvrInfo) -> Option<NodeAddrs> {
    Some(NodeAddrs {
        id: info.svr_id.clone(),
        xmpp: info.xmpp.parse().ok()?,
        sip: crate::config::parse_sip_hostport(&info.sip)?,
    })
}

impl Control {
    /// A control actor for a node.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: ControlSettings,
        view: Arc<ClusterView>,
        hub: Hub,
        local_dispatch: Arc<dyn crate::sip::transport::Dispatch>,
        store: Arc<dyn Store>,
        sender: SipSender,
    ) -> Control {
        let c = &settings.config.cluster;
        let mut alloc = Allocator::new(Params {
            max_load: c.max_load,
            min_load: c.min_load,
            report_interval_ms: c.report_interval_ms,
            dead_after_ms: c.dead_after_ms,
        });
        // Every configured node is known by address, so a member can send a user straight
        // to its home (DESIGN.md §3).
        let nodes = settings.config.nodes.iter().map(|n| (&n.id, n.xmpp, n.sip));
        let pool = settings.config.pool.iter().map(|p| (&p.id, p.xmpp, p.sip));
        for (id, xmpp, sip) in nodes.chain(pool) {
            if *id != settings.me.id {
                view.set_node(NodeAddrs {
                    id: id.clone(),
                    xmpp,
                    sip,
                });
            }
        }
        let primary = settings.config.primary_node();
        if !view.is_primary() {
            view.set_primary(NodeAddrs {
                id: primary.id.clone(),
                xmpp: primary.xmpp,
                sip: settings
                    .join
                    .unwrap_or_else(|| settings.config.primary_sip()),
            });
        }
        alloc.set_pool(settings.config.pool.iter().map(|p| p.id.clone()).collect());
        Control {
            me: settings.me,
            admin: settings.admin,
            join: settings.join,
            config: settings.config,
            view,
            hub,
            local_dispatch,
            store,
            sender,
            started: Instant::now(),
            pending: HashMap::new(),
            sessions: HashMap::new(),
            version: 0,
            level: 0,
            users: 0,
            resources: 0,
            live: HashMap::new(),
            reported: None,
            measuring: false,
            primary_id: None,
            join_backoff: Duration::from_secs(1),
            refused: false,
            replica: Replica::new(),
            state_dialog: None,
            servers_seen: BTreeSet::new(),
            alloc,
            live_by_server: BTreeMap::new(),
            waiting: Vec::new(),
            placing: HashMap::new(),
            acquiring: false,
            moves: VecDeque::new(),
            moving: HashMap::new(),
            draining: BTreeMap::new(),
            released: BTreeSet::new(),
            low_since: None,
            pumping: false,
            watchers: HashMap::new(),
            state_version: 0,
            changed: BTreeSet::new(),
        }
    }

    fn secret(&self) -> &str {
        &self.config.cluster.secret
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.cluster.ccmp_timeout_ms)
    }

    fn conf_user(&self) -> String {
        ccmp::conf_user_id(&self.me.id, &self.config.cluster.domain)
    }

    fn local(&self) -> SocketAddr {
        self.me.sip
    }

    fn svr_info(&self) -> SvrInfo {
        SvrInfo {
            svr_id: self.me.id.clone(),
            sip: dialog::cluster_uri(self.me.sip),
            xmpp: self.me.xmpp.to_string(),
            admin: self.admin.map(|a| a.to_string()),
        }
    }

    fn own_level(&self) -> LoadLevel {
        LoadLevel {
            svr_id: self.me.id.clone(),
            level: self.level,
            users: self.users,
            resources: self.resources,
            version: self.version,
        }
    }

    // ---- client transactions ---------------------------------------------------------

    /// Sends a request over TCP and calls `done` with its final response, or `None` when
    /// none came within `timeout` (RFC 3261 timer F / B on a reliable transport).
    fn send_request(
        &mut self,
        ctx: &mut Context<Self>,
        target: SocketAddr,
        branch: String,
        bytes: Bytes,
        timeout: Duration,
        done: Done,
    ) {
        self.pending.insert(branch.clone(), done);
        if !self.sender.send(Peer::Tcp(target), bytes) {
            debug!(%target, "control request not queued");
        }
        ctx.run_later(timeout, move |act, ctx| {
            if let Some(done) = act.pending.remove(&branch) {
                done(act, ctx, None);
            }
        });
    }

    fn on_response(&mut self, ctx: &mut Context<Self>, resp: Response) {
        if resp.status < 200 {
            return;
        }
        let Some(done) = resp
            .base
            .via
            .branch
            .clone()
            .and_then(|b| self.pending.remove(&b))
        else {
            debug!(
                status = resp.status,
                "control response to no pending request"
            );
            return;
        };
        done(self, ctx, Some(resp));
    }

    /// Checks the signature of a response carrying a CCMP body and parses it.
    fn ccmp_response(&self, resp: &Response) -> Result<CcmpResponse, String> {
        let material =
            dialog::signed_material(&resp.base.call_id, &resp.base.cseq.to_string(), resp.body());
        ccmp::verify(
            self.secret(),
            &material,
            resp.header(ccmp::SIGNATURE_HEADER),
        )
        .map_err(|e| format!("response signature: {e}"))?;
        CcmpResponse::parse(resp.body()).map_err(|e| e.to_string())
    }

    // ---- server side ---------------------------------------------------------------------

    fn respond(&self, peer: Peer, req: &Request, status: u16, reason: &str, extra: Extra) {
        let mut b = message::reply(req, status, reason);
        if req.base.to.tag().is_none() && *req.method() != Method::Ack {
            b = b.to_tag(&extra.tag.clone().unwrap_or_else(message::new_tag));
        }
        for (n, v) in extra.headers {
            b = b.header(n, v);
        }
        if let Some(body) = extra.body {
            let material = dialog::signed_material(
                &req.base.call_id,
                &req.base.cseq.to_string(),
                body.as_bytes(),
            );
            b = b
                .header(ccmp::SIGNATURE_HEADER, ccmp::sign(self.secret(), &material))
                .body(ccmp::CONTENT_TYPE, Bytes::from(body));
        } else if extra.sign {
            let material =
                dialog::signed_material(&req.base.call_id, &req.base.cseq.to_string(), b"");
            b = b.header(ccmp::SIGNATURE_HEADER, ccmp::sign(self.secret(), &material));
        }
        self.sender.send(peer, b.build());
    }

    fn refuse(&self, peer: Peer, req: &Request, code: u16, why: &str, extension: &str) {
        if code == 409 && extension == "user-update" {
            // A late write from a node the user just left: expected, and carried by the
            // hand-over instead (DESIGN.md §7).
            debug!(from = %req.base.from.uri, reason = why, "write-through refused");
        } else {
            warn!(
                method = %req.method(),
                from = %req.base.from.uri,
                code,
                reason = why,
                "control request refused"
            );
        }
        let body = CcmpResponse::error(self.conf_user(), extension, code, why).to_xml();
        let reason = match code {
            403 => "Forbidden",
            409 => "Conflict",
            481 => "Call/Transaction Does Not Exist",
            _ => "Bad Request",
        };
        self.respond(
            peer,
            req,
            code,
            reason,
            Extra {
                body: Some(body),
                ..Default::default()
            },
        );
    }

    fn on_request(&mut self, ctx: &mut Context<Self>, req: Request, peer: Peer) {
        let method = req.method().clone();
        if method == Method::Options {
            return self.respond(
                peer,
                &req,
                200,
                "OK",
                Extra {
                    headers: vec![
                        (
                            "Allow",
                            "INVITE, ACK, BYE, INFO, OPTIONS, SUBSCRIBE, NOTIFY".into(),
                        ),
                        ("Accept", ccmp::CONTENT_TYPE.into()),
                        ("Recv-Info", ccmp::INFO_PACKAGE.into()),
                    ],
                    ..Default::default()
                },
            );
        }
        if method == Method::Ack {
            return; // completes our 2xx (TCP: nothing to stop retransmitting)
        }
        if !peer.reliable() {
            return self.refuse(peer, &req, 403, "inter-node SIP runs over TCP", "");
        }
        let material =
            dialog::signed_material(&req.base.call_id, &req.base.cseq.to_string(), req.body());
        if let Err(e) = ccmp::verify(self.secret(), &material, req.header(ccmp::SIGNATURE_HEADER)) {
            return self.refuse(peer, &req, 403, &format!("bad cluster signature: {e}"), "");
        }
        match method {
            Method::Invite => self.on_invite(ctx, req, peer),
            Method::Info => self.on_info(req, peer),
            Method::Bye => self.on_bye(req, peer),
            Method::Subscribe => self.on_state_subscribe(ctx, req, peer),
            Method::Notify => self.on_state_notify(req, peer),
            _ => self.respond(
                peer,
                &req,
                405,
                "Method Not Allowed",
                Extra {
                    headers: vec![(
                        "Allow",
                        "INVITE, ACK, BYE, INFO, OPTIONS, SUBSCRIBE, NOTIFY".into(),
                    )],
                    ..Default::default()
                },
            ),
        }
    }

    fn parse_ccmp_request(&self, req: &Request, peer: Peer) -> Option<CcmpRequest> {
        let ct = req.header("Content-Type").unwrap_or_default();
        if !ct.trim().eq_ignore_ascii_case(ccmp::CONTENT_TYPE) {
            self.refuse(
                peer,
                req,
                400,
                &format!("Content-Type must be {}", ccmp::CONTENT_TYPE),
                "",
            );
            return None;
        }
        match CcmpRequest::parse(req.body()) {
            Ok(r) => Some(r),
            Err(e) => {
                self.refuse(peer, req, e.response_code(), &e.to_string(), "");
                None
            }
        }
    }

    /// A join: a member INVITEs the primary, or the primary INVITEs a pool server.
    fn on_invite(&mut self, ctx: &mut Context<Self>, req: Request, peer: Peer) {
        let Some(body) = self.parse_ccmp_request(&req, peer) else {
            return;
        };
        let info = body.elements.iter().find_map(|e| match e {
            Element::SvrInfo(i) => Some(i.clone()),
            _ => None,
        });
        let Some(addrs) = info.as_ref().and_then(addrs_of) else {
            return self.refuse(
                peer,
                &req,
                400,
                "svr-info with sip and xmpp addresses is required",
                &body.extension,
            );
        };
        if ccmp::node_of(&body.conf_user_id) != Some(addrs.id.as_str()) {
            return self.refuse(
                peer,
                &req,
                400,
                "confUserID does not name the svr-info node",
                &body.extension,
            );
        }
        if addrs.id == self.me.id {
            return self.refuse(peer, &req, 409, "that node id is mine", &body.extension);
        }
        let primary_id = self.config.primary_node().id.clone();
        if !self.view.is_primary() && addrs.id != primary_id {
            return self.refuse(
                peer,
                &req,
                403,
                "only the primary invites members",
                &body.extension,
            );
        }
        let target = req
            .header("Contact")
            .and_then(contact_addr)
            .unwrap_or(addrs.sip);
        let tag = message::new_tag();
        let dialog = Dialog::incoming(&req, target, &tag);
        let load = body.elements.iter().find_map(|e| match e {
            Element::PressvrLoad(l) => l.iter().find(|l| l.svr_id == addrs.id).cloned(),
            _ => None,
        });
        let elements = self.welcome_elements();
        let resp = CcmpResponse::ok(self.conf_user(), body.extension.clone(), elements).to_xml();
        self.respond(
            peer,
            &req,
            200,
            "OK",
            Extra {
                tag: Some(tag),
                headers: vec![(
                    "Contact",
                    format!("<{}>", dialog::cluster_uri(self.local())),
                )],
                body: Some(resp),
                ..Default::default()
            },
        );
        self.session_up(ctx, addrs, dialog, load);
    }

    /// What a 200 to a join carries: who we are and, from the primary, the cluster figures.
    fn welcome_elements(&self) -> Vec<Element> {
        let mut v = vec![Element::SvrInfo(self.svr_info())];
        if self.view.is_primary() {
            v.push(Element::MaxLoad(self.config.cluster.max_load));
            v.push(Element::MinLoad(self.config.cluster.min_load));
            v.push(Element::ActvSvrNums(self.alloc.servers().count() as u32));
            v.push(Element::SvrPool(self.pool_uris()));
            v.push(Element::PressvrLoad(self.load_levels()));
        } else {
            v.push(Element::PressvrLoad(vec![self.own_level()]));
        }
        v
    }

    fn pool_uris(&self) -> Vec<String> {
        self.alloc
            .pool()
            .iter()
            .filter_map(|id| self.candidate(id))
            .map(|p| dialog::cluster_uri(p.sip))
            .collect()
    }

    /// The pool entry `id` names: a `[[pool]]` entry, or a `[[node]]` worker that a drain
    /// released (taken again the same way, with no command to spawn or stop it).
    fn candidate(&self, id: &str) -> Option<PoolConfig> {
        if let Some(p) = self.config.pool.iter().find(|p| p.id == id) {
            return Some(p.clone());
        }
        if !self.released.contains(id) {
            return None;
        }
        let n = self.config.nodes.iter().find(|n| n.id == id)?;
        Some(PoolConfig {
            id: n.id.clone(),
            sip: n.sip,
            xmpp: n.xmpp,
            admin: n.admin,
            data_dir: n.data_dir.clone(),
            spawn: None,
            stop: None,
        })
    }

    /// Every pool candidate that is not a member now: the `[[pool]]` entries, then the
    /// released workers.
    fn idle_candidates(&self) -> Vec<String> {
        let active: HashSet<&str> = self.alloc.servers().map(|s| s.id.as_str()).collect();
        self.config
            .pool
            .iter()
            .map(|p| &p.id)
            .chain(&self.released)
            .filter(|id| !active.contains(id.as_str()))
            .cloned()
            .collect()
    }

    fn load_levels(&self) -> Vec<LoadLevel> {
        self.alloc
            .servers()
            .map(|s| LoadLevel {
                svr_id: s.id.clone(),
                level: s.load,
                users: s.users,
                resources: 0,
                version: s.version,
            })
            .collect()
    }

    /// A control session is established with `addrs` (either direction).
    fn session_up(
        &mut self,
        ctx: &mut Context<Self>,
        addrs: NodeAddrs,
        dialog: Dialog,
        load: Option<LoadLevel>,
    ) {
        info!(peer = %addrs.id, sip = %addrs.sip, xmpp = %addrs.xmpp, "control session up");
        self.view.set_node(addrs.clone());
        let id = addrs.id.clone();
        self.sessions.insert(id.clone(), Session { dialog, addrs });
        if self.view.is_primary() {
            let now = millis(self.started);
            self.alloc.add_server(&id, now);
            if let Some(l) = load {
                self.alloc.report(&id, l.version, l.level, l.users, now);
            }
            let pool: Vec<String> = self
                .alloc
                .pool()
                .iter()
                .filter(|p| **p != id)
                .cloned()
                .collect();
            self.alloc.set_pool(pool);
            self.state_version += 1;
            // Users queued for a server may fit now.
            self.retry_waiting(ctx);
        } else {
            self.view.set_primary(self.sessions[&id].addrs.clone());
            self.primary_id = Some(id);
            self.view.set_joined(true);
            self.reported = None;
            self.subscribe_state(ctx);
        }
    }

    fn session_by_call_id(&self, call_id: &str) -> Option<String> {
        self.sessions
            .iter()
            .find(|(_, s)| s.dialog.call_id == call_id)
            .map(|(id, _)| id.clone())
    }

    fn on_info(&mut self, req: Request, peer: Peer) {
        let Some(peer_id) = self.session_by_call_id(&req.base.call_id) else {
            return self.refuse(peer, &req, 481, "no control session", "");
        };
        let Some(body) = self.parse_ccmp_request(&req, peer) else {
            return;
        };
        let result = if self.view.is_primary() {
            self.primary_info(&peer_id, &body)
        } else {
            self.member_info(&body)
        };
        match result {
            Ok(elements) => {
                let resp = CcmpResponse::ok(self.conf_user(), body.extension, elements).to_xml();
                self.respond(
                    peer,
                    &req,
                    200,
                    "OK",
                    Extra {
                        body: Some(resp),
                        ..Default::default()
                    },
                );
            }
            Err((code, why)) => self.refuse(peer, &req, code, &why, &body.extension),
        }
    }

    /// INFO at the primary: a member's reports and write-throughs.
    fn primary_info(
        &mut self,
        peer_id: &str,
        body: &CcmpRequest,
    ) -> Result<Vec<Element>, (u16, String)> {
        let now = millis(self.started);
        for e in &body.elements {
            match e {
                Element::PressvrLoad(levels) => {
                    for l in levels.iter().filter(|l| l.svr_id == peer_id) {
                        self.alloc.report(peer_id, l.version, l.level, l.users, now);
                        if self.view.set_dead(peer_id, false) {
                            info!(node = %peer_id, "node reports again");
                            // Back in the published server list.
                            self.state_version += 1;
                        }
                    }
                }
                Element::PresSysUsers {
                    svr_id,
                    full,
                    present,
                    gone,
                } if svr_id == peer_id => {
                    let map = self.live_by_server.entry(svr_id.clone()).or_default();
                    if *full {
                        map.clear();
                    }
                    for g in gone {
                        map.remove(g);
                    }
                    for u in present {
                        map.insert(u.user.clone(), u.clone());
                    }
                    self.state_version += 1;
                }
                Element::UserUpdate { user, record } => {
                    let rec = record::decode(record).map_err(|e| (400, e.to_string()))?;
                    let local = user.split('@').next().unwrap_or(user);
                    // Only the user's home writes its record (DESIGN.md §3). A node the user
                    // moved away from hands its last changes to the new home instead, which
                    // merges them and writes the result through (§7); a late write from the
                    // old home would undo what the new home wrote meanwhile.
                    if let Some(home) = self.alloc.home(local).filter(|h| *h != peer_id) {
                        return Err((409, format!("{local} is homed at {home}, not {peer_id}")));
                    }
                    record::import_authoritative(&*self.store, local, &rec)
                        .map_err(|e| (409, e.to_string()))?;
                }
                other => {
                    return Err((
                        409,
                        format!("{} is not accepted by the primary", other.name()),
                    ))
                }
            }
        }
        Ok(Vec::new())
    }

    /// INFO at a member: reservations and cluster figures from the primary.
    fn member_info(&mut self, body: &CcmpRequest) -> Result<Vec<Element>, (u16, String)> {
        let mut reply = Vec::new();
        for e in &body.elements {
            match e {
                Element::RedirectionUsrAddr {
                    user,
                    resources,
                    record,
                    moved_from,
                    ..
                } => {
                    let local = user.split('@').next().unwrap_or(user).to_string();
                    if let Some(bytes) = record {
                        // The primary's copy is the durable one: every home writes its
                        // changes through before answering its client (DESIGN.md §3).
                        let rec = record::decode(bytes).map_err(|e| (400, e.to_string()))?;
                        record::import_authoritative(&*self.store, &local, &rec)
                            .map_err(|e| (409, e.to_string()))?;
                        if moved_from.is_some() {
                            // What the old home changes until it lets the user go comes
                            // as a hand-over, merged against this copy (DESIGN.md §7).
                            self.hub.arriving(&local, rec);
                        }
                    }
                    // Already homed here (a returning user): the reservation is refreshed
                    // but the user is not counted twice.
                    let known = !self.view.reserve(&local, Instant::now());
                    if !known {
                        self.hub.home_changed(&local);
                    }
                    let c = &self.config.cluster;
                    self.version += 1;
                    if !known {
                        self.users += 1;
                        self.level += c.weight_users + c.weight_resources * u64::from(*resources);
                    }
                    info!(user = %local, "user reserved");
                    reply.push(Element::PressvrLoad(vec![self.own_level()]));
                }
                Element::MigrateUser { user, svr_id } => {
                    // The user leaves us (DESIGN.md §7): the view names its new home first,
                    // then its sessions and subscriptions here are sent there.
                    let local = user.split('@').next().unwrap_or(user).to_string();
                    if *svr_id == self.me.id {
                        return Err((409, format!("{local} is to move to this very node")));
                    }
                    let Some(to) = self.view.node(svr_id) else {
                        return Err((409, format!("unknown server {svr_id}")));
                    };
                    if self.view.moved_away(&local, svr_id) {
                        self.hub.home_changed(&local);
                    }
                    self.hub.evict(&local, to);
                    self.forget_live(&local);
                    info!(user = %local, to = %svr_id, "user moved away");
                    reply.push(Element::PressvrLoad(vec![self.own_level()]));
                }
                Element::MaxLoad(_)
                | Element::MinLoad(_)
                | Element::ActvSvrNums(_)
                | Element::SvrPool(_)
                | Element::PressvrLoad(_) => {}
                other => return Err((409, format!("{} is not supported here yet", other.name()))),
            }
        }
        Ok(reply)
    }

    fn on_bye(&mut self, req: Request, peer: Peer) {
        let Some(id) = self.session_by_call_id(&req.base.call_id) else {
            return self.refuse(peer, &req, 481, "no control session", "");
        };
        self.respond(peer, &req, 200, "OK", Extra::default());
        self.session_down(&id, "BYE received");
    }

    fn session_down(&mut self, id: &str, why: &str) {
        self.sessions.remove(id);
        info!(peer = %id, reason = why, "control session ended");
        if self.view.is_primary() {
            self.alloc.remove_server(id);
            self.draining.remove(id);
            self.mark_dead(id);
            self.live_by_server.remove(id);
            self.state_version += 1;
            if self.candidate(id).is_some() && !self.alloc.pool().iter().any(|p| p == id) {
                let mut pool = self.alloc.pool().to_vec();
                pool.push(id.to_string());
                self.alloc.set_pool(pool);
            }
        } else if self.primary_id.as_deref() == Some(id) {
            self.view.set_joined(false);
            self.primary_id = None;
            self.state_dialog = None;
        }
    }

    // ---- joining (UAC) -------------------------------------------------------------------

    /// INVITEs `target` with our svr-info and load; `then` gets the peer's id.
    fn invite(&mut self, ctx: &mut Context<Self>, target: SocketAddr, then: Acquired) {
        let mut d = Dialog::outgoing(self.local(), target);
        let body = CcmpRequest::new(
            self.conf_user(),
            "pressvr-load",
            self.welcome_elements()
                .into_iter()
                .filter(|e| matches!(e, Element::SvrInfo(_) | Element::PressvrLoad(_)))
                .collect(),
        )
        .to_xml();
        let branch = dialog::new_branch();
        let bytes = d.request(
            Method::Invite,
            self.local(),
            &branch,
            self.secret(),
            &[("Accept", ccmp::CONTENT_TYPE.into())],
            Some((ccmp::CONTENT_TYPE, Bytes::from(body))),
        );
        let timeout = self.timeout();
        self.send_request(
            ctx,
            target,
            branch,
            bytes,
            timeout,
            Box::new(move |act, ctx, resp| {
                let Some(resp) = resp else {
                    return then(act, ctx, Err(format!("no answer from {target}")));
                };
                if resp.status != 200 {
                    return then(
                        act,
                        ctx,
                        Err(format!("{} {} from {target}", resp.status, resp.reason)),
                    );
                }
                d.confirm(&resp);
                let ack = d.request(
                    Method::Ack,
                    act.local(),
                    &dialog::new_branch(),
                    act.secret(),
                    &[],
                    None,
                );
                act.sender.send(Peer::Tcp(d.remote_target), ack);
                let body = match act.ccmp_response(&resp) {
                    Ok(b) => b,
                    Err(e) => return then(act, ctx, Err(e)),
                };
                let info = body.elements.iter().find_map(|e| match e {
                    Element::SvrInfo(i) => addrs_of(i),
                    _ => None,
                });
                let Some(addrs) = info else {
                    return then(act, ctx, Err("200 without svr-info".into()));
                };
                let load = body.elements.iter().find_map(|e| match e {
                    Element::PressvrLoad(l) => l.iter().find(|l| l.svr_id == addrs.id).cloned(),
                    _ => None,
                });
                let id = addrs.id.clone();
                act.session_up(ctx, addrs, d, load);
                then(act, ctx, Ok(id))
            }),
        );
    }

    /// A member joins the primary (DESIGN.md §5), retrying with backoff unless refused.
    fn join_primary(&mut self, ctx: &mut Context<Self>) {
        if self.view.joined() || self.refused {
            return;
        }
        let target = self
            .view
            .primary()
            .map(|p| p.sip)
            .unwrap_or_else(|| self.config.primary_sip());
        info!(primary = %target, "joining the cluster");
        self.invite(
            ctx,
            target,
            Box::new(move |act, ctx, result| match result {
                Ok(id) => {
                    info!(primary = %id, "joined the cluster");
                    act.join_backoff = Duration::from_secs(1);
                }
                Err(e) if e.starts_with("403") => {
                    error!(error = %e, "the primary refused us (is cluster.secret the same?)");
                    act.refused = true;
                }
                Err(e) => {
                    warn!(error = %e, retry_in = ?act.join_backoff, "join failed");
                    let wait = act.join_backoff;
                    act.join_backoff = (act.join_backoff * 2).min(Duration::from_secs(10));
                    ctx.run_later(wait, |act, ctx| act.join_primary(ctx));
                }
            }),
        );
    }

    // ---- cluster state subscription (DESIGN.md §6) ---------------------------------------

    fn subscribe_state(&mut self, ctx: &mut Context<Self>) {
        let Some(primary) = self.view.primary() else {
            return;
        };
        let mut d = Dialog::outgoing(self.local(), primary.sip);
        let branch = dialog::new_branch();
        let bytes = d.request(
            Method::Subscribe,
            self.local(),
            &branch,
            self.secret(),
            &[
                ("Event", "presence".into()),
                ("Accept", crate::pidf::CONTENT_TYPE.into()),
                ("Expires", STATE_EXPIRES.to_string()),
            ],
            None,
        );
        // NOTIFYs may overtake the 200 (another connection): match them by Call-ID now.
        self.state_dialog = Some(d);
        self.replica = Replica::new();
        let timeout = self.timeout();
        self.send_request(
            ctx,
            primary.sip,
            branch,
            bytes,
            timeout,
            Box::new(|act, ctx, resp| match resp {
                Some(r) if r.status == 200 => {
                    if let Some(d) = act.state_dialog.as_mut() {
                        d.confirm(&r);
                    }
                    // Refresh before it expires (RFC 6665 §4.1.2.2).
                    let refresh = Duration::from_secs(u64::from(STATE_EXPIRES) * 9 / 10);
                    ctx.run_later(refresh, |act, ctx| {
                        if act.view.joined() {
                            act.subscribe_state(ctx);
                        }
                    });
                }
                other => {
                    warn!(
                        status = other.map(|r| r.status),
                        "cluster state subscription failed; retrying"
                    );
                    ctx.run_later(Duration::from_secs(2), |act, ctx| {
                        if act.view.joined() {
                            act.subscribe_state(ctx);
                        }
                    });
                }
            }),
        );
    }

    fn on_state_subscribe(&mut self, ctx: &mut Context<Self>, req: Request, peer: Peer) {
        if !self.view.is_primary() {
            return self.refuse(
                peer,
                &req,
                403,
                "the cluster state is served by the primary",
                "",
            );
        }
        if req
            .header("Event")
            .is_none_or(|e| e.split(';').next().unwrap_or("").trim() != "presence")
        {
            return self.respond(
                peer,
                &req,
                489,
                "Bad Event",
                Extra {
                    headers: vec![("Allow-Events", "presence".into())],
                    ..Default::default()
                },
            );
        }
        let expires = req
            .header("Expires")
            .and_then(|e| e.trim().parse::<u32>().ok())
            .unwrap_or(STATE_EXPIRES)
            .min(STATE_EXPIRES);
        let call_id = req.base.call_id.clone();
        if expires == 0 {
            self.watchers.remove(&call_id);
            return self.respond(peer, &req, 200, "OK", Extra::signed());
        }
        let Some(target) = req.header("Contact").and_then(contact_addr) else {
            return self.refuse(peer, &req, 400, "Contact is required", "");
        };
        let tag = req
            .base
            .to
            .tag()
            .map(str::to_string)
            .unwrap_or_else(message::new_tag);
        let mut extra = Extra::signed();
        extra.tag = Some(tag.clone());
        extra.headers = vec![
            ("Expires", expires.to_string()),
            (
                "Contact",
                format!("<{}>", dialog::cluster_uri(self.local())),
            ),
        ];
        self.respond(peer, &req, 200, "OK", extra);
        if let Some(w) = self.watchers.get_mut(&call_id) {
            w.expires = expires; // a refresh
            return;
        }
        let mut snapshot = self.state_snapshot();
        snapshot.kind = Kind::Full;
        let entity = self.state_entity();
        let queue = snapshot
            .chunks(&entity, self.config.cluster.state_chunk_bytes)
            .into();
        info!(watcher = %req.base.from.uri, "cluster state subscription");
        self.watchers.insert(
            call_id.clone(),
            Watcher {
                dialog: Dialog::incoming(&req, target, &tag),
                queue,
                in_flight: false,
                expires,
                failures: 0,
            },
        );
        self.pump(ctx, &call_id);
    }

    fn state_entity(&self) -> String {
        format!("sip:{CLUSTER_USER}@{}", self.config.cluster.domain)
    }

    /// Sends the next queued NOTIFY of a state subscription, one at a time (flow control:
    /// the next chunk only after the previous 200).
    fn pump(&mut self, ctx: &mut Context<Self>, call_id: &str) {
        let local = self.local();
        let secret = self.config.cluster.secret.clone();
        let Some(w) = self.watchers.get_mut(call_id) else {
            return;
        };
        if w.in_flight {
            return;
        }
        let Some(body) = w.queue.pop_front() else {
            return;
        };
        w.in_flight = true;
        let branch = dialog::new_branch();
        let bytes = w.dialog.request(
            Method::Notify,
            local,
            &branch,
            &secret,
            &[
                ("Event", "presence".into()),
                (
                    "Subscription-State",
                    format!("active;expires={}", w.expires),
                ),
            ],
            Some((crate::pidf::CONTENT_TYPE, Bytes::from(body))),
        );
        let target = w.dialog.remote_target;
        let call_id = call_id.to_string();
        let timeout = self.timeout();
        self.send_request(
            ctx,
            target,
            branch,
            bytes,
            timeout,
            Box::new(move |act, ctx, resp| match resp {
                Some(r) if r.status < 300 => {
                    if let Some(w) = act.watchers.get_mut(&call_id) {
                        w.in_flight = false;
                        w.failures = 0;
                    }
                    act.pump(ctx, &call_id);
                }
                other => {
                    let status = other.map(|r| r.status);
                    let Some(w) = act.watchers.get_mut(&call_id) else {
                        return;
                    };
                    w.failures += 1;
                    let failures = w.failures;
                    if status == Some(481) || failures >= STATE_MAX_FAILURES {
                        warn!(?status, failures, "state watcher gone");
                        act.watchers.remove(&call_id);
                        return;
                    }
                    // The lost NOTIFY may have carried a delta: start the watcher over
                    // from a full snapshot.
                    warn!(
                        ?status,
                        failures, "state NOTIFY failed; resending a snapshot"
                    );
                    let mut snap = act.state_snapshot();
                    snap.kind = Kind::Full;
                    let chunks =
                        snap.chunks(&act.state_entity(), act.config.cluster.state_chunk_bytes);
                    if let Some(w) = act.watchers.get_mut(&call_id) {
                        w.queue = chunks.into();
                    }
                    ctx.run_later(STATE_RETRY, move |act, ctx| {
                        if let Some(w) = act.watchers.get_mut(&call_id) {
                            w.in_flight = false;
                        }
                        act.pump(ctx, &call_id);
                    });
                }
            }),
        );
    }

    fn on_state_notify(&mut self, req: Request, peer: Peer) {
        let ours = self
            .state_dialog
            .as_ref()
            .is_some_and(|d| d.call_id == req.base.call_id);
        if !ours {
            return self.refuse(peer, &req, 481, "no such subscription", "");
        }
        let refused = |act: &Self, e: &dyn std::fmt::Display| {
            warn!(error = %e, "cluster state document refused");
            act.respond(peer, &req, 400, "Bad Request", Extra::default());
        };
        let doc = match ClusterState::parse(req.body()) {
            Ok(doc) => doc,
            Err(e) => return refused(self, &e),
        };
        let last_full_chunk = doc.kind == Kind::Full && doc.chunk == doc.chunks;
        // A delta not newer than the replica is ignored by it, and so by the view.
        let delta = (doc.kind == Kind::Delta && doc.version > self.replica.version())
            .then(|| (doc.users.clone(), doc.removed.clone()));
        if let Err(e) = self.replica.apply(doc) {
            return refused(self, &e);
        }
        if let Some((users, removed)) = delta {
            for s in &users {
                for u in &s.users {
                    if self.view.set_home(&u.user_id, &s.server_id) {
                        self.hub.home_changed(&u.user_id);
                    }
                }
            }
            for u in &removed {
                if self.view.remove_home(u) {
                    self.hub.home_changed(u);
                }
            }
            self.learn_servers();
        } else if last_full_chunk && self.replica.is_complete() {
            let homes = self
                .replica
                .snapshot()
                .users
                .into_iter()
                .flat_map(|s| {
                    let server = s.server_id;
                    s.users
                        .into_iter()
                        .map(move |u| (u.user_id, server.clone()))
                })
                .collect();
            for user in self.view.replace_homes(homes) {
                self.hub.home_changed(&user);
            }
            self.learn_servers();
        }
        self.respond(peer, &req, 200, "OK", Extra::signed());
    }

    /// A member follows the server list of the complete replica: a server that left it is
    /// dead or removed, one that is back in it lives again (DESIGN.md §5, §6).
    fn learn_servers(&mut self) {
        if !self.replica.is_complete() {
            return;
        }
        let now: BTreeSet<String> = self
            .replica
            .servers()
            .iter()
            .map(|s| s.id.clone())
            .collect();
        let (gone, back) = server_changes(&self.servers_seen, &now, &self.me.id);
        for id in gone {
            warn!(node = %id, "the cluster state no longer lists this node: dead or removed");
            self.mark_dead(&id);
        }
        for id in back {
            if self.view.set_dead(&id, false) {
                info!(node = %id, "the cluster state lists this node again");
            }
        }
        self.servers_seen = now;
    }

    /// Marks a node dead in the view and, once per transition, tells the presence core.
    fn mark_dead(&mut self, id: &str) {
        if self.view.set_dead(id, true) {
            self.hub.node_down(id);
        }
    }

    /// The cluster state as the primary knows it (DESIGN.md §6).
    fn state_snapshot(&self) -> ClusterState {
        let max = self.config.cluster.max_load;
        // A dead server is left out: members take its absence as its death (§5, §6).
        let servers: Vec<SvrLoad> = self
            .alloc
            .servers()
            .filter(|s| s.health != Health::Dead)
            .map(|s| SvrLoad {
                id: s.id.clone(),
                current: s.load,
                max,
            })
            .collect();
        let mut by_server: BTreeMap<&str, Vec<UserInfo>> = BTreeMap::new();
        for (user, home) in self.alloc.directory() {
            let live = self.live_by_server.get(home).and_then(|m| m.get(user));
            by_server.entry(home).or_default().push(UserInfo {
                user_id: user.to_string(),
                pres_type: match live.map(|l| l.protocol) {
                    Some(Protocol::Sip) => PresType::Sip,
                    _ => PresType::Xmpp,
                },
                resources: live.map_or(0, |l| l.resources),
                pres_info: if live.is_some() { "open" } else { "closed" }.into(),
            });
        }
        let total = self.alloc.directory_len() as u64;
        let users = by_server
            .into_iter()
            .map(|(server, mut users)| {
                users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
                ServerUsers {
                    server_id: server.to_string(),
                    users,
                }
            })
            .collect();
        ClusterState {
            version: self.state_version,
            kind: Kind::Full,
            chunk: 1,
            chunks: 1,
            active: servers.len() as u32,
            servers,
            candidates: self.pool_uris(),
            users,
            total_users: total,
            removed: Vec::new(),
        }
    }

    /// Sends the changes since the last round to every state watcher.
    fn flush_state(&mut self, ctx: &mut Context<Self>) {
        if self.watchers.is_empty() {
            self.changed.clear();
            return;
        }
        let mut doc = self.state_snapshot();
        let changed = std::mem::take(&mut self.changed);
        doc.kind = Kind::Delta;
        for s in &mut doc.users {
            s.users.retain(|u| changed.contains(&u.user_id));
        }
        doc.users.retain(|s| !s.users.is_empty());
        doc.removed = changed
            .iter()
            .filter(|u| self.alloc.home(u).is_none())
            .cloned()
            .collect();
        let entity = self.state_entity();
        // A round with many changes (a rebalance, a burst of arrivals) is sent as several
        // deltas, each within state_chunk_bytes, so no NOTIFY passes the SIP message limit;
        // each takes its own version.
        let parts = doc.split_delta(&entity, self.config.cluster.state_chunk_bytes);
        self.state_version += parts.len() as u64 - 1;
        let bodies: Vec<String> = parts.iter().map(|p| p.to_xml(&entity)).collect();
        let ids: Vec<String> = self.watchers.keys().cloned().collect();
        for id in ids {
            if let Some(w) = self.watchers.get_mut(&id) {
                if w.queue.len() >= MAX_STATE_QUEUE {
                    // Far behind: start it over from a snapshot rather than queue forever.
                    w.queue.clear();
                    let mut snap = self.state_snapshot();
                    snap.version = self.state_version;
                    let chunks = snap.chunks(&entity, self.config.cluster.state_chunk_bytes);
                    if let Some(w) = self.watchers.get_mut(&id) {
                        w.queue.extend(chunks);
                    }
                } else {
                    w.queue.extend(bodies.iter().cloned());
                }
            }
            self.pump(ctx, &id);
        }
    }

    // ---- load monitor (DESIGN.md §4) -----------------------------------------------------

    fn measure(&mut self, ctx: &mut Context<Self>) {
        if self.measuring {
            return;
        }
        self.measuring = true;
        let shards: Vec<_> = self.hub.inner.shards().to_vec();
        let fut = async move {
            let mut all: HashMap<String, LiveUser> = HashMap::new();
            for s in shards {
                if let Ok(m) = s.send(LoadQuery).await {
                    for (u, l) in m {
                        let e = all.entry(u).or_insert(LiveUser {
                            sip_only: true,
                            resources: 0,
                        });
                        e.sip_only &= l.sip_only;
                        e.resources += l.resources;
                    }
                }
            }
            all
        };
        ctx.spawn(fut.into_actor(self).map(|live, act, ctx| {
            act.measuring = false;
            act.after_measure(ctx, live);
        }));
    }

    fn after_measure(&mut self, ctx: &mut Context<Self>, live: HashMap<String, LiveUser>) {
        let c = &self.config.cluster;
        let reserved =
            self.view
                .settle_reservations(Instant::now(), |u| live.contains_key(u)) as u64;
        let resources: u64 = live.values().map(|l| u64::from(l.resources)).sum();
        self.users = live.len() as u64 + reserved;
        self.resources = resources;
        self.level = c.weight_users * self.users + c.weight_resources * resources;
        self.version += 1;
        self.live = live;
        if self.view.is_primary() {
            let now = millis(self.started);
            let me = self.me.id.clone();
            self.alloc
                .report(&me, self.version, self.level, self.users, now);
            let users = self.sys_users();
            self.live_by_server
                .insert(me, users.into_iter().map(|u| (u.user.clone(), u)).collect());
            for (id, health) in self.alloc.tick(now) {
                match health {
                    Health::Dead => {
                        warn!(node = %id, "node dead: no load report within dead_after_ms");
                        self.mark_dead(&id);
                        // Out of the published server list: members learn it (§6).
                        self.state_version += 1;
                    }
                    Health::Suspect => warn!(node = %id, "node suspect: three reports missed"),
                    Health::Active => info!(node = %id, "node active again"),
                }
            }
            self.flush_state(ctx);
            self.consider_scale_in(ctx);
        } else if self.view.joined() {
            self.report_load(ctx);
        }
    }

    /// Scale-in (DESIGN.md §7, beyond the papers): once the mean load has stayed below
    /// `min_load` for `scale_in_after_s`, the least-loaded worker is drained like
    /// `ctl drain` does, one at a time, never the primary nor the last server.
    fn consider_scale_in(&mut self, ctx: &mut Context<Self>) {
        let after = self.config.cluster.scale_in_after_s;
        if after == 0 || !self.draining.is_empty() {
            self.low_since = None;
            return;
        }
        let Some(id) = self
            .alloc
            .scale_in_candidate(&self.me.id)
            .map(str::to_string)
        else {
            self.low_since = None;
            return;
        };
        let since = *self.low_since.get_or_insert_with(Instant::now);
        if since.elapsed() < Duration::from_secs(after) {
            return;
        }
        self.low_since = None;
        let mean = self.alloc.mean_load().unwrap_or_default();
        info!(node = %id, mean, min_load = self.config.cluster.min_load, "scale-in: draining the least-loaded worker");
        if let Err(e) = self.drain(ctx, &id) {
            warn!(node = %id, error = %e, "scale-in drain refused");
        }
    }

    fn sys_users(&self) -> Vec<SysUser> {
        let mut v: Vec<SysUser> = self
            .live
            .iter()
            .map(|(u, l)| SysUser {
                user: u.clone(),
                protocol: if l.sip_only {
                    Protocol::Sip
                } else {
                    Protocol::Xmpp
                },
                resources: l.resources,
            })
            .collect();
        v.sort_by(|a, b| a.user.cmp(&b.user));
        v
    }

    /// INFO `pressvr-load` (and `pres-sys-users` when the user set changed) to the primary.
    fn report_load(&mut self, ctx: &mut Context<Self>) {
        let Some(primary) = self.primary_id.clone() else {
            return;
        };
        let mut elements = vec![Element::PressvrLoad(vec![self.own_level()])];
        let (full, present, gone) = match &self.reported {
            None => (true, self.sys_users(), Vec::new()),
            Some(prev) => {
                let present: Vec<SysUser> = self
                    .sys_users()
                    .into_iter()
                    .filter(|u| prev.get(&u.user).map(|p| p.resources) != Some(u.resources))
                    .collect();
                let mut gone: Vec<String> = prev
                    .keys()
                    .filter(|u| !self.live.contains_key(*u))
                    .cloned()
                    .collect();
                gone.sort();
                (false, present, gone)
            }
        };
        if full || !present.is_empty() || !gone.is_empty() {
            elements.push(Element::PresSysUsers {
                svr_id: self.me.id.clone(),
                full,
                present,
                gone,
            });
        }
        let snapshot = self.live.clone();
        self.info(
            ctx,
            &primary,
            "pressvr-load",
            elements,
            Box::new(move |act, _, resp| {
                if resp.is_ok() {
                    act.reported = Some(snapshot);
                }
            }),
        );
    }

    /// An in-dialog INFO to `peer`; `then` gets the CCMP response.
    fn info(
        &mut self,
        ctx: &mut Context<Self>,
        peer: &str,
        extension: &str,
        elements: Vec<Element>,
        then: InfoDone,
    ) {
        let local = self.local();
        let secret = self.config.cluster.secret.clone();
        let body = CcmpRequest::new(self.conf_user(), extension, elements).to_xml();
        let Some(session) = self.sessions.get_mut(peer) else {
            return then(self, ctx, Err(format!("no session with {peer}")));
        };
        let branch = dialog::new_branch();
        let bytes = session.dialog.request(
            Method::Info,
            local,
            &branch,
            &secret,
            &[("Info-Package", ccmp::INFO_PACKAGE.into())],
            Some((ccmp::CONTENT_TYPE, Bytes::from(body))),
        );
        let target = session.dialog.remote_target;
        let timeout = self.timeout();
        self.send_request(
            ctx,
            target,
            branch,
            bytes,
            timeout,
            Box::new(move |act, ctx, resp| {
                let result = match resp {
                    None => Err("timeout".to_string()),
                    Some(r) if r.status == 481 => Err("481".to_string()),
                    Some(r) => match act.ccmp_response(&r) {
                        Ok(c) if (200..300).contains(&r.status) && c.is_success() => Ok(c),
                        Ok(c) => Err(format!("{} {}", c.code, c.reason.unwrap_or_default())),
                        Err(_) if r.status >= 300 => Err(format!("{} {}", r.status, r.reason)),
                        Err(e) => Err(e),
                    },
                };
                then(act, ctx, result)
            }),
        );
    }

    // ---- placement (primary, DESIGN.md §4) -----------------------------------------------

    fn cost(&self, user: &str) -> u64 {
        let c = &self.config.cluster;
        let watched = self
            .store
            .roster(user)
            .map(|r| {
                r.items
                    .values()
                    .filter(|i| {
                        matches!(
                            i.subscription,
                            crate::xmpp::subscription::Subscription::To
                                | crate::xmpp::subscription::Subscription::Both
                        )
                    })
                    .count() as u64
            })
            .unwrap_or(0);
        c.weight_users + c.weight_resources * watched
    }

    fn start_job(
        &mut self,
        ctx: &mut Context<Self>,
        user: String,
        protocol: Protocol,
        reply: Reply,
    ) {
        // One placement per user at a time: a retransmitted SIP request or a second login
        // racing the first waits for the same answer instead of reserving again.
        if let Some(waiters) = self.placing.get_mut(&user) {
            waiters.push(reply);
            return;
        }
        self.placing.insert(user.clone(), Vec::new());
        let cost = self.cost(&user);
        self.try_place(
            ctx,
            Job {
                user,
                protocol,
                cost,
                tried: Vec::new(),
                reply,
            },
        );
    }

    fn try_place(&mut self, ctx: &mut Context<Self>, job: Job) {
        let exclude: Vec<&str> = job.tried.iter().map(String::as_str).collect();
        let decision = self.alloc.place_excluding(&job.user, job.cost, &exclude);
        let server = match decision {
            Decision::Sticky(s) | Decision::Least(s) => s,
            Decision::Overloaded(s) => {
                warn!(user = %job.user, server = %s, "every server is full and the pool is empty: placing on the least loaded");
                s
            }
            Decision::Pool => {
                self.waiting.push(job);
                let candidates = self.alloc.pool().to_vec();
                return self.acquire(
                    ctx,
                    candidates,
                    Box::new(|act, ctx, result| {
                        let joined = result.as_ref().ok().cloned();
                        if let Err(e) = result {
                            warn!(error = %e, "no pool server could be taken; the pool is exhausted");
                            act.alloc.set_pool(Vec::new());
                            // Give the pool another chance later.
                            ctx.run_later(Duration::from_secs(30), |act, _| {
                                let pool = act.idle_candidates();
                                act.alloc.set_pool(pool);
                            });
                        }
                        act.retry_waiting(ctx);
                        // It joined because every server was full: it takes users from
                        // the most loaded ones up to the mean (DESIGN.md §7).
                        if let Some(id) = joined {
                            act.rebalance(ctx, &id, REBALANCE_ATTEMPTS);
                        }
                    }),
                );
            }
            Decision::NoServer => self.me.id.clone(),
        };
        if server == self.me.id {
            // Our own reservation counts at once, as a member's 200 reports it.
            if self.view.reserve(&job.user, Instant::now()) {
                self.hub.home_changed(&job.user);
            }
            self.alloc.confirm(&job.user, &server, 0);
            self.version += 1;
            self.users += 1;
            self.level += job.cost;
            let now = millis(self.started);
            self.alloc
                .report(&server, self.version, self.level, self.users, now);
            self.placed(&job.user, &server);
            return finish(self, &job.user, job.reply, Placed::Local);
        }
        let Some(addrs) = self.sessions.get(&server).map(|s| s.addrs.clone()) else {
            let mut job = job;
            job.tried.push(server);
            return self.try_place(ctx, job);
        };
        self.alloc.begin(&server, job.cost);
        let record = record::export(&*self.store, &job.user)
            .ok()
            .flatten()
            .map(|r| record::encode(&r));
        let element = Element::RedirectionUsrAddr {
            user: format!("{}@{}", job.user, self.config.cluster.domain),
            protocol: job.protocol,
            resources: (job.cost.saturating_sub(self.config.cluster.weight_users)) as u32,
            record,
            moved_from: None,
        };
        self.info(
            ctx,
            &server.clone(),
            "redirection-usr-addr",
            vec![element],
            Box::new(move |act, ctx, result| match result {
                Ok(resp) => {
                    act.alloc.confirm(&job.user, &server, job.cost);
                    act.apply_reported_load(&server, &resp);
                    act.placed(&job.user, &server);
                    info!(user = %job.user, server = %server, "user placed");
                    finish(act, &job.user, job.reply, Placed::Redirect(addrs));
                }
                Err(e) => {
                    warn!(user = %job.user, server = %server, error = %e, "reservation failed; trying the next server");
                    act.alloc.abort(&server, job.cost);
                    if e == "timeout" {
                        act.alloc.mark_suspect(&server);
                    }
                    let mut job = job;
                    job.tried.push(server);
                    act.try_place(ctx, job);
                }
            }),
        );
    }

    /// Records a placement in the durable directory and the state document.
    fn placed(&mut self, user: &str, server: &str) {
        if let Err(e) = self
            .store
            .put(Space::Directory, user.as_bytes(), server.as_bytes())
        {
            error!(error = %e, %user, "directory write failed");
        }
        // The primary's word is the newest: a user placed elsewhere is not reserved here.
        if server != self.me.id {
            self.view.end_reservation(user);
        }
        if self.view.set_home(user, server) {
            self.hub.home_changed(user);
        }
        self.changed.insert(user.to_string());
        self.state_version += 1;
    }

    fn retry_waiting(&mut self, ctx: &mut Context<Self>) {
        for job in std::mem::take(&mut self.waiting) {
            self.try_place(ctx, job);
        }
    }

    // ---- pool (DESIGN.md §7) -------------------------------------------------------------

    /// Takes the first candidate that answers OPTIONS; when none does, spawns the first one
    /// with a `spawn` command and waits for it (`spawn_timeout_ms`); then INVITEs it.
    fn acquire(&mut self, ctx: &mut Context<Self>, candidates: Vec<String>, then: Acquired) {
        if self.acquiring {
            // One acquisition at a time; the running one retries the waiting users.
            return;
        }
        let entries: Vec<PoolConfig> = candidates
            .iter()
            .filter_map(|id| self.candidate(id))
            .collect();
        if entries.is_empty() {
            return then(self, ctx, Err("no pool entries".into()));
        }
        self.acquiring = true;
        self.probe(ctx, entries, 0, then);
    }

    fn probe(
        &mut self,
        ctx: &mut Context<Self>,
        entries: Vec<PoolConfig>,
        i: usize,
        then: Acquired,
    ) {
        let Some(entry) = entries.get(i).cloned() else {
            let Some(entry) = entries.iter().find(|p| p.spawn.is_some()).cloned() else {
                self.acquiring = false;
                return then(
                    self,
                    ctx,
                    Err("no pool server answers OPTIONS and none can be spawned".into()),
                );
            };
            return self.spawn(ctx, entry, then);
        };
        self.options(
            ctx,
            entry.sip,
            Box::new(move |act, ctx, up| {
                if up {
                    act.invite_pool(ctx, entry, then);
                } else {
                    act.probe(ctx, entries, i + 1, then);
                }
            }),
        );
    }

    fn options(&mut self, ctx: &mut Context<Self>, target: SocketAddr, then: Probed) {
        let branch = dialog::new_branch();
        let bytes = dialog::options(self.local(), target, &branch);
        let timeout = self.timeout().min(Duration::from_millis(1000));
        self.send_request(
            ctx,
            target,
            branch,
            bytes,
            timeout,
            Box::new(move |act, ctx, resp| then(act, ctx, resp.is_some_and(|r| r.status == 200))),
        );
    }

    fn spawn(&mut self, ctx: &mut Context<Self>, entry: PoolConfig, then: Acquired) {
        let cmd = entry.spawn.clone().unwrap_or_default();
        info!(node = %entry.id, command = %cmd, "spawning a pool server");
        match run_command(&cmd) {
            Ok(()) => {}
            Err(e) => {
                self.acquiring = false;
                return then(self, ctx, Err(format!("spawn of {} failed: {e}", entry.id)));
            }
        }
        let deadline = Instant::now() + Duration::from_millis(self.config.cluster.spawn_timeout_ms);
        self.await_spawn(ctx, entry, deadline, then);
    }

    fn await_spawn(
        &mut self,
        ctx: &mut Context<Self>,
        entry: PoolConfig,
        deadline: Instant,
        then: Acquired,
    ) {
        self.options(
            ctx,
            entry.sip,
            Box::new(move |act, ctx, up| {
                if up {
                    act.invite_pool(ctx, entry, then);
                } else if Instant::now() < deadline {
                    ctx.run_later(Duration::from_millis(250), move |act, ctx| {
                        act.await_spawn(ctx, entry, deadline, then)
                    });
                } else {
                    act.acquiring = false;
                    then(
                        act,
                        ctx,
                        Err(format!(
                            "{} did not answer OPTIONS within spawn_timeout_ms",
                            entry.id
                        )),
                    );
                }
            }),
        );
    }

    fn invite_pool(&mut self, ctx: &mut Context<Self>, entry: PoolConfig, then: Acquired) {
        info!(node = %entry.id, "inviting a pool server");
        self.invite(
            ctx,
            entry.sip,
            Box::new(move |act, ctx, result| {
                act.acquiring = false;
                then(act, ctx, result)
            }),
        );
    }
}

// ---- moving users: drain and rebalance (primary, DESIGN.md §7) ---------------------------

impl Control {
    /// Starts draining `id`: nobody is placed there any more, each of its users moves to
    /// the least loaded other server, and once none is left there its session ends with BYE
    /// and its `stop` command runs. Returns how many users are to move.
    fn drain(&mut self, ctx: &mut Context<Self>, id: &str) -> Result<usize, DrainError> {
        if !self.view.is_primary() {
            return Err(DrainError::NotPrimary);
        }
        if id == self.me.id {
            return Err(DrainError::Conflict(
                "the primary cannot be drained".to_string(),
            ));
        }
        if self.alloc.server(id).is_none() || !self.sessions.contains_key(id) {
            return Err(DrainError::Unknown(id.to_string()));
        }
        let others = self
            .alloc
            .servers()
            .filter(|s| s.id != id && s.health.is_alive() && !self.alloc.is_draining(&s.id))
            .count();
        if others == 0 {
            return Err(DrainError::Conflict(format!(
                "{id} is the last server that could take users"
            )));
        }
        self.alloc.set_draining(id, true);
        self.draining.insert(id.to_string(), DRAIN_ROUNDS);
        let users = self.queue_drain(id);
        info!(node = %id, users, "draining");
        self.pump_moves(ctx);
        Ok(users)
    }

    /// Queues a move of every user the directory homes on `id` that is not already on its
    /// way; returns how many users are homed there.
    fn queue_drain(&mut self, id: &str) -> usize {
        let mut users: Vec<String> = self
            .alloc
            .directory()
            .filter(|(_, home)| *home == id)
            .map(|(user, _)| user.to_string())
            .collect();
        users.sort();
        let count = users.len();
        let queued: HashSet<String> = self.moves.iter().map(|m| m.user.clone()).collect();
        for user in users {
            if !queued.contains(&user) && !self.moving.contains_key(&user) {
                self.moves.push_back(Move {
                    user,
                    from: id.to_string(),
                    to: None,
                });
            }
        }
        count
    }

    /// Server `to` joined because every server was full: users move to it from the most
    /// loaded servers first until it reaches the cluster's mean load (DESIGN.md §7). Only
    /// users online at their home are taken: they are what the load counts.
    ///
    /// A donor's load also counts users it reserved but has not reported online yet (they
    /// are logging in): when the plan asks for more users than a donor has reported, the
    /// rebalance is planned again from fresh reports, `attempts` times at most.
    fn rebalance(&mut self, ctx: &mut Context<Self>, to: &str, attempts: u32) {
        if !self.config.cluster.rebalance_on_join || !self.sessions.contains_key(to) {
            return;
        }
        let servers: Vec<allocator::LoadFigures> = self
            .alloc
            .servers()
            .filter(|s| s.health == Health::Active && !self.alloc.is_draining(&s.id))
            .map(|s| (s.id.clone(), s.load + s.pending, s.users))
            .collect();
        let plan = allocator::plan_rebalance(&servers, to, self.config.cluster.max_load);
        if plan.is_empty() {
            return;
        }
        info!(to = %to, plan = ?plan, "rebalancing onto a new server");
        let mut short = 0;
        for (from, count) in plan {
            let mut online: Vec<String> = self
                .live_by_server
                .get(&from)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            online.sort();
            let users: Vec<String> = online
                .into_iter()
                .filter(|u| self.alloc.home(u) == Some(from.as_str()))
                .filter(|u| !self.moving.contains_key(u) && !self.placing.contains_key(u))
                .take(count)
                .collect();
            short += count - users.len();
            for user in users {
                self.moves.push_back(Move {
                    user,
                    from: from.clone(),
                    to: Some(to.to_string()),
                });
            }
        }
        self.pump_moves(ctx);
        if short > 0 && attempts > 1 {
            debug!(to = %to, short, "rebalance: planning again after the next reports");
            let to = to.to_string();
            let wait = Duration::from_millis(2 * self.config.cluster.report_interval_ms);
            ctx.run_later(wait, move |act, ctx| act.rebalance(ctx, &to, attempts - 1));
        }
    }

    /// Starts queued moves while fewer than [`MAX_MOVES_IN_FLIGHT`] run, then looks at the
    /// drains.
    fn pump_moves(&mut self, ctx: &mut Context<Self>) {
        if self.pumping {
            return;
        }
        self.pumping = true;
        while self.moving.len() < MAX_MOVES_IN_FLIGHT {
            let Some(m) = self.moves.pop_front() else {
                break;
            };
            // Moved, placed anew or forgotten meanwhile: nothing to do.
            if self.alloc.home(&m.user) != Some(m.from.as_str())
                || self.moving.contains_key(&m.user)
            {
                continue;
            }
            let to = match m.to {
                Some(to) => to,
                None => {
                    let cost = self.cost(&m.user);
                    match self
                        .alloc
                        .move_target(&m.user, cost, &[m.from.as_str()])
                        .server()
                    {
                        Some(to) => to.to_string(),
                        None => {
                            warn!(user = %m.user, from = %m.from, "no server to move the user to");
                            continue;
                        }
                    }
                }
            };
            self.migrate(ctx, &m.user, &to);
        }
        self.pumping = false;
        self.check_drains(ctx);
    }

    /// Moves `user` from its home to server `to` (primary): the target reserves the user
    /// and imports its record (`redirection-usr-addr`, as a placement), then the directory
    /// names `to` and the old home evicts the user (`migrate-user`, or [`Hub::evict`] when
    /// the old home is this node). A failed reservation leaves the user where it was. Moves
    /// of one user never overlap, nor do they overlap its placement.
    fn migrate(&mut self, ctx: &mut Context<Self>, user: &str, to: &str) {
        let Some(from) = self.alloc.home(user).map(str::to_string) else {
            return;
        };
        if from == to || self.placing.contains_key(user) || self.moving.contains_key(user) {
            return;
        }
        // Placements of this user wait for the move (see `start_job`).
        self.placing.insert(user.to_string(), Vec::new());
        self.moving.insert(user.to_string(), from.clone());
        let cost = self.cost(user);
        let (user, to) = (user.to_string(), to.to_string());
        if to == self.me.id {
            // The old home hands over what it changes until it lets the user go; it is
            // merged against the record as it is now (DESIGN.md §7).
            match record::export(&*self.store, &user) {
                Ok(Some(base)) => self.hub.arriving(&user, base),
                Ok(None) => {}
                Err(e) => warn!(%user, error = %e, "the record could not be read"),
            }
            if self.view.reserve(&user, Instant::now()) {
                self.hub.home_changed(&user);
            }
            self.alloc.confirm(&user, &to, 0);
            self.version += 1;
            self.users += 1;
            self.level += cost;
            let now = millis(self.started);
            self.alloc
                .report(&to, self.version, self.level, self.users, now);
            return self.moved(ctx, &user, &from, self.me.clone());
        }
        let Some(addrs) = self.sessions.get(&to).map(|s| s.addrs.clone()) else {
            warn!(%user, %to, "move failed: no session with the target");
            return self.end_move(ctx, &user);
        };
        self.alloc.begin(&to, cost);
        let record = match record::export(&*self.store, &user) {
            Ok(r) => r.map(|r| record::encode(&r)),
            Err(e) => {
                warn!(%user, error = %e, "move failed: the record could not be read");
                self.alloc.abort(&to, cost);
                return self.end_move(ctx, &user);
            }
        };
        let protocol = self
            .live_by_server
            .get(&from)
            .and_then(|m| m.get(&user))
            .map_or(Protocol::Xmpp, |u| u.protocol);
        let element = Element::RedirectionUsrAddr {
            user: format!("{user}@{}", self.config.cluster.domain),
            protocol,
            resources: (cost.saturating_sub(self.config.cluster.weight_users)) as u32,
            record,
            moved_from: Some(from.clone()),
        };
        self.info(
            ctx,
            &to.clone(),
            "redirection-usr-addr",
            vec![element],
            Box::new(move |act, ctx, result| match result {
                Ok(resp) => {
                    act.alloc.confirm(&user, &to, cost);
                    act.apply_reported_load(&to, &resp);
                    act.moved(ctx, &user, &from, addrs);
                }
                Err(e) => {
                    warn!(%user, %from, %to, error = %e, "move failed: the user stays");
                    act.alloc.abort(&to, cost);
                    if e == "timeout" {
                        act.alloc.mark_suspect(&to);
                    }
                    act.end_move(ctx, &user);
                }
            }),
        );
    }

    /// Takes the `pressvr-load` of `server` that a member's CCMP response carries (it reports
    /// its level with every answer that changed it).
    fn apply_reported_load(&mut self, server: &str, resp: &CcmpResponse) {
        let now = millis(self.started);
        for e in &resp.elements {
            if let Element::PressvrLoad(levels) = e {
                for l in levels.iter().filter(|l| l.svr_id == server) {
                    self.alloc.report(server, l.version, l.level, l.users, now);
                }
            }
        }
    }

    /// A user left this node (moved away): its load stops counting now rather than at the
    /// next measurement, so that placements right after a series of moves see the room.
    fn forget_live(&mut self, user: &str) {
        let Some(l) = self.live.remove(user) else {
            return;
        };
        let c = &self.config.cluster;
        self.users = self.users.saturating_sub(1);
        self.resources = self.resources.saturating_sub(u64::from(l.resources));
        self.level = self
            .level
            .saturating_sub(c.weight_users + c.weight_resources * u64::from(l.resources));
        self.version += 1;
        if self.view.is_primary() {
            let now = millis(self.started);
            let me = self.me.id.clone();
            self.alloc
                .report(&me, self.version, self.level, self.users, now);
        }
    }

    /// `to` holds `user` now: the directory says so, then the old home evicts it.
    fn moved(&mut self, ctx: &mut Context<Self>, user: &str, from: &str, to: NodeAddrs) {
        self.placed(user, &to.id);
        info!(%user, %from, to = %to.id, "user moved");
        if from == self.me.id {
            self.hub.evict(user, to);
            self.forget_live(user);
            return self.end_move(ctx, user);
        }
        if !self.sessions.contains_key(from) {
            // The old home is gone: nothing there to evict.
            return self.end_move(ctx, user);
        }
        let element = Element::MigrateUser {
            user: format!("{user}@{}", self.config.cluster.domain),
            svr_id: to.id.clone(),
        };
        let user = user.to_string();
        let from = from.to_string();
        self.info(
            ctx,
            &from.clone(),
            "migrate-user",
            vec![element],
            Box::new(move |act, ctx, result| {
                match result {
                    Ok(resp) => act.apply_reported_load(&from, &resp),
                    Err(e) => {
                        warn!(%user, %from, error = %e, "the old home did not confirm the move")
                    }
                }
                act.end_move(ctx, &user);
            }),
        );
    }

    /// A move ended (done or failed): requests that waited for it are placed as usual
    /// (sticky: at the user's home now), and the next moves start.
    fn end_move(&mut self, ctx: &mut Context<Self>, user: &str) {
        self.moving.remove(user);
        let waiters = self.placing.remove(user).unwrap_or_default();
        for reply in waiters {
            let protocol = match &reply {
                Reply::Xmpp(_) => Protocol::Xmpp,
                Reply::Sip(_) => Protocol::Sip,
            };
            self.start_job(ctx, user.to_string(), protocol, reply);
        }
        self.pump_moves(ctx);
    }

    /// Ends the drains with no user left on their server; retries (a few rounds) those
    /// whose moves failed.
    fn check_drains(&mut self, ctx: &mut Context<Self>) {
        let ids: Vec<String> = self.draining.keys().cloned().collect();
        for id in ids {
            if self.alloc.server(&id).is_none() {
                self.draining.remove(&id);
                continue;
            }
            let busy = self.moves.iter().any(|m| m.from == id)
                || self.moving.values().any(|from| *from == id);
            if busy {
                continue;
            }
            if self.alloc.users_homed(&id) == 0 {
                self.finish_drain(ctx, &id);
                continue;
            }
            let Some(rounds) = self.draining.get_mut(&id) else {
                continue;
            };
            if *rounds == 0 {
                continue; // gave up already
            }
            *rounds -= 1;
            if *rounds == 0 {
                error!(node = %id, users = self.alloc.users_homed(&id), "drain gave up: users could not be moved; nobody is placed there");
                continue;
            }
            warn!(node = %id, users = self.alloc.users_homed(&id), "drain: retrying the moves that failed");
            ctx.run_later(Duration::from_secs(1), move |act, ctx| {
                if act.draining.contains_key(&id) && act.alloc.server(&id).is_some() {
                    act.queue_drain(&id);
                    act.pump_moves(ctx);
                }
            });
        }
    }

    /// `id` is empty: BYE ends its membership, its `stop` command runs, and a pool entry
    /// returns to the pool (`session_down`).
    fn finish_drain(&mut self, ctx: &mut Context<Self>, id: &str) {
        self.draining.remove(id);
        info!(node = %id, "drained");
        // A configured worker becomes a pool candidate: taken again when all are full.
        if self
            .config
            .nodes
            .iter()
            .any(|n| n.id == id && n.role == Role::Worker)
        {
            self.released.insert(id.to_string());
        }
        if let Err(e) = self.remove_node(ctx, id, "drained") {
            warn!(node = %id, error = %e, "drained node could not be removed");
        }
        let stop = self
            .config
            .pool
            .iter()
            .find(|p| p.id == id)
            .and_then(|p| p.stop.clone());
        if let Some(cmd) = stop {
            info!(node = %id, command = %cmd, "stopping a drained pool server");
            if let Err(e) = run_command(&cmd) {
                warn!(node = %id, error = %e, "stop command failed");
            }
        }
    }
}

/// Runs an operator's `spawn` or `stop` command with `sh -c`, and reaps it whenever it ends
/// (it may run a node in the foreground or start one in the background).
fn run_command(cmd: &str) -> std::io::Result<()> {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .spawn()?;
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

/// How many times a rebalance is planned again while its donors have not reported the
/// users it would move (see `Control::rebalance`).
const REBALANCE_ATTEMPTS: u32 = 5;

/// Moves (drain, rebalance) started at once; the others wait for a free slot (DESIGN.md §7).
const MAX_MOVES_IN_FLIGHT: usize = 16;

/// Rounds of retries of a drain whose moves failed before it gives up (the node stays
/// draining: nobody is placed there; the operator may drain it again).
const DRAIN_ROUNDS: u32 = 3;

type Probed = Box<dyn FnOnce(&mut Control, &mut Context<Control>, bool)>;

type InfoDone = Box<dyn FnOnce(&mut Control, &mut Context<Control>, Result<CcmpResponse, String>)>;

/// How long a member's cluster state subscription lasts before it is refreshed.
const STATE_EXPIRES: u32 = 3600;

/// NOTIFYs queued for one state watcher before it is resynchronised from a snapshot.
const MAX_STATE_QUEUE: usize = 256;

/// Compares the server lists of two complete cluster state documents: the servers that left
/// it (dead or removed) and those that joined or came back, each sorted, never `me`.
fn server_changes(
    seen: &BTreeSet<String>,
    now: &BTreeSet<String>,
    me: &str,
) -> (Vec<String>, Vec<String>) {
    let gone = seen
        .difference(now)
        .filter(|id| *id != me)
        .cloned()
        .collect();
    let back = now
        .difference(seen)
        .filter(|id| *id != me)
        .cloned()
        .collect();
    (gone, back)
}

/// Answers a placement and every request that waited for the same user's.
fn finish(act: &mut Control, user: &str, reply: Reply, placed: Placed) {
    let waiters = act.placing.remove(user).unwrap_or_default();
    for reply in std::iter::once(reply).chain(waiters) {
        answer(act, reply, placed.clone());
    }
}

fn answer(act: &mut Control, reply: Reply, placed: Placed) {
    match reply {
        Reply::Xmpp(tx) => {
            let _ = tx.send(placed);
        }
        Reply::Sip(incoming) => match placed {
            Placed::Local => act.local_dispatch.dispatch(*incoming),
            Placed::Redirect(addrs) => super::dispatch::redirect(&act.sender, &incoming, &addrs),
        },
    }
}

/// Extra parts of a response we build.
#[derive(Default)]
struct Extra {
    tag: Option<String>,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
    sign: bool,
}

impl Extra {
    fn signed() -> Extra {
        Extra {
            sign: true,
            ..Default::default()
        }
    }
}

impl Actor for Control {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        if self.view.is_primary() {
            let me = self.me.id.clone();
            self.alloc.add_server(&me, 0);
            self.alloc.set_preferred(Some(&me));
            // The durable directory (DESIGN.md §3).
            match self.store.scan_prefix(Space::Directory, b"") {
                Ok(entries) => {
                    for (k, v) in entries {
                        let (Ok(user), Ok(home)) = (String::from_utf8(k), String::from_utf8(v))
                        else {
                            continue;
                        };
                        self.alloc.set_home(&user, &home);
                        if self.view.set_home(&user, &home) {
                            self.hub.home_changed(&user);
                        }
                    }
                    info!(users = self.alloc.directory_len(), "directory loaded");
                }
                Err(e) => error!(error = %e, "directory could not be read"),
            }
        } else if self.join.is_some() || self.config.nodes.iter().any(|n| n.id == self.me.id) {
            self.join_primary(ctx);
        }
        let interval = Duration::from_millis(self.config.cluster.report_interval_ms);
        ctx.run_interval(interval, |act, ctx| act.measure(ctx));
        self.measure(ctx);
    }
}

impl Handler<ControlIn> for Control {
    type Result = ();

    fn handle(&mut self, msg: ControlIn, ctx: &mut Context<Self>) {
        let Incoming { message, peer } = msg.0;
        match message {
            crate::sip::message::Message::Request(req) => self.on_request(ctx, req, peer),
            crate::sip::message::Message::Response(resp) => self.on_response(ctx, resp),
        }
    }
}

impl Handler<Place> for Control {
    type Result = ResponseFuture<Placed>;

    fn handle(&mut self, msg: Place, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.start_job(ctx, msg.user, msg.protocol, Reply::Xmpp(tx));
        Box::pin(async move { rx.await.unwrap_or(Placed::Local) })
    }
}

impl Handler<PlaceSip> for Control {
    type Result = ();

    fn handle(&mut self, msg: PlaceSip, ctx: &mut Context<Self>) {
        self.start_job(
            ctx,
            msg.user,
            Protocol::Sip,
            Reply::Sip(Box::new(msg.incoming)),
        );
    }
}

/// A member writes a user's record through to the primary (DESIGN.md §3): an in-dialog
/// INFO `user-update`, answered within `ccmp_timeout_ms` whatever happens. The primary, and
/// a node outside any cluster, hold the durable store themselves: nothing to do.
impl Handler<WriteThrough> for Control {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, msg: WriteThrough, ctx: &mut Context<Self>) -> Self::Result {
        if self.view.is_primary() || !self.view.enabled() {
            return Box::pin(async { Ok(()) });
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.write_through(ctx, &msg.user, tx);
        let timeout = self.timeout();
        let user = msg.user;
        Box::pin(async move {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err("the control plane stopped".into()),
                Err(_) => Err("timeout".into()),
            }
            .map_err(|e| format!("write-through of {user} to the primary failed: {e}"))
        })
    }
}

impl Control {
    fn write_through(
        &mut self,
        ctx: &mut Context<Self>,
        user: &str,
        tx: tokio::sync::oneshot::Sender<Result<(), String>>,
    ) {
        let Some(primary) = self.primary_id.clone().filter(|_| self.view.joined()) else {
            let _ = tx.send(Err("not joined to the cluster".into()));
            return;
        };
        let record = match record::export(&*self.store, user) {
            Ok(Some(r)) => r,
            Ok(None) => {
                let _ = tx.send(Err("no such account".into()));
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        let element = Element::UserUpdate {
            user: format!("{user}@{}", self.config.cluster.domain),
            record: record::encode(&record),
        };
        let user = user.to_string();
        self.info(
            ctx,
            &primary,
            "user-update",
            vec![element],
            Box::new(move |_, _, result| {
                // The one caller, `presence::write_through`, reports a failure (and knows
                // when it is expected: the user moved away, DESIGN.md §7).
                match &result {
                    Ok(_) => debug!(%user, "record written through"),
                    Err(e) => debug!(%user, error = %e, "write-through failed"),
                }
                let _ = tx.send(result.map(|_| ()));
            }),
        );
    }
}

impl Handler<StateJson> for Control {
    type Result = String;

    fn handle(&mut self, _: StateJson, _: &mut Context<Self>) -> String {
        let snap = if self.view.is_primary() {
            self.state_snapshot()
        } else {
            self.replica.snapshot()
        };
        serde_json::to_string(&snap).unwrap_or_else(|_| "{}".into())
    }
}

impl Handler<NodeJson> for Control {
    type Result = String;

    fn handle(&mut self, _: NodeJson, _: &mut Context<Self>) -> String {
        let mut users: Vec<&String> = self.live.keys().collect();
        users.sort();
        let role = if self.view.is_primary() {
            "primary"
        } else if self.view.joined() {
            "member"
        } else {
            "idle"
        };
        serde_json::json!({
            "id": self.me.id,
            "role": role,
            "joined": self.view.joined(),
            "xmpp": self.me.xmpp.to_string(),
            "sip": self.me.sip.to_string(),
            "load": self.level,
            "users": self.users,
            "resources": self.resources,
            "live_users": users,
            "primary": self.primary_id,
            "max_load": self.config.cluster.max_load,
        })
        .to_string()
    }
}

impl Handler<AddNode> for Control {
    type Result = ResponseFuture<Result<String, String>>;

    fn handle(&mut self, msg: AddNode, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.view.is_primary() {
            let _ = tx.send(Err("only the primary adds nodes".to_string()));
        } else if self.sessions.contains_key(&msg.0) {
            let _ = tx.send(Err(format!("{} is already a member", msg.0)));
        } else if let Some(p) = self.config.pool.iter().find(|p| p.id == msg.0) {
            self.acquire(
                ctx,
                vec![p.id.clone()],
                Box::new(move |act, ctx, r| {
                    let _ = tx.send(r.map(|id| format!("{id} joined")));
                    act.retry_waiting(ctx);
                }),
            );
        } else if let Some(n) = self.config.nodes.iter().find(|n| n.id == msg.0) {
            let target = n.sip;
            self.invite(
                ctx,
                target,
                Box::new(move |_, _, r| {
                    let _ = tx.send(r.map(|id| format!("{id} joined")));
                }),
            );
        } else {
            let _ = tx.send(Err(format!(
                "no [[node]] or [[pool]] entry has id \"{}\"",
                msg.0
            )));
        }
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err("the control plane stopped".into()))
        })
    }
}

impl Handler<RemoveNode> for Control {
    type Result = Result<String, String>;

    fn handle(&mut self, msg: RemoveNode, ctx: &mut Context<Self>) -> Self::Result {
        if !self.view.is_primary() {
            return Err("only the primary removes nodes".into());
        }
        self.remove_node(ctx, &msg.0, "removed by the operator")
    }
}

impl Control {
    /// Ends `id`'s membership with BYE (primary).
    fn remove_node(
        &mut self,
        ctx: &mut Context<Self>,
        id: &str,
        why: &str,
    ) -> Result<String, String> {
        let Some(session) = self.sessions.get_mut(id) else {
            return Err(format!("{id} is not a member"));
        };
        let branch = dialog::new_branch();
        let bytes = session.dialog.request(
            Method::Bye,
            self.me.sip,
            &branch,
            &self.config.cluster.secret,
            &[],
            None,
        );
        let target = session.dialog.remote_target;
        let timeout = self.timeout();
        self.send_request(ctx, target, branch, bytes, timeout, Box::new(|_, _, _| {}));
        self.session_down(id, why);
        Ok(format!("{id} removed"))
    }
}

impl Handler<Drain> for Control {
    type Result = Result<usize, DrainError>;

    fn handle(&mut self, msg: Drain, ctx: &mut Context<Self>) -> Self::Result {
        self.drain(ctx, &msg.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_server_missing_from_the_state_is_gone_and_a_new_one_is_back() {
        let (gone, back) = server_changes(&set(&["p", "w", "x"]), &set(&["p", "w", "y"]), "w");
        assert_eq!(gone, ["x"]);
        assert_eq!(back, ["y"]);
        // Nothing changes: nothing to tell.
        let (gone, back) = server_changes(&set(&["p", "w"]), &set(&["p", "w"]), "w");
        assert!(gone.is_empty() && back.is_empty());
        // The first document lists everyone as new; this node is never reported.
        let (gone, back) = server_changes(&BTreeSet::new(), &set(&["p", "w"]), "w");
        assert!(gone.is_empty());
        assert_eq!(back, ["p"]);
        let (gone, _) = server_changes(&set(&["p", "w"]), &set(&["p"]), "w");
        assert!(
            gone.is_empty(),
            "the primary thinking us dead is not our death"
        );
    }
}
