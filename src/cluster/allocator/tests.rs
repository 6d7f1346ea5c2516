use super::*;

use Health::{Active, Dead, Suspect};

/// `max_load` 100, reports every second, dead after 10 s.
fn params() -> Params {
    Params::default()
}

/// A server in a table case: id, reported load, pending, users, health. Added in table
/// order (not id order, so ties by id are really tested).
type Srv = (&'static str, u64, u64, u64, Health);

/// Builds an allocator with `servers` at time `T`: every server is added at 0; the live
/// ones report at `T` (version 1), the dead ones stay silent and `tick(T)` kills them;
/// suspect ones are then marked by a reservation timeout.
fn cluster(servers: &[Srv]) -> Allocator {
    const T: Millis = 20_000;
    let mut a = Allocator::new(params());
    for &(id, load, pending, users, health) in servers {
        a.add_server(id, 0);
        if health != Dead {
            assert!(a.report(id, 1, load, users, T));
        }
        a.begin(id, pending);
    }
    a.tick(T);
    for &(id, _, _, _, health) in servers {
        if health == Suspect {
            a.mark_suspect(id);
        }
        assert_eq!(a.server(id).map(|s| s.health), Some(health), "{id}");
    }
    a
}

struct Case {
    name: &'static str,
    servers: Vec<Srv>,
    removed: Vec<&'static str>,
    pool: Vec<&'static str>,
    /// The user's home in the directory, if any.
    home: Option<&'static str>,
    exclude: Vec<&'static str>,
    cost: u64,
    want: Decision,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            name: "",
            servers: Vec::new(),
            removed: Vec::new(),
            pool: Vec::new(),
            home: None,
            exclude: Vec::new(),
            cost: 5,
            want: Decision::NoServer,
        }
    }
}

fn sticky(id: &str) -> Decision {
    Decision::Sticky(id.to_owned())
}
fn least(id: &str) -> Decision {
    Decision::Least(id.to_owned())
}
fn overloaded(id: &str) -> Decision {
    Decision::Overloaded(id.to_owned())
}

