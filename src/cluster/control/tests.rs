//! Scenario tests of the control plane: a primary's [`Plane`] driven on a virtual clock,
//! its peers simulated by signed requests and responses built with the same session code.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::allocator::Health;
use crate::cluster::ccmp::{
    self, CcmpRequest, CcmpResponse, Element, LoadLevel, Protocol, SysUser,
};
use crate::cluster::dialog::{self, Dialog};
use crate::cluster::record::UserRecord;
use crate::cluster::state::{ClusterState, Kind};
use crate::cluster::view::{ClusterView, NodeAddrs};
use crate::config::Config;
use crate::sip::message::{parse, Limits, Message, Method, Request, Response};

use super::context::{Records, Settings};
use super::effect::{Answer, Destination, Effect, HubCall, Ticket, Timer};
use super::error::ControlError;
use super::monitor::Live;
use super::plane::Plane;
use super::sessions::{self, Extra};

const SECRET: &str = "s";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `p` (primary, 10.0.0.1), workers `w1`, `w2` (10.0.0.2, .3) and, with `pool`, the pool
/// entry `pool1` (10.0.0.9); `extra` goes into `[cluster]`.
fn config(extra: &str, pool: bool) -> Arc<Config> {
    let node = |id: &str, role: &str, ip: &str| {
        format!(
            "[[node]]\nid = \"{id}\"\nrole = \"{role}\"\nsip = \"{ip}:5060\"\n\
             xmpp = \"{ip}:5222\"\nadmin = \"{ip}:5280\"\n"
        )
    };
    let mut text = format!(
        "[cluster]\nsecret = \"{SECRET}\"\nccmp_timeout_ms = 1000\nreport_interval_ms = 1000\n\
         min_load = 0\nscale_in_after_s = 0\n{extra}\n"
    );
    text += &node("p", "primary", "10.0.0.1");
    text += &node("w1", "worker", "10.0.0.2");
    text += &node("w2", "worker", "10.0.0.3");
    if pool {
        text += "[[pool]]\nid = \"pool1\"\nsip = \"10.0.0.9:5060\"\nxmpp = \"10.0.0.9:5222\"\n";
    }
    Arc::new(Config::parse(&text, std::path::Path::new("cluster.toml")).unwrap())
}

fn addrs(config: &Config, id: &str) -> NodeAddrs {
    if let Some(n) = config.nodes.iter().find(|n| n.id == id) {
        return NodeAddrs {
            id: id.into(),
            xmpp: n.xmpp,
            sip: n.sip,
        };
    }
    let p = config.pool.iter().find(|p| p.id == id).unwrap();
    NodeAddrs {
        id: id.into(),
        xmpp: p.xmpp,
        sip: p.sip,
    }
}

fn settings(config: &Arc<Config>, id: &str) -> Settings {
    Settings {
        config: config.clone(),
        me: addrs(config, id),
        admin: None,
        join: None,
    }
}

/// No accounts, no rosters: every user costs `weight_users`.
struct NoRecords;

impl Records for NoRecords {
    fn watched(&self, _: &str) -> u64 {
        0
    }
    fn export(&self, _: &str) -> Result<Option<UserRecord>, ControlError> {
        Ok(None)
    }
    fn import(&self, _: &str, _: &UserRecord) -> Result<(), ControlError> {
        Ok(())
    }
}

fn parse_message(bytes: &[u8]) -> Message {
    parse(
        bytes,
        &Limits {
            max_message_bytes: 1 << 20,
        },
    )
    .unwrap_or_else(|e| panic!("unparsable: {e:?}"))
}

fn request(bytes: &[u8]) -> Request {
    match parse_message(bytes) {
        Message::Request(r) => r,
        Message::Response(r) => panic!("a response: {}", r.status),
    }
}

fn response(bytes: &[u8]) -> Response {
    match parse_message(bytes) {
        Message::Response(r) => r,
        Message::Request(r) => panic!("a request: {}", r.method()),
    }
}

/// The requests among `effects`, with their targets.
fn sent(effects: &[Effect]) -> Vec<(SocketAddr, Request)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, bytes } => match parse_message(bytes) {
                Message::Request(r) => Some((*to, r)),
                Message::Response(_) => None,
            },
            _ => None,
        })
        .collect()
}

/// The requests of `method` among `effects` (ACKs left out unless asked for).
fn sent_of(effects: &[Effect], method: Method) -> Vec<(SocketAddr, Request)> {
    sent(effects)
        .into_iter()
        .filter(|(_, r)| *r.method() == method)
        .collect()
}

/// The responses to the request being handled.
fn responses(effects: &[Effect]) -> Vec<Response> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Respond(bytes) => Some(response(bytes)),
            _ => None,
        })
        .collect()
}

fn answers(effects: &[Effect]) -> Vec<(Ticket, &Answer)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Answer(t, a) => Some((*t, a)),
            _ => None,
        })
        .collect()
}

fn placed(effects: &[Effect], ticket: Ticket) -> Option<Destination> {
    answers(effects).into_iter().find_map(|(t, a)| match a {
        Answer::Placed(d) if t == ticket => Some(d.clone()),
        _ => None,
    })
}

fn ccmp_of(req: &Request) -> CcmpRequest {
    CcmpRequest::parse(req.body()).expect("a CCMP body")
}

