//! `Control`: the control actor of one node (DESIGN.md §2 `CcmpSession`, `LoadMonitor`,
//! `Allocator`), a thin shell around the sans-IO [`Plane`]. It turns actix messages into the
//! plane's inputs, with the time, and performs the [`Effect`]s the plane returns: SIP out
//! through the [`SipSender`], timers as actix timers, calls into the presence [`Hub`],
//! directory rows into the store, operator commands, answers to waiting callers. Every
//! decision is the plane's.
//!
//! Control traffic is low-rate (a report per node and interval, one reservation per
//! placement), so one actor per node is enough.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::cluster::control::effect::{
    Answer, Command, Destination, Effect, HubCall, Ticket, Timer, TimerId,
};
use crate::cluster::control::{ControlError, DrainError, Live, Plane, Records, Settings};
use crate::cluster::record::UserRecord;
use crate::presence::placement::{Place, Placed};
use crate::presence::{Hub, LiveUser, LoadQuery, WriteThrough};
use crate::sip::message::Message as SipMessage;
use crate::sip::transport::{Incoming, Peer, SipSender};
use crate::store::{transfer, Records as _, Space, Store};
use crate::xmpp::subscription::Subscription;

use super::dispatch::ControlIn;

/// The control actor's mailbox: control traffic is low-rate, but a burst of logins on the
/// primary asks for many placements at once.
const MAILBOX: usize = 4096;

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

/// The user records of the store, as the plane reads and writes them (DESIGN.md §3).
struct StoreRecords(Arc<dyn Store>);

impl Records for StoreRecords {
    fn watched(&self, user: &str) -> u64 {
        self.0
            .roster(user)
            .map(|r| {
                r.items
                    .values()
                    .filter(|i| matches!(i.subscription, Subscription::To | Subscription::Both))
                    .count() as u64
            })
            .unwrap_or(0)
    }

    fn export(&self, user: &str) -> Result<Option<UserRecord>, ControlError> {
        transfer::export(&*self.0, user).map_err(|e| ControlError::Store(e.to_string()))
    }

    fn import(&self, user: &str, record: &UserRecord) -> Result<(), ControlError> {
        transfer::import_authoritative(&*self.0, user, record)
            .map_err(|e| ControlError::Store(e.to_string()))
    }
}

/// A caller waiting for the plane's [`Answer`].
enum Waiter {
    Place(oneshot::Sender<Placed>),
    Admin(oneshot::Sender<Result<String, String>>),
    WriteThrough(oneshot::Sender<Result<(), ControlError>>),
}

/// The control actor.
pub struct Control {
    plane: Plane,
    hub: Hub,
    store: Arc<dyn Store>,
    sender: SipSender,
    report_interval: Duration,
    /// Armed client-transaction timers, to cancel.
    timers: HashMap<TimerId, SpawnHandle>,
    waiters: HashMap<Ticket, Waiter>,
    next_ticket: u64,
    /// A measurement of the presence core is under way.
    measuring: bool,
}

impl Control {
    /// A control actor for a node.
    pub fn new(
        settings: Settings,
        view: Arc<crate::cluster::view::ClusterView>,
        hub: Hub,
        store: Arc<dyn Store>,
        sender: SipSender,
    ) -> Control {
        let report_interval = Duration::from_millis(settings.cluster().report_interval_ms);
        let records = Arc::new(StoreRecords(store.clone()));
        Control {
            plane: Plane::new(settings, view, records, Instant::now()),
            hub,
            store,
            sender,
            report_interval,
            timers: HashMap::new(),
            waiters: HashMap::new(),
            next_ticket: 0,
            measuring: false,
        }
    }

    fn ticket(&mut self, waiter: Waiter) -> Ticket {
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.waiters.insert(ticket, waiter);
        ticket
    }

