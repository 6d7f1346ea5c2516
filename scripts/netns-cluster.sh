#!/usr/bin/env bash
# Multi-host test of a Rendezvous cluster on one machine: every server runs in its own network
# namespace, with its own address, so redirects, CCMP and the pool spawn cross real (virtual)
# links instead of loopback ports.
#
# Topology (subnet 10.77.0.0/24, nothing is added to the root namespace):
#   rdv-nsbr        bridge rdv-nsbr0; one veth port per namespace below (rdv-nsp<i>)
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
# The steps the netns scripts share (lock, network, users, nodes, teardown) are in
# scripts/lib/netns.sh.
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
TEST_PY="$ROOT/tests/interop/cluster_netns.py"

NAME=netns-cluster
SETUP_NAME=netns.setup
NET=10.77.0          # /24 of the test network
NS_PREFIX=rdv-ns      # namespaces rdv-ns1.., rdv-nsc (clients), rdv-nsbr (bridge)
SERVERS=4            # -n
SERVERS_MIN=4
SERVERS_MAX=50
DOMAIN=cluster.test
NUSERS=95            # user001..user090 arrive first, user091..user095 after `late` joined
TEST_LIMIT=150       # s: `timeout` around cluster_netns.py (it caps its own phases)
TAIL_LINES=12

# shellcheck source=scripts/lib/netns.sh
source "$ROOT/scripts/lib/netns.sh"
netns_args "$@"
netns_setup "$TEST_PY"
ROGUE_CFG="$DIR/rogue.toml"
{
    netns_toml_head
    cat <<EOF
max_load = 40
min_load = 0
# This test checks where NEW users are placed (primary, worker1, then the pool); moving
# users onto the pool server (DESIGN.md §7) is tested by tests/cluster.rs and netns-scale.sh.
rebalance_on_join = false
redirect = "both"
report_interval_ms = 500
dead_after_ms = 5000
ccmp_timeout_ms = 2000
spawn_timeout_ms = 15000
EOF
    netns_toml_tail
    netns_toml_nodes worker1:2
    netns_entry pool pool1 "" "$NET.3" 5222 5060 5280 \
        "ip netns exec ${NS_PREFIX}3 setsid '$BIN' node --config '$CFG' --id pool1 > '$DIR/pool1.log' 2>&1 &"
    netns_entry pool late "" "$NET.4" 5222 5060 5280
    netns_entry pool rogue "" "$NET.4" 5223 5061 5281
    for ((i = 5; i <= SERVERS; i++)); do netns_entry pool "spare$i" "" "$NET.$i" 5222 5060 5280; done
} >"$CFG"
# The rogue: the same cluster description under another secret.
sed "s/^secret = .*/secret = \"$(secret)\"/" "$CFG" >"$ROGUE_CFG"

netns_users "$NUSERS"
netns_start_nodes worker1:2

# The test starts these itself (environment, through `ip netns exec` and `timeout`).
export LATE_CMD="ip netns exec ${NS_PREFIX}4 setsid '$BIN' node --config '$CFG' --id late --join sip:$NET.1:5060 >> '$DIR/late.log' 2>&1"
export ROGUE_CMD="ip netns exec ${NS_PREFIX}4 setsid '$BIN' node --config '$ROGUE_CFG' --id rogue --join sip:$NET.1:5060 >> '$DIR/rogue.log' 2>&1"
[[ "$MODE" == keep ]] && netns_keep \
    "raw XMPP:  ip netns exec $CLIENT_NS $PY $ROOT/tests/interop/cluster_cxfr_client.py $NET.1:5222 $DOMAIN USER PASSWORD --hold 30" \
    "late join: $LATE_CMD" \
    "rogue:     $ROGUE_CMD"
netns_run_test "$TEST_PY" \
    --config "$CFG" --rogue-config "$ROGUE_CFG" --users "$USERS_CSV" --work "$DIR" \
    --client-ip "$CLIENT_IP" --sipp "$(command -v "$SIPP")" \
    --scenario "$ROOT/tests/sipp/redirect_register.xml" \
    --cxfr-client "$ROOT/tests/interop/cluster_cxfr_client.py"