/// The user of a `redirection-usr-addr` INFO and its `moved-from`.
fn reservation(req: &Request) -> Option<(String, Option<String>)> {
    ccmp_of(req).elements.into_iter().find_map(|e| match e {
        Element::RedirectionUsrAddr {
            user, moved_from, ..
        } => Some((user.split('@').next().unwrap().to_string(), moved_from)),
        _ => None,
    })
}

fn level(id: &str, level: u64, users: u64, version: u64) -> LoadLevel {
    LoadLevel {
        svr_id: id.into(),
        level,
        users,
        resources: 0,
        version,
    }
}

/// A primary's plane on a virtual clock; timers are kept and fired by [`Self::advance`].
struct Harness {
    config: Arc<Config>,
    plane: Plane,
    now: Instant,
    timers: Vec<(Instant, Timer)>,
    tickets: u64,
    /// What the start returned.
    started: Vec<Effect>,
}

impl Harness {
    fn primary(config: Arc<Config>) -> Self {
        Self::primary_with(config, Vec::new())
    }

    fn primary_with(config: Arc<Config>, directory: Vec<(String, String)>) -> Self {
        Self::node(config, "p", directory)
    }

    fn node(config: Arc<Config>, id: &str, directory: Vec<(String, String)>) -> Self {
        let now = Instant::now();
        let view = Arc::new(ClusterView::new(id, id == "p", true));
        let plane = Plane::new(settings(&config, id), view, Arc::new(NoRecords), now);
        let mut h = Harness {
            config,
            plane,
            now,
            timers: Vec::new(),
            tickets: 0,
            started: Vec::new(),
        };
        let effects = h.plane.start(directory, now);
        h.started = h.track(effects);
        h
    }

    /// Keeps the timers the effects arm and forgets those they cancel.
    fn track(&mut self, effects: Vec<Effect>) -> Vec<Effect> {
        for e in &effects {
            match e {
                Effect::Arm(t, after) => self.timers.push((self.now + *after, t.clone())),
                Effect::Cancel(id) => self.timers.retain(|(_, t)| *t != Timer::Client(*id)),
                _ => {}
            }
        }
        effects
    }

    /// Moves the clock on by `d`, firing every timer due on the way, in order.
    fn advance(&mut self, d: Duration) -> Vec<Effect> {
        let until = self.now + d;
        let mut all = Vec::new();
        loop {
            let next = self
                .timers
                .iter()
                .enumerate()
                .filter(|(_, (at, _))| *at <= until)
                .min_by_key(|(_, (at, _))| *at)
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            let (at, timer) = self.timers.remove(i);
            self.now = at;
            let effects = self.plane.on_timer(timer, at);
            all.extend(self.track(effects));
        }
        self.now = until;
        all
    }

    fn place(&mut self, user: &str) -> (Ticket, Vec<Effect>) {
        let ticket = Ticket(self.tickets);
        self.tickets += 1;
        let effects = self.plane.place(user, Protocol::Xmpp, ticket, self.now);
        (ticket, self.track(effects))
    }

    fn request(&mut self, bytes: &[u8]) -> Vec<Effect> {
        let effects = self.plane.on_request(request(bytes), true, self.now);
        self.track(effects)
    }

    fn respond(&mut self, resp: Response) -> Vec<Effect> {
        let effects = self.plane.on_response(resp, self.now);
        self.track(effects)
    }

    fn measure(&mut self, users: &[&str]) -> Vec<Effect> {
        let live: HashMap<String, Live> = users
            .iter()
            .map(|u| {
                (
                    u.to_string(),
                    Live {
                        sip_only: false,
                        resources: 0,
                    },
                )
            })
            .collect();
        let effects = self.plane.on_measured(live, self.now);
        self.track(effects)
    }

    fn health(&self, id: &str) -> Option<Health> {
        self.plane
            .shared()
            .primary
            .alloc
            .server(id)
            .map(|s| s.health)
    }

    fn home(&self, user: &str) -> Option<String> {
        self.plane
            .shared()
            .primary
            .alloc
            .home(user)
            .map(str::to_string)
    }
}

/// Another node, as the primary sees it: it joins, sends INFO, answers requests.
struct Peer {
    settings: Settings,
    dialog: Option<Dialog>,
    version: u64,
}

impl Peer {
    fn new(config: &Arc<Config>, id: &str) -> Self {
        Peer {
            settings: settings(config, id),
            dialog: None,
            version: 1,
        }
    }

    fn id(&self) -> &str {
        &self.settings.me.id
    }

    /// Joins the primary with an INVITE reporting `load` for `users`.
    fn join(&mut self, h: &mut Harness, load: u64, users: u64) -> Vec<Effect> {
        let elements = vec![
            Element::SvrInfo(self.settings.svr_info()),
            Element::PressvrLoad(vec![level(self.id(), load, users, self.version)]),
        ];
        let (mut d, invite) = sessions::invite(&self.settings, addr("10.0.0.1:5060"), elements);
        let effects = h.request(&invite.bytes);
        let ok = &responses(&effects)[0];
        assert_eq!(ok.status, 200, "{}", ok.reason);
        d.confirm(ok);
        self.dialog = Some(d);
        effects
    }

