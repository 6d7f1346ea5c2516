//! Who sent a request: digest authentication (RFC 3261 §22.4, RFC 8760) against the hashes in
//! the account store, or — with `sip.sip_auth = false` — the From user, trusted as is.
//!
//! A request without credentials, with a nonce we did not issue or one that went stale, gets
//! `401` with one challenge per algorithm, SHA-256 first (RFC 8760 §2.4); credentials that do
//! not verify (wrong password, unknown user, another user's name) get `403` (the issue's
//! "403 after the challenge"), malformed ones `400`.

use tracing::info;

use super::super::context::local_user;
use super::state::{SipIo, SipState};
use crate::sip::digest::{self, Algorithm, NonceState};
use crate::sip::message::Request;
use crate::sip::transaction::Key;
use crate::store::Records;

/// Why a request was not authenticated, and how to answer.
enum Denied {
    /// `401` with fresh challenges; `stale` marks an expired nonce.
    Challenge { stale: bool },
    /// A final refusal with this status and reason phrase.
    Refuse(u16, &'static str),
}

impl SipState {
    /// The local user who sent `req`, or why not.
    fn authenticate(io: &SipIo<'_>, req: &Request) -> Result<String, Denied> {
        let settings = io.cx.settings;
        if !settings.sip.sip_auth {
            let user = local_user(&req.base.from.uri)
                .ok_or(Denied::Refuse(403, "Forbidden (From names no user)"))?;
            return match io.cx.store.has_account(&user) {
                Ok(true) => Ok(user),
                _ => Err(Denied::Refuse(403, "Forbidden (unknown user)")),
            };
        }
        let Some(value) = req
            .header("Authorization")
            .or_else(|| req.header("Proxy-Authorization"))
        else {
            return Err(Denied::Challenge { stale: false });
        };
        let auth = match digest::parse_authorization(value) {
            Ok(a) => a,
            Err(e) => {
                info!(shard = io.cx.index, error = %e, "malformed Authorization");
                return Err(Denied::Refuse(400, "Bad Request (malformed Authorization)"));
            }
        };
        if auth.uri != req.raw_uri() {
            // RFC 2617 §3.2.2.5: the digest-uri must be the Request-URI.
            info!(shard = io.cx.index, "digest uri is not the Request-URI");
            return Err(Denied::Refuse(400, "Bad Request (digest uri mismatch)"));
        }
        let realm = settings.domain.as_str();
        if auth.realm != realm {
            return Err(Denied::Challenge { stale: false });
        }
        let Some(rt) = io.cx.sip else {
            return Err(Denied::Refuse(503, "Service Unavailable"));
        };
        match rt.nonces.check(
            &auth.nonce,
            realm,
            io.cx.unix_now(),
            settings.sip.nonce_lifetime_s,
        ) {
            NonceState::Fresh => {}
            NonceState::Stale => return Err(Denied::Challenge { stale: true }),
            NonceState::Invalid => return Err(Denied::Challenge { stale: false }),
        }
        let user = crate::xmpp::jid::normalize_local(&auth.username)
            .map_err(|_| Denied::Refuse(403, "Forbidden"))?;
        let account = match io.cx.store.account(&user) {
            Ok(Some(a)) => a,
            _ => {
                info!(shard = io.cx.index, %user, "digest for an unknown user refused");
                return Err(Denied::Refuse(403, "Forbidden"));
            }
        };
        let Some(sip) = account.sip.filter(|s| s.realm == realm) else {
            info!(shard = io.cx.index, %user,
                "account has no SIP digest for this realm; set its password again");
            return Err(Denied::Refuse(403, "Forbidden (no SIP credentials)"));
        };
        let ha1 = match auth.algorithm {
            Algorithm::Md5 => &sip.md5,
            Algorithm::Sha256 => &sip.sha256,
        };
        if !digest::verify(&auth, req.method().as_str(), ha1) {
            info!(shard = io.cx.index, %user, "digest response does not verify");
            return Err(Denied::Refuse(403, "Forbidden"));
        }
        Ok(user)
    }

    /// The local user who sent `req`; otherwise the request is answered (401, 403 or 400)
    /// and `None` returned.
    pub(super) fn identify(
        &mut self,
        io: &mut SipIo<'_>,
        key: &Key,
        req: &Request,
    ) -> Option<String> {
        match Self::authenticate(io, req) {
            Ok(user) => Some(user),
            Err(denied) => {
                self.deny(io, key, req, denied);
                None
            }
        }
    }

    /// Answers a request that was not authenticated.
    fn deny(&mut self, io: &mut SipIo<'_>, key: &Key, req: &Request, denied: Denied) {
        match denied {
            Denied::Challenge { stale } => {
                let realm = io.cx.domain();
                let Some(rt) = io.cx.sip else {
                    return;
                };
                let nonce = rt.nonces.issue(realm, io.cx.unix_now());
                let headers = [
                    (
                        "WWW-Authenticate",
                        digest::challenge(Algorithm::Sha256, realm, &nonce, stale),
                    ),
                    (
                        "WWW-Authenticate",
                        digest::challenge(Algorithm::Md5, realm, &nonce, stale),
                    ),
                ];
                self.reply_simple(io, key, req, 401, "Unauthorized", &headers);
            }
            Denied::Refuse(status, reason) => self.reply_simple(io, key, req, status, reason, &[]),
        }
    }
}
