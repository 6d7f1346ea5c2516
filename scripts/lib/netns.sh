# shellcheck shell=bash
# Shell helpers of the multi-host tests (scripts/netns-cluster.sh, netns-data.sh,
# netns-scale.sh): every server in its own network namespace behind one bridge, the test in a
# clients' namespace, everything torn down on any exit.
#
# Source it after setting (each script has its own values, so that the scripts never collide
# and may even run at once):
#   ROOT        the repository                      NAME  e.g. netns-data (log prefix, lock)
#   SETUP_NAME  result name of a setup failure      NET   /24 prefix of the test network
#   NS_PREFIX   prefix of our namespaces: servers NS_PREFIX1..N at NET.1..N, the clients'
#               NS_PREFIXc at NET.100, the bridge's NS_PREFIXbr (bridge NS_PREFIXbr0, veth
#               ports NS_PREFIXp<i>)
#   DOMAIN      the cluster domain (the clients' hosts file maps it to NET.1, the primary)
#   TEST_LIMIT  s: `timeout` around the python test SERVERS  server namespaces
#   optional:   START_WAIT (s: node start -> ready, 20), STOP_WAIT (s: SIGTERM -> gone, then
#               KILL, 5), TAIL_LINES (node log lines shown on failure, 10), SERVERS_MIN and
#               SERVERS_MAX (the script accepts -n SERVERS within them)
# Env read: RENDEZVOUS_BIN, NETNS_PYTHON, SIPP (BIN, PY, SIPP below), RUST_LOG (default info),
#   NETNS_RESULTS (PASS/FAIL lines are appended there), KEEP_DIR=1 (keep the temp dir).
# Sourcing installs the EXIT/INT/TERM traps.

BIN="${RENDEZVOUS_BIN:-$ROOT/target/release/rendezvous}"
PY="${NETNS_PYTHON:-$ROOT/.venv-interop/bin/python}"
SIPP="${SIPP:-sipp}"
: "${START_WAIT:=20}" "${STOP_WAIT:=5}" "${TAIL_LINES:=10}"
LOCK=/run/lock/rdv-$NAME.lock
[[ -d /run/lock ]] || LOCK=/tmp/rdv-$NAME.lock
NS_RE="^$NS_PREFIX([0-9]+|c|br)\$" # exactly our namespaces, never another script's
CLIENT_NS="${NS_PREFIX}c"
CLIENT_IP="$NET.100"
BRIDGE_NS="${NS_PREFIX}br"
BRIDGE="${NS_PREFIX}br0"
VETH="${NS_PREFIX}p"
export NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}"

T0=$SECONDS
MODE=""
LAST_ERROR="setup failed"
RESULTS_DONE=0
DIR=""   # the temp dir (configs, data dirs, logs); set by netns_tempdir
OWNER=0  # set once we hold the lock: only then are the namespaces ours to tear down

log() { printf '%s [%3ds]: %s\n' "$NAME" "$((SECONDS - T0))" "$*" >&2; }
die() { LAST_ERROR="$*"; log "ERROR: $*"; exit 1; }
netns_usage() { sed -n '/^# Usage:/,/^# Exit:/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# --test or --keep (MODE), -h; -n SERVERS where the script set SERVERS_MIN and SERVERS_MAX.
netns_args() {
    while (($#)); do
        case "$1" in
            --test) MODE=test ;;
            --keep) MODE=keep ;;
            -n)
                [[ -n "${SERVERS_MAX:-}" ]] || { echo "$NAME.sh: unknown argument -n" >&2; netns_usage; }
                SERVERS="${2:-}"
                shift
                ;;
            -h | --help) netns_usage ;;
            *) echo "$NAME.sh: unknown argument $1" >&2; netns_usage ;;
        esac
        shift
    done
    [[ -n "$MODE" ]] || netns_usage
    if [[ -n "${SERVERS_MAX:-}" ]]; then
        [[ "$SERVERS" =~ ^[0-9]+$ ]] && ((SERVERS >= SERVERS_MIN && SERVERS <= SERVERS_MAX)) ||
            { echo "$NAME.sh: -n must be between $SERVERS_MIN and $SERVERS_MAX" >&2; exit 2; }
    fi
}