    /// An in-dialog INFO to the primary.
    fn info(&mut self, h: &mut Harness, elements: Vec<Element>) -> Vec<Effect> {
        let body = CcmpRequest::new(self.settings.conf_user(), "pressvr-load", elements).to_xml();
        let local = self.settings.local();
        let d = self.dialog.as_mut().expect("joined");
        let bytes = d.request(
            Method::Info,
            local,
            &dialog::new_branch(),
            SECRET,
            &[("Info-Package", ccmp::INFO_PACKAGE.into())],
            Some((ccmp::CONTENT_TYPE, bytes::Bytes::from(body))),
        );
        h.request(&bytes)
    }

    /// Reports `load` for `users` (and those users as `pres-sys-users`).
    fn report(&mut self, h: &mut Harness, load: u64, users: &[&str]) -> Vec<Effect> {
        self.version += 1;
        let present = users
            .iter()
            .map(|u| SysUser {
                user: u.to_string(),
                protocol: Protocol::Xmpp,
                resources: 0,
            })
            .collect();
        let elements = vec![
            Element::PressvrLoad(vec![level(
                &self.settings.me.id,
                load,
                users.len() as u64,
                self.version,
            )]),
            Element::PresSysUsers {
                svr_id: self.settings.me.id.clone(),
                full: true,
                present,
                gone: Vec::new(),
            },
        ];
        self.info(h, elements)
    }

    /// A signed CCMP 200 to the primary's `req`, reporting `load` when given.
    fn ok(&mut self, req: &Request, load: Option<u64>) -> Response {
        let mut elements = Vec::new();
        if *req.method() == Method::Invite {
            elements.push(Element::SvrInfo(self.settings.svr_info()));
        }
        if let Some(load) = load {
            self.version += 1;
            elements.push(Element::PressvrLoad(vec![level(
                &self.settings.me.id,
                load,
                load,
                self.version,
            )]));
        }
        let extension = CcmpRequest::parse(req.body())
            .map(|r| r.extension)
            .unwrap_or_default();
        let body = CcmpResponse::ok(self.settings.conf_user(), extension, elements).to_xml();
        let extra = Extra {
            headers: vec![(
                "Contact",
                format!("<{}>", dialog::cluster_uri(self.settings.local())),
            )],
            body: Some(body),
            ..Default::default()
        };
        response(&sessions::respond(SECRET, req, 200, "OK", extra))
    }

    /// A signed 200 without a body (OPTIONS, NOTIFY).
    fn bare_ok(&self, req: &Request) -> Response {
        response(&sessions::respond(SECRET, req, 200, "OK", Extra::signed()))
    }

    /// A signed CCMP refusal.
    fn refuse(&self, req: &Request, code: u16) -> Response {
        response(&sessions::refuse(&self.settings, req, code, "no", ""))
    }
}

/// A primary (max_load 2) with sessions with `w1` and `w2`.
fn primary_and_workers(extra: &str, pool: bool) -> (Harness, Peer, Peer) {
    let config = config(extra, pool);
    let mut h = Harness::primary(config.clone());
    let (mut w1, mut w2) = (Peer::new(&config, "w1"), Peer::new(&config, "w2"));
    w1.join(&mut h, 0, 0);
    w2.join(&mut h, 0, 0);
    (h, w1, w2)
}

// ---- placement ---------------------------------------------------------------------------

#[test]
fn placement_serves_locally_while_the_primary_fits_then_redirects_after_the_200() {
    let (mut h, mut w1, _w2) = primary_and_workers("max_load = 2", false);
    for user in ["u1", "u2"] {
        let (t, effects) = h.place(user);
        assert_eq!(placed(&effects, t), Some(Destination::Local), "{user}");
        assert!(effects.contains(&Effect::PersistHome {
            user: user.into(),
            server: "p".into()
        }));
        assert!(effects.contains(&Effect::Hub(HubCall::HomeChanged(user.into()))));
        assert!(sent(&effects).is_empty(), "a local placement sends nothing");
    }
    assert_eq!(h.plane.shared().view.home("u1").as_deref(), Some("p"));
    // The primary is full: the least loaded worker (ties: the smallest id) reserves u3
    // first; the client is redirected only after its 200.
    let (t, effects) = h.place("u3");
    assert_eq!(placed(&effects, t), None);
    let infos = sent_of(&effects, Method::Info);
    assert_eq!(infos.len(), 1);
    let (to, req) = &infos[0];
    assert_eq!(*to, addr("10.0.0.2:5060"));
    assert_eq!(reservation(req), Some(("u3".into(), None)));
    assert_eq!(h.home("u3"), None, "not placed before the 200");
    let ok = w1.ok(req, Some(1));
    let effects = h.respond(ok);
    assert_eq!(
        placed(&effects, t),
        Some(Destination::Redirect(addrs(&h.config, "w1")))
    );
    assert!(effects.contains(&Effect::PersistHome {
        user: "u3".into(),
        server: "w1".into()
    }));
    assert_eq!(h.home("u3").as_deref(), Some("w1"));
    // The load w1 reported with its 200 counts at once.
    assert_eq!(h.plane.shared().primary.alloc.server("w1").unwrap().load, 1);
    assert_eq!(h.plane.requests_in_flight(), 0);
}

