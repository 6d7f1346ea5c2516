use super::*;
use crate::store::{MemoryStore, SledStore};
use crate::xmpp::roster::{PendingIn, RosterItem};
use crate::xmpp::subscription::SubKind;
use crate::xmpp::subscription::{SubState, Subscription};
use std::sync::Arc;

fn creds(n: u8) -> ScramCredentials {
    ScramCredentials {
        salt: vec![n; 16],
        iterations: 4096,
        stored_key: vec![n; 20],
        server_key: vec![n.wrapping_add(1); 20],
    }
}

fn account(user: &str) -> Account {
    Account {
        username: user.to_string(),
        scram_sha1: creds(1),
        scram_sha256: creds(2),
        created_unix: 1_700_000_000,
        sip: Some(SipDigest {
            realm: "example.com".into(),
            md5: "0".repeat(32),
            sha256: "1".repeat(64),
        }),
    }
}

fn sip_sub(presentity: &str, call_id: &str) -> SipSubscriptionRecord {
    SipSubscriptionRecord {
        presentity: presentity.into(),
        call_id: call_id.into(),
        local_tag: "lt".into(),
        remote_tag: "rt".into(),
        watcher: "sip:bob@example.com".into(),
        watcher_user: Some("bob".into()),
        remote_target: "sip:bob@192.0.2.4:5070".into(),
        route_set: vec![],
        transport: "UDP".into(),
        peer: "192.0.2.4:5070".into(),
        local_cseq: 3,
        remote_cseq: 1,
        event_id: None,
        expires_unix: 1_700_003_600,
        pending: false,
    }
}

fn check_sip_subscriptions(s: &dyn Store) {
    s.put_sip_subscription(&sip_sub("alice", "c1")).unwrap();
    s.put_sip_subscription(&sip_sub("alice2", "c2")).unwrap();
    let mut updated = sip_sub("alice", "c1");
    updated.local_cseq = 4;
    s.put_sip_subscription(&updated).unwrap();
    assert_eq!(
        s.sip_subscriptions().unwrap(),
        [updated.clone(), sip_sub("alice2", "c2")]
    );
    assert!(s.remove_sip_subscription("alice", "c1", "lt").unwrap());
    assert!(!s.remove_sip_subscription("alice", "c1", "lt").unwrap());
    s.put_sip_subscription(&updated).unwrap();
    s.create_account(&account("alice")).unwrap();
    s.delete_user("alice").unwrap();
    assert_eq!(s.sip_subscriptions().unwrap(), [sip_sub("alice2", "c2")]);
}

#[test]
fn accounts_without_sip_hashes_still_decode() {
    // A record written before SIP support: no "sip" field.
    let json = br#"{"username":"old","scram_sha1":{"salt":[1],"iterations":4096,"stored_key":[2],"server_key":[3]},"scram_sha256":{"salt":[1],"iterations":4096,"stored_key":[2],"server_key":[3]},"created_unix":1}"#;
    let mut v = vec![RECORD_VERSION];
    v.extend_from_slice(json);
    let a: Account = decode(Space::Accounts, b"old", &v).unwrap();
    assert_eq!(a.sip, None);
}

fn sample_roster() -> Roster {
    let mut r = Roster::default();
    r.items.insert(
        "juliet@example.com".into(),
        RosterItem {
            jid: "juliet@example.com".into(),
            name: Some("Juliet".into()),
            subscription: Subscription::Both,
            ask: false,
            groups: vec!["Friends".into(), "Capulets".into()],
        },
    );
    r.pending_in.insert(
        "nurse@example.com".into(),
        PendingIn {
            status: Some("let me in".into()),
        },
    );
    r
}

// ---- checks run against every backend ----

fn check_accounts(s: &dyn Store) {
    assert_eq!(s.account("alice").unwrap(), None);
    assert!(s.create_account(&account("alice")).unwrap());
    assert!(!s.create_account(&account("alice")).unwrap());
    assert_eq!(s.account("alice").unwrap(), Some(account("alice")));
    let mut changed = account("alice");
    changed.scram_sha256 = creds(9);
    s.put_account(&changed).unwrap();
    assert_eq!(s.account("alice").unwrap(), Some(changed));
    assert_eq!(s.account("al").unwrap(), None);
    assert!(s.has_account("alice").unwrap());
    assert!(
        !s.has_account("al").unwrap(),
        "a prefix of a name is not an account"
    );
    assert!(s.create_account(&account("bob")).unwrap());
    assert!(s.create_account(&account("al")).unwrap());
    assert_eq!(s.list_accounts().unwrap(), ["al", "alice", "bob"]);
}

