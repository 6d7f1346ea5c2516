#!/usr/bin/env bash
# Multi-host test of the cluster DATA PLANE (DESIGN.md §3, §4, §8): presence, messages and SIP
# watchers across nodes, and the loss of a worker (SIGKILL), with every server in its own
# network namespace. Same style as scripts/netns-cluster.sh, on its own subnet, namespace
# prefix and lock file, so the two scripts never collide (they may even run at once).
#
# Topology (subnet 10.78.0.0/24, nothing is added to the root namespace):
#   rdv-dbr         bridge rdv-dbr0; one veth port per namespace below (rdv-dp<i>)
#   rdv-d1          10.78.0.1   primary   (role = "primary")
#   rdv-d2          10.78.0.2   worker1   ([[node]] role = "worker": joins at start)
#   rdv-d3          10.78.0.3   worker2   ([[node]] role = "worker": joins at start; the test
#                                          SIGKILLs it in its last phase)
#   rdv-dc          10.78.0.100 clients (slixmpp, sipp, raw asyncio XMPP); its /etc/hosts (from
#                               /etc/netns/rdv-dc/hosts) maps cluster.test to the primary
# Every server listens on XMPP 5222, SIP 5060 (UDP+TCP) and admin 5280 of its own address.
# XMPP TLS is required (non-loopback listeners): each node makes a self-signed certificate.
#
# The script writes cluster.toml (domain cluster.test, redirect "see-other-host", max_load 4
# (the primary fills itself first: a low max_load spreads users; nobody is ever refused),
# report_interval_ms 500, dead_after_ms 3000, ccmp_timeout_ms 1000; [sip] presence_policy
# "domain", sip_auth false) into a temp dir, creates user001..user102 in
# the primary's store (users.csv: name,password), starts the three nodes (setsid, logs in the
# temp dir), waits until the primary answers and both workers joined, and then:
#   --test   runs tests/interop/cluster_data_netns.py in rdv-dc (12 slixmpp users: placement
#            spread, presence and messages across nodes; 6 SIP users: REGISTER placement, then
#            3 SIP watchers of XMPP users on other nodes via tests/sipp/cluster_watch.xml;
#            84 raw XMPP clients under steady presence traffic while worker2 is SIGKILLed)
#   --keep   leaves the cluster running until Ctrl-C (prints how to reach it)
# A trap tears everything down on any exit (processes of every rdv-d* namespace, TERM then
# KILL, bounded; the namespaces with their veths and bridge; /etc/netns/rdv-dc; the temp dir
# unless KEEP_DIR=1). Leftovers of an earlier aborted run are removed at start. Installs nothing.
#
# Usage: scripts/netns-data.sh --test|--keep    (as root)
# Env:   RENDEZVOUS_BIN  node binary (default <repo>/target/release/rendezvous; not built here)
#        NETNS_PYTHON    python with slixmpp (default <repo>/.venv-interop/bin/python)
#        SIPP            sipp binary (default sipp; Debian package sip-tester)
#        NETNS_RESULTS   also append the PASS/FAIL lines (`PASS|FAIL<TAB>name<TAB>reason`) here
#        KEEP_DIR=1      keep the temp dir (configs, node logs, sipp logs, clients.log)
#        RUST_LOG        node log filter (default info)
# Exit:  0 when every check passed (--test) or after Ctrl-C (--keep).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${RENDEZVOUS_BIN:-$ROOT/target/release/rendezvous}"
PY="${NETNS_PYTHON:-$ROOT/.venv-interop/bin/python}"
SIPP="${SIPP:-sipp}"
TEST_PY="$ROOT/tests/interop/cluster_data_netns.py"
REGISTER_XML="$ROOT/tests/sipp/cluster_register.xml"
WATCH_XML="$ROOT/tests/sipp/cluster_watch.xml"