#[test]
fn a_second_request_for_the_same_user_waits_for_the_same_answer() {
    let (mut h, mut w1, _w2) = primary_and_workers("max_load = 1", false);
    let (t0, _) = h.place("u0");
    let (t1, first) = h.place("u1");
    let (t2, second) = h.place("u1");
    assert_ne!(t0, t1);
    assert_eq!(sent_of(&first, Method::Info).len(), 1);
    assert!(sent(&second).is_empty(), "no second reservation");
    let req = sent_of(&first, Method::Info).remove(0).1;
    let effects = h.respond(w1.ok(&req, Some(1)));
    let to = Some(Destination::Redirect(addrs(&h.config, "w1")));
    assert_eq!(placed(&effects, t1), to);
    assert_eq!(placed(&effects, t2), to);
}

#[test]
fn a_server_timing_out_is_suspect_and_the_next_one_is_tried() {
    let (mut h, mut w1, mut w2) = primary_and_workers("max_load = 1", false);
    h.place("u0"); // the primary is full
    let (t, effects) = h.place("u1");
    let (_, to_w1) = sent_of(&effects, Method::Info).remove(0);
    // w1 stays silent past ccmp_timeout_ms (virtual clock).
    assert!(h.advance(Duration::from_millis(999)).is_empty());
    let effects = h.advance(Duration::from_millis(1));
    assert_eq!(h.health("w1"), Some(Health::Suspect));
    let infos = sent_of(&effects, Method::Info);
    assert_eq!(infos.len(), 1, "the next server");
    let (to, to_w2) = &infos[0];
    assert_eq!(*to, addr("10.0.0.3:5060"));
    assert_eq!(reservation(to_w2), Some(("u1".into(), None)));
    // w1's late answer is ignored.
    let late = h.respond(w1.ok(&to_w1, Some(1)));
    assert!(late.is_empty(), "{late:?}");
    let effects = h.respond(w2.ok(to_w2, Some(1)));
    assert_eq!(
        placed(&effects, t),
        Some(Destination::Redirect(addrs(&h.config, "w2")))
    );
    assert_eq!(h.home("u1").as_deref(), Some("w2"));
}

#[test]
fn a_refusal_tries_the_next_server_without_suspicion() {
    let (mut h, w1, mut w2) = primary_and_workers("max_load = 1", false);
    h.place("u0");
    let (t, effects) = h.place("u1");
    let (_, req) = sent_of(&effects, Method::Info).remove(0);
    let effects = h.respond(w1.refuse(&req, 409));
    assert_eq!(h.health("w1"), Some(Health::Active));
    let (to, req) = sent_of(&effects, Method::Info).remove(0);
    assert_eq!(to, addr("10.0.0.3:5060"));
    let effects = h.respond(w2.ok(&req, None));
    assert_eq!(
        placed(&effects, t),
        Some(Destination::Redirect(addrs(&h.config, "w2")))
    );
}

#[test]
fn every_server_full_and_no_pool_places_on_the_least_loaded_anyway() {
    let (mut h, mut w1, mut w2) = primary_and_workers("max_load = 1", false);
    h.place("u0");
    h.measure(&["u0", "a", "b", "c"]);
    w1.report(&mut h, 3, &[]);
    w2.report(&mut h, 2, &[]);
    let (t, effects) = h.place("u1");
    let (to, req) = sent_of(&effects, Method::Info).remove(0);
    assert_eq!(to, addr("10.0.0.3:5060"), "w2 is the least loaded");
    let effects = h.respond(w2.ok(&req, Some(3)));
    assert_eq!(
        placed(&effects, t),
        Some(Destination::Redirect(addrs(&h.config, "w2")))
    );
}

#[test]
fn every_server_full_takes_a_pool_server_then_places_the_user_there() {
    let (mut h, mut w1, mut w2) = primary_and_workers("max_load = 1", true);
    h.place("u0");
    w1.report(&mut h, 1, &[]);
    w2.report(&mut h, 1, &[]);
    let mut pool1 = Peer::new(&h.config, "pool1");
    let (t, effects) = h.place("u1");
    // The pool entry is probed first.
    let (to, options) = sent_of(&effects, Method::Options).remove(0);
    assert_eq!(to, addr("10.0.0.9:5060"));
    assert!(h.plane.shared().primary.alloc.server("pool1").is_none());
    let effects = h.respond(pool1.bare_ok(&options));
    // It answers: INVITEd.
    let (_, invite) = sent_of(&effects, Method::Invite).remove(0);
    let effects = h.respond(pool1.ok(&invite, Some(0)));
    // ACKed, a member now, and the waiting user's reservation goes to it.
    assert_eq!(sent_of(&effects, Method::Ack).len(), 1);
    assert!(h.plane.shared().sessions.contains("pool1"));
    assert!(h.plane.shared().primary.alloc.pool().is_empty());
    let (to, req) = sent_of(&effects, Method::Info).remove(0);
    assert_eq!(to, addr("10.0.0.9:5060"));
    assert_eq!(reservation(&req), Some(("u1".into(), None)));
    let effects = h.respond(pool1.ok(&req, Some(1)));
    assert_eq!(
        placed(&effects, t),
        Some(Destination::Redirect(addrs(&h.config, "pool1")))
    );
}

