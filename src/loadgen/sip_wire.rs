//! The client side of SIP presence on the wire, pure: the PIDF body of a PUBLISH (RFC 3863, RFC 3903), the target
//! of a `302` Contact or of a dialog's remote target (RFC 3261 §8.1.3.4, §12.1.2), and the
//! requests themselves, built with [`crate::sip::message::RequestBuilder`].

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use crate::pidf::{Basic, Note, Presence, Tuple};
pub use crate::sip::digest::client::Challenge;
use crate::sip::message::{Method, NameAddr, RequestBuilder, Uri};

/// The tuple id of every publication. Servers that map tuple ids to XMPP resources
/// (RFC 8048) must not see it collide with the XMPP users' resource `lg`.
pub const TUPLE_ID: &str = "lg-sip";

/// The PIDF document a SIP user publishes: one open tuple whose note is `note`.
pub fn pidf_body(user: &str, domain: &str, note: &str) -> String {
    let mut tuple = Tuple::closed(TUPLE_ID);
    tuple.basic = Some(Basic::Open);
    tuple.notes.push(Note {
        text: note.to_string(),
        lang: None,
    });
    Presence {
        entity: format!("sip:{user}@{domain}"),
        tuples: vec![tuple],
        ..Presence::default()
    }
    .to_xml()
}

/// The socket address of a SIP URI whose host is an IP literal (default port 5060); names
/// are not resolved here.
pub fn uri_addr(uri: &str) -> Option<SocketAddr> {
    let u = Uri::parse(uri).ok()?;
    let host = u
        .host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(&u.host);
    let ip: IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, u.port.unwrap_or(5060)))
}

/// The URI of a Contact value (`<sip:…>;params` or a bare addr-spec).
pub fn contact_uri(value: &str) -> Option<String> {
    let first = crate::sip::message::split_list(value)
        .into_iter()
        .next()?
        .to_string();
    NameAddr::parse(&first).ok().map(|n| n.uri)
}

/// Seconds of an `Expires` value, if it is one.
pub fn expires(value: Option<&str>) -> Option<u32> {
    value?.trim().parse().ok()
}

/// The common part of every request a SIP user sends.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// Request-URI.
    pub uri: &'a str,
    /// Our Via sent-by (`ip:port`).
    pub via: &'a str,
    /// The transaction's branch (with the magic cookie).
    pub branch: &'a str,
    /// From value.
    pub from: &'a str,
    /// To value.
    pub to: &'a str,
    /// Call-ID.
    pub call_id: &'a str,
    /// CSeq number.
    pub cseq: u32,
}

