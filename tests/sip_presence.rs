//! SIP presence against a real node over real UDP and TCP sockets: PUBLISH, SUBSCRIBE, NOTIFY,
//! refresh, unsubscribe, expiry, the error responses of RFC 3261/3903/6665, digest
//! authentication, REGISTER/MESSAGE, and XMPP <-> SIP interworking (RFC 8048).

mod common;

use std::time::Duration;

use common::sip::{body, pidf, Ua, WAIT};
use common::{add_users, test_config, Client, TestNode};

/// A node with `[sip]` settings `sip` and users alice, bob, carol (password "pw").
fn node(sip: &str) -> (tempfile::TempDir, TestNode) {
    let dir = tempfile::tempdir().unwrap();
    add_users(
        dir.path(),
        &[("alice", "pw"), ("bob", "pw"), ("carol", "pw")],
    );
    let text = format!("{}[sip]\n{sip}\n", test_config(dir.path(), ""));
    let node = TestNode::start(&text);
    (dir, node)
}

const OPEN: &str = "sip_auth = false\npresence_policy = \"domain\"\n";

fn publish(ua: &mut Ua, tuple: &str, open: bool, note: &str, etag: Option<&str>) -> String {
    let user = ua.user.clone();
    let mut r = ua
        .req("PUBLISH", &user)
        .header("Event", "presence")
        .header("Expires", "600")
        .body("application/pidf+xml", pidf(&user, tuple, open, note));
    if let Some(e) = etag {
        r = r.header("SIP-If-Match", e);
    }
    let (_, resp) = ua.transact(r);
    assert_eq!(resp.status, 200, "PUBLISH answered {}", resp.reason);
    resp.header("SIP-ETag")
        .expect("SIP-ETag on success")
        .to_string()
}

fn subscribe(ua: &mut Ua, presentity: &str, expires: u32) -> (common::sip::Req, String) {
    let r = ua
        .req("SUBSCRIBE", presentity)
        .header("Event", "presence")
        .header("Accept", "application/pidf+xml")
        .header("Expires", expires.to_string());
    let (r, resp) = ua.transact(r);
    assert_eq!(resp.status, 200, "SUBSCRIBE answered {}", resp.reason);
    assert_eq!(resp.header("Expires"), Some(expires.to_string().as_str()));
    let tag = resp.base.to.tag().expect("To tag in 200").to_string();
    (r, tag)
}

