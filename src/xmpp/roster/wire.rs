//! Roster wire format (RFC 6121 §2): `<query xmlns='jabber:iq:roster'>` items, roster set
//! validation (§2.3.3, §2.5.3) and roster pushes (§2.1.6).

use super::model::RosterItem;
use crate::xml::{Element, CLIENT_NS};
use crate::xmpp::jid::Jid;
use crate::xmpp::stanza::StanzaError;
use crate::xmpp::subscription::SubState;

/// `jabber:iq:roster`.
pub const ROSTER_NS: &str = "jabber:iq:roster";

/// Largest accepted roster item name or group name, in bytes (RFC 6121 §2.3.3 lets servers
/// cap it and answer `not-acceptable`).
pub const MAX_NAME_BYTES: usize = 1024;

/// A validated roster set request (RFC 6121 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RosterSet {
    /// Add or update an item's name and groups.
    Update {
        /// Bare JID of the contact.
        jid: Jid,
        /// Handle.
        name: Option<String>,
        /// Groups, de-duplicated.
        groups: Vec<String>,
    },
    /// `subscription='remove'` (RFC 6121 §2.5).
    Remove {
        /// Bare JID of the contact.
        jid: Jid,
    },
}

/// Validates the `<query/>` of a roster set (RFC 6121 §2.3.3 error cases).
pub fn parse_roster_set(query: &Element) -> Result<RosterSet, (StanzaError, &'static str)> {
    let mut items = query.elements().filter(|e| e.is("item", ROSTER_NS));
    let item = items
        .next()
        .ok_or((StanzaError::BadRequest, "roster set needs one <item/>"))?;
    if items.next().is_some() {
        return Err((
            StanzaError::BadRequest,
            "roster set must contain exactly one <item/>",
        ));
    }
    let jid = item
        .attr("jid")
        .ok_or((StanzaError::BadRequest, "<item/> needs a jid"))?;
    let jid = Jid::parse(jid)
        .map_err(|_| (StanzaError::JidMalformed, "<item/> jid is not a JID"))?
        .to_bare();
    match item.attr("subscription") {
        None | Some("none") | Some("to") | Some("from") | Some("both") => {}
        Some("remove") => return Ok(RosterSet::Remove { jid }),
        Some(_) => return Err((StanzaError::BadRequest, "bad subscription attribute")),
    }
    let name = item
        .attr("name")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    if name.as_ref().is_some_and(|n| n.len() > MAX_NAME_BYTES) {
        return Err((StanzaError::NotAcceptable, "item name too long"));
    }
    let mut groups: Vec<String> = Vec::new();
    for g in item.elements().filter(|e| e.is("group", ROSTER_NS)) {
        let g = g.text();
        if g.is_empty() {
            return Err((StanzaError::NotAcceptable, "empty group name"));
        }
        if g.len() > MAX_NAME_BYTES {
            return Err((StanzaError::NotAcceptable, "group name too long"));
        }
        if groups.contains(&g) {
            return Err((StanzaError::BadRequest, "duplicate group"));
        }
        groups.push(g);
    }
    Ok(RosterSet::Update { jid, name, groups })
}

/// `<item/>` for a stored roster item.
pub fn item_element(item: &RosterItem) -> Element {
    let state = SubState {
        sub: item.subscription,
        pending_out: item.ask,
        pending_in: false,
    };
    let mut el = Element::new("item", ROSTER_NS)
        .with_attr("jid", item.jid.as_str())
        .with_attr("subscription", state.subscription_attr());
    if let Some(n) = &item.name {
        el.set_attr("name", n);
    }
    if item.ask {
        el.set_attr("ask", "subscribe");
    }
    for g in &item.groups {
        el = el.with_child(Element::new("group", ROSTER_NS).with_text(g.as_str()));
    }
    el
}

/// `<item jid='…' subscription='remove'/>` for a push after removal (RFC 6121 §2.5.2).
pub fn removed_item_element(jid: &str) -> Element {
    Element::new("item", ROSTER_NS)
        .with_attr("jid", jid)
        .with_attr("subscription", "remove")
}

/// `<query xmlns='jabber:iq:roster'>` holding `items`.
pub fn query<I: IntoIterator<Item = Element>>(items: I) -> Element {
    let mut q = Element::new("query", ROSTER_NS);
    for i in items {
        q = q.with_child(i);
    }
    q
}

