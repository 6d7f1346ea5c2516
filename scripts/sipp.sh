#!/usr/bin/env bash
# SIP suite: sipp scenarios (tests/sipp/*.xml) and a mixed slixmpp + sipp check
# (tests/interop/sip_mixed.py) against real `rendezvous node` processes.
#
# Two throw-away nodes on free loopback ports, each with its own config and data dir:
#   open  [sip] sip_auth = false, presence_policy = "domain"; [xmpp] tls = "required" (the
#         default: the node makes a self-signed cert.pem that the slixmpp client verifies);
#         users alice, bob, carol. Runs every scenario but the digest one, then "mixed".
#   auth  [sip] sip_auth = true; user bob. Runs digest_challenge and digest_register.
# Every scenario runs once over UDP (-t u1) and once over TCP (-t t1), except digest_register:
# UDP only (sipp 3.6 answers only the first, SHA-256, challenge, so the scenario re-sends the
# node's MD5 challenge to itself, which sipp cannot do with -t t1; digest_challenge covers the
# 401/403 half over TCP). `-m 1`, under sipp's own `-timeout 15s -timeout_error` and a
# `timeout` around it. Results are lines `PASS|FAIL<TAB>name<TAB>reason`
# (name = scenario.udp, scenario.tcp, mixed).
#
# Usage: scripts/sipp.sh
# Env:   SIPP_NODE_BIN  use this rendezvous binary (default: build target/release/rendezvous)
#        SIPP           the sipp binary (default: sipp; Debian package sip-tester)
#        SIPP_PYTHON    python with slixmpp, for "mixed" (default: <repo>/.venv-interop/bin/python)
#        SIPP_RESULTS   also copy the results file here
#        SIPP_KEEP=1    keep the work dir (configs, node logs, sipp *_errors.log and
#                       *_messages.log) even when everything passed
#        RUST_LOG       node log filter (default: info,rendezvous=debug)
# Exit:  0 when every scenario passed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${SIPP_NODE_BIN:-$ROOT/target/release/rendezvous}"
SIPP="${SIPP:-sipp}"
PY="${SIPP_PYTHON:-$ROOT/.venv-interop/bin/python}"
SCEN="$ROOT/tests/sipp"
MIXED="$ROOT/tests/interop/sip_mixed.py"

# scenario -> node it runs against, and its sipp transports (in execution order).
SCENARIOS=(publisher_watcher unsubscribe bad_event stale_etag digest_challenge digest_register)
declare -A NODE_OF=([publisher_watcher]=open [unsubscribe]=open [bad_event]=open
    [stale_etag]=open [digest_challenge]=auth [digest_register]=auth)
declare -A TRANSPORTS_OF=([digest_register]="u1")
transports_of() { echo "${TRANSPORTS_OF[$1]:-u1 t1}"; }

START_WAIT=20     # s: node start -> ports accept connections
STOP_WAIT=10      # s: SIGTERM -> node gone (then SIGKILL to its process group)
SIPP_TIMEOUT=15   # s: sipp -timeout (fails the call when reached)
SIPP_LIMIT=25     # s: `timeout` around one sipp run
ADMIN_LIMIT=30    # s: `rendezvous user add`
MIXED_LIMIT=90    # s: `timeout` around sip_mixed.py (it caps itself at 60 s)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/rendezvous-sipp.XXXXXX")"
RESULTS="$WORK/results"
: >"$RESULTS"
mkdir -p "$WORK/sipp"
NODE_PIDS=()
T_START=$SECONDS

log() { printf 'sipp.sh: %s\n' "$*" >&2; }

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh" # stop_group, free_ports

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${NODE_PIDS[@]}"; do stop_group "$pid"; done
    if [[ $rc -eq 0 && "${SIPP_KEEP:-0}" != 1 ]]; then
        rm -rf "$WORK"
    else
        log "work dir kept: $WORK (node-*.log, sipp/*_errors.log, sipp/*_messages.log)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

