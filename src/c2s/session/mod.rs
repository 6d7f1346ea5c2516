//! `XmppSession`: one actor per client connection (DESIGN.md §2). It runs stream
//! negotiation — stream headers (RFC 6120 §4), STARTTLS (§5), SASL (§6), resource binding
//! (§7) — then stamps and dispatches stanzas (§8): presence and roster to the user's presence
//! shard, messages and iqs to the addressee's shard, and server iqs (ping, disco, private
//! storage, registration, legacy session) answered here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::connection::{Connection, ConnectionSlot, FromConnection, Outbox};
use crate::accounts::{self, AccountError};
use crate::config::{Limits, Registration, TlsPolicy, XmppConfig};
use crate::presence::moe::MoeOut;
use crate::presence::{Bind, Hub, Inbound, PresenceFromClient, Unbind};
use crate::store::Store;
use crate::xml::{escape_attr, Element, XmlError, CLIENT_NS, STREAM_NS};
use crate::xmpp::disco::{self};
use crate::xmpp::jid::Jid;
use crate::xmpp::moe;
use crate::xmpp::register::{self, RegisterRequest, REGISTER_FEATURE_NS, REGISTER_NS};
use crate::xmpp::sasl::{Mechanism, SaslError, ScramExchange};
use crate::xmpp::stanza::{
    error_reply, iq_payload, iq_result, IqType, StanzaError, StanzaKind, StreamErrorCondition,
};
use crate::xmpp::stream::{StreamEvent, StreamHeader};

mod iq;
mod sasl;

/// `urn:ietf:params:xml:ns:xmpp-tls` (RFC 6120 §5).
pub const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// `urn:ietf:params:xml:ns:xmpp-sasl` (RFC 6120 §6).
pub const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// `urn:ietf:params:xml:ns:xmpp-bind` (RFC 6120 §7).
pub const BIND_NS: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// Legacy session establishment (RFC 3921 §3, answered for old clients).
pub const SESSION_NS: &str = "urn:ietf:params:xml:ns:xmpp-session";

/// SASL attempts before the stream is closed.
const MAX_AUTH_FAILURES: u8 = 3;

/// What every session of a node shares.
pub struct XmppContext {
    /// Node id, for logs.
    pub node: String,
    /// The cluster domain.
    pub domain: String,
    /// `[xmpp]`.
    pub xmpp: XmppConfig,
    /// How new passwords become stored credentials.
    pub credentials: crate::accounts::CredentialPolicy,
    /// `[limits]`.
    pub limits: Limits,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The presence hub.
    pub hub: Hub,
    /// STARTTLS acceptor; `None` only when TLS is optional and no certificate could be made.
    pub tls: Option<TlsAcceptor>,
    /// Whether the listener is on a loopback address.
    pub loopback: bool,
    /// Session ids.
    pub next_id: AtomicU64,
    /// Signals node shutdown to every connection.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Set when the node is part of a cluster: where users are homed (DESIGN.md §3, §4).
    pub cluster: Option<ClusterHandle>,
}

/// What a session needs of the cluster to send a user to its home.
pub struct ClusterHandle {
    /// Synchronous answers for users homed here or known elsewhere.
    pub view: Arc<crate::cluster::view::ClusterView>,
    /// The allocator (primary) for the others: the control plane's placements.
    pub control: actix::Recipient<crate::presence::placement::Place>,
    /// `see-other-host`, `cxfr` or `both`.
    pub redirect: crate::config::RedirectMode,
    /// How long a client told to go by the cxfr iq has to leave before `see-other-host`.
    pub timeout: Duration,
}

/// The XEP-0051 connection-transfer namespace the papers' iq redirect uses (DESIGN.md §4).
pub const CXFR_NS: &str = "urn:xmpp:cxfr";

enum Auth {
    None,
    /// `<auth/>` came without an initial response; the next `<response/>` carries it.
    AwaitingInitial(Mechanism),
    Scram(Box<ScramExchange>),
    Done(String),
}

/// The session actor.
pub struct XmppSession {
    id: u64,
    ctx: Arc<XmppContext>,
    outbox: Outbox,
    io: Option<(Connection, TcpStream, ConnectionSlot)>,
    span: tracing::Span,
    secure: bool,
    header_sent: bool,
    auth: Auth,
    auth_failures: u8,
    jid: Option<Jid>,
    closing: bool,
    ping_seq: u64,
    /// The user's home when it is another node (decided right after SASL success).
    home: Option<crate::cluster::view::NodeAddrs>,
    /// A user authenticated and must be placed before the stream goes on.
    to_place: Option<String>,
    /// The cxfr iq was sent; the client is expected to leave.
    transferring: bool,
    /// A client told to move by the cxfr iq alone gets `see-other-host` after this.
    transfer_timeout: Option<Duration>,
}

