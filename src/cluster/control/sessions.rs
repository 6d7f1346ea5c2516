//! CCMP sessions (DESIGN.md §5): the INVITE dialogs between this node and its peers that
//! carry `application/extd-ccmp`, and the signed requests and responses of the control
//! plane — server side (checking a request, answering or refusing it) and client side
//! (INVITE, in-dialog INFO and BYE, OPTIONS probes), all as bytes for the CCMP client and
//! the actor to send.

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;
use tracing::{debug, warn};

use crate::cluster::ccmp::{self, CcmpRequest, CcmpResponse, Element, SvrInfo};
use crate::cluster::dialog::{self, Dialog};
use crate::cluster::view::NodeAddrs;
use crate::sip::message::{self, Method, Request};

use super::context::Settings;
use super::effect::Outgoing;
use super::error::ControlError;

/// What a node answers to OPTIONS and sends with 405: the methods of the control plane.
pub const ALLOW: &str = "INVITE, ACK, BYE, INFO, OPTIONS, SUBSCRIBE, NOTIFY";

/// One established control session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Its dialog.
    pub dialog: Dialog,
    /// The peer's addresses, from its `svr-info`.
    pub addrs: NodeAddrs,
}

/// The control sessions of a node, by peer node id.
#[derive(Debug, Default)]
pub struct Sessions {
    map: HashMap<String, Session>,
}

impl Sessions {
    /// No session.
    pub fn new() -> Self {
        Self::default()
    }

    /// A session with `addrs.id` is up (a new one replaces the old).
    pub fn insert(&mut self, addrs: NodeAddrs, dialog: Dialog) {
        self.map.insert(addrs.id.clone(), Session { dialog, addrs });
    }

    /// Ends the session with `id`.
    pub fn remove(&mut self, id: &str) -> Option<Session> {
        self.map.remove(id)
    }

    /// Whether a session with `id` is up.
    pub fn contains(&self, id: &str) -> bool {
        self.map.contains_key(id)
    }

    /// The addresses of peer `id`, when a session with it is up.
    pub fn addrs(&self, id: &str) -> Option<NodeAddrs> {
        self.map.get(id).map(|s| s.addrs.clone())
    }

    /// The peer whose session has this Call-ID.
    pub fn by_call_id(&self, call_id: &str) -> Option<String> {
        self.map
            .iter()
            .find(|(_, s)| s.dialog.call_id == call_id)
            .map(|(id, _)| id.clone())
    }

    /// An in-dialog INFO to `peer` carrying a CCMP request (DESIGN.md §5).
    pub fn info(
        &mut self,
        settings: &Settings,
        peer: &str,
        extension: &str,
        elements: Vec<Element>,
    ) -> Result<Outgoing, ControlError> {
        let body = CcmpRequest::new(settings.conf_user(), extension, elements).to_xml();
        let session = self
            .map
            .get_mut(peer)
            .ok_or_else(|| ControlError::NoSession(peer.to_string()))?;
        let branch = dialog::new_branch();
        let bytes = session.dialog.request(
            Method::Info,
            settings.local(),
            &branch,
            settings.secret(),
            &[("Info-Package", ccmp::INFO_PACKAGE.into())],
            Some((ccmp::CONTENT_TYPE, Bytes::from(body))),
        );
        Ok(Outgoing {
            to: session.dialog.remote_target,
            method: Method::Info,
            branch,
            bytes,
            deadline: settings.timeout(),
        })
    }

    /// A BYE ending the session with `peer` (the caller then forgets it).
    pub fn bye(&mut self, settings: &Settings, peer: &str) -> Option<Outgoing> {
        let session = self.map.get_mut(peer)?;
        let branch = dialog::new_branch();
        let bytes = session.dialog.request(
            Method::Bye,
            settings.local(),
            &branch,
            settings.secret(),
            &[],
            None,
        );
        Some(Outgoing {
            to: session.dialog.remote_target,
            method: Method::Bye,
            branch,
            bytes,
            deadline: settings.timeout(),
        })
    }
}

