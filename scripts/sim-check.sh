#!/usr/bin/env bash
# Runs `rendezvous sim` on every shipped scenario (simulations/*.toml), prints the tables and
# fails when a paper scenario's simulated reduction is more than 10 percentage points from
# the published one. Builds the release binary first if it is missing. Prints the total time.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/rendezvous
if [[ ! -x $bin ]]; then
    cargo build --release --quiet
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
start=$(date +%s.%N)
"$bin" sim --out "$out" | tee "$out/tables.txt"
end=$(date +%s.%N)
status=0
for csv in "$out"/*.csv; do
    # The last column is simulated minus published (pp) where a published figure exists.
    bad=$(awk -F, 'NR > 1 && $NF != "" { d = $NF < 0 ? -$NF : $NF; if (d > 10) print "users " $1 ": " $NF " pp" }' "$csv")
    if [[ -n $bad ]]; then
        echo "FAIL $(basename "$csv" .csv): more than 10 pp from the published reduction: $bad"
        status=1
    fi
done
awk -v s="$start" -v e="$end" 'BEGIN { printf "sim-check: all scenarios in %.2f s\n", e - s }'
if [[ $status -eq 0 ]]; then
    echo "sim-check: every published reduction reproduced within 10 pp"
fi
exit $status
