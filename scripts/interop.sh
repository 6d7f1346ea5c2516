#!/usr/bin/env bash
# Interop suite: a real slixmpp client against a real `rendezvous node`.
#
# Builds the release binary, runs a node on a free loopback port with a throw-away config and
# data dir (TLS required, self-signed cert, open in-band registration), runs the Python
# scenarios (tests/interop/run.py), stops the node with SIGTERM while a client is online,
# restarts it on the same data dir, and reports PASS/FAIL per scenario.
#
# Usage: scripts/interop.sh            (run scripts/test.sh once first: it makes the venv)
# Env:   INTEROP_PYTHON   python with slixmpp (default: <repo>/.venv-interop/bin/python)
#        INTEROP_BIN      use this rendezvous binary instead of building target/release
#        INTEROP_RESULTS  also copy the results (PASS|FAIL<TAB>id<TAB>title<TAB>reason) here
#        INTEROP_KEEP=1   keep the work dir (config, data dir, logs) even when all passed
#        RUST_LOG         node log filter (default: info)
# Exit:  0 when every scenario passed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${INTEROP_PYTHON:-$ROOT/.venv-interop/bin/python}"
SUITE="$ROOT/tests/interop/run.py"
BIN="${INTEROP_BIN:-$ROOT/target/release/rendezvous}"
SCENARIOS=(a b c d e f h g)   # in execution order; h = SIGTERM, g = restart

START_WAIT=20      # s: node start -> port accepts connections
STOP_WAIT=10       # s: SIGTERM -> process gone
READY_WAIT=20      # s: shutdown watcher logged in
PHASE_LIMIT=150    # s: hard cap on one Python phase (scenarios are capped at 20 s each)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rendezvous-interop.XXXXXX")"
RESULTS="$WORK/results"
: >"$RESULTS"
NODE_PID=""
NODE_GROUP=""
WATCH_PID=""
T_START=$SECONDS

log() { printf 'interop: %s\n' "$*" >&2; }

# Stops a process we started: SIGTERM, bounded wait, then SIGKILL. With "group", the process
# leads its own process group (the node, started with setsid) and the whole group is signalled.
kill_bounded() { # pid limit [group]
    local pid="$1" limit="$2" target="$1" i
    [[ "${3:-}" == group ]] && target="-$1"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "$target" 2>/dev/null || true
        for ((i = 0; i < limit * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && log "pid $pid ignored SIGTERM for ${limit}s; SIGKILL"
    fi
    kill -KILL -- "$target" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n "$WATCH_PID" ]] && kill_bounded "$WATCH_PID" 3
    [[ -n "$NODE_PID" ]] && kill_bounded "$NODE_PID" 5 "$NODE_GROUP"
    wait 2>/dev/null || true
    if [[ $rc -eq 0 && "${INTEROP_KEEP:-0}" != 1 ]]; then
        rm -rf "$WORK"
    else
        log "work dir kept: $WORK (node.err, client-*.log, config.toml)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Appends a scenario result (shell-judged or "not run").
record() { # verdict id reason
    local title
    title="$(title_of "$2")"
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$title" "$3" >>"$RESULTS"
    printf '%s %s. %s: %s\n' "$1" "$2" "$title" "$3"
}
title_of() {
    case "$1" in
        a) echo "in-band registration (XEP-0077)" ;;
        b) echo "login STARTTLS+SCRAM, roster, initial presence" ;;
        c) echo "mutual subscription -> 'both'" ;;
        d) echo "presence show/status both ways" ;;
        e) echo "chat message and reply" ;;
        f) echo "disconnect -> unavailable" ;;
        h) echo "SIGTERM: <system-shutdown/>, clean exit" ;;
        g) echo "restart: rosters persisted, presence flows" ;;
    esac
}
has_result() { cut -f2 "$RESULTS" | grep -qx "$1"; }

# Marks every scenario without a result as FAIL, prints the summary, exits.
finish() {
    local why="$1" s pass fail
    for s in "${SCENARIOS[@]}"; do
        has_result "$s" || record FAIL "$s" "not run: $why"
    done
    pass=$(grep -c '^PASS' "$RESULTS" || true)
    fail=$(grep -c '^FAIL' "$RESULTS" || true)
    if [[ -n "${INTEROP_RESULTS:-}" ]]; then cp "$RESULTS" "$INTEROP_RESULTS"; fi
    echo "== interop summary ($((SECONDS - T_START))s) =="
    for s in "${SCENARIOS[@]}"; do
        awk -F'\t' -v s="$s" '$2 == s { printf "%s %s. %s: %s\n", $1, $2, $3, $4 }' "$RESULTS"
    done
    echo "interop: $pass passed, $fail failed"
    if ((fail > 0)); then
        if [[ -s "$WORK/node.err" ]]; then
            echo "--- node log (last 40 lines of $WORK/node.err) ---"
            tail -n 40 "$WORK/node.err"
        fi
        exit 1
    fi
    exit 0
}

# ---------------------------------------------------------------------------- prerequisites
if [[ ! -x "$PY" ]] || ! "$PY" -c 'import slixmpp' 2>/dev/null; then
    log "no python with slixmpp at $PY; run scripts/test.sh first (it creates .venv-interop)"
    finish "no python with slixmpp (run scripts/test.sh)"
fi

if [[ -z "${INTEROP_BIN:-}" ]]; then
    log "building release binary"
    if ! (cd "$ROOT" && cargo build --release --quiet --bin rendezvous); then
        finish "cargo build --release failed"
    fi
fi

free_port() {
    "$PY" -B -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}