/// An INVITE to `target` carrying our `svr-info` and load (a join, DESIGN.md §5), and the
/// dialog it starts.
pub fn invite(
    settings: &Settings,
    target: SocketAddr,
    elements: Vec<Element>,
) -> (Dialog, Outgoing) {
    let mut d = Dialog::outgoing(settings.local(), target);
    let body = CcmpRequest::new(settings.conf_user(), "pressvr-load", elements).to_xml();
    let branch = dialog::new_branch();
    let bytes = d.request(
        Method::Invite,
        settings.local(),
        &branch,
        settings.secret(),
        &[("Accept", ccmp::CONTENT_TYPE.into())],
        Some((ccmp::CONTENT_TYPE, Bytes::from(body))),
    );
    let out = Outgoing {
        to: target,
        method: Method::Invite,
        branch,
        bytes,
        deadline: settings.timeout(),
    };
    (d, out)
}

/// The ACK of the 2xx that confirmed `dialog` (RFC 3261 §13.2.2.4), to its remote target.
pub fn ack(settings: &Settings, dialog: &mut Dialog) -> Bytes {
    dialog.request(
        Method::Ack,
        settings.local(),
        &dialog::new_branch(),
        settings.secret(),
        &[],
        None,
    )
}

/// An out-of-dialog OPTIONS probe of `target` (DESIGN.md §7: is the pool server up?),
/// with its deadline.
pub fn options(settings: &Settings, target: SocketAddr, deadline: std::time::Duration) -> Outgoing {
    let branch = dialog::new_branch();
    let bytes = dialog::options(settings.local(), target, &branch);
    Outgoing {
        to: target,
        method: Method::Options,
        branch,
        bytes,
        deadline,
    }
}

/// A peer's addresses from its `svr-info`.
pub fn addrs_of(info: &SvrInfo) -> Option<NodeAddrs> {
    Some(NodeAddrs {
        id: info.svr_id.clone(),
        xmpp: info.xmpp.parse().ok()?,
        sip: crate::config::parse_sip_hostport(&info.sip)?,
    })
}

/// The `svr-info` among CCMP elements, as addresses.
pub fn svr_addrs(elements: &[Element]) -> Option<NodeAddrs> {
    elements
        .iter()
        .find_map(|e| match e {
            Element::SvrInfo(i) => Some(i),
            _ => None,
        })
        .and_then(addrs_of)
}

/// The `curr-load-level` of server `id` among CCMP elements.
pub fn load_of(elements: &[Element], id: &str) -> Option<ccmp::LoadLevel> {
    elements.iter().find_map(|e| match e {
        Element::PressvrLoad(l) => l.iter().find(|l| l.svr_id == id).cloned(),
        _ => None,
    })
}

/// Extra parts of a response we build.
#[derive(Debug, Default)]
pub struct Extra {
    /// Our To tag (a new one when the request has none and this is `None`).
    pub tag: Option<String>,
    /// More header fields.
    pub headers: Vec<(&'static str, String)>,
    /// A CCMP body, signed.
    pub body: Option<String>,
    /// Sign a response without a body (Call-ID and CSeq).
    pub sign: bool,
}

impl Extra {
    /// A signed response without a body.
    pub fn signed() -> Extra {
        Extra {
            sign: true,
            ..Default::default()
        }
    }

