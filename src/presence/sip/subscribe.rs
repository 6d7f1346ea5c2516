//! The notifier of the presence event package: SUBSCRIBE and NOTIFY (RFC 6665 §4.2, RFC 3856
//! §6), with authorization by `sip.presence_policy` (RFC 6665 §4.2.1.2 "pending"), rate-limited
//! and coalesced notifications (RFC 6665 §4.2.2, RFC 3856 §6.12), and dialogs persisted so a
//! restarted node keeps notifying them.

use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, info};

use super::super::wire::parse_stanza;
use super::state::{
    media_type, store_failed, Dialog, DialogId, Purpose, SipFx, SipIo, SipState, SipTimer,
    OFFLINE_TUPLE,
};
use crate::cluster::ccmp;
use crate::cluster::dialog::{signed_material, CLUSTER_USER};
use crate::config::PresencePolicy;
use crate::pidf::{self, Presence};
use crate::sip::event::{Event, Reason};
use crate::sip::message::{self, split_list, Method, NameAddr, Request, RequestBuilder};
use crate::sip::subscription::{notify_failure_ends, Lifecycle, Phase};
use crate::sip::transaction::Key;
use crate::sip::transport::Peer;
use crate::store::{Records, SipSubscriptionRecord};
use crate::xmpp::subscription::Subscription;

/// A subscription just made, waiting for its first NOTIFY ([`SipState::first_notify`]).
pub(crate) struct NewSubscription {
    id: DialogId,
    /// Localpart of the presentity.
    pub(crate) presentity: String,
    watcher: String,
    allowed: bool,
    /// A fetch (`Expires: 0`): one NOTIFY, then the subscription is over.
    fetch: bool,
}

/// Every this many NOTIFYs the dialog's CSeq is written to the store; a restored dialog
/// continues above the last written value plus this, so its CSeq never goes back.
const CSEQ_PERSIST_EVERY: u32 = 64;

impl SipState {
    /// SUBSCRIBE (RFC 6665 §4.2.1): a new subscription, a refresh, or an unsubscribe. A new
    /// subscription is answered `200` and returned: the shard makes sure its presentity is
    /// watched where it lives (a back-end subscription, DESIGN.md §8), whose state the first
    /// NOTIFY shows, then calls [`Self::first_notify`].
    pub(crate) fn subscribe(
        &mut self,
        io: &mut SipIo<'_>,
        key: &Key,
        req: &Request,
        peer: Peer,
    ) -> Option<NewSubscription> {
        let watcher = if is_from_cluster(io, req) {
            self.cluster_identity(io, key, req)
        } else {
            self.identify(io, key, req)
        };
        let watcher = watcher?;
        let Some(value) = req.header("Event") else {
            self.reply_simple(io, key, req, 400, "Missing Event header", &[]);
            return None;
        };
        let Ok(event) = Event::parse(value) else {
            self.reply_simple(io, key, req, 400, "Bad Event header", &[]);
            return None;
        };
        if event.package != "presence" {
            info!(shard = io.cx.index, package = %event.package, "SUBSCRIBE for an unknown event package");
            self.reply_simple(
                io,
                key,
                req,
                489,
                "Bad Event",
                &[("Allow-Events", "presence".to_string())],
            );
            return None;
        }
        if let Some(accept) = req.header("Accept") {
            let ok = split_list(accept)
                .into_iter()
                .map(media_type)
                .any(|t| t == pidf::CONTENT_TYPE || t == "application/*" || t == "*/*");
            if !ok {
                self.reply_simple(
                    io,
                    key,
                    req,
                    406,
                    "Not Acceptable",
                    &[("Accept", pidf::CONTENT_TYPE.to_string())],
                );
                return None;
            }
        }
        let expires = self.granted_expires(io, key, req)?;
        if let Some(to_tag) = req.base.to.tag() {
            let id = DialogId {
                call_id: req.base.call_id.clone(),
                local_tag: to_tag.to_string(),
            };
            self.refresh_subscription(io, key, req, &id, &watcher, expires);
            return None;
        }
        self.new_subscription(io, key, req, peer, watcher, event, expires)
    }

