//! MOE-MP (docs/moe-mp.md) against a real node over raw XML: settings restore and push,
//! tracked exchanges, server-kept groups, contact-add confirmation.

mod common;

use std::time::Duration;

use common::{add_users, test_config, Client, TestNode};

const MOE: &str = "urn:rendezvous:params:xml:ns:moe";

fn node() -> (tempfile::TempDir, TestNode) {
    let dir = tempfile::tempdir().unwrap();
    add_users(
        dir.path(),
        &[("alice", "pw"), ("bob", "pw"), ("carol", "pw")],
    );
    let node = TestNode::start(&test_config(dir.path(), ""));
    (dir, node)
}

fn online(node: &TestNode, user: &str, res: &str) -> Client {
    let mut c = Client::login_plain(node.addr, user, "pw", res);
    c.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>");
    c.expect("id='r0'");
    c.send("<presence/>");
    c.expect(&format!("from='{user}@localhost/{res}'")); // own presence back: available
    c
}

#[test]
fn settings_are_restored_and_pushed() {
    let (_dir, node) = node();
    let mut a = Client::login_plain(node.addr, "alice", "pw", "office");
    a.send(&format!(
        "<iq type='set' id='s1'><query xmlns='jabber:iq:private'>\
         <settings xmlns='{MOE}' version='3'><desktop wallpaper='blue'/></settings>\
         </query></iq>"
    ));
    a.expect("id='s1'");
    drop(a);
    // Login elsewhere: the short form returns them.
    let mut a2 = Client::login_plain(node.addr, "alice", "pw", "laptop");
    a2.send(&format!(
        "<iq type='get' id='s2'><settings xmlns='{MOE}'/></iq>"
    ));
    let got = a2.expect("id='s2'");
    assert!(
        got.contains("type='result'") && got.contains("wallpaper='blue'"),
        "{got}"
    );
    // Announcing push support gets them pushed, and again when another resource saves.
    a2.send(&format!(
        "<presence><moe xmlns='{MOE}' settings='push'/></presence>"
    ));
    let push = a2.expect("wallpaper='blue'");
    assert!(
        push.starts_with("<iq") && push.contains("type='set'"),
        "{push}"
    );
    let mut a3 = Client::login_plain(node.addr, "alice", "pw", "phone");
    a3.send(&format!(
        "<iq type='set' id='s3'><query xmlns='jabber:iq:private'>\
         <settings xmlns='{MOE}' version='4'><desktop wallpaper='green'/></settings>\
         </query></iq>"
    ));
    a3.expect("id='s3'");
    a2.expect("wallpaper='green'");
}

#[test]
fn exchanges_are_tracked_and_stray_answers_refused() {
    let (_dir, node) = node();
    let mut a = online(&node, "alice", "a");
    let mut b = online(&node, "bob", "b");
    a.send(&format!(
        "<message to='bob@localhost'><worklist-request xmlns='{MOE}' id='w1'/></message>"
    ));
    b.expect("worklist-request");
    b.send(&format!(
        "<message to='alice@localhost'><worklist xmlns='{MOE}' id='w1' requester='alice@localhost'>\
         <item name='Budget 2027'/></worklist></message>"
    ));
    let got = a.expect("Budget 2027");
    assert!(got.contains("from='bob@localhost/b'"), "{got}");
    // A second answer to the same exchange is refused with unknown-exchange.
    b.send(&format!(
        "<message to='alice@localhost'><decline xmlns='{MOE}' id='w1' requester='alice@localhost'/></message>"
    ));
    let err = b.expect("type='error'");
    assert!(err.contains("unknown-exchange"), "{err}");
    // Someone else than the addressee cannot answer.
    a.send(&format!(
        "<message to='bob@localhost'><offer xmlns='{MOE}' id='o1'><file name='r.odt' size='3'/></offer></message>"
    ));
    b.expect("<offer");
    let mut c = online(&node, "carol", "c");
    c.send(&format!(
        "<message to='alice@localhost'><decline xmlns='{MOE}' id='o1' requester='alice@localhost'/></message>"
    ));
    let err = c.expect("type='error'");
    assert!(err.contains("not-addressee"), "{err}");
    // An accept of a file that was not offered is invalid.
    b.send(&format!(
        "<message to='alice@localhost'><accept xmlns='{MOE}' id='o1' requester='alice@localhost'>\
         <file name='other.txt'/><endpoint host='127.0.0.1' port='4000' token='tok-12345678'/></accept></message>"
    ));
    let err = b.expect("type='error'");
    assert!(err.contains("invalid-payload"), "{err}");
    // A request for someone not online is refused at once (requests are not stored).
    a.send(&format!(
        "<message to='nobody-here@localhost'><worklist-request xmlns='{MOE}' id='w9'/></message>"
    ));
    assert!(a.expect("id='w9'").contains("item-not-found"));
    drop(c);
    std::thread::sleep(Duration::from_millis(200));
    a.send(&format!(
        "<message to='carol@localhost'><worklist-request xmlns='{MOE}' id='w8'/></message>"
    ));
    let err = a.expect("id='w8'");
    assert!(
        err.contains("service-unavailable") && err.contains("not online"),
        "{err}"
    );
    // A bad request never leaves the sender.
    a.send(&format!(
        "<message to='bob@localhost'><file-request xmlns='{MOE}' id='f1'><file name='x'/></file-request></message>"
    ));
    let err = a.expect("type='error'");
    assert!(err.contains("invalid-payload"), "{err}");
    assert!(b
        .try_expect("file-request", Duration::from_millis(300))
        .is_none());
}

