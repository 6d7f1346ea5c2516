#!/usr/bin/env python3
"""Multi-host test of the cluster DATA PLANE (DESIGN.md §3, §4, §8), run by
scripts/netns-data.sh inside the clients' namespace against primary, worker1 and worker2
(config --config: presence_policy "domain", sip_auth false, redirect "see-other-host").

Users (--users CSV name,password, 102 lines): the first 12 are slixmpp clients, the next 6 SIP
users (sipp), the rest (84) raw asyncio XMPP clients.

  a. placement spread: the 12 slixmpp users log in through the primary (by the domain name;
     STARTTLS; following <see-other-host/>), in rounds of 3; the primary's /api/cluster
     directory must home them on all three nodes, and each client must be bound on its home.
  b. cross-node presence: every slixmpp user subscribes to every other (the server approves
     under the "domain" policy; the roster must show `both` for all 11 contacts); then each
     user in turn (0.3 s apart) sends presence with a unique status; every other user must
     receive it from the sender's full JID within PRESENCE_WAIT s. Counts (cross-node apart)
     and p50/max delivery latency.
  c. cross-node messages: 2 pairs per pair of nodes exchange chat messages both ways; each must
     arrive within PRESENCE_WAIT s with the sender's full JID as `from`.
  d. SIP watchers: the 6 SIP users REGISTER at the primary (tests/sipp/cluster_register.xml:
     302 to the home, 200 there); 3 of them (preferably homed off the primary, so that their
     SUBSCRIBE is redirected) watch a slixmpp user homed on another node with
     tests/sipp/cluster_watch.xml: SUBSCRIBE at the primary, 302 naming the watcher's
     directory home, 200 there, a NOTIFY with <basic>open</basic> and the note
     "cwatch-one <user>"; then the XMPP user changes status to "cwatch-two <user>" and a
     later NOTIFY must carry it. Checked on sipp's message log.
  e. kill -9: the raw clients log in through the primary (STARTTLS, SASL PLAIN, following
     <see-other-host/>; e.raw_login), all subscribe at once to their 4 ring neighbours (i±1,
     i±2; every item must become `both` within ROSTER_WAIT s: e.ring_rosters) and re-send
     presence every ~TICK s with a counter in the status. On any drop a client logs in again
     at the PRIMARY (a see-other-host names the next hop). worker2's process (found in
     --kill-ns) gets SIGKILL; within KILL_LIMIT s each of worker2's raw users must be bound
     again on another node which the primary's directory names as its home
     (e.rehomed_after_kill); at least one contact subscribed to it (roster `to`/`both` before
     the kill) on a node other than its new home must see a presence with a counter newer than
     the kill (e.contacts_see_return; when all of them ended on its new home, one there); its
     roster (iq get) must equal the one read before the kill (e.roster_kept). Users of the
     other nodes must keep their sessions (e.others_undisturbed).
Prints PASS/FAIL lines with measured figures (also appended to --results as
PASS|FAIL<TAB>name<TAB>reason); exit status 1 on any failure. Every wait is bounded.
"""

import asyncio
import base64
import collections
import logging
import os
import re
import signal
import ssl
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET

from harness import (NetCluster, NetSlix, Results, Sipp, hdr, homes_now, ms, netns_args, pct,
                     read_users, run_netns_test, say, sip_blocks, uri_user)

N_SLIX = 12
N_SIP = 6
N_WATCH = 3
LOGIN_LIMIT = 20.0     # s: one round of slixmpp logins / all raw logins
SETTLE = 0.6           # s: a slixmpp session counts as final after this long without moving
ROSTER_WAIT = 10.0     # s: subscriptions approved (b: 132 of them; e: ring neighbours)
PRESENCE_WAIT = 3.0    # s: one presence / message delivery
STAGGER = 0.3          # s: between the senders of b.
SIPP_LIMIT = 45        # s: `wait_for` around one sipp run
WATCH_ONE_WAIT = 10.0  # s: NOTIFY with "cwatch-one" seen in sipp's log before the status change
TICK = 1.0             # s: raw clients re-send presence this often
RAW_CONCURRENCY = 16   # raw logins in flight at once
KILL_LIMIT = 10.0      # s: worker2's users back online after the SIGKILL
KILL_OBSERVE = 14.0    # s: observed after the kill (figures beyond KILL_LIMIT are reported)
RESOURCE = "data"

XMPP_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
STREAMS = "http://etherx.jabber.org/streams"
STANZAS = "urn:ietf:params:xml:ns:xmpp-streams"
CLIENT = "jabber:client"
ROSTER = "jabber:iq:roster"


# ---------------------------------------------------------------------------- raw clients

class StreamEnded(Exception):
    pass