/// A roster push iq to one interested resource (RFC 6121 §2.1.6).
pub fn push(to: &str, id: &str, item: Element) -> Element {
    Element::new("iq", CLIENT_NS)
        .with_attr("id", id)
        .with_attr("to", to)
        .with_attr("type", "set")
        .with_child(query([item]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::subscription::Subscription;

    fn q(items: &[Element]) -> Element {
        query(items.iter().cloned())
    }

    #[test]
    fn rfc6121_2_3_2_roster_set_parses() {
        // RFC 6121 §2.3.2 example.
        let item = Element::new("item", ROSTER_NS)
            .with_attr("jid", "nurse@example.com")
            .with_attr("name", "Nurse")
            .with_child(Element::new("group", ROSTER_NS).with_text("Servants"));
        assert_eq!(
            parse_roster_set(&q(&[item])).unwrap(),
            RosterSet::Update {
                jid: Jid::parse("nurse@example.com").unwrap(),
                name: Some("Nurse".into()),
                groups: vec!["Servants".into()],
            }
        );
    }

    #[test]
    fn rfc6121_2_3_3_error_cases() {
        let two = [
            Element::new("item", ROSTER_NS).with_attr("jid", "a@x"),
            Element::new("item", ROSTER_NS).with_attr("jid", "b@x"),
        ];
        assert_eq!(
            parse_roster_set(&q(&two)).unwrap_err().0,
            StanzaError::BadRequest
        );
        assert_eq!(
            parse_roster_set(&q(&[])).unwrap_err().0,
            StanzaError::BadRequest
        );
        let no_jid = Element::new("item", ROSTER_NS);
        assert_eq!(
            parse_roster_set(&q(&[no_jid])).unwrap_err().0,
            StanzaError::BadRequest
        );
        let bad_jid = Element::new("item", ROSTER_NS).with_attr("jid", "@x");
        assert_eq!(
            parse_roster_set(&q(&[bad_jid])).unwrap_err().0,
            StanzaError::JidMalformed
        );
        let empty_group = Element::new("item", ROSTER_NS)
            .with_attr("jid", "a@x")
            .with_child(Element::new("group", ROSTER_NS));
        assert_eq!(
            parse_roster_set(&q(&[empty_group])).unwrap_err().0,
            StanzaError::NotAcceptable
        );
        let dup = Element::new("item", ROSTER_NS)
            .with_attr("jid", "a@x")
            .with_child(Element::new("group", ROSTER_NS).with_text("g"))
            .with_child(Element::new("group", ROSTER_NS).with_text("g"));
        assert_eq!(
            parse_roster_set(&q(&[dup])).unwrap_err().0,
            StanzaError::BadRequest
        );
        let bad_sub = Element::new("item", ROSTER_NS)
            .with_attr("jid", "a@x")
            .with_attr("subscription", "maybe");
        assert_eq!(
            parse_roster_set(&q(&[bad_sub])).unwrap_err().0,
            StanzaError::BadRequest
        );
    }

    #[test]
    fn remove_parses() {
        let item = Element::new("item", ROSTER_NS)
            .with_attr("jid", "Nurse@Example.com/res")
            .with_attr("subscription", "remove");
        assert_eq!(
            parse_roster_set(&q(&[item])).unwrap(),
            RosterSet::Remove {
                jid: Jid::parse("nurse@example.com").unwrap()
            }
        );
    }

    #[test]
    fn item_serialises_rfc6121_2_1_2() {
        let item = RosterItem {
            jid: "romeo@example.net".into(),
            name: Some("Romeo".into()),
            subscription: Subscription::None,
            ask: true,
            groups: vec!["Friends".into()],
        };
        assert_eq!(
            push(
                "juliet@example.com/balcony",
                "a78b4q6ha463",
                item_element(&item)
            )
            .to_xml(CLIENT_NS),
            "<iq id='a78b4q6ha463' to='juliet@example.com/balcony' type='set'>\
             <query xmlns='jabber:iq:roster'><item jid='romeo@example.net' subscription='none' \
             name='Romeo' ask='subscribe'><group>Friends</group></item></query></iq>"
        );
    }
}