#[test]
fn a_silent_pool_exhausts_the_pool_for_a_while_and_the_user_is_placed_anyway() {
    let (mut h, mut w1, mut w2) = primary_and_workers("max_load = 1", true);
    h.place("u0");
    w1.report(&mut h, 1, &[]);
    w2.report(&mut h, 2, &[]);
    let (t, effects) = h.place("u1");
    assert_eq!(sent_of(&effects, Method::Options).len(), 1);
    // No answer within min(ccmp_timeout_ms, 1 s), and nothing to spawn.
    let effects = h.advance(Duration::from_millis(1000));
    assert!(h.plane.shared().primary.alloc.pool().is_empty());
    let (to, req) = sent_of(&effects, Method::Info).remove(0);
    assert_eq!(to, addr("10.0.0.2:5060"), "overloaded: the least loaded");
    let effects = h.respond(w1.ok(&req, Some(2)));
    assert_eq!(
        placed(&effects, t),
        Some(Destination::Redirect(addrs(&h.config, "w1")))
    );
    // The pool gets another chance later.
    h.advance(super::placement::POOL_RETRY);
    assert_eq!(h.plane.shared().primary.alloc.pool(), ["pool1"]);
}

// ---- moves -------------------------------------------------------------------------------

#[test]
fn a_drain_moves_every_user_retries_the_failures_then_ends_with_bye_and_release() {
    let config = config("max_load = 2", false);
    let directory = vec![
        ("u1".to_string(), "w1".to_string()),
        ("u2".to_string(), "w1".to_string()),
    ];
    let mut h = Harness::primary_with(config.clone(), directory);
    let (mut w1, mut w2) = (Peer::new(&config, "w1"), Peer::new(&config, "w2"));
    w1.join(&mut h, 2, 2);
    w2.join(&mut h, 0, 0);
    // The primary is full: the users go to w2.
    h.place("p1");
    h.place("p2");
    let (result, effects) = h.plane.drain("w1", h.now);
    let effects = h.track(effects);
    assert_eq!(result, Ok(2));
    assert!(h.plane.is_draining("w1"));
    let reservations = sent_of(&effects, Method::Info);
    assert_eq!(reservations.len(), 2, "both moves start at once");
    for (to, req) in &reservations {
        assert_eq!(*to, addr("10.0.0.3:5060"));
        assert_eq!(reservation(req).unwrap().1.as_deref(), Some("w1"));
    }
    // Nobody is placed on a draining server.
    let (t, effects) = h.place("new");
    let (to, req) = sent_of(&effects, Method::Info).remove(0);
    assert_eq!(to, addr("10.0.0.3:5060"));
    let effects = h.respond(w2.ok(&req, Some(1)));
    assert_eq!(
        placed(&effects, t),
        Some(Destination::Redirect(addrs(&config, "w2")))
    );
    // u1's reservation succeeds: the directory names w2, then w1 evicts u1.
    let (_, r1) = &reservations[0];
    let effects = h.respond(w2.ok(r1, Some(1)));
    assert_eq!(h.home("u1").as_deref(), Some("w2"));
    let (to, migrate) = sent_of(&effects, Method::Info).remove(0);
    assert_eq!(to, addr("10.0.0.2:5060"));
    assert!(ccmp_of(&migrate)
        .elements
        .iter()
        .any(|e| matches!(e, Element::MigrateUser { svr_id, .. } if svr_id == "w2")));
    h.respond(w1.ok(&migrate, Some(1)));
    // u2's is refused: it stays, and the drain retries it after DRAIN_RETRY.
    let (_, r2) = &reservations[1];
    let effects = h.respond(w2.refuse(r2, 409));
    assert!(sent(&effects).is_empty());
    assert_eq!(h.home("u2").as_deref(), Some("w1"));
    let effects = h.advance(super::moves::DRAIN_RETRY);
    let (to, again) = sent_of(&effects, Method::Info).remove(0);
    assert_eq!(to, addr("10.0.0.3:5060"));
    assert_eq!(reservation(&again), Some(("u2".into(), Some("w1".into()))));
    let effects = h.respond(w2.ok(&again, Some(2)));
    let (_, migrate) = sent_of(&effects, Method::Info).remove(0);
    // The last move ends: BYE, the session and the server are gone, and the worker is a
    // pool candidate from then on.
    let effects = h.respond(w1.ok(&migrate, Some(0)));
    let byes = sent_of(&effects, Method::Bye);
    assert_eq!(byes.len(), 1);
    assert_eq!(byes[0].0, addr("10.0.0.2:5060"));
    assert!(effects.contains(&Effect::Hub(HubCall::NodeDown("w1".into()))));
    assert!(!h.plane.shared().sessions.contains("w1"));
    assert!(h.plane.shared().primary.alloc.server("w1").is_none());
    assert!(!h.plane.is_draining("w1"));
    assert_eq!(h.plane.shared().primary.alloc.pool(), ["w1"]);
    assert_eq!(h.plane.shared().primary.alloc.users_homed("w1"), 0);
}

#[test]
fn a_drain_is_refused_for_the_primary_an_unknown_node_and_the_last_server() {
    let (mut h, _w1, _w2) = primary_and_workers("max_load = 2", false);
    let now = h.now;
    assert!(matches!(
        h.plane.drain("p", now).0,
        Err(super::moves::DrainError::Conflict(_))
    ));
    assert_eq!(
        h.plane.drain("nope", now).0,
        Err(super::moves::DrainError::Unknown("nope".into()))
    );
    assert_eq!(h.plane.drain("w1", now).0, Ok(0));
    // Nothing to move: w1 is done at once.
    assert!(!h.plane.shared().sessions.contains("w1"));
    assert_eq!(h.plane.drain("w2", now).0, Ok(0));
    let config = config("max_load = 2", false);
    let mut alone = Harness::primary(config.clone());
    let mut w1 = Peer::new(&config, "w1");
    w1.join(&mut alone, 0, 0);
    let now = alone.now;
    // The primary is alive: w1 is not the last server.
    assert_eq!(alone.plane.drain("w1", now).0, Ok(0));
}

