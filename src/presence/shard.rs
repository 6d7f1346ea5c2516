//! One presence shard: the actor that serves a slice of the node's users (DESIGN.md §2
//! `PresenceHub`), a thin shell around its parts.
//!
//! Each part owns its data and its methods and returns what it does to the outside as
//! effects: the RFC 6121 core (`RosterState`, with the MOE-MP roster extensions of
//! `contacts`), the SIP user-agent core (`SipState`), the back-end subscriptions
//! (`BackendState`), the hand-overs of moving users (`HandoverState`) and MOE-MP
//! exchanges (`MoeState`). The shell receives a message, hands it to the part it is for
//! (each message type sits beside the part method that handles it), and performs the
//! effects in order: sending SIP, starting client transactions, relaying to other nodes,
//! posting to other shards, writing through to the primary, and handing one part's news to
//! another. Where a part needs another's answer, the shell asks and passes it in (the
//! `Neighbours` of the SIP part, the state of SIP watchers for the back-end part). Timers
//! are the parts' own (time is passed in); the shell wakes when the earliest is due.
//!
//! What comes over SIP is handled in `sip_in`, moving users in `moves`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use tracing::info;

use super::backend::{BackendFx, BackendState, BackendWatch, HomeChanged, NodeDown, RETRY_AFTER};
use super::context::{shard_index, Ctx, Outgoing, Reply, Requester};
use super::deliver::{self, bounce, deliver_local, store_offline, Delivery, Local};
use super::handover::HandoverState;
use super::moe::{MoeFx, MoeOut, MoeState, SettingsSaved};
use super::outbox::Outbox;
use super::relay::Relay;
use super::roster::{
    AccountRemoved, Bind, ContactAnswered, ContactFx, ContactRequestIn, MoeIq, PresenceFromClient,
    RosterFx, RosterIq, RosterState, SubscriptionIn, Unbind, WatcherAsks,
};
use super::shared::{write_through, Shared};
use super::sip::state::{Neighbours, SipFx, SipIo, SipState};
use crate::sip::transaction::Key;
use crate::sip::transport::Peer;
use crate::xml::Element;
use crate::xmpp::jid::Jid;
use crate::xmpp::stanza::StanzaError;
use crate::xmpp::subscription::Subscription;

pub(crate) mod moves;
pub(crate) mod sip_in;

pub(crate) use super::wire::not_written;

/// How often expired MOE-MP exchanges are swept.
const MOE_EXPIRY_SWEEP: Duration = Duration::from_secs(10);

/// A `<message/>` or `<iq/>` for a local user, `from` stamped (RFC 6121 §8.5).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Inbound {
    /// The addressee (local domain, with a localpart).
    pub to: Jid,
    /// The stanza.
    pub stanza: Element,
}

/// Writes what a shard has not yet written to the store (SIP subscriptions waiting for
/// `sip.subscription_write_delay_ms`); sent to every shard when the node stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushStore;

/// One live user as the load monitor counts it (DESIGN.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveUser {
    /// Whether the user is here over SIP only (no XMPP session).
    pub sip_only: bool,
    /// Presence resources: roster contacts watched (`to`/`both`), SIP subscriptions held as
    /// watcher, publications.
    pub resources: u32,
}

/// Asks a shard for the users it serves and their presence resources (the load monitor's
/// input). A user may appear in several shards' answers (a SIP watcher is counted where its
/// dialog lives); the monitor merges them.
#[derive(Message)]
#[rtype(result = "std::collections::HashMap<String, LiveUser>")]
pub struct LoadQuery;

/// The shards of a node, by index; a user's shard is a hash of its localpart.
pub(crate) struct Shards {
    addrs: OnceLock<Vec<Addr<PresenceShard>>>,
    n: usize,
}

impl Shards {
    /// `n` shards (≥ 1), addresses to be [`Self::set`].
    pub(crate) fn new(n: usize) -> Shards {
        Shards {
            addrs: OnceLock::new(),
            n: n.max(1),
        }
    }

    /// The started shards.
    pub(crate) fn set(&self, addrs: Vec<Addr<PresenceShard>>) {
        let _ = self.addrs.set(addrs);
    }

