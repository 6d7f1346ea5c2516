use super::*;
use crate::sim::cost::RequestCost;
use crate::sim::{Options, Scenario};

#[test]
fn ties_come_out_in_insertion_order() {
    let mut q = EventQueue::new();
    q.push(5, "b1");
    q.push(3, "a");
    q.push(5, "b2");
    q.push(5, "b3");
    q.push(9, "c");
    let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
    assert_eq!(order, [(3, "a"), (5, "b1"), (5, "b2"), (5, "b3"), (9, "c")]);
    assert!(q.is_empty());
}

fn flat_cost(us: f64) -> CostModel {
    let c = RequestCost {
        sip_request_us: us,
        xmpp_request_us: us,
        per_resource_us: 0.0,
        per_kb_us: 0.0,
        per_stored_resource_us: 0.0,
    };
    CostModel {
        name: "flat".into(),
        source: String::new(),
        subscribe: c.clone(),
        notify: c,
    }
}

fn scenario(text: &str) -> Scenario {
    Scenario::parse(text).unwrap()
}

/// M/D/1: Poisson arrivals at rate λ, deterministic service s, ρ = λs. Mean sojourn
/// = s + ρ s / (2 (1 − ρ)) (Pollaczek–Khinchine).
#[test]
fn single_queue_matches_md1() {
    let s = scenario(
        r#"
name = "md1"
modes = ["single"]
[users]
steps = [500]
step_s = 400.0
arrival_s = 0.0
settle_s = 20.0
[requests]
subscribe_per_s = 1.0
"#,
    );
    let service = 1_400.0; // µs; λ = 500/s -> ρ = 0.7
    let run = run_mode(
        &s,
        &flat_cost(service),
        Mode::Single,
        &Options {
            seed: 7,
            keep_requests: false,
        },
        &mut |_| {},
    );
    let rho = 0.7;
    let want = service + rho * service / (2.0 * (1.0 - rho));
    let got = run.rows[0].subscribe.mean_us;
    assert!(
        (got - want).abs() / want < 0.05,
        "M/D/1 mean sojourn {got:.0} µs, closed form {want:.0} µs"
    );
    // And M/M/1 with exponential service: s / (1 − ρ).
    let mut s2 = s.clone();
    s2.requests.service = Service::Exponential;
    let run = run_mode(
        &s2,
        &flat_cost(service),
        Mode::Single,
        &Options {
            seed: 7,
            keep_requests: false,
        },
        &mut |_| {},
    );
    let want = service / (1.0 - rho);
    let got = run.rows[0].subscribe.mean_us;
    assert!(
        (got - want).abs() / want < 0.08,
        "M/M/1 mean sojourn {got:.0} µs, closed form {want:.0} µs"
    );
}

#[test]
fn multi_spreads_the_load_and_is_faster_than_single() {
    let s = scenario(
        r#"
name = "sm"
[users]
steps = [100, 300]
step_s = 60.0
arrival_s = 2.0
settle_s = 10.0
resources = 0
[cluster]
max_load = 100
w_users = 1
w_resources = 0
pool = 4
start_delay_s = 1.0
"#,
    );
    let cost = flat_cost(2_500.0); // 300 users on one server: ρ = 0.75
    let runs = crate::sim::simulate(
        &s,
        &cost,
        &Options {
            seed: 3,
            keep_requests: false,
        },
        &mut |_| {},
    );
    let (single, multi) = (&runs[0], &runs[1]);
    assert_eq!(single.rows[1].servers, 1);
    assert_eq!(multi.rows[0].servers, 1, "100 users fit on the primary");
    assert_eq!(multi.rows[1].servers, 3, "300 users need three servers");
    assert_eq!(multi.placement[1].1[..3], [100, 100, 100]);
    let (s1, m1) = (single.rows[1].subscribe, multi.rows[1].subscribe);
    assert!(m1.mean_us < s1.mean_us * 0.6, "multi {m1:?} single {s1:?}");
    // With one server's worth of users the two modes are alike.
    let (s0, m0) = (single.rows[0].subscribe, multi.rows[0].subscribe);
    assert!((s0.mean_us - m0.mean_us).abs() / s0.mean_us < 0.1);
}

#[test]
fn curve_windows_and_values() {
    let curve = [(0.0, 0), (10.0, 100), (20.0, 0)];
    assert_eq!(curve_at(&curve, 5.0), 50);
    assert_eq!(curve_at(&curve, 15.0), 50);
    assert_eq!(curve_at(&curve, 25.0), 0);
    let seg = Segment {
        t0: 0,
        t1: 1000,
        from: 10,
        to: 0,
    };
    assert_eq!((seg.changes(), seg.time_of(5)), (10, 500));
    assert_eq!(server_index("pool-012"), 12);
    assert_eq!(server_index("primary"), 0);
    let mut xs = [5.0, 1.0, 3.0, 2.0, 4.0];
    let st = stats(&mut xs);
    assert_eq!((st.count, st.mean_us, st.p95_us), (5, 3.0, 5.0));
}