fn cases() -> Vec<Case> {
    vec![
        // Stickiness.
        Case {
            name: "alive home wins over a lighter server",
            servers: vec![("a", 10, 0, 1, Active), ("b", 50, 0, 5, Active)],
            home: Some("b"),
            want: sticky("b"),
            ..Case::default()
        },
        Case {
            name: "alive home wins even above max_load",
            servers: vec![("a", 10, 0, 1, Active), ("b", 150, 0, 15, Active)],
            home: Some("b"),
            cost: 50,
            want: sticky("b"),
            ..Case::default()
        },
        Case {
            name: "suspect home is still sticky",
            servers: vec![("a", 10, 0, 1, Active), ("b", 50, 0, 5, Suspect)],
            home: Some("b"),
            want: sticky("b"),
            ..Case::default()
        },
        Case {
            name: "dead home: placed anew",
            servers: vec![("a", 10, 0, 1, Active), ("b", 0, 0, 0, Dead)],
            home: Some("b"),
            want: least("a"),
            ..Case::default()
        },
        Case {
            name: "removed home: placed anew",
            servers: vec![("a", 10, 0, 1, Active), ("b", 0, 0, 0, Active)],
            removed: vec!["b"],
            home: Some("b"),
            want: least("a"),
            ..Case::default()
        },
        Case {
            name: "home never added: placed anew",
            servers: vec![("a", 10, 0, 1, Active)],
            home: Some("ghost"),
            want: least("a"),
            ..Case::default()
        },
        Case {
            name: "excluded home is not sticky",
            servers: vec![("a", 10, 0, 1, Active), ("b", 20, 0, 2, Active)],
            home: Some("a"),
            exclude: vec!["a"],
            want: least("b"),
            ..Case::default()
        },
        // Least loaded.
        Case {
            name: "lowest load wins",
            servers: vec![
                ("a", 50, 0, 1, Active),
                ("b", 30, 0, 9, Active),
                ("c", 40, 0, 1, Active),
            ],
            want: least("b"),
            ..Case::default()
        },
        Case {
            name: "pending counts as load",
            servers: vec![("a", 20, 30, 1, Active), ("b", 40, 0, 1, Active)],
            want: least("b"),
            ..Case::default()
        },
        Case {
            name: "a lighter suspect server is not a candidate",
            servers: vec![("a", 50, 0, 5, Active), ("b", 0, 0, 0, Suspect)],
            want: least("a"),
            ..Case::default()
        },
        Case {
            name: "dead and removed servers are not candidates",
            servers: vec![
                ("a", 50, 0, 5, Active),
                ("b", 0, 0, 0, Dead),
                ("c", 1, 0, 0, Active),
            ],
            removed: vec!["c"],
            want: least("a"),
            ..Case::default()
        },
        // Ties.
        Case {
            name: "tie on load: fewer users",
            servers: vec![("a", 30, 0, 5, Active), ("b", 20, 10, 3, Active)],
            want: least("b"),
            ..Case::default()
        },
        Case {
            name: "tie on load and users: smallest id",
            servers: vec![
                ("srv-b", 30, 0, 3, Active),
                ("srv-a10", 30, 0, 3, Active),
                ("srv-a9", 30, 0, 3, Active),
            ],
            want: least("srv-a10"),
            ..Case::default()
        },
        // The max_load boundary.
        Case {
            name: "load + pending + cost exactly at max_load fits",
            servers: vec![("a", 60, 10, 6, Active)],
            pool: vec!["p1"],
            cost: 30,
            want: least("a"),
            ..Case::default()
        },
        Case {
            name: "one above max_load does not fit",
            servers: vec![("a", 61, 10, 6, Active)],
            pool: vec!["p1"],
            cost: 30,
            want: Decision::Pool,
            ..Case::default()
        },
        Case {
            name: "cost 0 at exactly max_load fits",
            servers: vec![("a", 100, 0, 10, Active)],
            pool: vec!["p1"],
            cost: 0,
            want: least("a"),
            ..Case::default()
        },
        // Full cluster.
        Case {
            name: "all full: pool",
            servers: vec![("a", 90, 0, 9, Active), ("b", 95, 0, 9, Active)],
            pool: vec!["p1", "p2"],
            cost: 20,
            want: Decision::Pool,
            ..Case::default()
        },
        Case {
            name: "all full, pool empty: least loaded, overloaded",
            servers: vec![("a", 95, 0, 9, Active), ("b", 90, 0, 9, Active)],
            cost: 20,
            want: overloaded("b"),
            ..Case::default()
        },
        Case {
            name: "overloaded ties: fewer users, then id",
            servers: vec![
                ("c", 95, 0, 2, Active),
                ("a", 95, 0, 4, Active),
                ("b", 95, 0, 2, Active),
            ],
            cost: 20,
            want: overloaded("b"),
            ..Case::default()
        },
        Case {
            name: "overloaded prefers an active server to a lighter suspect one",
            servers: vec![("a", 99, 0, 9, Active), ("b", 0, 0, 0, Suspect)],
            cost: 20,
            want: overloaded("a"),
            ..Case::default()
        },
        Case {
            name: "no active server, pool empty: least-loaded suspect",
            servers: vec![
                ("a", 10, 0, 1, Suspect),
                ("b", 5, 0, 1, Suspect),
                ("c", 0, 0, 0, Dead),
            ],
            want: overloaded("b"),
            ..Case::default()
        },
        Case {
            name: "no active server, pool not empty: pool",
            servers: vec![("a", 10, 0, 1, Suspect)],
            pool: vec!["p1"],
            want: Decision::Pool,
            ..Case::default()
        },
        Case {
            name: "none alive, pool empty: no server",
            servers: vec![("a", 0, 0, 0, Dead), ("b", 0, 0, 0, Active)],
            removed: vec!["b"],
            home: Some("a"),
            want: Decision::NoServer,
            ..Case::default()
        },
        Case {
            name: "no servers at all",
            want: Decision::NoServer,
            ..Case::default()
        },
        Case {
            name: "none alive, pool not empty: pool",
            servers: vec![("a", 0, 0, 0, Dead)],
            pool: vec!["p1"],
            want: Decision::Pool,
            ..Case::default()
        },
        // Exclusion (two-phase fallback).
        Case {
            name: "excluded server skipped",
            servers: vec![("a", 10, 0, 1, Active), ("b", 20, 0, 2, Active)],
            exclude: vec!["a"],
            want: least("b"),
            ..Case::default()
        },
        Case {
            name: "excluded: unknown ids change nothing",
            servers: vec![("a", 10, 0, 1, Active), ("b", 20, 0, 2, Active)],
            exclude: vec!["zz", "p1"],
            want: least("a"),
            ..Case::default()
        },
        Case {
            name: "every active one excluded, pool empty: a suspect one",
            servers: vec![("a", 10, 0, 1, Active), ("b", 90, 0, 9, Suspect)],
            exclude: vec!["a"],
            want: overloaded("b"),
            ..Case::default()
        },
        Case {
            name: "every active one excluded, pool not empty: pool",
            servers: vec![("a", 10, 0, 1, Active)],
            exclude: vec!["a"],
            pool: vec!["p1"],
            want: Decision::Pool,
            ..Case::default()
        },
        Case {
            name: "everything excluded, pool empty: no server",
            servers: vec![("a", 10, 0, 1, Active), ("b", 10, 0, 1, Suspect)],
            home: Some("b"),
            exclude: vec!["a", "b"],
            want: Decision::NoServer,
            ..Case::default()
        },
    ]
}

