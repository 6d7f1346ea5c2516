//! SASL on the c2s stream (RFC 6120 §6): the `<auth/>` and `<response/>` exchange,
//! SCRAM-SHA-1/-256 (RFC 5802, RFC 7677) and PLAIN (RFC 4616), success and failure.

use base64::Engine;
use bytes::Bytes;
use tracing::{info, warn};

use super::*;
use crate::store::Records;
use crate::xml::{Element, CLIENT_NS};
use crate::xmpp::jid::Jid;
use crate::xmpp::sasl::{
    new_server_nonce, parse_client_first, parse_plain, Mechanism, SaslError, ScramExchange,
    ScramHash,
};
use crate::xmpp::stanza::StreamErrorCondition;

impl XmppSession {
    pub(super) fn sasl_failure(&mut self, err: SaslError) {
        if self.home.is_some() {
            return self.see_other_host();
        }
        self.auth = Auth::None;
        self.auth_failures += 1;
        info!(
            condition = err.condition(),
            reason = err.message(),
            "SASL failure"
        );
        let failure = Element::new("failure", SASL_NS)
            .with_child(Element::new(err.condition(), SASL_NS))
            .with_child(Element::new("text", SASL_NS).with_text(err.message()));
        self.send(&failure);
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.close(
                StreamErrorCondition::PolicyViolation,
                "too many authentication failures",
            );
        }
    }

    pub(super) fn sasl_success(&mut self, user: String, additional: Option<String>) {
        info!(%user, "authenticated");
        let mut el = Element::new("success", SASL_NS);
        if let Some(a) = additional {
            el = el.with_text(base64::engine::general_purpose::STANDARD.encode(a));
        }
        let mut out = Vec::with_capacity(128);
        el.write_to(&mut out, CLIENT_NS);
        if self.ctx.cluster.is_some() {
            self.to_place = Some(user.clone());
        }
        self.auth = Auth::Done(user);
        self.header_sent = false; // the client restarts the stream (RFC 6120 §6.4.6)
        self.outbox.send_then_restart(Bytes::from(out));
    }

    pub(super) fn decode_sasl(data: &str) -> Result<Vec<u8>, SaslError> {
        let data = data.trim();
        if data == "=" || data.is_empty() {
            return Ok(Vec::new());
        }
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| SaslError::IncorrectEncoding("SASL data is not base64".into()))
    }

    /// Checks an authzid: absent, or the account's own bare JID (RFC 6120 §6.3.8).
    pub(super) fn check_authzid(&self, authzid: Option<&str>, user: &str) -> Result<(), SaslError> {
        match authzid {
            None => Ok(()),
            Some(a) if Jid::parse(a).is_ok_and(|j| j == Jid::bare(user, &self.ctx.domain)) => {
                Ok(())
            }
            Some(_) => Err(SaslError::InvalidAuthzid(
                "authzid differs from the authenticated user".into(),
            )),
        }
    }

    pub(super) fn on_auth(&mut self, el: &Element) {
        if self.user().is_some() {
            return self.close(
                StreamErrorCondition::PolicyViolation,
                "already authenticated",
            );
        }
        let mech = match el.attr("mechanism").and_then(Mechanism::from_name) {
            Some(Mechanism::Plain) if !self.plain_allowed() => {
                return self.sasl_failure(SaslError::InvalidMechanism("PLAIN needs TLS".into()))
            }
            Some(m) => m,
            None => {
                return self
                    .sasl_failure(SaslError::InvalidMechanism("mechanism not offered".into()))
            }
        };
        let text = el.text();
        if text.trim().is_empty() {
            self.auth = Auth::AwaitingInitial(mech);
            return self.send(&Element::new("challenge", SASL_NS));
        }
        self.sasl_step(mech, &text);
    }

    pub(super) fn sasl_step(&mut self, mech: Mechanism, data: &str) {
        let data = match Self::decode_sasl(data) {
            Ok(d) => d,
            Err(e) => return self.sasl_failure(e),
        };
        let result = match mech.scram_hash() {
            Some(hash) => self.scram_first(hash, &data),
            None => self.plain(&data),
        };
        if let Err(e) = result {
            self.sasl_failure(e);
        }
    }

    pub(super) fn lookup(&mut self, name: &str) -> Result<crate::store::Account, SaslError> {
        let user = crate::xmpp::jid::normalize_local(name)
            .map_err(|_| SaslError::NotAuthorized("invalid username".into()))?;
        match self.ctx.store.account(&user) {
            Ok(Some(a)) => Ok(a),
            Ok(None) => {
                // A member does not hold the accounts of users homed elsewhere: send the
                // client where it can authenticate (DESIGN.md §3) instead of failing it.
                if let Some(cluster) = &self.ctx.cluster {
                    if let crate::cluster::view::Locate::Elsewhere(home) =
                        cluster.view.locate(&user)
                    {
                        self.home = Some(home);
                        return Err(SaslError::NotAuthorized("homed elsewhere".into()));
                    }
                }
                Err(SaslError::NotAuthorized("bad username or password".into()))
            }
            Err(e) => {
                warn!(error = %e, "store read failed during SASL");
                Err(SaslError::TemporaryAuthFailure("store unavailable".into()))
            }
        }
    }

    pub(super) fn scram_first(&mut self, hash: ScramHash, data: &[u8]) -> Result<(), SaslError> {
        let first = parse_client_first(data)?;
        let account = self.lookup(&first.username)?;
        self.check_authzid(first.authzid.as_deref(), &account.username)?;
        let creds = match hash {
            ScramHash::Sha1 => account.scram_sha1,
            ScramHash::Sha256 => account.scram_sha256,
        };
        let exchange = ScramExchange::new(hash, first, creds, &new_server_nonce());
        let challenge = base64::engine::general_purpose::STANDARD.encode(exchange.server_first());
        self.auth = Auth::Scram(Box::new(exchange));
        self.send(&Element::new("challenge", SASL_NS).with_text(challenge));
        Ok(())
    }

    pub(super) fn plain(&mut self, data: &[u8]) -> Result<(), SaslError> {
        let creds = parse_plain(data)?;
        let account = self.lookup(&creds.authcid)?;
        self.check_authzid(creds.authzid.as_deref(), &account.username)?;
        if !account
            .scram_sha256
            .verify_password(ScramHash::Sha256, &creds.password)
        {
            return Err(SaslError::NotAuthorized("bad username or password".into()));
        }
        self.sasl_success(account.username, None);
        Ok(())
    }

    pub(super) fn on_response(&mut self, el: &Element) {
        match std::mem::replace(&mut self.auth, Auth::None) {
            Auth::AwaitingInitial(mech) => self.sasl_step(mech, &el.text()),
            Auth::Scram(exchange) => {
                let user = exchange.username().to_string();
                let result = Self::decode_sasl(&el.text()).and_then(|d| exchange.finish(&d));
                match result {
                    Ok(server_final) => {
                        let user = crate::xmpp::jid::normalize_local(&user).unwrap_or(user);
                        self.sasl_success(user, Some(server_final));
                    }
                    Err(e) => self.sasl_failure(e),
                }
            }
            other => {
                self.auth = other;
                self.close(
                    StreamErrorCondition::PolicyViolation,
                    "SASL response without an exchange",
                );
            }
        }
    }
}
