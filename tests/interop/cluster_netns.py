#!/usr/bin/env python3
"""Multi-host cluster test, run by scripts/netns-cluster.sh inside the clients' namespace.

The cluster (config --config): primary, worker1 running; pool1 a [[pool]] entry the primary
spawns; late a [[pool]] entry started here (env LATE_CMD) with --join; rogue a [[pool]] entry
started here (env ROGUE_CMD) with a config whose secret differs (--rogue-config).

Phase 1, arrival: users 1..90 of --users (CSV name,password) log in at the primary, in six
rounds of 15 (5 of each kind, concurrently):
  - slixmpp ClientXMPP (one asyncio loop): connects by the domain name (the namespace's hosts
    file maps it to the primary) and follows <see-other-host/> the way slixmpp does it
    (BaseXMPP._handle_stream_error: reconnect, STARTTLS and SASL again at the new host); must
    end bound on its home and stay connected. slixmpp 1.17 keeps only the host of
    see-other-host (it reconnects to default_port 5222) and, when connect() was given an
    address, reconnects to that address instead: hence no address here and every node on
    port 5222;
  - sipp tests/sipp/redirect_register.xml (REGISTER, 302 -> home, digest -> 200);
  - tests/interop/cluster_cxfr_client.py (STARTTLS, SASL PLAIN, follows the cxfr iq), kept
    online with --hold until the end.
Checks (polling the admin APIs for up to CHECK_WAIT s):
  (a) pool1 was spawned and joined: 3 active servers in /api/cluster;
  (b) no server's load exceeds max_load (/api/node load of each node, servers[].current);
  (c) each user is live on exactly one node, the one the primary's directory names; clients
      ended where the directory says;
  (f) placement order: the primary filled to max_load first, then worker1, then pool1.
Phase 2 (d): `late` joins at runtime; 5 more users (raw client) must be placed on it.
Phase 3 (e): `rogue` (wrong secret) is refused: the primary logs a 403 refusal, rogue never
appears in /api/cluster servers, its /api/node shows joined false and no users.
A REGISTER retransmitted while the primary still places its user gets the same 302 (same To
tag, RFC 3261 §8.2.7), and the primary places every user once (its log), not once per copy.
Prints PASS/FAIL lines (also appended to --results as PASS|FAIL<TAB>name<TAB>reason) and a
summary; exit status 1 on any failure.
"""

import asyncio
import collections
import json
import os
import re
import sys
import time

from harness import (T0, NetCluster, NetSlix, Results, Sipp, directory, netns_args, read_users,
                     run_netns_test, say, sip_blocks, snapshot)

ROUND = 15            # users per arrival round (5 per client kind)
ROUND_LIMIT = 30.0    # s: one round (covers a pool spawn: OPTIONS probes + spawn_timeout)
ARRIVAL_BUDGET = 75.0 # s: no new round starts after this (the script kills us at 150 s)
SETTLE = 0.6          # s: a slixmpp session counts as final after this long without moving
CHECK_WAIT = 10.0     # s: checks poll the admin APIs this long before failing
JOIN_WAIT = 15.0      # s: late joins
ROGUE_WAIT = 10.0     # s: the primary logs the rogue's refusal
HOLD = 600            # s: raw clients stay online (terminated at the end)

# ---------------------------------------------------------------------------- raw cxfr clients

class RawUser:
    def __init__(self, name, password, args, cl):
        self.name, self.password, self.args, self.cl = name, password, args, cl
        self.proc = None
        self.result = None

    async def run(self, deadline):
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-B", self.args.cxfr_client, f"{self.cl.nodes[self.cl.primary]['xmpp']}",
            self.cl.domain, self.name, self.password, "--hold", str(HOLD),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), max(1.0, deadline - time.monotonic()))
            self.result = json.loads(line.decode()) if line else {"error": "no output"}
        except asyncio.TimeoutError:
            self.result = {"error": "timed out"}
        except json.JSONDecodeError:
            self.result = {"error": f"bad output {line[:200]!r}"}
        if "error" in self.result and self.proc.returncode is None:
            err = b""
            try:
                self.proc.terminate()
                _, err = await asyncio.wait_for(self.proc.communicate(), 5)
            except (asyncio.TimeoutError, ProcessLookupError):
                pass
            self.result["stderr"] = err.decode(errors="replace")[-300:]
        return self.result

    def alive(self):
        return self.proc is not None and self.proc.returncode is None

    async def stop(self):
        if self.alive():
            try:
                self.proc.terminate()
                await asyncio.wait_for(self.proc.wait(), 5)
            except (asyncio.TimeoutError, ProcessLookupError):
                self.proc.kill()