    #[allow(clippy::too_many_arguments)]
    fn new_subscription(
        &mut self,
        io: &mut SipIo<'_>,
        key: &Key,
        req: &Request,
        peer: Peer,
        watcher: String,
        event: Event,
        expires: u32,
    ) -> Option<NewSubscription> {
        let presentity = self.addressed_user(io, key, req, true)?;
        let backend = watcher == CLUSTER_USER;
        if backend && io.cx.remote_home(&presentity).is_some() {
            // A back-end subscription follows the directory (DESIGN.md §8); ours is stale.
            self.reply_simple(io, key, req, 404, "Not Found (not homed here)", &[]);
            return None;
        }
        let Some(contact) = req.header("Contact").and_then(|c| NameAddr::parse(c).ok()) else {
            self.reply_simple(io, key, req, 400, "Missing or bad Contact header", &[]);
            return None;
        };
        let limits = &io.cx.settings.limits;
        let (max_subs, max_watchers) = (
            limits.max_subscriptions_per_user,
            limits.max_watchers_per_user,
        );
        let watchers = self
            .presentities
            .get(&presentity)
            .map_or(0, |p| p.watchers.len());
        if watchers >= max_watchers && !backend {
            info!(shard = io.cx.index, %presentity, "limits.max_watchers_per_user reached");
            self.reply_simple(
                io,
                key,
                req,
                503,
                "Service Unavailable (too many watchers)",
                &[("Retry-After", "60".to_string())],
            );
            return None;
        }
        if expires > 0 && !backend && !count_watching(io, &watcher, 1, max_subs) {
            info!(shard = io.cx.index, %watcher, "limits.max_subscriptions_per_user reached");
            self.reply_simple(io, key, req, 403, "Forbidden (too many subscriptions)", &[]);
            return None;
        }
        // A node watches on behalf of its users, each checked there against its roster.
        let allowed = backend || watch_allowed(io, &presentity, Some(&watcher));
        let local_tag = message::new_tag();
        let id = DialogId {
            call_id: req.base.call_id.clone(),
            local_tag: local_tag.clone(),
        };
        let rec = SipSubscriptionRecord {
            presentity: presentity.clone(),
            call_id: req.base.call_id.clone(),
            local_tag: local_tag.clone(),
            remote_tag: req.base.from.tag().unwrap_or_default().to_string(),
            watcher: req.base.from.uri.clone(),
            watcher_user: Some(watcher.clone()),
            remote_target: contact.uri.clone(),
            route_set: req
                .headers("Record-Route")
                .iter()
                .flat_map(|v| split_list(v))
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect(),
            transport: peer.transport().to_string(),
            peer: peer.addr().to_string(),
            local_cseq: 0,
            remote_cseq: req.base.cseq.seq,
            event_id: event.id.clone(),
            expires_unix: io.cx.unix_now() + u64::from(expires),
            pending: !allowed,
        };
        let resp = message::reply(req, 200, "OK")
            .to_tag(&local_tag)
            .header("Expires", expires.to_string())
            .header(
                "Contact",
                format!("<{}>", io.cx.contact_uri(&presentity, peer)),
            )
            .header("Allow-Events", "presence")
            .build();
        self.respond(io, key, 200, resp);
        debug!(shard = io.cx.index, %presentity, %watcher, expires, pending = !allowed, "subscribed");
        let life = Lifecycle::new(allowed, expires, io.cx.now);
        // Back-end dialogs are not persisted: the watching node makes them again.
        self.add_dialog(io, id.clone(), rec, peer, life, expires > 0 && !backend);
        Some(NewSubscription {
            id,
            presentity,
            watcher,
            allowed,
            fetch: expires == 0,
        })
    }

    /// The first NOTIFY of a new subscription (RFC 6665 §4.2.1.2), once the shard made sure
    /// a presentity homed elsewhere is watched there (its state is what the NOTIFY shows).
    pub(crate) fn first_notify(&mut self, io: &mut SipIo<'_>, new: NewSubscription) {
        let NewSubscription {
            id,
            presentity,
            watcher,
            allowed,
            fetch,
        } = new;
        if fetch {
            // A fetch (RFC 6665 §4.4.3): one NOTIFY with the state, then it is over.
            return self.terminate_subscription(io, &id, Reason::Timeout);
        }
        if !allowed && io.cx.settings.sip.presence_policy == PresencePolicy::Roster {
            io.fx.push(SipFx::AskPresentity {
                watcher,
                presentity: presentity.clone(),
            });
        }
        let body = (!self.dialog_pending(&id)).then(|| self.presence_body(io, &presentity));
        self.send_notify(io, &id, None, body);
    }

