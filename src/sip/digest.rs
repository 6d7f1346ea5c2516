//! SIP digest authentication: RFC 3261 §22.4 (the digest scheme as SIP uses it), the
//! request-digest of RFC 2617 §3.2.2.1 with `qop=auth` or no `qop`, the `Authorization`
//! grammar of RFC 3261 §25.1 (`digest-response`), and the algorithm tokens of RFC 8760
//! (`MD5` and `SHA-256`; `-sess` variants, `SHA-512-256` and `auth-int` are refused).
//!
//! Nonces are stateless (RFC 2617 §3.2.1 leaves their form to the server): a timestamp and
//! an HMAC over it and the realm, so any node holding the key can check them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest as _, Sha256};

use crate::sip::grammar::{is_lws, quote, quoted_end, take_token, trim_lws, unquote};

type HmacSha256 = Hmac<Sha256>;

/// How far (seconds) a nonce timestamp may lie in the future and still count as fresh, so
/// that nodes of a cluster with slightly different clocks accept each other's nonces.
pub const NONCE_FUTURE_SKEW_SECS: u64 = 30;

/// Length of a decoded nonce: an 8-byte big-endian timestamp and a 32-byte HMAC-SHA256.
const NONCE_BYTES: usize = 8 + 32;

/// The digest algorithms we accept (RFC 8760); the closed set keeps unsupported
/// tokens out of the hashing code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `MD5`, the RFC 2617 default, still what most SIP phones send.
    Md5,
    /// `SHA-256`, added to SIP by RFC 8760.
    Sha256,
}

impl Algorithm {
    /// The token as written in `algorithm=` parameters.
    pub fn token(&self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses an `algorithm=` token case-insensitively; `None` for anything unsupported
    /// (including `MD5-sess`, `SHA-256-sess` and `SHA-512-256`).
    pub fn parse(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// H(data) as lowercase hex (RFC 2617 §3.2.1 `H` and `KD` are built on it).
    fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data)),
            Algorithm::Sha256 => hex(&Sha256::digest(data)),
        }
    }

    /// Number of hex digits of a request-digest made with this algorithm.
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }
}

/// H(username:realm:password) as lowercase hex — what the account store keeps instead of the password.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// Stateless nonces: base64url(timestamp || HMAC-SHA256(key, timestamp || realm)) — no server state.
///
/// A nonce can be replayed until it goes stale; `nc` is not tracked (see the report).
#[derive(Clone)]
pub struct Nonces {
    /// The 32-byte key zero-padded to the SHA-256 block size, which is exactly what HMAC
    /// does to short keys (RFC 2104 §2), so the MAC can be built without a fallible call.
    key: [u8; 64],
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nonces { key: <redacted> }")
    }
}

impl Nonces {
    /// Builds a nonce factory from a secret shared by every node that must accept the nonces.
    pub fn new(key: [u8; 32]) -> Self {
        let mut padded = [0u8; 64];
        padded[..32].copy_from_slice(&key);
        Nonces { key: padded }
    }

    fn mac(&self, timestamp: [u8; 8], realm: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new(&self.key.into());
        mac.update(&timestamp);
        mac.update(realm.as_bytes());
        mac
    }

