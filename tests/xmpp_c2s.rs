//! A real node on an ephemeral port, driven with raw XML over TCP (RFC 6120 / RFC 6121).

mod common;

use std::time::Duration;

use common::*;

fn node_with(users: &[(&str, &str)], limits: &str) -> (TestNode, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("t1");
    add_users(&data, users);
    let node = TestNode::start(&test_config(&data, limits));
    (node, dir)
}

#[test]
fn login_roster_subscription_presence_message() {
    let (node, _dir) = node_with(&[("alice", "wonder"), ("bob", "builder")], "");
    let mut alice = Client::login_scram(node.addr, "alice", "wonder", "home");
    let mut bob = Client::login_plain(node.addr, "bob", "builder", "work");
    assert_eq!(alice.jid, "alice@localhost/home");
    assert_eq!(bob.jid, "bob@localhost/work");

    // Roster get (RFC 6121 §2.1.3) marks both resources interested.
    alice.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
    alice.expect("id='r1'");
    bob.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
    bob.expect("id='r1'");
    alice.send("<presence/>");
    bob.send("<presence/>");

    // Roster set with a group → push (RFC 6121 §2.3).
    alice.send("<iq type='set' id='r2'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'><group>Friends</group></item></query></iq>");
    assert!(alice.expect("id='r2'").contains("type='result'"));
    let push = alice.expect("type='set'");
    assert!(
        push.contains("jid='bob@localhost'") && push.contains("<group>Friends</group>"),
        "{push}"
    );

    // alice subscribes to bob (RFC 6121 §3.1): bob gets the request with a bare from.
    alice.send("<presence to='bob@localhost' type='subscribe'/>");
    let req = bob.expect("type='subscribe'");
    assert!(req.contains("from='alice@localhost'"), "{req}");
    let ask = alice.expect("ask='subscribe'");
    assert!(ask.contains("subscription='none'"), "{ask}");
    // bob approves: alice's item becomes 'to' and she receives bob's presence.
    bob.send("<presence to='alice@localhost' type='subscribed'/>");
    // Roster push, then the approval, then bob's current presence (RFC 6121 §3.1.5, §3.1.6).
    alice.expect_in_order(&[
        "subscription='to'",
        "type='subscribed'",
        "<presence to='alice@localhost' from='bob@localhost/work'",
    ]);
    alice.drain();
    // And the other way round, so both are 'both'.
    bob.send("<presence to='alice@localhost' type='subscribe'/>");
    alice.expect("type='subscribe'");
    alice.send("<presence to='bob@localhost' type='subscribed'/>");
    bob.expect("subscription='both'");
    alice.expect("subscription='both'");

    // Presence broadcast with show/status (RFC 6121 §4.4).
    alice.send("<presence><show>away</show><status>at lunch</status></presence>");
    let p = bob.expect("at lunch");
    assert!(p.contains("from='alice@localhost/home'"), "{p}");

    // Chat (RFC 6121 §5): from is stamped by the server, whatever the client wrote.
    alice.send("<message to='bob@localhost' type='chat' from='mallory@localhost/x'><body>hello bob</body></message>");
    let m = bob.expect("hello bob");
    assert!(m.contains("from='alice@localhost/home'"), "{m}");
    bob.send("<message to='alice@localhost/home' type='chat'><body>hi alice</body></message>");
    alice.expect("hi alice");

    // bob's socket drops: alice sees him unavailable (RFC 6121 §4.5.2, also on a dropped socket).
    drop(bob);
    let u = alice.expect("type='unavailable'");
    assert!(u.contains("from='bob@localhost/work'"), "{u}");
}

