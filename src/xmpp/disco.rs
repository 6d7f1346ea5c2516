//! Service discovery answers (XEP-0030 §3.1, §4) and ping (XEP-0199 §4).

use crate::xml::Element;

/// `http://jabber.org/protocol/disco#info`.
pub const DISCO_INFO_NS: &str = "http://jabber.org/protocol/disco#info";
/// `http://jabber.org/protocol/disco#items`.
pub const DISCO_ITEMS_NS: &str = "http://jabber.org/protocol/disco#items";
/// `urn:xmpp:ping` (XEP-0199).
pub const PING_NS: &str = "urn:xmpp:ping";

/// Features the server advertises (XEP-0030 §3.1); `registration` adds XEP-0077.
pub fn server_features(registration: bool) -> Vec<&'static str> {
    let mut f = vec![
        DISCO_INFO_NS,
        DISCO_ITEMS_NS,
        PING_NS,
        "jabber:iq:roster",
        "jabber:iq:private",
        "urn:xmpp:delay",
        "msgoffline",
        super::moe::NS,
    ];
    if registration {
        f.push(super::register::REGISTER_NS);
    }
    f
}

/// The disco#info result payload for the server (identity server/im, XEP-0030 §3.1).
pub fn server_info(registration: bool) -> Element {
    let mut q = Element::new("query", DISCO_INFO_NS).with_child(
        Element::new("identity", DISCO_INFO_NS)
            .with_attr("category", "server")
            .with_attr("type", "im")
            .with_attr("name", "Rendezvous"),
    );
    for f in server_features(registration) {
        q = q.with_child(Element::new("feature", DISCO_INFO_NS).with_attr("var", f));
    }
    q
}

/// The disco#info payload for an account's bare JID (XEP-0030 §3.1: account/registered).
pub fn account_info() -> Element {
    Element::new("query", DISCO_INFO_NS)
        .with_child(
            Element::new("identity", DISCO_INFO_NS)
                .with_attr("category", "account")
                .with_attr("type", "registered"),
        )
        .with_child(Element::new("feature", DISCO_INFO_NS).with_attr("var", DISCO_INFO_NS))
}

/// An empty disco#items payload (XEP-0030 §4.2: no items).
pub fn no_items() -> Element {
    Element::new("query", DISCO_ITEMS_NS)
}

/// A server-to-client ping (XEP-0199 §4.2).
pub fn ping(id: &str, to: &str, from: &str) -> Element {
    Element::new("iq", crate::xml::CLIENT_NS)
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("id", id)
        .with_attr("type", "get")
        .with_child(Element::new("ping", PING_NS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::CLIENT_NS;

    #[test]
    fn info_lists_features_xep0030_3_1() {
        let q = server_info(true);
        let vars: Vec<_> = q.elements().filter_map(|e| e.attr("var")).collect();
        assert!(vars.contains(&DISCO_INFO_NS));
        assert!(vars.contains(&"jabber:iq:register"));
        assert!(!server_info(false)
            .elements()
            .any(|e| e.attr("var") == Some("jabber:iq:register")));
        let id = q.get_child("identity", DISCO_INFO_NS).unwrap();
        assert_eq!(
            (id.attr("category"), id.attr("type")),
            (Some("server"), Some("im"))
        );
    }

    #[test]
    fn ping_matches_xep0199_example() {
        assert_eq!(
            ping("s2c1", "juliet@capulet.lit/balcony", "capulet.lit").to_xml(CLIENT_NS),
            "<iq from='capulet.lit' to='juliet@capulet.lit/balcony' id='s2c1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>"
        );
    }
}
