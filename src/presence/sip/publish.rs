//! The event state compositor for presence: PUBLISH (RFC 3903 §6) with entity tags, and the
//! published tuples shown to XMPP contacts as resources of the user (RFC 8048 §4).

use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info};

use super::super::routes::{ResourceRoute, Sink};
use super::super::wire::wire;
use super::state::{media_type, SipFx, SipIo, SipState, SipTimer};
use crate::pidf::{self, Presence};
use crate::sip::event::Event;
use crate::sip::message::Request;
use crate::sip::publication::{random_tag, PublishError};
use crate::sip::transaction::Key;

impl SipState {
    /// PUBLISH (RFC 3903 §6).
    pub(crate) fn publish(&mut self, io: &mut SipIo<'_>, key: &Key, req: &Request) {
        let Some(user) = self.identify(io, key, req) else {
            return;
        };
        let Some(presentity) = self.addressed_user(io, key, req, false) else {
            return;
        };
        if presentity != user {
            return self.reply_simple(io, key, req, 403, "Forbidden (not your presentity)", &[]);
        }
        // RFC 3903 §6 step 2: a missing or unknown event package gets 489.
        let event = req.header("Event").map(Event::parse);
        if !matches!(&event, Some(Ok(e)) if e.package == "presence") {
            return self.reply_simple(
                io,
                key,
                req,
                489,
                "Bad Event",
                &[("Allow-Events", "presence".to_string())],
            );
        }
        let Some(expires) = self.granted_expires(io, key, req) else {
            return;
        };
        let body = req.body();
        let doc = if body.is_empty() {
            None
        } else {
            let ct = req.header("Content-Type").map(media_type);
            if ct.as_deref() != Some(pidf::CONTENT_TYPE) {
                return self.reply_simple(
                    io,
                    key,
                    req,
                    415,
                    "Unsupported Media Type",
                    &[("Accept", pidf::CONTENT_TYPE.to_string())],
                );
            }
            if body.len() > io.cx.settings.limits.max_pidf_bytes {
                return self.reply_simple(io, key, req, 413, "Request Entity Too Large", &[]);
            }
            match Presence::parse(body) {
                Ok(d) => Some(d),
                Err(e) => {
                    info!(shard = io.cx.index, %user, error = %e, "bad PIDF in PUBLISH");
                    return self.reply_simple(io, key, req, 400, "Bad PIDF document", &[]);
                }
            }
        };
        let if_match = req.header("SIP-If-Match").map(str::trim);
        let max = io.cx.settings.limits.max_publications_per_user;
        let now = io.cx.now;
        let p = self.presentity(&user);
        if if_match.is_none() && p.publications.len() >= max {
            self.gc_presentity(&user);
            return self.reply_simple(io, key, req, 403, "Forbidden (too many publications)", &[]);
        }
        let outcome = p
            .publications
            .publish(if_match, doc, expires, now, &mut || random_tag());
        match outcome {
            Err(PublishError::UnknownEtag) => {
                self.gc_presentity(&user);
                self.reply_simple(io, key, req, 412, "Conditional Request Failed", &[])
            }
            Err(e) => {
                self.gc_presentity(&user);
                let reason = format!("Bad Request ({e})");
                self.reply_simple(io, key, req, 400, &reason, &[])
            }
            Ok(published) => {
                let headers: Vec<(&str, String)> = match &published {
                    Some(p) => vec![
                        ("SIP-ETag", p.etag.clone()),
                        ("Expires", p.expires.to_string()),
                    ],
                    None => vec![("Expires", "0".to_string())],
                };
                self.reply_simple(io, key, req, 200, "OK", &headers);
                debug!(shard = io.cx.index, %user, etag = ?published.as_ref().map(|p| &p.etag), "published");
                self.publications_changed(io, &user);
            }
        }
    }

    /// The publications of `user` changed (PUBLISH or expiry): re-arm the expiry timer, show
    /// the tuples to XMPP contacts and notify SIP watchers.
    pub(crate) fn publications_changed(&mut self, io: &mut SipIo<'_>, user: &str) {
        let next = self
            .presentities
            .get(user)
            .and_then(|p| p.publications.next_expiry());
        let old = self
            .presentities
            .get_mut(user)
            .and_then(|p| p.publication_timer.take());
        self.cancel_timer(old);
        if let Some(at) = next {
            let id = self.schedule(
                io,
                at.saturating_duration_since(io.cx.now) + Duration::from_millis(1),
                SipTimer::Publications(user.to_string()),
            );
            if let Some(p) = self.presentities.get_mut(user) {
                p.publication_timer = Some(id);
            }
        }
        self.show_published_to_xmpp(io, user);
        self.notify_watchers(io, user);
        self.gc_presentity(user);
    }