# ---------------------------------------------------------------------------- sipp

async def run_sipp(batch, tag, port, args, cl):
    """One sipp run for the users of batch; returns (ok, detail, {user: [To tags of 302s]})."""
    sipp = Sipp(args.sipp, args.work, args.client_ip, cl)
    proc, out, msgs = await sipp.start(args.scenario, tag, [(n, pw) for n, pw in batch], port,
                                       ["-auth_uri", cl.domain, "-timeout", "25s"], limit=10)
    rc = await Sipp.finish(proc, out, 30)
    moved = collections.defaultdict(list)  # user -> To tags of the 302s received
    for d, _, b, _ in sip_blocks(msgs):
        if d == "received" and b.startswith("SIP/2.0 302"):
            m = re.search(r"^From:\s*<sip:([^@>]+)@", b, re.M)
            t = re.search(r"^To:[^\n]*;tag=([^;\s>]+)", b, re.M)
            if m:
                moved[m.group(1)].append(t.group(1) if t else "")
    detail = sipp.errors(tag) if rc != 0 else ""
    return rc == 0, f"sipp exit {rc}: {detail}".strip(), dict(moved)


# ---------------------------------------------------------------------------- checks

def check_state(cl, state, nodes, expect_servers, users, extra_where=None):
    """Evaluates (a)-(c) on one snapshot; returns {name: (ok, reason)}."""
    out = {}
    servers = [s["id"] for s in (state or {}).get("servers", [])]
    if state is None:
        out["servers"] = (False, "primary /api/cluster does not answer")
    else:
        ok = sorted(servers) == sorted(expect_servers) and state.get("active") == len(expect_servers)
        joined = [i for i in expect_servers if (nodes.get(i) or {}).get("joined") is True]
        ok = ok and len(joined) == len(expect_servers)
        out["servers"] = (ok, f"active={state.get('active')} servers={servers} joined={joined}")
    over = []
    for i, n in nodes.items():
        if n is None:
            over.append(f"{i}: no /api/node")
        elif n.get("load", 0) > cl.max_load:
            over.append(f"{i}: load {n['load']}")
    for s in (state or {}).get("servers", []):
        if s["current"] > s["max"] or s["current"] > cl.max_load:
            over.append(f"{s['id']}: current {s['current']}/{s['max']}")
    loads = {i: (n or {}).get("load") for i, n in nodes.items()}
    out["load"] = (not over, f"loads {loads} <= max_load {cl.max_load}" if not over else "; ".join(over))
    homes = directory(state)
    live = collections.defaultdict(list)
    for i, n in nodes.items():
        for u in (n or {}).get("live_users", []):
            live[u].append(i)
    bad = []
    for u in users:
        where = live.get(u, [])
        if len(where) != 1:
            bad.append(f"{u} live on {where or 'no node'}")
        elif homes.get(u) != where[0]:
            bad.append(f"{u} live on {where[0]} but directory says {homes.get(u)}")
        elif extra_where and extra_where.get(u) not in (None, where[0]):
            bad.append(f"{u}: client ended on {extra_where[u]}, directory and live say {where[0]}")
    out["live"] = (not bad, f"{len(users)} users live once, on their directory home" if not bad
                   else f"{len(bad)} wrong: " + "; ".join(bad[:8]))
    return out, homes


async def poll_checks(cl, node_ids, expect_servers, users, extra_where=None):
    deadline = time.monotonic() + CHECK_WAIT
    while True:
        state, nodes = await snapshot(cl, node_ids)
        res, homes = check_state(cl, state, nodes, expect_servers, users, extra_where)
        if all(ok for ok, _ in res.values()) or time.monotonic() > deadline:
            return res, homes, state, nodes
        await asyncio.sleep(0.5)