#[test]
fn a_pool_server_that_joins_because_all_are_full_takes_users_up_to_the_mean() {
    let config = config("max_load = 6", true);
    let directory: Vec<(String, String)> = (1..=6)
        .map(|i| (format!("v{i}"), "w1".to_string()))
        .collect();
    let mut h = Harness::primary_with(config.clone(), directory);
    let mut w1 = Peer::new(&config, "w1");
    w1.join(&mut h, 6, 6);
    w1.report(&mut h, 6, &["v1", "v2", "v3", "v4", "v5", "v6"]);
    // The primary holds u1..u6, online.
    let local: Vec<String> = (1..=6).map(|i| format!("u{i}")).collect();
    for u in &local {
        h.place(u);
    }
    let online: Vec<&str> = local.iter().map(String::as_str).collect();
    h.measure(&online);
    // x finds everyone full: pool1 is taken.
    let mut pool1 = Peer::new(&config, "pool1");
    let (t, effects) = h.place("x");
    let (_, options) = sent_of(&effects, Method::Options).remove(0);
    let effects = h.respond(pool1.bare_ok(&options));
    let (_, invite) = sent_of(&effects, Method::Invite).remove(0);
    let effects = h.respond(pool1.ok(&invite, Some(0)));
    let infos = sent_of(&effects, Method::Info);
    // x's reservation, then the moves: loads 6, 6 and 1 (x pending) make a mean of 4, so
    // pool1 takes 3 users, the most loaded server giving first (ties: the smallest id).
    let mut reservations: Vec<(String, Option<String>)> =
        infos.iter().filter_map(|(_, r)| reservation(r)).collect();
    assert_eq!(reservations.remove(0), ("x".into(), None));
    let from: Vec<Option<String>> = reservations.iter().map(|(_, f)| f.clone()).collect();
    assert_eq!(
        from,
        [Some("p".into()), Some("p".into()), Some("w1".into())],
        "{reservations:?}"
    );
    assert!(infos.iter().all(|(to, _)| *to == addr("10.0.0.9:5060")));
    // pool1 accepts them all; the users from the primary are evicted here, the one from
    // w1 by migrate-user.
    let mut later = Vec::new();
    for (_, req) in &infos {
        later.extend(h.respond(pool1.ok(req, None)));
    }
    assert_eq!(
        placed(&later, t),
        Some(Destination::Redirect(addrs(&config, "pool1")))
    );
    let evicted = later
        .iter()
        .filter(|e| matches!(e, Effect::Hub(HubCall::Evict { .. })))
        .count();
    assert_eq!(evicted, 2);
    let migrations = sent_of(&later, Method::Info);
    assert_eq!(migrations.len(), 1);
    assert_eq!(migrations[0].0, addr("10.0.0.2:5060"));
    assert_eq!(
        h.plane.shared().primary.alloc.users_homed("pool1"),
        4,
        "x and three moved users: the mean load"
    );
}

// ---- the state publisher -----------------------------------------------------------------

/// A SUBSCRIBE of member `w1` to the cluster state.
fn subscribe(config: &Arc<Config>) -> (Dialog, Vec<u8>) {
    let local = addr("10.0.0.2:5060");
    let mut d = Dialog::outgoing(local, addr("10.0.0.1:5060"));
    let bytes = d.request(
        Method::Subscribe,
        local,
        &dialog::new_branch(),
        &config.cluster.secret,
        &[("Event", "presence".into()), ("Expires", "3600".into())],
        None,
    );
    (d, bytes.to_vec())
}

fn notify_doc(req: &Request) -> ClusterState {
    ClusterState::parse(req.body()).expect("a cluster state document")
}

#[test]
fn the_snapshot_goes_in_bounded_chunks_each_after_the_previous_200() {
    let config = config("max_load = 1000\nstate_chunk_bytes = 2048", false);
    let directory: Vec<(String, String)> = (0..120)
        .map(|i| (format!("user{i:03}"), "p".to_string()))
        .collect();
    let mut h = Harness::primary_with(config.clone(), directory);
    let w1 = Peer::new(&config, "w1");
    let (_, bytes) = subscribe(&config);
    let effects = h.request(&bytes);
    assert_eq!(responses(&effects)[0].status, 200);
    assert_eq!(h.plane.watchers(), 1);
    let mut notifies = sent_of(&effects, Method::Notify);
    let mut chunks = Vec::new();
    loop {
        assert_eq!(notifies.len(), 1, "one NOTIFY in flight at a time");
        let (to, req) = notifies.remove(0);
        assert_eq!(to, addr("10.0.0.2:5060"));
        assert!(
            req.body().len() <= 2048,
            "a chunk of {} bytes",
            req.body().len()
        );
        let doc = notify_doc(&req);
        assert_eq!(doc.kind, Kind::Full);
        chunks.push((doc.chunk, doc.chunks));
        // Nothing more goes before the 200, even as time passes (under the deadline).
        assert!(sent(&h.advance(Duration::from_millis(500))).is_empty());
        let effects = h.respond(w1.bare_ok(&req));
        notifies = sent_of(&effects, Method::Notify);
        if notifies.is_empty() {
            break;
        }
    }
    let n = chunks[0].1;
    assert!(n > 1, "120 users do not fit in 2048 bytes");
    assert_eq!(
        chunks,
        (1..=n).map(|i| (i, n)).collect::<Vec<_>>(),
        "every chunk, in order"
    );
    // A later change goes as a delta.
    h.place("late");
    let effects = h.measure(&[]);
    let (_, req) = sent_of(&effects, Method::Notify).remove(0);
    let doc = notify_doc(&req);
    assert_eq!(doc.kind, Kind::Delta);
    assert!(doc
        .users
        .iter()
        .any(|s| s.users.iter().any(|u| u.user_id == "late")));
}

