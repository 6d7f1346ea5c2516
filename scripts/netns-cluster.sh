#!/usr/bin/env bash
# Multi-host test of a Rendezvous cluster on one machine: every server runs in its own network
# namespace, with its own address, so redirects, CCMP and the pool spawn cross real (virtual)
# links instead of loopback ports.
#
# Topology (subnet 10.77.0.0/24, nothing is added to the root namespace):
#   rdv-nsbr        bridge rdv-br0; one veth port per namespace below (rdv-p<i>)
#   rdv-ns1         10.77.0.1   primary   (role = "primary")
#   rdv-ns2         10.77.0.2   worker1   ([[node]] role = "worker": joins at start)
#   rdv-ns3         10.77.0.3   pool1     ([[pool]] with `spawn`: the primary starts it)
#   rdv-ns4         10.77.0.4   late      ([[pool]] without spawn; the test starts it with --join)
#                   10.77.0.4   rogue     ([[pool]] on other ports, run with a config whose
#                                          secret differs: must be refused)
#   rdv-ns5..N      10.77.0.i   spare<i>  ([[pool]] entries that are never started; -n N > 4)
#   rdv-nsc         10.77.0.100 clients (slixmpp, sipp, raw XMPP); its /etc/hosts (from
#                               /etc/netns/rdv-nsc/hosts) maps cluster.test to the primary
# Every server listens on XMPP 5222, SIP 5060 (UDP+TCP) and admin 5280 of its own address
# (rogue: 5223/5061/5281). XMPP TLS is required (non-loopback listeners): each node makes a
# self-signed certificate in its data dir.
#
# The script writes cluster.toml (domain cluster.test, max_load 40, redirect "both", ...) and
# rogue.toml (same but the secret) into a temp dir, creates the users user001..user095 in the
# primary's store (users.csv: name,password), starts primary and worker1 (setsid, logs in the
# temp dir), waits for their admin APIs and then:
#   --test   runs tests/interop/cluster_netns.py in rdv-nsc (90 users via slixmpp, sipp and the
#            raw cxfr client; pool spawn; runtime join of `late`; refusal of `rogue`)
#   --keep   leaves the cluster running until Ctrl-C (prints how to reach it)
# A trap tears everything down on any exit (processes of every rdv-* namespace, TERM then KILL,
# bounded; the namespaces with their veths and bridge; /etc/netns/rdv-nsc; the temp dir unless
# KEEP_DIR=1). Leftovers of an earlier aborted run are removed at start. Installs nothing.
#
# Usage: scripts/netns-cluster.sh --test|--keep [-n SERVERS]    (as root)
# Env:   RENDEZVOUS_BIN  node binary (default <repo>/target/release/rendezvous; not built here)
#        NETNS_PYTHON    python with slixmpp (default <repo>/.venv-interop/bin/python)
#        SIPP            sipp binary (default sipp; Debian package sip-tester)
#        NETNS_RESULTS   also append the PASS/FAIL lines (`PASS|FAIL<TAB>name<TAB>reason`) here
#        KEEP_DIR=1      keep the temp dir (configs, node logs, sipp logs)
#        RUST_LOG        node log filter (default info)
# Exit:  0 when every check passed (--test) or after Ctrl-C (--keep).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${RENDEZVOUS_BIN:-$ROOT/target/release/rendezvous}"
PY="${NETNS_PYTHON:-$ROOT/.venv-interop/bin/python}"
SIPP="${SIPP:-sipp}"
TEST_PY="$ROOT/tests/interop/cluster_netns.py"

NET=10.77.0          # /24 of the test network
NS_PREFIX=rdv-ns     # server namespaces rdv-ns1..N
CLIENT_NS=rdv-nsc    # clients
BRIDGE_NS=rdv-nsbr   # holds the bridge
BRIDGE=rdv-br0
CLIENT_IP="$NET.100"
DOMAIN=cluster.test
NUSERS=95            # user001..user090 arrive first, user091..user095 after `late` joined
LOCK=/run/lock/rdv-netns-cluster.lock
[[ -d /run/lock ]] || LOCK=/tmp/rdv-netns-cluster.lock

START_WAIT=20   # s: node start -> admin API answers (worker: joined)
STOP_WAIT=5     # s: SIGTERM -> processes of our namespaces gone (then SIGKILL)
TEST_LIMIT=150  # s: `timeout` around cluster_netns.py (it caps its own phases)