    fn refresh_subscription(
        &mut self,
        io: &mut SipIo<'_>,
        key: &Key,
        req: &Request,
        id: &DialogId,
        watcher: &str,
        expires: u32,
    ) {
        let Some(d) = self.dialogs.get_mut(id) else {
            return self.reply_simple(io, key, req, 481, "Subscription Does Not Exist", &[]);
        };
        if req.base.from.tag() != Some(d.rec.remote_tag.as_str()) {
            return self.reply_simple(io, key, req, 481, "Subscription Does Not Exist", &[]);
        }
        if d.rec.watcher_user.as_deref() != Some(watcher) {
            return self.reply_simple(io, key, req, 403, "Forbidden (not your subscription)", &[]);
        }
        if req.base.cseq.seq <= d.rec.remote_cseq {
            // RFC 3261 §12.2.2: a lower CSeq in a dialog is out of order.
            return self.reply_simple(
                io,
                key,
                req,
                500,
                "Server Internal Error (CSeq out of order)",
                &[],
            );
        }
        d.rec.remote_cseq = req.base.cseq.seq;
        if let Some(c) = req.header("Contact").and_then(|c| NameAddr::parse(c).ok()) {
            d.rec.remote_target = c.uri;
        }
        d.life.refresh(expires, io.cx.now);
        d.rec.expires_unix = io.cx.unix_now() + u64::from(expires);
        let presentity = d.rec.presentity.clone();
        let peer = d.peer;
        let resp = message::reply(req, 200, "OK")
            .header("Expires", expires.to_string())
            .header(
                "Contact",
                format!("<{}>", io.cx.contact_uri(&presentity, peer)),
            )
            .build();
        self.respond(io, key, 200, resp);
        if expires == 0 {
            // Unsubscribe (RFC 6665 §4.2.1.4): a final NOTIFY, then the dialog is gone.
            return self.terminate_subscription(io, id, Reason::Timeout);
        }
        let timer = self.schedule(
            io,
            Duration::from_secs(u64::from(expires)),
            SipTimer::SubscriptionExpired(id.clone()),
        );
        let Some(d) = self.dialogs.get_mut(id) else {
            return;
        };
        let old = d.expiry_timer.replace(timer);
        self.cancel_timer(old);
        self.persist_dialog(io, id);
        let body = (!self.dialog_pending(id)).then(|| self.presence_body(io, &presentity));
        self.send_notify(io, id, None, body);
    }

    /// Checks a node's signature over Call-ID and CSeq (DESIGN.md §5); 403 when wrong.
    fn cluster_identity(&mut self, io: &mut SipIo<'_>, key: &Key, req: &Request) -> Option<String> {
        let secret = io.cx.secret()?;
        let cseq = format!("{} {}", req.base.cseq.seq, req.method().as_str());
        let material = signed_material(&req.base.call_id, &cseq, req.body());
        match ccmp::verify(secret, &material, req.header(ccmp::SIGNATURE_HEADER)) {
            Ok(()) => Some(CLUSTER_USER.to_string()),
            Err(e) => {
                tracing::warn!(shard = io.cx.index, error = %e, "back-end SUBSCRIBE refused");
                self.reply_simple(io, key, req, 403, "Forbidden (bad signature)", &[]);
                None
            }
        }
    }

    fn add_dialog(
        &mut self,
        io: &SipIo<'_>,
        id: DialogId,
        rec: SipSubscriptionRecord,
        peer: Peer,
        life: Lifecycle,
        persist: bool,
    ) {
        let after = life.expires_at().saturating_duration_since(io.cx.now);
        let timer = (!life.is_terminated())
            .then(|| self.schedule(io, after, SipTimer::SubscriptionExpired(id.clone())));
        let presentity = rec.presentity.clone();
        self.dialogs.insert(
            id.clone(),
            Dialog {
                rec,
                peer,
                life,
                expiry_timer: timer,
                in_flight: false,
                dirty: false,
                stored: false,
            },
        );
        self.presentity(&presentity).watchers.push(id.clone());
        if persist {
            self.persist_dialog(io, &id);
        }
    }