impl XmppSession {
    /// A session for an accepted connection; the socket task starts with the actor.
    pub fn new(
        ctx: Arc<XmppContext>,
        stream: TcpStream,
        peer: SocketAddr,
        slot: ConnectionSlot,
        conn: Connection,
    ) -> Self {
        let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("c2s", node = %ctx.node, session = id, %peer, jid = tracing::field::Empty);
        XmppSession {
            id,
            outbox: conn.outbox.clone(),
            io: Some((conn, stream, slot)),
            ctx,
            span,
            secure: false,
            header_sent: false,
            auth: Auth::None,
            auth_failures: 0,
            jid: None,
            closing: false,
            ping_seq: 0,
            home: None,
            to_place: None,
            transferring: false,
            transfer_timeout: None,
        }
    }

    fn user(&self) -> Option<&str> {
        match &self.auth {
            Auth::Done(u) => Some(u),
            _ => None,
        }
    }

    fn send(&self, el: &Element) {
        self.outbox.send_element(el);
    }

    fn send_header(&mut self) {
        if self.header_sent {
            return;
        }
        self.header_sent = true;
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='");
        out.extend_from_slice(format!("{:016x}", rand::random::<u64>()).as_bytes());
        out.extend_from_slice(b"' from='");
        escape_attr(&self.ctx.domain, &mut out);
        out.extend_from_slice(b"' version='1.0' xml:lang='en'>");
        self.outbox.send(Bytes::from(out));
    }

    /// Ends the stream with an error (RFC 6120 §4.9.1: our header first if not yet sent).
    fn close(&mut self, cond: StreamErrorCondition, text: &str) {
        if self.closing {
            return;
        }
        info!(
            condition = cond.as_str(),
            reason = text,
            "closing stream with error"
        );
        self.send_header();
        self.closing = true;
        self.outbox.close_with_error(cond, Some(text));
    }

    fn tls_required(&self) -> bool {
        self.ctx.xmpp.tls == TlsPolicy::Required && !self.secure
    }

    fn plain_allowed(&self) -> bool {
        self.secure || (self.ctx.xmpp.allow_plain_without_tls && self.ctx.loopback)
    }

    fn registration_open(&self) -> bool {
        self.ctx.xmpp.registration == Registration::Open && !self.tls_required()
    }

    /// `<stream:features/>` for the current stage (RFC 6120 §4.3.2).
    fn features(&self) -> Element {
        let mut f = Element::new("features", STREAM_NS);
        if !self.secure && self.ctx.tls.is_some() && self.user().is_none() {
            let mut tls = Element::new("starttls", TLS_NS);
            if self.ctx.xmpp.tls == TlsPolicy::Required {
                tls = tls.with_child(Element::new("required", TLS_NS));
            }
            f = f.with_child(tls);
            if self.tls_required() {
                return f;
            }
        }
        match self.user() {
            None => {
                let mut mechs = Element::new("mechanisms", SASL_NS);
                for m in Mechanism::ALL {
                    if m == Mechanism::Plain && !self.plain_allowed() {
                        continue;
                    }
                    mechs =
                        mechs.with_child(Element::new("mechanism", SASL_NS).with_text(m.name()));
                }
                f = f.with_child(mechs);
                if self.registration_open() {
                    f = f.with_child(Element::new("register", REGISTER_FEATURE_NS));
                }
            }
            Some(_) => {
                f = f.with_child(Element::new("bind", BIND_NS)).with_child(
                    Element::new("session", SESSION_NS)
                        .with_child(Element::new("optional", SESSION_NS)),
                );
            }
        }
        f
    }