record() { # verdict name reason
    local reason="${3//$'\t'/ }"
    reason="${reason//$'\n'/ }"
    printf '%s\t%s\t%s\n' "$1" "$2" "$reason" >>"$RESULTS"
    printf '%s %s: %s\n' "$1" "$2" "$reason"
}
has_result() { cut -f2 "$RESULTS" | grep -qxF "$1"; }
tname() { [[ "$1" == u1 ]] && echo udp || echo tcp; }
all_names() {
    local s t
    for s in "${SCENARIOS[@]}"; do
        for t in $(transports_of "$s"); do echo "$s.$(tname "$t")"; done
    done
    echo mixed
}

# Marks every test without a result as FAIL, prints the summary, exits.
finish() {
    local why="$1" n pass fail f
    while read -r n; do
        has_result "$n" || record FAIL "$n" "not run: $why"
    done < <(all_names)
    pass=$(grep -c '^PASS' "$RESULTS" || true)
    fail=$(grep -c '^FAIL' "$RESULTS" || true)
    if [[ -n "${SIPP_RESULTS:-}" ]]; then cp "$RESULTS" "$SIPP_RESULTS"; fi
    echo "== sipp summary ($((SECONDS - T_START))s) =="
    while read -r n; do
        awk -F'\t' -v n="$n" '$2 == n { printf "%s\t%s\t%s\n", $1, $2, $3 }' "$RESULTS"
    done < <(all_names)
    echo "sipp: $pass passed, $fail failed"
    if ((fail > 0)); then
        for f in "$WORK"/node-*.log; do
            [[ -s "$f" ]] || continue
            echo "--- last 15 lines of $f ---"
            grep -v 'sled::' "$f" | tail -n 15 || true
        done
        exit 1
    fi
    exit 0
}

# ---------------------------------------------------------------------------- prerequisites
command -v "$SIPP" >/dev/null || finish "no $SIPP (install the Debian package sip-tester)"
command -v python3 >/dev/null || finish "no python3 (needed to pick free ports)"
if [[ -z "${SIPP_NODE_BIN:-}" ]]; then
    log "building release binary"
    (cd "$ROOT" && cargo build --release --quiet --bin rendezvous) ||
        finish "cargo build --release failed"
fi
[[ -x "$BIN" ]] || finish "no node binary at $BIN"
log "node $BIN; $("$SIPP" -v 2>/dev/null | grep -o 'SIPp v[^ ]*' | head -n 1)"

