//! The registrar (RFC 3261 §10.3) and instant messages (RFC 3428): SIP user agents register
//! contacts with expiring bindings; MESSAGE from a SIP user reaches the recipient's XMPP
//! resources or registered user agents, and XMPP messages reach registered SIP user agents.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info};

use super::super::shard::{Delivery, PresenceShard};
use super::{Purpose, RegistrationState, SipTimer};
use crate::sip::message::{Method, Request};
use crate::sip::registrar::{self, Bindings, RegisterError};
use crate::sip::transaction::Key;
use crate::sip::transport::Peer;
use crate::xmpp::jid::Jid;
use crate::xmpp::xml::{Element, CLIENT_NS};

impl PresenceShard {
    pub(super) fn sip_register(&mut self, key: &Key, req: &Request, peer: Peer) {
        let Some(user) = self.identify(key, req) else {
            return;
        };
        let Some(aor) = self.local_user(&req.base.to.uri) else {
            return self.reply_simple(key, req, 404, "Not Found", &[]);
        };
        if aor != user {
            // RFC 3261 §10.3 step 6: only the user may change its own bindings.
            return self.reply_simple(key, req, 403, "Forbidden (not your address-of-record)", &[]);
        }
        let list = match registrar::parse_contacts(&req.headers("Contact")) {
            Ok(l) => l,
            Err(e) => {
                let reason = format!("Bad Request ({e})");
                return self.reply_simple(key, req, 400, &reason, &[]);
            }
        };
        let Ok(header_expires) = super::expires_header(req) else {
            return self.reply_simple(key, req, 400, "Bad Expires header", &[]);
        };
        let cfg = &self.hub.settings.sip;
        let (default, min, max) = (cfg.default_expires, cfg.min_expires, cfg.max_expires);
        let max_bindings = self.hub.settings.limits.max_registrations_per_user;
        let now = Instant::now();
        let state = self
            .sip
            .registrations
            .entry(user.clone())
            .or_insert_with(|| RegistrationState {
                bindings: Bindings::new(),
                timer: None,
            });
        let mut trial = state.bindings.clone();
        let result = trial.apply(
            &list,
            header_expires,
            &req.base.call_id,
            req.base.cseq.seq,
            now,
            default,
            min,
            max,
            peer,
        );
        let current = match result {
            Ok(c) if c.len() > max_bindings => {
                return self.reply_simple(key, req, 403, "Forbidden (too many contacts)", &[]);
            }
            Ok(c) => c,
            Err(RegisterError::IntervalTooBrief { min_expires }) => {
                return self.reply_simple(
                    key,
                    req,
                    423,
                    "Interval Too Brief",
                    &[("Min-Expires", min_expires.to_string())],
                )
            }
            Err(RegisterError::OutOfOrder) => {
                return self.reply_simple(
                    key,
                    req,
                    500,
                    "Server Internal Error (CSeq out of order)",
                    &[],
                )
            }
            Err(e) => {
                let reason = format!("Bad Request ({e})");
                return self.reply_simple(key, req, 400, &reason, &[]);
            }
        };
        state.bindings = trial;
        let mut headers: Vec<(&str, String)> = current
            .iter()
            .map(|b| ("Contact", registrar::contact_value(b, now)))
            .collect();
        headers.push(("Date", httpdate_now()));
        self.reply_simple(key, req, 200, "OK", &headers);
        debug!(shard = self.index, %user, bindings = current.len(), "registered");
        self.rearm_registrations(&user);
    }

    fn rearm_registrations(&mut self, user: &str) {
        let Some(state) = self.sip.registrations.get_mut(user) else {
            return;
        };
        let old = state.timer.take();
        let next = state.bindings.next_expiry();
        let empty = state.bindings.is_empty();
        self.cancel_timer(old);
        if empty {
            self.sip.registrations.remove(user);
            return;
        }
        if let Some(at) = next {
            let id = self.schedule(
                at.saturating_duration_since(Instant::now()) + Duration::from_millis(1),
                SipTimer::Registrations(user.to_string()),
            );
            if let Some(state) = self.sip.registrations.get_mut(user) {
                state.timer = Some(id);
            }
        }
    }

