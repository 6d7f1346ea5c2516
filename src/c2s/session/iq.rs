//! The iqs the server answers itself (RFC 6120 §8.4 for unknown payloads): ping (XEP-0199),
//! disco (XEP-0030), private storage (XEP-0049), in-band registration changes (XEP-0077),
//! MOE-MP settings, and the legacy session.

use actix::prelude::*;
use tracing::{info, warn};

use super::*;
use crate::accounts;
use crate::presence::moe::{MoeIq, SettingsSaved};
use crate::presence::{AccountRemoved, RosterIq};
use crate::store::Records;
use crate::xml::Element;
use crate::xmpp::disco::{self, DISCO_INFO_NS, DISCO_ITEMS_NS, PING_NS};
use crate::xmpp::jid::Jid;
use crate::xmpp::moe;
use crate::xmpp::private::{self, PRIVATE_NS};
use crate::xmpp::register::{self, RegisterRequest, REGISTER_NS};
use crate::xmpp::roster::ROSTER_NS;
use crate::xmpp::stanza::{error_reply, iq_payload, iq_result, IqType, StanzaError};

impl XmppSession {
    /// iqs the server answers itself (RFC 6120 §8.4 for unknown payloads).
    pub(super) fn server_iq(
        &mut self,
        el: Element,
        jid: Jid,
        to_own_bare: bool,
    ) -> Option<ResponseActFuture<Self, ()>> {
        let itype = IqType::of(&el);
        let Some(payload) = iq_payload(&el).cloned() else {
            self.send(&error_reply(
                &el,
                StanzaError::BadRequest,
                Some("iq without payload"),
            ));
            return None;
        };
        let user = jid.local().unwrap_or_default().to_string();
        let ns = payload.ns.as_str();
        let reply = |s: &Self, r: Element| s.send(&r);
        match (ns, payload.name.as_str(), itype) {
            (ROSTER_NS, "query", _) => {
                let shard = self.ctx.hub.shard(&user).clone();
                return Some(forward(
                    self,
                    shard.send(RosterIq {
                        from: jid,
                        iq: el,
                        outbox: self.outbox.clone(),
                    }),
                ));
            }
            (PING_NS, "ping", Some(IqType::Get)) => reply(self, iq_result(&el, None)),
            (DISCO_INFO_NS, "query", Some(IqType::Get)) => {
                let info = if to_own_bare {
                    disco::account_info()
                } else {
                    disco::server_info(self.registration_open())
                };
                reply(self, iq_result(&el, Some(info)))
            }
            (DISCO_ITEMS_NS, "query", Some(IqType::Get)) => {
                reply(self, iq_result(&el, Some(disco::no_items())))
            }
            (SESSION_NS, "session", Some(IqType::Set)) => reply(self, iq_result(&el, None)),
            (PRIVATE_NS, "query", Some(t)) => self.private_iq(&el, &payload, &jid, t),
            (moe::NS, _, _) => match moe::iq_payload(&el) {
                Err(e) => reply(self, e.reply_to(&el)),
                Ok(None) => reply(
                    self,
                    error_reply(&el, StanzaError::ServiceUnavailable, None),
                ),
                Ok(Some(payload)) => {
                    let shard = self.ctx.hub.shard(&user).clone();
                    let msg = MoeIq {
                        from: jid,
                        iq: el,
                        payload,
                        outbox: self.outbox.clone(),
                    };
                    return Some(forward(self, shard.send(msg)));
                }
            },
            (REGISTER_NS, "query", Some(t)) => self.registered_iq(&el, &payload, &user, t),
            (BIND_NS, "bind", _) => reply(
                self,
                error_reply(&el, StanzaError::NotAllowed, Some("already bound")),
            ),
            _ => reply(
                self,
                error_reply(&el, StanzaError::ServiceUnavailable, None),
            ),
        }
        None
    }

    /// XEP-0049 get/set for the user's own account.
    pub(super) fn private_iq(&mut self, el: &Element, query: &Element, jid: &Jid, itype: IqType) {
        let user = jid.local().unwrap_or_default();
        let item = match private::payload(query) {
            Ok(i) => i,
            Err((err, text)) => return self.send(&error_reply(el, err, Some(text))),
        };
        let key = private::key(item);
        let store = &self.ctx.store;
        match itype {
            IqType::Get => match store.private_get(user, &key) {
                Ok(stored) => {
                    let data = stored
                        .and_then(|xml| private::parse_stored(&xml))
                        .unwrap_or_else(|| Element::new(item.name.clone(), item.ns.clone()));
                    self.send(&iq_result(
                        el,
                        Some(Element::new("query", PRIVATE_NS).with_child(data)),
                    ));
                }
                Err(e) => {
                    warn!(error = %e, "private read failed");
                    self.send(&error_reply(el, StanzaError::InternalServerError, None));
                }
            },
            IqType::Set => {
                let mut xml = Vec::with_capacity(256);
                item.write_to(&mut xml, "");
                if xml.len() > self.ctx.limits.max_private_bytes {
                    return self.send(&error_reply(
                        el,
                        StanzaError::NotAcceptable,
                        Some("private data too large"),
                    ));
                }
                match store.private_put(user, &key, &String::from_utf8_lossy(&xml)) {
                    Ok(()) => {
                        // Answered once the primary has it too (DESIGN.md §3).
                        crate::presence::write_through(
                            &self.ctx.hub.inner,
                            user,
                            Some((
                                self.outbox.clone(),
                                iq_result(el, None),
                                crate::presence::shard::not_written(el),
                            )),
                        );
                        if key == moe::settings_key() {
                            // MOE-MP settings: push to the user's other resources (§1).
                            self.ctx.hub.shard(user).do_send(SettingsSaved {
                                user: user.to_string(),
                                resource: jid.resource().unwrap_or_default().to_string(),
                                settings: item.clone(),
                            });
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "private write failed");
                        self.send(&error_reply(el, StanzaError::InternalServerError, None));
                    }
                }
            }
            _ => {}
        }
    }

    /// XEP-0077 on an authenticated stream: password change (§3.3) and cancellation (§3.2).
    pub(super) fn registered_iq(
        &mut self,
        el: &Element,
        query: &Element,
        user: &str,
        itype: IqType,
    ) {
        match itype {
            IqType::Get => self.send(&iq_result(el, Some(register::form(Some(user))))),
            IqType::Set => match register::parse_set(query) {
                Ok(RegisterRequest::Remove) => match accounts::delete(&*self.ctx.store, user) {
                    Ok(()) => {
                        info!(%user, "account removed in-band");
                        self.send(&iq_result(el, None));
                        self.ctx.hub.shard(user).do_send(AccountRemoved {
                            user: user.to_string(),
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "account removal failed");
                        self.send(&error_reply(el, StanzaError::InternalServerError, None));
                    }
                },
                Ok(RegisterRequest::Credentials { username, password }) => {
                    if crate::xmpp::jid::normalize_local(&username).ok().as_deref() != Some(user) {
                        return self.send(&error_reply(
                            el,
                            StanzaError::NotAllowed,
                            Some("you may change only your own password"),
                        ));
                    }
                    match accounts::set_password(
                        &*self.ctx.store,
                        user,
                        &password,
                        &self.ctx.credentials,
                    ) {
                        Ok(()) => self.send(&iq_result(el, None)),
                        Err(e) => {
                            warn!(error = %e, "password change failed");
                            self.send(&error_reply(el, StanzaError::InternalServerError, None));
                        }
                    }
                }
                Err((err, text)) => self.send(&error_reply(el, err, Some(text))),
            },
            _ => {}
        }
    }
}