fn check_rosters(s: &dyn Store) {
    assert_eq!(s.roster("alice").unwrap(), Roster::default());
    s.put_roster("alice", &sample_roster()).unwrap();
    assert_eq!(s.roster("alice").unwrap(), sample_roster());
    assert_eq!(s.roster("al").unwrap(), Roster::default());
    s.put_roster("alice", &Roster::default()).unwrap();
    assert_eq!(s.roster("alice").unwrap(), Roster::default());
}

fn check_private(s: &dyn Store) {
    let key = "storage storage:bookmarks";
    assert_eq!(s.private_get("alice", key).unwrap(), None);
    s.private_put("alice", key, "<storage xmlns='storage:bookmarks'/>")
        .unwrap();
    s.private_put("alice", "other", "<x/>").unwrap();
    assert_eq!(
        s.private_get("alice", key).unwrap().as_deref(),
        Some("<storage xmlns='storage:bookmarks'/>")
    );
    s.private_put(
        "alice",
        key,
        "<storage xmlns='storage:bookmarks'><c/></storage>",
    )
    .unwrap();
    assert_eq!(
        s.private_get("alice", key).unwrap().as_deref(),
        Some("<storage xmlns='storage:bookmarks'><c/></storage>")
    );
    assert_eq!(s.private_get("al", key).unwrap(), None);
    assert_eq!(s.private_get("alice2", key).unwrap(), None);
}

fn check_offline(s: &dyn Store) {
    assert_eq!(s.offline_take("alice").unwrap(), Vec::<String>::new());
    for i in 0..3 {
        assert!(s
            .offline_push("alice", &format!("<message n='{i}'/>"), 3)
            .unwrap());
    }
    assert!(!s.offline_push("alice", "<message n='3'/>", 3).unwrap());
    assert!(s.offline_push("al", "<message to='al'/>", 3).unwrap());
    assert!(!s.offline_push("bob", "<message/>", 0).unwrap());
    assert_eq!(
        s.offline_take("alice").unwrap(),
        ["<message n='0'/>", "<message n='1'/>", "<message n='2'/>"]
    );
    assert_eq!(s.offline_take("alice").unwrap(), Vec::<String>::new());
    assert!(s.offline_push("alice", "<message n='4'/>", 3).unwrap());
    assert_eq!(s.offline_take("alice").unwrap(), ["<message n='4'/>"]);
    assert_eq!(s.offline_take("al").unwrap(), ["<message to='al'/>"]);
}

fn check_offline_order_beyond_255(s: &dyn Store) {
    // Big-endian sequence numbers keep arrival order past one byte.
    for i in 0..300 {
        assert!(s.offline_push("carol", &i.to_string(), 1000).unwrap());
    }
    let got = s.offline_take("carol").unwrap();
    let want: Vec<String> = (0..300).map(|i: i32| i.to_string()).collect();
    assert_eq!(got, want);
}

fn check_delete_user(s: &dyn Store) {
    for user in ["alice", "alice2", "al"] {
        s.create_account(&account(user)).unwrap();
        s.put_roster(user, &sample_roster()).unwrap();
        s.private_put(user, "k", "<k/>").unwrap();
        s.offline_push(user, "<message/>", 10).unwrap();
    }
    assert!(s.delete_user("alice").unwrap());
    assert_eq!(s.account("alice").unwrap(), None);
    assert_eq!(s.roster("alice").unwrap(), Roster::default());
    assert_eq!(s.private_get("alice", "k").unwrap(), None);
    assert_eq!(s.offline_take("alice").unwrap(), Vec::<String>::new());
    assert!(!s.delete_user("alice").unwrap());
    for user in ["alice2", "al"] {
        assert_eq!(s.account(user).unwrap(), Some(account(user)));
        assert_eq!(s.roster(user).unwrap(), sample_roster());
        assert_eq!(s.private_get(user, "k").unwrap().as_deref(), Some("<k/>"));
        assert_eq!(s.offline_take(user).unwrap(), ["<message/>"]);
    }
    assert_eq!(s.list_accounts().unwrap(), ["al", "alice2"]);
}

