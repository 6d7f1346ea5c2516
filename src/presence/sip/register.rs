//! The registrar (RFC 3261 §10.3) and instant messages (RFC 3428): SIP user agents register
//! contacts with expiring bindings; MESSAGE from a SIP user reaches the recipient's XMPP
//! resources or registered user agents, and XMPP messages reach registered SIP user agents.

use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, info};

use super::super::context::{local_user, reply};
use super::super::date::httpdate_now;
use super::super::deliver::Delivery;
use super::state::{
    expires_header, media_type, Purpose, RegistrationState, SipIo, SipState, SipTimer,
};
use crate::sip::message::Request;
use crate::sip::registrar::{self, Bindings, RegisterError};
use crate::sip::transaction::Key;
use crate::sip::transport::Peer;
use crate::xml::{Element, CLIENT_NS};
use crate::xmpp::jid::Jid;

impl SipState {
    /// REGISTER (RFC 3261 §10.3).
    pub(crate) fn register(&mut self, io: &mut SipIo<'_>, key: &Key, req: &Request, peer: Peer) {
        let Some(user) = self.identify(io, key, req) else {
            return;
        };
        let Some(aor) = local_user(&req.base.to.uri) else {
            return self.reply_simple(io, key, req, 404, "Not Found", &[]);
        };
        if aor != user {
            // RFC 3261 §10.3 step 6: only the user may change its own bindings.
            return self.reply_simple(
                io,
                key,
                req,
                403,
                "Forbidden (not your address-of-record)",
                &[],
            );
        }
        let list = match registrar::parse_contacts(&req.headers("Contact")) {
            Ok(l) => l,
            Err(e) => {
                let reason = format!("Bad Request ({e})");
                return self.reply_simple(io, key, req, 400, &reason, &[]);
            }
        };
        let Ok(header_expires) = expires_header(req) else {
            return self.reply_simple(io, key, req, 400, "Bad Expires header", &[]);
        };
        let cfg = &io.cx.settings.sip;
        let (default, min, max) = (cfg.default_expires, cfg.min_expires, cfg.max_expires);
        let max_bindings = io.cx.settings.limits.max_registrations_per_user;
        let now = io.cx.now;
        let state = self
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
                return self.reply_simple(io, key, req, 403, "Forbidden (too many contacts)", &[]);
            }
            Ok(c) => c,
            Err(RegisterError::IntervalTooBrief { min_expires }) => {
                return self.reply_simple(
                    io,
                    key,
                    req,
                    423,
                    "Interval Too Brief",
                    &[("Min-Expires", min_expires.to_string())],
                )
            }
            Err(RegisterError::OutOfOrder) => {
                return self.reply_simple(
                    io,
                    key,
                    req,
                    500,
                    "Server Internal Error (CSeq out of order)",
                    &[],
                )
            }
            Err(e) => {
                let reason = format!("Bad Request ({e})");
                return self.reply_simple(io, key, req, 400, &reason, &[]);
            }
        };
        state.bindings = trial;
        let mut headers: Vec<(&str, String)> = current
            .iter()
            .map(|b| ("Contact", registrar::contact_value(b, now)))
            .collect();
        headers.push(("Date", httpdate_now()));
        self.reply_simple(io, key, req, 200, "OK", &headers);
        debug!(shard = io.cx.index, %user, bindings = current.len(), "registered");
        self.rearm_registrations(io, &user);
    }

    fn rearm_registrations(&mut self, io: &SipIo<'_>, user: &str) {
        let Some(state) = self.registrations.get_mut(user) else {
            return;
        };
        let old = state.timer.take();
        let next = state.bindings.next_expiry();
        let empty = state.bindings.is_empty();
        self.cancel_timer(old);
        if empty {
            self.registrations.remove(user);
            return;
        }
        if let Some(at) = next {
            let id = self.schedule(
                io,
                at.saturating_duration_since(io.cx.now) + Duration::from_millis(1),
                SipTimer::Registrations(user.to_string()),
            );
            if let Some(state) = self.registrations.get_mut(user) {
                state.timer = Some(id);
            }
        }
    }

    pub(super) fn registrations_expired(&mut self, io: &SipIo<'_>, user: &str) {
        if let Some(state) = self.registrations.get_mut(user) {
            state.timer = None;
            if state.bindings.expire(io.cx.now) {
                debug!(shard = io.cx.index, %user, "registration expired");
            }
        }
        self.rearm_registrations(io, user);
    }

    /// MESSAGE (RFC 3428 §7), checked: the recipient and the message as an XMPP chat
    /// message, for the shard to deliver to the recipient's XMPP resources and registered
    /// user agents or store offline; then [`Self::message_delivered`]. `None` when it was
    /// answered already (`404` for no such user, `415`, `400`, or an authentication answer).
    pub(crate) fn message_in(
        &mut self,
        io: &mut SipIo<'_>,
        key: &Key,
        req: &Request,
    ) -> Option<(String, Element)> {
        let sender = self.identify(io, key, req)?;
        let recipient = self.addressed_user(io, key, req, true)?;
        let ct = req.header("Content-Type").map(media_type);
        if !matches!(ct.as_deref(), None | Some("text/plain")) {
            self.reply_simple(
                io,
                key,
                req,
                415,
                "Unsupported Media Type",
                &[("Accept", "text/plain".to_string())],
            );
            return None;
        }
        let Ok(text) = std::str::from_utf8(req.body()) else {
            self.reply_simple(io, key, req, 400, "Bad Request (body is not UTF-8)", &[]);
            return None;
        };
        let domain = io.cx.domain();
        let stanza = Element::new("message", CLIENT_NS)
            .with_attr("from", format!("{sender}@{domain}"))
            .with_attr("to", format!("{recipient}@{domain}"))
            .with_attr("type", "chat")
            .with_attr("id", crate::sip::message::new_tag())
            .with_child(Element::new("body", CLIENT_NS).with_text(text));
        Some((recipient, stanza))
    }

    /// The answer to a MESSAGE: `200` when handed on, `202` when stored, `480` otherwise.
    pub(crate) fn message_delivered(
        &mut self,
        io: &mut SipIo<'_>,
        key: &Key,
        req: &Request,
        outcome: Delivery,
    ) {
        let (status, reason) = outcome.status();
        let r = reply(req, status, reason, &[]);
        self.respond(io, key, r.status, r.bytes);
    }

    /// Sends an XMPP `<message/>` with a body to every registered user agent of `user` as SIP
    /// MESSAGE (RFC 3428); false when the user has no live binding.
    pub(crate) fn deliver_message(
        &mut self,
        io: &mut SipIo<'_>,
        user: &str,
        stanza: &Element,
    ) -> bool {
        let now = io.cx.now;
        let bindings = match self.registrations.get(user) {
            Some(s) => s.bindings.current(now),
            None => return false,
        };
        if bindings.is_empty() {
            return false;
        }
        let Some(body) = stanza.get_child("body", CLIENT_NS).map(|b| b.text()) else {
            return true; // chat states and receipts have nothing to say to a SIP UA
        };
        let domain = io.cx.domain();
        let from = stanza
            .attr("from")
            .and_then(|f| Jid::parse(f).ok())
            .and_then(|j| j.local().map(|l| format!("sip:{l}@{}", j.domain())))
            .unwrap_or_else(|| format!("sip:{domain}"));
        let to = format!("sip:{user}@{domain}");
        let body = Bytes::from(body.into_bytes());
        for b in bindings {
            let peer = b.data;
            let body = ("text/plain;charset=UTF-8", body.clone());
            let (branch, bytes) = self.build_message(io, &b.uri, peer, &from, &to, body);
            self.start_request(io, peer, branch, bytes, Purpose::Message);
        }
        info!(shard = io.cx.index, %user, "message handed to SIP user agents");
        true
    }
}
