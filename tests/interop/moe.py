#!/usr/bin/env python3
"""MOE-MP interop scenarios (docs/moe-mp.md) against one real node, driven by scripts/moe.sh.

Every scenario uses its own users (``--list-users`` prints them all, so moe.sh can create them
before the node starts), logs them in with examples/moe_client.py (STARTTLS verified against
the node's cert.pem, SCRAM), and is capped at SCENARIO_LIMIT seconds; every single wait is
bounded by WAIT. Results are appended to --results as ``PASS|FAIL<TAB>name<TAB>reason`` and
echoed to stdout. Exit status 0 when every scenario run passed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Awaitable, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent / "examples"))

from harness import CheckFailed, check, is_available  # noqa: E402
from moe_client import (  # noqa: E402
    NS, Answer, Endpoint, FileInfo, Incoming, MoeClient, MoeError, TransferError,
    TransferListener, WorkItem, canonical, q,
)

DOMAIN = "localhost"
WAIT = 10.0  # s: bound on any single expected event
SETTLE = 0.7  # s: how long we watch for something that must NOT happen
SCENARIO_LIMIT = 40.0  # s: hard cap on one scenario

log = logging.getLogger("moe-interop")


def jid(user: str) -> str:
    return f"{user}@{DOMAIN}"


# ---------------------------------------------------------------------------- world


class World:
    """The clients of one scenario; all closed when it ends."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.clients: list[MoeClient] = []

    async def client(self, user: str, resource: str = "moe", *, push: bool = False,
                     presence: bool = True) -> MoeClient:
        c = MoeClient(f"{jid(user)}/{resource}", self.args.password, host="127.0.0.1",
                      port=self.args.port, cert=self.args.cert, settings_push=push)
        self.clients.append(c)
        try:
            await c.login(presence=presence)
        except ConnectionError as e:
            raise CheckFailed(f"login {user}/{resource}: {e}") from None
        return c

    async def close(self, c: MoeClient) -> None:
        await c.close()
        await asyncio.sleep(0.1)  # as in close_all
        if c in self.clients:
            self.clients.remove(c)

    async def close_all(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients), return_exceptions=True)
        await asyncio.sleep(0.1)  # let slixmpp's cancelled tasks finish before the clients go
        self.clients.clear()


async def wait(c: MoeClient, pred: Callable[[], Any], what: str | Callable[[], str],
               timeout: float = WAIT) -> Any:
    """Like harness.until, reporting CheckFailed with the state reached."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            desc = what() if callable(what) else what
            raise CheckFailed(f"{c.bare}: timed out after {timeout:.0f}s waiting for {desc}")
        await asyncio.sleep(0.02)


async def request_of(c: MoeClient, kind: str, xid: str, sender: MoeClient | None = None,
                     msg_id: str | None = None) -> Incoming:
    """The incoming request (kind, id) at c; fails at once when the server bounced the
    sender's message ``msg_id`` with an error instead."""
    def hit() -> list[Incoming]:
        if sender is not None and msg_id is not None:
            errs = [e for i, e, _ in sender.message_errors if i == msg_id]
            if errs:
                raise CheckFailed(f"{sender.bare}'s request bounced: {errs[0]}"
                                  + (f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""))
        return [r for r in c.incoming if r.kind == kind and r.id == xid]
    return (await wait(c, hit, lambda: f"<{kind} id='{xid}'/> "
                       f"(got {[(r.kind, r.id) for r in c.incoming]})"))[0]


async def answer_of(c: MoeClient, xid: str) -> Answer:
    try:
        return await c.wait_answer(xid, WAIT)
    except asyncio.TimeoutError:
        errs = [f"{i}: {e}" for i, e, _ in c.message_errors]
        raise CheckFailed(f"{c.bare}: no answer to exchange {xid!r} within {WAIT:.0f}s"
                          + (f" (message errors: {errs})" if errs else "")) from None


async def expect_iq_error(coro: Awaitable[Any], condition: str, moe: str | None, what: str) -> str:
    try:
        await coro
    except MoeError as e:
        check(e.condition == condition and (moe is None or e.moe == moe),
              f"{what}: got {e.condition}/{e.moe}, expected {condition}/{moe}")
        return f"{condition}" + (f"/{moe}" if moe else "")
    raise CheckFailed(f"{what}: got a result, expected {condition}/{moe}")


async def expect_msg_error(c: MoeClient, msg_id: str, condition: str, moe: str | None,
                           what: str) -> str:
    try:
        e = await c.wait_error(msg_id, WAIT)
    except asyncio.TimeoutError:
        raise CheckFailed(f"{what}: no error within {WAIT:.0f}s, expected {condition}/{moe}") from None
    check(e.condition == condition and (moe is None or e.moe == moe),
          f"{what}: got {e.condition}/{e.moe} ({e.text}), expected {condition}/{moe}")
    return f"{condition}/{moe}" if moe else condition


