//! SCRAM client: RFC 5802 §3 (algorithm), §5 (exchange), §7 (message syntax), with SHA-1
//! (RFC 5802) and SHA-256 (RFC 7677). No channel binding (gs2 header `n,,`), no SASLprep
//! (RFC 4013): names and passwords are used as given, as the server side does.
//!
//! The exchange is split so that the expensive step, Hi() (PBKDF2), can run off the I/O
//! thread and be cached per (password, salt, iterations) as RFC 5802 §5.1 allows:
//! [`ClientFirst::new`] → [`parse_server_first`] → [`salted_password`] →
//! [`ClientFirst::client_final`] → [`verify_server_final`]. Pure: no I/O.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

pub use crate::xmpp::sasl::ScramHash;

/// Why a SCRAM exchange failed on the client side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The server-first-message does not follow RFC 5802 §7 (names the attribute).
    #[error("malformed server-first-message: {0}")]
    BadServerFirst(&'static str),
    /// The server nonce does not start with ours (RFC 5802 §5.1), or adds nothing.
    #[error("server nonce does not extend the client nonce")]
    BadNonce,
    /// The server-final-message carries `e=` (RFC 5802 §7 server-error).
    #[error("server error: {0}")]
    ServerError(String),
    /// The server-final-message is malformed or its signature is wrong: the server does not
    /// know the password (RFC 5802 §5).
    #[error("bad server signature")]
    BadServerSignature,
}

/// What the client sent first; kept to compute the proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    hash: ScramHash,
    cnonce: String,
    bare: String,
}

/// The parsed server-first-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst {
    /// The message as received (it is part of AuthMessage).
    pub raw: String,
    /// The combined nonce.
    pub nonce: String,
    /// The decoded salt.
    pub salt: Vec<u8>,
    /// The iteration count.
    pub iterations: u32,
}

/// Most iterations accepted from a server: a bound on the client's CPU per login.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// `saslname` escaping (RFC 5802 §5.1): `=` → `=3D`, `,` → `=2C`.
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

impl ClientFirst {
    /// Starts an exchange for `username` with client nonce `cnonce` (printable ASCII without
    /// `,`; see [`new_nonce`]).
    pub fn new(hash: ScramHash, username: &str, cnonce: &str) -> ClientFirst {
        ClientFirst {
            hash,
            cnonce: cnonce.to_string(),
            bare: format!("n={},r={cnonce}", escape_name(username)),
        }
    }

    /// The client-first-message: gs2 header `n,,` then the bare message.
    pub fn message(&self) -> String {
        format!("n,,{}", self.bare)
    }

    /// The client nonce.
    pub fn nonce(&self) -> &str {
        &self.cnonce
    }

    /// The hash of the mechanism.
    pub fn hash(&self) -> ScramHash {
        self.hash
    }

    /// The client-final-message for `server` with `salted` = Hi(password, salt, i), and the
    /// ServerSignature the server must prove in its final message.
    pub fn client_final(&self, server: &ServerFirst, salted: &[u8]) -> (String, Vec<u8>) {
        let h = self.hash;
        let client_key = hmac(h, salted, b"Client Key");
        let stored_key = digest(h, &client_key);
        // c= is base64("n,,"): no channel binding, no authzid.
        let without_proof = format!("c=biws,r={}", server.nonce);
        let auth_message = format!("{},{},{without_proof}", self.bare, server.raw);
        let signature = hmac(h, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(h, salted, b"Server Key");
        let server_signature = hmac(h, &server_key, auth_message.as_bytes());
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            server_signature,
        )
    }
}

/// A fresh client nonce: 18 random bytes, base64 (no `,`).
pub fn new_nonce() -> String {
    use rand::RngCore;
    let mut b = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut b);
    B64.encode(b)
}

/// Parses the server-first-message `r=…,s=…,i=…` (extensions after `i` are ignored; a
/// mandatory extension `m=` is refused) and checks its nonce against `first`.
pub fn parse_server_first(first: &ClientFirst, msg: &[u8]) -> Result<ServerFirst, ScramError> {
    let raw = std::str::from_utf8(msg).map_err(|_| ScramError::BadServerFirst("not UTF-8"))?;
    let mut parts = raw.split(',');
    let mut next = |key: &'static str| {
        parts
            .next()
            .and_then(|p| p.strip_prefix(key))
            .ok_or(ScramError::BadServerFirst(key))
    };
    if raw.starts_with("m=") {
        return Err(ScramError::BadServerFirst("m="));
    }
    let nonce = next("r=")?;
    let salt = next("s=")?;
    let iterations = next("i=")?;
    if !nonce.starts_with(&first.cnonce) || nonce.len() == first.cnonce.len() {
        return Err(ScramError::BadNonce);
    }
    let salt = B64
        .decode(salt)
        .map_err(|_| ScramError::BadServerFirst("s="))?;
    let iterations: u32 = iterations
        .parse()
        .ok()
        .filter(|i| (1..=MAX_ITERATIONS).contains(i))
        .ok_or(ScramError::BadServerFirst("i="))?;
    Ok(ServerFirst {
        raw: raw.to_string(),
        nonce: nonce.to_string(),
        salt,
        iterations,
    })
}