fn check_version_mismatch(s: &dyn Store) {
    let mut v = encode(Space::Accounts, b"alice", &account("alice")).unwrap();
    v[0] = 2;
    s.put(Space::Accounts, b"alice", &v).unwrap();
    match s.account("alice") {
        Err(StoreError::Version { space, key, found }) => {
            assert_eq!((space, key.as_str(), found), (Space::Accounts, "alice", 2));
        }
        other => panic!("expected Version error, got {other:?}"),
    }
    s.put(Space::Rosters, b"alice", &[0]).unwrap();
    assert!(matches!(
        s.roster("alice"),
        Err(StoreError::Version { found: 0, .. })
    ));
}

fn check_corrupt(s: &dyn Store) {
    s.put(Space::Accounts, b"alice", b"\x01{not json").unwrap();
    match s.account("alice") {
        Err(StoreError::Corrupt { space, key, reason }) => {
            assert_eq!((space, key.as_str()), (Space::Accounts, "alice"));
            assert!(reason.contains("key must be a string"), "{reason}");
        }
        other => panic!("expected Corrupt error, got {other:?}"),
    }
    s.put(Space::Rosters, b"alice", b"").unwrap();
    match s.roster("alice") {
        Err(StoreError::Corrupt { reason, .. }) => {
            assert_eq!(reason, "empty value (no version byte)");
        }
        other => panic!("expected Corrupt error, got {other:?}"),
    }
    // A corrupt offline message: take fails and removes nothing.
    s.offline_push("bob", "<message/>", 10).unwrap();
    let mut key = b"bob\0".to_vec();
    key.extend_from_slice(&1u64.to_be_bytes());
    s.put(Space::Offline, &key, b"\x01[1]").unwrap();
    let err = s.offline_take("bob").unwrap_err();
    assert_eq!(
        err.to_string(),
        "corrupt record in offline at key \"bob\\0\\0\\0\\0\\0\\0\\0\\0\\u{1}\": \
         invalid type: sequence, expected a string at line 1 column 0"
    );
    assert_eq!(s.scan_prefix(Space::Offline, b"bob\0").unwrap().len(), 2);
}

fn check_invalid_users(s: &dyn Store) {
    match s.account("") {
        Err(StoreError::InvalidKey { space, reason, .. }) => {
            assert_eq!((space, reason), (Space::Accounts, "user name is empty"));
        }
        other => panic!("expected InvalidKey, got {other:?}"),
    }
    let err = s.offline_push("a\0b", "<m/>", 10).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid key for offline: \"a\\0b\": user name contains NUL"
    );
    assert!(s.private_put("", "k", "<k/>").is_err());
    assert!(s.delete_user("x\0").is_err());
}

fn check_raw_ops(s: &dyn Store) {
    assert!(s.insert_new(Space::Meta, b"k", b"1").unwrap());
    assert!(!s.insert_new(Space::Meta, b"k", b"2").unwrap());
    assert_eq!(
        s.get(Space::Meta, b"k").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        s.get(Space::Private, b"k").unwrap(),
        None,
        "spaces are separate"
    );
    s.put(Space::Meta, b"k", b"3").unwrap();
    s.put(Space::Meta, b"ka", b"4").unwrap();
    s.put(Space::Meta, b"j", b"5").unwrap();
    s.put(Space::Meta, b"l", b"6").unwrap();
    assert_eq!(
        s.scan_prefix(Space::Meta, b"k").unwrap(),
        [
            (b"k".to_vec(), b"3".to_vec()),
            (b"ka".to_vec(), b"4".to_vec())
        ]
    );
    assert_eq!(s.scan_prefix(Space::Meta, b"").unwrap().len(), 4);
    assert!(s.remove(Space::Meta, b"k").unwrap());
    assert!(!s.remove(Space::Meta, b"k").unwrap());
    s.flush().unwrap();
}

fn check_through_arc(s: Arc<dyn Store>) {
    assert!(s.create_account(&account("dave")).unwrap());
    assert_eq!(s.list_accounts().unwrap(), ["dave"]);
}

