#!/usr/bin/env python3
"""Multi-host test of REBALANCING and SCALE-IN (DESIGN.md §7), run by scripts/netns-scale.sh
inside the clients' namespace against primary and worker1, with pool1 a [[pool]] entry the
primary spawns (config --config: load = users online, max_load 12, min_load 6,
scale_in_after_s 8, presence_policy "domain", sip_auth false, redirect "see-other-host").

Users (--users CSV name,password, 25 lines): user001..012 fill the primary, user013..024
worker1, user025 brings in the pool. user001, user012, user013 and user024 are SIP users
(sipp), the others slixmpp clients, which connect by the domain name (the primary) and follow
<see-other-host/> by themselves: the test calls connect() once per client and never again.
The primary moves users "online at their home" to a new server in name order, so the SIP
users were named so that two of them move and two stay (the test does not rely on it: it reads
who moved from the primary's directory; checks that need a moved SIP user fail without one).

  r. rebalance. The primary's 12 users log in (slixmpp; the SIP users REGISTER with
     tests/sipp/cluster_register.xml), then worker1's 12 (302 / see-other-host from the
     primary): both at max_load (r.fill, which also checks that both are still members). The
     20 slixmpp users subscribe to their ring neighbours i±1 (other node) and i±2 (same node)
     in a ring that alternates the two nodes (r.rosters: every item `both`). Each SIP user
     watches two slixmpp users of the other node with tests/sipp/cluster_resubscribe.xml (one
     sipp run for all 8 subscriptions, kept until the end: REGISTER and SUBSCRIBE through the
     primary's 302, and SUBSCRIBE again through the primary after each
     `terminated;reason=deactivated`) (r.sip_watch: a NOTIFY `active` from each watcher's home).
     The live subscriptions are counted: roster items `both` (iq get), SIP subscriptions whose
     last NOTIFY is `active`, and the nodes' own count (sum of /api/node `resources`: watched
     roster contacts + SIP subscriptions). user025 logs in: the primary spawns pool1, which
     joins, gets user025 and then users from both servers. The admin APIs (/api/cluster
     servers[].current and each /api/node load) are polled every 0.2 s from before the login to
     the end of (e). Checks:
     (a) r.max_load: no sample of any server above max_load;
     (b) r.pool_joined: pool1 was spawned (a process in --pool-ns), is a member and is home
         to user025 and to users moved from both other servers (directory, live on pool1);
         r.xmpp_moved: every moved slixmpp client got see-other-host naming its new home and is
         bound there again without the test reconnecting it (p50/max from the stream error to
         the new session), and the directory and the new home's /api/node agree; the clients
         that were not moved kept their session;
     (c) r.sip_resubscribed: every subscription of a moved SIP user got NOTIFY
         `terminated;reason=deactivated` from the old home, then (sipp) a 302 naming the new
         home and a NOTIFY `active` from the new home (p50/max; how many of those first
         NOTIFYs said `closed` (or had no body yet) before the presentity's state followed is reported, not
         judged); the other SIP users' subscriptions were never terminated;
     (d) r.live_subscriptions: the three counts after the moves equal those before;
     (e) r.presence_after_move: each slixmpp user sends presence with a unique status; every
         watcher (its 4 ring contacts, and the SIP watchers of the watched ones) must receive
         it within PRESENCE_WAIT s (count, p50/max).
  s. scale-in. The users leave but 15 (the SIP users, the users they watch, one slixmpp user
     of pool1 with its contacts, and enough others for 6 on the primary and 6 on worker1, so
     that pool1 is the least loaded and the mean is 5 < min_load, and 7.5 on the two servers
     left). Within scale_in_after_s + SCALE_MARGIN s:
     s.scale_in: one worker is drained: the least loaded one (pool1), and only it (worker1
     stays a member); s.pool_stopped: its `stop` ran (no process left in --pool-ns, its admin
     API silent) and it is back in the pool (/api/cluster candidates); s.users_rehomed: its
     slixmpp user is bound on another server by itself (see-other-host), its SIP users'
     subscriptions are `active` again from their new homes, and the directory agrees;
     s.presence_intact: each remaining slixmpp user sends a unique status, every online
     contact and SIP watcher receives it (the drained users' counted apart), and the drained
     SIP users receive their presentities' updates; s.rosters_unchanged: the drained users'
     rosters (iq get) and the count of live SIP subscriptions are those of before.
  z. The watched users set the status "rs-end ...": each sipp call unsubscribes and ends;
     z.sipp_watchers: sipp exits 0 (every call went through all its steps).
Prints PASS/FAIL lines with measured figures (also appended to --results as
PASS|FAIL<TAB>name<TAB>reason); exit status 1 on any failure. Every wait is bounded.
"""

import asyncio
import collections
import re
import time
import uuid

from harness import (NetCluster, NetSlix, Results, Sipp, directory, get_json, hdr,
                     netns_args, ns_pids, read_users, run_netns_test, say, sip_blocks,
                     snapshot, spread, uri_user)

