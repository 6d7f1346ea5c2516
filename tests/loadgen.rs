//! `rendezvous loadgen` against a real node on free loopback ports, run as a library call:
//! what a user of the tool checks in its summary (logins, deliveries without loss, latency,
//! SIP transactions and codes, the JSON file), plus failures that must show up as counted
//! errors rather than hangs.

mod common;

use std::time::{Duration, Instant};

use common::{add_users, test_config, TestNode};
use rendezvous::loadgen::{self, Options, ProgressMode, Settings};

/// A node whose SIP watchers are authorized within the domain (so NOTIFYs carry state),
/// with digest authentication on (the default).
fn node(users: &[(&str, &str)]) -> (tempfile::TempDir, TestNode) {
    let dir = tempfile::tempdir().unwrap();
    add_users(dir.path(), users);
    let text = format!(
        "{}[sip]\npresence_policy = \"domain\"\n",
        test_config(dir.path(), "")
    );
    let node = TestNode::start(&text);
    (dir, node)
}

fn options(node: &TestNode, users: usize) -> Options {
    Options {
        xmpp: node.addr.to_string(),
        sip: node.sip_addr.to_string(),
        users,
        progress: ProgressMode::Never,
        login_concurrency: 20,
        warmup: 0.5,
        duration: 3.0,
        ..Options::default()
    }
}

#[test]
fn fifty_users_register_log_in_and_deliver_everything() {
    let (dir, node) = node(&[]);
    let json = dir.path().join("summary.json");
    let opts = Options {
        register: true,
        sip_share: 0.2,
        roster: 4,
        setup_rosters: true,
        presence_rate: 100.0,
        publish_rate: 20.0,
        subscribes: 2,
        subscribe_cycle_rate: 4.0,
        login_rounds: 2,
        json: Some(json.clone()),
        ..options(&node, 50)
    };
    let t = Instant::now();
    let s = loadgen::run(Settings::new(opts).unwrap()).expect("the run completes");
    let took = t.elapsed();
    let text = s.human();
    println!("{text}");
    assert!(took < Duration::from_secs(40), "took {took:?}");
    assert_eq!((s.users.xmpp, s.users.sip), (40, 10));
    assert_eq!(s.registrations.ok, 50, "{text}");
    assert_eq!((s.logins.ok, s.logins.failed), (40, 0), "{text}");
    assert!(
        s.logins.per_s > 0.0 && s.logins.latency.count == 40,
        "{text}"
    );
    // Every update reaches the 4 ring contacts: nothing lost at this low rate.
    let p = &s.presence;
    assert!(p.sent >= 200, "{text}");
    assert_eq!(p.expected, p.sent * 4, "{text}");
    assert_eq!(p.received, p.expected, "{text}");
    assert_eq!(p.lost, 0);
    assert_eq!(p.latency.count, p.received);
    assert!(
        p.latency.p99_ms > 0.0 && p.latency.p99_ms < 1000.0,
        "{text}"
    );
    // SIP: initial and modifying PUBLISHes, held subscriptions, cycles, NOTIFYs answered.
    let sip = &s.sip;
    assert!(sip.publish.ok >= 10 + 40, "{text}");
    assert_eq!(sip.publish.failed, 0, "{text}");
    assert!(sip.codes.get("PUBLISH 200") >= sip.publish.ok, "{text}");
    // Held: 10 users x 2 subscriptions at setup, un-SUBSCRIBEd at logout.
    assert_eq!(sip.active_subscriptions, 20, "{text}");
    assert_eq!(sip.subscribe.ok, 40, "{text}");
    assert!(sip.cycle.ok >= 5 && sip.cycle.failed == 0, "{text}");
    assert!(sip.notify_received > 20, "{text}");
    assert!(s.errors.is_empty(), "{text}");
    assert!(s.duration_s >= 2.9 && s.duration_s < 4.0, "{text}");
    assert_eq!(s.exit_code(), 0);

    // The JSON file has the contract's keys.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for k in [
        "/version",
        "/target/xmpp",
        "/users/sip",
        "/logins/latency/p99_ms",
        "/registrations/existing",
        "/presence/delivered_per_s",
        "/ramp",
        "/sustained_rate",
        "/sustained_delivered_per_s",
        "/sip/publish/per_s",
        "/sip/cycle/latency/count",
        "/sip/codes/PUBLISH 200",
        "/sip/active_subscriptions",
        "/redirects/sip_302",
        "/errors",
        "/duration_s",
    ] {
        assert!(v.pointer(k).is_some(), "{k} missing from {v}");
    }
    assert_eq!(v["presence"]["lost"], 0);
    assert_eq!(v["logins"]["ok"], 40);
    // --login-rounds 2: the second round (keys cached) is the measured one.
    assert_eq!(v["logins"]["repeat"]["rounds"], 1);
    assert_eq!(v["logins"]["repeat"]["ok"], 40);
    assert_eq!(v["logins"]["repeat"]["failed"], 0);

    // A second run finds the accounts and the rosters in place: nothing to set up.
    let opts = Options {
        register: true,
        roster: 4,
        setup_rosters: true,
        presence_rate: 50.0,
        duration: 1.0,
        ..options(&node, 40)
    };
    let s = loadgen::run(Settings::new(opts).unwrap()).unwrap();
    assert_eq!(s.registrations.existing, 40, "{}", s.human());
    assert_eq!(s.presence.received, s.presence.expected, "{}", s.human());
    assert!(s.presence.expected > 0);
}

