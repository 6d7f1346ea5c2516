#!/usr/bin/env bash
# Starts one non-primary server of a Rendezvous cluster on this host, in the foreground.
#
# Usage: scripts/start-worker.sh CONFIG ID [PRIMARY_SIP_URI]
#   CONFIG           the cluster's cluster.toml (the same file, same [cluster] secret, on every
#                    host)
#   ID               the [[node]] (role = "worker") or [[pool]] entry to run; its addresses
#                    must be this host's addresses
#   PRIMARY_SIP_URI  optional, e.g. sip:10.0.0.1:5060: INVITE this primary at start (--join).
#                    Needed for a [[pool]] entry that should become a member now instead of
#                    waiting for the primary to take it from the pool; a role = "worker" entry
#                    joins the primary of the configuration anyway.
# Env:     RENDEZVOUS_BIN  the node binary (default: <repo>/target/release/rendezvous if
#                          present, else `rendezvous` from PATH)
#          RUST_LOG        log filter (default info)
# The node replaces this script (exec). A node whose secret differs from the primary's is
# refused (403) and stays idle: check its log for "the primary refused us".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${RENDEZVOUS_BIN:-}" ]]; then
    BIN="$RENDEZVOUS_BIN"
elif [[ -x "$ROOT/target/release/rendezvous" ]]; then
    BIN="$ROOT/target/release/rendezvous"
else
    BIN="$(command -v rendezvous || true)"
fi
die() { printf 'start-worker.sh: %s\n' "$*" >&2; exit 1; }

[[ $# -ge 2 && $# -le 3 ]] || die "usage: start-worker.sh CONFIG ID [PRIMARY_SIP_URI]"
CONFIG="$1"
ID="$2"
JOIN="${3:-}"
[[ -n "$BIN" && -x "$BIN" ]] || die "no rendezvous binary (set RENDEZVOUS_BIN)"
[[ -r "$CONFIG" ]] || die "cannot read $CONFIG"
[[ -z "$JOIN" || "$JOIN" == sip:* ]] || die "PRIMARY_SIP_URI must look like sip:HOST:PORT, got $JOIN"

ARGS=(node --config "$CONFIG" --id "$ID")
[[ -n "$JOIN" ]] && ARGS+=(--join "$JOIN")

export RUST_LOG="${RUST_LOG:-info}"
exec "$BIN" "${ARGS[@]}"
