#!/usr/bin/env python3
"""Smoke check of an XMPP server set up for the bench (scripts/bench.sh --peers --check).

Usage: check_xmpp.py HOST:PORT DOMAIN [--probe] [--mech SCRAM-SHA-256] [--prefix chk]

--probe: (plain python3, no slixmpp) open a stream and read the stream features; prints the
         SASL mechanisms offered; exit status 0 when there are features (bench.sh uses it to
         wait until a server answers).
Otherwise, with slixmpp (the interop venv: /work/main/.venv-interop or .venv-interop), on a plain TCP
stream (no TLS, as in the bench):
  1. reads the stream features and prints the SASL mechanisms offered;
  2. registers three users in-band (XEP-0077; <conflict/> = already there: fine);
  3. logs each in afresh with the SCRAM mechanism given (never PLAIN) and checks that it was
     the one used;
  4. user 1 subscribes to users 2 and 3, who approve and subscribe back: both ways;
  5. each sends a presence with a status text and checks that exactly its contacts see it
     (1 sees 2 and 3; 2 and 3 see 1 but not each other).
Prints one JSON line {"mechanisms", "used", "ok", "steps"}; exit status 0 when every step
passed. Every wait is bounded (10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import sys
import time

TIMEOUT = 10.0


def offered_mechanisms(host: str, port: int, domain: str, timeout: float = TIMEOUT) -> list[str]:
    """The <mechanisms/> of the first stream features, read over a raw socket."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(
        f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".encode()
    )
    buf = ""
    deadline = time.time() + timeout
    while "</stream:features>" not in buf and time.time() < deadline:
        data = s.recv(65536)
        if not data:
            break
        buf += data.decode(errors="replace")
    s.close()
    return re.findall(r"<mechanism>([^<]+)</mechanism>", buf)


class Client:
    """One slixmpp client on a plain TCP stream, SCRAM only; approves and returns subscriptions."""

    def __init__(self, user: str, password: str, domain: str, mech: str, register: bool):
        self.user = user
        self.password = password
        self.bare = f"{user}@{domain}"
        from slixmpp import ClientXMPP  # here: --probe needs no slixmpp

        x = ClientXMPP(f"{self.bare}/check", password)
        self.x = x
        x.register_plugin("xep_0030")
        x.register_plugin("xep_0077")
        x.register_plugin("xep_0199")
        x.enable_direct_tls = False
        x.enable_starttls = False
        x.enable_plaintext = True
        x.plugin["feature_mechanisms"].use_mechs = {mech}
        x.plugin["feature_mechanisms"].unencrypted_scram = True
        x.plugin["feature_mechanisms"].unencrypted_plain = False
        x.auto_authorize = True   # approve incoming subscription requests
        x.auto_subscribe = True   # and subscribe back
        x.whitespace_keepalive = False
        self.register_result: str | None = None
        self.mechanism: str | None = None
        self.started = asyncio.Event()
        self.failed: str | None = None
        self.presences: list[tuple[str, str]] = []
        if register:
            x.plugin["xep_0077"].force_registration = True
            x.add_event_handler("register", self._on_register)
        x.add_event_handler("session_start", lambda _e: self.started.set())
        x.add_event_handler("auth_success", self._on_auth)
        x.add_event_handler("failed_all_auth", lambda _e: self._fail("failed_all_auth"))
        x.add_event_handler("presence_available", self._on_presence)

    def _fail(self, why: str) -> None:
        self.failed = why
        self.started.set()

    def _on_auth(self, _s) -> None:
        self.mechanism = getattr(self.x.plugin["feature_mechanisms"].mech, "name", None)

    def _on_presence(self, p) -> None:
        self.presences.append((p["from"].bare, p["status"]))

    async def _on_register(self, _form) -> None:
        from slixmpp.exceptions import IqError, IqTimeout

        iq = self.x.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.user
        iq["register"]["password"] = self.password
        try:
            await iq.send(timeout=TIMEOUT)
            self.register_result = "created"
        except IqError as e:
            cond = e.iq["error"]["condition"]
            self.register_result = "existing" if cond == "conflict" else f"error {cond}"
        except IqTimeout:
            self.register_result = "timeout"

    async def start(self, host: str, port: int) -> None:
        self.x.connect(host, port)
        try:
            await asyncio.wait_for(self.started.wait(), TIMEOUT)
        except asyncio.TimeoutError:
            self.failed = self.failed or "no session within timeout"
        if self.failed:
            raise RuntimeError(f"{self.user}: {self.failed}")

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self.x.disconnect(), TIMEOUT)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 -- best effort
            self.x.abort()