#[test]
fn a_ramp_reports_each_step_and_the_sustained_rate() {
    let users: Vec<(String, String)> = (1..=12)
        .map(|i| (format!("user{i}"), format!("pass{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = users
        .iter()
        .map(|(u, p)| (u.as_str(), p.as_str()))
        .collect();
    let (_dir, node) = node(&refs);
    let opts = Options {
        roster: 2,
        setup_rosters: true,
        ramp: Some("20:2:80".into()),
        step_secs: 1.0,
        warmup: 0.2,
        sasl: loadgen::SaslChoice::ScramSha1,
        ..options(&node, 12)
    };
    let s = loadgen::run(Settings::new(opts).unwrap()).unwrap();
    let text = s.human();
    assert_eq!(s.logins.ok, 12, "{text}");
    assert_eq!(s.ramp.len(), 3, "{text}");
    assert_eq!(
        s.ramp.iter().map(|r| r.rate).collect::<Vec<_>>(),
        vec![20.0, 40.0, 80.0]
    );
    assert!(s.ramp.iter().all(|r| r.ok && r.lost == 0), "{text}");
    assert_eq!(s.sustained_rate, 80.0, "{text}");
    assert!(s.sustained_delivered_per_s > 80.0, "{text}");
    assert_eq!(
        s.presence.received,
        s.ramp.iter().map(|r| r.received).sum::<u64>()
    );
}

#[test]
fn a_wrong_password_is_counted_as_failed_logins_not_a_hang() {
    let (_dir, node) = node(&[
        ("user1", "right1"),
        ("user2", "right2"),
        ("user3", "right3"),
    ]);
    let opts = Options {
        password: "wrong{}".into(),
        sip_share: 1.0 / 3.0,
        presence_rate: 0.0,
        publish_rate: 5.0,
        duration: 1.0,
        ..options(&node, 3)
    };
    let t = Instant::now();
    let s = loadgen::run(Settings::new(opts).unwrap()).unwrap();
    let text = s.human();
    assert!(t.elapsed() < Duration::from_secs(20), "{text}");
    assert_eq!((s.logins.ok, s.logins.failed), (0, 2), "{text}");
    assert_eq!(s.errors.get("sasl_not-authorized"), 2, "{text}");
    // The SIP user's digest is refused too: counted, not retried for ever.
    assert_eq!(s.sip.publish.ok, 0, "{text}");
    assert!(s.sip.publish.failed >= 1, "{text}");
    assert!(s.sip.codes.get("PUBLISH 401") >= 1, "{text}");
    assert!(text.contains("sasl_not-authorized"), "{text}");
    // Nothing could be done: exit status 1.
    assert_eq!(s.exit_code(), 1);
}

#[test]
fn an_unreachable_target_ends_quickly_with_connect_errors() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = Options {
        xmpp: format!("127.0.0.1:{port}"),
        users: 5,
        duration: 0.5,
        warmup: 0.0,
        progress: ProgressMode::Never,
        ..Options::default()
    };
    let t = Instant::now();
    let s = loadgen::run(Settings::new(opts).unwrap()).unwrap();
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(s.logins.failed, 5);
    assert_eq!(
        s.errors.get("connect_connectionrefused"),
        5,
        "{}",
        s.human()
    );
    assert_eq!(s.exit_code(), 1);
}