MODE=""
SERVERS=4
usage() { sed -n '/^# Usage:/,/^# Exit:/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
    case "$1" in
        --test) MODE=test ;;
        --keep) MODE=keep ;;
        -n) SERVERS="${2:-}"; shift ;;
        -h | --help) usage ;;
        *) echo "netns-cluster.sh: unknown argument $1" >&2; usage ;;
    esac
    shift
done
[[ -n "$MODE" ]] || usage
[[ "$SERVERS" =~ ^[0-9]+$ ]] && ((SERVERS >= 4 && SERVERS <= 50)) ||
    { echo "netns-cluster.sh: -n must be between 4 and 50" >&2; exit 2; }

T0=$SECONDS
log() { printf 'netns-cluster [%3ds]: %s\n' "$((SECONDS - T0))" "$*" >&2; }
LAST_ERROR="setup failed"
RESULTS_DONE=0
die() { LAST_ERROR="$*"; log "ERROR: $*"; exit 1; }

DIR=""
OWNER=0 # set once we hold the lock: only then are the rdv-* namespaces ours to tear down
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ $rc -ne 0 && -n "$DIR" && "$MODE" == test ]]; then
        for f in "$DIR"/*.log; do
            [[ -s "$f" && "$f" != */clients.log && "$f" != */admin.log ]] || continue
            echo "--- last 12 lines of $(basename "$f") ---" >&2
            tail -n 12 "$f" >&2
        done
    fi
    if ((OWNER)); then
        kill_ns_processes
        remove_network
    fi
    if [[ -n "${NETNS_RESULTS:-}" && $RESULTS_DONE -eq 0 && $rc -ne 0 ]]; then
        printf 'FAIL\tnetns.setup\t%s\n' "${LAST_ERROR//$'\t'/ }" >>"$NETNS_RESULTS"
    fi
    if [[ -n "$DIR" ]]; then
        if [[ "${KEEP_DIR:-0}" == 1 ]]; then
            log "kept $DIR"
        else
            [[ $rc -eq 0 ]] || log "removing $DIR (KEEP_DIR=1 keeps configs and logs)"
            rm -rf "$DIR"
        fi
    fi
    ((OWNER)) && log "torn down (exit $rc)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------- prerequisites
[[ "$(id -u)" -eq 0 ]] || die "must run as root (network namespaces)"
command -v ip >/dev/null || die "no 'ip' command (install iproute2)"
ip netns list >/dev/null 2>&1 || die "'ip netns' does not work here"
command -v "$SIPP" >/dev/null || die "no $SIPP (install the Debian package sip-tester)"
command -v setsid >/dev/null || die "no setsid (util-linux)"
[[ -x "$PY" ]] || die "no python at $PY (run scripts/test.sh once: it makes the venv)"
"$PY" -c 'import slixmpp, tomllib' 2>/dev/null || die "$PY lacks slixmpp (or is older than 3.11)"
[[ -x "$BIN" ]] || die "no node binary at $BIN (set RENDEZVOUS_BIN or build target/release)"
[[ -f "$TEST_PY" ]] || die "missing $TEST_PY"

our_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^rdv-ns" || true; }

