//! Moving users (DESIGN.md §7): on the node a user leaves, its sessions, subscriptions,
//! publications and registrations; on every shard, its watchers here; on the node it
//! moves to, its arrival (`handover`).

use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use tracing::info;

use super::super::backend::BackendWatch;
use super::super::context::Ctx;
use super::super::handover::Arriving;
use super::super::relay;
use super::{post, PresenceShard};
use crate::cluster::view::NodeAddrs;
use crate::xmpp::stanza::see_other_host_bytes;

/// `user` was moved to `to` (see `Hub::evict`): to the user's shard.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Evict {
    /// Localpart.
    pub user: String,
    /// The new home.
    pub to: NodeAddrs,
}

/// `user` was moved away (see `Hub::evict`): to every shard, whose
/// online users may watch the user.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MovedAway {
    /// Localpart.
    pub user: String,
}

impl PresenceShard {
    /// On the user's shard: its XMPP sessions are sent to `to` (RFC 6120 §4.9.3.19), the
    /// back-end subscriptions of other nodes to it end with `deactivated` (RFC 6665 §4.1.3:
    /// subscribe again at once, which they do where the directory now points), its
    /// publications go to the new home with their entity-tags (so its watchers keep seeing
    /// them, and the client's refresh, sent there by a `302`, still matches), its
    /// registrations here are dropped (a refresh gets `302`), and its record follows once its
    /// XMPP sessions have ended (`handover`). By the time this runs the directory names the
    /// new home, so whatever the user's clients do next reaches it.
    fn evict(&mut self, user: &str, to: &NodeAddrs) {
        let bytes = Bytes::from(see_other_host_bytes(&to.xmpp.to_string()));
        let mut moved = 0;
        for r in self.shared.routes.get(user).iter() {
            if let Some(outbox) = r.sink.outbox() {
                // Still read until the client closes: what it sent before it saw the
                // redirect is handled here, and handed over with the record (`handover`).
                outbox.close_lingering(bytes.clone());
                moved += 1;
            }
        }
        let backend = self.sip_step(|s, io| s.end_backend_watchers(io, user));
        let handed = self.sip_step(|s, io| s.publications_to_hand_over(io, user));
        for (etag, pidf, secs) in handed {
            let out = {
                let cx = Ctx::of(&self.shared, self.index, Instant::now());
                relay::publication(&cx, to, user, &etag, pidf, secs)
            };
            if let Some(out) = out {
                self.send_request(out);
            }
        }
        self.sip_step(|s, io| s.moved_away(io, user));
        let out = {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            self.handover.leaving(&cx, user, to, moved)
        };
        if let Some(out) = out {
            self.send_request(out);
        }
        info!(shard = self.index, %user, to = %to.id, sessions = moved, backend, "user moved away");
    }

    /// On every shard: SIP subscriptions the user holds as watcher end with `deactivated`
    /// (its UA subscribes again, reaching the new home), and this node's watchers of the
    /// user — XMPP contacts online here and SIP watchers homed here — now watch it at its new
    /// home through back-end subscriptions (DESIGN.md §8).
    fn watch_moved(&mut self, user: &str) {
        self.sip_step(|s, io| s.end_held_by(io, user));
        let watchers = {
            let cx = Ctx::of(&self.shared, self.index, Instant::now());
            if cx.remote_home(user).is_none() {
                return;
            }
            self.roster.online_watchers_of(&cx, user)
        };
        // Back-end subscriptions live on the presentity's shard: that is where the home's
        // NOTIFYs (addressed to the presentity) arrive.
        for watcher in watchers {
            let msg = BackendWatch {
                presentity: user.to_string(),
                watcher,
                on: true,
            };
            post(self.shards.of(user), msg);
        }
        if self.sip.has_watchers(user) {
            self.backend_for_sip(user);
        }
    }
}

impl Handler<Evict> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: Evict, ctx: &mut Context<Self>) {
        self.evict(&msg.user, &msg.to);
        self.arm_wake(ctx);
    }
}

impl Handler<MovedAway> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: MovedAway, ctx: &mut Context<Self>) {
        self.watch_moved(&msg.user);
        self.arm_wake(ctx);
    }
}

impl Handler<Arriving> for PresenceShard {
    type Result = ();

    fn handle(&mut self, msg: Arriving, ctx: &mut Context<Self>) {
        let cx = Ctx::of(&self.shared, self.index, Instant::now());
        self.handover.arriving(&cx, msg);
        self.arm_wake(ctx);
    }
}
