//! In-band registration (XEP-0077 §3): the registration form, account creation requests,
//! password change (§3.3) and cancellation (§3.2).

use super::stanza::StanzaError;
use crate::xml::Element;

/// `jabber:iq:register`.
pub const REGISTER_NS: &str = "jabber:iq:register";
/// Stream feature namespace (XEP-0077 §4).
pub const REGISTER_FEATURE_NS: &str = "http://jabber.org/features/iq-register";

/// What a `set` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterRequest {
    /// Create an account, or change the password when authenticated (§3.1, §3.3).
    Credentials {
        /// Requested username.
        username: String,
        /// Requested password.
        password: String,
    },
    /// `<remove/>`: cancel the registration (§3.2).
    Remove,
}

/// Parses the `<query/>` of a registration `set`.
pub fn parse_set(query: &Element) -> Result<RegisterRequest, (StanzaError, &'static str)> {
    if query.has_child("remove", REGISTER_NS) {
        return Ok(RegisterRequest::Remove);
    }
    let field = |name: &str| query.get_child(name, REGISTER_NS).map(|e| e.text());
    match (field("username"), field("password")) {
        (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Ok(RegisterRequest::Credentials {
            username: u,
            password: p,
        }),
        _ => Err((
            StanzaError::NotAcceptable,
            "username and password are required",
        )),
    }
}

/// The form answered to a `get` (XEP-0077 §3.1 example 2), or the registered state when the
/// stream is authenticated as `registered_as` (§3.1 example 4).
pub fn form(registered_as: Option<&str>) -> Element {
    let mut q = Element::new("query", REGISTER_NS);
    match registered_as {
        Some(user) => {
            q = q
                .with_child(Element::new("registered", REGISTER_NS))
                .with_child(Element::new("username", REGISTER_NS).with_text(user))
                .with_child(Element::new("password", REGISTER_NS));
        }
        None => {
            q = q
                .with_child(
                    Element::new("instructions", REGISTER_NS)
                        .with_text("Choose a username and password for use with this service."),
                )
                .with_child(Element::new("username", REGISTER_NS))
                .with_child(Element::new("password", REGISTER_NS));
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep0077_example_3_parses() {
        let q = Element::new("query", REGISTER_NS)
            .with_child(Element::new("username", REGISTER_NS).with_text("bill"))
            .with_child(Element::new("password", REGISTER_NS).with_text("Calliope"));
        assert_eq!(
            parse_set(&q).unwrap(),
            RegisterRequest::Credentials {
                username: "bill".into(),
                password: "Calliope".into()
            }
        );
    }

    #[test]
    fn remove_and_missing_fields() {
        let q = Element::new("query", REGISTER_NS).with_child(Element::new("remove", REGISTER_NS));
        assert_eq!(parse_set(&q).unwrap(), RegisterRequest::Remove);
        let q = Element::new("query", REGISTER_NS)
            .with_child(Element::new("username", REGISTER_NS).with_text("bill"));
        assert_eq!(parse_set(&q).unwrap_err().0, StanzaError::NotAcceptable);
    }

    #[test]
    fn form_has_fields() {
        let f = form(None);
        assert!(f.has_child("username", REGISTER_NS) && f.has_child("password", REGISTER_NS));
        assert!(!f.has_child("registered", REGISTER_NS));
        assert!(form(Some("bill")).has_child("registered", REGISTER_NS));
    }
}
