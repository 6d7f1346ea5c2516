//! Moving a user to another node (DESIGN.md §7), on the node it leaves. By the time this
//! runs the directory names the new home, so whatever the user's clients do next (reconnect,
//! re-SUBSCRIBE, refresh a PUBLISH or REGISTER) reaches the new home through the usual
//! `see-other-host` / `302`, and whatever this node routes to the user is relayed there.

use bytes::Bytes;
use tracing::info;

use super::shard::PresenceShard;
use crate::cluster::dialog::CLUSTER_USER;
use crate::cluster::view::NodeAddrs;
use crate::sip::event::Reason;
use crate::xmpp::stanza::see_other_host_bytes;

impl PresenceShard {
    /// On the user's shard: its XMPP sessions are sent to `to` (RFC 6120 §4.9.3.19), the
    /// back-end subscriptions of other nodes to it end with `deactivated` (RFC 6665 §4.1.3:
    /// subscribe again at once, which they do where the directory now points), its
    /// publications go to the new home with their entity-tags (so its watchers keep seeing
    /// them, and the client's refresh, sent there by a `302`, still matches), its
    /// registrations here are dropped (a refresh gets `302`), and its record follows once its
    /// XMPP sessions have ended (`handover`).
    pub(super) fn evict(&mut self, user: &str, to: &NodeAddrs) {
        let sessions = self.resources(user);
        let bytes = Bytes::from(see_other_host_bytes(&to.xmpp.to_string()));
        let mut moved = 0;
        for r in sessions.iter().filter(|r| !r.sip) {
            // Still read until the client closes: what it sent before it saw the redirect
            // is handled here, and handed over with the record (see `handover`).
            r.outbox.close_lingering(bytes.clone());
            moved += 1;
        }
        let backend: Vec<_> = self
            .sip
            .presentities
            .get(user)
            .map(|p| p.watchers.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|id| {
                self.sip
                    .dialogs
                    .get(id)
                    .is_some_and(|d| d.rec.watcher_user.as_deref() == Some(CLUSTER_USER))
            })
            .collect();
        for id in &backend {
            self.terminate_subscription(id, Reason::Deactivated);
        }
        let now = std::time::Instant::now();
        let handed: Vec<(String, String, u32)> = self
            .sip
            .presentities
            .get(user)
            .map(|p| {
                p.publications
                    .entries()
                    .filter_map(|(etag, body, at)| {
                        let secs = at.saturating_duration_since(now).as_secs();
                        let secs = u32::try_from(secs).unwrap_or(u32::MAX);
                        (secs > 0).then(|| (etag.to_string(), body.to_xml(), secs))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (etag, pidf, secs) in handed {
            self.hand_over_publication(to, user, &etag, pidf, secs);
        }
        let had_publications = self
            .sip
            .presentities
            .get_mut(user)
            .map(|p| {
                let had = !p.publications.is_empty();
                p.publications = Default::default();
                had
            })
            .unwrap_or(false);
        if had_publications {
            self.publications_changed(user);
        }
        if let Some(r) = self.sip.registrations.remove(user) {
            self.cancel_timer(r.timer);
        }
        self.leaving(user, to, moved);
        info!(shard = self.index, %user, to = %to.id, sessions = moved, backend = backend.len(), "user moved away");
    }

    /// On every shard: SIP subscriptions the user holds as watcher end with `deactivated`
    /// (its UA subscribes again, reaching the new home), and this node's watchers of the
    /// user — XMPP contacts online here and SIP watchers homed here — now watch it at its new
    /// home through back-end subscriptions (DESIGN.md §8).
    pub(super) fn watch_moved(&mut self, user: &str) {
        let held: Vec<_> = self
            .sip
            .dialogs
            .iter()
            .filter(|(_, d)| d.rec.watcher_user.as_deref() == Some(user))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &held {
            self.terminate_subscription(id, Reason::Deactivated);
        }
        if self.remote_home(user).is_none() {
            return;
        }
        // Back-end subscriptions live on the presentity's shard: that is where the home's
        // NOTIFYs (addressed to the presentity) arrive.
        for watcher in self.online_watchers_of(user) {
            self.watch_remote(user, &watcher, true);
        }
        if self
            .sip
            .presentities
            .get(user)
            .is_some_and(|p| !p.watchers.is_empty())
        {
            self.backend_for_sip(user);
        }
    }
}