NET=10.78.0          # /24 of the test network (netns-cluster.sh uses 10.77.0)
NS_PREFIX=rdv-d      # server namespaces rdv-d1..3 (netns-cluster.sh uses rdv-ns*)
CLIENT_NS=rdv-dc     # clients
BRIDGE_NS=rdv-dbr    # holds the bridge
BRIDGE=rdv-dbr0
SERVERS=3
CLIENT_IP="$NET.100"
DOMAIN=cluster.test
NUSERS=102           # 12 slixmpp + 6 SIP + 84 raw XMPP clients
LOCK=/run/lock/rdv-netns-data.lock
[[ -d /run/lock ]] || LOCK=/tmp/rdv-netns-data.lock

START_WAIT=20   # s: node start -> admin API answers (worker: joined)
STOP_WAIT=5     # s: SIGTERM -> processes of our namespaces gone (then SIGKILL)
TEST_LIMIT=240  # s: `timeout` around cluster_data_netns.py (it caps its own phases)

MODE=""
usage() { sed -n '/^# Usage:/,/^# Exit:/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
    case "$1" in
        --test) MODE=test ;;
        --keep) MODE=keep ;;
        -h | --help) usage ;;
        *) echo "netns-data.sh: unknown argument $1" >&2; usage ;;
    esac
    shift
done
[[ -n "$MODE" ]] || usage

T0=$SECONDS
log() { printf 'netns-data [%3ds]: %s\n' "$((SECONDS - T0))" "$*" >&2; }
LAST_ERROR="setup failed"
RESULTS_DONE=0
die() { LAST_ERROR="$*"; log "ERROR: $*"; exit 1; }

DIR=""
OWNER=0 # set once we hold the lock: only then are the rdv-d* namespaces ours to tear down
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ $rc -ne 0 && -n "$DIR" && "$MODE" == test ]]; then
        for f in "$DIR"/*.log; do
            [[ -s "$f" && "$f" != */clients.log && "$f" != */admin.log ]] || continue
            echo "--- last 8 lines of $(basename "$f") ---" >&2
            tail -n 8 "$f" >&2
        done
    fi
    if ((OWNER)); then
        kill_ns_processes
        remove_network
    fi
    if [[ -n "${NETNS_RESULTS:-}" && $RESULTS_DONE -eq 0 && $rc -ne 0 ]]; then
        printf 'FAIL\tnetns-data.setup\t%s\n' "${LAST_ERROR//$'\t'/ }" >>"$NETNS_RESULTS"
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
for f in "$TEST_PY" "$REGISTER_XML" "$WATCH_XML"; do [[ -f "$f" ]] || die "missing $f"; done

# Exactly our names: rdv-d1..3, rdv-dc, rdv-dbr (never netns-cluster.sh's rdv-ns*).
our_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^rdv-d([0-9]+|c|br)$" || true; }

# Kills every process living in our namespaces: TERM, bounded wait, KILL; lists them again
# and again until none is left.
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
    flock -n 9 || die "another netns-data.sh run holds $LOCK"
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
    ip -n "$BRIDGE_NS" link add "rdv-dp$i" type veth peer name eth0 netns "$ns"
    ip -n "$BRIDGE_NS" link set "rdv-dp$i" master "$BRIDGE"
    ip -n "$BRIDGE_NS" link set "rdv-dp$i" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
}
for ((i = 1; i <= SERVERS; i++)); do add_host "$NS_PREFIX$i" "$i" "$NET.$i"; done
add_host "$CLIENT_NS" 100 "$CLIENT_IP"

# The clients' name service: the cluster domain resolves to the primary.
mkdir -p "/etc/netns/$CLIENT_NS"
printf '127.0.0.1 localhost\n%s %s\n' "$NET.1" "$DOMAIN" >"/etc/netns/$CLIENT_NS/hosts"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"/etc/netns/$CLIENT_NS/resolv.conf"