    pub(super) fn registrations_expired(&mut self, user: &str) {
        if let Some(state) = self.sip.registrations.get_mut(user) {
            state.timer = None;
            if state.bindings.expire(Instant::now()) {
                debug!(shard = self.index, %user, "registration expired");
            }
        }
        self.rearm_registrations(user);
    }

    /// MESSAGE (RFC 3428 §7): to the recipient's XMPP resources and registered user agents,
    /// or stored offline. `200` when handed on, `202` when stored, `404` for no such user.
    pub(super) fn sip_message(&mut self, key: &Key, req: &Request, _peer: Peer) {
        let Some(sender) = self.identify(key, req) else {
            return;
        };
        let Some(recipient) = self.addressed_user(key, req, true) else {
            return;
        };
        let ct = req.header("Content-Type").map(super::media_type);
        if !matches!(ct.as_deref(), None | Some("text/plain")) {
            return self.reply_simple(
                key,
                req,
                415,
                "Unsupported Media Type",
                &[("Accept", "text/plain".to_string())],
            );
        }
        let Ok(text) = std::str::from_utf8(req.body()) else {
            return self.reply_simple(key, req, 400, "Bad Request (body is not UTF-8)", &[]);
        };
        let domain = self.hub.settings.domain.clone();
        let stanza = Element::new("message", CLIENT_NS)
            .with_attr("from", format!("{sender}@{domain}"))
            .with_attr("to", format!("{recipient}@{domain}"))
            .with_attr("type", "chat")
            .with_attr("id", crate::sip::message::new_tag())
            .with_child(Element::new("body", CLIENT_NS).with_text(text));
        let outcome = self.inbound(Jid::bare(&recipient, &domain), stanza);
        match outcome {
            Delivery::Delivered => self.reply_simple(key, req, 200, "OK", &[]),
            Delivery::Stored => self.reply_simple(key, req, 202, "Accepted", &[]),
            Delivery::Failed => self.reply_simple(key, req, 480, "Temporarily Unavailable", &[]),
        }
    }

    /// Sends an XMPP `<message/>` with a body to every registered user agent of `user` as SIP
    /// MESSAGE (RFC 3428); false when the user has no live binding.
    pub(crate) fn sip_deliver_message(&mut self, user: &str, stanza: &Element) -> bool {
        let now = Instant::now();
        let bindings = match self.sip.registrations.get(user) {
            Some(s) => s.bindings.current(now),
            None => return false,
        };
        if bindings.is_empty() {
            return false;
        }
        let Some(body) = stanza.get_child("body", CLIENT_NS).map(|b| b.text()) else {
            return true; // chat states and receipts have nothing to say to a SIP UA
        };
        let domain = self.hub.settings.domain.clone();
        let from = stanza
            .attr("from")
            .and_then(|f| Jid::parse(f).ok())
            .and_then(|j| j.local().map(|l| format!("sip:{l}@{}", j.domain())))
            .unwrap_or_else(|| format!("sip:{domain}"));
        let to = format!("sip:{user}@{domain}");
        let body = Bytes::from(body.into_bytes());
        for b in bindings {
            let peer = b.data;
            let (branch, bytes) = self.build_request(
                Method::Message,
                &b.uri,
                peer,
                &from,
                &to,
                Some(("text/plain;charset=UTF-8", body.clone())),
            );
            self.send_request(peer, branch, bytes, Purpose::Message);
        }
        info!(shard = self.index, %user, "message handed to SIP user agents");
        true
    }
}

/// RFC 7231 IMF-fixdate for the Date header of REGISTER responses (RFC 3261 §20.17).
fn httpdate_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    httpdate(secs)
}

/// `secs` since the Unix epoch as an IMF-fixdate (RFC 7231 §7.1.1.1), by the `httpdate` crate.
fn httpdate(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::httpdate;

    #[test]
    fn date_header_is_imf_fixdate() {
        // The RFC 3261 §20.17 example date.
        assert_eq!(httpdate(1_289_690_940), "Sat, 13 Nov 2010 23:29:00 GMT");
        assert_eq!(httpdate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
