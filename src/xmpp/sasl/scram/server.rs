//! SCRAM-SHA-1 and SCRAM-SHA-256, server side: RFC 5802 §3 (algorithm), §5 (exchange),
//! §7 (message syntax), §9 (security), and RFC 7677 §3 (SHA-256); the mathematics is the
//! one shared with the client, in [`super`].
//!
//! The exchange is a lifecycle in types: [`parse_client_first`] yields a [`ClientFirst`],
//! [`ScramExchange::new`] binds it to the stored [`ScramCredentials`] and a server nonce and
//! produces the server-first-message, and [`ScramExchange::finish`] consumes the exchange,
//! checks the client-final-message and returns the server-final-message. Channel binding is
//! not offered (no -PLUS mechanism), so the gs2 flag must be `n` or `y`. No SASLprep
//! (RFC 4013) is applied to usernames or passwords.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;

use super::{
    auth_message, client_key, ct_eq, decode_saslname as decode, is_printable, server_key,
    signature, stored_key, xor, SaslnameError, ScramHash,
};
use crate::xmpp::sasl::SaslError;

/// Length of the random salt chosen by [`ScramCredentials::generate`].
pub const SALT_LEN: usize = 16;

/// Random bytes in a server nonce from [`new_server_nonce`] (32 characters once encoded).
pub const SERVER_NONCE_LEN: usize = 24;

/// What the server stores per user and hash (RFC 5802 §3): enough to verify a proof and sign
/// the server-final-message, not enough to log in as the user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScramCredentials {
    /// The salt given to PBKDF2.
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count.
    pub iterations: u32,
    /// StoredKey = H(HMAC(SaltedPassword, "Client Key")).
    pub stored_key: Vec<u8>,
    /// ServerKey = HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl ScramCredentials {
    /// Derives the stored credentials from a password (RFC 5802 §3): SaltedPassword =
    /// Hi(password, salt, iterations), then StoredKey and ServerKey from it.
    pub fn derive(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hash.salted_password(password, salt, iterations);
        ScramCredentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: stored_key(hash, &client_key(hash, &salted)),
            server_key: server_key(hash, &salted),
        }
    }

    /// Derives credentials with a fresh random salt of [`SALT_LEN`] bytes, for registration
    /// and password changes. RFC 5802 §9 and RFC 7677 §4 ask for at least 4096 iterations.
    pub fn generate(hash: ScramHash, password: &str, iterations: u32) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::derive(hash, password, &salt, iterations)
    }

    /// Checks a clear-text password (from PLAIN) against these credentials by re-deriving
    /// StoredKey and comparing in constant time.
    pub fn verify_password(&self, hash: ScramHash, password: &str) -> bool {
        let derived = Self::derive(hash, password, &self.salt, self.iterations);
        ct_eq(&derived.stored_key, &self.stored_key)
    }
}

/// A parsed client-first-message (RFC 5802 §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The gs2-header exactly as sent, including its trailing comma (e.g. `n,,`); the
    /// client-final `c=` attribute must be its base64.
    pub gs2_header: String,
    /// The authorization identity from `a=`, decoded, if present.
    pub authzid: Option<String>,
    /// The username from `n=`, with `=2C` and `=3D` decoded to `,` and `=`.
    pub username: String,
    /// The client's nonce from `r=`.
    pub client_nonce: String,
    /// client-first-message-bare exactly as sent: the first part of the AuthMessage.
    pub bare: String,
}

fn malformed(msg: impl Into<String>) -> SaslError {
    SaslError::MalformedRequest(msg.into())
}