    /// Issues a nonce for `realm` stamped with `now_unix` (seconds since the Unix epoch).
    pub fn issue(&self, realm: &str, now_unix: u64) -> String {
        let timestamp = now_unix.to_be_bytes();
        let tag = self.mac(timestamp, realm).finalize().into_bytes();
        let mut raw = Vec::with_capacity(NONCE_BYTES);
        raw.extend_from_slice(&timestamp);
        raw.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a nonce returned by a client: `Invalid` if it was not issued with our key for
    /// this realm, `Stale` if older than `max_age_secs` (answer 401 with `stale=true`, RFC
    /// 2617 §3.2.1), `Fresh` otherwise.
    pub fn check(&self, nonce: &str, realm: &str, now_unix: u64, max_age_secs: u64) -> NonceState {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(nonce) else {
            return NonceState::Invalid;
        };
        if raw.len() != NONCE_BYTES {
            return NonceState::Invalid;
        }
        let (ts_bytes, tag) = raw.split_at(8);
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(ts_bytes);
        if self.mac(timestamp, realm).verify_slice(tag).is_err() {
            return NonceState::Invalid;
        }
        let issued = u64::from_be_bytes(timestamp);
        if issued > now_unix.saturating_add(NONCE_FUTURE_SKEW_SECS) {
            return NonceState::Invalid;
        }
        if now_unix.saturating_sub(issued) > max_age_secs {
            NonceState::Stale
        } else {
            NonceState::Fresh
        }
    }
}

/// The verdict on a nonce; `Stale` lets a client retry with the same credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Ours, for this realm, and young enough.
    Fresh,
    /// Ours, but older than the allowed age.
    Stale,
    /// Not ours, tampered with, for another realm, or undecodable.
    Invalid,
}

/// WWW-Authenticate value: Digest realm="..", nonce="..", algorithm=SHA-256, qop="auth"[, stale=true]
pub fn challenge(alg: Algorithm, realm: &str, nonce: &str, stale: bool) -> String {
    let mut out = format!(
        "Digest realm={}, nonce={}, algorithm={}, qop=\"auth\"",
        quote(realm),
        quote(nonce),
        alg.token()
    );
    if stale {
        out.push_str(", stale=true");
    }
    out
}

/// A parsed `Authorization` / `Proxy-Authorization` Digest credential (RFC 3261 §25.1
/// `digest-response`), kept as strings because the hash covers them verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// `username`, the account name.
    pub username: String,
    /// `realm`, which must be one we challenged with.
    pub realm: String,
    /// `nonce`, to be checked with [`Nonces::check`].
    pub nonce: String,
    /// `uri`, the digest-uri (normally the Request-URI).
    pub uri: String,
    /// `response`, the request-digest, lowercased hex.
    pub response: String,
    /// `algorithm`; absent means MD5 (RFC 2617 §3.2.1).
    pub algorithm: Algorithm,
    /// `qop`, only ever `auth` here (as written by the client).
    pub qop: Option<String>,
    /// `nc`, eight hex digits, present when `qop` is.
    pub nc: Option<String>,
    /// `cnonce`, present when `qop` is.
    pub cnonce: Option<String>,
    /// `opaque`, echoed from the challenge if we sent one.
    pub opaque: Option<String>,
}