PORT="$(free_port)"
SIP_PORT="$(free_port)" # SIP is not exercised here, but must not take 5060 from anyone
DATA="$WORK/interop"
CONFIG="$WORK/config.toml"
cat >"$CONFIG" <<EOF
# Generated by scripts/interop.sh
[cluster]
domain = "localhost"

[xmpp]
registration = "open"
# tls = "required" (default): clients must negotiate STARTTLS; the node makes cert.pem.

[[node]]
id = "interop"
xmpp = "127.0.0.1:$PORT"
sip = "127.0.0.1:$SIP_PORT"
admin = "127.0.0.1:0"
data_dir = "$DATA"
EOF
CERT="$DATA/cert.pem"

# ---------------------------------------------------------------------------- node control
SETSID=()
if command -v setsid >/dev/null; then
    SETSID=(setsid) # own process group: nothing the node might spawn outlives the run
    NODE_GROUP=group
fi
start_node() { # label
    NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "${SETSID[@]}" \
        "$BIN" node --config "$CONFIG" --id interop >>"$WORK/node.out" 2>>"$WORK/node.err" &
    NODE_PID=$!
    local i
    for ((i = 0; i < START_WAIT * 10; i++)); do
        if ! kill -0 "$NODE_PID" 2>/dev/null; then
            local rc=0
            wait "$NODE_PID" || rc=$?
            NODE_PID=""
            log "node ($1) exited during start-up with status $rc"
            tail -n 20 "$WORK/node.err" >&2 || true
            return 1
        fi
        if [[ -s "$CERT" ]] && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            log "node ($1) pid $NODE_PID accepts connections on 127.0.0.1:$PORT"
            return 0
        fi
        sleep 0.1
    done
    log "node ($1) did not accept connections within ${START_WAIT}s"
    return 1
}

now_ms() { date +%s%3N; }

# Sends SIGTERM and waits; sets STOP_RC (exit status, or "timeout") and STOP_MS.
stop_node() {
    local i t0
    t0=$(now_ms)
    STOP_RC="not running"
    STOP_MS=0
    [[ -n "$NODE_PID" ]] || return 0
    kill -TERM "$NODE_PID" 2>/dev/null || true # the node itself: this is what is under test
    for ((i = 0; i < STOP_WAIT * 10; i++)); do
        kill -0 "$NODE_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$NODE_PID" 2>/dev/null; then
        STOP_RC="timeout"
    fi
    if [[ -n "$NODE_GROUP" ]]; then
        kill -KILL -- "-$NODE_PID" 2>/dev/null || true # whatever is left (nothing, normally)
    else
        kill -KILL "$NODE_PID" 2>/dev/null || true
    fi
    local rc=0
    wait "$NODE_PID" || rc=$?
    [[ "$STOP_RC" == timeout ]] || STOP_RC=$rc
    STOP_MS=$(($(now_ms) - t0))
    NODE_PID=""
}

# Sets CMD to run one phase of the Python suite under a hard time limit.
suite_cmd() { # phase [args...]
    local phase="$1"
    shift
    CMD=(timeout -k 5 "$PHASE_LIMIT" "$PY" -B "$SUITE" "$phase" --port "$PORT" --cert "$CERT"
        --state "$WORK/state.json" --log "$WORK/client-$phase.log" "$@")
}

# ---------------------------------------------------------------------------- phase 1: a-f
start_node "first start" || finish "the node did not start"
suite_cmd main --results "$RESULTS"
"${CMD[@]}" || true

# ---------------------------------------------------------------------------- h: SIGTERM
rm -f "$WORK/ready" "$WORK/h.result"
suite_cmd watch-shutdown --ready "$WORK/ready" --wait 15 --results "$WORK/h.result" \
    --prior "$RESULTS"
"${CMD[@]}" >"$WORK/h.stdout" &
WATCH_PID=$!
for ((i = 0; i < READY_WAIT * 10; i++)); do
    [[ -e "$WORK/ready" ]] && break
    kill -0 "$WATCH_PID" 2>/dev/null || break
    sleep 0.1
done
[[ -e "$WORK/ready" ]] || log "shutdown watcher not ready; stopping the node anyway"
stop_node
watch_rc=0
wait "$WATCH_PID" || watch_rc=$?
WATCH_PID=""
client_line="$(head -n 1 "$WORK/h.result" 2>/dev/null || true)"
client_verdict="$(cut -f1 <<<"$client_line")"
client_reason="$(cut -f4 <<<"$client_line")"
stopped_msg=no
grep -q 'node stopped' "$WORK/node.err" && stopped_msg=yes
if [[ -z "$client_line" ]]; then
    record FAIL h "shutdown watcher gave no result (exit $watch_rc); node exit $STOP_RC"
elif [[ "$client_verdict" != PASS ]]; then
    record FAIL h "$client_reason; node exit $STOP_RC after ${STOP_MS} ms"
elif [[ "$STOP_RC" != 0 ]]; then
    record FAIL h "node exit status $STOP_RC after SIGTERM (expected 0 within ${STOP_WAIT}s)"
elif [[ "$stopped_msg" != yes ]]; then
    record FAIL h "node exited 0 but never logged 'node stopped' (store flush path skipped?)"
else
    record PASS h \
        "$client_reason; node exited 0 ${STOP_MS} ms after SIGTERM, logged 'node stopped'"
fi

# ---------------------------------------------------------------------------- phase 2: g
if start_node "restart"; then
    suite_cmd restart --results "$RESULTS"
    "${CMD[@]}" || true
    stop_node
    [[ "$STOP_RC" == 0 ]] || log "restarted node exit status after SIGTERM: $STOP_RC"
else
    has_result g || record FAIL g "the node did not restart on its data dir"
fi

finish "no result"
