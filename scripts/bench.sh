#!/usr/bin/env bash
# Benchmarks, each printing its figures (none is a test):
# - c2s (benches/c2s.rs): builds the release server binary and the bench, runs the node as a
#   separate process on a free loopback port; output kept in target/bench-latest.txt.
#   Extra arguments go to this `cargo bench --bench c2s` only.
# - redirect (benches/redirect.rs): what a redirect by the primary adds to a login;
#   output in target/bench-redirect-latest.txt.
# - cluster (benches/cluster.rs): issue 5 targets (user move, cross-node presence) on an
#   in-process cluster; output in target/bench-cluster-latest.txt. BENCH_* variables are
#   described in the file's header.
#
# 10,000 idle sessions need ~10,000 open files in both the bench and the server process.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "open-files limit: $(ulimit -n)"
mkdir -p target
cargo bench --bench c2s "$@" 2>&1 | tee target/bench-latest.txt
cargo bench --bench redirect 2>&1 | tee target/bench-redirect-latest.txt
cargo bench --bench cluster 2>&1 | tee target/bench-cluster-latest.txt
