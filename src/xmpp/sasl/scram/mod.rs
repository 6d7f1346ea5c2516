//! SCRAM-SHA-1 and SCRAM-SHA-256: RFC 5802 (SCRAM, §2.2 notation, §3 algorithm, §5
//! exchange, §7 message syntax, §9 security) and RFC 7677 §3 (SHA-256).
//!
//! One implementation of the mechanism's mathematics, used by both sides:
//! - this module: the hash of a mechanism ([`ScramHash`]: `H`, `HMAC`, `Hi`), the keys of
//!   RFC 5802 §3 ([`client_key`], [`stored_key`], [`server_key`], [`signature`],
//!   [`auth_message`], [`xor`]), `saslname` escaping (§5.1) and the `printable` nonce rule (§7);
//! - [`server`]: the server exchange (what a node runs for `<auth/>`), with the stored
//!   [`ScramCredentials`];
//! - [`client`]: the client exchange (used by the load generator, the benchmarks and the tests),
//!   split so that SaltedPassword can be computed off the I/O thread and cached.
//!
//! Channel binding is not offered (no -PLUS mechanism) and no SASLprep (RFC 4013) is applied
//! to usernames or passwords, on either side.

pub mod client;
pub mod server;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::Mechanism;

pub use server::{
    new_server_nonce, parse_client_first, ClientFirst, ScramCredentials, ScramExchange, SALT_LEN,
    SERVER_NONCE_LEN,
};

/// The hash function of a SCRAM mechanism; stored beside credentials so they match the
/// mechanism they were derived for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ScramHash {
    /// SHA-1, for SCRAM-SHA-1 (RFC 5802).
    Sha1,
    /// SHA-256, for SCRAM-SHA-256 (RFC 7677).
    Sha256,
}

impl ScramHash {
    /// The SASL mechanism that uses this hash.
    pub fn mechanism(self) -> Mechanism {
        match self {
            ScramHash::Sha1 => Mechanism::ScramSha1,
            ScramHash::Sha256 => Mechanism::ScramSha256,
        }
    }

    /// Output length of the hash in bytes (20 or 32): the length of keys and proofs.
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    /// H(data) (RFC 5802 §2.2).
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data) (RFC 5802 §2.2).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => mac::<Hmac<Sha1>>(key, data),
            ScramHash::Sha256 => mac::<Hmac<Sha256>>(key, data),
        }
    }

    /// Hi(password, salt, i): PBKDF2 with HMAC of this hash, one output block (RFC 5802 §2.2).
    /// This is SaltedPassword, the expensive step a client may cache (§5.1).
    pub fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.output_len()];
        match self {
            ScramHash::Sha1 => {
                pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut out)
            }
            ScramHash::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out)
            }
        }
        out
    }
}

/// HMAC accepts keys of every length, so the error arm cannot happen; if it ever did, the
/// empty result would fail every comparison (fail closed) rather than panic.
fn mac<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    match <M as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// ClientKey = HMAC(SaltedPassword, "Client Key") (RFC 5802 §3).
pub fn client_key(hash: ScramHash, salted: &[u8]) -> Vec<u8> {
    hash.hmac(salted, b"Client Key")
}

/// StoredKey = H(ClientKey) (RFC 5802 §3): what the server keeps to check proofs.
pub fn stored_key(hash: ScramHash, client_key: &[u8]) -> Vec<u8> {
    hash.digest(client_key)
}

/// ServerKey = HMAC(SaltedPassword, "Server Key") (RFC 5802 §3): what signs the
/// server-final-message.
pub fn server_key(hash: ScramHash, salted: &[u8]) -> Vec<u8> {
    hash.hmac(salted, b"Server Key")
}

/// ClientSignature = HMAC(StoredKey, AuthMessage) and ServerSignature = HMAC(ServerKey,
/// AuthMessage) (RFC 5802 §3): one function, keyed with StoredKey or ServerKey.
pub fn signature(hash: ScramHash, key: &[u8], auth_message: &str) -> Vec<u8> {
    hash.hmac(key, auth_message.as_bytes())
}

/// AuthMessage = client-first-message-bare + "," + server-first-message + "," +
/// client-final-message-without-proof (RFC 5802 §3).
pub fn auth_message(client_first_bare: &str, server_first: &str, without_proof: &str) -> String {
    format!("{client_first_bare},{server_first},{without_proof}")
}

/// `a XOR b`, byte by byte: ClientProof = ClientKey XOR ClientSignature, and the server
/// recovers ClientKey = ClientProof XOR ClientSignature (RFC 5802 §3).
pub fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// Compares two byte strings in time that depends only on their lengths (which are public).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Escapes a name for `saslname` (RFC 5802 §5.1): `=` becomes `=3D` and `,` becomes `=2C`.
pub fn escape_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// Why a `saslname` does not decode (RFC 5802 §5.1), for the side that reads one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslnameError {
    /// The name is empty.
    Empty,
    /// A `=` is not followed by `2C` or `3D`.
    BadEscape,
    /// The decoded name contains NUL.
    Nul,
}

/// Decodes a `saslname` (RFC 5802 §5.1): non-empty, `=` only as `=2C` or `=3D`, no NUL.
pub fn decode_saslname(value: &str) -> Result<String, SaslnameError> {
    if value.is_empty() {
        return Err(SaslnameError::Empty);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some((before, after)) = rest.split_once('=') {
        out.push_str(before);
        if let Some(r) = after.strip_prefix("2C") {
            out.push(',');
            rest = r;
        } else if let Some(r) = after.strip_prefix("3D") {
            out.push('=');
            rest = r;
        } else {
            return Err(SaslnameError::BadEscape);
        }
    }
    out.push_str(rest);
    if out.contains('\0') {
        return Err(SaslnameError::Nul);
    }
    Ok(out)
}

/// A nonce is `printable` (RFC 5802 §7): %x21-2B / %x2D-7E, that is visible ASCII without
/// `,`. Emptiness is checked apart (`c-nonce` is `printable`+... one or more).
pub fn is_printable(nonce: &str) -> bool {
    nonce
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

#[cfg(test)]
mod tests;