    /// Marks the subscription for the next batch write (`sip.subscription_write_delay_ms`):
    /// a SUBSCRIBE followed at once by its un-SUBSCRIBE never reaches the store, and a burst
    /// of changes costs one timer.
    fn persist_dialog(&mut self, io: &SipIo<'_>, id: &DialogId) {
        let delay = io.cx.settings.sip.subscription_write_delay_ms;
        self.unsaved.insert(id.clone());
        if delay == 0 {
            self.persist_unsaved(io);
        } else if self.persist_timer.is_none() {
            let timer = self.schedule(io, Duration::from_millis(delay), SipTimer::Persist);
            self.persist_timer = Some(timer);
        }
    }

    /// Writes every subscription changed since the last batch.
    pub(super) fn persist_unsaved(&mut self, io: &SipIo<'_>) {
        self.persist_timer = None;
        let ids: Vec<DialogId> = self.unsaved.drain().collect();
        for id in ids {
            let Some(d) = self.dialogs.get_mut(&id) else {
                continue;
            };
            match io.cx.store.put_sip_subscription(&d.rec) {
                Ok(()) => d.stored = true,
                Err(e) => store_failed(io.cx.index, "subscription write", &e),
            }
        }
    }

    fn dialog_pending(&self, id: &DialogId) -> bool {
        self.dialogs.get(id).is_some_and(|d| !d.life.shows_state())
    }

    /// The presentity's roster changed: pending watchers it now approves become active, active
    /// ones it no longer approves are ended (RFC 6665 §4.2.1.2, reason `rejected`).
    pub(crate) fn reauthorize(&mut self, io: &mut SipIo<'_>, presentity: &str) {
        let Some(p) = self.presentities.get(presentity) else {
            return;
        };
        if p.watchers.is_empty() {
            return;
        }
        for id in p.watchers.clone() {
            let Some(d) = self.dialogs.get(&id) else {
                continue;
            };
            let allowed = watch_allowed(io, presentity, d.rec.watcher_user.as_deref());
            let Some(d) = self.dialogs.get_mut(&id) else {
                continue;
            };
            match d.life.authorize(allowed, io.cx.now).map(|_| d.life.phase()) {
                Some(Phase::Active) => {
                    d.rec.pending = false;
                    self.persist_dialog(io, &id);
                    let body = self.presence_body(io, presentity);
                    self.send_notify(io, &id, None, Some(body));
                }
                Some(Phase::Terminated(reason)) => self.terminate_subscription(io, &id, reason),
                _ => {}
            }
        }
    }

    /// An XMPP resource of `user` changed its presence: tell the SIP watchers.
    pub(crate) fn xmpp_presence_changed(&mut self, io: &mut SipIo<'_>, user: &str) {
        if self.has_watchers(user) {
            self.notify_watchers(io, user);
        }
    }

    /// One NOTIFY to every active watcher of `user` with the current state.
    ///
    /// Back-end subscriptions of other nodes (DESIGN.md §8) get it at once: they fan it out
    /// to XMPP watchers, who see changes of same-node contacts at once too. User agents get
    /// at most one NOTIFY per `notify_min_interval_ms` (RFC 6665 §4.2.2 lets a notifier
    /// limit the rate); changes in between are coalesced into the next round.
    pub(crate) fn notify_watchers(&mut self, io: &mut SipIo<'_>, user: &str) {
        let Some(p) = self.presentities.get(user) else {
            return;
        };
        let backends: Vec<DialogId> = p
            .watchers
            .iter()
            .filter(|id| self.is_backend_dialog(id) && !self.dialog_pending(id))
            .cloned()
            .collect();
        if !backends.is_empty() {
            let body = self.presence_body(io, user);
            for id in backends {
                self.send_notify(io, &id, None, Some(body.clone()));
            }
        }
        self.notify_agents(io, user);
    }

    /// The rate-limited round of [`Self::notify_watchers`] for user agents (the watchers that
    /// are not other nodes); also what the `notify_min_interval_ms` timer runs.
    pub(super) fn notify_agents(&mut self, io: &mut SipIo<'_>, user: &str) {
        let interval = Duration::from_millis(io.cx.settings.sip.notify_min_interval_ms);
        let now = io.cx.now;
        let Some(p) = self.presentities.get(user) else {
            return;
        };
        if p.notify_timer.is_some() {
            return;
        }
        let agents: Vec<DialogId> = p
            .watchers
            .iter()
            .filter(|id| !self.is_backend_dialog(id))
            .cloned()
            .collect();
        if agents.is_empty() {
            return;
        }
        if let Some(last) = p.last_notify {
            let next = last + interval;
            if now < next {
                let id = self.schedule(io, next - now, SipTimer::Notify(user.to_string()));
                if let Some(p) = self.presentities.get_mut(user) {
                    p.notify_timer = Some(id);
                }
                return;
            }
        }
        if let Some(p) = self.presentities.get_mut(user) {
            p.last_notify = Some(now);
        }
        let body = self.presence_body(io, user);
        for id in agents {
            if !self.dialog_pending(&id) {
                self.send_notify(io, &id, None, Some(body.clone()));
            }
        }
    }