class Redirected(Exception):
    def __init__(self, target):
        super().__init__(target)
        self.target = target


class XmlStream:
    """Stanzas (depth-1 elements) of one XML stream, from an asyncio reader."""

    def __init__(self, reader):
        self.reader = reader
        self.reset()

    def reset(self):
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.queue = collections.deque()
        self.closed = False  # </stream:stream> seen: the queued stanzas are the last ones

    async def next(self, deadline):
        while not self.queue:
            if self.closed:
                raise StreamEnded("stream closed by the server")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no stanza in time")
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except asyncio.TimeoutError:
                raise TimeoutError("no stanza in time") from None
            if not data:
                raise StreamEnded("connection closed")
            self.parser.feed(data)
            for ev, el in self.parser.read_events():
                if ev == "start":
                    self.depth += 1
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        self.queue.append(el)
                    elif self.depth == 0:
                        self.closed = True
            if self.closed and not self.queue:
                raise StreamEnded("stream closed by the server")
        el = self.queue.popleft()
        if el.tag == f"{{{STREAMS}}}error":
            other = el.find(f"{{{STANZAS}}}see-other-host")
            if other is not None and (other.text or "").strip():
                raise Redirected(other.text.strip())
            cond = [c.tag.split("}")[1] for c in el]
            raise StreamEnded(f"stream error {cond}")
        return el


