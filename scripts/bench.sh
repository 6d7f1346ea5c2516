#!/usr/bin/env bash
# Benchmarks (issue 7). Two kinds:
#
# scripts/bench.sh [--peers] [--quick] [--servers LIST] [--check]
#   The comparison: builds the release binary, then runs each server in turn pinned to core 0
#   (`taskset -c 0`) with the load generator `rendezvous loadgen` pinned to core 1: Rendezvous,
#   and with --peers also Prosody and ejabberd (XMPP) and Kamailio with presence +
#   presence_xml (SIP), installed from Debian packages if missing (apt-get, root) and run in
#   the foreground from the configuration files under bench/peers/ with their data in a temp
#   dir, on loopback ports of their own, below the ephemeral port range (Rendezvous
#   21222/21060/21280, Prosody 25222, ejabberd 26222 (+ 26299 Erlang distribution), Kamailio
#   27060), never as the system service. bench/peers/README.md describes each setup.
#   The same workload for all:
#     XMPP (Rendezvous, Prosody, ejabberd), for N = 1,000 and 10,000 users (--quick: 1,000),
#     a fresh server for each N, users user1..userN / pass1..passN @ bench.test, K = 20 ring
#     contacts, SASL SCRAM-SHA-256 (every server offers it):
#       setup   in-band registration and mutual rosters (--register --setup-rosters)
#       logins  N users log in and out 3 times, 50 in flight; logins/s of rounds 2-3 (the
#               client's SaltedPassword cached, so the server's side of SCRAM is measured)
#       idle    N sessions held idle (users without contacts, then the users with K
#               contacts), each on a freshly started server over the data of the setup:
#               server memory before and with them, per session
#       ramp    presence updates at rising rates (BENCH_RAMP, each step BENCH_STEP_SECS)
#               up to the first step with a loss or p99 > 100 ms: the highest passing rate
#               and its deliveries/s and p99
#     SIP (Rendezvous, Kamailio), BENCH_SIP_USERS users (1,000), UDP, no authentication,
#     every watcher authorized; a fresh server:
#       subs    10,000 subscriptions held (10 per user): server memory with them
#       publish PUBLISH/s at rising rates (BENCH_SIP_RAMP), 5 s each, up to the first step
#               with >= 1% failures or < 90% of the asked rate answered
#       cycle   SUBSCRIBE -> 200 + NOTIFY -> un-SUBSCRIBE cycles/s, the same way
#   Memory is the PSS summed over the server's processes (bench/monitor.py; = RSS for one
#   process, counts Kamailio's shared memory once). bench/monitor.py also records how busy the
#   server's core and the load generator's were in each phase, so a figure limited by the load
#   generator shows as such.
#   Raw load generator summaries, their output, memory samples and server logs go to
#   bench/results/raw/ (emptied at start); bench/report.py then prints the table and writes
#   bench/results/<UTC date>.md and .json and bench/results/latest.md.
#   --servers LIST  only these, comma-separated (rendezvous,prosody,ejabberd,kamailio); with
#                   --peers the default is all four, else rendezvous.
#   --check         start each server and run bench/peers/check_xmpp.py (slixmpp: register,
#                   SCRAM login, subscriptions both ways, presence) or check_sip.py (PUBLISH,
#                   SUBSCRIBE, NOTIFY with the PIDF, un-SUBSCRIBE), then stop; no load.
#   Environment: BENCH_LOADGEN (binary whose `loadgen` subcommand is used; default the release
#   build of this tree), BENCH_SIZES ("1000 10000"), BENCH_RAMP (presence START:FACTOR:MAX,
#   default 100:1.5:400000), BENCH_STEP_SECS (5), BENCH_SIP_RAMP (250:1.5:400000),
#   BENCH_SIP_USERS (1000), BENCH_HOLD_SECS (15), BENCH_MAX_SECS (watchdog: 3,600 with
#   --quick, else 14,400), BENCH_TMP (where the servers' temp dirs go; default /dev/shm, a
#   tmpfs, so no server waits for this machine's disk), BENCH_PYTHON (python with slixmpp for --check; default
#   .venv-interop or /work/main/.venv-interop), BENCH_CALM_SECS (how long a run waits for
#   idle cores first; default 30).
#   Every wait is bounded; the watchdog ends the run (and every server) after BENCH_MAX_SECS;
#   a trap stops every server on exit.
#
# scripts/bench.sh --micro [ARGS]
#   The micro benchmarks, each printing its figures (none is a test):
#   - c2s (benches/c2s.rs): builds the release server binary and the bench, runs the node as a
#     separate process on a free loopback port; output kept in target/bench-latest.txt.
#     ARGS go to this `cargo bench --bench c2s` only.
#   - redirect (benches/redirect.rs): what a redirect by the primary adds to a login;
#     output in target/bench-redirect-latest.txt.
#   - cluster (benches/cluster.rs): issue 5 targets (user move, cross-node presence) on an
#     in-process cluster; output in target/bench-cluster-latest.txt. BENCH_* variables are
#     described in the file's header.
#
# 10,000 idle sessions need ~10,000 open files in both the load generator and the server.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COMMAND="scripts/bench.sh $*"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "open-files limit: $(ulimit -n)"