#[test]
fn malformed_xml_closes_only_that_stream() {
    let (node, _dir) = node_with(&[("carol", "pw"), ("eve", "pw")], "");
    let mut carol = Client::login_plain(node.addr, "carol", "pw", "r");
    let mut eve = Client::login_plain(node.addr, "eve", "pw", "r");
    eve.send("<message to='carol@localhost'><body>x</bdoy></message>");
    eve.expect("<not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    assert!(eve.closed_within(Duration::from_secs(5)), "socket closed");
    carol.ping("c1");
}

#[test]
fn entity_declaration_gets_restricted_xml() {
    let (node, _dir) = node_with(&[("carol", "pw")], "");
    let mut carol = Client::login_plain(node.addr, "carol", "pw", "r");
    let mut c = Client::connect(node.addr);
    c.send("<?xml version='1.0'?><!DOCTYPE lol [<!ENTITY lol 'lol'>]><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>");
    c.expect("<restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    assert!(c.closed_within(Duration::from_secs(5)));
    carol.ping("c1");
}

#[test]
fn oversized_stanza_gets_policy_violation() {
    let (node, _dir) = node_with(&[("carol", "pw"), ("eve", "pw")], "max_stanza_bytes = 4096");
    let mut carol = Client::login_plain(node.addr, "carol", "pw", "r");
    let mut eve = Client::login_plain(node.addr, "eve", "pw", "r");
    let big = "x".repeat(10_000);
    eve.send(&format!(
        "<message to='carol@localhost'><body>{big}</body></message>"
    ));
    eve.expect("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    assert!(eve.closed_within(Duration::from_secs(5)));
    carol.ping("c1");
    assert!(
        carol
            .try_expect("xxxx", Duration::from_millis(300))
            .is_none(),
        "nothing of it delivered"
    );
}

#[test]
fn errors_for_unknown_user_namespace_and_domain() {
    let (node, _dir) = node_with(&[("alice", "pw")], "");
    let mut alice = Client::login_plain(node.addr, "alice", "pw", "r");
    alice.send("<message to='nobody@localhost' id='m1'><body>hi</body></message>");
    let e = alice.expect("id='m1'");
    assert!(
        e.contains("type='error'") && e.contains("<service-unavailable"),
        "{e}"
    );
    alice.send("<iq type='get' id='q1'><query xmlns='urn:example:unknown'/></iq>");
    let e = alice.expect("id='q1'");
    assert!(e.contains("<service-unavailable"), "{e}");
    alice.send("<message to='x@elsewhere.example' id='m2'><body>hi</body></message>");
    let e = alice.expect("id='m2'");
    assert!(e.contains("<remote-server-not-found"), "{e}");
    alice.send("<message to='@@bad' id='m3'><body>hi</body></message>");
    let e = alice.expect("id='m3'");
    assert!(e.contains("<jid-malformed"), "{e}");
    alice
        .send("<iq type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let d = alice.expect("id='d1'");
    assert!(
        d.contains("var='urn:xmpp:ping'") && d.contains("category='server'"),
        "{d}"
    );
}

#[test]
fn wrong_password_and_unknown_mechanism_fail() {
    let (node, _dir) = node_with(&[("alice", "pw")], "");
    let mut c = Client::connect(node.addr);
    let features = c.open_stream();
    assert!(
        features.contains("SCRAM-SHA-256") && features.contains("SCRAM-SHA-1"),
        "{features}"
    );
    c.send(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdyb25n</auth>",
    );
    c.expect("<not-authorized");
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-MAGIC'>AA==</auth>");
    c.expect("<invalid-mechanism");
    c.send("<message to='alice@localhost'><body>sneaky</body></message>");
    c.expect("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
}

#[test]
fn starttls_is_required_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[node]]\nid = \"t1\"\nxmpp = \"127.0.0.1:0\"\nsip = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
        dir.path().join("t1").display()
    );
    let node = TestNode::start(&text);
    let mut c = Client::connect(node.addr);
    let features = c.open_stream();
    assert!(
        features
            .contains("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"),
        "{features}"
    );
    assert!(
        !features.contains("mechanism"),
        "no SASL before TLS: {features}"
    );
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHB3</auth>");
    c.expect("<encryption-required");
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    c.expect("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
}

#[test]
fn resource_conflict_newest_wins() {
    let (node, _dir) = node_with(&[("alice", "pw"), ("bob", "pw")], "");
    let mut old = Client::login_plain(node.addr, "alice", "pw", "phone");
    let mut new = Client::login_plain(node.addr, "alice", "pw", "phone");
    old.expect("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>");
    assert!(old.closed_within(Duration::from_secs(5)));
    new.ping("n1");
    // Messages to the full JID reach the new session.
    let mut bob = Client::login_plain(node.addr, "bob", "pw", "r");
    bob.send("<message to='alice@localhost/phone'><body>to the new one</body></message>");
    new.expect("to the new one");
}

#[test]
fn offline_message_and_pending_subscription_wait_for_login() {
    let (node, _dir) = node_with(&[("alice", "pw"), ("bob", "pw")], "");
    let mut alice = Client::login_plain(node.addr, "alice", "pw", "r");
    alice.send("<presence/>");
    alice.send("<message to='bob@localhost' type='chat'><body>while you were out</body></message>");
    alice.send("<presence to='bob@localhost' type='subscribe'><status>add me</status></presence>");
    alice.ping("a1");
    let mut bob = Client::login_plain(node.addr, "bob", "pw", "r");
    bob.send("<presence/>");
    bob.ping("b1");
    let msg = bob.expect("while you were out");
    assert!(
        msg.contains("from='alice@localhost/r'") && msg.contains("urn:xmpp:delay"),
        "{msg}"
    );
    let sub = bob.expect("add me");
    assert!(
        sub.contains("type='subscribe'") && sub.contains("from='alice@localhost'"),
        "{sub}"
    );
}

#[test]
fn roster_and_private_storage_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("t1");
    add_users(&data, &[("alice", "pw"), ("bob", "pw")]);
    let text = test_config(&data, "");
    {
        let mut node = TestNode::start(&text);
        let mut alice = Client::login_plain(node.addr, "alice", "pw", "r");
        alice.send("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bobby'/></query></iq>");
        alice.expect("id='r1'");
        alice.send("<presence to='bob@localhost' type='subscribe'/>");
        alice.send("<iq type='set' id='p1'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'><color>blue</color></prefs></query></iq>");
        alice.expect("id='p1'");
        node.stop();
        // The client sees an orderly end of stream on shutdown.
        alice.expect("</stream:stream>");
    }
    let node = TestNode::start(&text);
    let mut alice = Client::login_plain(node.addr, "alice", "pw", "r");
    alice.send("<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>");
    let roster = alice.expect("id='r2'");
    assert!(
        roster.contains("jid='bob@localhost'")
            && roster.contains("name='Bobby'")
            && roster.contains("ask='subscribe'"),
        "{roster}"
    );
    alice.send("<iq type='get' id='p2'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>");
    let p = alice.expect("id='p2'");
    assert!(p.contains("<color>blue</color>"), "{p}");
    // bob's pending request from alice survived too.
    let mut bob = Client::login_plain(node.addr, "bob", "pw", "r");
    bob.send("<presence/>");
    let sub = bob.expect("type='subscribe'");
    assert!(sub.contains("from='alice@localhost'"), "{sub}");
}

#[test]
fn in_band_registration_then_login() {
    let (node, _dir) = node_with(&[], "");
    let mut c = Client::connect(node.addr);
    let features = c.open_stream();
    assert!(
        features.contains("http://jabber.org/features/iq-register"),
        "{features}"
    );
    c.send("<iq type='get' id='g1'><query xmlns='jabber:iq:register'/></iq>");
    let form = c.expect("id='g1'");
    assert!(
        form.contains("<username/>") && form.contains("<password/>"),
        "{form}"
    );
    c.send("<iq type='set' id='s1'><query xmlns='jabber:iq:register'><username>dave</username><password>pw</password></query></iq>");
    let r = c.expect("id='s1'");
    assert!(r.contains("type='result'"), "{r}");
    c.send("<iq type='set' id='s2'><query xmlns='jabber:iq:register'><username>dave</username><password>x</password></query></iq>");
    let r = c.expect("id='s2'");
    assert!(r.contains("<conflict"), "{r}");
    let mut dave = Client::login_scram(node.addr, "dave", "pw", "r");
    dave.ping("d1");
}

#[test]
fn slow_reader_is_cut_off_and_others_carry_on() {
    let (node, _dir) = node_with(
        &[("slow", "pw"), ("fast", "pw"), ("other", "pw")],
        "max_stanza_bytes = 8192\nsend_queue_bytes = 65536",
    );
    let mut slow = Client::login_plain(node.addr, "slow", "pw", "r");
    slow.send("<presence/>");
    slow.ping("s1");
    let mut fast = Client::login_plain(node.addr, "fast", "pw", "r");
    let mut other = Client::login_plain(node.addr, "other", "pw", "r");
    // slow never reads again; fast floods it with 4 KiB headlines (no error bounces once it
    // is gone: RFC 6121 §8.5.2.2.1), in bounded batches: at most 30 × 400 × 4 KiB ≈ 48 MB,
    // well past the kernel's socket buffers and the 64 KiB send queue.
    let body = "y".repeat(4000);
    let mut cut_off = false;
    for batch in 0..30 {
        for _ in 0..400 {
            fast.send(&format!(
                "<message to='slow@localhost' type='headline'><body>{body}</body></message>"
            ));
        }
        // An iq to its full JID is refused once the session is gone (RFC 6121 §8.5.3.1).
        fast.send(&format!("<iq type='get' id='probe{batch}' to='slow@localhost/r'><ping xmlns='urn:xmpp:ping'/></iq>"));
        other.ping(&format!("o{batch}"));
        if fast
            .try_expect("<service-unavailable", Duration::from_millis(500))
            .is_some()
        {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "the slow reader was disconnected");
    other.ping("end");
    fast.ping("end");
    // Its socket is closed after what it had not read.
    assert!(slow.closed_within(Duration::from_secs(10)));
}

#[test]
fn keepalives_pings_and_idle_timeout() {
    let (node, _dir) = node_with(
        &[("alice", "pw")],
        "ping_after_ms = 300\nidle_timeout_ms = 900",
    );
    let mut alice = Client::login_plain(node.addr, "alice", "pw", "r");
    // Whitespace keepalives (RFC 6120 §4.6.1) are accepted and keep the stream open.
    for _ in 0..4 {
        alice.send(" ");
        std::thread::sleep(Duration::from_millis(150));
    }
    alice.ping("c1");
    // Silence: the server pings (XEP-0199 §4.2); an answer keeps the stream alive.
    let ping = alice.expect("<ping xmlns='urn:xmpp:ping'/>");
    assert!(
        ping.contains("type='get'") && ping.contains("to='alice@localhost/r'"),
        "{ping}"
    );
    let id = between(&ping, "id='", "'").to_string();
    alice.send(&format!("<iq type='result' id='{id}' to='localhost'/>"));
    alice.ping("c2");
    // No answer at all: connection-timeout (RFC 6120 §4.9.3.4) and the socket closes.
    alice.expect("<connection-timeout");
    assert!(alice.closed_within(Duration::from_secs(5)));
}

#[test]
fn bare_jid_messages_go_to_highest_priority() {
    let (node, _dir) = node_with(&[("alice", "pw"), ("bob", "pw")], "");
    let mut low = Client::login_plain(node.addr, "alice", "pw", "low");
    let mut high = Client::login_plain(node.addr, "alice", "pw", "high");
    let mut negative = Client::login_plain(node.addr, "alice", "pw", "neg");
    low.send("<presence><priority>1</priority></presence>");
    high.send("<presence><priority>5</priority></presence>");
    negative.send("<presence><priority>-1</priority></presence>");
    // Each resource sees its siblings' presence (RFC 6121 §4.2.2) — and so is known available.
    low.expect("from='alice@localhost/high'");
    low.expect("from='alice@localhost/neg'");
    let mut bob = Client::login_plain(node.addr, "bob", "pw", "r");
    bob.send("<message to='alice@localhost' type='chat'><body>for the best</body></message>");
    high.expect("for the best");
    bob.send("<message to='alice@localhost/low' type='chat'><body>for low only</body></message>");
    low.expect("for low only");
    high.ping("h");
    low.ping("l");
    negative.ping("n");
    for c in [&mut low, &mut negative] {
        assert!(
            !c.drain().iter().any(|s| s.contains("for the best")),
            "RFC 6121 §8.5.2.1.1"
        );
    }
    assert!(!high.drain().iter().any(|s| s.contains("for low only")));
}

#[test]
fn directed_presence_is_followed_by_unavailable() {
    let (node, _dir) = node_with(&[("alice", "pw"), ("bob", "pw")], "");
    let mut alice = Client::login_plain(node.addr, "alice", "pw", "r");
    alice.send("<presence/>");
    let mut bob = Client::login_plain(node.addr, "bob", "pw", "r");
    bob.send("<presence/>");
    // No subscription between them: directed presence only (RFC 6121 §4.6).
    bob.send("<presence to='alice@localhost/r'><status>psst</status></presence>");
    let p = alice.expect("psst");
    assert!(p.contains("from='bob@localhost/r'"), "{p}");
    drop(bob);
    let u = alice.expect("type='unavailable'");
    assert!(u.contains("from='bob@localhost/r'"), "{u}");
}

#[test]
fn connection_limit_refuses_extra_connections() {
    let (node, _dir) = node_with(&[("alice", "pw")], "max_connections = 2");
    let mut a = Client::login_plain(node.addr, "alice", "pw", "a");
    let mut b = Client::connect(node.addr);
    b.open_stream();
    let mut c = Client::connect(node.addr);
    c.expect("<resource-constraint");
    assert!(c.closed_within(Duration::from_secs(5)));
    a.ping("a");
}