    fn on_open(&mut self, h: StreamHeader) {
        self.send_header();
        if let Some(to) = &h.to {
            if !to.eq_ignore_ascii_case(&self.ctx.domain) {
                return self.close(
                    StreamErrorCondition::HostUnknown,
                    "this server serves another domain",
                );
            }
        }
        match h.version.as_deref() {
            Some(v)
                if v.split('.')
                    .next()
                    .and_then(|m| m.parse::<u32>().ok())
                    .unwrap_or(0)
                    >= 1 => {}
            _ => {
                return self.close(
                    StreamErrorCondition::UnsupportedVersion,
                    "version='1.0' is required",
                )
            }
        }
        if self.user().is_some()
            && self.home.is_some()
            && self
                .ctx
                .cluster
                .as_ref()
                .is_some_and(|c| c.redirect == crate::config::RedirectMode::SeeOtherHost)
        {
            return self.see_other_host();
        }
        let features = self.features();
        self.send(&features);
    }

    /// Before authentication only in-band registration is served (XEP-0077 §3.1).
    fn pre_auth_stanza(&mut self, el: Element) {
        let payload = iq_payload(&el).filter(|p| p.is("query", REGISTER_NS));
        if el.name != "iq" || payload.is_none() {
            return self.close(StreamErrorCondition::NotAuthorized, "authenticate first");
        }
        if !self.registration_open() {
            return self.send(&error_reply(
                &el,
                StanzaError::NotAllowed,
                Some("in-band registration is closed"),
            ));
        }
        let query = payload
            .cloned()
            .unwrap_or_else(|| Element::new("query", REGISTER_NS));
        match IqType::of(&el) {
            Some(IqType::Get) => self.send(&iq_result(&el, Some(register::form(None)))),
            Some(IqType::Set) => match register::parse_set(&query) {
                Ok(RegisterRequest::Credentials { username, password }) => {
                    match accounts::add(
                        &*self.ctx.store,
                        &username,
                        &password,
                        &self.ctx.credentials,
                    ) {
                        Ok(user) => {
                            info!(%user, "registered in-band");
                            self.send(&iq_result(&el, None));
                        }
                        Err(AccountError::Exists(_) | AccountError::Reserved(_)) => self.send(
                            &error_reply(&el, StanzaError::Conflict, Some("username taken")),
                        ),
                        Err(AccountError::InvalidName(e)) => self.send(&error_reply(
                            &el,
                            StanzaError::NotAcceptable,
                            Some(&e.to_string()),
                        )),
                        Err(e) => {
                            warn!(error = %e, "registration failed");
                            self.send(&error_reply(&el, StanzaError::InternalServerError, None))
                        }
                    }
                }
                Ok(RegisterRequest::Remove) => {
                    self.send(&error_reply(&el, StanzaError::NotAuthorized, None))
                }
                Err((err, text)) => self.send(&error_reply(&el, err, Some(text))),
            },
            _ => self.send(&error_reply(&el, StanzaError::BadRequest, None)),
        }
    }

    /// Resource binding (RFC 6120 §7.6); everything else before it is refused.
    fn pre_bind_stanza(
        &mut self,
        el: Element,
        user: String,
    ) -> Option<ResponseActFuture<Self, ()>> {
        let bind = iq_payload(&el).filter(|p| p.is("bind", BIND_NS)).cloned();
        let (Some(bind), Some(IqType::Set)) = (bind, IqType::of(&el)) else {
            if el.name == "iq"
                && iq_payload(&el)
                    .is_some_and(|p| p.is("query", REGISTER_NS) || p.is("session", SESSION_NS))
            {
                self.send(&error_reply(
                    &el,
                    StanzaError::NotAllowed,
                    Some("bind a resource first"),
                ));
                return None;
            }
            self.close(StreamErrorCondition::NotAuthorized, "bind a resource first");
            return None;
        };
        let resource = match bind.get_child("resource", BIND_NS).map(|r| r.text()) {
            None => None,
            Some(r) => {
                let r = r.trim().to_string();
                match Jid::parse(&format!("x@y/{r}")) {
                    Ok(_) if !r.is_empty() => Some(r),
                    _ => {
                        self.send(&error_reply(
                            &el,
                            StanzaError::BadRequest,
                            Some("invalid resource"),
                        ));
                        return None;
                    }
                }
            }
        };
        if self.home.is_some() {
            // Homed elsewhere: a bind result so the client is in a state to take the iq,
            // but no session here (DESIGN.md §4 iq redirect).
            let resource = resource.unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
            let jid = Jid::bare(&user, &self.ctx.domain).with_resource(&resource);
            let payload = Element::new("bind", BIND_NS)
                .with_child(Element::new("jid", BIND_NS).with_text(jid.to_string()));
            self.send(&iq_result(&el, Some(payload)));
            self.transfer(&jid);
            return None;
        }
        let shard = self.ctx.hub.shard(&user).clone();
        let request = Bind {
            user: user.clone(),
            resource,
            session_id: self.id,
            outbox: self.outbox.clone(),
        };
        Some(Box::pin(
            async move { shard.send(request).await }
                .into_actor(self)
                .map(move |result, act, _| match result {
                    Ok(Ok(resource)) => {
                        let jid = Jid::bare(&user, &act.ctx.domain).with_resource(&resource);
                        act.span.record("jid", tracing::field::display(&jid));
                        info!(parent: &act.span, "resource bound");
                        let payload = Element::new("bind", BIND_NS)
                            .with_child(Element::new("jid", BIND_NS).with_text(jid.to_string()));
                        act.jid = Some(jid);
                        act.send(&iq_result(&el, Some(payload)));
                    }
                    Ok(Err(err)) => act.send(&error_reply(&el, err, None)),
                    Err(_) => act.send(&error_reply(&el, StanzaError::InternalServerError, None)),
                }),
        ))
    }