# Kills every process living in our namespaces: TERM, bounded wait, KILL. Lists them again
# and again until none is left, so that a process started meanwhile (a pool server the
# primary spawns while it is told to stop) is caught too.
ns_pids() {
    local ns
    for ns in $(our_namespaces); do ip netns pids "$ns" 2>/dev/null || true; done
}
kill_ns_processes() {
    local pids end
    pids="$(ns_pids)"
    [[ -n "$pids" ]] || return 0
    end=$((SECONDS + STOP_WAIT))
    while [[ -n "$pids" ]] && ((SECONDS < end)); do
        # shellcheck disable=SC2086 # one pid per word
        kill -TERM $pids 2>/dev/null || true
        sleep 0.2
        pids="$(ns_pids)"
    done
    [[ -n "$pids" ]] || return 0
    log "still running after ${STOP_WAIT}s, SIGKILL: $(ps -o pid=,comm= -p "${pids//$'\n'/,}" 2>/dev/null | tr -s ' \n' ' ')"
    end=$((SECONDS + 3))
    while [[ -n "$pids" ]] && ((SECONDS < end)); do
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.2
        pids="$(ns_pids)"
    done
    [[ -z "$pids" ]] || log "WARNING: processes survived SIGKILL: $pids"
}

remove_network() {
    local ns
    for ns in $(our_namespaces); do ip netns del "$ns" 2>/dev/null || log "could not delete netns $ns"; done
    rm -rf "/etc/netns/$CLIENT_NS"
    rmdir /etc/netns 2>/dev/null || true # only when empty
}


# Only one run at a time: namespaces and addresses are fixed.
exec 9>"$LOCK"
if command -v flock >/dev/null; then
    flock -n 9 || die "another netns-cluster.sh run holds $LOCK"
fi
OWNER=1

# ---------------------------------------------------------------------------- leftovers
if [[ -n "$(our_namespaces)" ]]; then
    log "removing leftovers of an earlier run: $(our_namespaces | tr '\n' ' ')"
    kill_ns_processes
    remove_network
fi

# ---------------------------------------------------------------------------- network
log "network: $SERVERS server namespaces + $CLIENT_NS on $NET.0/24 via $BRIDGE_NS/$BRIDGE"
ip netns add "$BRIDGE_NS"
ip -n "$BRIDGE_NS" link set lo up
ip -n "$BRIDGE_NS" link add "$BRIDGE" type bridge
ip -n "$BRIDGE_NS" link set "$BRIDGE" up

add_host() { # namespace index address
    local ns="$1" i="$2" addr="$3"
    ip netns add "$ns"
    ip -n "$BRIDGE_NS" link add "rdv-p$i" type veth peer name eth0 netns "$ns"
    ip -n "$BRIDGE_NS" link set "rdv-p$i" master "$BRIDGE"
    ip -n "$BRIDGE_NS" link set "rdv-p$i" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
}
for ((i = 1; i <= SERVERS; i++)); do add_host "$NS_PREFIX$i" "$i" "$NET.$i"; done
add_host "$CLIENT_NS" 100 "$CLIENT_IP"

# The clients' name service: the cluster domain resolves to the primary (what a DNS A record
# would do for a real deployment); no resolver is reachable from the namespace.
mkdir -p "/etc/netns/$CLIENT_NS"
printf '127.0.0.1 localhost\n%s %s\n' "$NET.1" "$DOMAIN" >"/etc/netns/$CLIENT_NS/hosts"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"/etc/netns/$CLIENT_NS/resolv.conf"

# ---------------------------------------------------------------------------- configuration
DIR="$(mktemp -d "${TMPDIR:-/tmp}/rdv-netns.XXXXXX")"
chmod 755 "$DIR"
CFG="$DIR/cluster.toml"
ROGUE_CFG="$DIR/rogue.toml"
case "$BIN$DIR" in *[\'\"\\]*) die "paths with quotes or backslashes are not supported: $BIN $DIR" ;; esac
secret() { # 24 random letters and digits (no `head` at the end of a pipe: no SIGPIPE)
    local s
    s="$(head -c 48 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9')"
    printf '%s' "${s:0:24}"
}
SECRET="$(secret)"

entry() { # kind id role-or-empty ip xmpp sip admin [spawn]
    printf '\n[[%s]]\nid = "%s"\n' "$1" "$2"
    [[ -n "$3" ]] && printf 'role = "%s"\n' "$3"
    printf 'xmpp = "%s:%s"\nsip = "%s:%s"\nadmin = "%s:%s"\ndata_dir = "%s/data-%s"\n' \
        "$4" "$5" "$4" "$6" "$4" "$7" "$DIR" "$2"
    [[ -n "${8:-}" ]] && printf 'spawn = "%s"\n' "$8"
    return 0
}
{
    cat <<EOF
# Generated by scripts/netns-cluster.sh (one network namespace per server).
[cluster]
domain = "$DOMAIN"
secret = "$SECRET"
max_load = 40
min_load = 0
# This test checks where NEW users are placed (primary, worker1, then the pool); moving
# users onto the pool server (DESIGN.md §7) is tested by tests/cluster.rs and netns-data.sh.
rebalance_on_join = false
redirect = "both"
report_interval_ms = 500
dead_after_ms = 5000
ccmp_timeout_ms = 2000
spawn_timeout_ms = 15000

[xmpp]
tls = "required" # non-loopback listeners: each node makes a self-signed cert in its data dir
EOF
    entry node primary primary "$NET.1" 5222 5060 5280
    entry node worker1 worker "$NET.2" 5222 5060 5280
    entry pool pool1 "" "$NET.3" 5222 5060 5280 \
        "ip netns exec ${NS_PREFIX}3 setsid '$BIN' node --config '$CFG' --id pool1 > '$DIR/pool1.log' 2>&1 &"
    entry pool late "" "$NET.4" 5222 5060 5280
    entry pool rogue "" "$NET.4" 5223 5061 5281
    for ((i = 5; i <= SERVERS; i++)); do entry pool "spare$i" "" "$NET.$i" 5222 5060 5280; done
} >"$CFG"
# The rogue: the same cluster description under another secret.
sed "s/^secret = .*/secret = \"$(secret)\"/" "$CFG" >"$ROGUE_CFG"

export NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}"

# ---------------------------------------------------------------------------- users
log "creating $NUSERS users in the primary's store"
USERS_CSV="$DIR/users.csv"
: >"$USERS_CSV"
for ((i = 1; i <= NUSERS; i++)); do
    pw="$(secret)"
    printf 'user%03d,%s\n' "$i" "${pw:0:12}" >>"$USERS_CSV"
done
while IFS=, read -r name pw; do
    timeout -k 2 20 "$BIN" user --config "$CFG" add "$name" --password "$pw" >>"$DIR/admin.log" 2>&1 ||
        die "user add $name failed (see $DIR/admin.log)"
done <"$USERS_CSV"

# ---------------------------------------------------------------------------- nodes
in_ns() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }
node_json() { # admin address -> /api/node JSON (empty when it does not answer)
    in_ns "$CLIENT_NS" timeout -k 1 3 "$BIN" ctl --config "$CFG" --admin "$1" node 2>/dev/null || true
}
start_node() { # namespace id
    ip netns exec "$1" setsid "$BIN" node --config "$CFG" --id "$2" >>"$DIR/$2.log" 2>&1 9>&- &
    log "started $2 in $1 (pid $!)"
}
wait_node() { # id admin-address grep-pattern-of-ready
    local id="$1" admin="$2" want="$3" end=$((SECONDS + START_WAIT)) json
    while ((SECONDS < end)); do
        json="$(node_json "$admin")"
        if grep -q -- "$want" <<<"$json"; then
            log "$id ready: $json"
            return 0
        fi
        sleep 0.2
    done
    die "$id not ready within ${START_WAIT}s (last /api/node: ${json:-no answer}); see $DIR/$id.log"
}
start_node "${NS_PREFIX}1" primary
wait_node primary "$NET.1:5280" '"role":"primary"'
start_node "${NS_PREFIX}2" worker1
wait_node worker1 "$NET.2:5280" '"joined":true'