#[test]
fn broadcast_opens_one_exchange_per_addressee() {
    let (_dir, node) = node();
    let mut a = online(&node, "alice", "a");
    let mut b = online(&node, "bob", "b");
    let mut c = online(&node, "carol", "c");
    a.send(&format!(
        "<message to='localhost'><broadcast xmlns='{MOE}' id='b1'>\
         <to jid='bob@localhost'/><to jid='carol@localhost'/>\
         <offer><file name='m.pdf' size='10'/><file name='p.pdf' size='20'/></offer></broadcast></message>"
    ));
    if let Some(e) = a.try_expect("type='error'", Duration::from_millis(500)) {
        panic!("broadcast refused: {e}");
    }
    let ob = b.expect("id='b1/bob@localhost'");
    assert!(ob.contains("m.pdf") && ob.contains("p.pdf"), "{ob}");
    c.expect("id='b1/carol@localhost'");
    b.send(&format!(
        "<message to='alice@localhost'><accept xmlns='{MOE}' id='b1/bob@localhost' requester='alice@localhost'>\
         <file name='m.pdf'/><endpoint host='127.0.0.1' port='4001' token='tok-bbbbbbbb'/></accept></message>"
    ));
    c.send(&format!(
        "<message to='alice@localhost'><decline xmlns='{MOE}' id='b1/carol@localhost' requester='alice@localhost'/></message>"
    ));
    // Each answer arrives on its own (their order depends on two connections).
    a.expect("tok-bbbbbbbb");
    a.expect("<decline");
}

#[test]
fn groups_create_rename_delete() {
    let (_dir, node) = node();
    let mut a = online(&node, "alice", "a");
    let mut b = online(&node, "bob", "b");
    // bob is alice's contact in group Team.
    a.send("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'><group>Team</group></item></query></iq>");
    a.expect("id='r1'");
    a.send("<presence to='bob@localhost' type='subscribe'/>");
    b.expect("type='subscribe'");
    b.send("<presence to='alice@localhost' type='subscribed'/>");
    a.expect("subscription='to'");
    // An empty group is kept.
    a.send(&format!(
        "<iq type='set' id='g1'><groups xmlns='{MOE}'><create name='Friends'/></groups></iq>"
    ));
    a.expect("id='g1'");
    a.send(&format!(
        "<iq type='set' id='g1b'><groups xmlns='{MOE}'><create name='Friends'/></groups></iq>"
    ));
    let err = a.expect("id='g1b'");
    assert!(err.contains("group-exists"), "{err}");
    a.send(&format!(
        "<iq type='get' id='g2'><groups xmlns='{MOE}'/></iq>"
    ));
    let list = a.expect("id='g2'");
    assert!(
        list.contains("name='Friends'") && list.contains("name='Team'"),
        "{list}"
    );
    // Rename: the item is pushed with the new group.
    a.send(&format!("<iq type='set' id='g3'><groups xmlns='{MOE}'><rename name='Team' to='Project X'/></groups></iq>"));
    let pushed = a.expect("<group>Project X</group>");
    assert!(pushed.contains("jid='bob@localhost'"), "{pushed}");
    a.expect("id='g3'");
    // Delete: bob goes with the group, and bob sees alice unsubscribe.
    a.send(&format!(
        "<iq type='set' id='g4'><groups xmlns='{MOE}'><delete name='Project X'/></groups></iq>"
    ));
    let removed = a.expect("subscription='remove'");
    assert!(removed.contains("bob@localhost"), "{removed}");
    b.expect("type='unsubscribe'");
    a.send("<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>");
    let roster = a.expect("id='r2'");
    assert!(!roster.contains("bob@localhost"), "{roster}");
    a.send(&format!(
        "<iq type='set' id='g5'><groups xmlns='{MOE}'><delete name='Nope'/></groups></iq>"
    ));
    assert!(a.expect("id='g5'").contains("unknown-group"));
}

