#!/usr/bin/env bash
# Multi-host test of `rendezvous replay` (DESIGN.md §10): a scenario replayed against a live
# three-server cluster in network namespaces, beside the simulator's prediction of it.
#
# Topology (subnet 10.80.0.0/24, nothing is added to the root namespace):
#   rdv-r1          10.80.0.1   primary   (role = "primary")
#   rdv-r2          10.80.0.2   pool1     ([[pool]] with `spawn`: the primary starts it when full)
#   rdv-r3          10.80.0.3   pool2     ([[pool]] with `spawn`)
#   rdv-rc          10.80.0.100 clients   (`rendezvous replay`: every virtual user)
# The cluster's max_load, min_load and weights are the scenario's; accounts are created by
# the replay itself (XEP-0077, `registration = "open"`); SIP without digest auth.
#
# Usage: scripts/netns-replay.sh --test | --keep | --streaming [--minutes M]
#   --test       replays simulations/replay-short.toml (260 users in three steps, --compress 3,
#                about 21 s) and checks: the replay completed; no server passed max_load in
#                the admin API samples; no login or SUBSCRIBE failed; the servers active at the
#                end of every step equal the simulator's prediction (1, 2, 3); the whole
#                script took under 60 s. Prints PASS/FAIL lines and a count.
#   --keep       builds the same cluster and waits (Ctrl-C tears it down): replay by hand.
#   --streaming  the software-streaming paper's test (simulations/streaming-3000.toml):
#                3,000 users on three servers for M minutes (default 3); prints the figures
#                (users, duration, requests, errors, p50/p99 latency, servers) and writes the
#                CSV/SVG under simulations/results/replay/. Target: no errors, p99 < 50 ms.
# Env: RENDEZVOUS_BIN (default target/release/rendezvous), NETNS_RESULTS (PASS/FAIL lines
#   appended there), KEEP_DIR=1 keeps the temp dir (configs, logs, replay.json).
# Exit: 0 when every check passed (--streaming: when the run completed without errors).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME=netns-replay
SETUP_NAME=netns-replay.setup
NET=10.80.0         # /24 of the test network (cluster: 10.77.0, data: 10.78.0, scale: 10.79.0)
NS_PREFIX=rdv-r     # namespaces rdv-r1..3, rdv-rc (clients), rdv-rbr (bridge)
SERVERS=3           # primary + two pool servers the primary spawns
DOMAIN=cluster.test
SHORT="$ROOT/simulations/replay-short.toml"
STREAMING="$ROOT/simulations/streaming-3000.toml"
TEST_BUDGET=60      # s: the whole --test run, set-up and tear-down included
MINUTES=3

usage() { sed -n '/^# Usage:/,/^# Exit:/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
ARG_MODE=""
while (($#)); do
    case "$1" in
        --test) ARG_MODE=test ;;
        --keep) ARG_MODE=keep ;;
        --streaming) ARG_MODE=streaming ;;
        --minutes)
            MINUTES="${2:-}"
            shift
            ;;
        -h | --help) usage ;;
        *) echo "$NAME.sh: unknown argument $1" >&2; usage ;;
    esac
    shift
done
[[ -n "$ARG_MODE" ]] || usage
[[ "$MINUTES" =~ ^[0-9]+$ ]] && ((MINUTES >= 1 && MINUTES <= 60)) ||
    { echo "$NAME.sh: --minutes must be 1 ..= 60" >&2; exit 2; }

# shellcheck source=scripts/lib/netns.sh
source "$ROOT/scripts/lib/netns.sh"
MODE="$ARG_MODE"

# What this test needs (no slixmpp or sipp: the replay brings its own clients).
[[ "$(id -u)" -eq 0 ]] || die "must run as root (network namespaces)"
command -v ip >/dev/null || die "no 'ip' command (install iproute2)"
ip netns list >/dev/null 2>&1 || die "'ip netns' does not work here"
command -v setsid >/dev/null || die "no setsid (util-linux)"
command -v python3 >/dev/null || die "no python3 (reads the scenario and the JSON summary)"
[[ -x "$BIN" ]] || die "no node binary at $BIN (set RENDEZVOUS_BIN or build target/release)"
for f in "$SHORT" "$STREAMING"; do [[ -f "$f" ]] || die "missing $f"; done
netns_lock
netns_network "$SERVERS"
netns_tempdir

SCENARIO="$SHORT"
COMPRESS=3
if [[ "$MODE" == streaming ]]; then
    # The scenario with step_s = M minutes (users arrive over the first 30 s and stay).
    SCENARIO="$DIR/streaming-3000.toml"
    sed "s/^step_s = .*/step_s = $((MINUTES * 60)).0/" "$STREAMING" >"$SCENARIO"
    COMPRESS=1
fi
# The scenario's cluster policy, for cluster.toml.
read -r MAX_LOAD MIN_LOAD W_USERS W_RES < <(python3 - "$SCENARIO" <<'PY'
import sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb")).get("cluster", {})
print(c.get("max_load", 100), c.get("min_load", 20), c.get("w_users", 1), c.get("w_resources", 1))
PY
)