    /// Whether dialog `id` is a back-end subscription of another node (its watcher is the
    /// cluster identity, checked by signature when it was created).
    fn is_backend_dialog(&self, id: &DialogId) -> bool {
        self.dialogs
            .get(id)
            .is_some_and(|d| d.rec.watcher_user.as_deref() == Some(CLUSTER_USER))
    }

    /// The composed PIDF document of `user`: its publications and XMPP resources (RFC 3903
    /// §? composition, RFC 8048 §3), or one closed tuple when it has neither.
    fn presence_body(&self, io: &SipIo<'_>, user: &str) -> Bytes {
        if io.cx.remote_home(user).is_some() {
            if let Some(body) = io.nb.remote_body(user) {
                return body;
            }
        }
        let domain = io.cx.domain();
        let entity = format!("pres:{user}@{domain}");
        let bare = format!("{user}@{domain}");
        let xmpp: Vec<_> = io
            .cx
            .routes
            .get(user)
            .iter()
            .filter(|r| !r.is_sip())
            .filter_map(|r| {
                let el = parse_stanza(r.presence.as_ref()?)?;
                Some(crate::pidf::xmpp::read_stanza(&r.resource, &el))
            })
            .collect();
        let xmpp_doc = crate::pidf::xmpp::resources_to_pidf(&entity, &bare, &xmpp);
        let mut doc = match self.presentities.get(user) {
            Some(p) => Presence::compose(
                &entity,
                p.publications.bodies().chain(std::iter::once(&xmpp_doc)),
            ),
            None => Presence::compose(&entity, std::iter::once(&xmpp_doc)),
        };
        if doc.tuples.is_empty() {
            doc.tuples.push(pidf::Tuple::closed(OFFLINE_TUPLE));
        }
        Bytes::from(doc.to_xml())
    }

    /// Sends a NOTIFY in dialog `id`: the state (`body`, none while pending) and the
    /// Subscription-State, `terminated` with `reason` when given (RFC 6665 §4.2.2, §8.2.3).
    fn send_notify(
        &mut self,
        io: &mut SipIo<'_>,
        id: &DialogId,
        reason: Option<Reason>,
        body: Option<Bytes>,
    ) {
        let Some(d) = self.dialogs.get_mut(id) else {
            return;
        };
        if d.in_flight && reason.is_none() {
            d.dirty = true;
            return;
        }
        d.in_flight = true;
        d.dirty = false;
        d.rec.local_cseq += 1;
        let cseq = d.rec.local_cseq;
        let now = io.cx.now;
        if let Some(r) = reason {
            d.life.terminate(r, now);
        }
        let state = d.life.state(now);
        let rec = d.rec.clone();
        let peer = d.peer;
        let persist = cseq % CSEQ_PERSIST_EVERY == 0 && reason.is_none();
        let branch = self.new_branch(io);
        let domain = io.cx.domain();
        let mut b = RequestBuilder::new(Method::Notify, &rec.remote_target)
            .header("Via", io.cx.via(peer, &branch))
            .header("Max-Forwards", "70");
        for route in &rec.route_set {
            b = b.header("Route", route.clone());
        }
        b = b
            .header(
                "From",
                format!("<sip:{}@{domain}>;tag={}", rec.presentity, rec.local_tag),
            )
            .header("To", format!("<{}>;tag={}", rec.watcher, rec.remote_tag))
            .header("Call-ID", rec.call_id.clone())
            .header("CSeq", format!("{cseq} NOTIFY"))
            .header(
                "Contact",
                format!("<{}>", io.cx.contact_uri(&rec.presentity, peer)),
            )
            .header(
                "Event",
                match &rec.event_id {
                    Some(i) => format!("presence;id={i}"),
                    None => "presence".to_string(),
                },
            )
            .header("Subscription-State", state.to_string());
        // An empty body: the state is not known yet (RFC 6665 §4.2.1.2), no PIDF at all.
        if let Some(body) = body.filter(|b| !b.is_empty()) {
            b = b.body(pidf::CONTENT_TYPE, body);
        }
        let bytes = b.build();
        self.start_request(io, peer, branch, bytes, Purpose::Notify(id.clone()));
        if persist {
            self.persist_dialog(io, id);
        }
    }