    /// Performs the plane's effects in order; `peer` is where the request being handled
    /// came from (its responses go back there).
    fn perform(&mut self, ctx: &mut Context<Self>, effects: Vec<Effect>, peer: Option<Peer>) {
        for effect in effects {
            match effect {
                Effect::Send { to, bytes } => {
                    if !self.sender.send(Peer::Tcp(to), bytes) {
                        debug!(target = %to, "control request not queued");
                    }
                }
                Effect::Respond(bytes) => match peer {
                    Some(peer) => {
                        self.sender.send(peer, bytes);
                    }
                    None => debug!("a control response without a request dropped"),
                },
                Effect::Arm(timer, after) => {
                    let id = match &timer {
                        Timer::Client(id) => Some(*id),
                        _ => None,
                    };
                    let handle = ctx.run_later(after, move |act, ctx| {
                        if let Timer::Client(id) = &timer {
                            act.timers.remove(id);
                        }
                        let effects = act.plane.on_timer(timer, Instant::now());
                        act.perform(ctx, effects, None);
                    });
                    if let Some(id) = id {
                        self.timers.insert(id, handle);
                    }
                }
                Effect::Cancel(id) => {
                    if let Some(handle) = self.timers.remove(&id) {
                        ctx.cancel_future(handle);
                    }
                }
                Effect::Hub(call) => match call {
                    HubCall::HomeChanged(user) => self.hub.home_changed(&user),
                    HubCall::NodeDown(node) => self.hub.node_down(&node),
                    HubCall::Arriving { user, base } => self.hub.arriving(&user, base),
                    HubCall::Evict { user, to } => self.hub.evict(&user, to),
                },
                Effect::PersistHome { user, server } => {
                    if let Err(e) =
                        self.store
                            .put(Space::Directory, user.as_bytes(), server.as_bytes())
                    {
                        error!(error = %e, %user, "directory write failed");
                    }
                }
                Effect::Run {
                    node,
                    command,
                    kind,
                } => {
                    let result = run_command(&command);
                    match kind {
                        Command::Spawn => {
                            let result = result.map_err(|e| e.to_string());
                            let effects = self.plane.on_spawned(&node, result, Instant::now());
                            self.perform(ctx, effects, None);
                        }
                        Command::Stop => {
                            if let Err(e) = result {
                                warn!(node = %node, error = %e, "stop command failed");
                            }
                        }
                    }
                }
                Effect::Answer(ticket, answer) => self.answer(ticket, answer),
            }
        }
    }

    fn answer(&mut self, ticket: Ticket, answer: Answer) {
        let Some(waiter) = self.waiters.remove(&ticket) else {
            return;
        };
        match (waiter, answer) {
            (Waiter::Place(tx), Answer::Placed(to)) => {
                let _ = tx.send(match to {
                    Destination::Local => Placed::Local,
                    Destination::Redirect(addrs) => Placed::Redirect(addrs),
                });
            }
            (Waiter::Admin(tx), Answer::Admin(result)) => {
                let _ = tx.send(result);
            }
            (Waiter::WriteThrough(tx), Answer::WriteThrough(result)) => {
                let _ = tx.send(result);
            }
            _ => warn!(
                ticket = ticket.0,
                "a control answer of the wrong kind dropped"
            ),
        }
    }

    /// Asks every shard for its live users (DESIGN.md §4), then gives the plane the
    /// measurement.
    fn measure(&mut self, ctx: &mut Context<Self>) {
        if self.measuring {
            return;
        }
        self.measuring = true;
        let shards: Vec<_> = self.hub.inner.shards().to_vec();
        let fut = async move {
            let mut all: HashMap<String, Live> = HashMap::new();
            for s in shards {
                if let Ok(m) = s.send(LoadQuery).await {
                    for (u, l) in m {
                        let LiveUser {
                            sip_only,
                            resources,
                        } = l;
                        let e = all.entry(u).or_insert(Live {
                            sip_only: true,
                            resources: 0,
                        });
                        e.sip_only &= sip_only;
                        e.resources += resources;
                    }
                }
            }
            all
        };
        ctx.spawn(fut.into_actor(self).map(|live, act, ctx| {
            act.measuring = false;
            let effects = act.plane.on_measured(live, Instant::now());
            act.perform(ctx, effects, None);
        }));
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

impl Actor for Control {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        let mut directory = Vec::new();
        if self.plane.shared().is_primary() {
            // The durable directory (DESIGN.md §3).
            match self.store.scan_prefix(Space::Directory, b"") {
                Ok(entries) => {
                    for (k, v) in entries {
                        if let (Ok(user), Ok(home)) = (String::from_utf8(k), String::from_utf8(v)) {
                            directory.push((user, home));
                        }
                    }
                    info!(users = directory.len(), "directory loaded");
                }
                Err(e) => error!(error = %e, "directory could not be read"),
            }
        }
        let effects = self.plane.start(directory, Instant::now());
        self.perform(ctx, effects, None);
        ctx.run_interval(self.report_interval, |act, ctx| act.measure(ctx));
        self.measure(ctx);
    }
}

impl Handler<ControlIn> for Control {
    type Result = ();