#[test]
fn contact_add_needs_confirmation() {
    let (_dir, node) = node();
    let mut a = online(&node, "alice", "a");
    // carol is offline: the request waits for her.
    a.send(&format!(
        "<iq type='set' id='c1'><add-contact xmlns='{MOE}' jid='carol@localhost' name='Carol' group='Team'/></iq>"
    ));
    a.expect("id='c1'");
    let mut c = Client::login_plain(node.addr, "carol", "pw", "c");
    c.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>");
    c.expect("id='r0'");
    c.send("<presence/>");
    let req = c.expect("contact-request");
    assert!(req.contains("jid='alice@localhost'"), "{req}");
    c.send(&format!(
        "<iq type='set' id='c2'><contact-response xmlns='{MOE}' jid='alice@localhost' accept='true'/></iq>"
    ));
    c.expect("id='c2'");
    let item = a.expect("jid='carol@localhost'");
    assert!(
        item.contains("subscription='both'") && item.contains("name='Carol'"),
        "{item}"
    );
    a.expect("from='carol@localhost/c'"); // presence flows

    // bob refuses: nothing is created and alice is told.
    let mut b = online(&node, "bob", "b");
    a.send(&format!(
        "<iq type='set' id='c3'><add-contact xmlns='{MOE}' jid='bob@localhost'/></iq>"
    ));
    a.expect("id='c3'");
    b.expect("contact-request");
    b.send(&format!(
        "<iq type='set' id='c4'><contact-response xmlns='{MOE}' jid='alice@localhost' accept='false'/></iq>"
    ));
    b.expect("id='c4'");
    a.expect("contact-refused");
    a.send("<iq type='get' id='r9'><query xmlns='jabber:iq:roster'/></iq>");
    let roster = a.expect("id='r9'");
    assert!(!roster.contains("bob@localhost"), "{roster}");
    // A response to no request.
    b.send(&format!(
        "<iq type='set' id='c5'><contact-response xmlns='{MOE}' jid='alice@localhost' accept='true'/></iq>"
    ));
    assert!(b.expect("id='c5'").contains("unknown-request"));
}

#[test]
fn a_late_answer_gets_exchange_expired() {
    let dir = tempfile::tempdir().unwrap();
    add_users(dir.path(), &[("alice", "pw"), ("bob", "pw")]);
    let node = TestNode::start(&test_config(dir.path(), "moe_exchange_ttl_s = 1"));
    let mut a = online(&node, "alice", "a");
    let mut b = online(&node, "bob", "b");
    a.send(&format!(
        "<message to='bob@localhost'><worklist-request xmlns='{MOE}' id='late'/></message>"
    ));
    if let Some(e) = a.try_expect("type='error'", Duration::from_millis(500)) {
        panic!("request refused: {e}");
    }
    b.expect("worklist-request");
    std::thread::sleep(Duration::from_millis(1300));
    b.send(&format!(
        "<message to='alice@localhost'><worklist xmlns='{MOE}' id='late' requester='alice@localhost'/></message>"
    ));
    let err = b.expect("type='error'");
    assert!(err.contains("exchange-expired"), "{err}");
    assert!(a
        .try_expect("<worklist ", Duration::from_millis(300))
        .is_none());
}