# Ports free for both TCP and UDP on 127.0.0.1 (SIP uses one port for both), all distinct.
NSIPP=$(all_names | wc -l) # one local port per sipp run (the last one: mixed)
read -r -a PORTS <<<"$(free_ports $((4 + NSIPP)))"
((${#PORTS[@]} == 4 + NSIPP)) || finish "could not find free ports"
OPEN_XMPP=${PORTS[0]} OPEN_SIP=${PORTS[1]} AUTH_XMPP=${PORTS[2]} AUTH_SIP=${PORTS[3]}
SIPP_PORTS=("${PORTS[@]:4}")
NEXT_PORT=0

password() { head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 16; }
declare -A PW=([alice]="$(password)" [bob]="$(password)" [carol]="$(password)")

write_config() { # name xmpp_port sip_port sip_auth
    cat >"$WORK/$1.toml" <<EOF
# Generated by scripts/sipp.sh
[cluster]
domain = "localhost"

[xmpp]
# tls = "required" (default): clients negotiate STARTTLS; the node makes cert.pem.

[sip]
presence_policy = "domain"
sip_auth = $4

[[node]]
id = "$1"
xmpp = "127.0.0.1:$2"
sip = "127.0.0.1:$3"
admin = "127.0.0.1:0"
data_dir = "$WORK/data-$1"
EOF
}
write_config open "$OPEN_XMPP" "$OPEN_SIP" false
write_config auth "$AUTH_XMPP" "$AUTH_SIP" true

add_user() { # node user
    timeout -k 5 "$ADMIN_LIMIT" "$BIN" user add "$2" --password "${PW[$2]}" \
        --config "$WORK/$1.toml" --id "$1" >>"$WORK/admin.log" 2>&1
}
for u in alice bob carol; do add_user open "$u" || finish "user add $u failed (see admin.log)"; done
add_user auth bob || finish "user add bob (auth node) failed (see admin.log)"

SETSID=()
command -v setsid >/dev/null && SETSID=(setsid) # own process group, killed as a whole
start_node() { # name xmpp_port sip_port
    local name="$1" i pid
    NO_COLOR=1 RUST_LOG="${RUST_LOG:-info,rendezvous=debug}" "${SETSID[@]}" \
        "$BIN" node --config "$WORK/$name.toml" --id "$name" \
        >>"$WORK/node-$name.log" 2>&1 &
    pid=$!
    NODE_PIDS+=("$pid")
    for ((i = 0; i < START_WAIT * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "node $name exited during start-up"
            return 1
        fi
        if [[ -s "$WORK/data-$name/cert.pem" ]] &&
            (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null &&
            (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null; then
            log "node $name pid $pid: XMPP 127.0.0.1:$2, SIP 127.0.0.1:$3"
            return 0
        fi
        sleep 0.1
    done
    log "node $name did not accept connections within ${START_WAIT}s"
    return 1
}
start_node open "$OPEN_XMPP" "$OPEN_SIP" || finish "node 'open' did not start"
start_node auth "$AUTH_XMPP" "$AUTH_SIP" || finish "node 'auth' did not start"

# ---------------------------------------------------------------------------- sipp scenarios
describe() {
    case "$1" in
        publisher_watcher) echo "PUBLISH 200+SIP-ETag; SUBSCRIBE 200; NOTIFY active with the note and <basic>open</basic>; unsubscribe; publication removed" ;;
        unsubscribe) echo "SUBSCRIBE 200; NOTIFY active; SUBSCRIBE Expires: 0 -> 200; NOTIFY terminated; then 481" ;;
        bad_event) echo "SUBSCRIBE Event: foo -> 489 with Allow-Events: presence" ;;
        stale_etag) echo "unknown SIP-If-Match -> 412; modify supersedes the first ETag; refresh with it -> 412" ;;
        digest_challenge) echo "REGISTER -> 401 (SHA-256, then MD5); wrong MD5 response -> 403; unknown nonce -> 401" ;;
        digest_register) echo "REGISTER -> 401 (SHA-256, MD5); [authentication] MD5 -> 200; unregister -> 200" ;;
    esac
}
args_of() { # scenario -> sipp arguments (users)
    case "$1" in
        publisher_watcher | bad_event) echo "-s alice -key watcher bob" ;;
        unsubscribe) echo "-s alice -key watcher carol" ;;
        stale_etag) echo "-s carol" ;;
        digest_challenge) echo "-s bob -key node_host 127.0.0.1 -key node_port $AUTH_SIP" ;;
        digest_register) echo "-s bob -au bob -ap ${PW[bob]} -key node_host 127.0.0.1 -key node_port $AUTH_SIP" ;;
    esac
}

# The last event in a sipp error log, on one line; a failed regexp check is shown as the
# regexp and the start of the text it was looking in.
sipp_reason() { # errors.log
    awk '
        /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]\t/ {
            n = split($0, f, "\t"); ev = f[n]; sub(/^[0-9.]+: /, "", ev); next
        }
        ev != "" { ev = ev " " $0 }
        END {
            if (ev == "") exit
            if (match(ev, /, with regexp \047/)) {
                re = substr(ev, RSTART + RLENGTH); sub(/\047[[:space:]]*$/, "", re)
                subj = substr(ev, 1, RSTART - 1); sub(/^Failed regexp match: looking in \047/, "", subj)
                print "no match for regexp \047" substr(re, 1, 160) "\047 in \047" substr(subj, 1, 100) "...\047"
            } else print substr(ev, 1, 240)
        }
    ' "$1" 2>/dev/null
}

