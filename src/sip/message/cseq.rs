//! The CSeq header (RFC 3261 §20.16, §8.1.1.5).

use std::fmt;

use super::{Method, ParseError, MAX_CSEQ};
use crate::sip::grammar::{is_token, is_wsp, parse_digits};

/// The CSeq header (RFC 3261 §20.16): orders requests within a dialog and names the method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number, below 2^31.
    pub seq: u32,
    /// Method of the request this CSeq belongs to.
    pub method: Method,
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`; leading zeros are fine, 2^31 and above is not.
    pub fn parse(value: &str) -> Result<CSeq, ParseError> {
        let bad = ParseError::BadHeaderValue("CSeq");
        let value = value.trim_matches(is_wsp);
        let split = value.find(is_wsp).ok_or(bad.clone())?;
        let (digits, method) = (&value[..split], value[split..].trim_start_matches(is_wsp));
        let seq = parse_digits(digits)
            .filter(|n| *n <= u64::from(MAX_CSEQ))
            .ok_or(bad.clone())?;
        if !is_token(method) {
            return Err(bad);
        }
        Ok(CSeq {
            seq: u32::try_from(seq).map_err(|_| bad)?,
            method: Method::parse(method),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}