/// Runs one check against a fresh `MemoryStore` and a fresh `SledStore`.
macro_rules! on_every_backend {
    ($($check:ident),* $(,)?) => {
        mod memory_backend {
            $(#[test] fn $check() { super::$check(&crate::store::MemoryStore::new()); })*
        }
        mod sled_backend {
            $(#[test] fn $check() {
                let dir = tempfile::tempdir().unwrap();
                let store = crate::store::SledStore::open(dir.path()).unwrap();
                super::$check(&store);
            })*
        }
    };
}

on_every_backend!(
    check_accounts,
    check_rosters,
    check_private,
    check_offline,
    check_offline_order_beyond_255,
    check_delete_user,
    check_sip_subscriptions,
    check_version_mismatch,
    check_corrupt,
    check_invalid_users,
    check_raw_ops,
);

#[test]
fn works_through_arc_dyn_store() {
    check_through_arc(Arc::new(MemoryStore::new()));
    let dir = tempfile::tempdir().unwrap();
    check_through_arc(Arc::new(SledStore::open(dir.path()).unwrap()));
}

#[test]
fn sled_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.create_account(&account("alice")).unwrap();
        s.put_roster("alice", &sample_roster()).unwrap();
        s.private_put("alice", "k", "<k/>").unwrap();
        s.offline_push("alice", "<message n='0'/>", 10).unwrap();
        s.offline_push("alice", "<message n='1'/>", 10).unwrap();
        s.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.dir(), dir.path());
    assert_eq!(s.account("alice").unwrap(), Some(account("alice")));
    assert_eq!(s.roster("alice").unwrap(), sample_roster());
    assert_eq!(
        s.private_get("alice", "k").unwrap().as_deref(),
        Some("<k/>")
    );
    assert!(s.offline_push("alice", "<message n='2'/>", 10).unwrap());
    assert_eq!(
        s.offline_take("alice").unwrap(),
        ["<message n='0'/>", "<message n='1'/>", "<message n='2'/>"]
    );
}

#[test]
fn sled_second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SledStore::open(dir.path()).unwrap();
    match SledStore::open(dir.path()) {
        Err(StoreError::Locked(path)) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    let msg = SledStore::open(dir.path()).unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "store {} is in use by another process (is a node running?)",
            dir.path().display()
        )
    );
}

#[test]
fn sled_open_on_a_file_is_a_backend_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        SledStore::open(&file),
        Err(StoreError::Backend(m)) if m.starts_with("sled: open ")
    ));
}

#[test]
fn merge3_takes_the_old_homes_changes_unless_the_new_home_changed_the_same_contact() {
    let (a, b, c, d) = (
        "a@example.net",
        "b@example.net",
        "c@example.net",
        "d@example.net",
    );
    let mut base = Roster::default();
    base.apply_state(a, SubState::of(Subscription::Both, false, false));
    base.apply_state(b, SubState::of(Subscription::None, true, false));
    base.groups.insert("kept".into());
    // The old home: `a` cancelled, a request to `c` sent, `d` asks us, a group made.
    let mut theirs = base.clone();
    theirs.apply_state(a, SubState::of(Subscription::From, false, false));
    theirs.apply_state(c, SubState::of(Subscription::None, true, false));
    theirs.apply_state(d, SubState::of(Subscription::None, false, true));
    theirs.groups.insert("new".into());
    // The new home meanwhile: `b` approved us, `c` changed too (it wins there), a group
    // deleted.
    let mut ours = base.clone();
    ours.apply_state(b, SubState::of(Subscription::To, false, false));
    ours.apply_state(c, SubState::of(Subscription::To, false, false));
    ours.groups.remove("kept");

    let m = Roster::merge3(&base, &theirs, &ours);
    assert_eq!(m.state(a), SubState::of(Subscription::From, false, false));
    assert_eq!(m.state(b), SubState::of(Subscription::To, false, false));
    assert_eq!(m.state(c), SubState::of(Subscription::To, false, false));
    assert_eq!(m.state(d), SubState::of(Subscription::None, false, true));
    assert_eq!(m.groups.iter().collect::<Vec<_>>(), ["new"]);
    // Nothing changed at the old home: the new home's copy as it is.
    assert_eq!(Roster::merge3(&base, &base, &ours), ours);
    // Nothing changed at the new home: the old home's copy.
    assert_eq!(Roster::merge3(&base, &theirs, &base), theirs);
    // A removal at the old home goes through.
    let mut removed = base.clone();
    removed.items.remove(a);
    assert!(!Roster::merge3(&base, &removed, &base).items.contains_key(a));
}