    /// A stanza on a bound stream (RFC 6120 §8.1.2.1: `from` is stamped by the server).
    fn bound_stanza(&mut self, mut el: Element, jid: Jid) -> Option<ResponseActFuture<Self, ()>> {
        let Some(kind) = StanzaKind::of(&el) else {
            self.close(
                StreamErrorCondition::UnsupportedStanzaType,
                "unknown top-level element",
            );
            return None;
        };
        el.set_attr("from", jid.to_string());
        let to = match el.attr("to").map(Jid::parse) {
            None => None,
            Some(Ok(j)) => Some(j),
            Some(Err(_)) => {
                if kind != StanzaKind::Presence {
                    self.send(&error_reply(&el, StanzaError::JidMalformed, None));
                }
                return None;
            }
        };
        let user = jid.local().unwrap_or_default().to_string();
        let bare = jid.to_bare();
        match kind {
            StanzaKind::Presence => {
                let shard = self.ctx.hub.shard(&user).clone();
                Some(forward(
                    self,
                    shard.send(PresenceFromClient {
                        from: jid,
                        stanza: el,
                    }),
                ))
            }
            StanzaKind::Iq => {
                let Some(itype) = IqType::of(&el) else {
                    self.send(&error_reply(
                        &el,
                        StanzaError::BadRequest,
                        Some("iq type missing or unknown"),
                    ));
                    return None;
                };
                let for_server = match &to {
                    None => true,
                    Some(t) => {
                        (t.local().is_none()
                            && t.domain() == self.ctx.domain
                            && t.resource().is_none())
                            || *t == bare
                    }
                };
                if for_server {
                    if matches!(itype, IqType::Get | IqType::Set) {
                        return self.server_iq(el, jid, to.is_some_and(|t| t == bare));
                    }
                    return None; // results and errors addressed to the server (pings, pushes)
                }
                self.route(el, to.unwrap_or(bare))
            }
            StanzaKind::Message => {
                // MOE-MP requests and broadcasts are recorded in the sender's shard first
                // (docs/moe-mp.md §2); answers and everything else route as messages.
                let max = self.ctx.limits.moe_max_broadcast;
                match moe::message_payload(&el, max) {
                    Err(e) => {
                        self.send(&e.reply_to(&el));
                        None
                    }
                    Ok(Some(
                        payload @ (moe::MessagePayload::Request(_)
                        | moe::MessagePayload::Broadcast(_)),
                    )) => {
                        let shard = self.ctx.hub.shard(&user).clone();
                        let msg = MoeOut {
                            from: jid,
                            stanza: el,
                            payload,
                            outbox: self.outbox.clone(),
                        };
                        Some(forward(self, shard.send(msg)))
                    }
                    Ok(_) => self.route(el, to.unwrap_or(bare)),
                }
            }
        }
    }

    /// Routes a message or iq to a user of this node (no s2s: other domains get an error).
    fn route(&mut self, el: Element, to: Jid) -> Option<ResponseActFuture<Self, ()>> {
        if to.domain() != self.ctx.domain {
            self.send(&error_reply(
                &el,
                StanzaError::RemoteServerNotFound,
                Some("no server-to-server connections"),
            ));
            return None;
        }
        let Some(user) = to.local() else {
            if el.name == "message" {
                return None; // messages to the server itself are dropped (RFC 6121 §8.5.1)
            }
            self.send(&error_reply(&el, StanzaError::ServiceUnavailable, None));
            return None;
        };
        let shard = self.ctx.hub.shard(user).clone();
        Some(forward(self, shard.send(Inbound { to, stanza: el })))
    }