netns_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ $rc -ne 0 && -n "$DIR" && "$MODE" == test ]]; then
        for f in "$DIR"/*.log; do
            [[ -s "$f" && "$f" != */clients.log && "$f" != */admin.log ]] || continue
            echo "--- last ${TAIL_LINES:-10} lines of $(basename "$f") ---" >&2
            tail -n "${TAIL_LINES:-10}" "$f" >&2
        done
    fi
    if ((OWNER)); then
        kill_ns_processes
        remove_network
    fi
    if [[ -n "${NETNS_RESULTS:-}" && $RESULTS_DONE -eq 0 && $rc -ne 0 ]]; then
        printf 'FAIL\t%s\t%s\n' "$SETUP_NAME" "${LAST_ERROR//$'\t'/ }" >>"$NETNS_RESULTS"
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
trap netns_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Root, iproute2 with netns, sipp, setsid, the python with slixmpp, the node binary, and the
# files given as arguments.
netns_prereqs() {
    local f
    [[ "$(id -u)" -eq 0 ]] || die "must run as root (network namespaces)"
    command -v ip >/dev/null || die "no 'ip' command (install iproute2)"
    ip netns list >/dev/null 2>&1 || die "'ip netns' does not work here"
    command -v "$SIPP" >/dev/null || die "no $SIPP (install the Debian package sip-tester)"
    command -v setsid >/dev/null || die "no setsid (util-linux)"
    [[ -x "$PY" ]] || die "no python at $PY (run scripts/test.sh once: it makes the venv)"
    "$PY" -c 'import slixmpp, tomllib' 2>/dev/null || die "$PY lacks slixmpp (or is older than 3.11)"
    [[ -x "$BIN" ]] || die "no node binary at $BIN (set RENDEZVOUS_BIN or build target/release)"
    for f in "$@"; do [[ -f "$f" ]] || die "missing $f"; done
}

our_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "$NS_RE" || true; }

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

# Only one run at a time (namespaces and addresses are fixed); then removes the leftovers of
# an earlier aborted run. The lock is fd 9: every process started later gets `9>&-`.
netns_lock() {
    exec 9>"$LOCK"
    if command -v flock >/dev/null; then
        flock -n 9 || die "another $NAME.sh run holds $LOCK"
    fi
    OWNER=1
    if [[ -n "$(our_namespaces)" ]]; then
        log "removing leftovers of an earlier run: $(our_namespaces | tr '\n' ' ')"
        kill_ns_processes
        remove_network
    fi
}

netns_add_host() { # namespace index address
    local ns="$1" i="$2" addr="$3"
    ip netns add "$ns"
    ip -n "$BRIDGE_NS" link add "$VETH$i" type veth peer name eth0 netns "$ns"
    ip -n "$BRIDGE_NS" link set "$VETH$i" master "$BRIDGE"
    ip -n "$BRIDGE_NS" link set "$VETH$i" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
}

# The bridge, N server namespaces (NS_PREFIX1..N at NET.1..N) and the clients' one, whose
# name service maps the cluster domain to the primary (what a DNS A record would do for a
# real deployment); no resolver is reachable from the namespace.
netns_network() { # number of server namespaces
    local n="$1" i
    log "network: $n server namespaces + $CLIENT_NS on $NET.0/24 via $BRIDGE_NS/$BRIDGE"
    ip netns add "$BRIDGE_NS"
    ip -n "$BRIDGE_NS" link set lo up
    ip -n "$BRIDGE_NS" link add "$BRIDGE" type bridge
    ip -n "$BRIDGE_NS" link set "$BRIDGE" up
    for ((i = 1; i <= n; i++)); do netns_add_host "$NS_PREFIX$i" "$i" "$NET.$i"; done
    netns_add_host "$CLIENT_NS" 100 "$CLIENT_IP"
    mkdir -p "/etc/netns/$CLIENT_NS"
    printf '127.0.0.1 localhost\n%s %s\n' "$NET.1" "$DOMAIN" >"/etc/netns/$CLIENT_NS/hosts"
    printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"/etc/netns/$CLIENT_NS/resolv.conf"
}

