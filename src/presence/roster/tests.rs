//! The roster core driven without actix.

use super::super::outbox::Outbox;
use super::super::testkit::World;
use super::super::wire::parse_stanza;
use super::{Bind, PresenceFromClient, RosterFx, RosterState, SubscriptionIn, Unbind};
use crate::config::PresencePolicy;
use crate::xml::Element;
use crate::xmpp::jid::Jid;
use crate::xmpp::subscription::SubKind;

fn xml(s: &str) -> Element {
    parse_stanza(s.as_bytes()).expect("a stanza")
}

fn bind(r: &mut RosterState, w: &World, user: &str, resource: &str) -> Outbox {
    let outbox = Outbox::new(1 << 20);
    let msg = Bind {
        user: user.into(),
        resource: Some(resource.into()),
        session_id: 1,
        outbox: outbox.clone(),
    };
    let mut fx = Vec::new();
    assert_eq!(r.bind(&w.cx(), msg, &mut fx).unwrap(), resource);
    outbox
}

fn presence(r: &mut RosterState, w: &World, from: &str, stanza: &str) -> Vec<RosterFx> {
    let msg = PresenceFromClient {
        from: Jid::parse(from).unwrap(),
        stanza: xml(stanza),
    };
    let mut fx = Vec::new();
    r.presence_from_client(&w.cx(), msg, &mut fx);
    fx
}

/// What an outbox holds, as text.
fn drain(outbox: &Outbox) -> String {
    let mut out = String::new();
    while let Some(crate::presence::outbox::Out::Data { bytes, .. }) = outbox.pop() {
        out.push_str(&String::from_utf8_lossy(&bytes));
    }
    out
}

#[test]
fn a_subscription_request_is_posted_to_the_contacts_shard_rfc6121_3_1_2() {
    let w = World::new();
    w.account("alice");
    w.account("bob");
    let mut r = RosterState::default();
    let _outbox = bind(&mut r, &w, "alice", "home");
    let fx = presence(
        &mut r,
        &w,
        "alice@example.com/home",
        "<presence to='bob@example.com' type='subscribe'/>",
    );
    let posted: Vec<_> = fx
        .iter()
        .filter_map(|e| match e {
            RosterFx::Subscription(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].to, "bob");
    assert_eq!(posted[0].from.to_string(), "alice@example.com");
    assert_eq!(posted[0].kind, SubKind::Subscribe);
    // Written through, and the SIP watchers of alice reauthorized.
    assert!(fx
        .iter()
        .any(|e| matches!(e, RosterFx::WriteThrough { user, .. } if user == "alice")));
    assert!(fx
        .iter()
        .any(|e| matches!(e, RosterFx::Reauthorize(u) if u == "alice")));
    assert!(
        r.roster(&w.cx(), "alice")
            .state("bob@example.com")
            .pending_out
    );
}

#[test]
fn a_request_for_an_online_contact_is_delivered_and_kept_rfc6121_3_1_3() {
    let mut w = World::new();
    w.settings.sip.presence_policy = PresencePolicy::Roster;
    w.account("alice");
    w.account("bob");
    let mut r = RosterState::default();
    let bob = bind(&mut r, &w, "bob", "desk");
    presence(
        &mut r,
        &w,
        "bob@example.com/desk",
        "<presence from='bob@example.com/desk'/>",
    );
    drain(&bob);
    let msg = SubscriptionIn {
        to: "bob".into(),
        from: Jid::parse("alice@example.com").unwrap(),
        kind: SubKind::Subscribe,
        stanza: xml("<presence from='alice@example.com' to='bob@example.com' type='subscribe'/>"),
        then_presence: Vec::new(),
    };
    let mut fx = Vec::new();
    r.subscription_in(&w.cx(), msg, &mut fx);
    let got = drain(&bob);
    assert!(
        got.contains("type=\"subscribe\"") || got.contains("type='subscribe'"),
        "{got}"
    );
    assert!(r
        .roster(&w.cx(), "bob")
        .pending_in
        .contains_key("alice@example.com"));
}

#[test]
fn presence_changes_are_broadcast_and_told_to_the_sip_part_rfc6121_4_2_2() {
    let w = World::new();
    w.account("alice");
    let mut r = RosterState::default();
    let home = bind(&mut r, &w, "alice", "home");
    let work = bind(&mut r, &w, "alice", "work");
    presence(
        &mut r,
        &w,
        "alice@example.com/work",
        "<presence from='alice@example.com/work'/>",
    );
    drain(&work);
    let fx = presence(
        &mut r,
        &w,
        "alice@example.com/home",
        "<presence from='alice@example.com/home'><show>away</show></presence>",
    );
    assert!(matches!(&fx[..], [RosterFx::PresenceChanged(u)] if u == "alice"));
    // Her other available resource sees it, and her new one the other's (§4.2.2).
    assert!(drain(&work).contains("<show>away</show>"));
    let got = drain(&home);
    assert!(got.contains("alice@example.com/work"), "{got}");
    // Going offline is told too, and the route keeps no presence.
    let mut fx = Vec::new();
    let unbind = Unbind {
        user: "alice".into(),
        resource: "home".into(),
        session_id: 1,
    };
    r.unbind(&w.cx(), unbind, &mut fx);
    assert!(matches!(&fx[0], RosterFx::PresenceChanged(u) if u == "alice"));
    assert!(matches!(fx.last(), Some(RosterFx::Unbound { resource, .. }) if resource == "home"));
    assert!(drain(&work).contains("type='unavailable'"));
    assert_eq!(w.routes.get("alice").len(), 1);
}
