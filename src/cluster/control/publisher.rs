//! The primary's cluster state publisher (DESIGN.md §6, RFC 6665): members SUBSCRIBE
//! (`Event: presence`) to `sip:cluster@<primary>`; each gets the full document in chunks of
//! at most `cluster.state_chunk_bytes` (the state document's chunk writer), then the changes
//! of each round as deltas. Flow control: a watcher has one NOTIFY in flight, the next goes
//! only after its 200. A NOTIFY that fails may have carried a delta, so the watcher starts
//! over from a fresh snapshot after [`STATE_RETRY`]; after [`STATE_MAX_FAILURES`] failures in
//! a row (or a 481) it is dropped. A watcher that falls [`MAX_STATE_QUEUE`] NOTIFYs behind is
//! resynchronised from a snapshot rather than queued forever.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use tracing::{info, warn};

use crate::cluster::dialog::{self, contact_addr, Dialog};
use crate::cluster::state::Kind;
use crate::sip::event::Event;
use crate::sip::message::{self, Method, Request, Response};

use super::context::STATE_EXPIRES;
use super::effect::{Effect, Out, Outgoing, Timer};
use super::error::ControlError;
use super::sessions::{self, Extra};
use super::shared::Shared;

/// A state watcher whose NOTIFYs fail this many times in a row is dropped; before that, it
/// is sent a fresh snapshot after [`STATE_RETRY`]: a member that missed a delta would
/// otherwise route with a stale directory until its refresh, minutes later.
pub const STATE_MAX_FAILURES: u32 = 3;

/// The wait before a watcher whose NOTIFY failed gets its fresh snapshot.
pub const STATE_RETRY: Duration = Duration::from_secs(1);

/// NOTIFYs queued for one state watcher before it is resynchronised from a snapshot.
pub const MAX_STATE_QUEUE: usize = 256;

/// The continuation of a NOTIFY: the watcher's Call-ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySent(pub String);

/// A member subscribed to the cluster state.
#[derive(Debug)]
struct Watcher {
    dialog: Dialog,
    /// NOTIFY bodies to send, in order.
    queue: VecDeque<String>,
    /// A NOTIFY is out and not answered yet.
    in_flight: bool,
    expires: u32,
    /// NOTIFYs that failed in a row (timeout or error other than 481).
    failures: u32,
}

/// The state watchers, by Call-ID.
#[derive(Debug, Default)]
pub struct Publisher {
    watchers: HashMap<String, Watcher>,
}

impl Publisher {
    /// No watcher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Watchers.
    pub fn len(&self) -> usize {
        self.watchers.len()
    }