if [ "${1:-}" = "--micro" ]; then
    shift
    mkdir -p target
    cargo bench --bench c2s "$@" 2>&1 | tee target/bench-latest.txt
    cargo bench --bench redirect 2>&1 | tee target/bench-redirect-latest.txt
    cargo bench --bench cluster 2>&1 | tee target/bench-cluster-latest.txt
    exit 0
fi

PEERS=0 QUICK=0 CHECK=0 SERVERS=""
while [ $# -gt 0 ]; do
    case $1 in
        --peers) PEERS=1 ;;
        --quick) QUICK=1 ;;
        --check) CHECK=1 ;;
        --servers) SERVERS=${2:?--servers needs a list}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$SERVERS" ]; then
    if [ $PEERS = 1 ]; then SERVERS=rendezvous,prosody,ejabberd,kamailio; else SERVERS=rendezvous; fi
fi
for s in ${SERVERS//,/ }; do
    case $s in
        rendezvous) ;;
        prosody|ejabberd|kamailio) PEERS=1 ;;
        *) echo "unknown server $s" >&2; exit 2 ;;
    esac
done

SERVER_CPU=0
LOAD_CPU=1
DOMAIN=bench.test
K=20
SASL=scram-sha-256
if [ $QUICK = 1 ]; then SIZES=${BENCH_SIZES:-1000}; else SIZES=${BENCH_SIZES:-"1000 10000"}; fi
RAMP=${BENCH_RAMP:-100:1.5:400000}
STEP_SECS=${BENCH_STEP_SECS:-5}
SIP_RAMP=${BENCH_SIP_RAMP:-250:1.5:400000}
SIP_USERS=${BENCH_SIP_USERS:-1000}
SIP_SUBS_PER_USER=$(( (10000 + SIP_USERS - 1) / SIP_USERS ))
HOLD_SECS=${BENCH_HOLD_SECS:-15}
if [ $QUICK = 1 ]; then MAX_SECS=${BENCH_MAX_SECS:-3600}; else MAX_SECS=${BENCH_MAX_SECS:-14400}; fi
LOGIN_CONCURRENCY=50
RUN_TIMEOUT=3600            # any single load generator run
START_TIMEOUT=60            # a server must answer within this

# Ports of each server (loopback), never the standard ones, so a leftover never collides.
RV_XMPP=21222 RV_SIP=21060 RV_ADMIN=21280
PROSODY_PORT=25222
EJABBERD_PORT=26222
EJABBERD_DIST_PORT=26299   # bench/peers/ejabberd/ejabberdctl.cfg ERL_DIST_PORT
KAMAILIO_PORT=27060

RESULTS=bench/results
RAW=$RESULTS/raw
PY=python3
T0=$(date +%s)