#[test]
fn scale_in_drains_the_least_loaded_worker_only_when_the_mean_is_low() {
    // min_load is 20 (defaults); (servers, primary, draining, want).
    type ScaleInCase = (
        Vec<Srv>,
        &'static str,
        Vec<&'static str>,
        Option<&'static str>,
    );
    let cases: Vec<ScaleInCase> = vec![
        // Mean 10 < 20: the least-loaded worker, never the primary.
        (
            vec![
                ("p", 2, 0, 2, Active),
                ("a", 10, 0, 10, Active),
                ("b", 18, 0, 18, Active),
            ],
            "p",
            vec![],
            Some("a"),
        ),
        // Mean 20 is not below min_load.
        (
            vec![("p", 20, 0, 20, Active), ("a", 20, 0, 20, Active)],
            "p",
            vec![],
            None,
        ),
        // Never below one server.
        (vec![("p", 0, 0, 0, Active)], "p", vec![], None),
        // A tie goes to the smallest id; one already draining is skipped.
        (
            vec![
                ("p", 0, 0, 0, Active),
                ("b", 5, 0, 5, Active),
                ("a", 5, 0, 5, Active),
            ],
            "p",
            vec!["a"],
            Some("b"),
        ),
        // Pending reservations count; dead servers neither count nor get drained.
        (
            vec![
                ("p", 0, 0, 0, Active),
                ("a", 1, 9, 1, Active),
                ("b", 5, 0, 5, Active),
                ("c", 0, 0, 0, Dead),
            ],
            "p",
            vec![],
            Some("b"),
        ),
    ];
    for (servers, primary, draining, want) in cases {
        let mut a = cluster(&servers);
        for d in &draining {
            a.set_draining(d, true);
        }
        assert_eq!(a.scale_in_candidate(primary), want, "{servers:?}");
    }
}

