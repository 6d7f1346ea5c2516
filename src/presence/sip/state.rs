//! The SIP part of a presence shard: the RFC 3261 §17 transaction layer and the user-agent
//! core of a presence server — registrar (RFC 3261 §10), notifier (RFC 6665, RFC 3856),
//! event state compositor (RFC 3903) and MESSAGE (RFC 3428) — for the users of one shard.
//!
//! The transport hands each request to the shard of the user it concerns (the presentity of a
//! SUBSCRIBE or PUBLISH, the address-of-record of a REGISTER, the recipient of a MESSAGE) and
//! each response to the shard whose index is in the branch, so a SIP message is handled on
//! the same thread as the XMPP state of that user, without locks or further hops. All SIP
//! timers of a shard live in one [`TimerQueue`]; the shell wakes the part when the earliest
//! is due, and time is passed in.
//!
//! [`SipState`] owns the transactions, dialogs, publications and registrations. It reads the
//! node through a [`SipIo`] — the shard's [`Ctx`], and the answers of the shard's other parts
//! it needs ([`Neighbours`]: roster subscriptions, the state of remote presentities) — and
//! returns what it does to the outside as [`SipFx`]: bytes to send, outcomes of requests
//! other parts sent, presence for XMPP contacts, back-end subscriptions to start or end.
//!
//! Deviation from DESIGN.md §2 (one actor per subscription dialog): dialogs are plain state
//! in the presentity's shard. An actor per dialog would cost a mailbox hop per NOTIFY and about
//! a kilobyte per subscription, against the targets of 20,000 NOTIFY/s and 100,000
//! subscriptions per node; the shard already serialises everything about the presentity.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::warn;

use super::super::context::{reply, Ctx, Requester};
use crate::pidf::xmpp::XmppPresence;
use crate::sip::grammar::{find_unquoted, trim_lws};
use crate::sip::message::Request;
use crate::sip::publication::Publications;
use crate::sip::registrar::Bindings;
use crate::sip::subscription::Lifecycle;
use crate::sip::timer::{TimerId, TimerQueue};
use crate::sip::transaction::{ClientNonInvite, Key, ServerInvite, ServerNonInvite, Timer};
use crate::sip::transport::Peer;
use crate::store::SipSubscriptionRecord;
use crate::xmpp::jid::normalize_local;
use crate::xmpp::subscription::Subscription;

/// Prefix of every branch this node creates; the shard index follows, so responses find
/// their transaction's shard without a shared table.
pub(crate) const BRANCH_PREFIX: &str = "z9hG4bK-rdv";

/// The id of the one closed tuple shown for a presentity with no state (RFC 3863 §4.1).
pub(crate) const OFFLINE_TUPLE: &str = "offline";

/// The maps a shard looks up on every SIP request. Their keys come from the network (branch,
/// Call-ID, tags), so the hash stays keyed per process, but foldhash costs a fraction of
/// SipHash: at 30,000 PUBLISH/s SipHash and the rehashing of the transaction map (RFC 3261
/// Timer J keeps each transaction 32 s) took a fifth of the core.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A subscription dialog on the notifier side (RFC 3261 §12 dialog id: Call-ID + our tag;
/// the watcher's tag is checked separately).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DialogId {
    /// Call-ID.
    pub(crate) call_id: String,
    /// Our tag.
    pub(crate) local_tag: String,
}

/// One watcher's subscription to one presentity.
pub(crate) struct Dialog {
    pub(crate) rec: SipSubscriptionRecord,
    pub(crate) peer: Peer,
    /// Pending / active / terminated and the expiry (RFC 6665 §4.1.2).
    pub(crate) life: Lifecycle,
    pub(crate) expiry_timer: Option<TimerId>,
    /// A NOTIFY of this dialog awaits its response.
    pub(crate) in_flight: bool,
    /// The state changed while a NOTIFY was in flight: send another when it completes.
    pub(crate) dirty: bool,
    /// The store holds a record of this subscription (written or restored).
    pub(crate) stored: bool,
}