    /// A NOTIFY's transaction ended: `status`, or `None` for a timeout or transport error.
    pub(super) fn notify_done(&mut self, io: &mut SipIo<'_>, id: &DialogId, status: Option<u16>) {
        let Some(d) = self.dialogs.get_mut(id) else {
            return; // terminated meanwhile
        };
        d.in_flight = false;
        match status {
            Some(200..=299) => {
                if d.dirty {
                    let presentity = d.rec.presentity.clone();
                    let body = d
                        .life
                        .shows_state()
                        .then(|| self.presence_body(io, &presentity));
                    self.send_notify(io, id, None, body);
                }
            }
            // RFC 6665 §4.2.2: 481 or a timeout means the watcher is gone.
            s if notify_failure_ends(s) => {
                info!(shard = io.cx.index, presentity = %d.rec.presentity,
                    watcher = %d.rec.watcher, ?status, "NOTIFY failed; subscription removed");
                self.remove_dialog(io, id);
            }
            other => {
                debug!(shard = io.cx.index, status = ?other, "NOTIFY refused; subscription kept");
            }
        }
    }

    /// Ends a subscription with a final NOTIFY and forgets it.
    pub(crate) fn terminate_subscription(
        &mut self,
        io: &mut SipIo<'_>,
        id: &DialogId,
        reason: Reason,
    ) {
        let Some(d) = self.dialogs.get(id) else {
            return;
        };
        let presentity = d.rec.presentity.clone();
        let body = d
            .life
            .shows_state()
            .then(|| self.presence_body(io, &presentity));
        self.send_notify(io, id, Some(reason), body);
        self.remove_dialog(io, id);
    }

    pub(super) fn subscription_expired(&mut self, io: &mut SipIo<'_>, id: &DialogId) {
        let Some(d) = self.dialogs.get_mut(id) else {
            return;
        };
        d.expiry_timer = None;
        if d.life.expire(io.cx.now).is_none() {
            return; // refreshed meanwhile
        }
        debug!(shard = io.cx.index, presentity = %d.rec.presentity, "subscription expired");
        self.terminate_subscription(io, id, Reason::Timeout);
    }

    fn remove_dialog(&mut self, io: &mut SipIo<'_>, id: &DialogId) {
        let Some(d) = self.dialogs.remove(id) else {
            return;
        };
        self.cancel_timer(d.expiry_timer);
        if let Some(p) = self.presentities.get_mut(&d.rec.presentity) {
            p.watchers.retain(|w| w != id);
        }
        if let Some(w) = d.rec.watcher_user.as_deref().filter(|w| *w != CLUSTER_USER) {
            count_watching(io, w, -1, usize::MAX);
        }
        let never_written = self.unsaved.remove(id) && !d.stored;
        if !never_written {
            if let Err(e) = io.cx.store.remove_sip_subscription(
                &d.rec.presentity,
                &d.rec.call_id,
                &d.rec.local_tag,
            ) {
                store_failed(io.cx.index, "subscription delete", &e);
            }
        }
        io.fx.push(SipFx::WatchGone(d.rec.presentity.clone()));
        self.gc_presentity(&d.rec.presentity);
    }

    /// `user` moved away (DESIGN.md §7): the back-end subscriptions other nodes hold to it
    /// end with `deactivated` (RFC 6665 §4.1.3: they subscribe again at once, where the
    /// directory now points); how many there were.
    pub(crate) fn end_backend_watchers(&mut self, io: &mut SipIo<'_>, user: &str) -> usize {
        let backend: Vec<_> = self
            .presentities
            .get(user)
            .map(|p| p.watchers.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|id| self.is_backend_dialog(id))
            .collect();
        for id in &backend {
            self.terminate_subscription(io, id, Reason::Deactivated);
        }
        backend.len()
    }