#[test]
fn placement_table() {
    for case in cases() {
        let mut a = cluster(&case.servers);
        for id in &case.removed {
            assert!(a.remove_server(id), "{}", case.name);
        }
        a.set_pool(case.pool.iter().map(|p| p.to_string()).collect());
        if let Some(home) = case.home {
            a.set_home("u", home);
        }
        let got = a.place_excluding("u", case.cost, &case.exclude);
        assert_eq!(got, case.want, "{}", case.name);
        if case.exclude.is_empty() {
            assert_eq!(a.place("u", case.cost), case.want, "{}", case.name);
        }
    }
}

#[test]
fn reports_older_or_replayed_are_ignored() {
    let mut a = Allocator::new(params());
    assert!(!a.report("a", 1, 10, 1, 0), "unknown id");
    a.add_server("a", 0);
    assert!(!a.report("a", 0, 10, 1, 5), "version 0 is the add itself");
    assert!(a.report("a", 2, 20, 2, 10));
    assert!(!a.report("a", 2, 99, 9, 20), "replayed");
    assert!(!a.report("a", 1, 99, 9, 30), "older");
    let v = a.server("a").unwrap();
    assert_eq!((v.load, v.users, v.version, v.last_report), (20, 2, 2, 10));
    assert!(a.report("a", 7, 30, 3, 40));
    assert_eq!(a.server("a").unwrap().load, 30);

    assert!(a.remove_server("a"));
    assert!(!a.remove_server("a"), "already out");
    assert!(!a.report("a", 8, 1, 1, 50), "removed servers do not report");
    assert!(a.server("a").is_none());

    a.add_server("a", 60);
    let v = a.server("a").unwrap();
    assert_eq!((v.load, v.users, v.version, v.health), (0, 0, 0, Active));
    assert!(a.report("a", 1, 5, 1, 70), "a new session numbers from 1");
}

#[test]
fn tick_at_the_exact_thresholds() {
    let mut a = Allocator::new(params()); // 3 intervals = 3000, dead after 10000
    a.add_server("a", 0);
    assert_eq!(a.tick(3_000), vec![]);
    assert_eq!(a.tick(3_001), vec![("a".to_owned(), Suspect)]);
    assert_eq!(a.tick(3_002), vec![], "reported once");
    assert_eq!(a.tick(10_000), vec![]);
    assert_eq!(a.tick(10_001), vec![("a".to_owned(), Dead)]);
    assert_eq!(a.tick(50_000), vec![]);
    assert_eq!(a.place("u", 1), Decision::NoServer);

    assert!(a.report("a", 1, 4, 1, 10_500), "a report revives the dead");
    assert_eq!(a.server("a").unwrap().health, Active);
    assert_eq!(a.tick(13_500), vec![]);
    assert_eq!(a.tick(13_501), vec![("a".to_owned(), Suspect)]);
    assert!(a.report("a", 2, 4, 1, 13_600), "and the suspect");
    assert_eq!(a.server("a").unwrap().health, Active);
}

#[test]
fn tick_reports_in_id_order_and_may_skip_suspect() {
    let mut a = Allocator::new(params());
    for id in ["c", "a", "d", "b"] {
        a.add_server(id, 0);
    }
    assert!(a.report("d", 1, 0, 0, 9_000));
    assert!(a.report("b", 1, 0, 0, 5_000));
    assert_eq!(
        a.tick(10_001),
        vec![
            ("a".to_owned(), Dead),
            ("b".to_owned(), Suspect),
            ("c".to_owned(), Dead),
        ],
        "a and c skip suspect; d is fresh"
    );
    let ids: Vec<&str> = a.servers().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
}

#[test]
fn mark_suspect_only_demotes_active_members() {
    let mut a = Allocator::new(params());
    a.add_server("a", 0);
    a.add_server("b", 0);
    a.mark_suspect("a");
    a.mark_suspect("nobody");
    assert_eq!(a.server("a").unwrap().health, Suspect);
    assert_eq!(a.tick(10_001).len(), 2, "a suspect one still dies");
    a.mark_suspect("b");
    assert_eq!(a.server("b").unwrap().health, Dead, "dead stays dead");
}

