//! SCRAM client: RFC 5802 §3 (algorithm), §5 (exchange), §7 (message syntax), with SHA-1
//! (RFC 5802) and SHA-256 (RFC 7677). No channel binding (gs2 header `n,,`), no SASLprep
//! (RFC 4013): names and passwords are used as given, as the server side does.
//!
//! The exchange is split so that the expensive step, Hi() (PBKDF2), can run off the I/O
//! thread and be cached per (password, salt, iterations) as RFC 5802 §5.1 allows:
//! [`ClientFirst::new`] → [`parse_server_first`] → [`salted_password`] →
//! [`ClientFirst::client_final`] → [`verify_server_final`]. Pure: no I/O. The load generator,
//! the benchmarks and the integration tests log in with it.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::{
    auth_message, client_key, escape_saslname, is_printable, server_key, signature, stored_key,
    xor, ScramHash,
};

/// Why a SCRAM exchange failed on the client side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The server-first-message does not follow RFC 5802 §7 (names the attribute).
    #[error("malformed server-first-message: {0}")]
    BadServerFirst(&'static str),
    /// The server nonce does not start with ours (RFC 5802 §5.1), adds nothing, or is not
    /// `printable` (§7).
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

/// Random bytes in a client nonce from [`new_nonce`] (24 characters once encoded).
pub const CLIENT_NONCE_LEN: usize = 18;

/// The gs2 header of every client-first-message: no channel binding, no authzid.
const GS2_HEADER: &str = "n,,";

/// `c=` of the client-final-message: base64 of [`GS2_HEADER`] (RFC 5802 §7 `channel-binding`).
const CHANNEL_BINDING: &str = "biws";

impl ClientFirst {
    /// Starts an exchange for `username` with client nonce `cnonce` (printable ASCII without
    /// `,`; see [`new_nonce`]).
    pub fn new(hash: ScramHash, username: &str, cnonce: &str) -> ClientFirst {
        ClientFirst {
            hash,
            cnonce: cnonce.to_string(),
            bare: format!("n={},r={cnonce}", escape_saslname(username)),
        }
    }

    /// The client-first-message: gs2 header `n,,` then the bare message.
    pub fn message(&self) -> String {
        format!("{GS2_HEADER}{}", self.bare)
    }

    /// The client-first-message-bare (the first part of AuthMessage).
    pub fn bare(&self) -> &str {
        &self.bare
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
        let client_key = client_key(h, salted);
        let without_proof = format!("c={CHANNEL_BINDING},r={}", server.nonce);
        let auth_message = auth_message(&self.bare, &server.raw, &without_proof);
        let client_signature = signature(h, &stored_key(h, &client_key), &auth_message);
        let proof = xor(&client_key, &client_signature);
        let server_signature = signature(h, &server_key(h, salted), &auth_message);
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            server_signature,
        )
    }
}

/// A fresh client nonce: [`CLIENT_NONCE_LEN`] random bytes, base64 (printable, no `,`).
pub fn new_nonce() -> String {
    use rand::RngCore;
    let mut b = [0u8; CLIENT_NONCE_LEN];
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
    if !nonce.starts_with(&first.cnonce)
        || nonce.len() == first.cnonce.len()
        || !is_printable(nonce)
    {
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

/// SaltedPassword = Hi(password, salt, i) (PBKDF2 with HMAC of `hash`, one block); the
/// result may be cached per (password, salt, iterations) (RFC 5802 §5.1).
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
