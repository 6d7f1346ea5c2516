//! XMPP addresses (RFC 7622).
//!
//! `localpart@domainpart/resourcepart`. The local and domain parts are case-folded (a
//! simplification of the PRECIS profiles of RFC 7622 §3.3 and §3.2 that is exact for ASCII);
//! the resource is kept as sent (§3.4, opaque). Length limits of §3.1 are enforced.

use std::fmt;

/// Why a string is not a JID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    /// Empty string or empty domain.
    #[error("empty domainpart")]
    EmptyDomain,
    /// `@` with nothing before it.
    #[error("empty localpart")]
    EmptyLocal,
    /// `/` with nothing after it.
    #[error("empty resourcepart")]
    EmptyResource,
    /// A part exceeds 1023 bytes (RFC 7622 §3.1).
    #[error("{0} is longer than 1023 bytes")]
    TooLong(&'static str),
    /// A character RFC 7622 §3.3.1 forbids in a localpart, or whitespace/control in a domain.
    #[error("forbidden character {1:?} in {0}")]
    Forbidden(&'static str, char),
}

/// A parsed JID; `resource` is `None` for a bare JID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jid {
    local: Option<String>,
    domain: String,
    resource: Option<String>,
}

const LOCAL_FORBIDDEN: &[char] = &['"', '&', '\'', '/', ':', '<', '>', '@'];

impl Jid {
    /// Parses and normalises a JID string.
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        let (rest, resource) = match s.find('/') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let (local, domain) = match rest.find('@') {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if domain.is_empty() {
            return Err(JidError::EmptyDomain);
        }
        if domain.len() > 1023 {
            return Err(JidError::TooLong("domainpart"));
        }
        if let Some(c) = domain
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == '@')
        {
            return Err(JidError::Forbidden("domainpart", c));
        }
        let local = match local {
            Some("") => return Err(JidError::EmptyLocal),
            Some(l) if l.len() > 1023 => return Err(JidError::TooLong("localpart")),
            Some(l) => {
                if let Some(c) = l
                    .chars()
                    .find(|c| LOCAL_FORBIDDEN.contains(c) || c.is_whitespace() || c.is_control())
                {
                    return Err(JidError::Forbidden("localpart", c));
                }
                Some(l.to_lowercase())
            }
            None => None,
        };
        let resource = match resource {
            Some("") => return Err(JidError::EmptyResource),
            Some(r) if r.len() > 1023 => return Err(JidError::TooLong("resourcepart")),
            Some(r) => {
                if let Some(c) = r.chars().find(|c| c.is_control()) {
                    return Err(JidError::Forbidden("resourcepart", c));
                }
                Some(r.to_string())
            }
            None => None,
        };
        Ok(Jid {
            local,
            domain: domain.to_lowercase(),
            resource,
        })
    }

    /// A bare JID `local@domain` from already-normalised parts.
    pub fn bare(local: &str, domain: &str) -> Jid {
        Jid {
            local: Some(local.to_string()),
            domain: domain.to_string(),
            resource: None,
        }
    }

    /// The same JID with `resource`.
    pub fn with_resource(&self, resource: &str) -> Jid {
        Jid {
            local: self.local.clone(),
            domain: self.domain.clone(),
            resource: Some(resource.to_string()),
        }
    }

    /// The JID without its resource.
    pub fn to_bare(&self) -> Jid {
        Jid {
            local: self.local.clone(),
            domain: self.domain.clone(),
            resource: None,
        }
    }

    /// The localpart, if any.
    pub fn local(&self) -> Option<&str> {
        self.local.as_deref()
    }

    /// The domainpart.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The resourcepart, if any.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// True when there is no resource.
    pub fn is_bare(&self) -> bool {
        self.resource.is_none()
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.local {
            write!(f, "{l}@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(r) = &self.resource {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Jid::parse(s)
    }
}

/// Normalises an account name given by an operator or XEP-0077 to a localpart.
pub fn normalize_local(name: &str) -> Result<String, JidError> {
    if name.is_empty() {
        return Err(JidError::EmptyLocal);
    }
    if let Some(c) = name
        .chars()
        .find(|c| LOCAL_FORBIDDEN.contains(c) || c.is_whitespace() || c.is_control())
    {
        return Err(JidError::Forbidden("localpart", c));
    }
    if name.len() > 1023 {
        return Err(JidError::TooLong("localpart"));
    }
    Ok(name.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7622_examples_parse() {
        // RFC 7622 §3.5 examples of valid JIDs (ASCII ones).
        for (s, local, domain, res) in [
            ("juliet@example.com", Some("juliet"), "example.com", None),
            (
                "juliet@example.com/foo",
                Some("juliet"),
                "example.com",
                Some("foo"),
            ),
            (
                "juliet@example.com/foo bar",
                Some("juliet"),
                "example.com",
                Some("foo bar"),
            ),
            (
                "juliet@example.com/foo@bar",
                Some("juliet"),
                "example.com",
                Some("foo@bar"),
            ),
            (
                "foo\\20bar@example.com",
                Some("foo\\20bar"),
                "example.com",
                None,
            ),
            ("example.com", None, "example.com", None),
            ("example.com/foobar", None, "example.com", Some("foobar")),
            (
                "a.example.com/b@example.net",
                None,
                "a.example.com",
                Some("b@example.net"),
            ),
        ] {
            let j = Jid::parse(s).unwrap();
            assert_eq!(j.local(), local, "{s}");
            assert_eq!(j.domain(), domain, "{s}");
            assert_eq!(j.resource(), res, "{s}");
            assert_eq!(j.to_string(), s);
        }
    }

    #[test]
    fn rfc7622_invalid_examples_rejected() {
        // RFC 7622 §3.5 examples of invalid JIDs.
        assert_eq!(
            Jid::parse("\"juliet\"@example.com"),
            Err(JidError::Forbidden("localpart", '"'))
        );
        assert_eq!(
            Jid::parse("foo bar@example.com"),
            Err(JidError::Forbidden("localpart", ' '))
        );
        assert_eq!(Jid::parse("@example.com/"), Err(JidError::EmptyLocal));
        assert_eq!(
            Jid::parse("juliet@example.com/"),
            Err(JidError::EmptyResource)
        );
        assert_eq!(Jid::parse(""), Err(JidError::EmptyDomain));
        assert_eq!(Jid::parse("a@"), Err(JidError::EmptyDomain));
        let long = "a".repeat(1024);
        assert_eq!(
            Jid::parse(&format!("{long}@x")),
            Err(JidError::TooLong("localpart"))
        );
    }

    #[test]
    fn case_folding_of_local_and_domain_only() {
        let j = Jid::parse("Juliet@Example.COM/Balcony").unwrap();
        assert_eq!(j.to_string(), "juliet@example.com/Balcony");
        assert_eq!(j.to_bare().to_string(), "juliet@example.com");
        assert_eq!(
            Jid::parse("juliet@example.com.").unwrap().domain(),
            "example.com"
        );
    }

    #[test]
    fn normalize_local_names() {
        assert_eq!(normalize_local("Alice").unwrap(), "alice");
        assert_eq!(
            normalize_local("a/b"),
            Err(JidError::Forbidden("localpart", '/'))
        );
        assert_eq!(
            normalize_local("a b"),
            Err(JidError::Forbidden("localpart", ' '))
        );
        assert!(normalize_local("").is_err());
    }
}