fn publish_subscribe_refresh_unsubscribe(tcp: bool) {
    let (_dir, node) = node(OPEN);
    let mk = |user: &str| {
        if tcp {
            Ua::tcp(node.sip_addr, user)
        } else {
            Ua::udp(node.sip_addr, user)
        }
    };
    let mut alice = mk("alice");
    let mut bob = mk("bob");
    let etag = publish(&mut alice, "phone", true, "at lunch", None);

    let (sub, tag) = subscribe(&mut bob, "alice", 300);
    let n = bob.notify(WAIT).expect("immediate NOTIFY after 200");
    let state = n.header("Subscription-State").unwrap();
    assert!(state.starts_with("active;expires="), "{state}");
    assert_eq!(n.header("Event"), Some("presence"));
    assert_eq!(n.base.from.tag(), Some(tag.as_str()));
    let b = body(&n);
    assert!(
        b.contains("at lunch") && b.contains("<basic>open</basic>"),
        "{b}"
    );

    // Modify with SIP-If-Match: a new ETag, and the watcher hears about it.
    let etag2 = publish(&mut alice, "phone", true, "back", Some(&etag));
    assert_ne!(
        etag, etag2,
        "every successful PUBLISH gets a new entity-tag"
    );
    let n = bob.notify(WAIT).expect("NOTIFY after modify");
    assert!(body(&n).contains("back"), "{}", body(&n));

    // Refresh in the dialog.
    let refresh = bob.next_in_dialog(&sub, &tag).header("Expires", "120");
    let (_, resp) = bob.transact(refresh.without("Expires").header("Expires", "120"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Expires"), Some("120"));
    let n = bob.notify(WAIT).expect("NOTIFY after refresh");
    assert!(n
        .header("Subscription-State")
        .unwrap()
        .starts_with("active"));

    // Unsubscribe: a final NOTIFY, then nothing more.
    let mut unsub = bob.next_in_dialog(&sub, &tag);
    unsub.cseq += 1;
    let (_, resp) = bob.transact(unsub.without("Expires").header("Expires", "0"));
    assert_eq!(resp.status, 200);
    let n = bob.notify(WAIT).expect("final NOTIFY");
    assert!(
        n.header("Subscription-State")
            .unwrap()
            .starts_with("terminated"),
        "{:?}",
        n.header("Subscription-State")
    );
    publish(&mut alice, "phone", false, "gone", Some(&etag2));
    assert!(
        bob.notify(Duration::from_millis(700)).is_none(),
        "no NOTIFY after unsubscribe"
    );
}

#[test]
fn publish_subscribe_refresh_unsubscribe_over_udp() {
    publish_subscribe_refresh_unsubscribe(false);
}

#[test]
fn publish_subscribe_refresh_unsubscribe_over_tcp() {
    publish_subscribe_refresh_unsubscribe(true);
}

#[test]
fn error_responses_489_412_423_481_405_400() {
    let (_dir, node) = node(OPEN);
    let mut bob = Ua::udp(node.sip_addr, "bob");

    let r = bob.req("SUBSCRIBE", "alice").header("Event", "foo");
    let (_, resp) = bob.transact(r);
    assert_eq!(resp.status, 489);
    assert_eq!(resp.header("Allow-Events"), Some("presence"));

    let r = bob
        .req("SUBSCRIBE", "alice")
        .header("Event", "presence")
        .header("Expires", "10");
    let (_, resp) = bob.transact(r);
    assert_eq!(resp.status, 423);
    assert_eq!(resp.header("Min-Expires"), Some("60"));

    let r = bob
        .req("PUBLISH", "bob")
        .header("Event", "presence")
        .header("SIP-If-Match", "no-such-etag");
    let (_, resp) = bob.transact(r);
    assert_eq!(resp.status, 412);

    let mut r = bob
        .req("SUBSCRIBE", "alice")
        .header("Event", "presence")
        .header("Expires", "100");
    r.to_tag = Some("not-a-dialog".into());
    let (_, resp) = bob.transact(r);
    assert_eq!(resp.status, 481);

    let r = bob.req("FOO", "alice");
    let (_, resp) = bob.transact(r);
    assert_eq!(resp.status, 405);
    assert!(resp.header("Allow").unwrap().contains("SUBSCRIBE"));

    // A SUBSCRIBE without Event or without Contact gets 400 naming the header.
    let r = bob.req("SUBSCRIBE", "alice");
    let (_, resp) = bob.transact(r);
    assert_eq!(resp.status, 400);
    assert!(resp.reason.contains("Event"), "{}", resp.reason);
    let r = bob
        .req("SUBSCRIBE", "alice")
        .header("Event", "presence")
        .without("Contact");
    let (_, resp) = bob.transact(r);
    assert_eq!(resp.status, 400);
    assert!(resp.reason.contains("Contact"), "{}", resp.reason);

    // A Content-Length larger than the datagram's body gets 400 too.
    let r = bob.req("OPTIONS", "alice");
    let text = bob
        .build(&r)
        .replace("Content-Length: 0", "Content-Length: 50");
    bob.send_raw(text.as_bytes());
    let resp = bob
        .response_to(&r, WAIT)
        .expect("answer to lying Content-Length");
    assert_eq!(resp.status, 400);
    assert!(resp.reason.contains("Content-Length"), "{}", resp.reason);

    // PUBLISH for an unknown package.
    let r = bob
        .req("PUBLISH", "bob")
        .header("Event", "dialog")
        .body("application/pidf+xml", pidf("bob", "t", true, "x"));
    let (_, resp) = bob.transact(r);
    assert_eq!(resp.status, 489);

    // The node still works.
    let r = bob.req("OPTIONS", "alice");
    let (_, resp) = bob.transact(r);
    assert_eq!(resp.status, 200);
}

#[test]
fn expiry_ends_the_subscription_with_reason_timeout() {
    let (_dir, node) = node(&format!("{OPEN}min_expires = 1\n"));
    let mut bob = Ua::udp(node.sip_addr, "bob");
    let _ = subscribe(&mut bob, "alice", 2);
    let n = bob.notify(WAIT).unwrap();
    assert!(n
        .header("Subscription-State")
        .unwrap()
        .starts_with("active"));
    let n = bob
        .notify(Duration::from_secs(5))
        .expect("NOTIFY at expiry");
    assert_eq!(
        n.header("Subscription-State"),
        Some("terminated;reason=timeout")
    );
}

#[test]
fn retransmitted_subscribe_is_answered_from_its_transaction() {
    let (_dir, node) = node(OPEN);
    let mut bob = Ua::udp(node.sip_addr, "bob");
    let r = bob
        .req("SUBSCRIBE", "alice")
        .header("Event", "presence")
        .header("Expires", "300");
    bob.send(&r);
    let first = bob.response_to(&r, WAIT).unwrap();
    bob.send(&r); // the same request again, same branch
    let second = bob.response_to(&r, WAIT).expect("retransmitted 200");
    assert_eq!(first.status, 200);
    assert_eq!(first.base.to.tag(), second.base.to.tag(), "same dialog");
    let notes = bob.notifies_within(Duration::from_millis(800));
    assert_eq!(notes.len(), 1, "one subscription, one NOTIFY");
}

#[test]
fn notify_answered_481_removes_the_subscription() {
    let (_dir, node) = node(OPEN);
    let mut alice = Ua::udp(node.sip_addr, "alice");
    let mut bob = Ua::udp(node.sip_addr, "bob");
    let _ = subscribe(&mut bob, "alice", 300);
    let n = bob.next_request("NOTIFY", WAIT).unwrap();
    bob.answer(&n, 481, "Subscription Does Not Exist");
    std::thread::sleep(Duration::from_millis(200));
    publish(&mut alice, "t", true, "hello", None);
    assert!(
        bob.notify(Duration::from_millis(800)).is_none(),
        "a watcher that said 481 is not notified again"
    );
}

#[test]
fn notifications_are_rate_limited_and_coalesced() {
    let (_dir, node) = node(&format!("{OPEN}notify_min_interval_ms = 600\n"));
    let mut alice = Ua::udp(node.sip_addr, "alice");
    let mut bob = Ua::udp(node.sip_addr, "bob");
    let _ = subscribe(&mut bob, "alice", 300);
    bob.notify(WAIT).unwrap();
    let mut etag = publish(&mut alice, "t", true, "n0", None);
    for i in 1..6 {
        etag = publish(&mut alice, "t", true, &format!("n{i}"), Some(&etag));
    }
    let notes = bob.notifies_within(Duration::from_millis(1500));
    assert!(
        (1..=3).contains(&notes.len()),
        "6 changes within 600 ms coalesce into few NOTIFYs, got {}",
        notes.len()
    );
    assert!(
        body(notes.last().unwrap()).contains("n5"),
        "the last state wins"
    );
}

#[test]
fn digest_challenge_then_success_or_403() {
    let (_dir, node) = node("sip_auth = true\n");
    for alg in [
        rendezvous::sip::digest::Algorithm::Md5,
        rendezvous::sip::digest::Algorithm::Sha256,
    ] {
        let mut bob = Ua::udp(node.sip_addr, "bob");
        bob.algorithm = alg;
        let r = bob.req("REGISTER", "bob").header("Expires", "300");
        let (_, challenge) = bob.transact(r.clone());
        assert_eq!(challenge.status, 401);
        let challenges = challenge.headers("WWW-Authenticate");
        assert!(
            challenges[0].contains("algorithm=SHA-256"),
            "{challenges:?}"
        );
        assert!(challenges.iter().any(|c| c.contains("algorithm=MD5")));
        let mut bob = bob.with_password("pw");
        let (_, ok) = bob.transact(r.clone());
        assert_eq!(ok.status, 200, "{:?}: {}", alg, ok.reason);
        assert!(ok.header("Contact").unwrap().contains("expires="));

        let mut mallory = Ua::udp(node.sip_addr, "bob").with_password("wrong");
        mallory.algorithm = alg;
        let r = mallory.req("REGISTER", "bob");
        let (_, denied) = mallory.transact(r);
        assert_eq!(denied.status, 403);
    }
    // Credentials computed for another Request-URI are refused (RFC 2617 §3.2.2.5).
    let mut bob = Ua::udp(node.sip_addr, "bob").with_password("pw");
    let r = bob.req("REGISTER", "bob");
    bob.send(&r);
    let challenge = bob.response_to(&r, WAIT).unwrap();
    let mut replay = bob.authorize(&r, &challenge);
    replay.uri = "sip:elsewhere.example".into();
    bob.send(&replay);
    let resp = bob.response_to(&replay, WAIT).unwrap();
    assert_eq!(resp.status, 400, "{}", resp.reason);

    // Someone else's address-of-record.
    let mut carol = Ua::udp(node.sip_addr, "carol").with_password("pw");
    let mut r = carol.req("REGISTER", "bob");
    r.to = "sip:bob@localhost".into();
    let (_, resp) = carol.transact(r);
    assert_eq!(resp.status, 403);
}

#[test]
fn xmpp_and_sip_users_see_each_other() {
    let (_dir, node) = node(OPEN);
    // XMPP alice, with bob (a SIP user) approved both ways by the domain policy.
    let mut alice = Client::login_plain(node.addr, "alice", "pw", "laptop");
    alice.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
    alice.expect("id='r1'");
    alice.send("<presence to='bob@localhost' type='subscribe'/>");
    alice.expect("subscription='to'");
    alice.send("<presence><show>away</show><status>in a meeting</status></presence>");
    // Her own presence comes back once the server has it (RFC 6121 §4.2.2).
    alice.expect("in a meeting");

    // SIP bob watches alice and sees her XMPP presence as PIDF.
    let mut bob = Ua::udp(node.sip_addr, "bob");
    let _ = subscribe(&mut bob, "alice", 300);
    let n = bob.notify(WAIT).unwrap();
    let b = body(&n);
    assert!(
        b.contains("<basic>open</basic>") && b.contains("in a meeting"),
        "{b}"
    );
    assert!(
        b.contains("away"),
        "show away maps to an RPID activity: {b}"
    );

    // alice goes dnd: bob is notified.
    alice.send("<presence><show>dnd</show><status>busy now</status></presence>");
    let n = bob.notify(WAIT).expect("NOTIFY after XMPP change");
    assert!(body(&n).contains("busy now"), "{}", body(&n));

    // bob publishes over SIP: alice sees XMPP presence from bob.
    publish(&mut bob, "deskphone", true, "on the road", None);
    let p = alice.expect("on the road");
    assert!(p.contains("from='bob@localhost/"), "{p}");

    // alice goes offline: bob gets basic closed.
    drop(alice);
    let mut closed = false;
    for n in bob.notifies_within(Duration::from_secs(2)) {
        closed |= body(&n).contains("<basic>closed</basic>");
    }
    assert!(closed, "watcher sees the XMPP user go offline");
}

#[test]
fn roster_policy_keeps_watchers_pending_until_the_xmpp_user_approves() {
    let (_dir, node) = node("sip_auth = false\npresence_policy = \"roster\"\n");
    let mut alice = Client::login_plain(node.addr, "alice", "pw", "laptop");
    alice.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
    alice.expect("id='r1'");
    alice.send("<presence><status>here</status></presence>");

    let mut bob = Ua::udp(node.sip_addr, "bob");
    let _ = subscribe(&mut bob, "alice", 300);
    let n = bob.notify(WAIT).unwrap();
    assert!(n
        .header("Subscription-State")
        .unwrap()
        .starts_with("pending"));
    assert!(n.body().is_empty(), "no state while pending");

    // alice is asked through XMPP and approves.
    alice.expect("type='subscribe'");
    alice.send("<presence to='bob@localhost' type='subscribed'/>");
    let n = bob.notify(WAIT).expect("NOTIFY once approved");
    assert!(n
        .header("Subscription-State")
        .unwrap()
        .starts_with("active"));
    assert!(body(&n).contains("here"), "{}", body(&n));
}

#[test]
fn messages_cross_between_xmpp_and_sip() {
    let (_dir, node) = node(OPEN);
    let mut bob = Ua::tcp(node.sip_addr, "bob");
    let r = bob.req("REGISTER", "bob").header("Expires", "300");
    let (_, resp) = bob.transact(r);
    assert_eq!(resp.status, 200);

    let mut alice = Client::login_plain(node.addr, "alice", "pw", "laptop");
    alice.send("<presence/>");
    alice.send("<message to='bob@localhost' type='chat'><body>hi bob</body></message>");
    let m = bob.next_request("MESSAGE", WAIT).expect("SIP MESSAGE");
    assert_eq!(body(&m), "hi bob");
    assert!(
        m.base.from.uri.contains("alice@localhost"),
        "{}",
        m.base.from.uri
    );
    bob.answer(&m, 200, "OK");

    let r = bob
        .req("MESSAGE", "alice")
        .body("text/plain", "hello alice");
    let (_, resp) = bob.transact(r);
    assert_eq!(resp.status, 200);
    let got = alice.expect("hello alice");
    assert!(got.contains("from='bob@localhost'"), "{got}");

    // To a user who is offline everywhere: stored (202), delivered at login.
    let r = bob.req("MESSAGE", "carol").body("text/plain", "later");
    let (_, resp) = bob.transact(r);
    assert_eq!(resp.status, 202);
    let mut carol = Client::login_plain(node.addr, "carol", "pw", "pc");
    carol.send("<presence/>");
    carol.expect("later");

    let r = bob.req("MESSAGE", "nobody").body("text/plain", "?");
    let (_, resp) = bob.transact(r);
    assert_eq!(resp.status, 404);
}

#[test]
fn subscriptions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    add_users(dir.path(), &[("alice", "pw"), ("bob", "pw")]);
    let text = format!("{}[sip]\n{OPEN}\n", test_config(dir.path(), ""));
    let mut bob;
    {
        let mut node = TestNode::start(&text);
        bob = Ua::udp(node.sip_addr, "bob");
        let _ = subscribe(&mut bob, "alice", 600);
        bob.notify(WAIT).unwrap();
        node.stop();
    }
    let node = TestNode::start(&text);
    // The restored subscription is told the current state at once...
    let n = bob.notify(WAIT).expect("NOTIFY from the restarted node");
    assert!(n
        .header("Subscription-State")
        .unwrap()
        .starts_with("active"));
    // ...and keeps being notified.
    let mut alice = Ua::udp(node.sip_addr, "alice");
    publish(&mut alice, "t", true, "after restart", None);
    let n = bob.notify(WAIT).expect("NOTIFY for a change after restart");
    assert!(body(&n).contains("after restart"));
}

#[test]
fn tcp_keepalive_ping_gets_a_pong() {
    let (_dir, node) = node(OPEN);
    let mut ua = Ua::tcp(node.sip_addr, "bob");
    ua.send_raw(b"\r\n\r\n");
    assert_eq!(ua.read_raw(WAIT), b"\r\n");
    let r = ua.req("OPTIONS", "alice");
    let (_, resp) = ua.transact(r);
    assert_eq!(resp.status, 200);
}

#[test]
fn an_expired_publication_is_withdrawn() {
    let (_dir, node) = node(&format!("{OPEN}min_expires = 1\n"));
    let mut alice = Ua::udp(node.sip_addr, "alice");
    let mut bob = Ua::udp(node.sip_addr, "bob");
    let _ = subscribe(&mut bob, "alice", 300);
    bob.notify(WAIT).unwrap();
    let user = alice.user.clone();
    let r = alice
        .req("PUBLISH", &user)
        .header("Event", "presence")
        .header("Expires", "1")
        .body("application/pidf+xml", pidf(&user, "t", true, "brief"));
    let (_, resp) = alice.transact(r);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Expires"), Some("1"));
    let etag = resp.header("SIP-ETag").unwrap().to_string();
    let n = bob.notify(WAIT).unwrap();
    assert!(body(&n).contains("brief"));
    let n = bob
        .notify(Duration::from_secs(4))
        .expect("NOTIFY when it expires");
    let b = body(&n);
    assert!(
        !b.contains("brief") && b.contains("<basic>closed</basic>"),
        "{b}"
    );
    // Its entity-tag is gone with it.
    let r = alice
        .req("PUBLISH", &user)
        .header("Event", "presence")
        .header("SIP-If-Match", etag.as_str())
        .header("Expires", "60");
    let (_, resp) = alice.transact(r);
    assert_eq!(resp.status, 412);
}

#[test]
fn an_xmpp_session_named_like_a_sip_publication_still_gets_presence() {
    let (_dir, node) = node(OPEN);
    // bob publishes over SIP with tuple id "lg": XMPP contacts see bob@localhost/lg.
    let mut bob_sip = Ua::udp(node.sip_addr, "bob");
    publish(&mut bob_sip, "lg", true, "phone", None);
    // Then bob logs in over XMPP with the same resource name, with alice as contact.
    let mut bob = Client::login_plain(node.addr, "bob", "pw", "lg");
    bob.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
    bob.expect("id='r1'");
    bob.send("<presence to='alice@localhost' type='subscribe'/>");
    bob.expect("subscription='to'");
    bob.send("<presence/>");
    let mut alice = Client::login_plain(node.addr, "alice", "pw", "laptop");
    alice.send("<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>");
    alice.expect("id='r2'");
    // alice's presence reaches bob's XMPP session (before the fix it went nowhere: the
    // session's presence had landed on the publication's route of the same name).
    alice.send("<presence><status>hello bob</status></presence>");
    let p = bob.expect("hello bob");
    assert!(p.contains("from='alice@localhost/laptop'"), "{p}");
}
