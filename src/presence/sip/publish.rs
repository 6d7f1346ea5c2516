//! The event state compositor for presence: PUBLISH (RFC 3903 §6) with entity tags, and the
//! published tuples shown to XMPP contacts as resources of the user (RFC 8048 §4).

use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info};

use super::super::routes::ResourceRoute;
use super::super::shard::{wire, PresenceShard};
use super::SipTimer;
use crate::pidf::{self, Presence};
use crate::sip::event::Event;
use crate::sip::message::Request;
use crate::sip::publication::{random_tag, PublishError};
use crate::sip::transaction::Key;
use crate::sip::transport::Peer;
use crate::xmpp::connection::Outbox;

impl PresenceShard {
    pub(super) fn sip_publish(&mut self, key: &Key, req: &Request, _peer: Peer) {
        let Some(user) = self.identify(key, req) else {
            return;
        };
        let Some(presentity) = self.addressed_user(key, req, false) else {
            return;
        };
        if presentity != user {
            return self.reply_simple(key, req, 403, "Forbidden (not your presentity)", &[]);
        }
        // RFC 3903 §6 step 2: a missing or unknown event package gets 489.
        let event = req.header("Event").map(Event::parse);
        if !matches!(&event, Some(Ok(e)) if e.package == "presence") {
            return self.reply_simple(
                key,
                req,
                489,
                "Bad Event",
                &[("Allow-Events", "presence".to_string())],
            );
        }
        let Some(expires) = self.granted_expires(key, req) else {
            return;
        };
        let body = req.body();
        let doc = if body.is_empty() {
            None
        } else {
            let ct = req.header("Content-Type").map(super::media_type);
            if ct.as_deref() != Some(pidf::CONTENT_TYPE) {
                return self.reply_simple(
                    key,
                    req,
                    415,
                    "Unsupported Media Type",
                    &[("Accept", pidf::CONTENT_TYPE.to_string())],
                );
            }
            if body.len() > self.hub.settings.limits.max_pidf_bytes {
                return self.reply_simple(key, req, 413, "Request Entity Too Large", &[]);
            }
            match Presence::parse(body) {
                Ok(d) => Some(d),
                Err(e) => {
                    info!(shard = self.index, %user, error = %e, "bad PIDF in PUBLISH");
                    return self.reply_simple(key, req, 400, "Bad PIDF document", &[]);
                }
            }
        };
        let if_match = req.header("SIP-If-Match").map(str::trim);
        let max = self.hub.settings.limits.max_publications_per_user;
        let p = self.presentity(&user);
        if if_match.is_none() && p.publications.len() >= max {
            self.gc_presentity(&user);
            return self.reply_simple(key, req, 403, "Forbidden (too many publications)", &[]);
        }
        let outcome = p
            .publications
            .publish(if_match, doc, expires, Instant::now(), &mut || random_tag());
        match outcome {
            Err(PublishError::UnknownEtag) => {
                self.gc_presentity(&user);
                self.reply_simple(key, req, 412, "Conditional Request Failed", &[])
            }
            Err(e) => {
                self.gc_presentity(&user);
                let reason = format!("Bad Request ({e})");
                self.reply_simple(key, req, 400, &reason, &[])
            }
            Ok(published) => {
                let headers: Vec<(&str, String)> = match &published {
                    Some(p) => vec![
                        ("SIP-ETag", p.etag.clone()),
                        ("Expires", p.expires.to_string()),
                    ],
                    None => vec![("Expires", "0".to_string())],
                };
                self.reply_simple(key, req, 200, "OK", &headers);
                debug!(shard = self.index, %user, etag = ?published.as_ref().map(|p| &p.etag), "published");
                self.publications_changed(&user);
            }
        }
    }

    /// The publications of `user` changed (PUBLISH or expiry): re-arm the expiry timer, show
    /// the tuples to XMPP contacts and notify SIP watchers.
    pub(crate) fn publications_changed(&mut self, user: &str) {
        let next = self
            .sip
            .presentities
            .get(user)
            .and_then(|p| p.publications.next_expiry());
        let old = self
            .sip
            .presentities
            .get_mut(user)
            .and_then(|p| p.publication_timer.take());
        self.cancel_timer(old);
        if let Some(at) = next {
            let id = self.schedule(
                at.saturating_duration_since(Instant::now()) + Duration::from_millis(1),
                SipTimer::Publications(user.to_string()),
            );
            if let Some(p) = self.sip.presentities.get_mut(user) {
                p.publication_timer = Some(id);
            }
        }
        self.show_published_to_xmpp(user);
        self.notify_watchers(user);
        self.gc_presentity(user);
    }

    pub(super) fn publications_expired(&mut self, user: &str) {
        let changed = match self.sip.presentities.get_mut(user) {
            Some(p) => {
                p.publication_timer = None;
                p.publications.expire(Instant::now())
            }
            None => false,
        };
        if changed {
            info!(shard = self.index, %user, "publication expired");
        }
        self.publications_changed(user);
    }

    /// RFC 8048 §4: each published tuple appears to the user's XMPP contacts as a resource
    /// with the mapped presence; tuples that went away or closed become unavailable.
    fn show_published_to_xmpp(&mut self, user: &str) {
        let domain = self.hub.settings.domain.clone();
        let entity = format!("pres:{user}@{domain}");
        let now_shown: Vec<pidf::xmpp::XmppPresence> = match self.sip.presentities.get(user) {
            Some(p) if !p.publications.is_empty() => {
                pidf::xmpp::from_pidf(&Presence::compose(&entity, p.publications.bodies()))
            }
            _ => Vec::new(),
        };
        let before = self
            .sip
            .presentities
            .get(user)
            .map(|p| p.shown.clone())
            .unwrap_or_default();
        if before.is_empty() && now_shown.is_empty() {
            return;
        }
        let bare = format!("{user}@{domain}");
        let mut routes = self.resources(user);
        let mut to_broadcast: Vec<Bytes> = Vec::new();
        // Tuples gone since the last change: unavailable.
        for (resource, was) in &before {
            if now_shown.iter().any(|p| &p.resource == resource) {
                continue;
            }
            routes.retain(|r| !(r.sip && &r.resource == resource));
            if was.available {
                let mut gone = was.clone();
                gone.available = false;
                let el = pidf::xmpp::to_stanza(&format!("{bare}/{resource}"), &gone);
                to_broadcast.push(wire(&el));
            }
        }
        for p in &now_shown {
            if routes.iter().any(|r| !r.sip && r.resource == p.resource) {
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
            routes.retain(|r| !(r.sip && r.resource == p.resource));
            if p.available {
                routes.push(ResourceRoute {
                    resource: p.resource.clone(),
                    session_id: 0,
                    outbox: Outbox::detached(),
                    presence: Some(bytes.clone()),
                    priority: p.priority,
                    interested: false,
                    sip: true,
                });
            }
            to_broadcast.push(bytes);
        }
        self.hub.routes.set(user, routes);
        let shown = now_shown
            .into_iter()
            .map(|p| (p.resource.clone(), p))
            .collect();
        self.presentity(user).shown = shown;
        for bytes in to_broadcast {
            self.broadcast(user, &bytes);
        }
    }
}