def data(name: str, size: int) -> bytes:
    """Deterministic content per file name."""
    seed = hashlib.sha256(name.encode()).digest()
    out = bytearray()
    while len(out) < size:
        seed = hashlib.sha256(seed).digest()
        out += seed
    return bytes(out[:size])


def settings_v(version: str, wallpaper: str) -> ET.Element:
    return ET.fromstring(
        f"<settings xmlns='{NS}' version='{version}'><desktop wallpaper='{wallpaper}'/>"
        f"<recent file='report.odt'/><recent file='plan ü.ods'/></settings>")


def show(el: ET.Element) -> str:
    return ET.tostring(el, encoding="unicode")[:200]


def roster_desc(r: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{j}={v['subscription']}{v['groups']}" for j, v in sorted(r.items())) or "empty"


async def roster_until(c: MoeClient, pred: Callable[[dict[str, dict[str, Any]]], bool],
                       what: str, timeout: float = WAIT) -> dict[str, dict[str, Any]]:
    """Polls roster gets until pred holds."""
    deadline = time.monotonic() + timeout
    while True:
        r = await c.roster()
        if pred(r):
            return r
        if time.monotonic() >= deadline:
            raise CheckFailed(f"{c.bare}: roster never {what} (is: {roster_desc(r)})")
        await asyncio.sleep(0.2)


def pushes_for(c: MoeClient, contact: str) -> list[ET.Element]:
    return [i for i in c.roster_pushes if i.get("jid") == contact]


def push_desc(items: list[ET.Element]) -> str:
    return "; ".join(
        f"{i.get('jid')} sub={i.get('subscription')} groups="
        f"{[g.text for g in i.findall(q('group', 'jabber:iq:roster'))]}" for i in items) or "none"


def groups_of(item: ET.Element) -> list[str]:
    return sorted(g.text or "" for g in item.findall(q("group", "jabber:iq:roster")))


def presences(c: MoeClient, frm: str, ptype: str | None = None) -> list[Any]:
    out = []
    for p in c.presences:
        if p["from"].bare != frm:
            continue
        if ptype == "available":
            if is_available(p):
                out.append(p)
        elif ptype is None or p["type"] == ptype:
            out.append(p)
    return out


async def mutual(a: MoeClient, b: MoeClient, groups: list[str]) -> None:
    """RFC 6121 mutual subscription a <-> b, a's item in these groups; both end 'both'."""
    await a.set_roster_item(b.bare, groups=groups)
    a.send_presence(pto=b.bare, ptype="subscribe")
    await wait(b, lambda: presences(b, a.bare, "subscribe"), f"subscribe from {a.bare}")
    b.send_presence(pto=a.bare, ptype="subscribed")
    b.send_presence(pto=a.bare, ptype="subscribe")
    await wait(a, lambda: presences(a, b.bare, "subscribe"), f"subscribe from {b.bare}")
    a.send_presence(pto=b.bare, ptype="subscribed")
    await roster_until(a, lambda r: r.get(b.bare, {}).get("subscription") == "both",
                       f"{b.bare}=both")
    await roster_until(b, lambda r: r.get(a.bare, {}).get("subscription") == "both",
                       f"{a.bare}=both")


# ---------------------------------------------------------------------------- scenarios


async def s_disco(w: World) -> str:
    a = await w.client("dc_alice")
    info = await a.x.plugin["xep_0030"].get_info(jid=DOMAIN, timeout=WAIT)
    feats = info["disco_info"]["features"]
    check(NS in feats, f"disco#info of {DOMAIN} lacks {NS} (features: {sorted(feats)})")
    return f"disco#info of {DOMAIN} lists {NS}"


async def s_settings_fetch(w: World) -> str:
    """§1: empty at first; saved by XEP-0049; after logout/login both fetch forms return it."""
    a = await w.client("sf_alice", "office")
    empty = await a.fetch_settings("short")
    check(empty.tag == q("settings") and len(empty) == 0 and not empty.attrib,
          f"fetch before any save: expected an empty <settings/>, got {show(empty)}")
    v3 = settings_v("3", "blue")
    await a.save_settings(v3)
    for form in ("short", "private"):
        got = await a.fetch_settings(form)
        check(canonical(got) == canonical(v3),
              f"fetch ({form}) right after save: got {show(got)}, saved {show(v3)}")
    await w.close(a)
    b = await w.client("sf_alice", "home")
    for form in ("short", "private"):
        got = await b.fetch_settings(form)
        check(canonical(got) == canonical(v3),
              f"fetch ({form}) after logout/login: got {show(got)}, saved {show(v3)}")
    return "empty <settings/> before saving; saved via XEP-0049; after logout/login the short " \
           "form and XEP-0049 both return it intact"


async def s_settings_push(w: World) -> str:
    """§1: push at an announcing login, again when another resource saves; <moe/> stripped."""
    a = await w.client("sp_alice", "office")
    v3 = settings_v("3", "blue")
    await a.save_settings(v3)
    check(not a.pushes_seen, "office (no push announced) got a settings push")
    await w.close(a)

    desk = await w.client("sp_alice", "desk")  # online, did not announce push
    home = await w.client("sp_alice", "home", push=True)
    try:
        got = await asyncio.wait_for(home.settings_pushes.get(), WAIT)
    except asyncio.TimeoutError:
        raise CheckFailed(f"home announced <moe settings='push'/> but got no settings push "
                          f"within {WAIT:.0f}s") from None
    check(canonical(got) == canonical(v3), f"push at login: got {show(got)}, saved {show(v3)}")

    # The presence desk sees from home must not carry <moe/>.
    note = ""
    try:
        p = (await wait(desk, lambda: [p for p in presences(desk, desk.bare, "available")
                                       if p["from"].resource == "home"],
                        "home's presence", 3.0))[0]
        check(p.xml.find(q("moe")) is None,
              f"home's presence as broadcast to desk still carries <moe/>: {show(p.xml)}")
        note = "; <moe/> stripped from the presence desk saw"
    except CheckFailed as e:
        if "carries" in str(e):
            raise
        note = "; (desk never got home's presence: stripping not checked)"

    v4 = settings_v("4", "green")
    await desk.save_settings(v4)
    try:
        got4 = await asyncio.wait_for(home.settings_pushes.get(), WAIT)
    except asyncio.TimeoutError:
        raise CheckFailed(f"desk saved v4 but home got no push within {WAIT:.0f}s") from None
    check(canonical(got4) == canonical(v4), f"push after desk's save: got {show(got4)}")
    await asyncio.sleep(SETTLE)
    check(not desk.pushes_seen, "desk (no push announced) got a settings push")
    check(home.settings_pushes.empty(), "home got more than one push for one save")
    return "saved v3, logout; login announcing push -> pushed v3 at once; another resource " \
           "saved v4 -> pushed v4 (not to the non-announcing resource)" + note


async def s_worklist(w: World) -> str:
    a = await w.client("wl_alice")
    b = await w.client("wl_bob")
    mid = a.request_worklist(b.bare, "w1")
    req = await request_of(b, "worklist-request", "w1", a, mid)
    check(req.requester == a.bare, f"request came from {req.sender}, expected {a.bare}")
    items = [WorkItem("Budget 2027", "docs/budget.ods", "2026-11-20T10:00:00Z"),
             WorkItem("Slides"), WorkItem("Rapport é", "docs/rapport é.odt")]
    b.answer_worklist(req, items)
    ans = await answer_of(a, "w1")
    check(ans.kind == "worklist", f"answer is <{ans.kind}/>, expected <worklist/>")
    check(ans.requester == a.bare, f"answer requester={ans.requester!r}")
    check(ans.items == items, f"items {ans.items} != sent {items}")
    check(not a.message_errors and not b.message_errors,
          f"unexpected errors: {[str(e) for _, e, _ in a.message_errors + b.message_errors]}")
    return f"bob got the request from {req.sender}; alice got 3 items intact from {ans.sender}"


async def s_worklist_decline(w: World) -> str:
    a = await w.client("wd_alice")
    b = await w.client("wd_bob")
    mid = a.request_worklist(b.bare, "w2")
    req = await request_of(b, "worklist-request", "w2", a, mid)
    b.decline(req)
    ans = await answer_of(a, "w2")
    check(ans.kind == "decline", f"answer is <{ans.kind}/>, expected <decline/>")
    return "worklist-request w2 declined; alice got <decline id='w2'/>"


async def s_file_request(w: World) -> str:
    """§2.2: alice listens and asks for three files; bob has two, accepts them and sends P2P."""
    a = await w.client("fr_alice")
    b = await w.client("fr_bob")
    have = {"budget.ods": data("budget.ods", 5120),
            "notes 2027 é.txt": "ligne 1\nligne 2 é ü\n".encode() * 300}
    async with TransferListener("127.0.0.1", require_all=False,
                                expected=[FileInfo(n) for n in list(have) + ["missing.doc"]]) as lis:
        ep = lis.endpoint
        mid = a.request_files(b.bare, "f1", list(have) + ["missing.doc"], ep)
        req = await request_of(b, "file-request", "f1", a, mid)
        check([f.name for f in req.files] == list(have) + ["missing.doc"],
              f"requested files arrived as {[f.name for f in req.files]}")
        check(req.endpoint == ep, f"endpoint arrived as {req.endpoint}, sent {ep}")
        try:
            reply = await b.accept_file_request(req, have, timeout=WAIT)
        except TransferError as e:
            raise CheckFailed(f"bob's P2P transfer to alice's endpoint failed: {e}") from None
        ans = await answer_of(a, "f1")
        check(ans.kind == "accept", f"answer is <{ans.kind}/>")
        check(ans.endpoint is None, "accept of a file request carries an endpoint")
        check({f.name: (f.size, f.sha256) for f in ans.files} ==
              {n: (len(d), hashlib.sha256(d).hexdigest()) for n, d in have.items()},
              f"accepted files {ans.files}")
        got = await lis.result(WAIT)
    check(got == have, f"received {sorted(got)} differ from bob's files")
    for f in ans.files:
        check(hashlib.sha256(got[f.name]).hexdigest() == f.sha256, f"sha256 of {f.name} differs")
    return f"2 of 3 requested files accepted with size+sha256; P2P transfer answered {reply}; " \
           f"{sum(map(len, got.values()))} bytes verified (incl. a percent-encoded name)"


async def s_offer(w: World) -> str:
    """§2.3: alice offers three files; bob accepts two and listens; alice sends them."""
    a = await w.client("of_alice")
    b = await w.client("of_bob")
    files = {"report.odt": data("report.odt", 20480), "photo.jpg": data("photo.jpg", 90000),
             "Plan Q3 ü.pdf": data("plan", 3000)}
    mid = a.offer(b.bare, "o1", [FileInfo.of(n, d) for n, d in files.items()])
    req = await request_of(b, "offer", "o1", a, mid)
    check({f.name: (f.size, f.sha256) for f in req.files} ==
          {n: (len(d), hashlib.sha256(d).hexdigest()) for n, d in files.items()},
          f"offer arrived as {req.files}")
    want = ["report.odt", "Plan Q3 ü.pdf"]
    lis = await b.accept_offer(req, want)
    try:
        ans = await answer_of(a, "o1")
        check(ans.kind == "accept", f"answer is <{ans.kind}/>")
        check(sorted(f.name for f in ans.files) == sorted(want), f"accepted {ans.files}")
        check(ans.endpoint == lis.endpoint, f"endpoint arrived as {ans.endpoint}")
        try:
            reply = await a.send_accepted(ans, files, timeout=WAIT)
        except TransferError as e:
            raise CheckFailed(f"alice's transfer to bob's endpoint: {e}") from None
        got = await lis.result(WAIT)
    finally:
        lis.close()
    check(got == {n: files[n] for n in want}, f"bob received {sorted(got)}")
    return f"offer of 3, bob accepted 2 with an endpoint; transfer {reply}, checksums verified"


async def s_broadcast(w: World) -> str:
    """§2.4: one offer to bob, carol, dave; bob takes one file, carol both, dave declines."""
    a = await w.client("bc_alice")
    users = {u: await w.client(u) for u in ("bc_bob", "bc_carol", "bc_dave")}
    files = {"minutes.pdf": data("minutes.pdf", 1000), "plan.pdf": data("plan.pdf", 2000)}
    infos = [FileInfo.of(n, d) for n, d in files.items()]
    mid = a.broadcast("b1", [c.bare for c in users.values()], infos)
    choice = {"bc_bob": ["minutes.pdf"], "bc_carol": ["minutes.pdf", "plan.pdf"], "bc_dave": None}
    listeners: dict[str, TransferListener] = {}
    try:
        for u, c in users.items():
            xid = f"b1/{c.bare}"
            req = await request_of(c, "offer", xid, a, mid)
            check(req.requester == a.bare, f"{u}: offer came from {req.sender}, expected {a.bare}")
            check([(f.name, f.size, f.sha256) for f in req.files] ==
                  [(f.name, f.size, f.sha256) for f in infos], f"{u}: offer files {req.files}")
            if choice[u] is None:
                c.decline(req)
            else:
                listeners[u] = await c.accept_offer(req, choice[u])
        out = []
        for u, c in users.items():
            ans = await answer_of(a, f"b1/{c.bare}")
            check(JID_bare(ans.sender) == c.bare, f"answer for {u} came from {ans.sender}")
            if choice[u] is None:
                check(ans.kind == "decline", f"{u}: answer <{ans.kind}/>, expected decline")
                out.append(f"{u} declined")
                continue
            check(ans.kind == "accept", f"{u}: answer <{ans.kind}/>")
            check(sorted(f.name for f in ans.files) == sorted(choice[u]), f"{u}: accepted {ans.files}")
            try:
                await a.send_accepted(ans, files, timeout=WAIT)
            except TransferError as e:
                raise CheckFailed(f"transfer to {u}: {e}") from None
            got = await listeners[u].result(WAIT)
            check(got == {n: files[n] for n in choice[u]}, f"{u} received {sorted(got)}")
            out.append(f"{u} got {len(got)}")
    finally:
        for lis in listeners.values():
            lis.close()
    return "ids b1/<jid>; " + ", ".join(out) + " (P2P, checksums verified)"


def JID_bare(s: str) -> str:  # noqa: N802 - mirrors slixmpp's JID.bare
    return s.split("/", 1)[0]


async def s_unknown_exchange(w: World) -> str:
    """§2: an answer naming an exchange that was never opened gets unknown-exchange."""
    a = await w.client("ue_alice")
    b = await w.client("ue_bob")
    el = ET.Element(q("worklist"), id="never-opened", requester=a.bare)
    ET.SubElement(el, q("item"), name="x")
    mid = b.send_message(a.bare, el)
    cond = await expect_msg_error(b, mid, "item-not-found", "unknown-exchange",
                                  "worklist answer to an unknown exchange")
    await asyncio.sleep(SETTLE)
    check(not [x for x in a.answers if x.id == "never-opened"],
          "the requester got the answer to an exchange it never opened")
    return f"bob's answer bounced with {cond}; alice got nothing"


async def s_exchange_errors(w: World) -> str:
    """§2 validation: open-id conflict, not-addressee, invalid accepts, duplicate answer."""
    a = await w.client("ee_alice")
    b = await w.client("ee_bob")
    c = await w.client("ee_carol")
    f1 = FileInfo.of("a.txt", b"hello")
    res = []
    a.offer(b.bare, "o1", [f1])
    req = await request_of(b, "offer", "o1")
    mid = a.offer(b.bare, "o1", [f1])
    res.append("open id again: " + await expect_msg_error(a, mid, "conflict", None, "offer o1 twice"))
    el = ET.Element(q("decline"), id="o1", requester=a.bare)
    mid = c.send_message(a.bare, el)
    res.append("third party: " + await expect_msg_error(c, mid, "forbidden", "not-addressee",
                                                        "carol answering bob's exchange"))
    # accept of an unoffered file (o2) and an accept of an offer without endpoint (o3)
    a.offer(b.bare, "o2", [f1])
    a.offer(b.bare, "o3", [f1])
    await request_of(b, "offer", "o2")
    await request_of(b, "offer", "o3")
    el = ET.Element(q("accept"), id="o2", requester=a.bare)
    el.append(FileInfo("other.txt").element())
    el.append(Endpoint("127.0.0.1", 40002, "tok-b9c8d7e6").element())
    mid = b.send_message(a.bare, el)
    res.append("unoffered file: " + await expect_msg_error(b, mid, "bad-request", "invalid-payload",
                                                           "accept of an unoffered file"))
    el = ET.Element(q("accept"), id="o3", requester=a.bare)
    el.append(FileInfo("a.txt").element())
    mid = b.send_message(a.bare, el)
    res.append("no endpoint: " + await expect_msg_error(b, mid, "bad-request", "invalid-payload",
                                                        "accept of an offer without endpoint"))
    # bad requests
    mid = a.send_message(b.bare, ET.Element(q("worklist-request"), id="bad id!"))
    res.append("bad id: " + await expect_msg_error(a, mid, "bad-request", "invalid-payload",
                                                   "request id 'bad id!'"))
    el = ET.Element(q("file-request"), id="f9")
    el.append(FileInfo("x").element())
    el.append(Endpoint("127.0.0.1", 40001, "short").element())
    mid = a.send_message(b.bare, el)
    res.append("bad token: " + await expect_msg_error(a, mid, "bad-request", "invalid-payload",
                                                      "endpoint token 'short'"))
    # the real answer goes through once; a second one is unknown
    b.decline(req)
    ans = await answer_of(a, "o1")
    check(ans.kind == "decline", f"o1 answer <{ans.kind}/>")
    mid = b.decline(req)
    res.append("second answer: " + await expect_msg_error(b, mid, "item-not-found",
                                                          "unknown-exchange", "second answer to o1"))
    return "; ".join(res)


async def s_groups_create(w: World) -> str:
    a = await w.client("gc_alice")
    before = await a.list_groups()
    await a.create_group("Team")
    groups = await a.list_groups()
    check("Team" in groups, f"created group 'Team' not listed: {groups}")
    r = await a.roster()
    check(not any("Team" in v["groups"] for v in r.values()), f"'Team' has members: {roster_desc(r)}")
    dup = await expect_iq_error(a.create_group("Team"), "conflict", "group-exists", "create 'Team' again")
    await a.set_roster_item(jid("gc_bob"), groups=["Friends"])
    dup2 = await expect_iq_error(a.create_group("Friends"), "conflict", "group-exists",
                                 "create 'Friends' (used by an item)")
    bad = await expect_iq_error(a.create_group(""), "bad-request", None, "create ''")
    await w.close(a)
    a = await w.client("gc_alice", "again")
    after = await a.list_groups()
    check("Team" in after, f"empty group 'Team' gone after logout/login: {after}")
    return f"listed {before} -> {groups}; 'Team' twice: {dup}; 'Friends' (item's group): {dup2}; " \
           f"'': {bad}; empty group kept across logout/login"


async def s_groups_rename(w: World) -> str:
    a = await w.client("gr_alice")
    bob, carol, dave = jid("gr_bob"), jid("gr_carol"), jid("gr_dave")
    await a.set_roster_item(bob, "Bob", ["Team"])
    await a.set_roster_item(carol, None, ["Team", "Extra"])
    await a.set_roster_item(dave, None, ["Other"])
    await asyncio.sleep(SETTLE)
    a.roster_pushes.clear()
    await a.rename_group("Team", "Project X")
    await wait(a, lambda: len(a.roster_pushes) >= 2,
               lambda: f"2 roster pushes (got {push_desc(a.roster_pushes)})")
    await asyncio.sleep(SETTLE)
    pushes = list(a.roster_pushes)
    check(len(pushes) == 2 and {p.get("jid") for p in pushes} == {bob, carol},
          f"expected one push each for {bob} and {carol}, got {push_desc(pushes)}")
    for p in pushes:
        want = ["Project X"] if p.get("jid") == bob else ["Extra", "Project X"]
        check(groups_of(p) == want, f"push for {p.get('jid')}: groups {groups_of(p)}, expected {want}")
    check([p.get("name") for p in pushes if p.get("jid") == bob] == ["Bob"],
          f"push for {bob} lost its name: {push_desc(pushes)}")
    r = await a.roster()
    check(r[bob]["groups"] == ["Project X"] and r[carol]["groups"] == ["Extra", "Project X"]
          and r[dave]["groups"] == ["Other"], f"roster after rename: {roster_desc(r)}")
    groups = await a.list_groups()
    check("Project X" in groups and "Team" not in groups, f"groups after rename: {groups}")
    unk = await expect_iq_error(a.rename_group("Nope", "X"), "item-not-found", "unknown-group",
                                "rename unknown group")
    a.roster_pushes.clear()
    await a.rename_group("Other", "Project X")  # merge
    await wait(a, lambda: a.roster_pushes, "roster push for the merge")
    await asyncio.sleep(SETTLE)
    check(len(a.roster_pushes) == 1 and a.roster_pushes[0].get("jid") == dave
          and groups_of(a.roster_pushes[0]) == ["Project X"],
          f"merge 'Other' into 'Project X': pushes {push_desc(a.roster_pushes)}")
    groups = await a.list_groups()
    check("Other" not in groups, f"'Other' still listed after merging: {groups}")
    return f"rename -> exactly one push per item (2), groups updated; unknown: {unk}; " \
           f"rename onto an existing group merged (1 push)"


async def s_groups_delete(w: World) -> str:
    a = await w.client("gd_alice")
    users = {u: await w.client(u) for u in ("gd_bob", "gd_carol", "gd_dave")}
    bob, carol, dave = (users[u] for u in ("gd_bob", "gd_carol", "gd_dave"))
    await mutual(a, bob, ["Team"])
    await mutual(a, carol, ["Team", "Friends"])
    await mutual(a, dave, ["Other"])
    a.send_presence()  # re-announced, so every contact surely has it
    for c in users.values():
        await wait(c, lambda c=c: presences(c, a.bare, "available"), f"{a.bare}'s presence")
    await asyncio.sleep(SETTLE)
    a.roster_pushes.clear()
    marks = {c.bare: len(c.presences) for c in users.values()}
    await a.delete_group("Team")
    await wait(a, lambda: len([p for p in a.roster_pushes if p.get("subscription") == "remove"]) >= 2,
               lambda: f"2 roster pushes with subscription='remove' (got {push_desc(a.roster_pushes)})")
    for c in (bob, carol):
        def seen(c: MoeClient = c) -> set[str]:
            return {p["type"] if not is_available(p) else "available"
                    for p in c.presences[marks[c.bare]:] if p["from"].bare == a.bare}
        await wait(c, lambda s=seen: {"unsubscribed", "unavailable"} <= s(),
                   lambda s=seen: f"unsubscribed and unavailable from {a.bare} (got {sorted(s())})")
    await asyncio.sleep(SETTLE)
    removed = {p.get("jid") for p in a.roster_pushes if p.get("subscription") == "remove"}
    check(removed == {bob.bare, carol.bare}, f"removal pushes for {sorted(removed)}")
    check(len(a.roster_pushes) == 2, f"pushes: {push_desc(a.roster_pushes)}")
    got_dave = [p["type"] for p in dave.presences[marks[dave.bare]:] if p["from"].bare == a.bare]
    check(not got_dave, f"dave (group 'Other') got presence {got_dave} from {a.bare}")
    r = await a.roster()
    check(set(r) == {dave.bare}, f"alice's roster after delete: {roster_desc(r)}")
    groups = await a.list_groups()
    check("Team" not in groups, f"groups after delete: {groups}")
    unsub = []
    for c in (bob, carol):
        await roster_until(c, lambda r: r.get(a.bare, {}).get("subscription", "none") == "none",
                           f"{a.bare}=none")
        unsub.append("unsubscribe" in {p["type"] for p in c.presences if p["from"].bare == a.bare})
    unk = await expect_iq_error(a.delete_group("Team"), "item-not-found", "unknown-group",
                                "delete 'Team' again")
    return "remove pushes for bob and carol (carol also in 'Friends'), dave kept; both saw " \
           f"unsubscribed+unavailable (unsubscribe too: {all(unsub)}), their items -> none; " \
           f"again: {unk}"


async def s_contact_accept(w: World) -> str:
    a = await w.client("ca_alice")
    b = await w.client("ca_bob")
    await a.add_contact(b.bare, "Bob", "Team")
    r = await a.roster()
    check(b.bare not in r, f"alice's roster has bob before he accepted: {roster_desc(r)}")
    try:
        creq = await asyncio.wait_for(b.contact_requests.get(), WAIT)
    except asyncio.TimeoutError:
        raise CheckFailed(f"bob got no contact-request within {WAIT:.0f}s") from None
    check(creq.jid == a.bare, f"contact-request jid={creq.jid!r}, expected {a.bare}")
    check(JID_bare(creq.sender) == DOMAIN, f"contact-request came from {creq.sender}, expected {DOMAIN}")
    await b.respond_contact(a.bare, True)
    pa = await wait(a, lambda: [p for p in pushes_for(a, b.bare) if p.get("subscription") == "both"],
                    lambda: f"roster push {b.bare} both (got {push_desc(pushes_for(a, b.bare))})")
    check(pa[-1].get("name") == "Bob" and groups_of(pa[-1]) == ["Team"],
          f"alice's push: {push_desc(pa)} (expected name Bob, group Team)")
    await wait(b, lambda: [p for p in pushes_for(b, a.bare) if p.get("subscription") == "both"],
               lambda: f"roster push {a.bare} both (got {push_desc(pushes_for(b, a.bare))})")
    ra, rb = await a.roster(), await b.roster()
    check(ra.get(b.bare, {}).get("subscription") == "both", f"alice's roster: {roster_desc(ra)}")
    check(rb.get(a.bare, {}).get("subscription") == "both", f"bob's roster: {roster_desc(rb)}")
    await wait(a, lambda: presences(a, b.bare, "available"), f"{b.bare}'s presence")
    await wait(b, lambda: presences(b, a.bare, "available"), f"{a.bare}'s presence")
    return "request delivered from the server; accept -> both rosters 'both' (alice's item " \
           "named Bob in Team), pushes on both sides, presence exchanged"


async def s_contact_refuse(w: World) -> str:
    a = await w.client("cr_alice")
    b = await w.client("cr_bob")
    await a.add_contact(b.bare, "Bob")
    try:
        creq = await asyncio.wait_for(b.contact_requests.get(), WAIT)
    except asyncio.TimeoutError:
        raise CheckFailed(f"bob got no contact-request within {WAIT:.0f}s") from None
    check(creq.jid == a.bare, f"contact-request jid={creq.jid!r}")
    await b.respond_contact(a.bare, False)
    try:
        who = await asyncio.wait_for(a.contact_refusals.get(), WAIT)
    except asyncio.TimeoutError:
        raise CheckFailed(f"alice got no contact-refused within {WAIT:.0f}s") from None
    check(who == b.bare, f"contact-refused jid={who!r}, expected {b.bare}")
    await asyncio.sleep(SETTLE)
    ra, rb = await a.roster(), await b.roster()
    check(b.bare not in ra and a.bare not in rb,
          f"refusal created items: alice {roster_desc(ra)}; bob {roster_desc(rb)}")
    check(not pushes_for(a, b.bare) and not pushes_for(b, a.bare), "refusal caused roster pushes")
    again = await expect_iq_error(b.respond_contact(a.bare, True), "item-not-found",
                                  "unknown-request", "second response")
    return f"refused: alice told (contact-refused), no roster items or pushes; again: {again}"


async def s_contact_offline(w: World) -> str:
    a = await w.client("co_alice")
    await a.add_contact(jid("co_bob"), "Bob", "Later")
    await asyncio.sleep(SETTLE)
    b = await w.client("co_bob", presence=False)
    await asyncio.sleep(SETTLE)
    early = not b.contact_requests.empty()
    b.send_presence()
    try:
        creq = await asyncio.wait_for(b.contact_requests.get(), WAIT)
    except asyncio.TimeoutError:
        raise CheckFailed(f"bob logged in after the request but got no contact-request within "
                          f"{WAIT:.0f}s of his available presence") from None
    check(creq.jid == a.bare, f"contact-request jid={creq.jid!r}")
    await b.respond_contact(a.bare, True)
    await roster_until(a, lambda r: r.get(b.bare, {}).get("subscription") == "both", f"{b.bare}=both")
    await roster_until(b, lambda r: r.get(a.bare, {}).get("subscription") == "both", f"{a.bare}=both")
    await wait(a, lambda: presences(a, b.bare, "available"), f"{b.bare}'s presence")
    return "request made while bob was offline delivered at his login" + \
           (" (before his available presence)" if early else " after his available presence") + \
           "; accepted -> both"


async def s_contact_errors(w: World) -> str:
    a = await w.client("ce_alice")
    r1 = await expect_iq_error(a.add_contact(jid("nobody_here")), "item-not-found", None,
                               "add-contact for a user that does not exist")
    r2 = await expect_iq_error(a.add_contact(a.bare), "not-allowed", None, "add-contact for oneself")
    r3 = await expect_iq_error(a.respond_contact(jid("ce_bob"), True), "item-not-found",
                               "unknown-request", "contact-response without a request")
    return f"unknown user: {r1}; oneself: {r2}; response without request: {r3}"


SCENARIOS: list[tuple[str, list[str], Callable[[World], Awaitable[str]]]] = [
    ("disco", ["dc_alice"], s_disco),
    ("settings-fetch", ["sf_alice"], s_settings_fetch),
    ("settings-push", ["sp_alice"], s_settings_push),
    ("worklist", ["wl_alice", "wl_bob"], s_worklist),
    ("worklist-decline", ["wd_alice", "wd_bob"], s_worklist_decline),
    ("file-request", ["fr_alice", "fr_bob"], s_file_request),
    ("offer", ["of_alice", "of_bob"], s_offer),
    ("broadcast", ["bc_alice", "bc_bob", "bc_carol", "bc_dave"], s_broadcast),
    ("unknown-exchange", ["ue_alice", "ue_bob"], s_unknown_exchange),
    ("exchange-errors", ["ee_alice", "ee_bob", "ee_carol"], s_exchange_errors),
    ("groups-create", ["gc_alice", "gc_bob"], s_groups_create),
    ("groups-rename", ["gr_alice", "gr_bob", "gr_carol", "gr_dave"], s_groups_rename),
    ("groups-delete", ["gd_alice", "gd_bob", "gd_carol", "gd_dave"], s_groups_delete),
    ("contact-accept", ["ca_alice", "ca_bob"], s_contact_accept),
    ("contact-refuse", ["cr_alice", "cr_bob"], s_contact_refuse),
    ("contact-offline", ["co_alice", "co_bob"], s_contact_offline),
    ("contact-errors", ["ce_alice", "ce_bob"], s_contact_errors),
]


# ---------------------------------------------------------------------------- runner


async def run_one(args: argparse.Namespace, name: str,
                  fn: Callable[[World], Awaitable[str]]) -> tuple[bool, str]:
    w = World(args)
    t0 = time.monotonic()
    try:
        reason = await asyncio.wait_for(fn(w), SCENARIO_LIMIT)
        ok = True
    except CheckFailed as e:
        ok, reason = False, str(e)
    except MoeError as e:
        ok, reason = False, f"unexpected stanza error: {e}"
    except TransferError as e:
        ok, reason = False, f"P2P transfer: {e}"
    except asyncio.TimeoutError as e:
        ok, reason = False, str(e) or f"scenario exceeded {SCENARIO_LIMIT:.0f}s"
    except Exception as e:  # noqa: BLE001 - reported, not raised
        log.error("%s: %s", name, traceback.format_exc())
        ok, reason = False, f"{type(e).__name__}: {e}"
    finally:
        try:
            await asyncio.wait_for(w.close_all(), 10)
        except Exception:  # noqa: BLE001
            pass
    return ok, f"{reason} [{(time.monotonic() - t0) * 1000:.0f} ms]"


async def run_all(args: argparse.Namespace) -> int:
    failed = 0
    wanted = set(args.only.split(",")) if args.only else None
    for name, _users, fn in SCENARIOS:
        if wanted is not None and name not in wanted:
            continue
        ok, reason = await run_one(args, name, fn)
        line = f"{'PASS' if ok else 'FAIL'}\t{name}\t{' '.join(reason.split())}"
        print(line, flush=True)
        if args.results:
            with open(args.results, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        failed += not ok
    return 1 if failed else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--list-users", action="store_true", help="print the users, one per line")
    p.add_argument("--list", action="store_true", help="print the scenario names")
    p.add_argument("--port", type=int)
    p.add_argument("--cert")
    p.add_argument("--password", default=os.environ.get("MOE_PASSWORD", ""),
                   help="every user's password (default: $MOE_PASSWORD)")
    p.add_argument("--results", help="append result lines here")
    p.add_argument("--only", help="comma-separated scenario names")
    p.add_argument("--log", help="slixmpp DEBUG log file")
    args = p.parse_args()
    if args.list_users:
        print("\n".join(sorted({u for _, us, _ in SCENARIOS for u in us})))
        return 0
    if args.list:
        print("\n".join(n for n, _, _ in SCENARIOS))
        return 0
    if not args.port or not args.cert:
        p.error("--port and --cert are needed")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setLevel(logging.ERROR)
    if args.log:
        fh = logging.FileHandler(args.log)
        fh.setLevel(logging.DEBUG)
        handlers.append(fh)
    logging.basicConfig(level=logging.DEBUG if args.log else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers)
    return asyncio.run(run_all(args))


if __name__ == "__main__":
    sys.exit(main())