    pub(super) fn publications_expired(&mut self, io: &mut SipIo<'_>, user: &str) {
        let changed = match self.presentities.get_mut(user) {
            Some(p) => {
                p.publication_timer = None;
                p.publications.expire(io.cx.now)
            }
            None => false,
        };
        if changed {
            info!(shard = io.cx.index, %user, "publication expired");
        }
        self.publications_changed(io, user);
    }

    /// A publication handed over by the node `user` left (DESIGN.md §7), kept under its
    /// entity-tag until `at`, so its watchers keep seeing it and the client's refresh, sent
    /// here by a `302`, still matches.
    pub(crate) fn adopt_publication(
        &mut self,
        io: &mut SipIo<'_>,
        user: &str,
        etag: String,
        doc: Presence,
        at: Instant,
    ) {
        self.presentity(user).publications.adopt(etag, doc, at);
        debug!(shard = io.cx.index, %user, "publication taken over");
        self.publications_changed(io, user);
    }

    /// `user`'s publications that are still live, to hand over to its new home: entity-tag,
    /// document and seconds left (DESIGN.md §7).
    pub(crate) fn publications_to_hand_over(
        &self,
        io: &SipIo<'_>,
        user: &str,
    ) -> Vec<(String, String, u32)> {
        let now = io.cx.now;
        self.presentities
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
            .unwrap_or_default()
    }

    /// `user` moved away: its publications and registrations here are dropped (a refresh
    /// gets `302` to the new home).
    pub(crate) fn moved_away(&mut self, io: &mut SipIo<'_>, user: &str) {
        let had_publications = self
            .presentities
            .get_mut(user)
            .map(|p| {
                let had = !p.publications.is_empty();
                p.publications = Default::default();
                had
            })
            .unwrap_or(false);
        if had_publications {
            self.publications_changed(io, user);
        }
        if let Some(r) = self.registrations.remove(user) {
            self.cancel_timer(r.timer);
        }
    }

    /// RFC 8048 §4: each published tuple appears to the user's XMPP contacts as a resource
    /// with the mapped presence; tuples that went away or closed become unavailable.
    fn show_published_to_xmpp(&mut self, io: &mut SipIo<'_>, user: &str) {
        let domain = io.cx.domain();
        let entity = format!("pres:{user}@{domain}");
        let now_shown: Vec<pidf::xmpp::XmppPresence> = match self.presentities.get(user) {
            Some(p) if !p.publications.is_empty() => {
                pidf::xmpp::from_pidf(&Presence::compose(&entity, p.publications.bodies()))
            }
            _ => Vec::new(),
        };
        let before = self
            .presentities
            .get(user)
            .map(|p| p.shown.clone())
            .unwrap_or_default();
        if before.is_empty() && now_shown.is_empty() {
            return;
        }
        let bare = format!("{user}@{domain}");
        let mut routes = io.cx.routes.get(user).as_ref().clone();
        let mut to_broadcast: Vec<Bytes> = Vec::new();
        // Tuples gone since the last change: unavailable.
        for (resource, was) in &before {
            if now_shown.iter().any(|p| &p.resource == resource) {
                continue;
            }
            routes.retain(|r| !(r.is_sip() && &r.resource == resource));
            if was.available {
                let mut gone = was.clone();
                gone.available = false;
                let el = pidf::xmpp::to_stanza(&format!("{bare}/{resource}"), &gone);
                to_broadcast.push(wire(&el));
            }
        }
        for p in &now_shown {
            if routes
                .iter()
                .any(|r| !r.is_sip() && r.resource == p.resource)
            {
                continue; // an XMPP session uses this resource name; it wins
            }
            if before.get(&p.resource) == Some(p) {
                continue;
            }
            let was_available = before.get(&p.resource).is_some_and(|b| b.available);
            if !p.available && !was_available {
                continue;
            }
            let el = pidf::xmpp::to_stanza(&format!("{bare}/{}", p.resource), p);
            let bytes = wire(&el);
            routes.retain(|r| !(r.is_sip() && r.resource == p.resource));
            if p.available {
                routes.push(ResourceRoute {
                    resource: p.resource.clone(),
                    session_id: 0,
                    sink: Sink::Sip,
                    presence: Some(bytes.clone()),
                    priority: p.priority,
                    interested: false,
                });
            }
            to_broadcast.push(bytes);
        }
        io.cx.routes.set(user, routes);
        let shown = now_shown
            .into_iter()
            .map(|p| (p.resource.clone(), p))
            .collect();
        self.presentity(user).shown = shown;
        for bytes in to_broadcast {
            io.fx.push(SipFx::Broadcast {
                user: user.to_string(),
                bytes,
            });
        }
    }
}