    /// A response carrying a signed CCMP body.
    pub fn body(body: String) -> Extra {
        Extra {
            body: Some(body),
            ..Default::default()
        }
    }
}

/// A response to `req`.
pub fn respond(secret: &str, req: &Request, status: u16, reason: &str, extra: Extra) -> Bytes {
    let mut b = message::reply(req, status, reason);
    if req.base.to.tag().is_none() && *req.method() != Method::Ack {
        b = b.to_tag(&extra.tag.clone().unwrap_or_else(message::new_tag));
    }
    for (n, v) in extra.headers {
        b = b.header(n, v);
    }
    if let Some(body) = extra.body {
        let material = dialog::signed_material(
            &req.base.call_id,
            &req.base.cseq.to_string(),
            body.as_bytes(),
        );
        b = b
            .header(ccmp::SIGNATURE_HEADER, ccmp::sign(secret, &material))
            .body(ccmp::CONTENT_TYPE, Bytes::from(body));
    } else if extra.sign {
        let material = dialog::signed_material(&req.base.call_id, &req.base.cseq.to_string(), b"");
        b = b.header(ccmp::SIGNATURE_HEADER, ccmp::sign(secret, &material));
    }
    b.build()
}

/// A refusal of `req` with a CCMP error body (`code` is both the SIP status and the CCMP
/// `response-code`), logged.
pub fn refuse(settings: &Settings, req: &Request, code: u16, why: &str, extension: &str) -> Bytes {
    if code == 409 && extension == "user-update" {
        // A late write from a node the user just left: expected, and carried by the
        // hand-over instead (DESIGN.md §7).
        debug!(from = %req.base.from.uri, reason = why, "write-through refused");
    } else {
        warn!(
            method = %req.method(),
            from = %req.base.from.uri,
            code,
            reason = why,
            "control request refused"
        );
    }
    let body = CcmpResponse::error(settings.conf_user(), extension, code, why).to_xml();
    let reason = match code {
        403 => "Forbidden",
        409 => "Conflict",
        481 => "Call/Transaction Does Not Exist",
        _ => "Bad Request",
    };
    respond(settings.secret(), req, code, reason, Extra::body(body))
}

/// Checks a request's `Ccmp-Signature` under the cluster secret.
pub fn verify(secret: &str, req: &Request) -> Result<(), ccmp::SignatureError> {
    let material =
        dialog::signed_material(&req.base.call_id, &req.base.cseq.to_string(), req.body());
    ccmp::verify(secret, &material, req.header(ccmp::SIGNATURE_HEADER))
}

/// Reads a request's CCMP body, or the refusal to answer it with (code, why).
pub fn ccmp_request(req: &Request) -> Result<CcmpRequest, (u16, String)> {
    let ct = req.header("Content-Type").unwrap_or_default();
    if !ct.trim().eq_ignore_ascii_case(ccmp::CONTENT_TYPE) {
        return Err((400, format!("Content-Type must be {}", ccmp::CONTENT_TYPE)));
    }
    CcmpRequest::parse(req.body()).map_err(|e| (e.response_code(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse, Limits, Message};

    fn settings() -> Settings {
        let config = crate::config::Config::parse(
            "[cluster]\nsecret = \"s\"\n[[node]]\nid = \"p\"\nrole = \"primary\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        Settings {
            config: std::sync::Arc::new(config),
            me: NodeAddrs {
                id: "p".into(),
                xmpp: "10.0.0.1:5222".parse().unwrap(),
                sip: "10.0.0.1:5060".parse().unwrap(),
            },
            admin: None,
            join: None,
        }
    }

    fn parse_request(bytes: &[u8]) -> Request {
        match parse(
            bytes,
            &Limits {
                max_message_bytes: 65536,
            },
        ) {
            Ok(Message::Request(r)) => r,
            _ => panic!("not a request"),
        }
    }

    #[test]
    fn an_info_goes_in_the_session_and_is_signed() {
        let s = settings();
        let mut sessions = Sessions::new();
        let peer: SocketAddr = "10.0.0.2:5060".parse().unwrap();
        assert_eq!(
            sessions.info(&s, "w", "pressvr-load", vec![]).unwrap_err(),
            ControlError::NoSession("w".into())
        );
        let dialog = Dialog::outgoing(s.local(), peer);
        let call_id = dialog.call_id.clone();
        sessions.insert(
            NodeAddrs {
                id: "w".into(),
                xmpp: "10.0.0.2:5222".parse().unwrap(),
                sip: peer,
            },
            dialog,
        );
        assert_eq!(sessions.by_call_id(&call_id).as_deref(), Some("w"));
        let out = sessions.info(&s, "w", "pressvr-load", vec![]).unwrap();
        assert_eq!(out.to, peer);
        assert_eq!(out.deadline, s.timeout());
        let req = parse_request(&out.bytes);
        assert_eq!(*req.method(), Method::Info);
        assert!(verify("s", &req).is_ok());
        assert!(verify("other", &req).is_err());
        let body = ccmp_request(&req).unwrap();
        assert_eq!(body.extension, "pressvr-load");
        assert_eq!(ccmp::node_of(&body.conf_user_id), Some("p"));
        // The refusal of a request carries a signed CCMP error.
        let refusal = refuse(&s, &req, 409, "no", "pressvr-load");
        let text = String::from_utf8_lossy(&refusal);
        assert!(text.starts_with("SIP/2.0 409 Conflict"), "{text}");
        assert!(text.contains(ccmp::SIGNATURE_HEADER), "{text}");
    }
}