/// Parses a client-first-message (RFC 5802 §5.1, §7):
/// `gs2-cbind-flag "," [authzid] "," [reserved-mext ","] username "," nonce ["," extensions]`.
///
/// The gs2 flag must be `n` or `y`. `p=` requests channel binding, which we do not offer,
/// and fails with not-authorized; `y` is accepted only because no -PLUS mechanism is
/// advertised (RFC 5802 §6: were one added, `y` would have to fail as a downgrade).
/// `m=` fails with malformed-request, as do an empty or badly escaped username or authzid
/// and an empty or non-printable nonce. Unknown extensions are ignored. Non-UTF-8 input
/// fails with incorrect-encoding.
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, SaslError> {
    let text = std::str::from_utf8(msg).map_err(|_| {
        SaslError::IncorrectEncoding("client-first-message is not valid UTF-8".to_string())
    })?;
    let (flag, rest) = text
        .split_once(',')
        .ok_or_else(|| malformed("client-first-message lacks the gs2 header"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => {
            return Err(SaslError::NotAuthorized(
                "gs2 flag p= requests channel binding, which is not supported".to_string(),
            ))
        }
        _ => return Err(malformed("gs2 channel-binding flag must be n, y or p=")),
    }
    let (authz_field, bare) = rest
        .split_once(',')
        .ok_or_else(|| malformed("gs2 header lacks the authzid field"))?;
    let authzid = if authz_field.is_empty() {
        None
    } else {
        let value = authz_field
            .strip_prefix("a=")
            .ok_or_else(|| malformed("gs2 header authzid must start with a="))?;
        Some(decode_saslname(value, "gs2 header authzid a=")?)
    };

    let mut attrs = bare.split(',');
    let first = attrs.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(malformed(
            "client-first-message carries the reserved mandatory extension m=",
        ));
    }
    let username = first
        .strip_prefix("n=")
        .ok_or_else(|| malformed("client-first-message-bare must start with username n="))?;
    let username = decode_saslname(username, "username n=")?;
    let client_nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or_else(|| malformed("client-first-message-bare lacks nonce r= after username"))?;
    check_nonce(client_nonce, "client nonce r=")?;
    for ext in attrs {
        check_extension(ext, "client-first-message")?;
    }

    Ok(ClientFirst {
        gs2_header: format!("{flag},{authz_field},"),
        authzid,
        username,
        client_nonce: client_nonce.to_string(),
        bare: bare.to_string(),
    })
}

/// Decodes a `saslname` (RFC 5802 §5.1), naming `field` in the error.
fn decode_saslname(value: &str, field: &str) -> Result<String, SaslError> {
    decode(value).map_err(|e| match e {
        SaslnameError::Empty => malformed(format!("{field} is empty")),
        SaslnameError::BadEscape => malformed(format!("{field} has '=' not followed by 2C or 3D")),
        SaslnameError::Nul => malformed(format!("{field} contains NUL")),
    })
}

/// A nonce is non-empty `printable` (RFC 5802 §7): %x21-2B / %x2D-7E.
fn check_nonce(nonce: &str, field: &str) -> Result<(), SaslError> {
    if nonce.is_empty() {
        return Err(malformed(format!("{field} is empty")));
    }
    if !is_printable(nonce) {
        return Err(malformed(format!(
            "{field} contains a non-printable character"
        )));
    }
    Ok(())
}

/// An extension is an `attr-val` (ALPHA "=" value) whose attribute letter is not one SCRAM
/// already defines (which would be a duplicate or out of order, RFC 5802 §7).
fn check_extension(ext: &str, message: &str) -> Result<(), SaslError> {
    let mut chars = ext.chars();
    let name = chars.next();
    let valid = matches!(name, Some(c) if c.is_ascii_alphabetic())
        && chars.next() == Some('=')
        && !ext.contains('\0');
    if !valid {
        return Err(malformed(format!(
            "{message} has an attribute that is not of the form x=value"
        )));
    }
    if let Some(c) = name.filter(|c| "acimnprsv".contains(*c)) {
        return Err(malformed(format!(
            "{message} has attribute {c}= out of order or repeated"
        )));
    }
    Ok(())
}

/// One SCRAM exchange after the client-first-message, holding what the final check needs.
/// [`ScramExchange::finish`] consumes it (and it is not `Clone`), so a proof can be tried
/// only once. `Debug` leaves out the stored keys.
pub struct ScramExchange {
    hash: ScramHash,
    first: ClientFirst,
    creds: ScramCredentials,
    nonce: String,
    server_first: String,
}

impl std::fmt::Debug for ScramExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramExchange")
            .field("hash", &self.hash)
            .field("first", &self.first)
            .field("server_first", &self.server_first)
            .finish_non_exhaustive()
    }
}

