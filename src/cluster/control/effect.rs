//! What the control-plane parts ask their owner to do (DESIGN.md §2, §5): send a SIP
//! message, arm a timer, tell the presence core, persist a directory row, run an operator's
//! command, answer a waiting caller. The parts never do any of it themselves; the control
//! actor (`crate::control`) performs the effects in the order they were returned.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::cluster::record::UserRecord;
use crate::cluster::view::NodeAddrs;
use crate::sip::message::Method;

use super::error::ControlError;

/// One timer of a client transaction (see [`super::client::CcmpClient`]); never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub u64);

/// A timer the parts arm. Arming never replaces an earlier one: each [`Effect::Arm`] fires
/// once; only client-transaction timers are cancelled ([`Effect::Cancel`]), the others check
/// on firing whether they still matter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Timer {
    /// A client transaction's RFC 3261 timer or its CCMP deadline.
    Client(TimerId),
    /// A member joins again after a failed INVITE (backoff).
    JoinRetry,
    /// A member subscribes to the cluster state again (refresh, or retry after a failure).
    Subscribe,
    /// The publisher sends a fresh snapshot to the watcher with this Call-ID.
    NotifyRetry(String),
    /// The pool, exhausted by a failed acquisition, is given another chance.
    PoolReset,
    /// A spawned pool server is probed again with OPTIONS.
    SpawnPoll,
    /// A rebalance onto `to` is planned again from fresh reports.
    Rebalance {
        /// The server users move to.
        to: String,
        /// Plans left, this one included.
        attempts: u32,
    },
    /// The moves of a drain that failed are queued again.
    DrainRetry(String),
}

/// A call into the presence core (`crate::presence::Hub`).
#[derive(Debug, PartialEq)]
pub enum HubCall {
    /// The user's home changed in the view: the presence core follows it.
    HomeChanged(String),
    /// A node died or left: its users' state here is dropped.
    NodeDown(String),
    /// A user moves here: the old home's hand-over is merged against `base`.
    Arriving {
        /// Local part.
        user: String,
        /// The record as the primary holds it.
        base: UserRecord,
    },
    /// A user leaves this node for `to`: its sessions and subscriptions are sent there.
    Evict {
        /// Local part.
        user: String,
        /// The new home.
        to: NodeAddrs,
    },
}

/// Identifies a caller waiting for an [`Answer`] (a placement, an admin request, a
/// write-through); handed out by the actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(pub u64);

/// Where a placed user is served (the actor turns it into `presence::placement::Placed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// On this node.
    Local,
    /// On that node: the client is redirected there.
    Redirect(NodeAddrs),
}

/// The answer a waiting caller gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A placement.
    Placed(Destination),
    /// An admin request (`POST /api/nodes`): the message for the operator, or the error.
    Admin(Result<String, String>),
    /// A write-through (`user-update`).
    WriteThrough(Result<(), ControlError>),
}

/// Which operator command to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `spawn` of a pool entry: its result comes back as `Plane::on_spawned`.
    Spawn,
    /// `stop` of a drained pool entry: its failure is only logged.
    Stop,
}

/// One thing for the actor to do.
#[derive(Debug, PartialEq)]
pub enum Effect {
    /// Send these bytes over TCP (inter-node SIP runs over TCP, DESIGN.md §5).
    Send {
        /// The peer.
        to: SocketAddr,
        /// A whole SIP message.
        bytes: Bytes,
    },
    /// Answer the request being handled, over the connection it came on.
    Respond(Bytes),
    /// Call back after the delay.
    Arm(Timer, Duration),
    /// A client-transaction timer is no longer needed.
    Cancel(TimerId),
    /// Tell the presence core.
    Hub(HubCall),
    /// Write `user -> server` into the durable directory (DESIGN.md §3).
    PersistHome {
        /// Local part.
        user: String,
        /// Its home.
        server: String,
    },
    /// Run an operator's command for a pool entry with `sh -c` (DESIGN.md §7).
    Run {
        /// The pool entry.
        node: String,
        /// The command line.
        command: String,
        /// Spawn or stop.
        kind: Command,
    },
    /// Answer a waiting caller.
    Answer(Ticket, Answer),
}

/// A request for the CCMP client to send (see [`super::client::CcmpClient::start`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The peer, over TCP.
    pub to: SocketAddr,
    /// The request's method (INVITE gets the INVITE client transaction).
    pub method: Method,
    /// Its Via branch (starts with `dialog::BRANCH_PREFIX`).
    pub branch: String,
    /// The whole request.
    pub bytes: Bytes,
    /// Its CCMP deadline: no final response within it is a timeout.
    pub deadline: Duration,
}

/// One step of a part's answer: an effect, or a request whose outcome comes back to the
/// part as `P` (the part's own continuation type, wrapped by the plane).
#[derive(Debug)]
pub enum Step<P> {
    /// Perform this.
    Do(Effect),
    /// Send this request; its outcome continues with `P`.
    Request(Outgoing, P),
}

/// What a part returns, in order.
#[derive(Debug)]
pub struct Out<P> {
    steps: Vec<Step<P>>,
}

impl<P> Default for Out<P> {
    fn default() -> Self {
        Out { steps: Vec::new() }
    }
}

impl<P> Out<P> {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an effect.
    pub fn push(&mut self, effect: Effect) {
        self.steps.push(Step::Do(effect));
    }

    /// Adds a call into the presence core.
    pub fn hub(&mut self, call: HubCall) {
        self.push(Effect::Hub(call));
    }

    /// Arms a timer.
    pub fn arm(&mut self, timer: Timer, after: Duration) {
        self.push(Effect::Arm(timer, after));
    }

    /// Answers a waiting caller.
    pub fn answer(&mut self, ticket: Ticket, answer: Answer) {
        self.push(Effect::Answer(ticket, answer));
    }

    /// Adds a request whose outcome continues with `purpose`.
    pub fn request(&mut self, outgoing: Outgoing, purpose: impl Into<P>) {
        self.steps.push(Step::Request(outgoing, purpose.into()));
    }

    /// The steps, in order.
    pub fn into_steps(self) -> Vec<Step<P>> {
        self.steps
    }

    /// The steps so far.
    pub fn steps(&self) -> &[Step<P>] {
        &self.steps
    }
}