/// Why an `Authorization` value was refused; each variant names the parameter at fault.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DigestError {
    /// The scheme is not `Digest` (e.g. `Basic`), or there is no scheme at all.
    #[error("Authorization scheme is not Digest")]
    NotDigest,
    /// The parameter list does not follow `name=token` / `name="quoted"` syntax; names the
    /// parameter (or `parameter list` when no name could be read).
    #[error("malformed Digest parameter `{0}`")]
    Malformed(String),
    /// A parameter appears twice.
    #[error("duplicate Digest parameter `{0}`")]
    Duplicate(String),
    /// A required parameter is absent.
    #[error("missing Digest parameter `{0}`")]
    Missing(&'static str),
    /// A parameter has a value outside its grammar (`nc`, `response`).
    #[error("invalid value for Digest parameter `{0}`")]
    Invalid(&'static str),
    /// `algorithm` names something other than MD5 or SHA-256.
    #[error("unsupported Digest algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    /// `qop` is something other than `auth` (e.g. `auth-int`).
    #[error("unsupported Digest qop `{0}`")]
    UnsupportedQop(String),
}

/// Parses an Authorization / Proxy-Authorization value (scheme "Digest", quoted-string escapes,
/// params in any order, unknown params ignored, duplicates rejected, missing username/realm/nonce/uri/response rejected,
/// qop=auth requires nc and cnonce, unknown algorithm (e.g. "SHA-512-256" or "MD5-sess") → error naming it).
pub fn parse_authorization(value: &str) -> Result<Authorization, DigestError> {
    let value = trim_lws(value);
    let scheme_end = value.find(is_lws).unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(DigestError::NotDigest);
    }
    let params = parse_params(rest)?;

    let mut username = None;
    let mut realm = None;
    let mut nonce = None;
    let mut uri = None;
    let mut response = None;
    let mut algorithm = None;
    let mut qop = None;
    let mut nc = None;
    let mut cnonce = None;
    let mut opaque = None;
    let mut seen: Vec<String> = Vec::new();
    for (name, val) in params {
        if seen.contains(&name) {
            return Err(DigestError::Duplicate(name));
        }
        let slot = match name.as_str() {
            "username" => &mut username,
            "realm" => &mut realm,
            "nonce" => &mut nonce,
            "uri" => &mut uri,
            "response" => &mut response,
            "algorithm" => &mut algorithm,
            "qop" => &mut qop,
            "nc" => &mut nc,
            "cnonce" => &mut cnonce,
            "opaque" => &mut opaque,
            _ => {
                seen.push(name);
                continue;
            }
        };
        *slot = Some(val);
        seen.push(name);
    }

    let algorithm = match algorithm {
        None => Algorithm::Md5,
        Some(token) => Algorithm::parse(&token).ok_or(DigestError::UnsupportedAlgorithm(token))?,
    };
    let username = username.ok_or(DigestError::Missing("username"))?;
    let realm = realm.ok_or(DigestError::Missing("realm"))?;
    let nonce = nonce.ok_or(DigestError::Missing("nonce"))?;
    let uri = uri.ok_or(DigestError::Missing("uri"))?;
    let response = response.ok_or(DigestError::Missing("response"))?;
    if response.len() != algorithm.hex_len() || !response.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DigestError::Invalid("response"));
    }
    let response = response.to_ascii_lowercase();

    if let Some(q) = &qop {
        if !q.eq_ignore_ascii_case("auth") {
            return Err(DigestError::UnsupportedQop(q.clone()));
        }
        if nc.is_none() {
            return Err(DigestError::Missing("nc"));
        }
        if cnonce.is_none() {
            return Err(DigestError::Missing("cnonce"));
        }
    }
    if let Some(n) = &nc {
        // nc-value = 8LHEX (RFC 3261 §25.1)
        if n.len() != 8 || !n.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DigestError::Invalid("nc"));
        }
    }

    Ok(Authorization {
        username,
        realm,
        nonce,
        uri,
        response,
        algorithm,
        qop,
        nc,
        cnonce,
        opaque,
    })
}

/// The request-digest of RFC 2617 §3.2.2.1 for qop=auth or no qop (used by the server and by test clients).
///
/// With `qop` set, a missing `nc` or `cnonce` hashes as the empty string (such a digest
/// never matches a correct client); any `qop` value is hashed with the `auth` formula.
#[allow(clippy::too_many_arguments)] // the signature mirrors the RFC inputs one to one
pub fn response(
    alg: Algorithm,
    ha1_hex: &str,
    nonce: &str,
    nc: Option<&str>,
    cnonce: Option<&str>,
    qop: Option<&str>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = alg.hash_hex(format!("{method}:{uri}").as_bytes());
    let data = match qop {
        Some(qop) => format!(
            "{ha1_hex}:{nonce}:{}:{}:{qop}:{ha2}",
            nc.unwrap_or(""),
            cnonce.unwrap_or("")
        ),
        None => format!("{ha1_hex}:{nonce}:{ha2}"),
    };
    alg.hash_hex(data.as_bytes())
}

/// Server check: recompute and compare in constant time.
///
/// `ha1_hex` must have been computed with `auth.algorithm`; the nonce, realm and digest-uri
/// are the caller's to check ([`Nonces::check`], the Request-URI).
pub fn verify(auth: &Authorization, method: &str, ha1_hex: &str) -> bool {
    let expected = response(
        auth.algorithm,
        &ha1_hex.to_ascii_lowercase(),
        &auth.nonce,
        auth.nc.as_deref(),
        auth.cnonce.as_deref(),
        auth.qop.as_deref(),
        method,
        &auth.uri,
    );
    constant_time_eq(expected.as_bytes(), auth.response.as_bytes())
}