#[test]
fn begin_confirm_abort_account_pending() {
    let mut a = Allocator::new(params());
    a.add_server("a", 0);
    a.add_server("b", 0);
    assert!(a.report("a", 1, 40, 4, 0));
    assert!(a.report("b", 1, 50, 5, 0));
    assert_eq!(a.place("u1", 10), least("a"));

    a.begin("a", 10);
    a.begin("a", 5);
    assert_eq!(a.server("a").unwrap().pending, 15);
    assert_eq!(a.place("u2", 10), least("b"), "55 in flight beats 50");

    a.confirm("u1", "a", 10);
    assert_eq!(a.server("a").unwrap().pending, 5);
    assert_eq!(a.home("u1"), Some("a"));
    assert_eq!(a.users_homed("a"), 1);
    assert_eq!(a.place("u1", 10), sticky("a"));

    a.abort("a", 5);
    assert_eq!(a.server("a").unwrap().pending, 0);
    a.abort("a", 5);
    assert_eq!(a.server("a").unwrap().pending, 0, "saturating");
    a.confirm("u3", "a", 99);
    assert_eq!(a.server("a").unwrap().pending, 0, "saturating");

    a.begin("nobody", 5);
    a.abort("nobody", 5);
    assert!(a.server("nobody").is_none());

    // Pending survives a re-add: the reservation's confirm or abort still comes.
    a.begin("b", 7);
    a.add_server("b", 100);
    assert_eq!(a.server("b").unwrap().pending, 7);
}

#[test]
fn users_homed_follows_set_home_forget_and_moves() {
    let mut a = Allocator::new(params());
    a.add_server("a", 0);
    a.add_server("b", 0);
    a.set_home("u1", "a");
    a.set_home("u2", "a");
    a.set_home("u3", "b");
    assert_eq!((a.users_homed("a"), a.users_homed("b")), (2, 1));
    assert_eq!(a.directory_len(), 3);

    a.set_home("u1", "b"); // a move (§7)
    assert_eq!((a.users_homed("a"), a.users_homed("b")), (1, 2));
    a.set_home("u1", "b");
    assert_eq!((a.users_homed("a"), a.users_homed("b")), (1, 2), "no-op");
    a.confirm("u2", "b", 0);
    assert_eq!((a.users_homed("a"), a.users_homed("b")), (0, 3));

    assert!(a.forget("u2"));
    assert!(!a.forget("u2"));
    assert_eq!((a.users_homed("b"), a.directory_len()), (2, 2));
    assert_eq!(a.home("u2"), None);

    // A home not added yet (directory restored before the node joined).
    a.set_home("u9", "z");
    assert_eq!((a.users_homed("z"), a.home("u9")), (1, Some("z")));
    assert!(a.server("z").is_none());
    assert_eq!(a.users_homed("nobody"), 0);
    a.add_server("z", 0);
    assert_eq!(a.place("u9", 1), sticky("z"));

    // Removing keeps entries and counts; re-adding makes them sticky again.
    assert!(a.remove_server("b"));
    assert_eq!((a.users_homed("b"), a.home("u1")), (2, Some("b")));
    assert_ne!(a.place("u1", 1), sticky("b"));
    a.add_server("b", 0);
    assert_eq!(a.place("u1", 1), sticky("b"));
}

#[test]
fn dead_home_revived_by_add_server_is_sticky_again() {
    let mut a = Allocator::new(params());
    a.add_server("a", 0);
    a.add_server("b", 0);
    a.set_home("u", "a");
    assert!(a.report("b", 1, 50, 5, 20_000));
    a.tick(20_000);
    assert_eq!(a.place("u", 1), least("b"));
    a.add_server("a", 21_000);
    assert_eq!(a.place("u", 1), sticky("a"));
}

