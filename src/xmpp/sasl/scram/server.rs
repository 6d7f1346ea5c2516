//! SCRAM-SHA-1 and SCRAM-SHA-256, server side: RFC 5802 §3 (algorithm), §5 (exchange),
//! §7 (message syntax), §9 (security), and RFC 7677 §3 (SHA-256).
//!
//! The exchange is a lifecycle in types: [`parse_client_first`] yields a [`ClientFirst`],
//! [`ScramExchange::new`] binds it to the stored [`ScramCredentials`] and a server nonce and
//! produces the server-first-message, and [`ScramExchange::finish`] consumes the exchange,
//! checks the client-final-message and returns the server-final-message. Channel binding is
//! not offered (no -PLUS mechanism), so the gs2 flag must be `n` or `y`. No SASLprep
//! (RFC 4013) is applied to usernames or passwords.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{Mechanism, SaslError};

/// Length of the random salt chosen by [`ScramCredentials::generate`].
pub const SALT_LEN: usize = 16;

/// Random bytes in a server nonce from [`new_server_nonce`] (32 characters once encoded).
pub const SERVER_NONCE_LEN: usize = 24;

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

    /// H(data).
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data).
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => mac::<Hmac<Sha1>>(key, data),
            ScramHash::Sha256 => mac::<Hmac<Sha256>>(key, data),
        }
    }

    /// Hi(password, salt, i): PBKDF2 with HMAC of this hash, one output block (RFC 5802 §2.2).
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

/// Compares two byte strings in time that depends only on their lengths (which are public).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

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
        let client_key = hash.hmac(&salted, b"Client Key");
        ScramCredentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
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

/// Decodes a `saslname` (RFC 5802 §5.1): non-empty, `=` only as `=2C` or `=3D`, no NUL.
fn decode_saslname(value: &str, field: &str) -> Result<String, SaslError> {
    if value.is_empty() {
        return Err(malformed(format!("{field} is empty")));
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
            return Err(malformed(format!(
                "{field} has '=' not followed by 2C or 3D"
            )));
        }
    }
    out.push_str(rest);
    if out.contains('\0') {
        return Err(malformed(format!("{field} contains NUL")));
    }
    Ok(out)
}