/// Compares two byte strings without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Splits `name=value, name="value", …` into lowercased names and unquoted values.
/// Empty list elements (`,,`) are tolerated as in RFC 7230 §7.
fn parse_params(input: &str) -> Result<Vec<(String, String)>, DigestError> {
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        rest = rest.trim_start_matches(is_lws);
        while let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start_matches(is_lws);
        }
        if rest.is_empty() {
            break;
        }
        let Some((name, after)) = take_token(rest) else {
            return Err(DigestError::Malformed("parameter list".into()));
        };
        let name = name.to_ascii_lowercase();
        let Some(after) = after.trim_start_matches(is_lws).strip_prefix('=') else {
            return Err(DigestError::Malformed(name));
        };
        let after = after.trim_start_matches(is_lws);
        let value = if after.starts_with('"') {
            let Some(end) = quoted_end(after) else {
                return Err(DigestError::Malformed(name));
            };
            rest = &after[end..];
            unquote(&after[..end])
        } else {
            let Some((token, r)) = take_token(after) else {
                return Err(DigestError::Malformed(name));
            };
            rest = r;
            token.to_owned()
        };
        out.push((name, value));
        rest = rest.trim_start_matches(is_lws);
        if rest.is_empty() {
            break;
        }
        match rest.strip_prefix(',') {
            Some(r) => rest = r,
            None => {
                let last = out.pop().map(|(n, _)| n).unwrap_or_default();
                return Err(DigestError::Malformed(last));
            }
        }
    }
    Ok(out)
}

