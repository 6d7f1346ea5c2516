//! Allocator benchmark: `cargo bench --bench allocator` (plain harness, std only).
//!
//! The placement decision of the primary (DESIGN.md §4) at scale: 1,000 servers with varied
//! loads and 1,000,000 users in the directory. Prints the directory's build time, then the
//! mean time per operation of
//! (a) `place` for users not in the directory (a miss, then a pass over every server),
//! (b) `place` for sticky users (a directory hit on a live home),
//! (c) `place_excluding` with two excluded servers (the two-phase fallback),
//! (d) `begin` + `confirm` (a reservation completing; the directory grows),
//! (e) a whole placement cycle: `place`, `begin`, `confirm` for a new user,
//! (f) `tick` over the 1,000 servers.
//!
//! Users are visited in a scrambled order so directory lookups miss the cache as a busy
//! primary's would. Benchmarks print; they do not assert timings (the target is < 50 µs per
//! decision). Runs in a few seconds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rendezvous::cluster::allocator::{Allocator, Decision, Params};

const SERVERS: usize = 1_000;
const USERS: usize = 1_000_000;
const OPS: usize = 200_000;

/// A deterministic pseudo-random sequence (64-bit LCG, high bits).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn server_id(i: usize) -> String {
    format!("node-{i:04}")
}

fn user_id(i: usize) -> String {
    format!("user{i}@example.com")
}

fn per_op(elapsed: Duration, ops: usize) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

fn main() {
    let mut rng = Lcg(0x5eed);
    // Most servers are fairly full; a new user of cost 5 fits on about half of them, so a
    // decision scans all and picks among many candidates.
    let params = Params {
        max_load: 10_000,
        ..Params::default()
    };
    let mut alloc = Allocator::new(params);
    let servers: Vec<String> = (0..SERVERS).map(server_id).collect();
    for (i, id) in servers.iter().enumerate() {
        alloc.add_server(id, 0);
        let load = 5_000 + rng.below(10_000);
        let users = load / 10 + rng.below(50);
        alloc.report(id, 1, load, users, i as u64);
    }

    let names: Vec<String> = (0..USERS).map(user_id).collect();
    let started = Instant::now();
    for (i, user) in names.iter().enumerate() {
        alloc.set_home(user, &servers[i % SERVERS]);
    }
    let build = started.elapsed();
    println!(
        "allocator: {SERVERS} servers, {} directory entries",
        alloc.directory_len()
    );
    println!(
        "  directory build (set_home x {USERS}): {:>8.1} ms, {:>6.0} ns/entry",
        build.as_secs_f64() * 1e3,
        per_op(build, USERS)
    );

    // Inputs are made before timing.
    let fresh: Vec<String> = (0..OPS).map(|i| format!("new{i}@example.com")).collect();
    let sticky: Vec<&str> = (0..OPS)
        .map(|_| names[rng.below(USERS as u64) as usize].as_str())
        .collect();
    let exclude = [servers[17].as_str(), servers[420].as_str()];

    // (a) New users: directory miss, full pass.
    let started = Instant::now();
    let mut least = 0usize;
    for user in &fresh {
        least += matches!(black_box(alloc.place(user, 5)), Decision::Least(_)) as usize;
    }
    let new_users = started.elapsed();

    // (b) Sticky users.
    let started = Instant::now();
    let mut stuck = 0usize;
    for user in &sticky {
        stuck += matches!(black_box(alloc.place(user, 5)), Decision::Sticky(_)) as usize;
    }
    let sticky_users = started.elapsed();

    // (c) Two-phase fallback.
    let started = Instant::now();
    for user in &fresh {
        black_box(alloc.place_excluding(user, 5, &exclude));
    }
    let excluding = started.elapsed();

    // (d) begin + confirm, on the server a placement would pick (chosen beforehand).
    let targets: Vec<String> = fresh
        .iter()
        .map(|u| alloc.place(u, 5).server().unwrap_or_default().to_owned())
        .collect();
    let mut cycle_alloc = alloc.clone();
    let started = Instant::now();
    for (user, server) in fresh.iter().zip(&targets) {
        cycle_alloc.begin(server, 5);
        cycle_alloc.confirm(user, server, 5);
    }
    let begin_confirm = started.elapsed();
    drop(cycle_alloc);

    // (e) The whole cycle for new users.
    let started = Instant::now();
    for user in &fresh {
        if let Some(server) = alloc.place(user, 5).server().map(str::to_owned) {
            alloc.begin(&server, 5);
            alloc.confirm(user, &server, 5);
        }
    }
    let cycle = started.elapsed();

    // (f) Liveness pass (no transitions: every server reported "now").
    const TICKS: usize = 10_000;
    let started = Instant::now();
    for _ in 0..TICKS {
        black_box(alloc.tick(black_box(1_000)));
    }
    let ticks = started.elapsed();

    println!(
        "  (a) place, new user:          {:>8.0} ns/decision ({least}/{OPS} Least)",
        per_op(new_users, OPS)
    );
    println!(
        "  (b) place, sticky user:       {:>8.0} ns/decision ({stuck}/{OPS} Sticky)",
        per_op(sticky_users, OPS)
    );
    println!(
        "  (c) place_excluding (2):      {:>8.0} ns/decision",
        per_op(excluding, OPS)
    );
    println!(
        "  (d) begin + confirm:          {:>8.0} ns/cycle",
        per_op(begin_confirm, OPS)
    );
    println!(
        "  (e) place + begin + confirm:  {:>8.0} ns/cycle (directory now {})",
        per_op(cycle, OPS),
        alloc.directory_len()
    );
    println!(
        "  (f) tick, {SERVERS} servers:       {:>8.0} ns/tick",
        per_op(ticks, TICKS)
    );
}