    fn handle(&mut self, msg: ControlIn, ctx: &mut Context<Self>) {
        let Incoming { message, peer } = msg.0;
        let now = Instant::now();
        let effects = match message {
            SipMessage::Request(req) => self.plane.on_request(req, peer.reliable(), now),
            SipMessage::Response(resp) => self.plane.on_response(resp, now),
        };
        self.perform(ctx, effects, Some(peer));
    }
}

impl Handler<Place> for Control {
    type Result = ResponseFuture<Placed>;

    fn handle(&mut self, msg: Place, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let ticket = self.ticket(Waiter::Place(tx));
        let effects = self
            .plane
            .place(&msg.user, msg.protocol, ticket, Instant::now());
        self.perform(ctx, effects, None);
        Box::pin(async move { rx.await.unwrap_or(Placed::Local) })
    }
}

/// A member writes a user's record through to the primary (DESIGN.md §3): an in-dialog
/// INFO `user-update`, answered within `ccmp_timeout_ms` whatever happens. The primary, and
/// a node outside any cluster, hold the durable store themselves: nothing to do.
impl Handler<WriteThrough> for Control {
    type Result = ResponseFuture<Result<(), ControlError>>;

    fn handle(&mut self, msg: WriteThrough, ctx: &mut Context<Self>) -> Self::Result {
        let view = &self.plane.shared().view;
        if view.is_primary() || !view.enabled() {
            return Box::pin(async { Ok(()) });
        }
        let timeout = self.plane.shared().settings.timeout();
        let (tx, rx) = oneshot::channel();
        let ticket = self.ticket(Waiter::WriteThrough(tx));
        let effects = self.plane.write_through(&msg.user, ticket, Instant::now());
        self.perform(ctx, effects, None);
        Box::pin(async move {
            // The plane answers within the CCMP deadline; this bounds the wait anyway.
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(ControlError::Stopped),
                Err(_) => Err(ControlError::Timeout),
            }
        })
    }
}

impl Handler<StateJson> for Control {
    type Result = String;

    fn handle(&mut self, _: StateJson, _: &mut Context<Self>) -> String {
        serde_json::to_string(&self.plane.state()).unwrap_or_else(|_| "{}".into())
    }
}

impl Handler<NodeJson> for Control {
    type Result = String;

    fn handle(&mut self, _: NodeJson, _: &mut Context<Self>) -> String {
        self.plane.node_figures().to_string()
    }
}

impl Handler<AddNode> for Control {
    type Result = ResponseFuture<Result<String, String>>;

    fn handle(&mut self, msg: AddNode, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let ticket = self.ticket(Waiter::Admin(tx));
        let effects = self.plane.add_node(&msg.0, ticket, Instant::now());
        self.perform(ctx, effects, None);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err("the control plane stopped".into()))
        })
    }
}

impl Handler<RemoveNode> for Control {
    type Result = Result<String, String>;

    fn handle(&mut self, msg: RemoveNode, ctx: &mut Context<Self>) -> Self::Result {
        let (result, effects) = self.plane.remove_node(&msg.0, Instant::now());
        self.perform(ctx, effects, None);
        result
    }
}

impl Handler<Drain> for Control {
    type Result = Result<usize, DrainError>;

    fn handle(&mut self, msg: Drain, ctx: &mut Context<Self>) -> Self::Result {
        let (result, effects) = self.plane.drain(&msg.0, Instant::now());
        self.perform(ctx, effects, None);
        result
    }
}