#[test]
fn a_failed_watcher_gets_a_fresh_snapshot_and_is_dropped_after_the_max_failures() {
    let config = config("max_load = 1000", false);
    let mut h = Harness::primary_with(config.clone(), vec![("a".into(), "p".into())]);
    let w1 = Peer::new(&config, "w1");
    let (_, bytes) = subscribe(&config);
    let effects = h.request(&bytes);
    let (_, first) = sent_of(&effects, Method::Notify).remove(0);
    h.respond(w1.bare_ok(&first));
    // A delta is lost (no answer within ccmp_timeout_ms).
    h.place("b");
    let effects = h.measure(&[]);
    let (_, delta) = sent_of(&effects, Method::Notify).remove(0);
    assert_eq!(notify_doc(&delta).kind, Kind::Delta);
    let effects = h.advance(Duration::from_millis(1000));
    assert!(
        sent(&effects).is_empty(),
        "the snapshot waits for STATE_RETRY"
    );
    let effects = h.advance(super::publisher::STATE_RETRY);
    let (_, again) = sent_of(&effects, Method::Notify).remove(0);
    let doc = notify_doc(&again);
    assert_eq!((doc.kind, doc.chunk), (Kind::Full, 1), "a fresh snapshot");
    assert!(doc
        .users
        .iter()
        .any(|s| s.users.iter().any(|u| u.user_id == "b")));
    // Two more failures in a row (STATE_MAX_FAILURES = 3): dropped.
    let effects = h.respond(w1.refuse(&again, 500));
    assert!(sent(&effects).is_empty());
    assert_eq!(h.plane.watchers(), 1);
    let effects = h.advance(super::publisher::STATE_RETRY);
    let (_, third) = sent_of(&effects, Method::Notify).remove(0);
    h.advance(Duration::from_millis(1000));
    assert_eq!(h.plane.watchers(), 0);
    assert!(h.advance(Duration::from_secs(5)).is_empty());
    // Its late answer changes nothing.
    assert!(sent(&h.respond(w1.bare_ok(&third))).is_empty());
}

#[test]
fn a_watcher_answering_481_is_dropped_at_once() {
    let config = config("max_load = 1000", false);
    let mut h = Harness::primary(config.clone());
    let (_, bytes) = subscribe(&config);
    let effects = h.request(&bytes);
    let (_, first) = sent_of(&effects, Method::Notify).remove(0);
    let gone = response(&sessions::respond(
        SECRET,
        &first,
        481,
        "Call/Transaction Does Not Exist",
        Extra::default(),
    ));
    h.respond(gone);
    assert_eq!(h.plane.watchers(), 0);
}

// ---- requests ----------------------------------------------------------------------------

#[test]
fn unsigned_and_udp_requests_are_refused() {
    let config = config("max_load = 2", false);
    let mut h = Harness::primary(config.clone());
    let w1 = Peer::new(&config, "w1");
    let elements = vec![Element::SvrInfo(w1.settings.svr_info())];
    let mut other = w1.settings.clone();
    let mut cfg = (*config).clone();
    cfg.cluster.secret = "wrong".into();
    other.config = Arc::new(cfg);
    let (_, invite) = sessions::invite(&other, addr("10.0.0.1:5060"), elements.clone());
    let effects = h.request(&invite.bytes);
    assert_eq!(responses(&effects)[0].status, 403);
    assert!(!h.plane.shared().sessions.contains("w1"));
    let (_, invite) = sessions::invite(&w1.settings, addr("10.0.0.1:5060"), elements);
    let effects = h.plane.on_request(request(&invite.bytes), false, h.now);
    assert_eq!(responses(&effects)[0].status, 403);
    let effects = h.request(&invite.bytes);
    assert_eq!(responses(&effects)[0].status, 200);
    assert!(h.plane.shared().sessions.contains("w1"));
}

// ---- the member side ---------------------------------------------------------------------

#[test]
fn a_member_joins_with_backoff_and_stops_when_refused() {
    let config = config("max_load = 2", false);
    let mut h = Harness::node(config.clone(), "w1", Vec::new());
    let invites = |effects: &[Effect]| sent_of(effects, Method::Invite);
    // The INVITE of the start goes unanswered; the joins back off: 1 s, then 2 s.
    assert_eq!(h.timers.len(), 2, "the CCMP deadline and timer B");
    assert!(invites(&h.advance(Duration::from_millis(1000))).is_empty());
    assert_eq!(invites(&h.advance(super::member::JOIN_BACKOFF)).len(), 1);
    h.advance(Duration::from_millis(1000));
    assert!(invites(&h.advance(Duration::from_millis(1999))).is_empty());
    let effects = h.advance(Duration::from_millis(1));
    let (to, invite) = invites(&effects).remove(0);
    assert_eq!(to, addr("10.0.0.1:5060"));
    // The primary refuses us: no more joins.
    let p = Peer::new(&config, "p");
    h.respond(response(&sessions::refuse(
        &p.settings,
        &invite,
        403,
        "bad",
        "",
    )));
    assert!(invites(&h.advance(Duration::from_secs(60))).is_empty());
    assert!(!h.plane.shared().view.joined());
}

