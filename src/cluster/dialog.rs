//! The SIP side of the control plane (DESIGN.md §5): the INVITE dialog between a member and
//! the primary that carries `application/extd-ccmp` bodies, and the requests sent in and out
//! of it. Pure: builds bytes and reads responses; the control actor owns sockets and timers.
//!
//! Every control-plane request is addressed to the user part `cluster` (`sip:cluster@host`),
//! which is how a node's SIP edge tells control traffic from user traffic; every client
//! transaction's branch starts with [`BRANCH_PREFIX`], which routes its responses back.
//! Inter-node SIP runs over TCP only, so there are no retransmissions to manage
//! (RFC 3261 §17.1.1.2 and §17.1.2.2: timers A and E are not used on reliable transports) and
//! a client transaction is a deadline.
//!
//! Authentication (DESIGN.md §5): the `Ccmp-Signature` header carries an HMAC-SHA256 under the
//! cluster secret of the body, or of the Call-ID and CSeq for a request without one.

use std::net::SocketAddr;

use bytes::Bytes;

use super::ccmp;
use crate::sip::message::{self, Method, NameAddr, RequestBuilder, Response};

/// Every branch of a control-plane client transaction starts with this.
pub const BRANCH_PREFIX: &str = "z9hG4bK-ccmp-";

/// The user part of every control-plane Request-URI and Contact.
pub const CLUSTER_USER: &str = "cluster";

/// Whether `from` (a From header's URI) names another node of the cluster of `domain`:
/// `sip:cluster@<domain>` (DESIGN.md §5). Who may claim it is checked by the signature.
pub fn is_cluster_uri(from: &str, domain: &str) -> bool {
    message::Uri::parse(from).is_ok_and(|u| {
        u.host.eq_ignore_ascii_case(domain) && u.user.as_deref() == Some(CLUSTER_USER)
    })
}

/// A fresh control-plane branch.
pub fn new_branch() -> String {
    format!("{BRANCH_PREFIX}{}", message::new_tag())
}

/// `sip:cluster@addr;transport=tcp`.
pub fn cluster_uri(addr: SocketAddr) -> String {
    format!("sip:{CLUSTER_USER}@{addr};transport=tcp")
}

/// What the signature covers: the body, or Call-ID and CSeq when there is none.
pub fn signed_material(call_id: &str, cseq: &str, body: &[u8]) -> Vec<u8> {
    if body.is_empty() {
        format!("{call_id}\n{cseq}").into_bytes()
    } else {
        body.to_vec()
    }
}

/// One established (or establishing) control session.
#[derive(Debug, Clone)]
pub struct Dialog {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag (empty until the 2xx of our INVITE).
    pub remote_tag: String,
    /// Our URI (From of our requests).
    pub local_uri: String,
    /// The peer's URI (To of our requests).
    pub remote_uri: String,
    /// Where in-dialog requests go (the peer's Contact), over TCP.
    pub remote_target: SocketAddr,
    /// CSeq of our last request.
    pub local_cseq: u32,
}

impl Dialog {
    /// A dialog we start (INVITE or SUBSCRIBE as UAC).
    pub fn outgoing(local: SocketAddr, remote: SocketAddr) -> Dialog {
        Dialog {
            call_id: format!("ccmp-{}{}", message::new_tag(), message::new_tag()),
            local_tag: message::new_tag(),
            remote_tag: String::new(),
            local_uri: cluster_uri(local),
            remote_uri: cluster_uri(remote),
            remote_target: remote,
            local_cseq: 0,
        }
    }

    /// The dialog a received INVITE or SUBSCRIBE creates (UAS); `target` is its Contact.
    pub fn incoming(req: &message::Request, target: SocketAddr, local_tag: &str) -> Dialog {
        Dialog {
            call_id: req.base.call_id.clone(),
            local_tag: local_tag.to_string(),
            remote_tag: req.base.from.tag().unwrap_or_default().to_string(),
            local_uri: req.base.to.uri.clone(),
            remote_uri: req.base.from.uri.clone(),
            remote_target: target,
            local_cseq: 0,
        }
    }

    /// Completes a dialog we started from its 2xx: the peer's tag and Contact.
    pub fn confirm(&mut self, resp: &Response) {
        self.remote_tag = resp.base.to.tag().unwrap_or_default().to_string();
        if let Some(target) = resp.header("Contact").and_then(contact_addr) {
            self.remote_target = target;
        }
    }