run_sipp() { # scenario transport node_sip_port
    local s="$1" t="$2" target="127.0.0.1:$3" name rc=0 t0 ms why base
    name="$s.$(tname "$t")"
    base="$WORK/sipp/$name"
    # shellcheck disable=SC2046 # word splitting of args_of is intended (no spaces in values)
    local cmd=("$SIPP" -sf "$SCEN/$s.xml" -m 1 $(args_of "$s") -i 127.0.0.1
        -p "${SIPP_PORTS[NEXT_PORT]}" -t "$t" -timeout "${SIPP_TIMEOUT}s" -timeout_error -nostdin
        -trace_err -error_file "${base}_errors.log" -trace_msg -message_file "${base}_messages.log"
        "$target")
    NEXT_PORT=$((NEXT_PORT + 1))
    printf 'timeout -k 5 %s %s\n' "$SIPP_LIMIT" "${cmd[*]}" >>"$WORK/sipp-commands.txt"
    t0=$(date +%s%3N)
    (cd "$WORK/sipp" && timeout -k 5 "$SIPP_LIMIT" "${cmd[@]}") >"$base.out" 2>&1 || rc=$?
    ms=$(($(date +%s%3N) - t0))
    if [[ $rc -eq 0 ]]; then
        record PASS "$name" "$(describe "$s") [${ms} ms]"
        return
    fi
    why="$(sipp_reason "${base}_errors.log")"
    case "$rc" in
        124 | 137) why="killed after ${SIPP_LIMIT}s${why:+: $why}" ;;
        *) why="${why:-$(grep -v '^[[:space:]]*$' "$base.out" | tail -n 1 | cut -c1-160)}" ;;
    esac
    record FAIL "$name" "sipp exit $rc: ${why:-no error logged} [${ms} ms]"
}

for s in "${SCENARIOS[@]}"; do
    for t in $(transports_of "$s"); do
        if [[ "${NODE_OF[$s]}" == open ]]; then port=$OPEN_SIP; else port=$AUTH_SIP; fi
        run_sipp "$s" "$t" "$port"
    done
done

# ---------------------------------------------------------------------------- mixed
if [[ ! -x "$PY" ]] || ! "$PY" -c 'import slixmpp' 2>/dev/null; then
    record FAIL mixed "no python with slixmpp at $PY (run scripts/test.sh once: it makes the venv)"
else
    mixed_cmd=(timeout -k 5 "$MIXED_LIMIT" "$PY" -B "$MIXED" --port "$OPEN_XMPP"
        --cert "$WORK/data-open/cert.pem" --sip-port "$OPEN_SIP"
        --sipp-port "${SIPP_PORTS[NEXT_PORT]}" --transport u1 --alice-password "${PW[alice]}"
        --sipp "$(command -v "$SIPP")" --scenario "$SCEN/mixed_bob.xml" --work "$WORK/sipp"
        --results "$RESULTS" --log "$WORK/client-mixed.log")
    printf '%s\n' "${mixed_cmd[*]}" >>"$WORK/sipp-commands.txt"
    mixed_rc=0
    "${mixed_cmd[@]}" >"$WORK/mixed.out" 2>&1 || mixed_rc=$?
    if has_result mixed; then
        grep -P '^(PASS|FAIL)\tmixed\t' "$WORK/mixed.out" | sed 's/\t/ /; s/\t/: /' || true
    else
        record FAIL mixed "sip_mixed.py exit $mixed_rc without a result: $(tail -n 1 "$WORK/mixed.out" | cut -c1-160)"
    fi
fi

finish "no result"
