#!/usr/bin/env bash
# Starts the primary of a Rendezvous cluster on this host, in the foreground.
#
# Usage: scripts/start-primary.sh CONFIG [USERS.csv]
#   CONFIG     the cluster's cluster.toml (the same file on every host); the [[node]] entry
#              with role = "primary" is run. Its addresses must be this host's addresses.
#   USERS.csv  optional accounts to create first, one `name,password` per line (blank lines
#              and lines starting with # are skipped). Users live only in the primary's store,
#              so they are created here, before the node opens it. An existing user gets the
#              password of the file (`user passwd`). Passwords go to `rendezvous user` on
#              standard input, never on a command line.
# Env:     RENDEZVOUS_BIN  the node binary (default: <repo>/target/release/rendezvous if
#                          present, else `rendezvous` from PATH)
#          RUST_LOG        log filter (default info)
# The node replaces this script (exec): stop it with SIGTERM / Ctrl-C, run it under systemd or
# a supervisor as is. Workers are started with scripts/start-worker.sh on their hosts.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${RENDEZVOUS_BIN:-}" ]]; then
    BIN="$RENDEZVOUS_BIN"
elif [[ -x "$ROOT/target/release/rendezvous" ]]; then
    BIN="$ROOT/target/release/rendezvous"
else
    BIN="$(command -v rendezvous || true)"
fi
die() { printf 'start-primary.sh: %s\n' "$*" >&2; exit 1; }

[[ $# -ge 1 && $# -le 2 ]] || die "usage: start-primary.sh CONFIG [USERS.csv]"
CONFIG="$1"
USERS="${2:-}"
[[ -n "$BIN" && -x "$BIN" ]] || die "no rendezvous binary (set RENDEZVOUS_BIN)"
[[ -r "$CONFIG" ]] || die "cannot read $CONFIG"
[[ -z "$USERS" || -r "$USERS" ]] || die "cannot read $USERS"

if [[ -n "$USERS" ]]; then
    existing="$("$BIN" user --config "$CONFIG" list)" || die "cannot open the primary's store (is the primary already running?)"
    domain_users="$(sed 's/@.*//' <<<"$existing")"
    added=0 changed=0 n=0
    while IFS= read -r line || [[ -n "$line" ]]; do
        n=$((n + 1))
        line="${line%$'\r'}"
        [[ -z "${line//[[:space:]]/}" || "$line" == \#* ]] && continue
        name="${line%%,*}"
        pw="${line#*,}"
        [[ "$line" == *,* && -n "$name" && -n "$pw" ]] || die "$USERS:$n: expected name,password"
        if grep -qxF -- "$name" <<<"$domain_users"; then
            printf '%s\n' "$pw" | "$BIN" user --config "$CONFIG" passwd "$name" >/dev/null ||
                die "$USERS:$n: could not set the password of $name"
            changed=$((changed + 1))
        else
            printf '%s\n' "$pw" | "$BIN" user --config "$CONFIG" add "$name" >/dev/null ||
                die "$USERS:$n: could not add $name"
            added=$((added + 1))
        fi
    done <"$USERS"
    printf 'start-primary.sh: %d users added, %d passwords updated from %s\n' \
        "$added" "$changed" "$USERS" >&2
fi

export RUST_LOG="${RUST_LOG:-info}"
exec "$BIN" node --config "$CONFIG"
