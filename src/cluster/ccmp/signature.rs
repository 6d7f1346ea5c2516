//! The HMAC-SHA256 signature of CCMP bodies under the cluster secret (DESIGN.md §5).

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::FORBIDDEN;

/// The scheme that prefixes the hex HMAC in the [`SIGNATURE_HEADER`](super::SIGNATURE_HEADER) value.
const SIGNATURE_SCHEME: &str = "hmac-sha256";

/// Why a body's [`SIGNATURE_HEADER`](super::SIGNATURE_HEADER) was refused (answer with [`FORBIDDEN`](super::FORBIDDEN), DESIGN.md §5).
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The request has no signature header.
    #[error("the Ccmp-Signature header is missing")]
    Missing,
    /// The header is not `hmac-sha256=` followed by 64 hex digits.
    #[error("the Ccmp-Signature header is not hmac-sha256=<64 hex digits>")]
    Malformed,
    /// The HMAC does not match the body under our secret.
    #[error("the Ccmp-Signature does not match the body")]
    Mismatch,
}

impl SignatureError {
    /// The `response-code` to answer with: [`FORBIDDEN`](super::FORBIDDEN) (a node without the secret).
    pub fn response_code(&self) -> u16 {
        FORBIDDEN
    }
}

/// The [`SIGNATURE_HEADER`](super::SIGNATURE_HEADER) value for `body`: `hmac-sha256=<lowercase hex>` of the
/// HMAC-SHA256 of the body under the cluster `secret` (an empty secret is still a key).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut out = String::with_capacity(SIGNATURE_SCHEME.len() + 1 + 64);
    out.push_str(SIGNATURE_SCHEME);
    out.push('=');
    if let Some(mut mac) = new_mac(secret) {
        mac.update(body);
        for byte in mac.finalize().into_bytes() {
            // Writing to a String cannot fail.
            let _ = write!(out, "{byte:02x}");
        }
    }
    out
}

/// Checks the [`SIGNATURE_HEADER`](super::SIGNATURE_HEADER) value `header` against `body` under `secret`; the
/// comparison takes constant time. The scheme is matched without regard to ASCII case and
/// the hex digits may be of either case.
pub fn verify(secret: &str, body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let (scheme, hex) = header.split_once('=').ok_or(SignatureError::Malformed)?;
    if !scheme.trim().eq_ignore_ascii_case(SIGNATURE_SCHEME) {
        return Err(SignatureError::Malformed);
    }
    let tag = decode_hex(hex.trim()).ok_or(SignatureError::Malformed)?;
    if tag.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let mut mac = new_mac(secret).ok_or(SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&tag).map_err(|_| SignatureError::Mismatch)
}

/// HMAC-SHA256 keyed with `secret`. HMAC accepts keys of every length, so this is never
/// `None`; if it were, [`sign`] would produce a tag that never verifies (fail closed).
fn new_mac(secret: &str) -> Option<Hmac<Sha256>> {
    <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).ok()
}

/// Decodes hex digits of either case; `None` on an odd length or a non-hex character.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let digits = hex.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let value = |d: u8| -> Option<u8> {
        match d {
            b'0'..=b'9' => Some(d - b'0'),
            b'a'..=b'f' => Some(d - b'a' + 10),
            b'A'..=b'F' => Some(d - b'A' + 10),
            _ => None,
        }
    };
    digits
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some(value(*hi)? << 4 | value(*lo)?),
            _ => None,
        })
        .collect()
}