LOGIN_LIMIT = 15.0     # s: one fill batch logged in (slixmpp settled, sipp REGISTERs done)
LOAD_WAIT = 5.0        # s: the primary's view of a server's load catches up with its users
ROSTER_WAIT = 10.0     # s: every ring subscription `both`
SUBSCRIBE_WAIT = 10.0  # s: every SIP subscription active
JOIN_LIMIT = 20.0      # s: user025's login: pool1 spawned, joined, user025 bound on it
MOVE_LIMIT = 12.0      # s: after pool1 joined, every moved user back at its new home
STABLE = 1.5           # s: the directory counts as settled after this long unchanged
PRESENCE_WAIT = 3.0    # s: one presence delivery
SCALE_MARGIN = 8.0     # s: beyond scale_in_after_s, for the drain, the stop and the moves
SIPP_LIMIT = 70        # s: sipp's own -timeout for the watchers' run (the script allows 75)
END_WAIT = 10.0        # s: the watchers' sipp run ends after the "rs-end" statuses
POLL = 0.2             # s: admin API sampling period
KEEP_PER_SERVER = 6    # users left on primary and on worker1 (mean 5 < min_load 6)


# ---------------------------------------------------------------------------- SIP watchers

class Calls:
    """The watchers' sipp run, read from its message log: per call (Call-ID) the watcher, the
    presentity and what happened, in order."""

    def __init__(self, path, cl):
        self.path, self.cl = path, cl

    def read(self):
        calls = collections.OrderedDict()
        for direction, peer, b, t in sip_blocks(self.path):
            cid = hdr(b, "Call-ID")
            if not cid:
                continue
            c = calls.setdefault(cid, {"watcher": "", "presentity": "", "events": []})
            cseq = hdr(b, "CSeq")
            if direction == "sent" and b.startswith("SUBSCRIBE sip:"):
                c["watcher"] = uri_user(hdr(b, "From"))
                c["presentity"] = c["presentity"] or uri_user(hdr(b, "To"))
                c["events"].append({"t": t, "kind": "subscribe"})
            elif direction == "received" and b.startswith("SIP/2.0 302") and "SUBSCRIBE" in cseq:
                m = re.search(r"sip:[^@>;]+@([\d.]+):(\d+)", hdr(b, "Contact"))
                c["events"].append({"t": t, "kind": "302",
                                    "node": self.cl.node_at(m.group(1)) if m else "?"})
            elif direction == "received" and b.startswith("SIP/2.0 200") and "SUBSCRIBE" in cseq:
                m = re.search(r"sip:[^@>;]+@([\d.]+):(\d+)", hdr(b, "Contact"))
                c["events"].append({"t": t, "kind": "200",
                                    "node": self.cl.node_at(m.group(1)) if m else "?"})
            elif direction == "received" and b.startswith("NOTIFY sip:"):
                state = hdr(b, "Subscription-State")
                c["events"].append({
                    "t": t, "kind": "notify", "node": self.cl.node_at(peer),
                    "state": state.split(";")[0].strip(),
                    "reason": (re.search(r"reason=(\w+)", state) or [None, ""])[1],
                    "notes": re.findall(r"<note[^>]*>([^<]*)</note>", b),
                    "basic": re.findall(r"<basic>(\w+)</basic>", b),
                })
        return calls

    @staticmethod
    def notifies(c, after=0.0):
        return [e for e in c["events"] if e["kind"] == "notify" and e["t"] >= after]

    def active_at(self, c):
        """The node whose NOTIFY last said `active` for this call, if the last NOTIFY did."""
        n = self.notifies(c)
        if n and n[-1]["state"] == "active":
            return n[-1]["node"]
        return None


# ---------------------------------------------------------------------------- admin API poller

class Poller:
    """Samples /api/cluster (servers[].current) and every node's /api/node load."""

    def __init__(self, cl, node_ids):
        self.cl, self.node_ids = cl, node_ids
        self.samples = []  # (t, {server: current}, {node: load}, state)
        self.task = None
        self.stopping = False

    async def run(self):
        while not self.stopping:
            state, nodes = await snapshot(self.cl, self.node_ids)
            current = {s["id"]: s["current"] for s in (state or {}).get("servers", [])}
            loads = {i: n["load"] for i, n in nodes.items() if n and n.get("joined")}
            self.samples.append((time.monotonic(), current, loads, state))
            await asyncio.sleep(POLL)

    def start(self):
        self.task = asyncio.ensure_future(self.run())

    async def stop(self):
        self.stopping = True
        if self.task:
            await asyncio.gather(self.task, return_exceptions=True)

    def over(self, max_load, since=0.0):
        bad, peak = [], collections.Counter()
        n = 0
        for t, current, loads, _ in self.samples:
            if t < since:
                continue
            n += 1
            for k, v in list(current.items()) + list(loads.items()):
                peak[k] = max(peak[k], v)
                if v > max_load:
                    bad.append(f"{k}={v} at {t - since:.1f}s")
        return n, dict(peak), bad


# ---------------------------------------------------------------------------- the test