/// Which timer fired.
#[derive(Debug, Clone)]
pub(crate) enum SipTimer {
    /// A server transaction timer.
    Server(Key, Timer),
    /// A client transaction timer (by branch).
    Client(String, Timer),
    /// A subscription reached its expiry.
    SubscriptionExpired(DialogId),
    /// The rate limit of a presentity's NOTIFYs allows the next one.
    Notify(String),
    /// A presentity's publications may have expired.
    Publications(String),
    /// An address-of-record's bindings may have expired.
    Registrations(String),
    /// Changed subscriptions are due to be written to the store.
    Persist,
}

pub(super) enum ServerFsm {
    NonInvite(ServerNonInvite),
    Invite(ServerInvite),
}

pub(super) struct ServerTx {
    pub(super) fsm: ServerFsm,
    pub(super) peer: Peer,
    pub(super) timers: Vec<(Timer, TimerId)>,
}

/// Why we sent a request, so its outcome can be acted on.
pub(super) enum Purpose {
    /// A NOTIFY in a subscription dialog.
    Notify(DialogId),
    /// A MESSAGE carried to a user agent.
    Message,
    /// A request another part of the shard sent.
    Other(Requester),
}

pub(super) struct ClientTx {
    pub(super) fsm: ClientNonInvite,
    pub(super) peer: Peer,
    pub(super) timers: Vec<(Timer, TimerId)>,
    pub(super) purpose: Purpose,
}

/// The SIP state of one shard.
#[derive(Default)]
pub(crate) struct SipState {
    pub(super) timers: TimerQueue<SipTimer>,
    pub(super) server: FastMap<Key, ServerTx>,
    pub(super) client: FastMap<String, ClientTx>,
    /// Presentities with publications, SIP watchers or XMPP presence.
    pub(super) presentities: FastMap<String, Presentity>,
    /// Subscription dialogs where this shard's users are the presentity.
    pub(super) dialogs: FastMap<DialogId, Dialog>,
    /// Registrar bindings by address-of-record.
    pub(super) registrations: FastMap<String, RegistrationState>,
    /// Subscriptions changed since the last write to the store
    /// (`sip.subscription_write_delay_ms`).
    pub(super) unsaved: std::collections::HashSet<DialogId, foldhash::fast::RandomState>,
    /// The timer of the next write, while one is due.
    pub(super) persist_timer: Option<TimerId>,
    pub(super) seq: u64,
}

/// One user's presence as the notifier sees it.
#[derive(Default)]
pub(crate) struct Presentity {
    /// PUBLISHed documents by entity tag (RFC 3903).
    pub(crate) publications: Publications<crate::pidf::Presence>,
    /// Next expiry timer of the publications.
    pub(crate) publication_timer: Option<TimerId>,
    /// SIP dialogs watching this user.
    pub(crate) watchers: Vec<DialogId>,
    /// Presence of the user's XMPP resources (RFC 8048 §3 source).
    pub(crate) xmpp: BTreeMap<String, XmppPresence>,
    /// Resources shown to XMPP contacts for the published tuples (RFC 8048 §4).
    pub(crate) shown: BTreeMap<String, XmppPresence>,
    /// When the last NOTIFY round went out (`notify_min_interval_ms`).
    pub(crate) last_notify: Option<Instant>,
    /// A NOTIFY round waits for the rate limit.
    pub(crate) notify_timer: Option<TimerId>,
}

impl Presentity {
    fn is_idle(&self) -> bool {
        self.publications.is_empty()
            && self.watchers.is_empty()
            && self.xmpp.is_empty()
            && self.shown.is_empty()
            && self.notify_timer.is_none()
    }
}

/// The registrar bindings of one address-of-record.
pub(crate) struct RegistrationState {
    pub(crate) bindings: Bindings<Peer>,
    pub(crate) timer: Option<TimerId>,
}

/// What the SIP part does to the outside, performed by the shard shell in order.
#[derive(Debug)]
pub(crate) enum SipFx {
    /// Bytes for `peer`. `client`: the branch of the client transaction that sent them,
    /// told of a transport error on a reliable transport (RFC 3261 §17.1.4).
    Send {
        /// Where to.
        peer: Peer,
        /// The message.
        bytes: Bytes,
        /// The client transaction, if any.
        client: Option<String>,
    },
    /// A request another part sent ended: a final status, or `None` (timeout, transport).
    Done {
        /// Who sent it.
        requester: Requester,
        /// The final status.
        status: Option<u16>,
    },
    /// Presence of `user` for its XMPP contacts and resources (RFC 6121 §4.2.2): a
    /// published tuple shown as a resource (RFC 8048 §4).
    Broadcast {
        /// Localpart.
        user: String,
        /// The presence stanza (`from` set, no `to`).
        bytes: Bytes,
    },
    /// A SIP watcher of the presentity went: the back-end subscription may end.
    WatchGone(String),
    /// A pending watcher asks the presentity as an XMPP subscription request would
    /// (`presence_policy = "roster"`), from the watcher's shard.
    AskPresentity {
        /// Localpart of the watcher.
        watcher: String,
        /// Localpart of the presentity.
        presentity: String,
    },
}

