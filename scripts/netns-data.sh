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
# The steps the netns scripts share (lock, network, users, nodes, teardown) are in
# scripts/lib/netns.sh.
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
TEST_PY="$ROOT/tests/interop/cluster_data_netns.py"
REGISTER_XML="$ROOT/tests/sipp/cluster_register.xml"
WATCH_XML="$ROOT/tests/sipp/cluster_watch.xml"

NAME=netns-data
SETUP_NAME=netns-data.setup
NET=10.78.0          # /24 of the test network (netns-cluster.sh uses 10.77.0)
NS_PREFIX=rdv-d      # namespaces rdv-d1.., rdv-dc (clients), rdv-dbr (bridge)
SERVERS=3
DOMAIN=cluster.test
NUSERS=102           # 12 slixmpp + 6 SIP + 84 raw XMPP clients
TEST_LIMIT=240       # s: `timeout` around cluster_data_netns.py (it caps its own phases)
TAIL_LINES=8

# shellcheck source=scripts/lib/netns.sh
source "$ROOT/scripts/lib/netns.sh"
netns_args "$@"
netns_setup "$TEST_PY" "$REGISTER_XML" "$WATCH_XML"
{
    netns_toml_head
    cat <<EOF
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
EOF
    netns_toml_tail sip-domain
    netns_toml_nodes worker1:2 worker2:3
} >"$CFG"

netns_users "$NUSERS"
netns_start_nodes worker1:2 worker2:3

TEST_ARGS=(--config "$CFG" --users "$USERS_CSV" --work "$DIR" --client-ip "$CLIENT_IP"
    --sipp "$(command -v "$SIPP")" --register-scenario "$REGISTER_XML"
    --watch-scenario "$WATCH_XML" --kill-ns "${NS_PREFIX}3")
[[ "$MODE" == keep ]] && netns_keep \
    "raw XMPP:  ip netns exec $CLIENT_NS $PY $ROOT/tests/interop/cluster_cxfr_client.py $NET.1:5222 $DOMAIN USER PASSWORD --hold 30" \
    "test:      ip netns exec $CLIENT_NS $PY -B $TEST_PY ${TEST_ARGS[*]}"
netns_run_test "$TEST_PY" "${TEST_ARGS[@]}"
