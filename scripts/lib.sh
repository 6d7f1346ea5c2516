# Shell helpers shared by the suites that start their own nodes (sipp.sh, moe.sh).
# Source it after defining `log` and STOP_WAIT (seconds).

# SIGTERM to a node's process group (started with setsid), bounded wait, then SIGKILL.
stop_group() { # pid
    local pid="$1" i
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < STOP_WAIT * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && log "node pid $pid ignored SIGTERM for ${STOP_WAIT}s; SIGKILL"
    fi
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Prints N distinct loopback ports free for both TCP and UDP (SIP uses one port for both).
free_ports() { # n
    python3 - "$1" <<'PYEOF'
import socket, sys
want, held, out = int(sys.argv[1]), [], []
for _ in range(50 * want):
    if len(out) == want:
        break
    t = socket.socket()
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        t.close(); u.close()
        continue
    held += [t, u]
    out.append(port)
print(*out)
PYEOF
}