/// A nonce is non-empty `printable` (RFC 5802 §7): %x21-2B / %x2D-7E.
fn check_nonce(nonce: &str, field: &str) -> Result<(), SaslError> {
    if nonce.is_empty() {
        return Err(malformed(format!("{field} is empty")));
    }
    if !nonce
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
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

        let auth_message = format!("{},{},{without_proof}", self.first.bare, self.server_first);
        let client_signature = self
            .hash
            .hmac(&self.creds.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !ct_eq(&self.hash.digest(&client_key), &self.creds.stored_key) {
            return Err(SaslError::NotAuthorized(
                "proof p= does not match the credentials".to_string(),
            ));
        }
        let server_signature = self
            .hash
            .hmac(&self.creds.server_key, auth_message.as_bytes());
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
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const SHA1_FIRST: &str = "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL";
    const SHA1_SNONCE: &str = "3rfcNHYJY1ZVvWVs7j";
    const SHA1_SERVER_FIRST: &str =
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    const SHA1_FINAL: &str =
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    const SHA1_SERVER_FINAL: &str = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";

    const SHA256_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SHA256_SNONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SHA256_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const SHA256_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SHA256_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn b64(s: &str) -> Vec<u8> {
        B64.decode(s).expect("test base64")
    }

    fn sha1_creds() -> ScramCredentials {
        ScramCredentials::derive(ScramHash::Sha1, "pencil", &b64("QSXCR+Q6sek8bf92"), 4096)
    }

    fn sha256_creds() -> ScramCredentials {
        ScramCredentials::derive(
            ScramHash::Sha256,
            "pencil",
            &b64("W22ZaJ0SNY7soEsUEjb6gQ=="),
            4096,
        )
    }

    fn sha1_exchange() -> ScramExchange {
        let first = parse_client_first(SHA1_FIRST.as_bytes()).expect("RFC client-first");
        ScramExchange::new(ScramHash::Sha1, first, sha1_creds(), SHA1_SNONCE)
    }

    fn malformed(msg: &str) -> SaslError {
        SaslError::MalformedRequest(msg.to_string())
    }

    fn not_authorized(msg: &str) -> SaslError {
        SaslError::NotAuthorized(msg.to_string())
    }

    /// The client side of RFC 5802 §3, to build client-final-messages for cases the RFC
    /// examples do not cover.
    fn client_final(
        hash: ScramHash,
        password: &str,
        exchange: &ScramExchange,
        without_proof: &str,
    ) -> String {
        let creds = &exchange.creds;
        let salted = hash.salted_password(password, &creds.salt, creds.iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored_key = hash.digest(&client_key);
        let auth_message = format!(
            "{},{},{without_proof}",
            exchange.first.bare, exchange.server_first
        );
        let signature = hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn rfc5802_sha1_example() {
        let first = parse_client_first(SHA1_FIRST.as_bytes()).expect("valid");
        assert_eq!(
            first,
            ClientFirst {
                gs2_header: "n,,".into(),
                authzid: None,
                username: "user".into(),
                client_nonce: "fyko+d2lbbFgONRv9qkxdawL".into(),
                bare: "n=user,r=fyko+d2lbbFgONRv9qkxdawL".into(),
            }
        );
        let exchange = ScramExchange::new(ScramHash::Sha1, first, sha1_creds(), SHA1_SNONCE);
        assert_eq!(exchange.server_first(), SHA1_SERVER_FIRST);
        assert_eq!(exchange.username(), "user");
        assert_eq!(exchange.authzid(), None);
        assert_eq!(exchange.hash(), ScramHash::Sha1);
        assert_eq!(
            exchange.finish(SHA1_FINAL.as_bytes()),
            Ok(SHA1_SERVER_FINAL.to_string())
        );
    }

    #[test]
    fn rfc7677_sha256_example() {
        let first = parse_client_first(SHA256_FIRST.as_bytes()).expect("valid");
        assert_eq!(first.client_nonce, "rOprNGfwEbeRWgbNEkqO");
        let exchange = ScramExchange::new(ScramHash::Sha256, first, sha256_creds(), SHA256_SNONCE);
        assert_eq!(exchange.server_first(), SHA256_SERVER_FIRST);
        assert_eq!(
            exchange.finish(SHA256_FINAL.as_bytes()),
            Ok(SHA256_SERVER_FINAL.to_string())
        );
    }

    #[test]
    fn credentials_have_hash_sized_keys() {
        let c1 = sha1_creds();
        assert_eq!((c1.stored_key.len(), c1.server_key.len()), (20, 20));
        assert_eq!(c1.iterations, 4096);
        assert_eq!(c1.salt, b64("QSXCR+Q6sek8bf92"));
        let c256 = sha256_creds();
        assert_eq!((c256.stored_key.len(), c256.server_key.len()), (32, 32));
    }

    #[test]
    fn verify_password_accepts_only_the_password() {
        let creds = sha1_creds();
        assert!(creds.verify_password(ScramHash::Sha1, "pencil"));
        assert!(!creds.verify_password(ScramHash::Sha1, "pencil "));
        assert!(!creds.verify_password(ScramHash::Sha1, "Pencil"));
        assert!(!creds.verify_password(ScramHash::Sha1, ""));
        // SHA-256 credentials never verify under SHA-1 (key lengths differ).
        assert!(!sha256_creds().verify_password(ScramHash::Sha1, "pencil"));
        assert!(sha256_creds().verify_password(ScramHash::Sha256, "pencil"));
    }

    #[test]
    fn generate_uses_a_fresh_salt() {
        let a = ScramCredentials::generate(ScramHash::Sha256, "secret", 16);
        let b = ScramCredentials::generate(ScramHash::Sha256, "secret", 16);
        assert_eq!(a.salt.len(), SALT_LEN);
        assert_eq!(a.iterations, 16);
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.stored_key, b.stored_key);
        assert!(a.verify_password(ScramHash::Sha256, "secret"));
        assert!(!a.verify_password(ScramHash::Sha256, "Secret"));
        assert_eq!(
            ScramCredentials::derive(ScramHash::Sha256, "secret", &a.salt, 16),
            a
        );
    }

    #[test]
    fn generated_credentials_complete_an_exchange() {
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            let creds = ScramCredentials::generate(hash, "hunter2", 32);
            let first = parse_client_first(b"n,,n=juliet,r=abcdefgh").expect("valid");
            let snonce = new_server_nonce();
            let exchange = ScramExchange::new(hash, first, creds, &snonce);
            let msg = client_final(
                hash,
                "hunter2",
                &exchange,
                &format!("c=biws,r=abcdefgh{snonce}"),
            );
            let v = exchange.finish(msg.as_bytes()).expect("valid proof");
            assert!(v.starts_with("v="), "{v}");
        }
    }

    #[test]
    fn wrong_proof_is_not_authorized() {
        // The RFC proof with one character changed (still valid base64 of 20 bytes).
        let msg = SHA1_FINAL.replace("p=v0X8", "p=w0X8");
        assert_eq!(
            sha1_exchange().finish(msg.as_bytes()),
            Err(not_authorized("proof p= does not match the credentials"))
        );
    }

    #[test]
    fn wrong_password_is_not_authorized() {
        let first = parse_client_first(SHA1_FIRST.as_bytes()).expect("valid");
        let creds =
            ScramCredentials::derive(ScramHash::Sha1, "pen", &b64("QSXCR+Q6sek8bf92"), 4096);
        let exchange = ScramExchange::new(ScramHash::Sha1, first, creds, SHA1_SNONCE);
        assert_eq!(
            exchange.finish(SHA1_FINAL.as_bytes()),
            Err(not_authorized("proof p= does not match the credentials"))
        );
    }

    #[test]
    fn credentials_of_the_other_hash_are_not_authorized() {
        let first = parse_client_first(SHA1_FIRST.as_bytes()).expect("valid");
        let exchange = ScramExchange::new(ScramHash::Sha1, first, sha256_creds(), SHA1_SNONCE);
        let msg = client_final(
            ScramHash::Sha1,
            "pencil",
            &exchange,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
        );
        assert_eq!(
            exchange.finish(msg.as_bytes()),
            Err(not_authorized("proof p= does not match the credentials"))
        );
    }

    #[test]
    fn wrong_nonce_is_not_authorized() {
        for nonce in [
            "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7J",
            "fyko+d2lbbFgONRv9qkxdawL",
            "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7jX",
            "",
        ] {
            let msg = format!("c=biws,r={nonce},p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=");
            assert_eq!(
                sha1_exchange().finish(msg.as_bytes()),
                Err(not_authorized(
                    "nonce r= does not match the nonce of this exchange"
                )),
                "{nonce}"
            );
        }
    }

    #[test]
    fn wrong_channel_binding_is_not_authorized() {
        // "eSws" is base64("y,,"), "cD10bHMtdW5pcXVlLCw=" is base64("p=tls-unique,,"), and
        // "" is empty: none equals base64("n,,") = "biws".
        for cb in ["eSws", "cD10bHMtdW5pcXVlLCw=", "", "bixhPXVzZXIs"] {
            let msg = SHA1_FINAL.replace("c=biws", &format!("c={cb}"));
            assert_eq!(
                sha1_exchange().finish(msg.as_bytes()),
                Err(not_authorized(
                    "channel binding c= does not match the gs2 header"
                )),
                "{cb}"
            );
        }
    }

    #[test]
    fn y_flag_and_authzid_bind_their_own_gs2_header() {
        let first = parse_client_first(b"y,a=admin=2C1,n=us=3Der=2Cx,r=abc,x=ext").expect("valid");
        assert_eq!(first.gs2_header, "y,a=admin=2C1,");
        assert_eq!(first.authzid.as_deref(), Some("admin,1"));
        assert_eq!(first.username, "us=er,x");
        assert_eq!(first.bare, "n=us=3Der=2Cx,r=abc,x=ext");
        let exchange = ScramExchange::new(ScramHash::Sha256, first, sha256_creds(), "SRV");
        assert_eq!(exchange.authzid(), Some("admin,1"));
        let cb = B64.encode("y,a=admin=2C1,");
        let msg = client_final(
            ScramHash::Sha256,
            "pencil",
            &exchange,
            &format!("c={cb},r=abcSRV,z=extension"),
        );
        let downgraded = client_final(ScramHash::Sha256, "pencil", &exchange, "c=biws,r=abcSRV");
        assert!(exchange.finish(msg.as_bytes()).is_ok());
        // "biws" (n,,) would be a downgrade of the header the client sent.
        let first = parse_client_first(b"y,a=admin=2C1,n=us=3Der=2Cx,r=abc,x=ext").expect("valid");
        let exchange = ScramExchange::new(ScramHash::Sha256, first, sha256_creds(), "SRV");
        assert_eq!(
            exchange.finish(downgraded.as_bytes()),
            Err(not_authorized(
                "channel binding c= does not match the gs2 header"
            ))
        );
    }

    #[test]
    fn channel_binding_request_is_not_authorized() {
        for msg in [
            "p=tls-unique,,n=user,r=abc",
            "p=tls-exporter,a=x,n=user,r=abc",
            "p=,,n=u,r=a",
        ] {
            assert_eq!(
                parse_client_first(msg.as_bytes()),
                Err(not_authorized(
                    "gs2 flag p= requests channel binding, which is not supported"
                )),
                "{msg}"
            );
        }
    }

    #[test]
    fn malformed_client_first_messages() {
        let cases: &[(&str, &str)] = &[
            ("", "client-first-message lacks the gs2 header"),
            ("n", "client-first-message lacks the gs2 header"),
            ("n,", "gs2 header lacks the authzid field"),
            (
                "x,,n=user,r=abc",
                "gs2 channel-binding flag must be n, y or p=",
            ),
            (
                "N,,n=user,r=abc",
                "gs2 channel-binding flag must be n, y or p=",
            ),
            (
                ",,n=user,r=abc",
                "gs2 channel-binding flag must be n, y or p=",
            ),
            (
                "n,b=x,n=user,r=abc",
                "gs2 header authzid must start with a=",
            ),
            ("n,a=,n=user,r=abc", "gs2 header authzid a= is empty"),
            (
                "n,a=x=2,n=user,r=abc",
                "gs2 header authzid a= has '=' not followed by 2C or 3D",
            ),
            (
                "n,,m=ext,n=user,r=abc",
                "client-first-message carries the reserved mandatory extension m=",
            ),
            (
                "n,,",
                "client-first-message-bare must start with username n=",
            ),
            (
                "n,,r=abc,n=user",
                "client-first-message-bare must start with username n=",
            ),
            ("n,,n=,r=abc", "username n= is empty"),
            (
                "n,,n=us=er,r=abc",
                "username n= has '=' not followed by 2C or 3D",
            ),
            (
                "n,,n=us=2c,r=abc",
                "username n= has '=' not followed by 2C or 3D",
            ),
            (
                "n,,n=user=,r=abc",
                "username n= has '=' not followed by 2C or 3D",
            ),
            ("n,,n=us\0er,r=abc", "username n= contains NUL"),
            (
                "n,,n=user",
                "client-first-message-bare lacks nonce r= after username",
            ),
            (
                "n,,n=user,",
                "client-first-message-bare lacks nonce r= after username",
            ),
            (
                "n,,n=user,x=abc",
                "client-first-message-bare lacks nonce r= after username",
            ),
            ("n,,n=user,r=", "client nonce r= is empty"),
            (
                "n,,n=user,r=ab c",
                "client nonce r= contains a non-printable character",
            ),
            (
                "n,,n=user,r=abé",
                "client nonce r= contains a non-printable character",
            ),
            (
                "n,,n=user,r=ab\x7f",
                "client nonce r= contains a non-printable character",
            ),
            (
                "n,,n=user,r=abc,",
                "client-first-message has an attribute that is not of the form x=value",
            ),
            (
                "n,,n=user,r=abc,foo=1",
                "client-first-message has an attribute that is not of the form x=value",
            ),
            (
                "n,,n=user,r=abc,1=1",
                "client-first-message has an attribute that is not of the form x=value",
            ),
            (
                "n,,n=user,r=abc,r=def",
                "client-first-message has attribute r= out of order or repeated",
            ),
            (
                "n,,n=user,r=abc,n=other",
                "client-first-message has attribute n= out of order or repeated",
            ),
        ];
        for (msg, expected) in cases {
            let got = parse_client_first(msg.as_bytes());
            assert_eq!(got, Err(malformed(expected)), "{msg:?}");
            assert_eq!(got.unwrap_err().condition(), "malformed-request");
        }
    }

    #[test]
    fn non_utf8_client_first_is_incorrect_encoding() {
        for msg in [
            &b"n,,n=us\xffer,r=abc"[..],
            b"\xc3",
            b"n,,n=user,r=\xed\xa0\x80",
        ] {
            assert_eq!(
                parse_client_first(msg),
                Err(SaslError::IncorrectEncoding(
                    "client-first-message is not valid UTF-8".into()
                ))
            );
        }
    }

    #[test]
    fn non_ascii_username_is_kept() {
        let first = parse_client_first("n,,n=jürgen=2C✓,r=abc".as_bytes()).expect("valid");
        assert_eq!(first.username, "jürgen,✓");
    }

    #[test]
    fn malformed_client_final_messages() {
        let proof = "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
        let nonce = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j";
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "client-final-message lacks proof p="),
            (proof.to_string(), "client-final-message lacks proof p="),
            (
                format!("c=biws,{nonce}"),
                "client-final-message must end with proof p=",
            ),
            (
                format!("c=biws,{proof},{nonce}"),
                "client-final-message must end with proof p=",
            ),
            (
                format!("c=biws,{nonce},{proof},"),
                "client-final-message must end with proof p=",
            ),
            (
                format!("{nonce},c=biws,{proof}"),
                "client-final-message must start with channel binding c=",
            ),
            (
                format!(",{proof}"),
                "client-final-message must start with channel binding c=",
            ),
            (
                format!("c=biws,{proof}"),
                "client-final-message lacks nonce r= after c=",
            ),
            (
                format!("c=biws,x=1,{nonce},{proof}"),
                "client-final-message lacks nonce r= after c=",
            ),
            (
                format!("c=biws,{nonce},{proof},{proof}"),
                "client-final-message has attribute p= out of order or repeated",
            ),
            (
                format!("c=biws,{nonce},c=biws,{proof}"),
                "client-final-message has attribute c= out of order or repeated",
            ),
            (
                format!("c=biws,{nonce},,{proof}"),
                "client-final-message has an attribute that is not of the form x=value",
            ),
            (
                format!("c=biws,{nonce},x,{proof}"),
                "client-final-message has an attribute that is not of the form x=value",
            ),
            (
                format!("c=bi*s,{nonce},{proof}"),
                "channel binding c= is not valid base64",
            ),
            (
                format!("c=biws=,{nonce},{proof}"),
                "channel binding c= is not valid base64",
            ),
            (
                format!("c=biws,{nonce},p=v0X8v3Bz2T0C!GbJQyF0X+HI4Ts="),
                "proof p= is not valid base64",
            ),
            (
                format!("c=biws,{nonce},p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts"),
                "proof p= is not valid base64",
            ),
            (
                format!("c=biws,{nonce},p="),
                "proof p= is 0 bytes; SCRAM-SHA-1 needs 20",
            ),
            (
                format!("c=biws,{nonce},p=AAAA"),
                "proof p= is 3 bytes; SCRAM-SHA-1 needs 20",
            ),
            (
                format!("c=biws,{nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
                "proof p= is 32 bytes; SCRAM-SHA-1 needs 20",
            ),
        ];
        for (msg, expected) in cases {
            let got = sha1_exchange().finish(msg.as_bytes());
            assert_eq!(got, Err(malformed(expected)), "{msg:?}");
        }
    }

    #[test]
    fn non_utf8_client_final_is_incorrect_encoding() {
        let mut bad = SHA1_FINAL.as_bytes().to_vec();
        bad[3] = 0xff;
        assert_eq!(
            sha1_exchange().finish(&bad),
            Err(SaslError::IncorrectEncoding(
                "client-final-message is not valid UTF-8".into()
            ))
        );
    }

    #[test]
    fn server_nonce_is_printable_and_fresh() {
        let a = new_server_nonce();
        let b = new_server_nonce();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(check_nonce(&a, "server nonce").is_ok(), "{a}");
        assert_eq!(B64.decode(&a).expect("base64").len(), SERVER_NONCE_LEN);
    }

    #[test]
    fn hostile_input_never_panics() {
        const PIECES: &[&str] = &[
            "n",
            "y",
            "p=",
            ",",
            "=",
            "a=",
            "n=",
            "r=",
            "c=",
            "p=",
            "m=",
            "=2C",
            "=3D",
            "=2",
            "biws",
            "é",
            "✓",
            "\u{1F600}",
            "\0",
            "fyko+d2lbbFgONRv9qkxdawL",
            "3rfcNHYJY1ZVvWVs7j",
            "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "AAAA",
            "x=",
            " ",
        ];
        let mut rng = StdRng::seed_from_u64(5802);
        let creds = ScramCredentials::derive(ScramHash::Sha1, "pencil", b"salt", 1);
        let first = parse_client_first(SHA1_FIRST.as_bytes()).expect("valid");
        for _ in 0..5000 {
            let mut msg: Vec<u8> = Vec::new();
            for _ in 0..rng.gen_range(0..12) {
                if rng.gen_bool(0.1) {
                    msg.push(rng.gen());
                } else {
                    msg.extend_from_slice(PIECES[rng.gen_range(0..PIECES.len())].as_bytes());
                }
            }
            let _ = parse_client_first(&msg);
            let exchange =
                ScramExchange::new(ScramHash::Sha1, first.clone(), creds.clone(), SHA1_SNONCE);
            let _ = exchange.finish(&msg);
            let _ = super::super::parse_plain(&msg);
        }
    }
}
