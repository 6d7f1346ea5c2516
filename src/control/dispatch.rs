//! The SIP edge of a clustered node (DESIGN.md §3, §4): control-plane traffic goes to the
//! control actor; SUBSCRIBE, PUBLISH, REGISTER and MESSAGE of users homed elsewhere get a
//! `302 Moved Temporarily` naming their home (RFC 3261 §8.3, §21.3.3: a stateless redirect,
//! answered again if the request is retransmitted); users only the allocator can place wait
//! for its [`Placed`] answer (the same one the XMPP session gets), then get the `302` or go
//! to the presence hub; everything else goes to the presence hub as on a single node.
//!
//! The dispatch holds `Recipient`s, not the control actor: the actor depends on it (for
//! [`ControlIn`]), never the other way round.

use std::sync::{Arc, OnceLock};

use actix::{Message as ActixMessage, Recipient};

use crate::cluster::ccmp::Protocol;
use crate::cluster::dialog::{BRANCH_PREFIX, CLUSTER_USER};
use crate::cluster::view::{ClusterView, Locate, NodeAddrs};
use crate::presence::placement::{Place, Placed};
use crate::sip::message::{self, Message, Method, Request, Uri};
use crate::sip::transport::{udp_target, Dispatch, Incoming, Peer, SipSender};
use crate::xmpp::jid::normalize_local;

/// Control-plane SIP traffic from the transport (requests to `sip:cluster@…` and responses
/// to the control plane's requests).
#[derive(ActixMessage)]
#[rtype(result = "()")]
pub struct ControlIn(pub Incoming);

/// Where the dispatch sends what is not the presence hub's.
struct ControlLink {
    /// Control-plane traffic.
    traffic: Recipient<ControlIn>,
    /// Placements (primary).
    place: Recipient<Place>,
    sender: SipSender,
}

/// Routes every message the transport parsed.
pub struct NodeDispatch {
    hub: Arc<dyn Dispatch>,
    view: Arc<ClusterView>,
    domain: String,
    control: OnceLock<ControlLink>,
}

impl NodeDispatch {
    /// A dispatcher in front of the presence hub's.
    pub fn new(hub: Arc<dyn Dispatch>, view: Arc<ClusterView>, domain: &str) -> Self {
        NodeDispatch {
            hub,
            view,
            domain: domain.to_string(),
            control: OnceLock::new(),
        }
    }

    /// Completes the wiring once the transport and the control actor exist.
    pub fn connect(
        &self,
        traffic: Recipient<ControlIn>,
        place: Recipient<Place>,
        sender: SipSender,
    ) {
        let _ = self.control.set(ControlLink {
            traffic,
            place,
            sender,
        });
    }

    /// Whether the request is `From: sip:cluster@<our domain>` (another node).
    fn is_from_cluster(&self, req: &Request) -> bool {
        crate::cluster::dialog::is_cluster_uri(&req.base.from.uri, &self.domain)
    }

    /// Asks the allocator where `user` goes, then answers `302` or hands the request to
    /// the presence hub.
    fn place(&self, control: &ControlLink, incoming: Incoming, user: String) {
        let place = control.place.clone();
        let sender = control.sender.clone();
        let hub = self.hub.clone();
        actix_rt::spawn(async move {
            let placed = place
                .send(Place {
                    user,
                    protocol: Protocol::Sip,
                })
                .await;
            match placed {
                Ok(Placed::Local) => hub.dispatch(incoming),
                Ok(Placed::Redirect(home)) => redirect(&sender, &incoming, &home),
                Err(e) => tracing::debug!(error = %e, "no placement: the control plane stopped"),
            }
        });
    }

    /// The user a request is placed by (DESIGN.md §4): From for SUBSCRIBE, MESSAGE and
    /// REGISTER (users of our domain only), the presentity (Request-URI) for PUBLISH; only
    /// requests that start something (in-dialog requests stay with their dialog).
    fn placed_user(&self, req: &Request) -> Option<String> {
        if req.base.to.tag().is_some() {
            return None;
        }
        let user = match req.method() {
            Method::Subscribe | Method::Message | Method::Register => {
                // A watcher or sender of another domain is nobody's user here.
                let uri = Uri::parse(&req.base.from.uri).ok()?;
                if !uri.host.eq_ignore_ascii_case(&self.domain) {
                    return None;
                }
                uri.user?
            }
            // The presentity, named by the Request-URI as the notifier reads it.
            Method::Publish => req.uri().user.clone()?,
            _ => return None,
        };
        normalize_local(&user).ok()
    }
}

impl Dispatch for NodeDispatch {
    fn dispatch(&self, incoming: Incoming) {
        let Some(control) = self.control.get() else {
            return self.hub.dispatch(incoming);
        };
        match &incoming.message {
            Message::Response(r)
                if r.base
                    .via
                    .branch
                    .as_deref()
                    .is_some_and(|b| b.starts_with(BRANCH_PREFIX)) =>
            {
                control.traffic.do_send(ControlIn(incoming));
            }
            Message::Request(req) if req.uri().user.as_deref() == Some(CLUSTER_USER) => {
                control.traffic.do_send(ControlIn(incoming));
            }
            // Data plane from another node (relayed stanzas, back-end subscriptions): the
            // shard checks the signature; nobody is placed by it.
            Message::Request(req) if self.is_from_cluster(req) => self.hub.dispatch(incoming),
            Message::Request(req) => match self.placed_user(req) {
                Some(user) => match self.view.locate(&user) {
                    Locate::Local => self.hub.dispatch(incoming),
                    Locate::Elsewhere(addrs) => redirect(&control.sender, &incoming, &addrs),
                    Locate::Ask => self.place(control, incoming, user),
                },
                None => self.hub.dispatch(incoming),
            },
            Message::Response(_) => self.hub.dispatch(incoming),
        }
    }
}

/// Answers a request with `302 Moved Temporarily` and `Contact: <sip:user@home>`
/// (DESIGN.md §4), over the transport the request came on.
pub fn redirect(sender: &SipSender, incoming: &Incoming, home: &NodeAddrs) {
    let Message::Request(req) = &incoming.message else {
        return;
    };
    let user = match req.method() {
        Method::Publish => req.uri().user.clone(),
        _ => Uri::parse(&req.base.from.uri).ok().and_then(|u| u.user),
    }
    .unwrap_or_default();
    let transport = if incoming.peer.reliable() {
        ";transport=tcp"
    } else {
        ""
    };
    let contact = format!("<sip:{user}@{}{transport}>", home.sip);
    tracing::info!(method = %req.method(), %user, home = %home.id, "302 to the user's home");
    let bytes = message::reply(req, 302, "Moved Temporarily")
        .to_tag(&stateless_tag(req))
        .header("Contact", contact)
        .build();
    let peer = match incoming.peer {
        Peer::Udp(src) => Peer::Udp(udp_target(&req.base.via, src)),
        tcp => tcp,
    };
    sender.send(peer, bytes);
}

/// The To tag of a stateless response: the same for every copy of the same request
/// (RFC 3261 §8.2.7), so a retransmission gets a byte-identical `302`.
fn stateless_tag(req: &Request) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        req.base.call_id.as_str(),
        req.base.from.tag().unwrap_or_default(),
        req.base.via.branch.as_deref().unwrap_or_default(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(req.base.cseq.to_string().as_bytes());
    let d = h.finalize();
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}