/// What the SIP part asks the shard's other parts.
pub(crate) trait Neighbours {
    /// The subscription `user` has in its roster with the contact `jid` (a bare JID).
    fn subscription(&self, user: &str, jid: &str) -> Option<Subscription>;
    /// The PIDF document of a presentity homed on another node as its back-end
    /// subscription shows it (empty before its first NOTIFY), or `None` if not watched.
    fn remote_body(&self, presentity: &str) -> Option<Bytes>;
}

/// What a SIP step works with: the context, the neighbours, and the effects so far.
pub(crate) struct SipIo<'a> {
    /// The shard's context.
    pub(crate) cx: &'a Ctx<'a>,
    /// The other parts' answers.
    pub(crate) nb: &'a dyn Neighbours,
    /// The effects, in order.
    pub(crate) fx: Vec<SipFx>,
}

impl SipState {
    pub(super) fn schedule(&mut self, io: &SipIo<'_>, after: Duration, what: SipTimer) -> TimerId {
        self.timers.schedule(io.cx.now + after, what)
    }

    pub(super) fn cancel_timer(&mut self, id: Option<TimerId>) {
        if let Some(id) = id {
            self.timers.cancel(id);
        }
    }

    /// When the earliest SIP timer is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Runs the timers due at `io.cx.now`.
    pub(crate) fn timers_due(&mut self, io: &mut SipIo<'_>) {
        for (_, t) in self.timers.pop_due(io.cx.now) {
            match t {
                SipTimer::Server(key, timer) => self.server_timer(io, &key, timer),
                SipTimer::Client(branch, timer) => self.client_timer(io, &branch, timer),
                SipTimer::SubscriptionExpired(id) => self.subscription_expired(io, &id),
                SipTimer::Notify(user) => {
                    if let Some(p) = self.presentities.get_mut(&user) {
                        p.notify_timer = None;
                    }
                    self.notify_agents(io, &user);
                }
                SipTimer::Publications(user) => self.publications_expired(io, &user),
                SipTimer::Registrations(user) => self.registrations_expired(io, &user),
                SipTimer::Persist => self.persist_unsaved(io),
            }
        }
    }

    /// The user's presentity entry, created on demand.
    pub(super) fn presentity(&mut self, user: &str) -> &mut Presentity {
        self.presentities.entry(user.to_string()).or_default()
    }

    /// Drops the presentity entry when nothing is left in it.
    pub(super) fn gc_presentity(&mut self, user: &str) {
        if self.presentities.get(user).is_some_and(Presentity::is_idle) {
            self.presentities.remove(user);
        }
    }

    /// Whether SIP dialogs watch `user`.
    pub(crate) fn has_watchers(&self, user: &str) -> bool {
        self.presentities
            .get(user)
            .is_some_and(|p| !p.watchers.is_empty())
    }

    /// An XMPP session bound `resource`, under which a publication of `user` was shown: it
    /// shows again at its next change (RFC 8048 §4).
    pub(crate) fn resource_taken(&mut self, user: &str, resource: &str) {
        if let Some(p) = self.presentities.get_mut(user) {
            p.shown.remove(resource);
        }
    }

    /// The account was deleted: end its subscriptions, publications and bindings.
    pub(crate) fn account_removed(&mut self, io: &mut SipIo<'_>, user: &str) {
        let watchers = self
            .presentities
            .get(user)
            .map(|p| p.watchers.clone())
            .unwrap_or_default();
        for id in watchers {
            self.terminate_subscription(io, &id, crate::sip::event::Reason::Noresource);
        }
        if let Some(p) = self.presentities.remove(user) {
            self.cancel_timer(p.publication_timer);
            self.cancel_timer(p.notify_timer);
        }
        if let Some(r) = self.registrations.remove(user) {
            self.cancel_timer(r.timer);
        }
    }