impl Request<'_> {
    /// The request bytes with `headers` after the base ones and an optional body.
    pub fn build(&self, headers: &[(&str, String)], body: Option<(&str, String)>) -> Bytes {
        let mut b = RequestBuilder::new(self.method.clone(), self.uri)
            .header(
                "Via",
                format!("SIP/2.0/UDP {};branch={};rport", self.via, self.branch),
            )
            .header("Max-Forwards", "70")
            .header("From", self.from)
            .header("To", self.to)
            .header("Call-ID", self.call_id)
            .header("CSeq", format!("{} {}", self.cseq, self.method));
        for (n, v) in headers {
            b = b.header(n, v.clone());
        }
        if let Some((ct, body)) = body {
            b = b.body(ct, body);
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::digest::{self, Algorithm};
    use crate::sip::message::{parse, Limits, Message};

    #[test]
    fn challenges_parse_and_sha256_is_preferred() {
        let md5 = "Digest realm=\"localhost\", nonce=\"abc\", algorithm=MD5, qop=\"auth,auth-int\"";
        let sha = "Digest realm=\"localhost\", nonce=\"xyz\", algorithm=SHA-256, qop=\"auth\", stale=true, opaque=\"o,1\"";
        let c = Challenge::pick([md5, sha]).unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(
            (c.nonce.as_str(), c.stale, c.opaque.as_deref()),
            ("xyz", true, Some("o,1"))
        );
        let c = Challenge::parse(md5).unwrap();
        assert!(c.qop_auth && c.algorithm == Algorithm::Md5);
        assert!(Challenge::parse("Basic realm=\"x\"").is_none());
        assert!(
            Challenge::parse("Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512-256").is_none()
        );
        assert!(Challenge::parse("Digest realm=\"x\"").is_none());
        let no_qop = Challenge::parse("Digest realm=\"r\",nonce=\"n\"").unwrap();
        assert!(!no_qop.qop_auth && no_qop.algorithm == Algorithm::Md5);
    }

    #[test]
    fn authorization_is_what_the_server_side_verifies() {
        // The server's own parser and checker accept what the client builds.
        for alg in ["MD5", "SHA-256"] {
            let c = Challenge::parse(&format!(
                "Digest realm=\"localhost\", nonce=\"n0nce\", algorithm={alg}, qop=\"auth\", opaque=\"op\""
            ))
            .unwrap();
            let v = c.authorization("user1", "pass1", "PUBLISH", "sip:user1@localhost", 3, "cn");
            let a = digest::parse_authorization(&v).unwrap();
            assert_eq!(a.nc.as_deref(), Some("00000003"));
            assert_eq!(a.opaque.as_deref(), Some("op"));
            let ha1 = digest::ha1(c.algorithm, "user1", "localhost", "pass1");
            assert!(digest::verify(&a, "PUBLISH", &ha1), "{v}");
            assert!(!digest::verify(&a, "SUBSCRIBE", &ha1));
        }
        // RFC 2617 §3.2.2.1 without qop.
        let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
        let v = c.authorization("u", "p", "SUBSCRIBE", "sip:x@r", 1, "c");
        let a = digest::parse_authorization(&v).unwrap();
        assert!(a.qop.is_none());
        assert!(digest::verify(
            &a,
            "SUBSCRIBE",
            &digest::ha1(Algorithm::Md5, "u", "r", "p")
        ));
    }

    #[test]
    fn pidf_and_uris() {
        let body = pidf_body("user3", "localhost", "lg 3 1 99");
        let p = Presence::parse(body.as_bytes()).unwrap();
        assert_eq!(p.entity, "sip:user3@localhost");
        assert!(p.is_open());
        assert_eq!(p.tuples[0].notes[0].text, "lg 3 1 99");
        assert_eq!(
            uri_addr("sip:user1@127.0.0.1:5070;transport=udp"),
            Some("127.0.0.1:5070".parse().unwrap())
        );
        assert_eq!(
            uri_addr("sip:user1@[::1]"),
            Some("[::1]:5060".parse().unwrap())
        );
        assert_eq!(uri_addr("sip:user1@example.com:5070"), None);
        assert_eq!(
            contact_uri("<sip:user1@10.0.0.2:5060>;expires=60, <sip:x@y>").as_deref(),
            Some("sip:user1@10.0.0.2:5060")
        );
        assert_eq!(expires(Some(" 600 ")), Some(600));
        assert_eq!(expires(Some("soon")), None);
    }

    #[test]
    fn requests_parse_back() {
        let r = Request {
            method: Method::Publish,
            uri: "sip:user1@localhost",
            via: "127.0.0.1:40000",
            branch: "z9hG4bKabc",
            from: "<sip:user1@localhost>;tag=t1",
            to: "<sip:user1@localhost>",
            call_id: "c1@lg",
            cseq: 7,
        };
        let bytes = r.build(
            &[("Event", "presence".into()), ("Expires", "600".into())],
            Some(("application/pidf+xml", pidf_body("user1", "localhost", "x"))),
        );
        let Ok(Message::Request(req)) = parse(
            &bytes,
            &Limits {
                max_message_bytes: 65535,
            },
        ) else {
            panic!("{}", String::from_utf8_lossy(&bytes));
        };
        assert_eq!(req.base.cseq.seq, 7);
        assert_eq!(req.base.via.branch.as_deref(), Some("z9hG4bKabc"));
        assert_eq!(req.header("Event"), Some("presence"));
        assert!(Presence::parse(req.body()).is_ok());
    }
}
