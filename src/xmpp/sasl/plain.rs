//! The PLAIN SASL mechanism, server side (RFC 4616 §2), for use over TLS only
//! (RFC 4616 §4, RFC 6120 §6.4.1: offer it only on an encrypted stream).
//!
//! The single client message is `[authzid] NUL authcid NUL passwd`, UTF-8. Checking the
//! password is the caller's job, typically with [`super::ScramCredentials::verify_password`].
//! No SASLprep (RFC 4013) is applied: identities and passwords are compared as sent.

use std::fmt;

use super::SaslError;

/// The three fields of a PLAIN message; `Debug` hides the password so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The identity to act as, when the client sent a non-empty one.
    pub authzid: Option<String>,
    /// The identity whose password is given (the username).
    pub authcid: String,
    /// The clear-text password.
    pub password: String,
}

impl fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses a PLAIN message (RFC 4616 §2): exactly three NUL-separated UTF-8 fields, of which
/// the authzid may be empty (absent) and the authcid and password may not.
pub fn parse_plain(msg: &[u8]) -> Result<PlainCredentials, SaslError> {
    let fields: Vec<&[u8]> = msg.split(|b| *b == 0).collect();
    let [authzid, authcid, password] = fields.as_slice() else {
        return Err(SaslError::MalformedRequest(format!(
            "PLAIN message must be [authzid] NUL authcid NUL password; found {} NUL separators",
            fields.len().saturating_sub(1)
        )));
    };
    let authzid = utf8(authzid, "authzid")?;
    let authcid = utf8(authcid, "authcid")?;
    let password = utf8(password, "password")?;
    if authcid.is_empty() {
        return Err(SaslError::MalformedRequest(
            "PLAIN authcid is empty".to_string(),
        ));
    }
    if password.is_empty() {
        return Err(SaslError::MalformedRequest(
            "PLAIN password is empty".to_string(),
        ));
    }
    Ok(PlainCredentials {
        authzid: (!authzid.is_empty()).then(|| authzid.to_string()),
        authcid: authcid.to_string(),
        password: password.to_string(),
    })
}

fn utf8<'a>(field: &'a [u8], name: &str) -> Result<&'a str, SaslError> {
    std::str::from_utf8(field)
        .map_err(|_| SaslError::IncorrectEncoding(format!("PLAIN {name} is not valid UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn malformed(msg: &str) -> SaslError {
        SaslError::MalformedRequest(msg.to_string())
    }

    #[test]
    fn rfc4616_example_without_authzid() {
        // RFC 4616 §4: authcid "tim", password "tanstaaftanstaaf".
        let creds = parse_plain(b"\0tim\0tanstaaftanstaaf").expect("valid");
        assert_eq!(
            creds,
            PlainCredentials {
                authzid: None,
                authcid: "tim".into(),
                password: "tanstaaftanstaaf".into(),
            }
        );
    }

    #[test]
    fn rfc4616_example_with_authzid() {
        // RFC 4616 §4: "Kurt" authenticates with "xipj3plmq" and acts as "Ursel".
        let creds = parse_plain(b"Ursel\0Kurt\0xipj3plmq").expect("valid");
        assert_eq!(creds.authzid.as_deref(), Some("Ursel"));
        assert_eq!(creds.authcid, "Kurt");
        assert_eq!(creds.password, "xipj3plmq");
    }

    #[test]
    fn non_ascii_utf8_is_accepted() {
        let creds = parse_plain("\0jürgen\0pässwörd ✓".as_bytes()).expect("valid");
        assert_eq!(creds.authcid, "jürgen");
        assert_eq!(creds.password, "pässwörd ✓");
    }

    #[test]
    fn wrong_field_counts_are_malformed() {
        let cases: [(&[u8], usize); 5] = [
            (b"", 0),
            (b"tim", 0),
            (b"tim\0tanstaaftanstaaf", 1),
            (b"\0tim\0tanstaaf\0tanstaaf", 3),
            (b"\0\0\0\0", 4),
        ];
        for (msg, nuls) in cases {
            assert_eq!(
                parse_plain(msg),
                Err(malformed(&format!(
                    "PLAIN message must be [authzid] NUL authcid NUL password; \
                     found {nuls} NUL separators"
                ))),
                "{msg:?}"
            );
        }
    }

    #[test]
    fn empty_authcid_or_password_is_malformed() {
        assert_eq!(
            parse_plain(b"\0\0tanstaaftanstaaf"),
            Err(malformed("PLAIN authcid is empty"))
        );
        assert_eq!(
            parse_plain(b"Ursel\0\0xipj3plmq"),
            Err(malformed("PLAIN authcid is empty"))
        );
        assert_eq!(
            parse_plain(b"\0tim\0"),
            Err(malformed("PLAIN password is empty"))
        );
        assert_eq!(
            parse_plain(b"\0\0"),
            Err(malformed("PLAIN authcid is empty"))
        );
    }

    #[test]
    fn invalid_utf8_names_the_field() {
        let cases: [(&[u8], &str); 4] = [
            (b"\xff\0tim\0pw", "authzid"),
            (b"\0t\xc3\0pw", "authcid"),
            (b"\0tim\0p\xed\xa0\x80w", "password"),
            (b"\0tim\0\xc0\xaf", "password"),
        ];
        for (msg, field) in cases {
            assert_eq!(
                parse_plain(msg),
                Err(SaslError::IncorrectEncoding(format!(
                    "PLAIN {field} is not valid UTF-8"
                ))),
                "{msg:?}"
            );
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let creds = parse_plain(b"\0tim\0tanstaaftanstaaf").expect("valid");
        let shown = format!("{creds:?}");
        assert!(shown.contains("tim"), "{shown}");
        assert!(!shown.contains("tanstaaf"), "{shown}");
    }
}