LATE_CMD="ip netns exec ${NS_PREFIX}4 setsid '$BIN' node --config '$CFG' --id late --join sip:$NET.1:5060 >> '$DIR/late.log' 2>&1"
ROGUE_CMD="ip netns exec ${NS_PREFIX}4 setsid '$BIN' node --config '$ROGUE_CFG' --id rogue --join sip:$NET.1:5060 >> '$DIR/rogue.log' 2>&1"

if [[ "$MODE" == keep ]]; then
    cat >&2 <<EOF

Cluster running (config $CFG, logs $DIR/*.log, users $USERS_CSV).
  status:    ip netns exec $CLIENT_NS $BIN ctl --config $CFG --admin $NET.1:5280 status
  raw XMPP:  ip netns exec $CLIENT_NS $PY $ROOT/tests/interop/cluster_cxfr_client.py $NET.1:5222 $DOMAIN USER PASSWORD --hold 30
  late join: $LATE_CMD
  rogue:     $ROGUE_CMD
Ctrl-C tears everything down.
EOF
    while true; do sleep 1; done
fi

# ---------------------------------------------------------------------------- test
log "running cluster_netns.py in $CLIENT_NS"
test_rc=0
in_ns "$CLIENT_NS" env LATE_CMD="$LATE_CMD" ROGUE_CMD="$ROGUE_CMD" \
    timeout -k 5 "$TEST_LIMIT" "$PY" -B "$TEST_PY" \
    --config "$CFG" --rogue-config "$ROGUE_CFG" --users "$USERS_CSV" --work "$DIR" \
    --client-ip "$CLIENT_IP" --sipp "$(command -v "$SIPP")" \
    --scenario "$ROOT/tests/sipp/redirect_register.xml" \
    --cxfr-client "$ROOT/tests/interop/cluster_cxfr_client.py" \
    --results "$DIR/results" 9>&- || test_rc=$?
if [[ -n "${NETNS_RESULTS:-}" && -s "$DIR/results" ]]; then
    cat "$DIR/results" >>"$NETNS_RESULTS"
    RESULTS_DONE=1
fi
((test_rc == 0)) || LAST_ERROR="cluster_netns.py exit $test_rc without results"
((test_rc == 124 || test_rc == 137)) && log "cluster_netns.py killed after ${TEST_LIMIT}s"
log "cluster_netns.py exit $test_rc; total $((SECONDS - T0))s"
exit "$test_rc"