    fn on_stanza(&mut self, el: Element) -> Option<ResponseActFuture<Self, ()>> {
        if self.closing {
            return None;
        }
        if el.is("starttls", TLS_NS) {
            if self.secure || self.ctx.tls.is_none() || self.user().is_some() {
                self.send(&Element::new("failure", TLS_NS));
                self.close(
                    StreamErrorCondition::PolicyViolation,
                    "STARTTLS not available now",
                );
                return None;
            }
            let mut proceed = Vec::with_capacity(64);
            Element::new("proceed", TLS_NS).write_to(&mut proceed, CLIENT_NS);
            self.secure = true;
            self.header_sent = false;
            self.outbox.start_tls(Bytes::from(proceed));
            return None;
        }
        if self.tls_required() {
            if el.is("auth", SASL_NS) {
                self.sasl_failure(SaslError::EncryptionRequired("STARTTLS first".into()));
            } else {
                self.close(
                    StreamErrorCondition::PolicyViolation,
                    "STARTTLS is required",
                );
            }
            return None;
        }
        if el.ns == SASL_NS {
            match el.name.as_str() {
                "auth" => self.on_auth(&el),
                "response" => self.on_response(&el),
                "abort" => {
                    if self.user().is_none() {
                        self.sasl_failure(SaslError::Aborted("aborted by the client".into()));
                    }
                }
                _ => self.close(
                    StreamErrorCondition::UnsupportedStanzaType,
                    "unknown SASL element",
                ),
            }
            return self.to_place.take().and_then(|u| self.place(u));
        }
        if self.transferring {
            // The client answers the cxfr iq; one that refuses it gets the standard redirect.
            if el.name == "iq" && el.attr("type") == Some("error") {
                self.see_other_host();
            }
            return None;
        }
        if StanzaKind::of(&el).is_none() {
            self.close(
                StreamErrorCondition::UnsupportedStanzaType,
                "unknown top-level element",
            );
            return None;
        }
        match (self.user().map(str::to_string), self.jid.clone()) {
            (None, _) => {
                self.pre_auth_stanza(el);
                None
            }
            (Some(user), None) => self.pre_bind_stanza(el, user),
            (Some(_), Some(jid)) => self.bound_stanza(el, jid),
        }
    }

    /// Finds the user's home (DESIGN.md §4); the stream goes on only once it is known, so the
    /// restarted stream can be redirected.
    fn place(&mut self, user: String) -> Option<ResponseActFuture<Self, ()>> {
        use crate::cluster::view::Locate;
        use crate::presence::placement::{Place, Placed};
        let cluster = self.ctx.cluster.as_ref()?;
        match cluster.view.locate(&user) {
            Locate::Local => None,
            Locate::Elsewhere(home) => {
                self.home = Some(home);
                None
            }
            Locate::Ask => {
                let control = cluster.control.clone();
                Some(Box::pin(
                    async move {
                        control
                            .send(Place {
                                user,
                                protocol: crate::cluster::ccmp::Protocol::Xmpp,
                            })
                            .await
                    }
                    .into_actor(self)
                    .map(|placed, act, _| match placed {
                        Ok(Placed::Redirect(home)) => act.home = Some(home),
                        Ok(Placed::Local) => {}
                        Err(_) => act.close(
                            StreamErrorCondition::InternalServerError,
                            "the cluster control plane is unavailable",
                        ),
                    }),
                ))
            }
        }
    }

    /// `<see-other-host>` naming the user's home (RFC 6120 §4.9.3.19) and the end of the
    /// stream.
    fn see_other_host(&mut self) {
        let Some(home) = self.home.clone() else {
            return;
        };
        if self.closing {
            return;
        }
        info!(home = %home.id, to = %home.xmpp, "redirecting the client to its home");
        self.send_header();
        self.closing = true;
        let out = crate::xmpp::stanza::see_other_host_bytes(&home.xmpp.to_string());
        self.outbox.close(Bytes::from(out));
    }