    /// Whether the shards are started.
    pub(crate) fn started(&self) -> bool {
        self.addrs.get().is_some()
    }

    /// The index of the shard that owns `user`.
    pub(crate) fn index(&self, user: &str) -> usize {
        shard_index(user, self.n)
    }

    /// The shard that owns `user`.
    pub(crate) fn of(&self, user: &str) -> &Addr<PresenceShard> {
        let shards = self.addrs.get().expect("hub shards are set before use");
        &shards[self.index(user)]
    }

    /// The shard with index `i`, if it exists.
    pub(crate) fn at(&self, i: usize) -> Option<&Addr<PresenceShard>> {
        self.addrs.get().and_then(|s| s.get(i))
    }

    /// Every shard.
    pub(crate) fn all(&self) -> &[Addr<PresenceShard>] {
        self.addrs.get().map(Vec::as_slice).unwrap_or(&[])
    }
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

/// The shard actor.
pub struct PresenceShard {
    index: usize,
    shared: Arc<Shared>,
    shards: Arc<Shards>,
    /// The RFC 6121 state of this shard's users.
    roster: RosterState,
    /// SIP transactions, dialogs, publications and registrations of this shard's users.
    sip: SipState,
    /// Back-end subscriptions to this shard's remote presentities (DESIGN.md §8).
    backend: BackendState,
    /// Record hand-overs of users moving in and out (DESIGN.md §7).
    handover: HandoverState,
    /// MOE-MP exchanges and settings-push flags (docs/moe-mp.md).
    moe: MoeState,
    /// The timer that wakes the shard for its parts' earliest deadline.
    wake: Option<(Instant, SpawnHandle)>,
    /// The roster core's effects are collected here, so a presence stanza (the hot path)
    /// allocates no list of its own.
    roster_fx: Vec<RosterFx>,
}

impl Actor for PresenceShard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(MOE_EXPIRY_SWEEP, |act, _| {
            let cx = Ctx::of(&act.shared, act.index, Instant::now());
            act.moe.expire(&cx);
        });
    }
}

/// The SIP part's view of the other parts.
struct Peers<'a> {
    roster: &'a RosterState,
    backend: &'a BackendState,
    cx: &'a Ctx<'a>,
}

impl Neighbours for Peers<'_> {
    fn subscription(&self, user: &str, jid: &str) -> Option<Subscription> {
        self.roster.subscription_of(self.cx, user, jid)
    }

    fn remote_body(&self, presentity: &str) -> Option<Bytes> {
        self.backend.body(presentity)
    }
}

impl PresenceShard {
    pub(crate) fn new(
        index: usize,
        shared: Arc<Shared>,
        shards: Arc<Shards>,
        ctx: &mut Context<Self>,
    ) -> Self {
        ctx.set_mailbox_capacity(shared.settings.mailbox);
        PresenceShard {
            index,
            shared,
            shards,
            roster: RosterState::default(),
            sip: SipState::default(),
            backend: BackendState::default(),
            handover: HandoverState::default(),
            moe: MoeState::default(),
            wake: None,
            roster_fx: Vec::new(),
        }
    }

    // ---- calling the parts -----------------------------------------------------------------