spawn_cmd() { # id namespace
    printf "ip netns exec %s setsid '%s' node --config '%s' --id %s >> '%s/%s.log' 2>&1 &" \
        "$2" "$BIN" "$CFG" "$1" "$DIR" "$1"
}
stop_cmd() { printf 'ip netns pids %s | xargs -r kill -TERM' "$1"; }
{
    netns_toml_head
    cat <<EOF
# The scenario's policy ($(basename "$SCENARIO")).
max_load = $MAX_LOAD
min_load = $MIN_LOAD
weight_users = $W_USERS
weight_resources = $W_RES
scale_in_after_s = 0
rebalance_on_join = true
redirect = "see-other-host"
report_interval_ms = 250
dead_after_ms = 3000
ccmp_timeout_ms = 1000
spawn_timeout_ms = 10000

[xmpp]
tls = "required" # non-loopback listeners: each node makes a self-signed cert in its data dir
registration = "open" # the replay creates its accounts (XEP-0077)

[sip]
presence_policy = "domain" # subscriptions between users of the domain are approved by the server
sip_auth = false
EOF
    netns_toml_nodes
    netns_entry pool pool1 "" "$NET.2" 5222 5060 5280 "$(spawn_cmd pool1 "${NS_PREFIX}2")" "$(stop_cmd "${NS_PREFIX}2")"
    netns_entry pool pool2 "" "$NET.3" 5222 5060 5280 "$(spawn_cmd pool2 "${NS_PREFIX}3")" "$(stop_cmd "${NS_PREFIX}3")"
} >"$CFG"
USERS_CSV="(accounts: the replay registers user1.. with password pass1..)"
netns_start_nodes

REPLAY=("$BIN" replay "$SCENARIO" --primary "$NET.1:5222,5060,5280" --compress "$COMPRESS"
    --domain "$DOMAIN" --register --progress never --json "$DIR/replay.json")
if [[ "$MODE" == keep ]]; then
    netns_keep "replay:    ip netns exec $CLIENT_NS ${REPLAY[*]} --out $DIR/out"
fi

if [[ "$MODE" == streaming ]]; then
    LIMIT=$((MINUTES * 60 + 120))
    OUT="$ROOT/simulations/results/replay"
else
    LIMIT=$((TEST_BUDGET - (SECONDS - T0) - 8))
    ((LIMIT > 25)) || die "set-up took $((SECONDS - T0)) s: no time left for the replay"
    OUT="$DIR/out"
fi
log "replaying $(basename "$SCENARIO") from $CLIENT_NS (limit ${LIMIT}s)"
LAST_ERROR="the replay did not finish"
rc=0
# In the background with `wait`: a TERM/INT runs the trap (which kills the namespace's
# processes, the replay included) at once.
ulimit -n 65536 2>/dev/null || true
in_ns "$CLIENT_NS" timeout -k 3 "$LIMIT" "${REPLAY[@]}" --out "$OUT" 9>&- \
    >"$DIR/replay.out" 2>"$DIR/replay.err" &
wait "$!" || rc=$?
cat "$DIR/replay.out" >&2
[[ -s "$DIR/replay.err" ]] && tail -n 5 "$DIR/replay.err" >&2

# The checks, from the JSON summary.
python3 - "$DIR/replay.json" "$rc" "$MODE" "$((SECONDS - T0))" "$TEST_BUDGET" \
    >"$DIR/results" <<'PY' || true
import json, sys
path, rc, mode, took, budget = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
out = []
def check(name, ok, why):
    out.append(f"{'PASS' if ok else 'FAIL'}\treplay.{name}\t{why}")
try:
    r = json.load(open(path))
except Exception as e:
    check("completed", False, f"exit {rc}, no summary: {e}")
    print("\n".join(out)); sys.exit(0)
check("completed", rc == 0 and not r["interrupted"], f"exit {rc}, {r['wall_s']:.1f} s")
loads = ", ".join(f"{k} {v['max_seen']}" for k, v in r["servers"].items())
check("max_load", r["admin_samples"] > 0 and not r["overloaded"],
      f"max load per server: {loads or 'no samples'} (max_load {r['max_load']}, "
      f"cluster says {r['cluster_max_load']}; {r['admin_samples']} samples, {r['admin_failed']} failed)")
c = r["counters"]
# Every failure counts, the un-PUBLISH at logout included: a moved SIP user's publications
# follow it to its new home with their entity-tags (DESIGN.md §7), so its removal matches there.
other = r["failures"]
check("no_failures", not other and c["logins_failed"] == 0 and c["subscribes_failed"] == 0
      and c["subscribes_ok"] > 0,
      f"{c['logins_ok']} logins ({c['logins_failed']} failed), {c['subscribes_ok']} of "
      f"{c['subscribes_sent']} subscribes answered, failures {other or 'none'}")
steps = " ".join(f"{s['users']}u:{s['servers_observed']}/{s['servers_predicted']}" for s in r["steps"])
if mode == "test":
    check("servers_follow_prediction", r["steps_mismatched"] == 0 and r["peak_servers"] == 3,
          f"per step users:observed/predicted servers {steps}; over time {r['servers_active']}")
    check("duration", took < budget, f"{took} s so far (budget {budget} s)")
l = r["subscribe_latency"]
print("\n".join(out))
print(f"FIGURES\tusers {r['peak_users']} (peak online {r['peak_online']}), {r['duration_s']:.0f} s, "
      f"{c['subscribes_sent']} subscribes, {r['failures_total']} errors, p50 {l['p50_ms']:.2f} ms, "
      f"p90 {l['p90_ms']:.2f} ms, p99 {l['p99_ms']:.2f} ms, max {l['max_ms']:.2f} ms, "
      f"servers {steps} (peak {r['peak_servers']})")
PY
[[ -n "${NETNS_RESULTS:-}" ]] && grep -E '^(PASS|FAIL)' "$DIR/results" >>"$NETNS_RESULTS" && RESULTS_DONE=1
cat "$DIR/results"
pass=$(grep -c '^PASS' "$DIR/results" || true)
fail=$(grep -c '^FAIL' "$DIR/results" || true)
printf '%s: %d passed, %d failed (%d s)\n' "$NAME" "$pass" "$fail" "$((SECONDS - T0))"
LAST_ERROR="replay checks failed"
((fail == 0 && pass > 0))