# DIR (mode 755: the nodes' data dirs and logs) and CFG=$DIR/cluster.toml.
netns_tempdir() {
    DIR="$(mktemp -d "${TMPDIR:-/tmp}/rdv-$NAME.XXXXXX")"
    chmod 755 "$DIR"
    CFG="$DIR/cluster.toml"
    case "$BIN$DIR" in *[\'\"\\]*) die "paths with quotes or backslashes are not supported: $BIN $DIR" ;; esac
}

# Everything before the configuration: prerequisites (and the files given), the lock and the
# leftovers, the network of SERVERS server namespaces, DIR and CFG.
netns_setup() { # files the test needs
    netns_prereqs "$@"
    netns_lock
    netns_network "$SERVERS"
    netns_tempdir
}

secret() { # 24 random letters and digits (no `head` at the end of a pipe: no SIGPIPE)
    local s
    s="$(head -c 48 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9')"
    printf '%s' "${s:0:24}"
}

# cluster.toml, in pieces: the head (comment, [cluster] with the domain and a new secret),
# the tail ([xmpp] TLS required; with `sip-domain`, [sip] presence_policy "domain" without
# digest auth), and the [[node]] entries of the primary and the workers (id:index, as for
# netns_start_nodes) on the default ports.
netns_toml_head() {
    printf '# Generated by scripts/%s.sh (one network namespace per server).\n' "$NAME"
    printf '[cluster]\ndomain = "%s"\nsecret = "%s"\n' "$DOMAIN" "$(secret)"
}
netns_toml_tail() { # [sip-domain]
    printf '\n[xmpp]\ntls = "required" # non-loopback listeners: each node makes a self-signed cert in its data dir\n'
    [[ "${1:-}" == sip-domain ]] || return 0
    printf '\n[sip]\npresence_policy = "domain" # subscriptions between users of the domain are approved by the server\nsip_auth = false\n'
}
netns_toml_nodes() { # worker-id:index...
    local w
    netns_entry node primary primary "$NET.1" 5222 5060 5280
    for w in "$@"; do netns_entry node "${w%%:*}" worker "$NET.${w#*:}" 5222 5060 5280; done
}

# One [[node]] or [[pool]] entry of cluster.toml (data dir in DIR).
netns_entry() { # kind id role-or-empty ip xmpp-port sip-port admin-port [spawn [stop]]
    printf '\n[[%s]]\nid = "%s"\n' "$1" "$2"
    [[ -n "$3" ]] && printf 'role = "%s"\n' "$3"
    printf 'xmpp = "%s:%s"\nsip = "%s:%s"\nadmin = "%s:%s"\ndata_dir = "%s/data-%s"\n' \
        "$4" "$5" "$4" "$6" "$4" "$7" "$DIR" "$2"
    [[ -n "${8:-}" ]] && printf 'spawn = "%s"\n' "$8"
    [[ -n "${9:-}" ]] && printf 'stop = "%s"\n' "$9"
    return 0
}

# user001..userN with random passwords in the primary's store; USERS_CSV (name,password).
netns_users() { # count
    local i name pw
    log "creating $1 users in the primary's store"
    USERS_CSV="$DIR/users.csv"
    : >"$USERS_CSV"
    for ((i = 1; i <= $1; i++)); do
        pw="$(secret)"
        printf 'user%03d,%s\n' "$i" "${pw:0:12}" >>"$USERS_CSV"
    done
    while IFS=, read -r name pw; do
        timeout -k 2 20 "$BIN" user --config "$CFG" add "$name" --password "$pw" >>"$DIR/admin.log" 2>&1 ||
            die "user add $name failed (see $DIR/admin.log)"
    done <"$USERS_CSV"
}

in_ns() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }
node_json() { # admin address -> /api/node JSON (empty when it does not answer)
    in_ns "$CLIENT_NS" timeout -k 1 3 "$BIN" ctl --config "$CFG" --admin "$1" node 2>/dev/null || true
}
start_node() { # namespace id
    ip netns exec "$1" setsid "$BIN" node --config "$CFG" --id "$2" >>"$DIR/$2.log" 2>&1 9>&- &
    log "started $2 in $1 (pid $!)"
    disown "$!" # a test may SIGKILL it: no "Killed" job notice
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

# Starts the primary (namespace NS_PREFIX1, NET.1) and the workers given as id:index
# (namespace NS_PREFIX<index>, NET.<index>); waits until the primary answers and every worker
# joined.
netns_start_nodes() { # worker-id:index...
    local w
    start_node "${NS_PREFIX}1" primary
    wait_node primary "$NET.1:5280" '"role":"primary"'
    for w in "$@"; do start_node "$NS_PREFIX${w#*:}" "${w%%:*}"; done
    for w in "$@"; do wait_node "${w%%:*}" "$NET.${w#*:}:5280" '"joined":true'; done
}

# --keep: says how to reach the cluster (the arguments: more lines to say), then waits for
# Ctrl-C (the trap tears everything down).
netns_keep() { # lines
    {
        printf '\nCluster running (config %s, logs %s/*.log, users %s).\n' "$CFG" "$DIR" "$USERS_CSV"
        printf '  status:    ip netns exec %s %s ctl --config %s --admin %s:5280 status\n' \
            "$CLIENT_NS" "$BIN" "$CFG" "$NET.1"
        printf '  %s\n' "$@"
        printf 'Ctrl-C tears everything down.\n'
    } >&2
    while true; do sleep 1 & wait "$!"; done
}

# Runs the python test in the clients' namespace under TEST_LIMIT (arguments after the script
# are its own; --results is added), copies its PASS/FAIL lines to NETNS_RESULTS and exits
# with its status. In the background with `wait`: a TERM/INT to the script runs the trap at
# once (bash defers traps while a foreground child runs); the trap kills the test with
# everything in the clients' namespace.
netns_run_test() { # test.py [its arguments]
    local py="$1" name test_rc=0
    shift
    name="$(basename "$py")"
    log "running $name in $CLIENT_NS"
    LAST_ERROR="$name did not finish"
    in_ns "$CLIENT_NS" timeout -k 5 "$TEST_LIMIT" "$PY" -B "$py" "$@" \
        --results "$DIR/results" 9>&- &
    wait "$!" || test_rc=$?
    if [[ -n "${NETNS_RESULTS:-}" && -s "$DIR/results" ]]; then
        cat "$DIR/results" >>"$NETNS_RESULTS"
        RESULTS_DONE=1
    fi
    ((test_rc == 0)) || LAST_ERROR="$name exit $test_rc without results"
    ((test_rc == 124 || test_rc == 137)) && log "$name killed after ${TEST_LIMIT}s"
    log "$name exit $test_rc; total $((SECONDS - T0))s"
    exit "$test_rc"
}