    /// A request in (or, before the 2xx, starting) this dialog. ACK reuses the INVITE's
    /// CSeq number (RFC 3261 §13.2.2.4); everything else takes the next one.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &mut self,
        method: Method,
        local: SocketAddr,
        branch: &str,
        secret: &str,
        headers: &[(&str, String)],
        body: Option<(&str, Bytes)>,
    ) -> Bytes {
        if method != Method::Ack {
            self.local_cseq += 1;
        }
        let cseq = format!("{} {}", self.local_cseq.max(1), method.as_str());
        let to = if self.remote_tag.is_empty() {
            format!("<{}>", self.remote_uri)
        } else {
            format!("<{}>;tag={}", self.remote_uri, self.remote_tag)
        };
        let material = signed_material(
            &self.call_id,
            &cseq,
            body.as_ref().map(|(_, b)| &b[..]).unwrap_or_default(),
        );
        let mut b = RequestBuilder::new(method, &cluster_uri(self.remote_target))
            .header("Via", format!("SIP/2.0/TCP {local};branch={branch};rport"))
            .header("Max-Forwards", "70")
            .header(
                "From",
                format!("<{}>;tag={}", self.local_uri, self.local_tag),
            )
            .header("To", to)
            .header("Call-ID", self.call_id.clone())
            .header("CSeq", cseq)
            .header("Contact", format!("<{}>", cluster_uri(local)))
            .header(ccmp::SIGNATURE_HEADER, ccmp::sign(secret, &material));
        for (name, value) in headers {
            b = b.header(name, value.clone());
        }
        if let Some((ct, body)) = body {
            b = b.body(ct, body);
        }
        b.build()
    }
}

/// An out-of-dialog OPTIONS probe of `target` (DESIGN.md §7: is the pool server up?).
pub fn options(local: SocketAddr, target: SocketAddr, branch: &str) -> Bytes {
    RequestBuilder::new(Method::Options, &cluster_uri(target))
        .header("Via", format!("SIP/2.0/TCP {local};branch={branch};rport"))
        .header("Max-Forwards", "70")
        .header(
            "From",
            format!("<{}>;tag={}", cluster_uri(local), message::new_tag()),
        )
        .header("To", format!("<{}>", cluster_uri(target)))
        .header("Call-ID", format!("ccmp-{}", message::new_tag()))
        .header("CSeq", "1 OPTIONS")
        .build()
}

/// The socket address of a Contact (or any name-addr) value: `<sip:cluster@ip:port;...>`.
pub fn contact_addr(value: &str) -> Option<SocketAddr> {
    let na = NameAddr::parse(value).ok()?;
    crate::config::parse_sip_hostport(&na.uri)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse, Limits, Message};

    #[test]
    fn an_info_is_signed_in_dialog_and_parses() {
        let local: SocketAddr = "10.0.0.2:5060".parse().unwrap();
        let remote: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let mut d = Dialog::outgoing(local, remote);
        let invite = d.request(
            Method::Invite,
            local,
            &new_branch(),
            "s",
            &[],
            Some((ccmp::CONTENT_TYPE, Bytes::from_static(b"<x/>"))),
        );
        let Ok(Message::Request(req)) = parse(
            &invite,
            &Limits {
                max_message_bytes: 65536,
            },
        ) else {
            panic!("INVITE does not parse");
        };
        assert_eq!(req.uri().user.as_deref(), Some(CLUSTER_USER));
        assert_eq!(req.base.cseq.seq, 1);
        assert_eq!(
            req.header(ccmp::SIGNATURE_HEADER),
            Some(ccmp::sign("s", b"<x/>").as_str())
        );
        let ack = d.request(Method::Ack, local, &new_branch(), "s", &[], None);
        let Ok(Message::Request(ack)) = parse(
            &ack,
            &Limits {
                max_message_bytes: 65536,
            },
        ) else {
            panic!("ACK does not parse");
        };
        assert_eq!(ack.base.cseq.seq, 1);
        let material = signed_material(&ack.base.call_id, "1 ACK", b"");
        assert_eq!(
            ack.header(ccmp::SIGNATURE_HEADER),
            Some(ccmp::sign("s", &material).as_str())
        );
        assert_eq!(
            contact_addr("<sip:cluster@10.0.0.9:5070;transport=tcp>"),
            Some("10.0.0.9:5070".parse().unwrap())
        );
    }
}
