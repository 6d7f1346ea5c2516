#!/usr/bin/env bash
# c2s benchmark (benches/c2s.rs): builds the release server binary and the bench, runs the
# node as a separate process on a free loopback port, and prints the figures; the output is
# also kept in target/bench-latest.txt. Extra arguments go to `cargo bench`.
#
# 10,000 idle sessions need ~10,000 open files in both the bench and the server process.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "open-files limit: $(ulimit -n)"
mkdir -p target
cargo bench --bench c2s "$@" 2>&1 | tee target/bench-latest.txt