/// SaltedPassword = Hi(password, salt, i) (PBKDF2 with HMAC of `hash`, one block).
pub fn salted_password(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    hash.salted_password(password, salt, iterations)
}

/// Checks the server-final-message `v=…` against the expected ServerSignature.
pub fn verify_server_final(msg: &[u8], expected: &[u8]) -> Result<(), ScramError> {
    let text = std::str::from_utf8(msg).map_err(|_| ScramError::BadServerSignature)?;
    if let Some(e) = text.strip_prefix("e=") {
        return Err(ScramError::ServerError(e.to_string()));
    }
    let v = text
        .split(',')
        .next()
        .and_then(|p| p.strip_prefix("v="))
        .and_then(|v| B64.decode(v).ok())
        .ok_or(ScramError::BadServerSignature)?;
    if v == expected {
        Ok(())
    } else {
        Err(ScramError::BadServerSignature)
    }
}

fn digest(h: ScramHash, data: &[u8]) -> Vec<u8> {
    match h {
        ScramHash::Sha1 => Sha1::digest(data).to_vec(),
        ScramHash::Sha256 => Sha256::digest(data).to_vec(),
    }
}

fn hmac(h: ScramHash, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn mac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length; the error arm cannot happen (and would fail closed).
        match <M as KeyInit>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match h {
        ScramHash::Sha1 => mac::<Hmac<Sha1>>(key, data),
        ScramHash::Sha256 => mac::<Hmac<Sha256>>(key, data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        hash: ScramHash,
        cnonce: &str,
        server_first: &str,
        client_final: &str,
        server_final: &str,
    ) {
        let first = ClientFirst::new(hash, "user", cnonce);
        assert_eq!(first.message(), format!("n,,n=user,r={cnonce}"));
        let sf = parse_server_first(&first, server_first.as_bytes()).unwrap();
        assert_eq!(sf.iterations, 4096);
        let salted = salted_password(hash, "pencil", &sf.salt, sf.iterations);
        let (fin, sig) = first.client_final(&sf, &salted);
        assert_eq!(fin, client_final);
        verify_server_final(server_final.as_bytes(), &sig).unwrap();
        assert_eq!(
            verify_server_final(b"v=AAAA", &sig),
            Err(ScramError::BadServerSignature)
        );
    }

    #[test]
    fn rfc5802_sha1_example() {
        // RFC 5802 §5.
        run(
            ScramHash::Sha1,
            "fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        );
    }

    #[test]
    fn rfc7677_sha256_example() {
        // RFC 7677 §3.
        run(
            ScramHash::Sha256,
            "rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        );
    }

    #[test]
    fn bad_server_messages_are_refused() {
        let first = ClientFirst::new(ScramHash::Sha256, "a=b,c", "abc");
        assert_eq!(first.message(), "n,,n=a=3Db=2Cc,r=abc");
        for (msg, err) in [
            ("r=xyz1,s=AAAA,i=4096", ScramError::BadNonce),
            ("r=abc,s=AAAA,i=4096", ScramError::BadNonce),
            ("r=abc1,s=%%%,i=4096", ScramError::BadServerFirst("s=")),
            ("r=abc1,s=AAAA,i=0", ScramError::BadServerFirst("i=")),
            ("r=abc1,s=AAAA", ScramError::BadServerFirst("i=")),
            ("m=x,r=abc1,s=AAAA,i=1", ScramError::BadServerFirst("m=")),
        ] {
            assert_eq!(
                parse_server_first(&first, msg.as_bytes()),
                Err(err),
                "{msg}"
            );
        }
        assert_eq!(
            verify_server_final(b"e=invalid-proof", b""),
            Err(ScramError::ServerError("invalid-proof".into()))
        );
        assert_eq!(new_nonce().len(), 24);
        assert!(!new_nonce().contains(','));
    }
}