#[test]
fn a_member_joins_subscribes_follows_the_state_and_reserves_users() {
    let config = config("max_load = 2", false);
    let mut h = Harness::node(config.clone(), "w1", Vec::new());
    let mut p = Peer::new(&config, "p");
    // Not joined: nothing to write through to.
    let effects = h.plane.write_through("u", Ticket(90), h.now);
    assert!(answers(&effects).iter().any(
        |(t, a)| *t == Ticket(90) && **a == Answer::WriteThrough(Err(ControlError::NotJoined))
    ));
    // The start's INVITE is answered: ACK, member, and the state subscription goes out.
    let (_, invite) = sent_of(&h.started, Method::Invite).remove(0);
    let ok = p.ok(&invite, Some(0));
    let tag = ok.base.to.tag().unwrap().to_string();
    let effects = h.respond(ok);
    assert_eq!(sent_of(&effects, Method::Ack).len(), 1);
    assert!(h.plane.shared().view.joined());
    assert_eq!(h.plane.node_figures()["primary"], "p");
    let (to, sub) = sent_of(&effects, Method::Subscribe).remove(0);
    assert_eq!(to, addr("10.0.0.1:5060"));
    h.respond(p.bare_ok(&sub));
    // The primary's snapshot: a on w2, b on w1; servers p, w1, w2.
    let mut notify_dialog = Dialog::incoming(&sub, addr("10.0.0.2:5060"), "n1");
    let mut notify = |h: &mut Harness, doc: &ClusterState| {
        let body = doc.to_xml(&h.plane.shared().settings.state_entity());
        let bytes = notify_dialog.request(
            Method::Notify,
            addr("10.0.0.1:5060"),
            &dialog::new_branch(),
            SECRET,
            &[("Event", "presence".into())],
            Some((crate::pidf::CONTENT_TYPE, bytes::Bytes::from(body))),
        );
        h.request(&bytes)
    };
    let mut primary = Harness::primary_with(
        config.clone(),
        vec![("a".into(), "w2".into()), ("b".into(), "w1".into())],
    );
    let (mut pw1, mut pw2) = (Peer::new(&config, "w1"), Peer::new(&config, "w2"));
    pw1.join(&mut primary, 0, 0);
    pw2.join(&mut primary, 0, 0);
    let effects = notify(&mut h, &primary.plane.state());
    assert_eq!(responses(&effects)[0].status, 200);
    assert!(effects.contains(&Effect::Hub(HubCall::HomeChanged("a".into()))));
    assert_eq!(h.plane.shared().view.home("a").as_deref(), Some("w2"));
    assert_eq!(h.plane.state().users.len(), 2);
    // w2 leaves the primary's list: it is dead to this member too.
    let (removed, _) = primary.plane.remove_node("w2", primary.now);
    assert!(removed.is_ok());
    let mut delta = primary.plane.state();
    delta.kind = Kind::Delta;
    delta.users.clear();
    let effects = notify(&mut h, &delta);
    assert!(effects.contains(&Effect::Hub(HubCall::NodeDown("w2".into()))));
    assert!(h.plane.shared().view.is_dead("w2"));
    // The primary reserves u here (two-phase placement): counted at once, served here.
    let mut from_primary = Dialog::incoming(&invite, addr("10.0.0.2:5060"), &tag);
    let body = CcmpRequest::new(
        p.settings.conf_user(),
        "redirection-usr-addr",
        vec![Element::RedirectionUsrAddr {
            user: "u@localhost".into(),
            protocol: Protocol::Xmpp,
            resources: 2,
            record: None,
            moved_from: None,
        }],
    )
    .to_xml();
    let info = from_primary.request(
        Method::Info,
        addr("10.0.0.1:5060"),
        &dialog::new_branch(),
        SECRET,
        &[("Info-Package", ccmp::INFO_PACKAGE.into())],
        Some((ccmp::CONTENT_TYPE, bytes::Bytes::from(body))),
    );
    let effects = h.request(&info);
    let ok = &responses(&effects)[0];
    assert_eq!(ok.status, 200);
    let answer = super::client::ccmp_body(SECRET, ok).unwrap();
    assert!(
        matches!(&answer.elements[0], Element::PressvrLoad(l) if l[0].level == 3 && l[0].users == 1)
    );
    assert!(effects.contains(&Effect::Hub(HubCall::HomeChanged("u".into()))));
    assert_eq!(
        h.plane.shared().view.locate("u"),
        crate::cluster::view::Locate::Local
    );
    // A write-through of a user without an account fails at once.
    let effects = h.plane.write_through("nobody", Ticket(91), h.now);
    assert!(answers(&effects)
        .iter()
        .any(|(_, a)| **a == Answer::WriteThrough(Err(ControlError::NoAccount))));
}