    /// After binding, a user homed elsewhere gets the cxfr iq (and, with `both`, the
    /// stream error right after it).
    fn transfer(&mut self, jid: &Jid) {
        let (Some(home), Some(cluster)) = (self.home.clone(), self.ctx.cluster.as_ref()) else {
            return;
        };
        let mode = cluster.redirect;
        let timeout = cluster.timeout;
        let iq = Element::new("iq", CLIENT_NS)
            .with_attr("type", "set")
            .with_attr("id", "cxfr1")
            .with_attr("to", jid.to_string())
            .with_attr("from", self.ctx.domain.clone())
            .with_child(
                Element::new("query", CXFR_NS)
                    .with_child(Element::new("domain", CXFR_NS).with_text(self.ctx.domain.clone()))
                    .with_child(Element::new("server", CXFR_NS).with_text(home.xmpp.to_string())),
            );
        info!(home = %home.id, to = %home.xmpp, "cxfr: telling the client to move");
        self.send(&iq);
        self.transferring = true;
        if mode == crate::config::RedirectMode::Both {
            self.see_other_host();
        } else {
            self.transfer_timeout = Some(timeout);
        }
    }

    fn on_idle(&mut self) {
        if let Some(jid) = &self.jid {
            self.ping_seq += 1;
            let ping = disco::ping(
                &format!("ping{}", self.ping_seq),
                &jid.to_string(),
                &self.ctx.domain,
            );
            self.send(&ping);
        }
    }
}

/// Sends a hub request and resolves when the hub took it, so the connection reads on only
/// after (back-pressure from the hub to this client's socket).
fn forward<F, T>(act: &XmppSession, fut: F) -> ResponseActFuture<XmppSession, ()>
where
    F: std::future::Future<Output = Result<T, MailboxError>> + 'static,
{
    Box::pin(
        async move {
            if fut.await.is_err() {
                warn!("presence shard unavailable");
            }
        }
        .into_actor(act),
    )
}

impl Actor for XmppSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        let _g = self.span.clone().entered();
        debug!("connected");
        if let Some((conn, stream, slot)) = self.io.take() {
            let tls = self.ctx.tls.clone();
            let me = ctx.address().recipient();
            let shutdown = self.ctx.shutdown.clone();
            let span = self.span.clone();
            actix_rt::spawn(tracing::Instrument::instrument(
                conn.run(stream, tls, me, slot, shutdown),
                span,
            ));
        }
        let limit = Duration::from_millis(self.ctx.limits.negotiation_timeout_ms);
        ctx.run_later(limit, |act, _| {
            if act.jid.is_none() {
                let _g = act.span.clone().entered();
                act.close(
                    StreamErrorCondition::ConnectionTimeout,
                    "stream negotiation took too long",
                );
            }
        });
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        let _g = self.span.clone().entered();
        if let Some(jid) = self.jid.take() {
            if let (Some(user), Some(resource)) = (jid.local(), jid.resource()) {
                // A control message that must not be lost; the shard mailbox bound applies to
                // fan-out, not to the one unbind per disconnect.
                self.ctx.hub.shard(user).do_send(Unbind {
                    user: user.to_string(),
                    resource: resource.to_string(),
                    session_id: self.id,
                });
            }
        }
        self.outbox.close(Bytes::new());
        debug!("disconnected");
        Running::Stop
    }
}

impl Handler<FromConnection> for XmppSession {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: FromConnection, ctx: &mut Context<Self>) -> Self::Result {
        let span = self.span.clone();
        let _g = span.enter();
        let pending = match msg {
            FromConnection::Event(StreamEvent::Open(header)) => {
                if !self.closing {
                    self.on_open(header);
                }
                None
            }
            FromConnection::Event(StreamEvent::Stanza(el)) => {
                tracing::trace!(stanza = %el, "in");
                let pending = self.on_stanza(el);
                if let Some(t) = self.transfer_timeout.take() {
                    ctx.run_later(t, |act, _| act.see_other_host());
                }
                pending
            }
            FromConnection::Event(StreamEvent::Close) => {
                debug!("client closed the stream");
                self.send_header();
                self.closing = true;
                self.outbox.close(Bytes::from_static(b"</stream:stream>"));
                None
            }
            FromConnection::Xml(e) => {
                self.on_xml_error(e);
                None
            }
            FromConnection::Idle => {
                self.on_idle();
                None
            }
            FromConnection::Closed => {
                ctx.stop();
                None
            }
        };
        pending.unwrap_or_else(|| Box::pin(actix::fut::ready(())))
    }
}

impl XmppSession {
    fn on_xml_error(&mut self, e: XmlError) {
        let cond = StreamErrorCondition::from_name(e.condition());
        warn!(condition = cond.as_str(), error = %e, "bad XML from client");
        self.close(cond, e.text());
    }
}