#[test]
fn pool_servers_and_mean_load() {
    let mut a = Allocator::new(params());
    assert_eq!(a.mean_load(), None);
    a.set_pool(vec!["p2".into(), "p1".into()]);
    assert_eq!(a.pool(), ["p2", "p1"], "config order");
    a.add_server("b", 0);
    a.add_server("a", 0);
    a.add_server("c", 0);
    assert!(a.report("a", 1, 10, 1, 0));
    assert!(a.report("b", 1, 25, 2, 0));
    assert!(a.report("c", 1, 90, 9, 0));
    a.mark_suspect("c");
    assert_eq!(a.mean_load(), Some(17.5), "suspect c not counted");
    a.remove_server("a");
    assert_eq!(a.mean_load(), Some(25.0));
    let ids: Vec<&str> = a.servers().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["b", "c"]);
    assert_eq!(a.params(), &params());
    assert_eq!(least("x").server(), Some("x"));
    assert_eq!(Decision::Pool.server(), None);
}

/// Runs a scripted workload (seeded LCG) and returns every decision and liveness change,
/// as text. Servers are added in `add_order`; the result must not depend on it, nor on
/// hashing.
fn trace(add_order: &[&str]) -> Vec<String> {
    let mut a = Allocator::new(Params {
        max_load: 60,
        ..params()
    });
    for id in add_order {
        a.add_server(id, 0);
    }
    let mut ids = add_order.to_vec();
    ids.sort_unstable();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut out = Vec::new();
    let mut version = 0;
    for step in 0..2_000u64 {
        let now = step * 100;
        let user = format!("user{}", next(300));
        let cost = 1 + next(4);
        let d = if next(5) == 0 {
            a.place_excluding(&user, cost, &[ids[0]])
        } else {
            a.place(&user, cost)
        };
        match d.server().map(str::to_owned) {
            Some(server) if next(10) == 0 => {
                // The reservation times out.
                a.begin(&server, cost);
                a.abort(&server, cost);
                a.mark_suspect(&server);
            }
            Some(server) => {
                a.begin(&server, cost);
                a.confirm(&user, &server, cost);
            }
            None => {
                if let Some(p) = a.pool().first().cloned() {
                    a.add_server(&p, now);
                    a.set_pool(a.pool()[1..].to_vec());
                }
            }
        }
        out.push(format!("{d:?}"));
        if next(3) == 0 {
            let id = ids[next(ids.len() as u64) as usize];
            version += 1;
            a.report(id, version, a.users_homed(id) as u64 * 3, 0, now);
        }
        if step % 500 == 0 {
            a.set_pool(vec!["p1".into(), "p2".into()]);
        }
        if step % 7 == 0 {
            out.extend(a.tick(now).iter().map(|c| format!("{c:?}")));
        }
    }
    out
}

#[test]
fn same_operations_same_decisions() {
    let first = trace(&["n1", "n2", "n3", "n4"]);
    assert_eq!(first, trace(&["n1", "n2", "n3", "n4"]));
    assert_eq!(
        first,
        trace(&["n4", "n1", "n3", "n2"]),
        "the order servers were added in does not matter"
    );
    let count = |prefix: &str| first.iter().filter(|d| d.starts_with(prefix)).count();
    for kind in ["Sticky", "Least", "Pool", "Overloaded", "(\"p1\", Suspect)"] {
        assert!(count(kind) > 0, "the workload exercises {kind}");
    }
}

#[test]
fn the_preferred_server_is_filled_first_while_it_fits() {
    let mut a = Allocator::new(Params {
        max_load: 10,
        ..Params::default()
    });
    a.add_server("p", 0);
    a.add_server("w", 0);
    a.set_preferred(Some("p"));
    a.report("p", 1, 5, 5, 0);
    assert_eq!(a.place("u", 1), Decision::Least("p".into()));
    assert_eq!(a.place("u", 5), Decision::Least("p".into()));
    // Full (or excluded, or suspect): least-loaded among the others.
    assert_eq!(a.place("u", 6), Decision::Least("w".into()));
    assert_eq!(
        a.place_excluding("u", 1, &["p"]),
        Decision::Least("w".into())
    );
    a.mark_suspect("p");
    assert_eq!(a.place("u", 1), Decision::Least("w".into()));
    a.set_preferred(None);
    a.report("p", 2, 0, 0, 0);
    a.report("w", 1, 0, 0, 0);
    // Without a preference, ties go to fewer users, then id.
    assert_eq!(a.place("u", 1), Decision::Least("p".into()));
}