def header(domain):
    return (f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>").encode()


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;")


class RawUser:
    """An asyncio XMPP client that stays online: logs in at the primary (following
    see-other-host), and after any drop logs in at the primary again."""

    def __init__(self, name, password, cl, log):
        self.name, self.password, self.cl, self.log = name, password, cl, log
        self.bare = f"{name}@{cl.domain}"
        self.writer = None
        self.node = None            # node id it is bound on (None while offline)
        self.bound_at = []          # (t, node id)
        self.drops = []             # (t, reason)
        self.errors = collections.deque(maxlen=5)
        self.counter = 0
        self.sent = []              # (t, counter) of the last few presences
        self.seen = collections.defaultdict(list)  # contact bare -> [(t, counter, full, my node)]
        self.roster = None          # {jid: subscription} from the last iq get
        self.roster_wait = {}
        self.stopping = False
        self.task = None
        self.iq_n = 0
        self.tick_task = None

    # -- one connection
    async def session(self, addr):
        host, port = addr.rsplit(":", 1)
        deadline = time.monotonic() + 10
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
        self.writer = writer
        st = XmlStream(reader)
        try:
            writer.write(header(self.cl.domain))
            feats = await st.next(deadline)
            if feats.find(f"{{{XMPP_TLS}}}starttls") is not None:
                writer.write(f"<starttls xmlns='{XMPP_TLS}'/>".encode())
                r = await st.next(deadline)
                if not r.tag.endswith("proceed"):
                    raise StreamEnded(f"STARTTLS refused: {r.tag}")
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                await asyncio.wait_for(writer.start_tls(ctx), 5)
                st.reset()
                writer.write(header(self.cl.domain))
                feats = await st.next(deadline)
            mechs = [m.text for m in feats.iter(f"{{{SASL}}}mechanism")]
            if "PLAIN" not in mechs:
                raise StreamEnded(f"no SASL PLAIN offered: {mechs}")
            token = base64.b64encode(f"\0{self.name}\0{self.password}".encode()).decode()
            writer.write(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>".encode())
            r = await st.next(deadline)
            if not r.tag.endswith("success"):
                raise StreamEnded(f"SASL: {r.tag}")
            st.reset()
            writer.write(header(self.cl.domain))
            await st.next(deadline)  # features (or the see-other-host stream error)
            writer.write(f"<iq type='set' id='bind'><bind xmlns='{BIND}'><resource>raw</resource>"
                         f"</bind></iq>".encode())
            while True:
                r = await st.next(deadline)
                if r.tag == f"{{{CLIENT}}}iq" and r.get("id") == "bind":
                    if r.get("type") != "result":
                        raise StreamEnded("bind failed")
                    break
            node = self.cl.by_xmpp.get(addr, addr)
            self.node = node
            self.bound_at.append((time.monotonic(), node))
            self.log.info("%s bound on %s", self.name, node)
            self.send_roster_get()
            self.send_presence()
            while True:
                el = await st.next(time.monotonic() + 3600)
                self.handle(el)
        finally:
            self.node = None
            self.writer = None
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    def write(self, text):
        w = self.writer
        if w is not None and self.node is not None:
            try:
                w.write(text.encode())
            except Exception:  # noqa: BLE001 - the reader notices
                pass

    def send_presence(self):
        self.sent.append((time.monotonic(), self.counter))
        del self.sent[:-20]
        self.write(f"<presence><status>tick {self.counter}</status></presence>")

    def send_roster_get(self):
        self.iq_n += 1
        iq_id = f"r{self.iq_n}"
        fut = asyncio.get_running_loop().create_future()
        self.roster_wait[iq_id] = fut
        self.write(f"<iq type='get' id='{iq_id}'><query xmlns='{ROSTER}'/></iq>")
        return fut

    async def roster_get(self, timeout=5.0):
        if self.node is None:
            return None
        try:
            return await asyncio.wait_for(self.send_roster_get(), timeout)
        except asyncio.TimeoutError:
            return None

    def handle(self, el):
        tag = el.tag.split("}")[-1]
        if tag == "presence":
            typ = el.get("type", "available")
            frm = el.get("from", "")
            if typ == "available":
                status = el.findtext(f"{{{CLIENT}}}status") or ""
                m = re.match(r"tick (\d+)$", status)
                if m:
                    self.seen[frm.split("/")[0]].append(
                        (time.monotonic(), int(m.group(1)), frm, self.node))
            elif typ == "subscribe":  # approve (the server should already have)
                self.write(f"<presence type='subscribed' to='{esc(frm.split('/')[0])}'/>")
        elif tag == "iq":
            typ, iq_id = el.get("type"), el.get("id", "")
            q = el.find(f"{{{ROSTER}}}query")
            if typ == "result" and iq_id in self.roster_wait:
                items = {}
                if q is not None:
                    for it in q.findall(f"{{{ROSTER}}}item"):
                        items[it.get("jid")] = it.get("subscription", "none")
                self.roster = items
                fut = self.roster_wait.pop(iq_id)
                if not fut.done():
                    fut.set_result(items)
            elif typ in ("get", "set"):
                frm = el.get("from")
                to = f" to='{esc(frm)}'" if frm else ""
                if q is not None or el.find("{urn:xmpp:ping}ping") is not None:
                    self.write(f"<iq type='result' id='{esc(iq_id)}'{to}/>")
                else:
                    self.write(f"<iq type='error' id='{esc(iq_id)}'{to}><error type='cancel'>"
                               "<feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                               "</error></iq>")

    # -- the life of the client
    async def run(self):
        primary = self.cl.nodes[self.cl.primary]["xmpp"]
        addr, hops = primary, 0
        while not self.stopping:
            try:
                await self.session(addr)
                reason = "ended"
            except Redirected as r:
                hops += 1
                self.log.info("%s redirected %s -> %s", self.name, addr, r.target)
                addr = r.target if hops <= 4 else primary
                if hops > 4:
                    hops = 0
                    await asyncio.sleep(0.3)
                continue
            except (OSError, StreamEnded, TimeoutError, ssl.SSLError, ET.ParseError,
                    asyncio.TimeoutError) as e:
                reason = f"{type(e).__name__}: {e}"
            if self.stopping:
                break
            self.drops.append((time.monotonic(), f"{addr}: {reason}"))
            self.errors.append(f"{addr}: {reason}"[:200])
            self.log.info("%s dropped at %s: %s", self.name, addr, reason)
            addr, hops = primary, 0
            await asyncio.sleep(0.3)

    async def tick(self):
        while not self.stopping:
            await asyncio.sleep(TICK)
            if self.node is not None:
                self.counter += 1
                self.send_presence()

    def start(self):
        self.task = asyncio.ensure_future(self.run())

    async def stop(self):
        self.stopping = True
        self.write("<presence type='unavailable'/></stream:stream>")
        tasks = [t for t in (self.task, self.tick_task) if t]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------------------- phases

async def phase_a(cl, slix_users, results):
    say(f"a: {len(slix_users)} slixmpp users log in at {cl.primary} (rounds of 3)")
    slix = {}
    fails = []
    for r in range(0, len(slix_users), 3):
        batch = [NetSlix(n, p, cl.domain, resource=RESOURCE, status=f"online {n}")
                 for n, p in slix_users[r:r + 3]]
        for s in batch:
            slix[s.name] = s
            s.start()  # by the JID's domain: see-other-host then names the home
        deadline = time.monotonic() + LOGIN_LIMIT
        peers = await asyncio.gather(*[s.settled(deadline, SETTLE) for s in batch])
        for s, p in zip(batch, peers):
            if p is None:
                fails.append(f"{s.name}: not bound ({s.error or 'timeout'}, redirects {s.redirects})")
        await asyncio.sleep(0.6)  # a load report, so the next round sees this one's load
    homes = await homes_now(cl)
    where = {n: cl.by_xmpp.get(s.peer(), f"?{s.peer()}") for n, s in slix.items()}
    spread = collections.Counter(homes.get(n) for n in slix)
    mismatch = [f"{n} on {where[n]} but directory says {homes.get(n)}" for n in slix
                if homes.get(n) != where[n]]
    redirected = sum(1 for s in slix.values() if s.redirects)
    ok = not fails and not mismatch and all(spread.get(i, 0) > 0 for i in cl.nodes)
    results.record(ok, "a.placement_spread",
                   f"homes {dict(spread)} of {len(slix)} users ({redirected} followed see-other-host)"
                   + (f"; login failures: {fails[:4]}" if fails else "")
                   + (f"; client/directory mismatch: {mismatch[:4]}" if mismatch else ""))
    return slix, homes


async def phase_b(cl, slix, homes, results):
    users = list(slix.values())
    say(f"b: {len(users)} users subscribe to each other, then presence round")
    for s in users:
        for o in users:
            if o is not s:
                s.x.send_presence(pto=o.bare, ptype="subscribe")
    want = {(s.name, o.name) for s in users for o in users if o is not s}
    t1 = time.monotonic()
    deadline = t1 + ROSTER_WAIT
    while True:
        await asyncio.sleep(0.5)
        # the roster as the server has it now (iq get), not only the pushes seen so far
        await asyncio.gather(*[asyncio.wait_for(s.x.get_roster(), 3) for s in users],
                             return_exceptions=True)
        have = {(s.name, j.split("@")[0]) for s in users for j in s.roster_both()}
        if want <= have or time.monotonic() > deadline:
            break
    states = collections.Counter(
        s.x.client_roster[j]["subscription"] for s in users for j in s.x.client_roster
        if str(j) != s.bare)
    cross = {p for p in want if homes.get(p[0]) != homes.get(p[1])}
    results.record(want <= have, "b.roster_both",
                   f"{len(want & have)}/{len(want)} roster items `both` "
                   f"(cross-node {len(cross & have)}/{len(cross)}, same-node "
                   f"{len((want - cross) & have)}/{len(want - cross)}) after "
                   f"{time.monotonic() - t1:.1f}s; subscription states {dict(states)}")
    await asyncio.sleep(0.5)
    nonce = uuid.uuid4().hex[:6]
    sent = {}
    for s in users:
        status = f"b-{s.name}-{nonce}"
        sent[s.name] = (time.monotonic(), status)
        s.x.send_presence(pstatus=status)
        await asyncio.sleep(STAGGER)
    await asyncio.sleep(PRESENCE_WAIT)
    lat = {"cross": [], "same": []}
    missing = {"cross": [], "same": []}
    for s in users:
        t0, status = sent[s.name]
        for o in users:
            if o is s:
                continue
            kind = "cross" if homes.get(s.name) != homes.get(o.name) else "same"
            got = [t for t, frm, st in o.presences if frm == s.full and st == status and t - t0 <= PRESENCE_WAIT]
            if got:
                lat[kind].append(got[0] - t0)
            else:
                missing[kind].append(f"{s.name}->{o.name}")
    allv = lat["cross"] + lat["same"]
    n = len(users) * (len(users) - 1)
    ok = not missing["cross"] and not missing["same"]
    results.record(ok, "b.presence_cross_node",
                   f"{len(allv)}/{n} presences delivered within {PRESENCE_WAIT:.0f}s from the full JID "
                   f"(cross-node {len(lat['cross'])}/{len(lat['cross']) + len(missing['cross'])}, same-node "
                   f"{len(lat['same'])}/{len(lat['same']) + len(missing['same'])}); latency p50 "
                   f"{ms(pct(allv, 0.5))} max {ms(max(allv) if allv else None)}; cross-node p50 "
                   f"{ms(pct(lat['cross'], 0.5))}"
                   + (f"; missing e.g. {(missing['cross'] + missing['same'])[:5]}" if not ok else ""))


async def phase_c(cl, slix, homes, results):
    say("c: chat messages between users on different nodes")
    by_node = collections.defaultdict(list)
    for n in sorted(slix):
        by_node[homes.get(n)].append(slix[n])
    nodes = sorted(k for k in by_node if k)
    pairs = []
    for i in range(len(nodes)):
        for j in range(i + 1, len(nodes)):
            a, b = by_node[nodes[i]], by_node[nodes[j]]
            for k in range(min(2, len(a), len(b))):
                pairs.append((a[k], b[-1 - k]))
    nonce = uuid.uuid4().hex[:6]
    sent = []
    for a, b in pairs:
        for x, y in ((a, b), (b, a)):
            body = f"c-{x.name}-{y.name}-{nonce}"
            sent.append((x, y, body, time.monotonic()))
            x.x.send_message(mto=y.full, mbody=body, mtype="chat")
    await asyncio.sleep(PRESENCE_WAIT)
    lat, bad = [], []
    for x, y, body, t0 in sent:
        got = [(t, frm) for t, frm, b in y.messages if b == body]
        if not got:
            bad.append(f"{x.name}->{y.name} lost")
        elif got[0][1] != x.full:
            bad.append(f"{x.name}->{y.name} from {got[0][1]}")
        elif got[0][0] - t0 > PRESENCE_WAIT:
            bad.append(f"{x.name}->{y.name} late")
        else:
            lat.append(got[0][0] - t0)
    ok = bool(sent) and not bad
    results.record(ok, "c.messages_cross_node",
                   f"{len(lat)}/{len(sent)} chat messages across nodes ({len(pairs)} pairs, both ways) "
                   f"arrived with the sender's full JID; latency p50 {ms(pct(lat, 0.5))} max "
                   f"{ms(max(lat) if lat else None)}" + (f"; {bad[:5]}" if bad else ""))


async def phase_d(cl, args, slix, homes, sip_users, results):
    say(f"d: {len(sip_users)} SIP users REGISTER; {N_WATCH} watch XMPP users on other nodes")
    names = [n for n, _ in sip_users]
    sipp = Sipp(args.sipp, args.work, args.client_ip, cl)
    proc, out, msgs = await sipp.start(args.register_scenario, "register",
                                       [(n,) for n in names], 5071, ["-timeout", "20s"])
    rc = await Sipp.finish(proc, out, 25)
    sip_homes = {}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        h = await homes_now(cl)
        sip_homes = {n: h.get(n) for n in names}
        if all(sip_homes.values()):
            break
        await asyncio.sleep(0.3)
    moved = {}
    for d, peer, b, _ in sip_blocks(msgs):
        if d == "received" and b.find("SIP/2.0 302") >= 0:
            c = re.search(r"sip:[^@>;]+@([\d.]+):(\d+)", hdr(b, "Contact"))
            moved[uri_user(hdr(b, "From"))] = cl.by_ip.get(c.group(1)) if c else None
    bad = [f"{n}: 302 named {moved.get(n)}, directory {sip_homes.get(n)}" for n in names
           if sip_homes.get(n) != cl.primary and moved.get(n) != sip_homes.get(n)]
    results.record(rc == 0 and all(sip_homes.values()) and not bad, "d.sip_register_302",
                   f"sipp exit {rc}; homes {dict(collections.Counter(sip_homes.values()))}; "
                   f"{len(moved)} REGISTERs followed a 302 to the directory home"
                   + (f"; {bad[:3]}" if bad else "")
                   + (f"; sipp: {sipp.errors('register')}"
                      if rc else ""))
    # watchers: off-primary first (their SUBSCRIBE at the primary is redirected)
    order = sorted(names, key=lambda n: (sip_homes.get(n) in (None, cl.primary), n))
    watchers = order[:N_WATCH]
    used = set()
    rows = []
    for w in watchers:
        cand = [n for n in sorted(slix) if homes.get(n) not in (None, sip_homes.get(w)) and n not in used]
        if not cand:
            continue
        p = cand[0]
        used.add(p)
        rows.append((w, p))
    for w, p in rows:
        slix[p].x.send_presence(pstatus=f"cwatch-one {p}")
    await asyncio.sleep(0.5)
    proc, out, msgs = await sipp.start(args.watch_scenario, "watch", rows, 5072,
                                       ["-recv_timeout", "8000", "-timeout", "40s"])
    # change the status once the first NOTIFY with cwatch-one is in the log (or at the deadline)
    changed = set()
    deadline = time.monotonic() + WATCH_ONE_WAIT
    while len(changed) < len(rows) and proc.returncode is None:
        seen = {uri_user(hdr(b, "To")) for d, _, b, _ in sip_blocks(msgs)
                if d == "received" and "NOTIFY sip:" in b
                and "cwatch-one " in b}
        for w, p in rows:
            if p not in changed and (w in seen or time.monotonic() > deadline):
                slix[p].x.send_presence(pstatus=f"cwatch-two {p}")
                changed.add(p)
        await asyncio.sleep(0.2)
    rc = await Sipp.finish(proc, out, SIPP_LIMIT)
    blocks = [(d, peer, b) for d, peer, b, _ in sip_blocks(msgs)]
    report_302, report_watch = [], []
    ok302 = ok_watch = bool(rows) and len(rows) == N_WATCH
    for w, p in rows:
        mine = [(d, peer, b) for d, peer, b in blocks
                if re.search(r"^Call-ID:", b, re.M) and (uri_user(hdr(b, "From")) == w or uri_user(hdr(b, "To")) == w)]
        r302 = [b for d, _, b in mine if d == "received" and "SIP/2.0 302" in b]
        target = None
        if r302:
            c = re.search(r"sip:[^@>;]+@([\d.]+):(\d+)", hdr(r302[0], "Contact"))
            target = cl.by_ip.get(c.group(1)) if c else None
        ok200 = any(d == "received" and "SIP/2.0 200" in b and "SUBSCRIBE" in hdr(b, "CSeq") for d, _, b in mine)
        home = sip_homes.get(w)
        if home == cl.primary:
            this302 = not r302 and ok200
            report_302.append(f"{w}@{home}: no 302 (homed on the primary), 200 {ok200}")
        else:
            this302 = target == home and ok200
            report_302.append(f"{w}@{home}: 302 -> {target}, 200 {ok200}")
        ok302 = ok302 and this302
        notifies = [(peer, b) for d, peer, b in mine if d == "received" and "NOTIFY sip:" in b]
        one = [b for _, b in notifies if "<basic>open</basic>" in b
               and re.search(rf"<note[^>]*>cwatch-one {p}</note>", b)]
        two = [b for _, b in notifies if re.search(rf"<note[^>]*>cwatch-two {p}</note>", b)]
        peers = sorted({cl.by_ip.get(peer.rsplit(':', 1)[0], peer) for peer, _ in notifies})
        ok_watch = ok_watch and bool(one) and bool(two)
        first = notifies[0][1] if notifies else ""
        basic = re.findall(r"<basic>(\w+)</basic>", first)
        notes = re.findall(r"<note[^>]*>([^<]*)</note>", first)
        report_watch.append(f"{w}@{home} watching {p}@{homes.get(p)}: {len(notifies)} NOTIFYs from "
                            f"{peers}, open+cwatch-one {'yes' if one else 'NO'}, cwatch-two "
                            f"{'yes' if two else 'NO'} (first NOTIFY basic {basic} notes {notes[:2]})")
    errs = sipp.errors("watch") if rc else ""
    results.record(ok302, "d.sip_subscribe_302",
                   f"{len(rows)} watchers: " + "; ".join(report_302))
    results.record(ok_watch and rc == 0, "d.sip_watch_notify",
                   f"sipp exit {rc}; " + "; ".join(report_watch) + (f"; sipp: {errs}" if errs else ""))


async def phase_e(cl, args, raw_users, results, log):
    say(f"e: {len(raw_users)} raw clients log in at {cl.primary}")
    raws = [RawUser(n, p, cl, log) for n, p in raw_users]
    sem = asyncio.Semaphore(RAW_CONCURRENCY)

    async def start_one(r):
        async with sem:
            r.start()
            end = time.monotonic() + LOGIN_LIMIT
            while r.node is None and time.monotonic() < end:
                await asyncio.sleep(0.05)

    t1 = time.monotonic()
    await asyncio.gather(*[start_one(r) for r in raws])
    unbound = [r.name for r in raws if r.node is None]
    homes = await homes_now(cl)
    spread = collections.Counter(r.node for r in raws)
    mism = [r.name for r in raws if r.node is not None and homes.get(r.name) != r.node]
    results.record(not unbound and not mism, "e.raw_login",
                   f"{len(raws) - len(unbound)}/{len(raws)} raw clients bound in {time.monotonic() - t1:.1f}s; "
                   f"nodes {dict(spread)}" + (f"; unbound {unbound[:5]} (last error of {unbound[0]}: "
                      f"{list(next(r for r in raws if r.name == unbound[0]).errors)[-1:]})" if unbound else "")
                   + (f"; not on directory home: {mism[:5]}" if mism else ""))
    # ring rosters: i subscribes to i±1, i±2
    n = len(raws)
    contacts = {r.name: {raws[(i + d) % n].bare for d in (-2, -1, 1, 2)} for i, r in enumerate(raws)}
    for r in raws:
        for c in sorted(contacts[r.name]):
            r.write(f"<presence type='subscribe' to='{c}'/>")
    deadline = time.monotonic() + ROSTER_WAIT
    while time.monotonic() < deadline:
        await asyncio.gather(*[r.roster_get(3) for r in raws])
        if all({j for j, s in (r.roster or {}).items() if s == "both"} >= contacts[r.name] for r in raws):
            break
        await asyncio.sleep(0.5)
    both = sum(len({j for j, s in (r.roster or {}).items() if s == "both"} & contacts[r.name]) for r in raws)
    node_at = {r.bare: r.node for r in raws}
    bad = [f"{r.name}@{r.node}: {c.split('@')[0]}@{node_at.get(c)} {(r.roster or {}).get(c, 'absent')}"
           for r in raws for c in sorted(contacts[r.name]) if (r.roster or {}).get(c) != "both"]
    states = collections.Counter(s for r in raws for c, s in (r.roster or {}).items() if c in contacts[r.name])
    results.record(both == 4 * n, "e.ring_rosters",
                   f"{both}/{4 * n} ring roster items `both` after {time.monotonic() - deadline + ROSTER_WAIT:.1f}s "
                   f"(each raw user subscribed to i±1, i±2 at once); states {dict(states)}"
                   + (f"; not both: {bad[:6]}" if bad else ""))
    for r in raws:
        r.tick_task = asyncio.ensure_future(r.tick())
    await asyncio.sleep(3 * TICK)
    homes = await homes_now(cl)
    victims = [r for r in raws if r.node == "worker2"]
    others = [r for r in raws if r.node not in (None, "worker2")]
    rost = await asyncio.gather(*[r.roster_get(3) for r in raws])
    subs_before = {r.bare: (ro or {}) for r, ro in zip(raws, rost)}
    before = {r.name: ro for r, ro in zip(raws, rost) if r in victims}
    # who receives a victim's presence: contacts whose roster item for it is `to` or `both`
    watchers = {r.name: {c for c in contacts[r.name] if subs_before.get(c, {}).get(r.bare) in ("to", "both")}
                for r in victims}
    drops_before = {r.name: len(r.drops) for r in others}
    # find and kill worker2
    pids = []
    try:
        out = subprocess.run(["ip", "netns", "pids", args.kill_ns], capture_output=True, text=True,
                             timeout=5).stdout.split()
        for p in out:
            try:
                comm = open(f"/proc/{p}/comm").read().strip()
            except OSError:
                continue
            if comm.startswith("rendezvous"):
                pids.append(int(p))
    except (OSError, subprocess.SubprocessError) as e:
        log.info("ip netns pids failed: %s", e)
    if not pids:
        results.record(False, "e.kill_worker2", f"no rendezvous process in namespace {args.kill_ns}")
        return raws
    counter_at_kill = {r.name: r.counter for r in victims}
    t_kill = time.monotonic()
    for p in pids:
        os.kill(p, signal.SIGKILL)
    say(f"e: SIGKILL worker2 (pid {pids}) holding {len(victims)} raw users "
        f"({sum(1 for u, h in homes.items() if h == 'worker2')} in the directory)")
    # observe
    back, seen_by, dir_ok = {}, {}, {}
    seen_local = {}  # seen again, but only by contacts on the victim's new home
    while time.monotonic() - t_kill < KILL_OBSERVE:
        h = await homes_now(cl)
        now = time.monotonic()
        for r in victims:
            if r.name not in back:
                b = [(t, nd) for t, nd in r.bound_at if t > t_kill and nd != "worker2"]
                if b and r.node == b[-1][1]:
                    back[r.name] = (b[0][0] - t_kill, b[-1][1])
            if r.name in back and r.name not in dir_ok and h and h.get(r.name) == r.node:
                dir_ok[r.name] = now - t_kill
            if r.name not in seen_by and r.name in back:
                for c in raws:
                    if c.bare not in contacts[r.name] or c is r:
                        continue
                    for t, cnt, frm, cnode in c.seen.get(r.bare, []):
                        if t > t_kill and cnt > counter_at_kill[r.name] and cnode is not None:
                            if cnode != r.node:
                                seen_by[r.name] = (t - t_kill, c.name, cnode)
                                break
                            seen_local.setdefault(r.name, (t - t_kill, c.name, cnode))
                    if r.name in seen_by:
                        break
        if len(back) == len(victims) and len(dir_ok) == len(victims) and len(seen_by) == len(victims):
            break
        await asyncio.sleep(0.25)
    in_time = [u for u, (t, _) in back.items() if t <= KILL_LIMIT]
    dir_in_time = [u for u, t in dir_ok.items() if t <= KILL_LIMIT]
    times = [t for t, _ in back.values()]
    where = collections.Counter(nd for _, nd in back.values())
    stuck = [r for r in victims if r.name not in back]
    results.record(bool(victims) and len(in_time) == len(victims) and len(dir_in_time) == len(victims),
                   "e.rehomed_after_kill",
                   f"{len(in_time)}/{len(victims)} of worker2's users bound again on another node within "
                   f"{KILL_LIMIT:.0f}s (p50 {ms(pct(times, 0.5))} max {ms(max(times) if times else None)}; "
                   f"new homes {dict(where)}); directory agrees for {len(dir_in_time)}"
                   + (f"; not back after {KILL_OBSERVE:.0f}s: {len(stuck)}, e.g. {stuck[0].name}: "
                      f"{list(stuck[0].errors)[-2:]}" if stuck else ""))
    seen_t = [t for t, _, _ in seen_by.values()]
    seen_in_time = [u for u, (t, _, _) in seen_by.items() if t <= KILL_LIMIT]
    # A victim whose watchers (contacts subscribed to it before the kill) all ended on its own
    # new home cannot be seen from another node: judged by a watcher on its home instead. One
    # without any watcher (a roster left incomplete, see e.ring_rosters) is not judged here.
    node_of = {c.bare: c.node for c in raws}
    unwatched = [r.name for r in victims if not watchers[r.name]]
    no_remote = [r.name for r in victims if r.name not in seen_by and r.name in back
                 and r.name not in unwatched
                 and all(node_of.get(c) in (None, back[r.name][1]) for c in watchers[r.name])]
    unseen = [r for r in victims if r.name not in seen_in_time and r.name not in no_remote
              and r.name not in unwatched]
    local_ok = [u for u in no_remote if u in seen_local and seen_local[u][0] <= KILL_LIMIT]
    detail = []
    for r in unseen[:3]:
        nd = back.get(r.name, (None, None))[1]
        last = {c.split("@")[0]: (node_of.get(c), max([x[1] for x in next(
            (k for k in raws if k.bare == c)).seen.get(r.bare, [])] or [None]))
            for c in sorted(contacts[r.name])}
        detail.append(f"{r.name} (back on {nd}, counter at kill {counter_at_kill[r.name]}, now "
                      f"{r.counter}; contacts' node and last counter seen {last}; watchers "
                      f"{sorted(c.split('@')[0] for c in watchers[r.name])})")
    results.record(bool(victims) and len(unwatched) < len(victims) and not unseen
                   and len(local_ok) == len(no_remote),
                   "e.contacts_see_return",
                   f"{len(seen_in_time)}/{len(victims)} of worker2's users seen available with a fresh counter "
                   f"by a contact on another node within {KILL_LIMIT:.0f}s (p50 {ms(pct(seen_t, 0.5))} "
                   f"max {ms(max(seen_t) if seen_t else None)})"
                   + (f"; {len(no_remote)} with every watcher on its new home, seen there: "
                      f"{len(local_ok)}/{len(no_remote)}" if no_remote else "")
                   + (f"; {len(unwatched)} without any watcher (incomplete roster): {unwatched[:4]}"
                      if unwatched else "")
                   + f"; ring rosters before the kill: {both}/{4 * n} `both`"
                   + (f"; not seen: {'; '.join(detail)}" if detail else ""))
    after = await asyncio.gather(*[r.roster_get(3) for r in victims])
    diff = [f"{r.name}: {len(before[r.name] or {})} -> {len(a or {}) if a is not None else 'no answer'}"
            for r, a in zip(victims, after) if a is None or before[r.name] is None or a != before[r.name]]
    results.record(bool(victims) and not diff, "e.roster_kept",
                   f"{len(victims) - len(diff)}/{len(victims)} rosters equal before the kill and after "
                   f"the re-login (sizes {sorted(collections.Counter(len(b or {}) for b in before.values()).items())})"
                   + (f"; differ: {diff[:4]}" if diff else ""))
    disturbed = [r.name for r in others if len(r.drops) != drops_before[r.name]]
    results.record(not disturbed, "e.others_undisturbed",
                   f"{len(others) - len(disturbed)}/{len(others)} users of primary and worker1 kept their sessions"
                   + (f"; dropped: {disturbed[:5]}" if disturbed else ""))
    return raws


async def main():
    # --only: the phases to run (a is always run)
    args = netns_args("register-scenario", "watch-scenario", "kill-ns", only="abcde")
    log = logging.getLogger("raw")
    results = Results(args.results)
    cl = NetCluster(args.config)
    users = read_users(args.users)
    slix_users = users[:N_SLIX]
    sip_users = users[N_SLIX:N_SLIX + N_SIP]
    raw_users = users[N_SLIX + N_SIP:]
    slix, raws = {}, []
    try:
        slix, homes = await phase_a(cl, slix_users, results)
        if "b" in args.only:
            await phase_b(cl, slix, homes, results)
        if "c" in args.only:
            await phase_c(cl, slix, homes, results)
        if "d" in args.only:
            await phase_d(cl, args, slix, homes, sip_users, results)
        for s in slix.values():
            s.stop()
        if "e" in args.only:
            raws = await phase_e(cl, args, raw_users, results, log)
    finally:
        say("stopping the clients")
        for s in slix.values():
            s.stop()
        stops = [asyncio.ensure_future(r.stop()) for r in raws]
        if stops:
            _, pending = await asyncio.wait(stops, timeout=5)
            if pending:
                say(f"{len(pending)} raw clients did not stop within 5s")
        await asyncio.sleep(0.2)
    return results.summary("cluster_data_netns")


if __name__ == "__main__":
    run_netns_test(main)