    fn roster_step<R>(
        &mut self,
        f: impl FnOnce(&mut RosterState, &Ctx<'_>, &mut Vec<RosterFx>) -> R,
    ) -> R {
        // A step within a step (an effect that calls the roster core) gets a list of its own.
        let mut fx = std::mem::take(&mut self.roster_fx);
        let r = {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            f(&mut self.roster, &cx, &mut fx)
        };
        for e in fx.drain(..) {
            self.roster_effect(e);
        }
        if self.roster_fx.capacity() == 0 {
            self.roster_fx = fx;
        }
        r
    }

    fn contacts_step(&mut self, f: impl FnOnce(&mut RosterState, &Ctx<'_>, &mut Vec<ContactFx>)) {
        let mut fx = Vec::new();
        {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            f(&mut self.roster, &cx, &mut fx);
        }
        for e in fx {
            match e {
                ContactFx::Roster(e) => self.roster_effect(e),
                ContactFx::Request(msg) => post(self.shards.of(&msg.contact), msg),
                ContactFx::Answered(msg) => post(self.shards.of(&msg.requester), msg),
            }
        }
    }

    fn sip_step<R>(&mut self, f: impl FnOnce(&mut SipState, &mut SipIo<'_>) -> R) -> R {
        let (r, fx) = {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            let nb = Peers {
                roster: &self.roster,
                backend: &self.backend,
                cx: &cx,
            };
            let mut io = SipIo {
                cx: &cx,
                nb: &nb,
                fx: Vec::new(),
            };
            let r = f(&mut self.sip, &mut io);
            (r, io.fx)
        };
        self.perform_sip(fx);
        r
    }

    fn backend_step(&mut self, f: impl FnOnce(&mut BackendState, &Ctx<'_>, &mut Vec<BackendFx>)) {
        let mut fx = Vec::new();
        {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            f(&mut self.backend, &cx, &mut fx);
        }
        self.perform_backend(fx);
    }

    fn moe_step(
        &mut self,
        reply_to: Option<Outbox>,
        f: impl FnOnce(&mut MoeState, &Ctx<'_>, &mut Vec<MoeFx>),
    ) {
        let mut fx = Vec::new();
        {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            f(&mut self.moe, &cx, &mut fx);
        }
        self.perform_moe(fx, reply_to.as_ref());
    }

    // ---- performing their effects ----------------------------------------------------------

    fn roster_effect(&mut self, e: RosterFx) {
        match e {
            RosterFx::Relay(r) => self.relay(r),
            RosterFx::Subscription(msg) => post(self.shards.of(&msg.to), msg),
            RosterFx::Watch {
                presentity,
                watcher,
                on,
            } => post(
                self.shards.of(&presentity),
                BackendWatch {
                    presentity,
                    watcher,
                    on,
                },
            ),
            RosterFx::WriteThrough { user, ack } => write_through(&self.shared, &user, ack),
            RosterFx::Reauthorize(user) => {
                if self.sip.has_watchers(&user) {
                    self.sip_step(|s, io| s.reauthorize(io, &user));
                }
            }
            RosterFx::PresenceChanged(user) => {
                if self.sip.has_watchers(&user) {
                    self.sip_step(|s, io| s.xmpp_presence_changed(io, &user));
                }
            }
            RosterFx::AccountRemoved(user) => self.sip_step(|s, io| s.account_removed(io, &user)),
            RosterFx::ResourceTaken { user, resource } => self.sip.resource_taken(&user, &resource),
            RosterFx::SettingsWanted { user, resource } => {
                self.moe_step(None, |m, cx, fx| m.push_requested(cx, &user, &resource, fx))
            }
            RosterFx::Unbound { user, resource } => self.moe.unbound(&user, &resource),
            RosterFx::SessionsEnded(user) => {
                let out = {
                    let cx = Ctx::of(&self.shared, self.index, Instant::now());
                    self.handover.sessions_ended(&cx, &user)
                };
                if let Some(out) = out {
                    self.send_request(out);
                }
            }
            RosterFx::Deliver { to, stanza } => {
                self.inbound(to, stanza);
            }
        }
    }

    fn perform_sip(&mut self, fx: Vec<SipFx>) {
        for e in fx {
            match e {
                SipFx::Send {
                    peer,
                    bytes,
                    client,
                } => self.send_sip(peer, bytes, client),
                SipFx::Done { requester, status } => match requester {
                    Requester::Relay(stanza) => self.relay_done(stanza, status),
                    Requester::Backend(call_id) => {
                        self.backend_step(|b, cx, fx| b.done(cx, &call_id, status, fx))
                    }
                },
                SipFx::Broadcast { user, bytes } => {
                    let cx = Ctx::of(&self.shared, self.index, Instant::now());
                    self.roster.broadcast(&cx, &user, &bytes);
                }
                SipFx::WatchGone(presentity) => self.backend_gc(&presentity),
                SipFx::AskPresentity {
                    watcher,
                    presentity,
                } => post(
                    self.shards.of(&watcher),
                    WatcherAsks {
                        watcher,
                        presentity,
                    },
                ),
            }
        }
    }

    fn perform_backend(&mut self, fx: Vec<BackendFx>) {
        for e in fx {
            match e {
                BackendFx::Request(out) => self.send_request(out),
                BackendFx::FanOut { user, bytes } => {
                    let cx = Ctx::of(&self.shared, self.index, Instant::now());
                    deliver::fan_out_to_user(&cx, &bytes, &user);
                }
                BackendFx::NotifyWatchers(presentity) => {
                    self.sip_step(|s, io| s.notify_watchers(io, &presentity))
                }
                BackendFx::Retarget(presentity) => {
                    self.backend_step(|b, cx, fx| b.retarget(cx, &presentity, fx))
                }
                BackendFx::Lost(presentity) => {
                    self.backend_step(|b, cx, fx| b.lost(cx, &presentity, Some(RETRY_AFTER), fx))
                }
            }
        }
    }

    fn perform_moe(&mut self, fx: Vec<MoeFx>, reply_to: Option<&Outbox>) {
        for e in fx {
            match e {
                MoeFx::Reply(el) => {
                    if let Some(outbox) = reply_to {
                        outbox.send_element(&el);
                    }
                }
                MoeFx::ToResource { to, stanza } => self.deliver_full(&to, &stanza),
                MoeFx::Forward { to, stanza } => {
                    if let Some(user) = to.local() {
                        post(self.shards.of(user), Inbound { to, stanza });
                    }
                }
            }
        }
    }

    /// Bytes to a SIP peer; a client transaction whose request could not be sent over a
    /// reliable transport ends (RFC 3261 §17.1.4).
    fn send_sip(&mut self, peer: Peer, bytes: Bytes, client: Option<String>) {
        let sent = self
            .shared
            .sip
            .get()
            .is_some_and(|rt| rt.sender.send(peer, bytes));
        if !sent && peer.reliable() {
            if let Some(branch) = client {
                self.sip_step(|s, io| s.transport_error(io, &branch));
            }
        }
    }

    /// A request a part built, in a new client transaction.
    fn send_request(&mut self, out: Outgoing) {
        self.sip_step(|s, io| s.send_request(io, out));
    }

    /// A response through the server transaction `key`.
    fn respond(&mut self, key: &Key, r: Reply) {
        self.sip_step(|s, io| s.respond(io, key, r.status, r.bytes));
    }

    /// A stanza to a user homed on another node.
    fn relay(&mut self, r: Relay) {
        let out = {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            r.outgoing(&cx)
        };
        if let Some(out) = out {
            self.send_request(out);
        }
    }

    fn relay_opt(&mut self, r: Option<Relay>) {
        if let Some(r) = r {
            self.relay(r);
        }
    }

    /// The outcome of a relay: a failure bounces the stanza it carried, if any.
    fn relay_done(&mut self, stanza: Option<Box<Element>>, status: Option<u16>) {
        if matches!(status, Some(200..=299)) {
            return;
        }
        info!(
            shard = self.index,
            ?status,
            "stanza relay to another node failed"
        );
        if let Some(stanza) = stanza {
            let r = {
                let cx = Ctx::of(&self.shared, self.index, Instant::now());
                let text = Some("the recipient's server did not answer");
                bounce(&cx, &stanza, StanzaError::ServiceUnavailable, text)
            };
            self.relay_opt(r);
        }
    }

    /// `el` to the full JID `to`, here or at its home.
    fn deliver_full(&mut self, to: &Jid, el: &Element) {
        let r = {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            deliver::deliver_full(&cx, to, el)
        };
        self.relay_opt(r);
    }

    fn backend_for_sip(&mut self, presentity: &str) {
        self.backend_step(|b, cx, fx| b.for_sip(cx, presentity, fx));
    }

    fn backend_gc(&mut self, presentity: &str) {
        let sip_watchers = self.sip.has_watchers(presentity);
        self.backend_step(|b, cx, fx| b.gc(cx, presentity, sip_watchers, fx));
    }

    // ---- what concerns several parts -------------------------------------------------------

    /// A message or iq for one of this shard's users (RFC 6121 §8.5): relayed to its home,
    /// bounced for an unknown user, checked against its MOE-MP exchange, then delivered to
    /// its resources, its SIP user agents, or kept offline.
    fn inbound(&mut self, to: Jid, stanza: Element) -> Delivery {
        let Some(user) = to.local().map(str::to_string) else {
            return Delivery::Failed;
        };
        let mut moe_fx = Vec::new();
        let routed = {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            route_inbound(&cx, &mut self.moe, &user, &to, stanza, &mut moe_fx)
        };
        self.perform_moe(moe_fx, None);
        match routed {
            Local::Done(d, r) => {
                self.relay_opt(r);
                d
            }
            Local::UserAgents { stanza, delivered } => {
                let ua = self.sip_step(|s, io| s.deliver_message(io, &user, &stanza));
                if delivered || ua {
                    return Delivery::Delivered;
                }
                let (d, r) = {
                    let cx = Ctx::of(&self.shared, self.index, Instant::now());
                    store_offline(&cx, &user, stanza)
                };
                self.relay_opt(r);
                d
            }
        }
    }

    /// A subscription stanza for one of this shard's users, unless its hand-over holds it
    /// back (see `handover`).
    fn subscription_in(&mut self, msg: SubscriptionIn) {
        let max = self.shared.settings.max_roster_items;
        let Some(msg) = self.handover.hold(msg, max) else {
            return;
        };
        self.roster_step(|r, cx, fx| r.subscription_in(cx, msg, fx));
    }

    /// Makes sure the actor wakes for the earliest deadline of its parts.
    fn arm_wake(&mut self, ctx: &mut Context<Self>) {
        let next = [
            self.sip.next_deadline(),
            self.backend.next_deadline(),
            self.handover.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            return;
        };
        if let Some((at, handle)) = self.wake {
            if at <= next {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = next.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.wake = None;
            act.timers_due();
            act.arm_wake(ctx);
        });
        self.wake = Some((next, handle));
    }

    fn timers_due(&mut self) {
        self.sip_step(|s, io| s.timers_due(io));
        self.backend_step(|b, cx, fx| b.timers_due(cx, fx));
        let expired = {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            self.handover.expire(&cx)
        };
        for arrival in expired {
            for msg in arrival.waiting {
                self.subscription_in(msg);
            }
        }
    }
}

/// Where a message or iq for `user` goes: its home, a bounce, a refused MOE-MP answer
/// (`moe_fx` holds the error), or delivery here.
fn route_inbound(
    cx: &Ctx<'_>,
    moe: &mut MoeState,
    user: &str,
    to: &Jid,
    stanza: Element,
    moe_fx: &mut Vec<MoeFx>,
) -> Local {
    if let Some(home) = cx.remote_home(user) {
        return Local::Done(
            Delivery::Delivered,
            Some(Relay::stanza(home, user, &stanza)),
        );
    }
    if !cx.user_exists(user) {
        let r = match stanza.name.as_str() {
            "message" | "iq" => bounce(cx, &stanza, StanzaError::ServiceUnavailable, None),
            _ => None,
        };
        return Local::Done(Delivery::Failed, r);
    }
    // A MOE-MP answer from a user is checked against its exchange (docs/moe-mp.md §2);
    // the server's own MOE notices (from the domain) are not answers.
    let from_user = stanza
        .attr("from")
        .and_then(|f| Jid::parse(f).ok())
        .is_some_and(|j| j.local().is_some());
    if stanza.name == "message"
        && from_user
        && stanza.elements().any(|c| c.ns == crate::xmpp::moe::NS)
        && !moe.answer_allowed(cx, to, &stanza, moe_fx)
    {
        return Local::Done(Delivery::Failed, None);
    }
    deliver_local(cx, user, to, stanza)
}

// ---- the handlers: each hands its message to a part, then performs the effects ----------

impl Handler<Bind> for PresenceShard {
    type Result = Result<String, StanzaError>;

    fn handle(&mut self, msg: Bind, ctx: &mut Context<Self>) -> Self::Result {
        let r = self.roster_step(|r, cx, fx| r.bind(cx, msg, fx));
        self.arm_wake(ctx);
        r
    }
}

impl Handler<Unbind> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: Unbind, ctx: &mut Context<Self>) {
        self.roster_step(|r, cx, fx| r.unbind(cx, msg, fx));
        self.arm_wake(ctx);
    }
}

impl Handler<PresenceFromClient> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: PresenceFromClient, ctx: &mut Context<Self>) {
        self.roster_step(|r, cx, fx| r.presence_from_client(cx, msg, fx));
        self.arm_wake(ctx);
    }
}

impl Handler<RosterIq> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: RosterIq, ctx: &mut Context<Self>) {
        self.roster_step(|r, cx, fx| r.roster_iq(cx, msg, fx));
        self.arm_wake(ctx);
    }
}