#[test]
fn draining_servers_are_neither_candidates_nor_sticky() {
    struct Drain {
        name: &'static str,
        servers: Vec<Srv>,
        draining: Vec<&'static str>,
        home: Option<&'static str>,
        pool: Vec<&'static str>,
        moving: bool,
        want: Decision,
    }
    let table = vec![
        Drain {
            name: "a draining home is not sticky",
            servers: vec![("a", 10, 0, 1, Active), ("b", 50, 0, 5, Active)],
            draining: vec!["a"],
            home: Some("a"),
            pool: vec![],
            moving: false,
            want: least("b"),
        },
        Drain {
            name: "a lighter draining server is not a candidate",
            servers: vec![("a", 0, 0, 0, Active), ("b", 50, 0, 5, Active)],
            draining: vec!["a"],
            home: None,
            pool: vec![],
            moving: false,
            want: least("b"),
        },
        Drain {
            name: "a draining preferred server is not filled first",
            servers: vec![("p", 0, 0, 0, Active), ("b", 50, 0, 5, Active)],
            draining: vec!["p"],
            home: None,
            pool: vec![],
            moving: false,
            want: least("b"),
        },
        Drain {
            name: "not draining any more: sticky again",
            servers: vec![("a", 10, 0, 1, Active), ("b", 50, 0, 5, Active)],
            draining: vec![],
            home: Some("a"),
            pool: vec![],
            moving: false,
            want: sticky("a"),
        },
        Drain {
            name: "placement with everyone else full asks the pool",
            servers: vec![("a", 0, 0, 0, Active), ("b", 99, 0, 9, Active)],
            draining: vec!["a"],
            home: Some("a"),
            pool: vec!["q"],
            moving: false,
            want: Decision::Pool,
        },
        Drain {
            name: "a move never asks the pool: least loaded, overloaded",
            servers: vec![
                ("a", 0, 0, 0, Active),
                ("b", 99, 0, 9, Active),
                ("c", 98, 0, 9, Active),
            ],
            draining: vec!["a"],
            home: Some("a"),
            pool: vec!["q"],
            moving: true,
            want: overloaded("c"),
        },
        Drain {
            name: "a move goes to the least loaded that fits",
            servers: vec![
                ("a", 40, 0, 4, Active),
                ("b", 30, 0, 3, Active),
                ("c", 20, 0, 2, Active),
            ],
            draining: vec!["a"],
            home: Some("a"),
            pool: vec![],
            moving: true,
            want: least("c"),
        },
        Drain {
            name: "only draining servers left: no server",
            servers: vec![("a", 0, 0, 0, Active)],
            draining: vec!["a"],
            home: Some("a"),
            pool: vec![],
            moving: true,
            want: Decision::NoServer,
        },
    ];
    for case in table {
        let mut a = cluster(&case.servers);
        a.set_preferred(Some("p"));
        for id in &case.draining {
            assert!(a.set_draining(id, true), "{}", case.name);
            assert!(a.is_draining(id), "{}", case.name);
        }
        a.set_pool(case.pool.iter().map(|p| p.to_string()).collect());
        if let Some(home) = case.home {
            a.set_home("u", home);
        }
        let got = if case.moving {
            a.move_target("u", 5, &case.draining)
        } else {
            a.place("u", 5)
        };
        assert_eq!(got, case.want, "{}", case.name);
    }
    // Unknown servers cannot drain; re-adding a drained server clears the mark.
    let mut a = cluster(&[("a", 0, 0, 0, Active)]);
    assert!(!a.set_draining("zz", true));
    assert!(a.set_draining("a", true));
    a.remove_server("a");
    assert!(!a.is_draining("a"));
    a.add_server("a", 0);
    assert!(!a.is_draining("a"));
    assert_eq!(a.place("u", 1), least("a"));
}