# ---------------------------------------------------------------------------- configuration
DIR="$(mktemp -d "${TMPDIR:-/tmp}/rdv-netns-data.XXXXXX")"
chmod 755 "$DIR"
CFG="$DIR/cluster.toml"
case "$BIN$DIR" in *[\'\"\\]*) die "paths with quotes or backslashes are not supported: $BIN $DIR" ;; esac
secret() { # 24 random letters and digits (no `head` at the end of a pipe: no SIGPIPE)
    local s
    s="$(head -c 48 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9')"
    printf '%s' "${s:0:24}"
}

entry() { # id role ip
    printf '\n[[node]]\nid = "%s"\nrole = "%s"\n' "$1" "$2"
    printf 'xmpp = "%s:5222"\nsip = "%s:5060"\nadmin = "%s:5280"\ndata_dir = "%s/data-%s"\n' \
        "$3" "$3" "$3" "$DIR" "$1"
}
{
    cat <<EOF
# Generated by scripts/netns-data.sh (one network namespace per server).
[cluster]
domain = "$DOMAIN"
secret = "$(secret)"
# The primary fills itself up to max_load first (DESIGN.md §1, §4), then the least-loaded
# worker that fits; when every server is full, the least-loaded one anyway (no pool: nobody is
# ever refused). 4 spreads the first 12 users over the three nodes; later users (whose
# rosters make every node "full") go to the least-loaded node.
max_load = 4
min_load = 0
redirect = "see-other-host"
report_interval_ms = 500
dead_after_ms = 3000
ccmp_timeout_ms = 1000

[xmpp]
tls = "required" # non-loopback listeners: each node makes a self-signed cert in its data dir

[sip]
presence_policy = "domain" # subscriptions between users of the domain are approved by the server
sip_auth = false
EOF
    entry primary primary "$NET.1"
    entry worker1 worker "$NET.2"
    entry worker2 worker "$NET.3"
} >"$CFG"

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
    disown "$!" # the test SIGKILLs worker2: no "Killed" job notice
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
start_node "${NS_PREFIX}3" worker2
wait_node worker1 "$NET.2:5280" '"joined":true'
wait_node worker2 "$NET.3:5280" '"joined":true'

if [[ "$MODE" == keep ]]; then
    cat >&2 <<EOF

Cluster running (config $CFG, logs $DIR/*.log, users $USERS_CSV).
  status:    ip netns exec $CLIENT_NS $BIN ctl --config $CFG --admin $NET.1:5280 status
  raw XMPP:  ip netns exec $CLIENT_NS $PY $ROOT/tests/interop/cluster_cxfr_client.py $NET.1:5222 $DOMAIN USER PASSWORD --hold 30
  test:      ip netns exec $CLIENT_NS $PY -B $TEST_PY --config $CFG --users $USERS_CSV --work $DIR --client-ip $CLIENT_IP --sipp $(command -v "$SIPP") --register-scenario $REGISTER_XML --watch-scenario $WATCH_XML --kill-ns ${NS_PREFIX}3
Ctrl-C tears everything down.
EOF
    while true; do sleep 1 & wait "$!"; done
fi

# ---------------------------------------------------------------------------- test
log "running cluster_data_netns.py in $CLIENT_NS"
test_rc=0
# In the background with `wait`: a TERM/INT to this script runs the trap at once (bash defers
# traps while a foreground child runs); the trap kills the test with everything in rdv-dc.
in_ns "$CLIENT_NS" timeout -k 5 "$TEST_LIMIT" "$PY" -B "$TEST_PY" \
    --config "$CFG" --users "$USERS_CSV" --work "$DIR" \
    --client-ip "$CLIENT_IP" --sipp "$(command -v "$SIPP")" \
    --register-scenario "$REGISTER_XML" --watch-scenario "$WATCH_XML" \
    --kill-ns "${NS_PREFIX}3" \
    --results "$DIR/results" 9>&- &
wait "$!" || test_rc=$?
if [[ -n "${NETNS_RESULTS:-}" && -s "$DIR/results" ]]; then
    cat "$DIR/results" >>"$NETNS_RESULTS"
    RESULTS_DONE=1
fi
((test_rc == 0)) || LAST_ERROR="cluster_data_netns.py exit $test_rc without results"
((test_rc == 124 || test_rc == 137)) && log "cluster_data_netns.py killed after ${TEST_LIMIT}s"
log "cluster_data_netns.py exit $test_rc; total $((SECONDS - T0))s"
exit "$test_rc"
