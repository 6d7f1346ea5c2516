//! The client side of digest authentication (RFC 3261 §22.2, §22.4; RFC 2617 §3.2.2 with
//! `qop=auth`; RFC 8760 SHA-256 preferred over MD5): a `WWW-Authenticate` /
//! `Proxy-Authenticate` challenge read with the same parameter scanner as the server's
//! `Authorization`, and the credentials answering it.

use super::{ha1, response, Algorithm};
use crate::sip::grammar::quote;

/// A `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// `qop` offers `auth`.
    pub qop_auth: bool,
    /// `opaque`, echoed back.
    pub opaque: Option<String>,
    /// `stale=true`: the nonce expired, the credentials were right.
    pub stale: bool,
}

impl Challenge {
    /// Parses one challenge value; `None` when it is not Digest or lacks realm/nonce, or its
    /// algorithm is not MD5 or SHA-256.
    pub fn parse(value: &str) -> Option<Challenge> {
        let value = value.trim();
        let (scheme, rest) = value.split_once(|c: char| c.is_ascii_whitespace())?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let p = super::parse_params(rest).ok()?;
        let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(a)?,
        };
        Some(Challenge {
            realm: get("realm")?.to_string(),
            nonce: get("nonce")?.to_string(),
            algorithm,
            qop_auth: get("qop")
                .is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth"))),
            opaque: get("opaque").map(str::to_string),
            stale: get("stale").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }

    /// The best of several challenges (SHA-256 before MD5).
    pub fn pick<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
        let all: Vec<Challenge> = values.into_iter().filter_map(Challenge::parse).collect();
        all.iter()
            .find(|c| c.algorithm == Algorithm::Sha256)
            .or(all.first())
            .cloned()
    }

    /// The credentials for `method` `uri` with nonce count `nc` and client nonce `cnonce`.
    pub fn authorization(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let ha1 = ha1(self.algorithm, username, &self.realm, password);
        let nc_s = format!("{nc:08x}");
        let (qop, ncv, cn) = if self.qop_auth {
            (Some("auth"), Some(nc_s.as_str()), Some(cnonce))
        } else {
            (None, None, None)
        };
        let response = response(self.algorithm, &ha1, &self.nonce, ncv, cn, qop, method, uri);
        let mut out = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", algorithm={}",
            quote(username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri),
            self.algorithm.token()
        );
        if self.qop_auth {
            out.push_str(&format!(", qop=auth, nc={nc_s}, cnonce=\"{cnonce}\""));
        }
        if let Some(o) = &self.opaque {
            out.push_str(&format!(", opaque={}", quote(o)));
        }
        out
    }
}