class ScaleTest:
    def __init__(self, args, results):
        self.args, self.results = args, results
        self.cl = NetCluster(args.config)
        self.sipp = Sipp(args.sipp, args.work, args.client_ip, self.cl)
        users = read_users(args.users)
        self.pw = dict(users)
        names = [n for n, _ in users]
        self.fill_p, self.fill_w, self.trigger = names[0:12], names[12:24], names[24]
        self.sip_names = [self.fill_p[0], self.fill_p[11], self.fill_w[0], self.fill_w[11]]
        self.p_x, self.w_x = self.fill_p[1:11], self.fill_w[1:11]
        # ring alternating the two nodes: i±1 on the other node, i±2 on the same one
        self.ring = [u for pair in zip(self.p_x, self.w_x) for u in pair]
        n = len(self.ring)
        self.contacts = {u: {self.ring[(i + d) % n] for d in (-2, -1, 1, 2)}
                         for i, u in enumerate(self.ring)}
        # SIP users of the primary watch the last two slixmpp users of worker1, and back
        self.watch_rows = [(s, p) for s in self.sip_names
                           for p in (self.w_x[-2:] if s in self.fill_p else self.p_x[-2:])]
        self.watched = sorted({p for _, p in self.watch_rows})
        self.slix = {}
        self.pool = next(i for i, n in self.cl.nodes.items() if n["kind"] == "pool")
        self.worker = next(i for i, n in self.cl.nodes.items() if n["role"] == "worker")
        self.node_ids = [self.cl.primary, self.worker, self.pool]
        self.watch_proc = self.watch_out = None
        self.calls = None
        self.poller = Poller(self.cl, self.node_ids)

    # -------------------------------------------------------------- helpers
    def record(self, ok, name, reason):
        self.results.record(ok, name, reason)

    def xmpp_node(self, s):
        return self.cl.node_at(s.connected_to())

    async def wait_for(self, pred, limit, step=0.2):
        """Awaits pred() (a coroutine function) until truthy or `limit` s; returns its value."""
        end = time.monotonic() + limit
        while True:
            v = await pred()
            if v or time.monotonic() >= end:
                return v
            await asyncio.sleep(step)

    async def rosters(self, names):
        got = await asyncio.gather(*[self.slix[u].roster() for u in names])
        return dict(zip(names, got))

    def both_items(self, rosters):
        return {(u, j.split("@")[0]) for u, r in rosters.items() for j, s in (r or {}).items()
                if s == "both"}

    async def resources(self, nodes):
        res = await asyncio.gather(*[get_json(self.cl.admin(i), "/api/node") for i in nodes])
        return sum((r or {}).get("resources", 0) for r in res if r and r.get("joined")), \
            {i: (r or {}).get("resources") for i, r in zip(nodes, res)}

    def sip_active(self):
        calls = self.calls.read()
        return {cid: self.calls.active_at(c) for cid, c in calls.items()}

    # -------------------------------------------------------------- r: fill
    async def fill(self, batch, node, tag, port):
        t1 = time.monotonic()
        sip = [u for u in batch if u in self.sip_names]
        xs = [u for u in batch if u not in self.sip_names]
        for u in xs:
            s = NetSlix(u, self.pw[u], self.cl.domain, status=f"online {u}")
            self.slix[u] = s
            s.start()
        proc, out, _ = await self.sipp.start(self.args.register_scenario, tag,
                                             [(u,) for u in sip], port, ["-timeout", "12s"])
        deadline = time.monotonic() + LOGIN_LIMIT
        peers = await asyncio.gather(*[self.slix[u].settled(deadline) for u in xs])
        rc = await self.sipp.finish(proc, out, max(1.0, deadline - time.monotonic()))
        fails = [f"{u}: not bound ({self.slix[u].error or 'timeout'}, redirects "
                 f"{self.slix[u].redirects})" for u, p in zip(xs, peers) if p is None]
        if rc != 0:
            fails.append(f"sipp REGISTER exit {rc}: {self.sipp.errors(tag)}")

        async def loaded():
            st = await get_json(self.cl.admin(self.cl.primary), "/api/cluster")
            cur = {s["id"]: s["current"] for s in (st or {}).get("servers", [])}
            return st if cur.get(node) == self.cl.max_load else None
        st = await self.wait_for(loaded, LOAD_WAIT)
        st = st or await get_json(self.cl.admin(self.cl.primary), "/api/cluster")
        homes = directory(st)
        wrong = [f"{u}@{homes.get(u)}" for u in batch if homes.get(u) != node]
        wrong += [f"{u} bound on {self.xmpp_node(self.slix[u])}" for u in xs
                  if self.xmpp_node(self.slix[u]) != node]
        return fails, wrong, st, time.monotonic() - t1

    async def phase_fill(self):
        say(f"r: {len(self.fill_p)} users fill {self.cl.primary}, then {len(self.fill_w)} "
            f"{self.worker}")
        f1, w1, _, d1 = await self.fill(self.fill_p, self.cl.primary, "register_p", 5071)
        f2, w2, st, d2 = await self.fill(self.fill_w, self.worker, "register_w", 5073)
        cur = {s["id"]: s["current"] for s in (st or {}).get("servers", [])}
        ok = (not f1 and not w1 and not f2 and not w2
              and sorted(cur) == sorted([self.cl.primary, self.worker])
              and all(v == self.cl.max_load for v in cur.values()))
        self.record(ok, "r.fill",
                    f"{len(self.fill_p)} users on {self.cl.primary} in {d1:.1f}s, then "
                    f"{len(self.fill_w)} on {self.worker} in {d2:.1f}s (slixmpp + sipp REGISTER, "
                    f"{len(self.sip_names)} SIP); servers and loads {cur} (max_load "
                    f"{self.cl.max_load})"
                    + (f"; login failures: {(f1 + f2)[:4]}" if f1 or f2 else "")
                    + (f"; not on the expected node: {(w1 + w2)[:6]}" if w1 or w2 else ""))
        return ok

    async def phase_rosters(self):
        say(f"r: {len(self.ring)} slixmpp users subscribe to their ring neighbours")
        for u in self.ring:
            for c in sorted(self.contacts[u]):
                self.slix[u].x.send_presence(pto=self.slix[c].bare, ptype="subscribe")
        want = {(u, c) for u in self.ring for c in self.contacts[u]}
        t1 = time.monotonic()
        have = set()
        while time.monotonic() - t1 < ROSTER_WAIT:
            await asyncio.sleep(0.5)
            have = self.both_items(await self.rosters(self.ring))
            if want <= have:
                break
        cross = {(u, c) for u, c in want if (u in self.p_x) != (c in self.p_x)}
        self.record(want <= have, "r.rosters",
                    f"{len(want & have)}/{len(want)} ring roster items `both` (cross-node "
                    f"{len(cross & have)}/{len(cross)}) after {time.monotonic() - t1:.1f}s"
                    + (f"; missing e.g. {sorted(want - have)[:5]}" if not want <= have else ""))

    async def phase_watch(self):
        say(f"r: {len(self.sip_names)} SIP users watch {len(self.watch_rows)} presentities "
            "(cluster_resubscribe.xml)")
        self.watch_proc, self.watch_out, msgs = await self.sipp.start(
            self.args.resubscribe_scenario, "resubscribe", self.watch_rows, 5072,
            ["-recv_timeout", str(SIPP_LIMIT * 1000), "-timeout", f"{SIPP_LIMIT}s"])
        self.calls = Calls(msgs, self.cl)
        t1 = time.monotonic()

        async def all_active():
            act = self.sip_active()
            return act if len(act) == len(self.watch_rows) and all(act.values()) else None
        act = await self.wait_for(all_active, SUBSCRIBE_WAIT) or self.sip_active()
        homes = directory(await get_json(self.cl.admin(self.cl.primary), "/api/cluster"))
        calls = self.calls.read()
        rows = []
        ok = len(calls) == len(self.watch_rows) and self.watch_proc.returncode is None
        for cid, c in calls.items():
            w = c["watcher"]
            at = act.get(cid)
            redirected = [e["node"] for e in c["events"] if e["kind"] == "302"]
            good = at is not None and at == homes.get(w)
            ok = ok and good
            rows.append(f"{w}@{homes.get(w)}->{c['presentity']}@{homes.get(c['presentity'])}: "
                        f"302 {redirected or 'none'}, active from {at}")
        self.record(ok, "r.sip_watch",
                    f"{sum(1 for v in act.values() if v)}/{len(self.watch_rows)} SIP subscriptions "
                    f"active from the watcher's home after {time.monotonic() - t1:.1f}s: "
                    + "; ".join(rows)
                    + ("" if self.watch_proc.returncode is None
                       else f"; sipp exited {self.watch_proc.returncode}: "
                            f"{self.sipp.errors('resubscribe')}"))

    # -------------------------------------------------------------- r: the pool joins
    async def phase_rebalance(self):
        cl = self.cl
        before_rosters = await self.rosters(self.ring)
        both_before = self.both_items(before_rosters)
        sip_before = {cid for cid, at in self.sip_active().items() if at}

        async def res_settled():  # the nodes measure every report_interval_ms
            r = await self.resources([cl.primary, self.worker])
            return r if r[0] == len(both_before) + len(sip_before) else None
        res_before, res_nodes_before = (await self.wait_for(res_settled, 3.0)
                                        or await self.resources([cl.primary, self.worker]))
        homes_before = directory(await get_json(cl.admin(cl.primary), "/api/cluster"))
        starts_before = {u: len(s.starts) for u, s in self.slix.items()}
        self.poller.start()
        await asyncio.sleep(2 * POLL)
        t_trigger = time.monotonic()
        say(f"r: {self.trigger} logs in: every server is full")
        s = NetSlix(self.trigger, self.pw[self.trigger], cl.domain, status=f"online {self.trigger}")
        self.slix[self.trigger] = s
        s.start()
        peer = await s.settled(time.monotonic() + JOIN_LIMIT)
        t_bound = time.monotonic()
        pool_pids = ns_pids(self.args.pool_ns) or []
        joined_t = next((t for t, cur, _, _ in self.poller.samples if self.pool in cur), None)

        # the moves: settled when the directory stops changing and every moved user is back
        fill = self.fill_p + self.fill_w
        moved, last_change, prev = {}, time.monotonic(), None
        t_end = time.monotonic() + MOVE_LIMIT
        while time.monotonic() < t_end:
            homes = directory(await get_json(cl.admin(cl.primary), "/api/cluster"))
            if homes != prev:
                prev, last_change = homes, time.monotonic()
            moved = {u: (homes_before.get(u), homes.get(u)) for u in fill
                     if homes.get(u) != homes_before.get(u)}
            act = self.sip_active()
            calls = self.calls.read()
            back = all(self.xmpp_node(self.slix[u]) == new for u, (_, new) in moved.items()
                       if u in self.slix)
            back = back and all(act.get(cid) == moved[c["watcher"]][1]
                                for cid, c in calls.items() if c["watcher"] in moved)
            if moved and back and time.monotonic() - last_change >= STABLE:
                break
            await asyncio.sleep(0.25)
        t_settled = time.monotonic()
        homes = prev or {}
        state, nodes = await snapshot(cl, self.node_ids)

        # (b) the pool server joined and got users
        servers = [x["id"] for x in (state or {}).get("servers", [])]
        on_pool = sorted(u for u, h in homes.items() if h == self.pool)
        from_nodes = collections.Counter(old for _, (old, new) in moved.items() if new == self.pool)
        pool_live = set((nodes.get(self.pool) or {}).get("live_users", []))
        ok = (bool(pool_pids) and self.pool in servers and (nodes.get(self.pool) or {}).get("joined")
              and homes.get(self.trigger) == self.pool and cl.node_at(peer) == self.pool
              and from_nodes.get(cl.primary, 0) > 0 and from_nodes.get(self.worker, 0) > 0
              and set(on_pool) <= pool_live)
        self.record(ok, "r.pool_joined",
                    f"{self.pool} spawned (pids {pool_pids} in {self.args.pool_ns}), member after "
                    f"{(joined_t - t_trigger) if joined_t else float('nan'):.1f}s; {self.trigger} "
                    f"bound on {cl.node_at(peer)} after {t_bound - t_trigger:.1f}s; {self.pool} is "
                    f"home to {len(on_pool)} ({self.trigger} + moved from {dict(from_nodes)}), "
                    f"live there {len(set(on_pool) & pool_live)}/{len(on_pool)}; moves settled "
                    f"{t_settled - t_trigger:.1f}s after the login; homes "
                    f"{dict(collections.Counter(homes.values()))}")

        # (b) moved slixmpp clients reconnected by themselves
        xm = [u for u in moved if u in self.slix]
        times, bad = [], []
        for u in xm:
            c = self.slix[u]
            old, new = moved[u]
            soh = [(t, h) for t, cond, h in c.stream_errors if cond == "see-other-host" and t > t_trigger]
            new_start = [t for t, p in c.starts if t > t_trigger and cl.node_at(p) == new]
            live_new = u in set((nodes.get(new) or {}).get("live_users", []))
            named = bool(soh) and cl.node_at(soh[0][1].split(":")[0]) == new
            if named and new_start and c.connects == 1 and self.xmpp_node(c) == new and live_new:
                times.append(new_start[0] - soh[0][0])
            else:
                bad.append(f"{u} {old}->{new}: see-other-host {[h for _, h in soh]}, sessions at new "
                           f"home {len(new_start)}, now on {self.xmpp_node(c)}, live there {live_new}, "
                           f"connect() calls {c.connects}")
        stayed = [u for u in self.slix if u not in moved and u != self.trigger]
        disturbed = [u for u in stayed if len(self.slix[u].starts) != starts_before[u]]
        self.record(bool(xm) and not bad and not disturbed, "r.xmpp_moved",
                    f"{len(times)}/{len(xm)} moved slixmpp clients bound again at their new home "
                    f"by themselves (see-other-host -> new session: {spread(times)}); "
                    f"{len(stayed) - len(disturbed)}/{len(stayed)} unmoved kept their session"
                    + (f"; {bad[:4]}" if bad else "") + (f"; disturbed {disturbed[:5]}" if disturbed else "")
                    + ("" if xm else "; no slixmpp client was moved"))

        # (c) moved SIP watchers subscribed again
        calls = self.calls.read()
        wall_trigger = time.time() - (time.monotonic() - t_trigger)
        rs_times, rs_bad, undisturbed, sip_moved, flicker, unknown = [], [], 0, set(), 0, 0
        for cid, c in calls.items():
            w = c["watcher"]
            later = [e for e in c["events"] if e["t"] >= wall_trigger]
            if w in moved:
                sip_moved.add(w)
                old, new = moved[w]
                deact = [e for e in later if e["kind"] == "notify" and e["state"] == "terminated"]
                d = deact[0] if deact else None
                after = [e for e in later if d and e["t"] >= d["t"]]
                r302 = [e["node"] for e in after if e["kind"] == "302"]
                active = [e for e in after if e["kind"] == "notify" and e["state"] == "active"
                          and e["node"] == new]
                good = (d is not None and d["reason"] == "deactivated" and d["node"] == old
                        and (r302[:1] == [new] or (new == cl.primary and not r302)) and active)
                if good:
                    rs_times.append(active[0]["t"] - d["t"])
                    flicker += "closed" in active[0]["basic"]
                    unknown += not active[0]["basic"]
                else:
                    rs_bad.append(f"{w} {old}->{new} watching {c['presentity']}: terminated "
                                  f"{[(e['node'], e['reason']) for e in deact]}, 302 {r302}, active from "
                                  f"{[e['node'] for e in after if e['kind'] == 'notify' and e['state'] == 'active']}")
            elif not any(e["kind"] == "notify" and e["state"] == "terminated" for e in later):
                undisturbed += 1
            else:
                rs_bad.append(f"{w} (not moved) watching {c['presentity']}: terminated")
        n_moved_calls = sum(1 for c in calls.values() if c["watcher"] in moved)
        self.record(bool(sip_moved) and not rs_bad, "r.sip_resubscribed",
                    f"{len(rs_times)}/{n_moved_calls} subscriptions of {len(sip_moved)} moved SIP users "
                    f"{sorted(sip_moved)}: deactivated by the old home, 302 from the primary to the "
                    f"new home, active there ({spread(rs_times)}; the first NOTIFY there said "
                    f"`closed` before the presentity's state for {flicker}, had no body yet "
                    f"(state not known, RFC 6665 §4.2.1.2) for {unknown}); "
                    f"{undisturbed}/{len(calls) - n_moved_calls} of the others never terminated"
                    + (f"; {rs_bad[:4]}" if rs_bad else "")
                    + ("" if sip_moved else "; no SIP user was moved"))

        # (d) live subscriptions before = after
        after_rosters = await self.rosters(self.ring)
        both_after = self.both_items(after_rosters)

        async def res_equal():
            r = await self.resources(self.node_ids)
            return r if r[0] == res_before else None
        res_after, res_nodes = await self.wait_for(res_equal, 3.0) or await self.resources(self.node_ids)
        sip_after = {cid for cid, at in self.sip_active().items() if at}
        ok = both_after == both_before and sip_after == sip_before and res_after == res_before
        self.record(ok and bool(both_before), "r.live_subscriptions",
                    f"roster items `both` {len(both_before)} before, {len(both_after)} after; SIP "
                    f"subscriptions active {len(sip_before)} before, {len(sip_after)} after; nodes' "
                    f"resources {res_before} {res_nodes_before} before, {res_after} {res_nodes} after"
                    + (f"; lost {sorted(both_before - both_after)[:4]}" if both_before - both_after else ""))
        self.moved = moved
        return t_trigger

    async def presence_round(self, senders, tag, watchers_of):
        """Each sender sets a unique status; returns (delivered latencies, missing list, expected)
        for the watchers given by watchers_of(sender) -> (xmpp names, SIP call ids)."""
        nonce = uuid.uuid4().hex[:6]
        sent = {}
        for u in senders:
            status = f"{tag}-{u}-{nonce}"
            sent[u] = (self.slix[u].set_status(status), time.time(), status)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        end = time.monotonic() + PRESENCE_WAIT
        while True:
            got, missing, expected = self.deliveries(sent, watchers_of)
            if not missing or time.monotonic() >= end:
                return got, missing, expected
            await asyncio.sleep(0.2)

    def deliveries(self, sent, watchers_of):
        got, missing, expected = {}, [], 0
        calls = self.calls.read()
        for u, (t0, w0, status) in sent.items():
            xw, sw = watchers_of(u)
            for o in sorted(xw):
                expected += 1
                hit = [t for t, frm, st in self.slix[o].presences
                       if frm == self.slix[u].full and st == status and t >= t0]
                if hit:
                    got[(u, o)] = hit[0] - t0
                else:
                    missing.append(f"{u}->{o}")
            for cid in sorted(sw):
                expected += 1
                c = calls.get(cid, {"events": [], "watcher": "?"})
                hit = [e["t"] for e in Calls.notifies(c) if status in e["notes"]]
                if hit:
                    got[(u, cid)] = max(0.0, hit[0] - w0)
                else:
                    missing.append(f"{u}->sip:{c['watcher']}")
        return got, missing, expected

    async def phase_presence(self):
        say("r: presence round after the moves")
        calls = self.calls.read()
        by_presentity = collections.defaultdict(set)
        for cid, c in calls.items():
            by_presentity[c["presentity"]].add(cid)
        got, missing, expected = await self.presence_round(
            self.ring, "e", lambda u: (self.contacts[u], by_presentity.get(u, set())))
        moved = [v for (u, o), v in got.items() if u in self.moved or o in self.moved]
        self.record(not missing and expected > 0, "r.presence_after_move",
                    f"{len(got)}/{expected} presence updates received ({len(self.ring)} senders; "
                    f"XMPP contacts and SIP watchers), {spread(list(got.values()))}; involving a "
                    f"moved user {len(moved)}, {spread(moved)}"
                    + (f"; missing {missing[:6]}" if missing else ""))
        n, peak, bad = self.poller.over(self.cl.max_load)
        self.record(n > 0 and not bad and self.pool in peak, "r.max_load",
                    f"{n} samples of /api/cluster and /api/node from before {self.trigger}'s login to "
                    f"now: peak loads {peak} (max_load {self.cl.max_load})"
                    + (f"; above: {bad[:5]}" if bad else ""))

    # -------------------------------------------------------------- s: scale-in
    def choose_keep(self, homes):
        keep = set(self.sip_names) | set(self.watched)
        on_pool = [u for u in self.ring if homes.get(u) == self.pool]
        pool_x = None
        for u in on_pool:
            if any(homes.get(c) not in (None, self.pool) for c in self.contacts[u]):
                pool_x = u
                break
        if pool_x:
            keep.add(pool_x)
            keep |= {c for c in self.contacts[pool_x] if homes.get(c) != self.pool}
        for node in (self.cl.primary, self.worker):
            here = [u for u in keep if homes.get(u) == node]
            for u in self.ring:
                if len(here) >= KEEP_PER_SERVER:
                    break
                if homes.get(u) == node and u not in keep:
                    keep.add(u)
                    here.append(u)
        return keep, pool_x

    async def phase_scale_in(self):
        cl = self.cl
        homes = directory(await get_json(cl.admin(cl.primary), "/api/cluster"))
        keep, pool_x = self.choose_keep(homes)
        count = collections.Counter(homes.get(u) for u in keep)
        total = sum(count.values())
        feasible = (pool_x is not None and count[self.pool] < min(count[cl.primary], count[self.worker])
                    and 2 * cl.min_load <= total < 3 * cl.min_load)
        if not feasible:
            self.record(False, "s.scale_in", f"cannot leave a set where {self.pool} is the least loaded "
                        f"and the mean is below min_load {cl.min_load}: keep {dict(count)} "
                        f"(slixmpp user of {self.pool} with contacts elsewhere: {pool_x})")
            return
        drained_users = sorted(u for u in keep if homes.get(u) == self.pool)
        drained_x = [u for u in drained_users if u in self.slix]
        drained_sip = [u for u in drained_users if u not in self.slix]
        roster_before = await self.rosters(drained_x)
        sip_before = {cid for cid, at in self.sip_active().items() if at}
        leave = [u for u in self.slix if u not in keep]
        say(f"s: {len(leave)} users leave; {total} stay {dict(count)}; {self.pool} keeps "
            f"{drained_users}")
        for u in leave:
            self.slix[u].stop()
        t_low = time.monotonic()
        wall_low = time.time()
        self.poller.samples.clear()
        pool_sip = cl.nodes[self.pool]["sip"]  # candidates are URIs: sip:cluster@IP:PORT;...
        limit = cl.scale_in_after_s + SCALE_MARGIN
        gone_t = stopped_t = None
        drained = None
        while time.monotonic() - t_low < limit:
            st = self.poller.samples[-1][3] if self.poller.samples else None
            servers = [x["id"] for x in (st or {}).get("servers", [])]
            if st and drained is None:
                left = [i for i in (self.pool, self.worker) if i not in servers]
                if left:
                    drained, gone_t = left[0], time.monotonic()
            if drained and stopped_t is None and ns_pids(self.args.pool_ns) == []:
                stopped_t = time.monotonic()
            if drained and stopped_t:
                h = directory(st)
                back = all(h.get(u) not in (None, self.pool) for u in drained_users)
                back = back and all(self.xmpp_node(self.slix[u]) == h.get(u) for u in drained_x)
                act = self.sip_active()
                back = back and all(at is not None for at in act.values())
                if back:  # and the new homes count them (they measure every report interval)
                    _, nd = await snapshot(cl, sorted({h[u] for u in drained_users}))
                    back = all(u in (nd.get(h[u]) or {}).get("live_users", []) for u in drained_users)
                if back:
                    break
            await asyncio.sleep(0.2)
        t_done = time.monotonic()
        state, nodes = await snapshot(cl, self.node_ids)
        servers = [x["id"] for x in (state or {}).get("servers", [])]
        # the least loaded worker when the drain began: the last sample with both members
        pre = [cur for t, cur, _, _ in self.poller.samples if self.pool in cur and self.worker in cur]
        least = None
        if pre:
            last = pre[-1]
            least = min((i for i in last if i != cl.primary), key=lambda i: (last[i], i))
        first_move = min([t for u in drained_x for t, cond, _ in self.slix[u].stream_errors
                          if cond == "see-other-host" and t > t_low] or [None], key=lambda v: v or 0)
        self.record(drained == self.pool and least == self.pool and self.worker in servers
                    and cl.primary in servers,
                    "s.scale_in",
                    f"loads before the drain {pre[-1] if pre else 'not sampled'} (mean "
                    f"{sum(pre[-1].values()) / len(pre[-1]) if pre else float('nan'):.1f} < min_load "
                    f"{cl.min_load}); drained: {drained} (least loaded: {least}); first user moved "
                    f"{(first_move - t_low) if first_move else float('nan'):.1f}s and gone from the "
                    f"servers {(gone_t - t_low) if gone_t else float('nan'):.1f}s after the users left "
                    f"(scale_in_after_s {cl.scale_in_after_s}); servers now {servers}")
        pool_api = await get_json(cl.admin(self.pool), "/api/node")
        candidates = (state or {}).get("candidates", [])
        pids = ns_pids(self.args.pool_ns)
        self.record(drained == self.pool and pids == [] and pool_api is None
                    and any(re.search(rf"[@:/]{re.escape(pool_sip)}(;|$)", u) for u in candidates),
                    "s.pool_stopped",
                    f"{self.pool}: processes in {self.args.pool_ns} {pids} "
                    f"({(stopped_t - t_low) if stopped_t else float('nan'):.1f}s after the users left), "
                    f"admin API {'silent' if pool_api is None else 'still answers'}, candidates "
                    f"{candidates} (want {pool_sip} there)")
        # its users on the other servers
        h = directory(state)
        bad, times = [], []
        for u in drained_x:
            c = self.slix[u]
            soh = [(t, hh) for t, cond, hh in c.stream_errors if cond == "see-other-host" and t > t_low]
            new = h.get(u)
            starts = [t for t, p in c.starts if t > t_low and cl.node_at(p) == new]
            live = u in set((nodes.get(new) or {}).get("live_users", []))
            if soh and starts and new in (cl.primary, self.worker) and self.xmpp_node(c) == new \
                    and c.connects == 1 and live:
                times.append(starts[0] - soh[0][0])
            else:
                bad.append(f"{u}: home {new}, see-other-host {[x for _, x in soh]}, on "
                           f"{self.xmpp_node(c)}, live there {live}, connect() calls {c.connects}")
        calls = self.calls.read()
        sip_rows = []
        for cid, c in calls.items():
            if c["watcher"] not in drained_sip:
                continue
            new = h.get(c["watcher"])
            later = [e for e in Calls.notifies(c) if e["t"] >= wall_low]
            deact = [e for e in later if e["state"] == "terminated" and e["reason"] == "deactivated"]
            active = [e for e in later if e["state"] == "active" and e["node"] == new]
            ok = bool(deact) and bool(active) and new in (cl.primary, self.worker) \
                and self.calls.active_at(c) == new
            if ok:
                times.append(active[0]["t"] - deact[0]["t"])
            else:
                bad.append(f"sip {c['watcher']}->{c['presentity']}: home {new}, deactivated "
                           f"{len(deact)}, active from {[e['node'] for e in later if e['state'] == 'active']}")
            sip_rows.append(c["watcher"])
        self.record(bool(drained_users) and not bad, "s.users_rehomed",
                    f"{len(drained_users)} users of {self.pool} ({len(drained_x)} slixmpp, "
                    f"{len(sip_rows)} SIP subscriptions of {drained_sip}) now homed on "
                    f"{sorted({h.get(u) for u in drained_users})}, bound / subscribed there again by "
                    f"themselves ({spread(times)})" + (f"; {bad[:4]}" if bad else ""))
        # presence intact
        online = [u for u in self.ring if u in keep]
        by_presentity = collections.defaultdict(set)
        for cid, c in calls.items():
            by_presentity[c["presentity"]].add(cid)
        got, missing, expected = await self.presence_round(
            online, "s", lambda u: ({c for c in self.contacts[u] if c in keep},
                                    by_presentity.get(u, set())))
        dr = {k: v for k, v in got.items() if k[0] in drained_x}
        dr_exp = sum(len({c for c in self.contacts[u] if c in keep}) for u in drained_x)
        sip_d = {k: v for k, v in got.items() if isinstance(k[1], str) and k[1] in calls
                 and calls[k[1]]["watcher"] in drained_sip}
        sip_d_exp = sum(1 for c in calls.values() if c["watcher"] in drained_sip)
        self.record(not missing and expected > 0 and dr_exp > 0, "s.presence_intact",
                    f"{len(got)}/{expected} presence updates of the {len(online)} remaining slixmpp "
                    f"users received by their online contacts and SIP watchers ({spread(list(got.values()))}); "
                    f"of the drained slixmpp users {drained_x}: {len(dr)}/{dr_exp}; received by the "
                    f"drained SIP users: {len(sip_d)}/{sip_d_exp}"
                    + (f"; missing {missing[:6]}" if missing else ""))
        roster_after = await self.rosters(drained_x)
        sip_after = {cid for cid, at in self.sip_active().items() if at}
        diff = [u for u in drained_x if roster_after.get(u) is None or roster_after[u] != roster_before[u]]
        self.record(bool(drained_x) and not diff and sip_after == sip_before, "s.rosters_unchanged",
                    f"{len(drained_x) - len(diff)}/{len(drained_x)} rosters of drained users equal "
                    f"before and after (sizes {[len(roster_before[u] or {}) for u in drained_x]}); SIP "
                    f"subscriptions active {len(sip_before)} before, {len(sip_after)} after"
                    + (f"; differ: {[(u, roster_before[u], roster_after.get(u)) for u in diff][:2]}"
                       if diff else ""))
        self.keep = keep
        say(f"s: done in {t_done - t_low:.1f}s")

    # -------------------------------------------------------------- z: the watchers end
    async def phase_end(self):
        if self.watch_proc is None:
            return
        for p in self.watched:
            if p in self.slix:
                self.slix[p].set_status(f"rs-end {p}")
        rc = await self.sipp.finish(self.watch_proc, self.watch_out, END_WAIT)
        self.watch_proc = None
        stats = ""
        try:
            text = open(self.sipp.path("resubscribe.out"), errors="replace").read()
            m = re.findall(r"Successful call\s*\|[^|\n]*\|\s*(\d+)", text)
            f = re.findall(r"Failed call\s*\|[^|\n]*\|\s*(\d+)", text)
            stats = f"; successful calls {m[-1] if m else '?'}, failed {f[-1] if f else '?'}"
        except OSError:
            pass
        calls = self.calls.read()
        subs = collections.Counter(c["watcher"] for c in calls.values()
                                   for e in c["events"] if e["kind"] == "subscribe")
        self.record(rc == 0, "z.sipp_watchers",
                    f"sipp exit {rc} after the 'rs-end' statuses{stats}; SUBSCRIBEs sent per watcher "
                    f"{dict(subs)}" + (f"; {self.sipp.errors('resubscribe')}" if rc else ""))

    async def stop(self):
        await self.poller.stop()
        if self.watch_proc is not None and self.watch_proc.returncode is None:
            self.watch_proc.kill()
            await self.sipp.finish(self.watch_proc, self.watch_out, 5)
        for s in self.slix.values():
            s.stop()
        await asyncio.sleep(0.2)


async def main():
    args = netns_args("register-scenario", "resubscribe-scenario", "pool-ns")
    results = Results(args.results)
    t = ScaleTest(args, results)
    try:
        if await t.phase_fill():
            await t.phase_rosters()
            await t.phase_watch()
            await t.phase_rebalance()
            await t.phase_presence()
            await t.phase_scale_in()
            await t.phase_end()
    finally:
        say("stopping the clients")
        await t.stop()
    return results.summary("cluster_scale_netns")


if __name__ == "__main__":
    run_netns_test(main)
