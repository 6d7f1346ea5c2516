//! `rendezvous sim` (DESIGN.md §10): determinism, placement by the real allocator, and every
//! shipped scenario.

use std::path::Path;

use rendezvous::sim::command::shipped_scenarios;
use rendezvous::sim::{report, run, simulate, CostModel, Options, Scenario};

fn scenario(text: &str) -> Scenario {
    Scenario::parse(text).expect("a valid scenario")
}

const STOCHASTIC: &str = r#"
name = "det"
[users]
steps = [50, 150]
step_s = 30.0
arrival_s = 3.0
settle_s = 10.0
resources = 5
[requests]
subscribe_per_s = 1.0
notify_per_s = 1.0
notify_kb = 8.0
service = "exponential"
[cluster]
max_load = 60
w_users = 0
w_resources = 1
pool = 4
start_delay_s = 1.0
"#;

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let s = scenario(STOCHASTIC);
    let cost = CostModel::paper();
    let a = report::csv(&run(&s, &cost, 42));
    let b = report::csv(&run(&s, &cost, 42));
    assert_eq!(a, b, "same seed, same CSV bytes");
    let svg_a = report::svg(&run(&s, &cost, 42));
    assert_eq!(svg_a, report::svg(&run(&s, &cost, 42)));
    let c = report::csv(&run(&s, &cost, 43));
    assert_ne!(a, c, "another seed changes a stochastic scenario");
}

/// Servers fill in the allocator's order (DESIGN §4, §7): the primary first while it fits;
/// when every server is full a pool server joins (after its start-up delay, the users
/// arriving meanwhile wait for it) and users move to it from the most loaded servers (ties:
/// the smallest id) up to the mean load.
#[test]
fn users_are_placed_as_the_allocator_decides() {
    let s = scenario(
        r#"
name = "place"
modes = ["multi"]
[users]
steps = [5, 10, 15, 25]
step_s = 20.0
arrival_s = 1.0
settle_s = 5.0
resources = 3
[requests]
subscribe_per_s = 0.5
[cluster]
max_load = 10
min_load = 2
w_users = 1
w_resources = 0
pool = 3
start_delay_s = 2.0
"#,
    );
    let runs = simulate(
        &s,
        &CostModel::paper(),
        &Options {
            seed: 1,
            keep_requests: false,
        },
        &mut |_| {},
    );
    let multi = &runs[0];
    assert_eq!(
        multi.servers,
        ["primary", "pool-001", "pool-002", "pool-003"]
    );
    let counts: Vec<Vec<u64>> = multi.placement.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(
        counts,
        [
            // The primary takes users while it fits.
            vec![5, 0, 0, 0],
            vec![10, 0, 0, 0],
            // Full: pool-001 joins with the 5 waiting users, then takes users from the
            // primary up to the mean (7): 10/5 -> 8/7.
            vec![8, 7, 0, 0],
            // The primary fills first (8 -> 10), then pool-001 (7 -> 10); the last five
            // wait for pool-002, which then takes users from the most loaded, pool-001
            // first on the tie, up to the mean 8.
            vec![9, 8, 8, 0],
        ]
    );
    let servers: Vec<u32> = multi.rows.iter().map(|r| r.servers).collect();
    assert_eq!(servers, [1, 1, 2, 3]);
    assert_eq!(multi.counters.joins, 2);
    assert_eq!(multi.counters.moved, 2 + 3, "5 -> 7, then 5 -> 8");
}

#[test]
fn the_time_series_follows_the_cluster() {
    let s = scenario(STOCHASTIC);
    let runs = simulate(
        &s,
        &CostModel::paper(),
        &Options {
            seed: 5,
            keep_requests: true,
        },
        &mut |_| {},
    );
    let multi = runs.iter().find(|r| r.mode.as_str() == "multi").unwrap();
    assert!(!multi.requests.is_empty());
    assert!(multi.requests.windows(2).all(|w| w[0].at_us <= w[1].at_us));
    let peak = multi.series.iter().map(|p| p.servers).max().unwrap();
    // 150 users of load 5 at max_load 60: 12 per server, at most 5 servers in the pool.
    assert_eq!(peak, 5);
    assert_eq!(multi.series.last().unwrap().online, 150);
}

#[test]
fn every_shipped_scenario_parses_and_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = shipped_scenarios(&root.join("simulations")).unwrap();
    assert!(files.len() >= 10, "{files:?}");
    let calibrated = CostModel::load(&root.join("simulations/cost-model.toml")).unwrap();
    for file in files {
        let mut s = Scenario::load(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let cost = match s.profile.as_str() {
            "paper" => CostModel::paper(),
            "calibrated" => calibrated.clone(),
            other => panic!("{}: unexpected profile {other}", file.display()),
        };
        if s.name == "million-daily" {
            // A thousandth of it in a debug build: the same curve shape and policy.
            for p in &mut s.users.curve {
                p.1 /= 1000;
            }
            s.cluster.max_load /= 1000;
            s.cluster.min_load /= 1000;
            s.validate().unwrap();
        }
        let rep = run(&s, &cost, s.seed);
        assert!(!rep.runs[0].rows.is_empty(), "{}", s.name);
        if let Some(p) = &s.published {
            let worst = rep.worst_difference_pp().unwrap();
            assert!(worst <= 10.0, "{}: {worst:.1} pp from {}", s.name, p.source);
        }
    }
}
