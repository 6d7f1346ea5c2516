#!/usr/bin/env bash
# Runs `rendezvous sim` on every shipped scenario (simulations/*.toml), prints the tables and
# fails when a paper scenario's simulated reduction is more than 10 percentage points from
# the published one. Builds the release binary first if it is missing. Prints the total time.
# One `PASS|FAIL <tab> name <tab> detail` line per scenario with published figures, and one for
# the time of the whole set (< 60 s, issue 8); with SIM_RESULTS set they are appended there too
# (scripts/test.sh counts them).
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
report() { # PASS|FAIL name detail
    printf '%s\t%s\t%s\n' "$1" "$2" "$3"
    [[ -z "${SIM_RESULTS:-}" ]] || printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$SIM_RESULTS"
    [[ $1 == PASS ]] || status=1
}
for csv in "$out"/*.csv; do
    name=sim.$(basename "$csv" .csv)
    # The last column is simulated minus published (pp) where a published figure exists.
    worst=$(awk -F, 'NR > 1 && $NF != "" { d = $NF < 0 ? -$NF : $NF; if (d > w) w = d; n++ }
                     END { if (n) printf "%.1f %d", w, n }' "$csv")
    [[ -n $worst ]] || continue
    read -r w n <<<"$worst"
    if awk -v w="$w" 'BEGIN { exit !(w <= 10) }'; then
        report PASS "$name" "$n published reductions, worst difference $w pp (within 10)"
    else
        report FAIL "$name" "worst difference from the published reduction $w pp (more than 10): $(
            awk -F, 'NR > 1 && $NF != "" { d = $NF < 0 ? -$NF : $NF; if (d > 10) printf "users %s: %s pp; ", $1, $NF }' "$csv")"
    fi
done
secs=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')
count=$(ls "$out"/*.csv | wc -l)
if awk -v t="$secs" 'BEGIN { exit !(t < 60) }'; then
    report PASS sim.all "$count scenarios simulated in $secs s (under 60 s)"
else
    report FAIL sim.all "$count scenarios took $secs s (60 s allowed)"
fi
exit $status