# ---------------------------------------------------------------------------- phases

async def arrive(batch, cl, args, slix, raws, sipp_moved, tag, port):
    """Logs in one round; returns a list of failures."""
    deadline = time.monotonic() + ROUND_LIMIT
    kinds = {"slix": [], "sipp": [], "raw": []}
    for n, (name, pw) in enumerate(batch):
        kinds[("slix", "sipp", "raw")[n % 3]].append((name, pw))
    new_slix = [NetSlix(n, p, cl.domain) for n, p in kinds["slix"]]
    new_raw = [RawUser(n, p, args, cl) for n, p in kinds["raw"]]
    for s in new_slix:
        slix[s.name] = s
        s.start()
    for r in new_raw:
        raws[r.name] = r
    jobs = [s.settled(deadline) for s in new_slix] + [r.run(deadline) for r in new_raw]
    jobs.append(run_sipp(kinds["sipp"], tag, port, args, cl))
    res = await asyncio.gather(*jobs)
    fails = []
    for s, peer in zip(new_slix, res[:len(new_slix)]):
        if peer is None:
            fails.append(f"slixmpp {s.name}: not bound ({s.error or 'timeout'}, redirects {s.redirects})")
    for r, out in zip(new_raw, res[len(new_slix):len(new_slix) + len(new_raw)]):
        if "error" in out:
            fails.append(f"raw {r.name}: {out}")
    ok, detail, moved = res[-1]
    for u, tags in moved.items():
        sipp_moved[u] += tags
    if not ok:
        fails.append(f"sipp {tag} ({', '.join(n for n, _ in kinds['sipp'])}): {detail}")
    return fails, kinds