impl Handler<Inbound> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        self.inbound(msg.to, msg.stanza);
        self.arm_wake(ctx);
    }
}

impl Handler<SubscriptionIn> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: SubscriptionIn, ctx: &mut Context<Self>) {
        self.subscription_in(msg);
        self.arm_wake(ctx);
    }
}

impl Handler<AccountRemoved> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: AccountRemoved, ctx: &mut Context<Self>) {
        // Each session ends on its own (its watchers see each resource go), then the rest.
        for route in self.shared.routes.get(&msg.user).iter() {
            self.roster_step(|r, cx, fx| r.end_session(cx, &msg.user, route, fx));
        }
        self.roster_step(|r, cx, fx| r.account_removed(cx, msg, fx));
        self.arm_wake(ctx);
    }
}

impl Handler<WatcherAsks> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: WatcherAsks, ctx: &mut Context<Self>) {
        self.roster_step(|r, cx, fx| r.watcher_asks(cx, msg, fx));
        self.arm_wake(ctx);
    }
}

impl Handler<MoeIq> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: MoeIq, ctx: &mut Context<Self>) {
        self.contacts_step(|r, cx, fx| r.moe_iq(cx, msg, fx));
        self.arm_wake(ctx);
    }
}

impl Handler<ContactRequestIn> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: ContactRequestIn, ctx: &mut Context<Self>) {
        self.contacts_step(|r, cx, fx| r.contact_request_in(cx, msg, fx));
        self.arm_wake(ctx);
    }
}

