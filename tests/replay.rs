//! `rendezvous replay` against one real node on loopback, as a library call: a tiny scenario
//! (two steps of XMPP and SIP users) replayed with registration, its SUBSCRIBEs answered,
//! the admin API sampled, and the CSV, SVG and JSON files written.

mod common;

use std::time::{Duration, Instant};

use common::TestNode;
use rendezvous::loadgen::{ProgressMode, SaslChoice};
use rendezvous::replay::{self, Options};

/// A loopback port free right now (the node binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_tiny_scenario_is_replayed_against_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let admin = free_port();
    let config = format!(
        "[cluster]\nweight_resources = 0\nmax_load = 100\n\
         [xmpp]\ntls = \"optional\"\nallow_plain_without_tls = true\nregistration = \"open\"\n\
         [sip]\npresence_policy = \"domain\"\nsip_auth = false\n\
         [runtime]\nworkers = 2\npresence_shards = 2\n\
         [[node]]\nid = \"t1\"\nxmpp = \"127.0.0.1:0\"\nsip = \"127.0.0.1:0\"\n\
         admin = \"127.0.0.1:{admin}\"\ndata_dir = \"{}\"\n",
        dir.path().join("data").display()
    );
    let node = TestNode::start(&config);
    let scenario = dir.path().join("tiny.toml");
    std::fs::write(
        &scenario,
        "name = \"tiny\"\nprofile = \"paper\"\nmodes = [\"multi\"]\n\
         [users]\nsteps = [8, 16]\nstep_s = 3.0\narrival_s = 0.5\nsettle_s = 0.5\n\
         resources = 0\nxmpp_share = 0.5\n\
         [requests]\nsubscribe_per_s = 2.0\n\
         [cluster]\nmax_load = 100\nw_resources = 0\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let json = dir.path().join("replay.json");
    let opts = Options {
        file: scenario,
        primary: format!(
            "127.0.0.1:{},{},{admin}",
            node.addr.port(),
            node.sip_addr.port()
        ),
        compress: 1.0,
        scale: 1.0,
        domain: "localhost".into(),
        pattern: "user{}".into(),
        password: "pass{}".into(),
        register: true,
        sasl: SaslChoice::Plain,
        login_concurrency: 8,
        out: out.clone(),
        json: Some(json.clone()),
        fail_on_errors: true,
        progress: ProgressMode::Never,
    };
    let t = Instant::now();
    let r = replay::run(opts).expect("the replay runs");
    println!("{}", r.line());
    assert!(t.elapsed() < Duration::from_secs(40), "{:?}", t.elapsed());
    assert_eq!(r.peak_users, 16);
    assert_eq!(r.steps.len(), 2);
    assert!(r.counters.subscribes_ok > 20, "{:?}", r.counters);
    assert_eq!(r.failures_total, 0, "{:?}", r.failures);
    assert!(r.admin_samples > 0 && !r.overloaded, "{r:?}");
    assert_eq!(r.steps_mismatched, 0, "{:?}", r.steps);
    assert!(r.steps.iter().all(|s| s.latency.count > 0), "{:?}", r.steps);
    for f in ["tiny.csv", "tiny-steps.csv", "tiny.svg"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(v["p99_subscribe_ms"].as_f64().unwrap() > 0.0);
    // Bad options are refused before anything starts.
    let bad = Options {
        compress: 0.0,
        ..Options {
            file: dir.path().join("tiny.toml"),
            primary: "127.0.0.1".into(),
            compress: 1.0,
            scale: 1.0,
            domain: "localhost".into(),
            pattern: "user{}".into(),
            password: "pass{}".into(),
            register: false,
            sasl: SaslChoice::Plain,
            login_concurrency: 8,
            out,
            json: None,
            fail_on_errors: false,
            progress: ProgressMode::Never,
        }
    };
    assert_eq!(replay::run(bad).unwrap_err().exit_code(), 2);
}