async def main():
    args = netns_args("rogue-config", "scenario", "cxfr-client")
    results = Results(args.results)
    cl = NetCluster(args.config)
    users = read_users(args.users)
    first, later = users[:90], users[90:95]
    worker = next(i for i, n in cl.nodes.items() if n["role"] == "worker")
    slix, raws, sipp_moved = {}, {}, collections.defaultdict(list)
    summary = {}
    try:
        # ------------------------------------------------------------ phase 1: arrival
        say(f"phase 1: {len(first)} users arrive at {cl.primary} in rounds of {ROUND} "
            "(slixmpp, sipp, raw cxfr)")
        t1 = time.monotonic()
        fails = []
        kinds_of = {}
        for r in range(0, len(first), ROUND):
            batch = first[r:r + ROUND]
            if time.monotonic() - T0 > ARRIVAL_BUDGET:
                fails.append(f"rounds from {batch[0][0]} on not run: arrival took over {ARRIVAL_BUDGET}s")
                break
            f, kinds = await arrive(batch, cl, args, slix, raws, sipp_moved, f"round{r // ROUND + 1}",
                                    5070 + r // ROUND)
            for k, lst in kinds.items():
                for name, _ in lst:
                    kinds_of[name] = k
            fails += f
            say(f"round {r // ROUND + 1}: {batch[0][0]}..{batch[-1][0]} "
                f"{'ok' if not f else f'{len(f)} failed'}")
        arrival_s = time.monotonic() - t1
        results.record(not fails, "arrival",
                       f"{len(first)} logins in {arrival_s:.1f}s" if not fails
                       else f"{len(fails)} failed: " + "; ".join(fails[:6]))

        # where clients say they ended
        where = {}
        for name, s in slix.items():
            peer = s.connected_to()
            where[name] = cl.by_xmpp.get(peer, f"?{peer}")
        for name, r in raws.items():
            if r.result and "server" in r.result:
                where[name] = cl.by_xmpp.get(r.result["server"], f"?{r.result['server']}")
        dead = [n for n, r in raws.items() if r.result and "server" in r.result and not r.alive()]
        dead += [n for n, s in slix.items() if s.connected_to() is None]

        node_ids = [cl.primary, worker, "pool1"]
        res, homes, state, nodes = await poll_checks(
            cl, node_ids, node_ids, [n for n, _ in first], where)
        results.record(*res["servers"][:1], "a.pool_spawned", res["servers"][1])
        results.record(*res["load"][:1], "b.max_load", res["load"][1])
        live_ok = res["live"][0] and not dead
        results.record(live_ok, "c.live_on_home",
                       res["live"][1] + (f"; clients disconnected: {dead}" if dead else ""))
        dist = collections.Counter(homes.get(n) for n, _ in first)
        want = {cl.primary: cl.max_load, worker: cl.max_load, "pool1": len(first) - 2 * cl.max_load}
        results.record(dict(dist) == want, "f.placement_order",
                       f"homes {dict(dist)} (want {want}: primary first, then worker1, then the pool)")
        summary["distribution"] = dict(dist)
        redirected = collections.Counter()
        for n, _ in first:
            k = kinds_of.get(n)
            if k == "slix" and slix[n].redirects:
                redirected[k] += 1
            elif k == "raw" and raws[n].result and raws[n].result.get("via"):
                redirected[k] += 1
            elif k == "sipp" and n in sipp_moved:
                redirected[k] += 1
        summary["redirected"] = dict(redirected)
        live_at = {u: i for i, n in nodes.items() for u in (n or {}).get("live_users", [])}
        summary["live_on_home"] = {
            k: sum(1 for n, _ in first if kinds_of.get(n) == k and live_at.get(n) == homes.get(n) is not None)
            for k in ("slix", "sipp", "raw")}
        # A REGISTER retransmitted while the primary was still placing its user (pool spawn)
        # is answered once per copy; RFC 3261 §8.2.7 wants the same To tag for the same
        # request, and the user must be placed (reserved) once, not once per copy.
        tags = {u: len(set(t)) for u, t in sipp_moved.items()}
        varied = {u: n for u, n in tags.items() if n > 1}
        results.record(not varied, "sip.stateless_302",
                       f"{len(tags)} SIP users redirected; To tags differ between copies for {varied or 'none'}")
        try:
            log = open(os.path.join(args.work, f"{cl.primary}.log"), errors="replace").read()
        except OSError as e:
            log = ""
            results.record(False, "placement.once_per_user", f"no primary log: {e}")
        else:
            log = re.sub(r"\x1b\[[0-9;]*m", "", log)
            placed = collections.Counter(re.findall(r"user placed user=(\S+)", log))
            twice = {u: n for u, n in placed.items() if n > 1}
            results.record(bool(placed) and not twice, "placement.once_per_user",
                           f"{len(placed)} remote placements logged; placed more than once: {twice or 'none'}")

        # ------------------------------------------------------------ phase 2: late joins
        say("phase 2: start `late` with --join, 5 more users")
        late_cmd = os.environ.get("LATE_CMD", "")
        late_proc = await asyncio.create_subprocess_shell(late_cmd, start_new_session=True) if late_cmd else None
        deadline = time.monotonic() + JOIN_WAIT
        joined = False
        while time.monotonic() < deadline:
            st, nd = await snapshot(cl, ["late"])
            if (nd["late"] or {}).get("joined") and "late" in [s["id"] for s in (st or {}).get("servers", [])]:
                joined = True
                break
            await asyncio.sleep(0.3)
        results.record(joined, "d.late_joined",
                       f"late joined via --join (/api/node joined, in /api/cluster servers)" if joined
                       else f"late not joined within {JOIN_WAIT}s (cmd {'set' if late_cmd else 'missing'}; "
                            f"proc rc {late_proc.returncode if late_proc else None})")
        late_users = [RawUser(n, p, args, cl) for n, p in later]
        for r in late_users:
            raws[r.name] = r
        outs = await asyncio.gather(*[r.run(time.monotonic() + 30) for r in late_users])
        late_addr = cl.nodes["late"]["xmpp"]
        bad = [f"{r.name}: {o}" for r, o in zip(late_users, outs) if o.get("server") != late_addr]
        for r, o in zip(late_users, outs):
            if "server" in o:
                where[r.name] = cl.by_xmpp.get(o["server"], f"?{o['server']}")
        all_ids = node_ids + ["late"]
        res, homes, state, nodes = await poll_checks(
            cl, all_ids, all_ids, [n for n, _ in users[:95]], where)
        on_late = [n for n, _ in later if homes.get(n) == "late" and n in (nodes.get("late") or {}).get("live_users", [])]
        results.record(not bad and len(on_late) == len(later), "d.placed_on_late",
                       f"{len(on_late)}/{len(later)} new users homed and live on late ({late_addr})"
                       + (f"; clients elsewhere: {bad[:3]}" if bad else ""))
        results.record(*res["load"][:1], "d.max_load", res["load"][1])
        results.record(*res["live"][:1], "d.live_on_home", res["live"][1])
        summary["distribution_after_late"] = dict(collections.Counter(homes.values()))

        # ------------------------------------------------------------ phase 3: rogue
        say("phase 3: start `rogue` (wrong secret) with --join")
        primary_log = os.path.join(args.work, f"{cl.primary}.log")
        rogue_log = os.path.join(args.work, "rogue.log")
        rogue_sip = cl.nodes["rogue"]["sip"]
        log_start = os.path.getsize(primary_log) if os.path.exists(primary_log) else 0
        rogue_cmd = os.environ.get("ROGUE_CMD", "")
        if rogue_cmd:
            await asyncio.create_subprocess_shell(rogue_cmd, start_new_session=True)
        refusal = rogue_saw = None
        deadline = time.monotonic() + ROGUE_WAIT
        while time.monotonic() < deadline and not (refusal and rogue_saw):
            try:
                with open(primary_log, errors="replace") as f:
                    f.seek(log_start)
                    for line in f:
                        if "refused" in line and "403" in line and rogue_sip in line:
                            refusal = line.strip()
                with open(rogue_log, errors="replace") as f:
                    for line in f:
                        if "refused us" in line:
                            rogue_saw = line.strip()
            except OSError:
                pass
            await asyncio.sleep(0.3)
        results.record(bool(refusal), "e.primary_refused_rogue",
                       (refusal[-240:] if refusal else f"no 403 refusal naming {rogue_sip} in {primary_log} "
                        f"within {ROGUE_WAIT}s (cmd {'set' if rogue_cmd else 'missing'})"))
        # give a wrongly accepted join time to show up, then look at both sides
        await asyncio.sleep(1.5)
        st, nd = await snapshot(cl, ["rogue"])
        rn = nd["rogue"]
        servers = [s["id"] for s in (st or {}).get("servers", [])]
        ok = (st is not None and "rogue" not in servers and rn is not None and rn.get("joined") is False
              and not rn.get("live_users") and rn.get("users", 0) == 0)
        rogue_homed = [u for u, h in directory(st).items() if h == "rogue"]
        ok = ok and not rogue_homed
        results.record(ok, "e.rogue_not_member",
                       f"servers {servers}; rogue /api/node "
                       + (json.dumps({k: rn.get(k) for k in ('role', 'joined', 'users', 'live_users')})
                          if rn else "no answer")
                       + (f"; homed on rogue: {rogue_homed}" if rogue_homed else "")
                       + (f"; rogue log: {rogue_saw[rogue_saw.find('the primary refused'):][:120]}"
                          if rogue_saw else ""))
    finally:
        # ------------------------------------------------------------ summary, cleanup
        for s in slix.values():
            s.stop()
        await asyncio.gather(*[r.stop() for r in raws.values()], return_exceptions=True)
        await asyncio.sleep(0.2)

    print("== cluster_netns summary ==")
    print(f"users: {len(users[:95])} ({len(first)} at arrival: 30 slixmpp, 30 sipp, 30 raw cxfr; "
          f"{len(later)} after late joined)")
    if "live_on_home" in summary:
        print(f"live on their home after arrival (of 30 each): {summary['live_on_home']}")
    if "redirected" in summary:
        print(f"redirected at arrival (not placed on {cl.primary}): {summary['redirected']}")
    for k in ("distribution", "distribution_after_late"):
        if k in summary:
            print(f"{k}: {summary[k]}")
    return results.summary("cluster_netns")


if __name__ == "__main__":
    run_netns_test(main)