impl ScramExchange {
    /// Starts the exchange: the combined nonce is the client nonce followed by
    /// `server_nonce`, which must be printable without `,` (use [`new_server_nonce`]).
    /// `creds.iterations` must be positive for clients to accept the server-first-message.
    ///
    /// For an unknown user, pass credentials derived from a random password (and a salt
    /// stable per username) so the exchange fails only at the proof, revealing nothing.
    pub fn new(
        hash: ScramHash,
        first: ClientFirst,
        creds: ScramCredentials,
        server_nonce: &str,
    ) -> Self {
        let nonce = format!("{}{}", first.client_nonce, server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&creds.salt),
            creds.iterations
        );
        ScramExchange {
            hash,
            first,
            creds,
            nonce,
            server_first,
        }
    }

    /// The server-first-message `r=<cnonce+snonce>,s=<base64 salt>,i=<iterations>`, to send
    /// (base64-encoded by the caller) in a `<challenge/>`.
    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    /// The hash this exchange runs with.
    pub fn hash(&self) -> ScramHash {
        self.hash
    }

    /// The parsed client-first-message.
    pub fn client_first(&self) -> &ClientFirst {
        &self.first
    }

    /// The decoded username being authenticated.
    pub fn username(&self) -> &str {
        &self.first.username
    }

    /// The decoded authorization identity, if the client sent one.
    pub fn authzid(&self) -> Option<&str> {
        self.first.authzid.as_deref()
    }

    /// Checks the client-final-message `c=..,r=..[,ext..],p=..` (RFC 5802 §5.1, §7) and
    /// returns the server-final-message `v=<base64 ServerSignature>`, for `<success/>`.
    ///
    /// A wrong channel binding, nonce or proof fails with not-authorized; a syntax error
    /// (missing or misplaced attribute, bad base64, proof of the wrong length) with
    /// malformed-request; non-UTF-8 with incorrect-encoding.
    pub fn finish(self, client_final: &[u8]) -> Result<String, SaslError> {
        let text = std::str::from_utf8(client_final).map_err(|_| {
            SaslError::IncorrectEncoding("client-final-message is not valid UTF-8".to_string())
        })?;
        let (without_proof, proof_attr) = text
            .rsplit_once(',')
            .ok_or_else(|| malformed("client-final-message lacks proof p="))?;
        let proof_b64 = proof_attr
            .strip_prefix("p=")
            .ok_or_else(|| malformed("client-final-message must end with proof p="))?;
        let mut attrs = without_proof.split(',');
        let cbind = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or_else(|| malformed("client-final-message must start with channel binding c="))?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or_else(|| malformed("client-final-message lacks nonce r= after c="))?;
        for ext in attrs {
            check_extension(ext, "client-final-message")?;
        }

        let cbind = B64
            .decode(cbind)
            .map_err(|_| malformed("channel binding c= is not valid base64"))?;
        if cbind != self.first.gs2_header.as_bytes() {
            return Err(SaslError::NotAuthorized(
                "channel binding c= does not match the gs2 header".to_string(),
            ));
        }
        if nonce != self.nonce {
            return Err(SaslError::NotAuthorized(
                "nonce r= does not match the nonce of this exchange".to_string(),
            ));
        }
        let proof = B64
            .decode(proof_b64)
            .map_err(|_| malformed("proof p= is not valid base64"))?;
        let len = self.hash.output_len();
        if proof.len() != len {
            return Err(malformed(format!(
                "proof p= is {} bytes; {} needs {len}",
                proof.len(),
                self.hash.mechanism()
            )));
        }

        let auth_message = auth_message(&self.first.bare, &self.server_first, without_proof);
        let client_signature = signature(self.hash, &self.creds.stored_key, &auth_message);
        let client_key = xor(&proof, &client_signature);
        if !ct_eq(&stored_key(self.hash, &client_key), &self.creds.stored_key) {
            return Err(SaslError::NotAuthorized(
                "proof p= does not match the credentials".to_string(),
            ));
        }
        let server_signature = signature(self.hash, &self.creds.server_key, &auth_message);
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// A fresh server nonce: [`SERVER_NONCE_LEN`] random bytes in base64, which is printable
/// and never contains `,`.
pub fn new_server_nonce() -> String {
    let mut bytes = [0u8; SERVER_NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut bytes);
    B64.encode(bytes)
}

#[cfg(test)]
mod tests;
