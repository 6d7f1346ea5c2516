#!/usr/bin/env bash
# Multi-host test of REBALANCING and SCALE-IN (DESIGN.md §7): a pool server the primary spawns
# because every server is full takes users from the others (their XMPP clients follow
# see-other-host, their SIP subscriptions are deactivated and renewed), and when the load has
# fallen the least-loaded worker is drained, stopped and returned to the pool. Every server in
# its own network namespace; same style as scripts/netns-data.sh, on its own subnet, namespace
# prefix and lock file, so the netns scripts never collide (they may even run at once).
#
# Topology (subnet 10.79.0.0/24, nothing is added to the root namespace):
#   rdv-sbr         bridge rdv-sbr0; one veth port per namespace below (rdv-sp<i>)
#   rdv-s1          10.79.0.1   primary   (role = "primary")
#   rdv-s2          10.79.0.2   worker1   ([[node]] role = "worker": joins at start)
#   rdv-s3          10.79.0.3   pool1     ([[pool]]: the primary runs its `spawn` command when
#                                          every server is full, and its `stop` command, which
#                                          SIGTERMs the processes of rdv-s3, when it drains it)
#   rdv-sc          10.79.0.100 clients (slixmpp, sipp); its /etc/hosts (from
#                               /etc/netns/rdv-sc/hosts) maps cluster.test to the primary
# Every server listens on XMPP 5222, SIP 5060 (UDP+TCP) and admin 5280 of its own address.
# XMPP TLS is required (non-loopback listeners): each node makes a self-signed certificate.
#
# The script writes cluster.toml into a temp dir: domain cluster.test, redirect
# "see-other-host", load = users online (weight_users 1, weight_resources 0), max_load 12,
# min_load 6, scale_in_after_s 8, rebalance_on_join true, report_interval_ms 500,
# dead_after_ms 3000, ccmp_timeout_ms 1000, spawn_timeout_ms 10000; [sip] presence_policy
# "domain", sip_auth false. It creates user001..user025 in the primary's store (users.csv:
# name,password), starts primary and worker1 (setsid, logs in the temp dir), waits until the
# primary answers and worker1 joined, and then:
#   --test   runs tests/interop/cluster_scale_netns.py in rdv-sc (24 users fill primary and
#            worker1 to max_load; the 25th makes the primary spawn pool1, which takes users
#            from both; then most users leave and pool1 is drained and stopped; see there)
#   --keep   leaves the cluster running until Ctrl-C (prints how to reach it)
# Mind that an idle cluster scales in after scale_in_after_s: with --keep, worker1 is drained
# 8 s after it joined unless users arrive.
# A trap tears everything down on any exit (processes of every rdv-s* namespace, TERM then
# KILL, bounded; the namespaces with their veths and bridge; /etc/netns/rdv-sc; the temp dir
# unless KEEP_DIR=1). Leftovers of an earlier aborted run are removed at start. Installs nothing.
# The steps the netns scripts share (lock, network, users, nodes, teardown) are in
# scripts/lib/netns.sh.
#
# Usage: scripts/netns-scale.sh --test|--keep    (as root)
# Env:   RENDEZVOUS_BIN  node binary (default <repo>/target/release/rendezvous; not built here)
#        NETNS_PYTHON    python with slixmpp (default <repo>/.venv-interop/bin/python)
#        SIPP            sipp binary (default sipp; Debian package sip-tester)
#        NETNS_RESULTS   also append the PASS/FAIL lines (`PASS|FAIL<TAB>name<TAB>reason`) here
#        KEEP_DIR=1      keep the temp dir (configs, node logs, sipp logs, clients.log)
#        RUST_LOG        node log filter (default info)
# Exit:  0 when every check passed (--test) or after Ctrl-C (--keep).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEST_PY="$ROOT/tests/interop/cluster_scale_netns.py"
REGISTER_XML="$ROOT/tests/sipp/cluster_register.xml"
RESUBSCRIBE_XML="$ROOT/tests/sipp/cluster_resubscribe.xml"

NAME=netns-scale
SETUP_NAME=netns-scale.setup
NET=10.79.0          # /24 of the test network (netns-cluster.sh: 10.77.0, netns-data.sh: 10.78.0)
NS_PREFIX=rdv-s      # namespaces rdv-s1.., rdv-sc (clients), rdv-sbr (bridge)
SERVERS=3            # namespaces; pool1's (rdv-s3) stays empty until the primary spawns it
POOL_NS="${NS_PREFIX}3"
DOMAIN=cluster.test
NUSERS=25            # 24 fill primary and worker1 to max_load; the 25th brings in pool1
TEST_LIMIT=75        # s: `timeout` around cluster_scale_netns.py (it caps its own phases)

# shellcheck source=scripts/lib/netns.sh
source "$ROOT/scripts/lib/netns.sh"
netns_args "$@"
netns_setup "$TEST_PY" "$REGISTER_XML" "$RESUBSCRIBE_XML"

# pool1 is started by the primary (its `spawn`, run with sh -c in the primary's namespace) and
# stopped by it (`stop`: SIGTERM to every process of pool1's namespace, nothing else).
POOL_SPAWN="ip netns exec $POOL_NS setsid '$BIN' node --config '$CFG' --id pool1 >> '$DIR/pool1.log' 2>&1 &"
POOL_STOP="ip netns pids $POOL_NS | xargs -r kill -TERM"
{
    netns_toml_head
    cat <<EOF
# load = users online: the test knows every server's load from its own clients.
weight_users = 1
weight_resources = 0
# 12 + 12 users fill primary and worker1; the 25th user brings in pool1, which then takes
# users from both up to the mean (25 / 3).
max_load = 12
# Scale-in once the mean load stays below 6 for 8 s: the test lowers the total to 15 users
# (mean 5 over three servers; 7.5 over the two left after the drain, so only one goes).
min_load = 6
scale_in_after_s = 8
rebalance_on_join = true
redirect = "see-other-host"
report_interval_ms = 500
dead_after_ms = 3000
ccmp_timeout_ms = 1000
spawn_timeout_ms = 10000
EOF
    netns_toml_tail sip-domain
    netns_toml_nodes worker1:2
    netns_entry pool pool1 "" "$NET.3" 5222 5060 5280 "$POOL_SPAWN" "$POOL_STOP"
} >"$CFG"

netns_users "$NUSERS"
netns_start_nodes worker1:2

TEST_ARGS=(--config "$CFG" --users "$USERS_CSV" --work "$DIR" --client-ip "$CLIENT_IP"
    --sipp "$(command -v "$SIPP")" --register-scenario "$REGISTER_XML"
    --resubscribe-scenario "$RESUBSCRIBE_XML" --pool-ns "$POOL_NS")
[[ "$MODE" == keep ]] && netns_keep "test:      ip netns exec $CLIENT_NS $PY -B $TEST_PY ${TEST_ARGS[*]}"
netns_run_test "$TEST_PY" "${TEST_ARGS[@]}"