    /// Whether nobody watches.
    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }

    /// A SUBSCRIBE to the cluster state (its signature checked): answered, and a new
    /// watcher gets the full snapshot.
    pub fn on_subscribe<P: From<NotifySent>>(
        &mut self,
        sh: &Shared,
        req: &Request,
        out: &mut Out<P>,
    ) {
        let secret = sh.settings.secret();
        if !sh.is_primary() {
            let refusal = sessions::refuse(
                &sh.settings,
                req,
                403,
                "the cluster state is served by the primary",
                "",
            );
            return out.push(Effect::Respond(refusal));
        }
        if req
            .header("Event")
            .is_none_or(|e| !Event::parse(e).is_ok_and(|e| e.package == "presence"))
        {
            let extra = Extra {
                headers: vec![("Allow-Events", "presence".into())],
                ..Default::default()
            };
            let bytes = sessions::respond(secret, req, 489, "Bad Event", extra);
            return out.push(Effect::Respond(bytes));
        }
        let expires = req
            .header("Expires")
            .and_then(|e| e.trim().parse::<u32>().ok())
            .unwrap_or(STATE_EXPIRES)
            .min(STATE_EXPIRES);
        let call_id = req.base.call_id.clone();
        if expires == 0 {
            self.watchers.remove(&call_id);
            let bytes = sessions::respond(secret, req, 200, "OK", Extra::signed());
            return out.push(Effect::Respond(bytes));
        }
        let Some(target) = req.header("Contact").and_then(contact_addr) else {
            let refusal = sessions::refuse(&sh.settings, req, 400, "Contact is required", "");
            return out.push(Effect::Respond(refusal));
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
                format!("<{}>", dialog::cluster_uri(sh.settings.local())),
            ),
        ];
        out.push(Effect::Respond(sessions::respond(
            secret, req, 200, "OK", extra,
        )));
        if let Some(w) = self.watchers.get_mut(&call_id) {
            w.expires = expires; // a refresh
            return;
        }
        let mut snapshot = sh.snapshot();
        snapshot.kind = Kind::Full;
        let queue = snapshot
            .chunks(
                &sh.settings.state_entity(),
                sh.settings.cluster().state_chunk_bytes,
            )
            .into();
        info!(watcher = %req.base.from.uri, "cluster state subscription");
        self.watchers.insert(
            call_id.clone(),
            Watcher {
                dialog: Dialog::incoming(req, target, &tag),
                queue,
                in_flight: false,
                expires,
                failures: 0,
            },
        );
        self.pump(sh, &call_id, out);
    }

    /// Sends the next queued NOTIFY of a watcher, one at a time (flow control: the next
    /// chunk only after the previous 200).
    fn pump<P: From<NotifySent>>(&mut self, sh: &Shared, call_id: &str, out: &mut Out<P>) {
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
        let local = sh.settings.local();
        let branch = dialog::new_branch();
        let bytes = w.dialog.request(
            Method::Notify,
            local,
            &branch,
            sh.settings.secret(),
            &[
                ("Event", "presence".into()),
                (
                    "Subscription-State",
                    format!("active;expires={}", w.expires),
                ),
            ],
            Some((crate::pidf::CONTENT_TYPE, Bytes::from(body))),
        );
        let notify = Outgoing {
            to: w.dialog.remote_target,
            method: Method::Notify,
            branch,
            bytes,
            deadline: sh.settings.timeout(),
        };
        out.request(notify, NotifySent(call_id.to_string()));
    }

    /// A NOTIFY's outcome: after a 2xx the next one goes; after a failure the watcher gets
    /// a fresh snapshot after [`STATE_RETRY`], or is dropped (481, or too many failures).
    pub fn on_notified<P: From<NotifySent>>(
        &mut self,
        sh: &Shared,
        sent: NotifySent,
        result: Result<Response, ControlError>,
        out: &mut Out<P>,
    ) {
        let call_id = sent.0;
        let Some(w) = self.watchers.get_mut(&call_id) else {
            return;
        };
        let error = match result {
            Ok(_) => {
                w.in_flight = false;
                w.failures = 0;
                return self.pump(sh, &call_id, out);
            }
            Err(e) => e,
        };
        w.failures += 1;
        let failures = w.failures;
        if error == ControlError::Gone || failures >= STATE_MAX_FAILURES {
            warn!(%error, failures, "state watcher gone");
            self.watchers.remove(&call_id);
            return;
        }
        // The lost NOTIFY may have carried a delta: start the watcher over from a full
        // snapshot.
        warn!(%error, failures, "state NOTIFY failed; resending a snapshot");
        let mut snap = sh.snapshot();
        snap.kind = Kind::Full;
        w.queue = snap
            .chunks(
                &sh.settings.state_entity(),
                sh.settings.cluster().state_chunk_bytes,
            )
            .into();
        out.arm(Timer::NotifyRetry(call_id), STATE_RETRY);
    }

    /// [`Timer::NotifyRetry`]: the watcher's snapshot goes.
    pub fn on_retry<P: From<NotifySent>>(&mut self, sh: &Shared, call_id: &str, out: &mut Out<P>) {
        if let Some(w) = self.watchers.get_mut(call_id) {
            w.in_flight = false;
        }
        self.pump(sh, call_id, out);
    }

    /// Sends the changes since the last round to every watcher: one delta, split in parts
    /// within `state_chunk_bytes` (each with its own version) when many users changed.
    pub fn flush<P: From<NotifySent>>(&mut self, sh: &mut Shared, out: &mut Out<P>) {
        if self.watchers.is_empty() {
            sh.primary.forget_changes();
            return;
        }
        let doc = sh.primary.delta(&sh.settings.config);
        let entity = sh.settings.state_entity();
        let max = sh.settings.cluster().state_chunk_bytes;
        // A round with many changes (a rebalance, a burst of arrivals) is sent as several
        // deltas, each within state_chunk_bytes, so no NOTIFY passes the SIP message limit.
        let parts = doc.split_delta(&entity, max);
        sh.primary.used_versions(parts.len());
        let bodies: Vec<String> = parts.iter().map(|p| p.to_xml(&entity)).collect();
        let ids: Vec<String> = self.watchers.keys().cloned().collect();
        for id in ids {
            if let Some(w) = self.watchers.get_mut(&id) {
                if w.queue.len() >= MAX_STATE_QUEUE {
                    // Far behind: start it over from a snapshot rather than queue forever.
                    w.queue.clear();
                    let mut snap = sh.snapshot();
                    snap.version = sh.primary.version();
                    w.queue.extend(snap.chunks(&entity, max));
                } else {
                    w.queue.extend(bodies.iter().cloned());
                }
            }
            self.pump(sh, &id, out);
        }
    }
}