#[test]
fn rebalance_plan_table() {
    type Row = (&'static str, u64, u64);
    struct Plan {
        name: &'static str,
        servers: Vec<Row>,
        to: &'static str,
        max: u64,
        want: Vec<(&'static str, usize)>,
    }
    let table = vec![
        Plan {
            name: "two full servers of one user each per load unit: one user moves",
            servers: vec![("p", 2, 2), ("w", 2, 2), ("q", 0, 0)],
            to: "q",
            max: 2,
            want: vec![("p", 1)],
        },
        Plan {
            name: "the new server may be unlisted: it counts with load 0",
            servers: vec![("p", 2, 2), ("w", 2, 2)],
            to: "q",
            max: 2,
            want: vec![("p", 1)],
        },
        Plan {
            name: "most loaded first, then the next one as loads even out",
            servers: vec![("a", 100, 50), ("b", 60, 30), ("n", 0, 0)],
            to: "n",
            max: 100,
            // mean 53: a gives 2 per user down to b's 60, then a and b alternate
            // (a first on ties) until n has 52 and one more would leave a donor below n.
            want: vec![("a", 23), ("b", 3)],
        },
        Plan {
            name: "ties between donors: the smallest id first",
            servers: vec![("b", 10, 10), ("a", 10, 10), ("n", 0, 0)],
            to: "n",
            max: 100,
            // mean 6: a, then b (now heavier), alternating.
            want: vec![("a", 3), ("b", 3)],
        },
        Plan {
            name: "heavy users: the per-user load rounds up",
            servers: vec![("a", 90, 4), ("n", 0, 0)],
            to: "n",
            max: 100,
            // 23 per user: 23, then 46 would leave a with 44 < 46.
            want: vec![("a", 1)],
        },
        Plan {
            name: "never above max_load",
            servers: vec![("a", 100, 10), ("b", 100, 10), ("n", 0, 0)],
            to: "n",
            max: 25,
            // 10 per user: 10, 20, and 30 would pass max_load.
            want: vec![("a", 1), ("b", 1)],
        },
        Plan {
            name: "already at the mean: nothing",
            servers: vec![("a", 10, 5), ("n", 10, 5)],
            to: "n",
            max: 100,
            want: vec![],
        },
        Plan {
            name: "donors without users give nothing",
            servers: vec![("a", 50, 0), ("n", 0, 0)],
            to: "n",
            max: 100,
            want: vec![],
        },
        Plan {
            name: "a lone new server: nothing",
            servers: vec![("n", 0, 0)],
            to: "n",
            max: 100,
            want: vec![],
        },
        Plan {
            name: "one user with load 1 is never moved away from a pair of 1",
            servers: vec![("a", 1, 1), ("n", 0, 0)],
            to: "n",
            max: 100,
            want: vec![],
        },
    ];
    for case in table {
        let servers: Vec<LoadFigures> = case
            .servers
            .iter()
            .map(|&(id, load, users)| (id.to_string(), load, users))
            .collect();
        let got = plan_rebalance(&servers, case.to, case.max);
        let want: Vec<(String, usize)> = case
            .want
            .iter()
            .map(|&(id, n)| (id.to_string(), n))
            .collect();
        assert_eq!(got, want, "{}", case.name);
        // The plan never moves more users than a server has, nor fills `to` above the
        // mean or max_load.
        for (from, n) in &got {
            let (_, _, users) = servers.iter().find(|s| s.0 == *from).unwrap();
            assert!(*n as u64 <= *users, "{}", case.name);
        }
    }
}