log() { printf '[%4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { log "FAILED: $*"; exit 1; }

if [ "$(nproc)" -lt 2 ]; then die "needs 2 cores (server on core 0, load generator on core 1)"; fi

# ---------------------------------------------------------------- cleanup and watchdog
# Every server's data lives in a RAM-backed temp dir (tmpfs) when there is one: the figures are
# the servers', not this machine's disk's (on this VM's disk Prosody, which writes a user's
# roster file at each change, spent most of the roster setup waiting for writes).
TMPBASE=${BENCH_TMP:-/dev/shm}
[ -d "$TMPBASE" ] && [ -w "$TMPBASE" ] || TMPBASE=/tmp
WORK=$(mktemp -d "$TMPBASE/rendezvous-bench.XXXXXX")
SERVER_NAME="" SERVER_PID="" SERVER_WAIT_PID="" SERVER_DIR="" LG_PID="" MON_PID="" WATCHDOG_PID=""
LAST_DIR="" STARTS=0

stop_server() {
    [ -n "$SERVER_NAME" ] || return 0
    local pid=$SERVER_PID
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$SERVER_NAME (pid $pid) still up after 10 s: SIGKILL"
            pkill -KILL -P "$pid" 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # The process bench.sh started (ejabberdctl, which runs beam.smp under su).
    if [ -n "$SERVER_WAIT_PID" ]; then
        for _ in $(seq 1 20); do kill -0 "$SERVER_WAIT_PID" 2>/dev/null || break; sleep 0.25; done
        kill -KILL "$SERVER_WAIT_PID" 2>/dev/null || true
        wait "$SERVER_WAIT_PID" 2>/dev/null || true
    fi
    if [ -n "$SERVER_DIR" ] && [ -d "$SERVER_DIR" ]; then
        mkdir -p "$RAW/logs"
        for f in "$SERVER_DIR"/*.log "$SERVER_DIR"/stdout; do
            [ -f "$f" ] && cp "$f" "$RAW/logs/$(printf %02d "$STARTS")-$SERVER_NAME-$(basename "$f")"
        done
    fi
    LAST_DIR=$SERVER_DIR
    SERVER_NAME="" SERVER_PID="" SERVER_WAIT_PID="" SERVER_DIR=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$MON_PID" ] && kill "$MON_PID" 2>/dev/null
    [ -n "$LG_PID" ] && kill -TERM "$LG_PID" 2>/dev/null && sleep 1 && kill -KILL "$LG_PID" 2>/dev/null
    stop_server || true
    [ -n "$WATCHDOG_PID" ] && kill "$WATCHDOG_PID" 2>/dev/null
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# The watchdog signals this shell; every long wait below is `wait PID`, which a signal ends,
# so the trap runs at once.
(
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    sleep "$MAX_SECS" & sleeper=$!
    wait "$sleeper"
    echo "!! bench.sh exceeded BENCH_MAX_SECS=$MAX_SECS: stopping" >&2
    kill -TERM $$
) > /dev/null &
WATCHDOG_PID=$!

# ---------------------------------------------------------------- peers from Debian
install_peers() {
    local want=() missing=()
    for s in ${SERVERS//,/ }; do
        case $s in
            # lua-unbound/-event/-readline: what the prosody package recommends.
            prosody) want+=(prosody lua-unbound lua-event lua-readline) ;;
            ejabberd) want+=(ejabberd) ;;
            kamailio) want+=(kamailio kamailio-presence-modules) ;;
        esac
    done
    [ $CHECK = 0 ] || want+=(python3)
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        [ "$(id -u)" = 0 ] || die "missing Debian packages ${missing[*]}: run as root or install them"
        log "installing from Debian: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" > "$WORK/apt.log" 2>&1 \
            || { tail -20 "$WORK/apt.log"; die "apt-get install ${missing[*]}"; }
        # The packages may start (and enable) their system service; bench.sh runs its own
        # instances, so a service it caused to start is stopped and disabled again.
        for svc in prosody ejabberd kamailio; do
            case " ${missing[*]} " in *" $svc "*) ;; *) continue ;; esac
            if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
                if systemctl is-active -q "$svc" || systemctl is-enabled -q "$svc" 2>/dev/null; then
                    log "stopping and disabling the $svc system service the package started"
                    systemctl disable --now "$svc" >/dev/null 2>&1 || true
                fi
            elif service "$svc" status >/dev/null 2>&1; then
                log "stopping the $svc system service the package started"
                service "$svc" stop >/dev/null 2>&1 || true
            fi
        done
    fi
    local proc
    for proc in lua5.4 beam.smp kamailio; do
        if pgrep -x "$proc" > /dev/null; then
            log "note: a $proc process not started by bench.sh is running (a system Prosody, ejabberd or Kamailio?): it shares the machine"
        fi
    done
}

# ---------------------------------------------------------------- servers
# Copies a template replacing @DATA@, @DOMAIN@ and the extra KEY=VALUE pairs.
render() {
    local src=$1 dst=$2; shift 2
    local args=(-e "s#@DATA@#$SERVER_DIR#g" -e "s#@DOMAIN@#$DOMAIN#g")
    for kv in "$@"; do args+=(-e "s#@${kv%%=*}@#${kv#*=}#g"); done
    sed "${args[@]}" "$src" > "$dst"
}

wait_xmpp() {
    local port=$1 end=$(( $(date +%s) + START_TIMEOUT ))
    while ! $PY bench/peers/check_xmpp.py --probe "127.0.0.1:$port" "$DOMAIN" > "$SERVER_DIR/mechanisms" 2>/dev/null; do
        [ "$(date +%s)" -lt $end ] || die "$SERVER_NAME did not answer on $port within ${START_TIMEOUT}s (log: $RAW/logs/)"
        kill -0 "$SERVER_PID" 2>/dev/null || die "$SERVER_NAME exited at start (log: $RAW/logs/)"
        sleep 0.5
    done
    log "$SERVER_NAME up (pid $SERVER_PID), SASL offered: $(cat "$SERVER_DIR/mechanisms")"
}

wait_sip() {
    local port=$1 end=$(( $(date +%s) + START_TIMEOUT ))
    while ! $PY bench/peers/check_sip.py --probe "127.0.0.1:$port" "$DOMAIN" 2>/dev/null; do
        [ "$(date +%s)" -lt $end ] || die "$SERVER_NAME did not answer OPTIONS on $port within ${START_TIMEOUT}s"
        kill -0 "$SERVER_PID" 2>/dev/null || die "$SERVER_NAME exited at start (log: $RAW/logs/)"
        sleep 0.5
    done
    log "$SERVER_NAME up (pid $SERVER_PID), answers OPTIONS on udp $port"
}

# start_server NAME [POLICY [DIR]]: NAME is rendezvous, prosody, ejabberd or kamailio; POLICY
# is Rendezvous's [sip] presence_policy (roster for the XMPP figures, domain for the SIP ones);
# DIR: the data dir of an earlier start to run on again (default: a fresh one).
start_server() {
    local name=$1 policy=${2:-roster} dir=${3:-} p
    for p in $(ports "$name"); do
        if ss -Htlnu "( sport = :$p )" | grep -q .; then
            die "port $p (for $name) is taken: $(ss -Htlnup "( sport = :$p )" | head -1)"
        fi
    done
    SERVER_NAME=$name
    STARTS=$(( STARTS + 1 ))
    if [ -n "$dir" ]; then SERVER_DIR=$dir; else SERVER_DIR=$(mktemp -d "$WORK/$name.XXXX"); fi
    case $name in
        rendezvous)
            render bench/peers/rendezvous/cluster.toml "$SERVER_DIR/cluster.toml" \
                XMPP_PORT=$RV_XMPP SIP_PORT=$RV_SIP ADMIN_PORT=$RV_ADMIN POLICY="$policy"
            RUST_LOG=${RUST_LOG:-warn} taskset -c $SERVER_CPU "$ROOT/target/release/rendezvous" node \
                --config "$SERVER_DIR/cluster.toml" > "$SERVER_DIR/server.log" 2>&1 &
            SERVER_PID=$!
            ;;
        prosody)
            render bench/peers/prosody/prosody.cfg.lua "$SERVER_DIR/prosody.cfg.lua" PORT=$PROSODY_PORT
            taskset -c $SERVER_CPU prosody -F --config "$SERVER_DIR/prosody.cfg.lua" > "$SERVER_DIR/stdout" 2>&1 &
            SERVER_PID=$!
            ;;
        ejabberd)
            local f
            for f in ejabberd.yml ejabberdctl.cfg inetrc; do
                render "bench/peers/ejabberd/$f" "$SERVER_DIR/$f" PORT=$EJABBERD_PORT
            done
            mkdir -p "$SERVER_DIR/spool"
            (cd "$SERVER_DIR" && exec taskset -c $SERVER_CPU ejabberdctl --config-dir "$SERVER_DIR" \
                --config "$SERVER_DIR/ejabberd.yml" --ctl-config "$SERVER_DIR/ejabberdctl.cfg" \
                --spool "$SERVER_DIR/spool" --logs "$SERVER_DIR" foreground) > "$SERVER_DIR/stdout" 2>&1 &
            SERVER_WAIT_PID=$!
            local end=$(( $(date +%s) + START_TIMEOUT ))
            while ! [ -s "$SERVER_DIR/ejabberd.pid" ]; do
                [ "$(date +%s)" -lt $end ] || die "ejabberd wrote no pid file within ${START_TIMEOUT}s"
                kill -0 "$SERVER_WAIT_PID" 2>/dev/null || die "ejabberd exited at start (log: $RAW/logs/)"
                sleep 0.25
            done
            SERVER_PID=$(cat "$SERVER_DIR/ejabberd.pid")   # beam.smp
            ;;
        kamailio)
            render bench/peers/kamailio/kamailio.cfg "$SERVER_DIR/kamailio.cfg" PORT=$KAMAILIO_PORT
            mkdir -p "$SERVER_DIR/dbtext" "$SERVER_DIR/run"
            local t
            for t in version presentity active_watchers watchers xcap; do
                cp "/usr/share/kamailio/dbtext/kamailio/$t" "$SERVER_DIR/dbtext/"
            done
            # -DD: main process in the foreground (workers forked); -m/-M: shared/private MiB.
            taskset -c $SERVER_CPU kamailio -DD -E -f "$SERVER_DIR/kamailio.cfg" -m 4096 -M 16 \
                -P "$SERVER_DIR/kamailio.pid" -Y "$SERVER_DIR/run" > "$SERVER_DIR/kamailio.log" 2>&1 &
            SERVER_PID=$!
            ;;
    esac
    case $name in
        rendezvous) wait_xmpp $RV_XMPP; wait_sip $RV_SIP ;;
        prosody) wait_xmpp $PROSODY_PORT ;;
        ejabberd) wait_xmpp $EJABBERD_PORT ;;
        kamailio) wait_sip $KAMAILIO_PORT ;;
    esac
}

ports() {
    case $1 in
        rendezvous) echo $RV_XMPP $RV_SIP $RV_ADMIN ;;
        prosody) echo $PROSODY_PORT ;;
        ejabberd) echo $EJABBERD_PORT $EJABBERD_DIST_PORT ;;
        kamailio) echo $KAMAILIO_PORT ;;
    esac
}
xmpp_port() { case $1 in rendezvous) echo $RV_XMPP ;; prosody) echo $PROSODY_PORT ;; ejabberd) echo $EJABBERD_PORT ;; esac; }
sip_port() { case $1 in rendezvous) echo $RV_SIP ;; kamailio) echo $KAMAILIO_PORT ;; esac; }

server_alive() {
    kill -0 "$SERVER_PID" 2>/dev/null || die "$SERVER_NAME (pid $SERVER_PID) died during $1 (log: $RAW/logs/)"
}

mem() { $PY bench/monitor.py kib "$SERVER_PID" | cut -d' ' -f1; }

# ---------------------------------------------------------------- load generator
LOADGEN_BIN=${BENCH_LOADGEN:-$ROOT/target/release/rendezvous}

# lg NAME ARGS...: one load generator run on core 1, bounded by RUN_TIMEOUT; its summary in
# $RAW/NAME.json, its output in $RAW/NAME.txt. bench/monitor.py watches it (also on core 1)
# and writes $RAW/NAME-mon.json: CPU of the server and of the load generator per phase, and
# with MON_OPTS=(--mem ...) set before the call, the server's memory.
MON_OPTS=()
MON_PID=""
lg_start() {
    local name=$1 busy; shift
    # The machine may be shared: wait (at most BENCH_CALM_SECS) until both cores are idle, and
    # note the run in $RAW/not-calm.txt (the report lists it) if they never were.
    busy=$($PY bench/monitor.py calm --cores "$SERVER_CPU,$LOAD_CPU" --max "${BENCH_CALM_SECS:-30}") \
        || echo "$name $busy" >> "$RAW/not-calm.txt"
    timeout --kill-after=10 $RUN_TIMEOUT taskset -c $LOAD_CPU "$LOADGEN_BIN" loadgen \
        --domain "$DOMAIN" --sasl $SASL --progress never --json "$RAW/$name.json" "$@" \
        > "$RAW/$name.txt" 2>&1 &
    LG_PID=$!
    echo "$LOADGEN_BIN loadgen --domain $DOMAIN --sasl $SASL --progress never --json $RAW/$name.json $*" > "$RAW/$name.cmd"
    taskset -c $LOAD_CPU $PY bench/monitor.py watch --pid "$SERVER_PID" --watch "$LG_PID" \
        --cores "$SERVER_CPU,$LOAD_CPU" --log "$RAW/$name.txt" --out "$RAW/$name-mon.json" "${MON_OPTS[@]}" &
    MON_PID=$!
    MON_OPTS=()
}
lg_wait() {
    local name=$1 rc=0
    wait "$LG_PID" || rc=$?
    LG_PID=""
    wait "$MON_PID" || true
    MON_PID=""
    [ $rc = 0 ] || { tail -5 "$RAW/$name.txt" >&2; log "load generator run $name exited with $rc"; }
    server_alive "$name"
    [ -s "$RAW/$name.json" ] || die "load generator run $name wrote no summary (see $RAW/$name.txt)"
}
lg() { local name=$1; lg_start "$@"; lg_wait "$name"; }

# jq-free look-ups in a summary: j FILE EXPR (python on the parsed JSON `d`).
j() { $PY -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# ---------------------------------------------------------------- figures
xmpp_figures() {
    local srv=$1 n port tag
    port=$(xmpp_port "$srv")
    for n in $SIZES; do
        tag="$srv-n$n"
        local common=(--xmpp "127.0.0.1:$port" --users "$n" --roster $K --login-concurrency $LOGIN_CONCURRENCY)
        start_server "$srv" roster
        echo "{\"server\": \"$srv\", \"users\": $n, \"start_kib\": $(mem)}" > "$RAW/$tag-start.json"

        # Accounts and mutual rosters. The load generator's wait for the rosters is bounded; a
        # server slower than that is given more passes (each asks only what is still missing),
        # each once the server has worked off what the previous one left (bounded).
        local pass=1 name="$tag-setup" again
        while :; do
            log "$tag: setup pass $pass (register $n accounts, mutual rosters of $K)"
            lg "$name" "${common[@]}" --register --setup-rosters --duration 1 --warmup 0
            again=$(j "$RAW/$name.json" 'int(d["errors"].get("roster_setup_incomplete", 0) > 0 or d["logins"]["failed"] > 0 or d["registrations"]["failed"] > 0)')
            log "$tag: setup: $(j "$RAW/$name.json" '"registrations %(ok)s ok %(existing)s existing %(failed)s failed" % d["registrations"]'), logins $(j "$RAW/$name.json" '"%(ok)s ok %(failed)s failed" % d["logins"]'), errors $(j "$RAW/$name.json" 'd["errors"]')"
            $PY bench/monitor.py quiet "$SERVER_PID" --max 600 || log "$tag: $srv still busy after 600 s"
            [ "$again" = 1 ] && [ $pass -lt 5 ] || break
            pass=$(( pass + 1 ))
            name="$tag-setup$pass"
        done
        # Users N+1..2N without contacts, for the memory of a bare idle session.
        log "$tag: register $n more accounts without contacts"
        lg "$tag-setup-bare" --xmpp "127.0.0.1:$port" --users "$n" --first $(( n + 1 )) \
            --login-concurrency $LOGIN_CONCURRENCY --register --duration 1 --warmup 0
        # Each memory figure is taken on a fresh process over the data the setup left, so its
        # memory holds no sessions yet (an allocator keeps what earlier sessions freed).
        local kind first roster
        for kind in idle0 idle; do
            if [ $kind = idle0 ]; then first=$(( n + 1 )) roster=0; else first=1 roster=$K; fi
            stop_server
            start_server "$srv" roster "$LAST_DIR"
            log "$tag: $n idle sessions with $roster contacts held ${HOLD_SECS}s"
            sleep 2
            local base
            base=$(mem)
            MON_OPTS=(--mem --base "$base" --port "$port" --min-conns "$n")
            lg "$tag-$kind" --xmpp "127.0.0.1:$port" --users "$n" --first "$first" --roster "$roster" \
                --login-concurrency $LOGIN_CONCURRENCY --hold "$HOLD_SECS" --duration 1 --warmup 0
            log "$tag: $kind: $(j "$RAW/$tag-$kind-mon.json" '"%d KiB -> %d KiB (%s, %d connections)" % (d["baseline_kib"], d["plateau_kib"], d["method"], d["max_conns"])')"
        done

        log "$tag: SCRAM logins"
        # 3 rounds of log in + out per user; the first caches each SaltedPassword (RFC 5802
        # §5.1, as clients do) and is not counted: the figure is the server's side of SCRAM.
        lg "$tag-logins" "${common[@]}" --login-rounds 3 --duration 1 --warmup 0
        log "$tag: logins: $(j "$RAW/$tag-logins.json" '"%(ok)s ok %(failed)s failed, %(per_s).0f/s" % d["logins"]["repeat"]')"

        log "$tag: presence ramp $RAMP, ${STEP_SECS}s steps"
        lg "$tag-ramp" "${common[@]}" --ramp "$RAMP" --step-secs "$STEP_SECS" --warmup 2 --p99-limit-ms 100
        log "$tag: sustained $(j "$RAW/$tag-ramp.json" '"%.0f updates/s, %.0f deliveries/s" % (d["sustained_rate"], d["sustained_delivered_per_s"])')"
        echo "{\"server\": \"$srv\", \"users\": $n, \"end_kib\": $(mem)}" > "$RAW/$tag-end.json"
        stop_server
    done
}

# sip_ramp SRV KIND OPTION: steps of the rate until one fails (bench/report.py step decides).
sip_ramp() {
    local srv=$1 kind=$2 opt=$3 port rate name
    port=$(sip_port "$srv")
    local start factor max
    IFS=: read -r start factor max <<< "$SIP_RAMP"
    rate=$start
    while $PY -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$rate" "$max"; do
        name="$srv-sip-$kind-r$rate"
        lg "$name" --sip "127.0.0.1:$port" --users "$SIP_USERS" --sip-share 1.0 "$opt" "$rate" \
            --duration "$STEP_SECS" --warmup 1
        if $PY bench/report.py step "$kind" "$rate" "$RAW/$name.json"; then
            log "$srv: $kind $rate/s: passed"
        else
            log "$srv: $kind $rate/s: failed, ramp stops"
            break
        fi
        rate=$($PY -c "import sys; print(int(round(float(sys.argv[1]) * float(sys.argv[2]))))" "$rate" "$factor")
    done
}

sip_figures() {
    local srv=$1 port
    port=$(sip_port "$srv")
    start_server "$srv" domain
    echo "{\"server\": \"$srv\", \"start_kib\": $(mem)}" > "$RAW/$srv-sip-start.json"
    if [ "$srv" = rendezvous ]; then
        # Rendezvous serves only the users it knows: create the SIP users' accounts (XEP-0077).
        log "$srv: $SIP_USERS accounts for the SIP users"
        lg "$srv-sip-accounts" --xmpp "127.0.0.1:$RV_XMPP" --users "$SIP_USERS" --register --duration 1 --warmup 0
    fi
    log "$srv: $(( SIP_USERS * SIP_SUBS_PER_USER )) subscriptions held ${HOLD_SECS}s"
    sleep 2
    local base
    base=$(mem)
    MON_OPTS=(--mem --base "$base")
    [ "$srv" != kamailio ] || MON_OPTS+=(--kamailio-ctl "unix:$SERVER_DIR/run/ctl")
    lg "$srv-sip-subs" --sip "127.0.0.1:$port" --users "$SIP_USERS" --sip-share 1.0 \
        --subscribes "$SIP_SUBS_PER_USER" --hold "$HOLD_SECS" --duration 1 --warmup 0
    log "$srv: subscriptions: $(j "$RAW/$srv-sip-subs.json" 'd["sip"]["active_subscriptions"]') active; memory $(j "$RAW/$srv-sip-subs-mon.json" '"%d KiB -> %d KiB (%s)" % (d["baseline_kib"], d["plateau_kib"], d["method"])')"

    log "$srv: PUBLISH ramp $SIP_RAMP"
    sip_ramp "$srv" publish --publish-rate
    log "$srv: SUBSCRIBE+NOTIFY cycle ramp $SIP_RAMP"
    sip_ramp "$srv" cycle --subscribe-cycle-rate
    stop_server
}

check_server() {
    local srv=$1 pyx=${BENCH_PYTHON:-}
    if [ -z "$pyx" ]; then
        for c in "$ROOT/.venv-interop/bin/python" /work/main/.venv-interop/bin/python; do
            [ -x "$c" ] && { pyx=$c; break; }
        done
    fi
    case $srv in
        rendezvous|prosody|ejabberd)
            [ -n "$pyx" ] && "$pyx" -c 'import slixmpp' 2>/dev/null \
                || die "--check needs a python with slixmpp (BENCH_PYTHON, or scripts/interop.sh's .venv-interop)"
            start_server "$srv" roster
            log "$srv: XMPP check: $("$pyx" bench/peers/check_xmpp.py "127.0.0.1:$(xmpp_port "$srv")" "$DOMAIN" 2>/dev/null || true)"
            stop_server
            ;;
    esac
    case $srv in
        rendezvous|kamailio)
            start_server "$srv" domain
            if [ "$srv" = rendezvous ]; then
                "$pyx" bench/peers/check_xmpp.py "127.0.0.1:$RV_XMPP" "$DOMAIN" > /dev/null 2>&1 || true  # accounts chk1..3
            fi
            log "$srv: SIP check: $($PY bench/peers/check_sip.py "127.0.0.1:$(sip_port "$srv")" "$DOMAIN" || true)"
            stop_server
            ;;
    esac
}

# ---------------------------------------------------------------- main
[ $PEERS = 0 ] || install_peers
mkdir -p "$RAW"
find "$RAW" -mindepth 1 -delete

log "building the release binary"
cargo build --release --quiet --bin rendezvous
if [ $CHECK = 1 ]; then
    for s in ${SERVERS//,/ }; do check_server "$s"; done
    exit 0
fi
"$LOADGEN_BIN" loadgen --help > /dev/null 2>&1 \
    || die "$LOADGEN_BIN has no working 'loadgen' subcommand (set BENCH_LOADGEN to a binary that has)"

# What the report header needs.
{
    echo "{"
    echo "  \"command\": $($PY -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$COMMAND"),"
    echo "  \"started_utc\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
    echo "  \"nproc\": $(nproc),"
    echo "  \"cpu\": $($PY -c 'import json; print(json.dumps(next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")))'),"
    echo "  \"mem_total_kib\": $(awk '/^MemTotal/ {print $2}' /proc/meminfo),"
    echo "  \"kernel\": \"$(uname -r)\","
    echo "  \"server_cpu\": $SERVER_CPU, \"loadgen_cpu\": $LOAD_CPU,"
    echo "  \"sizes\": [$(echo $SIZES | sed 's/ /, /g')], \"contacts\": $K, \"sasl\": \"$SASL\","
    echo "  \"ramp\": \"$RAMP\", \"step_secs\": $STEP_SECS, \"sip_ramp\": \"$SIP_RAMP\","
    echo "  \"sip_users\": $SIP_USERS, \"sip_subscriptions\": $(( SIP_USERS * SIP_SUBS_PER_USER )),"
    echo "  \"hold_secs\": $HOLD_SECS, \"servers\": \"$SERVERS\","
    echo "  \"versions\": {"
    echo "    \"rendezvous\": \"$(git describe --always --dirty 2>/dev/null || echo '?')\","
    echo "    \"loadgen\": \"$LOADGEN_BIN\","
    echo "    \"prosody\": \"$(dpkg-query -W -f='${Version}' prosody 2>/dev/null || echo -)\","
    echo "    \"ejabberd\": \"$(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null || echo -)\","
    echo "    \"kamailio\": \"$(dpkg-query -W -f='${Version}' kamailio 2>/dev/null || echo -)\""
    echo "  }"
    echo "}"
} > "$RAW/meta.json"

for s in ${SERVERS//,/ }; do
    case $s in
        rendezvous) xmpp_figures rendezvous; sip_figures rendezvous ;;
        prosody|ejabberd) xmpp_figures "$s" ;;
        kamailio) sip_figures kamailio ;;
    esac
done
echo "{\"seconds\": $(( $(date +%s) - T0 ))}" > "$RAW/elapsed.json"
$PY bench/report.py report --raw "$RAW" --out "$RESULTS"
log "done in $(( $(date +%s) - T0 ))s"