impl Handler<ContactAnswered> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: ContactAnswered, ctx: &mut Context<Self>) {
        self.contacts_step(|r, cx, fx| r.contact_answered(cx, msg, fx));
        self.arm_wake(ctx);
    }
}

impl Handler<MoeOut> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: MoeOut, ctx: &mut Context<Self>) {
        let reply_to = msg.outbox.clone();
        self.moe_step(Some(reply_to), |m, cx, fx| m.out(cx, msg, fx));
        self.arm_wake(ctx);
    }
}

impl Handler<SettingsSaved> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: SettingsSaved, ctx: &mut Context<Self>) {
        self.moe_step(None, |m, cx, fx| m.settings_saved(cx, msg, fx));
        self.arm_wake(ctx);
    }
}

impl Handler<BackendWatch> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: BackendWatch, ctx: &mut Context<Self>) {
        let sip_watchers = self.sip.has_watchers(&msg.presentity);
        self.backend_step(|b, cx, fx| b.watch(cx, msg, sip_watchers, fx));
        self.arm_wake(ctx);
    }
}

impl Handler<HomeChanged> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: HomeChanged, ctx: &mut Context<Self>) {
        self.backend_step(|b, cx, fx| b.retarget(cx, &msg.user, fx));
        self.arm_wake(ctx);
    }
}

impl Handler<NodeDown> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: NodeDown, ctx: &mut Context<Self>) {
        self.backend_step(|b, cx, fx| b.node_down(cx, &msg.node, fx));
        self.arm_wake(ctx);
    }
}

impl Handler<FlushStore> for PresenceShard {
    type Result = ();

    fn handle(&mut self, _: FlushStore, _: &mut Context<Self>) {
        self.sip_step(|s, io| s.flush(io));
    }
}

impl Handler<LoadQuery> for PresenceShard {
    type Result = actix::MessageResult<LoadQuery>;

    fn handle(&mut self, _: LoadQuery, _: &mut Context<Self>) -> Self::Result {
        let mut out: HashMap<String, LiveUser> = HashMap::new();
        for (user, watched) in self.roster.live_users() {
            out.insert(
                user.clone(),
                LiveUser {
                    sip_only: false,
                    resources: watched,
                },
            );
        }
        self.sip.live_users(|user, resources| {
            out.entry(user.to_string())
                .or_insert(LiveUser {
                    sip_only: true,
                    resources: 0,
                })
                .resources += resources;
        });
        actix::MessageResult(out)
    }
}