async def wait_for(cond, what: str) -> None:
    deadline = time.time() + TIMEOUT
    while not cond():
        if time.time() > deadline:
            raise RuntimeError(f"timeout: {what}")
        await asyncio.sleep(0.05)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("domain")
    ap.add_argument("--mech", default="SCRAM-SHA-256")
    ap.add_argument("--prefix", default="chk")
    ap.add_argument("--probe", action="store_true")
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    port = int(port)
    if a.probe:
        try:
            mechs = offered_mechanisms(host, port, a.domain, timeout=2.0)
        except OSError:
            return 1
        print(" ".join(mechs))
        return 0 if mechs else 1
    steps: dict[str, object] = {}
    out = {"mechanisms": [], "used": None, "ok": False, "steps": steps}
    try:
        out["mechanisms"] = offered_mechanisms(host, port, a.domain)
        users = [f"{a.prefix}{i}" for i in (1, 2, 3)]
        # 2. in-band registration (then a first login, by slixmpp's flow).
        for u in users:
            c = Client(u, f"pw-{u}", a.domain, a.mech, register=True)
            await c.start(host, port)
            steps[f"register {u}"] = c.register_result
            await c.stop()
            if c.register_result not in ("created", "existing"):
                raise RuntimeError(f"register {u}: {c.register_result}")
        # 3. fresh SCRAM logins.
        cs = [Client(u, f"pw-{u}", a.domain, a.mech, register=False) for u in users]
        for c in cs:
            await c.start(host, port)
            steps[f"login {c.user}"] = c.mechanism
            if c.mechanism != a.mech:
                raise RuntimeError(f"{c.user} authenticated with {c.mechanism}, not {a.mech}")
        out["used"] = a.mech
        c1, c2, c3 = cs
        for c in cs:
            c.x.send_presence()
        # 4. subscriptions both ways.
        c1.x.send_presence(pto=c2.bare, ptype="subscribe")
        c1.x.send_presence(pto=c3.bare, ptype="subscribe")

        async def server_roster(c: Client) -> dict[str, str]:
            """The roster as the server has it (jabber:iq:roster get)."""
            q = c.x.Iq()
            q["type"] = "get"
            q.enable("roster")
            iq = await q.send(timeout=TIMEOUT)
            items = iq["roster"]["items"]
            return {str(j): items[j]["subscription"] for j in items}

        want = {c1: {c2.bare: "both", c3.bare: "both"}, c2: {c1.bare: "both"}, c3: {c1.bare: "both"}}
        deadline = time.time() + TIMEOUT
        while True:
            got = {c: await server_roster(c) for c in cs}
            if got == want:
                break
            if time.time() > deadline:
                raise RuntimeError("rosters: " + json.dumps({c.user: got[c] for c in cs}))
            await asyncio.sleep(0.2)
        steps["subscriptions"] = "1<->2, 1<->3 both"
        # 5. presence with a status text reaches exactly the contacts.
        for c in cs:
            c.presences.clear()
        for c in cs:
            c.x.send_presence(pstatus=f"status of {c.user}")
        seen = lambda c, other: (other.bare, f"status of {other.user}") in c.presences
        await wait_for(lambda: seen(c1, c2) and seen(c1, c3), "user 1 sees 2 and 3")
        await wait_for(lambda: seen(c2, c1) and seen(c3, c1), "users 2 and 3 see 1")
        await asyncio.sleep(0.5)
        if seen(c2, c3) or seen(c3, c2):
            raise RuntimeError("users 2 and 3 see each other without a subscription")
        steps["presence"] = "1 sees 2,3; 2,3 see 1; 2,3 not each other"
        for c in cs:
            await c.stop()
        out["ok"] = True
    except Exception as e:  # noqa: BLE001 -- reported, exit status 1
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