#[test]
fn decode_roster_reads_what_put_roster_wrote() {
    let store = crate::store::MemoryStore::new();
    let mut r = Roster::default();
    r.apply_state(
        "x@example.net",
        SubState::of(Subscription::To, false, false),
    );
    store.put_roster("alice", &r).unwrap();
    let raw = store.get(Space::Rosters, b"alice").unwrap();
    assert_eq!(decode_roster("alice", raw.as_deref()).unwrap(), r);
    assert_eq!(decode_roster("alice", None).unwrap(), Roster::default());
    assert!(decode_roster("alice", Some(b"junk")).is_err());
}

#[test]
fn roster_state_and_apply_state() {
    let mut r = Roster::default();
    let jid = "romeo@example.net";
    assert_eq!(r.state(jid), SubState::default());

    // Inbound subscribe (RFC 6121 §3.1.3): pending_in only, no roster item.
    let s = r.state(jid).inbound(SubKind::Subscribe).state;
    r.apply_state(jid, s);
    assert!(r.items.is_empty());
    assert_eq!(r.pending_in.get(jid), Some(&PendingIn::default()));
    assert_eq!(r.state(jid), SubState::of(Subscription::None, false, true));

    // A stored status survives a re-apply.
    r.pending_in.insert(
        jid.into(),
        PendingIn {
            status: Some("hi".into()),
        },
    );
    r.apply_state(jid, SubState::of(Subscription::None, false, true));
    assert_eq!(r.pending_in[jid].status.as_deref(), Some("hi"));

    // User approves (§3.1.5): item created with "from", pending_in cleared.
    let s = r.state(jid).outbound(SubKind::Subscribed).state;
    r.apply_state(jid, s);
    assert!(r.pending_in.is_empty());
    assert_eq!(r.items[jid].subscription, Subscription::From);
    assert!(!r.items[jid].ask);

    // User subscribes back: ask set.
    let s = r.state(jid).outbound(SubKind::Subscribe).state;
    r.apply_state(jid, s);
    assert!(r.items[jid].ask);
    assert_eq!(r.state(jid), SubState::of(Subscription::From, true, false));

    // Contact approves: both.
    let s = r.state(jid).inbound(SubKind::Subscribed).state;
    r.apply_state(jid, s);
    assert_eq!(r.items[jid].subscription, Subscription::Both);
    assert!(!r.items[jid].ask);

    // Both sides cancel: item kept with "none", name and groups untouched.
    r.items.get_mut(jid).unwrap().name = Some("Romeo".into());
    r.apply_state(jid, SubState::default());
    assert_eq!(
        r.items[jid],
        RosterItem {
            jid: jid.into(),
            name: Some("Romeo".into()),
            subscription: Subscription::None,
            ask: false,
            groups: vec![],
        }
    );

    // Outbound subscribe to a stranger creates the item with ask.
    r.apply_state("x@y", SubState::of(Subscription::None, true, false));
    assert!(r.items["x@y"].ask);
    assert_eq!(r.items["x@y"].subscription, Subscription::None);
}

#[test]
fn roster_state_normalises_odd_records() {
    let mut r = sample_roster();
    // "both" plus a pending inbound request is not a defined state.
    r.pending_in
        .insert("juliet@example.com".into(), PendingIn::default());
    r.items.get_mut("juliet@example.com").unwrap().ask = true;
    assert_eq!(
        r.state("juliet@example.com"),
        SubState::of(Subscription::Both, false, false)
    );
}

#[test]
fn record_encoding_is_version_byte_plus_json() {
    let v = encode(Space::Private, b"a\0k", "<k/>").unwrap();
    assert_eq!(v, b"\x01\"<k/>\"");
    let roster_json = serde_json::to_value(sample_roster()).unwrap();
    assert_eq!(
        roster_json["items"]["juliet@example.com"]["subscription"],
        "both"
    );
    // Fields added later default when reading older records.
    let old: RosterItem = serde_json::from_str(r#"{"jid":"a@b"}"#).unwrap();
    assert_eq!(old, RosterItem::new("a@b"));
}