    /// The users this shard serves over SIP and their presence resources, for the load
    /// monitor: `add(user, resources)` per watcher dialog (1; back-end subscriptions of other
    /// nodes are not users here), per presentity with publications (their number) and per
    /// registered address-of-record (0).
    pub(crate) fn live_users(&self, mut add: impl FnMut(&str, u32)) {
        for dialog in self.dialogs.values() {
            // A back-end subscription is another node watching, not a user of this one.
            if let Some(w) = dialog
                .rec
                .watcher_user
                .as_deref()
                .filter(|w| *w != crate::cluster::dialog::CLUSTER_USER)
            {
                add(w, 1);
            }
        }
        for (user, p) in &self.presentities {
            if !p.publications.is_empty() {
                add(user, p.publications.len() as u32);
            }
        }
        for aor in self.registrations.keys() {
            add(aor, 0);
        }
    }

    /// Writes the subscriptions not yet written (the node stops).
    pub(crate) fn flush(&mut self, io: &mut SipIo<'_>) {
        if let Some(timer) = self.persist_timer {
            self.cancel_timer(Some(timer));
        }
        self.persist_unsaved(io);
    }

    /// A response built for `req` with a To tag (RFC 3261 §8.2.6.2) and sent through `key`.
    pub(crate) fn reply_simple(
        &mut self,
        io: &mut SipIo<'_>,
        key: &Key,
        req: &Request,
        status: u16,
        reason: &str,
        headers: &[(&str, String)],
    ) {
        let r = reply(req, status, reason, headers);
        self.respond(io, key, r.status, r.bytes);
    }

    /// The `Expires` a SUBSCRIBE or PUBLISH asks for, granted within the `[sip]` bounds
    /// (RFC 6665 §4.2.1.1, RFC 3903 §6). A malformed value is answered `400`, one too brief
    /// `423` with Min-Expires; then `None`.
    pub(super) fn granted_expires(
        &mut self,
        io: &mut SipIo<'_>,
        key: &Key,
        req: &Request,
    ) -> Option<u32> {
        let Ok(requested) = expires_header(req) else {
            self.reply_simple(io, key, req, 400, "Bad Expires header", &[]);
            return None;
        };
        let cfg = &io.cx.settings.sip;
        match crate::sip::event::grant_expires(
            requested,
            cfg.default_expires,
            cfg.min_expires,
            cfg.max_expires,
        ) {
            Ok(e) => Some(e),
            Err(brief) => {
                let min = [("Min-Expires", brief.min_expires.to_string())];
                self.reply_simple(io, key, req, 423, "Interval Too Brief", &min);
                None
            }
        }
    }

    /// The user the Request-URI names (normalised local part); with `existing`, only an
    /// account. Otherwise the request is answered `404` and `None` returned.
    pub(super) fn addressed_user(
        &mut self,
        io: &mut SipIo<'_>,
        key: &Key,
        req: &Request,
        existing: bool,
    ) -> Option<String> {
        let user = req
            .uri()
            .user
            .as_deref()
            .and_then(|u| normalize_local(u).ok())
            .filter(|u| !existing || io.cx.user_exists(u));
        if user.is_none() {
            self.reply_simple(io, key, req, 404, "Not Found", &[]);
        }
        user
    }
}

/// The media type of a Content-Type or Accept element, without parameters, lowercased
/// (RFC 3261 §20.15: `type/subtype *(;param)`).
pub(crate) fn media_type(value: &str) -> String {
    let end = find_unquoted(value, ';').unwrap_or(value.len());
    trim_lws(&value[..end]).to_ascii_lowercase()
}

/// The `Expires` header as a number of seconds; `Err` when it is not one.
pub(super) fn expires_header(req: &Request) -> Result<Option<u32>, ()> {
    req.header("Expires")
        .map(|v| v.trim().parse::<u32>().map_err(|_| ()))
        .transpose()
}

/// Logs a store failure in the SIP layer.
pub(super) fn store_failed(shard: usize, what: &str, e: &crate::store::StoreError) {
    warn!(shard, error = %e, "{what} failed");
}