pub mod client;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::junk::junk_inputs;

    /// RFC 2617 §3.5 (HTTP, qop=auth, password "Circle Of Life").
    const RFC2617_EXAMPLE: &str = "Digest username=\"Mufasa\",
                 realm=\"testrealm@host.com\",
                 nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",
                 uri=\"/dir/index.html\",
                 qop=auth,
                 nc=00000001,
                 cnonce=\"0a4f113b\",
                 response=\"6629fae49393a05397450978507c4ef1\",
                 opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";

    /// RFC 7616 §3.9.1, SHA-256 half (password "Circle of Life", lowercase "of").
    const RFC7616_SHA256_EXAMPLE: &str = "Digest username=\"Mufasa\",
        realm=\"http-auth@example.org\",
        uri=\"/dir/index.html\",
        algorithm=SHA-256,
        nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",
        nc=00000001,
        cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",
        qop=auth,
        response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\",
        opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";

    #[test]
    fn algorithm_tokens() {
        assert_eq!(Algorithm::parse("md5"), Some(Algorithm::Md5));
        assert_eq!(Algorithm::parse("sha-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::parse("SHA-512-256"), None);
        assert_eq!(Algorithm::parse("MD5-sess"), None);
        assert_eq!(Algorithm::Md5.token(), "MD5");
        assert_eq!(Algorithm::Sha256.token(), "SHA-256");
    }

    #[test]
    fn rfc2617_example_parses_and_verifies() {
        let auth = parse_authorization(RFC2617_EXAMPLE).expect("parses");
        assert_eq!(
            auth,
            Authorization {
                username: "Mufasa".into(),
                realm: "testrealm@host.com".into(),
                nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
                uri: "/dir/index.html".into(),
                response: "6629fae49393a05397450978507c4ef1".into(),
                algorithm: Algorithm::Md5,
                qop: Some("auth".into()),
                nc: Some("00000001".into()),
                cnonce: Some("0a4f113b".into()),
                opaque: Some("5ccc069c403ebaf9f0171e9517f40e41".into()),
            }
        );
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert!(verify(&auth, "GET", &h));
        assert!(!verify(&auth, "POST", &h));
        let wrong = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle of Life",
        );
        assert!(!verify(&auth, "GET", &wrong));
    }

    #[test]
    fn rfc2617_example_response_value() {
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert_eq!(
            response(
                Algorithm::Md5,
                &h,
                "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                Some("00000001"),
                Some("0a4f113b"),
                Some("auth"),
                "GET",
                "/dir/index.html",
            ),
            "6629fae49393a05397450978507c4ef1"
        );
    }

    #[test]
    fn rfc7616_sha256_example() {
        let auth = parse_authorization(RFC7616_SHA256_EXAMPLE).expect("parses");
        assert_eq!(auth.algorithm, Algorithm::Sha256);
        assert_eq!(
            auth.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
        let h = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert_eq!(
            response(
                Algorithm::Sha256,
                &h,
                &auth.nonce,
                auth.nc.as_deref(),
                auth.cnonce.as_deref(),
                auth.qop.as_deref(),
                "GET",
                "/dir/index.html"
            ),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert!(verify(&auth, "GET", &h));
        // the MD5 HA1 of the same account must not verify a SHA-256 response
        let md5 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert!(!verify(&auth, "GET", &md5));
    }

    // Our own SIP vectors (not from an RFC): alice / example.com / "s3cret", REGISTER
    // sip:example.com, nonce "4e6f6e6365"; expected values computed independently with
    // Python's hashlib.
    #[test]
    fn own_sip_register_vectors() {
        let md5 = ha1(Algorithm::Md5, "alice", "example.com", "s3cret");
        assert_eq!(md5, "d2d0c8958e1b1c2b989afda0efb9663e");
        let sha = ha1(Algorithm::Sha256, "alice", "example.com", "s3cret");
        assert_eq!(
            sha,
            "5297838bf1a4f1fc5d284fa2f0df90bdf2046b6bf4c022e85118af37bb6dbf75"
        );
        let r = |alg, h: &str, qop: Option<&str>| {
            let (nc, cn) = if qop.is_some() {
                (Some("00000002"), Some("c1n0nce"))
            } else {
                (None, None)
            };
            response(
                alg,
                h,
                "4e6f6e6365",
                nc,
                cn,
                qop,
                "REGISTER",
                "sip:example.com",
            )
        };
        assert_eq!(
            r(Algorithm::Md5, &md5, None),
            "5685770a11d3cb0f042b1e93197d7825"
        );
        assert_eq!(
            r(Algorithm::Md5, &md5, Some("auth")),
            "f3fa2e9ec9d6b35409432a54a903aaa1"
        );
        assert_eq!(
            r(Algorithm::Sha256, &sha, None),
            "08097ff770185e1e02532ac7c9f6de15c610679919e75826ee5e8d3e56695503"
        );
        assert_eq!(
            r(Algorithm::Sha256, &sha, Some("auth")),
            "444c4babc6d16faa08374ea9d3eeac4d27ecb9d44ce4833ebfcf3b547e84b915"
        );

        // RFC 2069-style credential (no qop), as many SIP phones send it.
        let value = "Digest username=\"alice\",realm=\"example.com\",nonce=\"4e6f6e6365\",\
                     uri=\"sip:example.com\",response=\"5685770A11D3CB0F042B1E93197D7825\",\
                     algorithm=MD5";
        let auth = parse_authorization(value).expect("parses");
        assert_eq!(auth.qop, None);
        assert_eq!(auth.response, "5685770a11d3cb0f042b1e93197d7825");
        assert!(verify(&auth, "REGISTER", &md5));
        assert!(!verify(&auth, "INVITE", &md5));
    }

    /// RFC 3261 §22.4 Authorization example. Its response value was copied from RFC 2617
    /// and cannot be verified (the password is not given), so only parsing is checked.
    #[test]
    fn rfc3261_example_parses() {
        let value = "Digest username=\"bob\",
              realm=\"biloxi.com\",
              nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",
              uri=\"sip:bob@biloxi.com\",
              qop=auth,
              nc=00000001,
              cnonce=\"0a4f113b\",
              response=\"6629fae49393a05397450978507c4ef1\",
              opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let auth = parse_authorization(value).expect("parses");
        assert_eq!(auth.username, "bob");
        assert_eq!(auth.realm, "biloxi.com");
        assert_eq!(auth.uri, "sip:bob@biloxi.com");
        assert_eq!(auth.nc.as_deref(), Some("00000001"));
    }

    #[test]
    fn parsing_edge_cases() {
        // escapes, odd spacing, case of names and scheme, quoted qop, unknown params ignored
        let value = "digest  REALM = \"a \\\"b\\\\c\" ,username=\"u\", nonce=n, uri=\"sip:x\",\
                     userhash=false, response=\"00000000000000000000000000000000\", qop=\"auth\",\
                     nc=0000000a, cnonce=\"c\",,";
        let auth = parse_authorization(value).expect("parses");
        assert_eq!(auth.realm, "a \"b\\c");
        assert_eq!(auth.nonce, "n");
        assert_eq!(auth.qop.as_deref(), Some("auth"));

        let base = "username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", \
                    response=\"00000000000000000000000000000000\"";
        let p = |extra: &str| parse_authorization(&format!("Digest {base}{extra}"));
        assert!(p("").is_ok());
        assert_eq!(
            parse_authorization(&format!("Basic {base}")),
            Err(DigestError::NotDigest)
        );
        assert_eq!(parse_authorization(""), Err(DigestError::NotDigest));
        assert_eq!(
            p(", realm=\"r2\""),
            Err(DigestError::Duplicate("realm".into()))
        );
        assert_eq!(p(", Realm=r2"), Err(DigestError::Duplicate("realm".into())));
        assert_eq!(
            p(", algorithm=SHA-512-256"),
            Err(DigestError::UnsupportedAlgorithm("SHA-512-256".into()))
        );
        assert_eq!(
            p(", algorithm=MD5-sess"),
            Err(DigestError::UnsupportedAlgorithm("MD5-sess".into()))
        );
        assert_eq!(
            p(", qop=auth-int, nc=00000001, cnonce=\"c\""),
            Err(DigestError::UnsupportedQop("auth-int".into()))
        );
        assert_eq!(
            p(", qop=auth, cnonce=\"c\""),
            Err(DigestError::Missing("nc"))
        );
        assert_eq!(
            p(", qop=auth, nc=00000001"),
            Err(DigestError::Missing("cnonce"))
        );
        assert_eq!(
            p(", qop=auth, nc=1, cnonce=\"c\""),
            Err(DigestError::Invalid("nc"))
        );
        assert_eq!(
            p(", opaque=\"unterminated"),
            Err(DigestError::Malformed("opaque".into()))
        );
        assert_eq!(p(", opaque"), Err(DigestError::Malformed("opaque".into())));
        assert_eq!(p(", opaque="), Err(DigestError::Malformed("opaque".into())));
        assert_eq!(
            p(", opaque=a b"),
            Err(DigestError::Malformed("opaque".into()))
        );
        assert_eq!(
            p(", =x"),
            Err(DigestError::Malformed("parameter list".into()))
        );
        assert_eq!(
            p(", x=\"ends in \\"),
            Err(DigestError::Malformed("x".into()))
        );
        // SHA-256 requires a 64-digit response
        assert_eq!(
            p(", algorithm=SHA-256"),
            Err(DigestError::Invalid("response"))
        );

        for (missing, text) in [
            (
                "username",
                "realm=r, nonce=n, uri=u, response=\"00000000000000000000000000000000\"",
            ),
            (
                "realm",
                "username=u, nonce=n, uri=u, response=\"00000000000000000000000000000000\"",
            ),
            (
                "nonce",
                "username=u, realm=r, uri=u, response=\"00000000000000000000000000000000\"",
            ),
            (
                "uri",
                "username=u, realm=r, nonce=n, response=\"00000000000000000000000000000000\"",
            ),
            ("response", "username=u, realm=r, nonce=n, uri=u"),
        ] {
            assert_eq!(
                parse_authorization(&format!("Digest {text}")),
                Err(DigestError::Missing(missing))
            );
        }
        assert_eq!(
            parse_authorization("Digest username=u, realm=r, nonce=n, uri=u, response=xyz"),
            Err(DigestError::Invalid("response"))
        );
        // non-ASCII in a quoted string survives
        let auth = parse_authorization(&format!("Digest {base}, opaque=\"é\\ü\"")).expect("ok");
        assert_eq!(auth.opaque.as_deref(), Some("éü"));
    }

    #[test]
    fn challenge_format() {
        assert_eq!(
            challenge(Algorithm::Sha256, "example.com", "abc", false),
            "Digest realm=\"example.com\", nonce=\"abc\", algorithm=SHA-256, qop=\"auth\""
        );
        assert_eq!(
            challenge(Algorithm::Md5, "ex\"a", "abc", true),
            "Digest realm=\"ex\\\"a\", nonce=\"abc\", algorithm=MD5, qop=\"auth\", stale=true"
        );
    }

    #[test]
    fn nonces_fresh_stale_invalid() {
        let nonces = Nonces::new([7u8; 32]);
        let n = nonces.issue("example.com", 1_000_000);
        assert_eq!(n.len(), 54);
        assert_eq!(
            nonces.check(&n, "example.com", 1_000_000, 300),
            NonceState::Fresh
        );
        assert_eq!(
            nonces.check(&n, "example.com", 1_000_300, 300),
            NonceState::Fresh
        );
        assert_eq!(
            nonces.check(&n, "example.com", 1_000_301, 300),
            NonceState::Stale
        );
        // issued in the future beyond the skew allowance
        assert_eq!(
            nonces.check(&n, "example.com", 999_969, 300),
            NonceState::Invalid
        );
        assert_eq!(
            nonces.check(&n, "example.com", 999_970, 300),
            NonceState::Fresh
        );
        // another realm, another key
        assert_eq!(
            nonces.check(&n, "example.org", 1_000_000, 300),
            NonceState::Invalid
        );
        let other = Nonces::new([8u8; 32]);
        assert_eq!(
            other.check(&n, "example.com", 1_000_000, 300),
            NonceState::Invalid
        );
        // garbage
        for bad in ["", "!!!", "AAAA", "dcd98b7102dd2f0e8b11d0f600bfb0c093"] {
            assert_eq!(
                nonces.check(bad, "example.com", 1_000_000, 300),
                NonceState::Invalid
            );
        }
        // tampered timestamp: a later timestamp with the old MAC
        let mut raw = URL_SAFE_NO_PAD.decode(&n).expect("decodes");
        raw[7] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(
            nonces.check(&tampered, "example.com", 1_000_000, 300),
            NonceState::Invalid
        );
        // tampered MAC
        let mut raw = URL_SAFE_NO_PAD.decode(&n).expect("decodes");
        raw[39] ^= 0x80;
        let tampered = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(
            nonces.check(&tampered, "example.com", 1_000_000, 300),
            NonceState::Invalid
        );
    }

    #[test]
    fn padded_key_matches_plain_hmac() {
        // the zero-padding shortcut must equal HMAC keyed with the 32-byte key itself
        let key = [0x42u8; 32];
        let nonces = Nonces::new(key);
        let n = nonces.issue("r", 5);
        let raw = URL_SAFE_NO_PAD.decode(n).expect("decodes");
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&key).expect("any length");
        mac.update(&5u64.to_be_bytes());
        mac.update(b"r");
        assert_eq!(&raw[8..], mac.finalize().into_bytes().as_slice());
    }

    #[test]
    fn constant_time_eq_basics() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn never_panics_on_junk() {
        let nonces = Nonces::new([1u8; 32]);
        for input in junk_inputs() {
            let _ = parse_authorization(&input);
            let _ = parse_authorization(&format!("Digest {input}"));
            let _ = nonces.check(&input, "r", 0, 0);
        }
    }
}