    /// `user` moved away: the SIP subscriptions it holds here as watcher end with
    /// `deactivated` (its user agent subscribes again, reaching the new home).
    pub(crate) fn end_held_by(&mut self, io: &mut SipIo<'_>, user: &str) {
        let held: Vec<_> = self
            .dialogs
            .iter()
            .filter(|(_, d)| d.rec.watcher_user.as_deref() == Some(user))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &held {
            self.terminate_subscription(io, id, Reason::Deactivated);
        }
    }

    /// Brings back this shard's persisted subscriptions after a restart and tells each
    /// watcher the current state (expired ones get their final NOTIFY).
    pub(crate) fn restore_subscriptions(&mut self, io: &mut SipIo<'_>) {
        let records = match io.cx.store.sip_subscriptions() {
            Ok(r) => r,
            Err(e) => return store_failed(io.cx.index, "subscription restore", &e),
        };
        let now = io.cx.unix_now();
        let mut restored = 0usize;
        for mut rec in records {
            if io.cx.shard_of(&rec.presentity) != io.cx.index {
                continue;
            }
            let Some(peer) = Peer::from_parts(&rec.transport, &rec.peer) else {
                let _ = io.cx.store.remove_sip_subscription(
                    &rec.presentity,
                    &rec.call_id,
                    &rec.local_tag,
                );
                continue;
            };
            rec.local_cseq += CSEQ_PERSIST_EVERY;
            let remaining = rec.expires_unix.saturating_sub(now) as u32;
            let id = DialogId {
                call_id: rec.call_id.clone(),
                local_tag: rec.local_tag.clone(),
            };
            if let Some(w) = &rec.watcher_user {
                count_watching(io, w, 1, usize::MAX);
            }
            let presentity = rec.presentity.clone();
            let life = Lifecycle::restore(
                rec.pending,
                io.cx.now + Duration::from_secs(u64::from(remaining.max(1))),
            );
            self.add_dialog(io, id.clone(), rec, peer, life, true);
            if let Some(d) = self.dialogs.get_mut(&id) {
                d.stored = true; // its record is in the store: an early end must delete it
            }
            if remaining == 0 {
                self.terminate_subscription(io, &id, Reason::Timeout);
            } else {
                let body = (!self.dialog_pending(&id)).then(|| self.presence_body(io, &presentity));
                self.send_notify(io, &id, None, body);
                restored += 1;
            }
        }
        if restored > 0 {
            info!(shard = io.cx.index, restored, "SIP subscriptions restored");
        }
    }
}

/// Whether a request comes from another node of the cluster (`From: sip:cluster@...`).
fn is_from_cluster(io: &SipIo<'_>, req: &Request) -> bool {
    io.cx.cluster.is_some()
        && crate::cluster::dialog::is_cluster_uri(&req.base.from.uri, io.cx.domain())
}

/// Adds one to (or takes from) the subscriptions `watcher` holds over all shards; false if
/// that would pass `max` (or before the transport is bound).
fn count_watching(io: &SipIo<'_>, watcher: &str, delta: isize, max: usize) -> bool {
    let Some(rt) = io.cx.sip else {
        return false;
    };
    let mut map = rt.watching.lock().unwrap_or_else(|e| e.into_inner());
    let n = map.entry(watcher.to_string()).or_insert(0);
    if delta > 0 {
        if *n >= max {
            return false;
        }
        *n += delta as usize;
    } else {
        *n = n.saturating_sub(delta.unsigned_abs());
        if *n == 0 {
            map.remove(watcher);
        }
    }
    true
}

/// Whether `watcher` may see `presentity` under `sip.presence_policy`.
fn watch_allowed(io: &SipIo<'_>, presentity: &str, watcher: Option<&str>) -> bool {
    let Some(w) = watcher else { return false };
    if w == presentity {
        return true;
    }
    let domain = io.cx.domain();
    match io.cx.settings.sip.presence_policy {
        PresencePolicy::Domain => true,
        PresencePolicy::Roster if io.cx.remote_home(presentity).is_some() => {
            // The presentity's roster is at its home; the watcher's mirrors it (RFC 6121
            // keeps both sides' states in step): `to` or `both` there means allowed.
            let jid = format!("{presentity}@{domain}");
            matches!(
                io.nb.subscription(w, &jid),
                Some(Subscription::To | Subscription::Both)
            )
        }
        PresencePolicy::Roster => {
            let jid = format!("{w}@{domain}");
            matches!(
                io.nb.subscription(presentity, &jid),
                Some(Subscription::From | Subscription::Both)
            )
        }
    }
}
