#!/usr/bin/env python3
"""Smoke check of a SIP presence server set up for the bench (plain python3, UDP).

Usage: check_sip.py HOST:PORT DOMAIN [--probe] [--prefix chk]

--probe: one OPTIONS; exit status 0 when any final answer comes back within 1 s (bench.sh
         uses it to wait until a server answers).
Otherwise, with no authentication (as in the bench):
  1. REGISTER of user 2 gets a 2xx;
  2. user 1 PUBLISHes a PIDF (Event: presence) and gets a 2xx with a SIP-ETag;
  3. user 2 SUBSCRIBEs to user 1 (Event: presence) and gets a 2xx, then a NOTIFY whose
     Subscription-State is active and whose body is the published PIDF (note text checked);
  4. user 1 PUBLISHes again (refresh with SIP-If-Match, new body): a NOTIFY carries the new note;
  5. user 2 un-SUBSCRIBEs (Expires: 0): 2xx and a NOTIFY with Subscription-State terminated.
Every NOTIFY is answered 200. Prints one JSON line {"ok", "steps"}; exit status 0 when every
step passed. Every wait is bounded (5 s).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import sys
import time

TIMEOUT = 5.0


def rand() -> str:
    return "%016x" % random.getrandbits(64)


class Ua:
    def __init__(self, server: tuple[str, int], domain: str):
        self.server = server
        self.domain = domain
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.cseq = 0
        self.pending: list[dict] = []  # requests received while waiting for something else

    def request(self, method: str, user: str, target: str, headers: list[str], body: str = "",
                call_id: str | None = None, from_tag: str | None = None,
                to_tag: str | None = None, ctype: str | None = None) -> tuple[str, str]:
        """Sends a request; returns (call_id, branch)."""
        self.cseq += 1
        call_id = call_id or rand()
        branch = "z9hG4bK" + rand()
        from_tag = from_tag or rand()
        to = f"<sip:{target}@{self.domain}>" + (f";tag={to_tag}" if to_tag else "")
        lines = [
            f"{method} sip:{target}@{self.domain} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{self.domain}>;tag={from_tag}",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {self.cseq} {method}",
            f"Contact: <sip:{user}@127.0.0.1:{self.port}>",
            *headers,
        ]
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        lines.append(f"Content-Length: {len(body.encode())}")
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n" + body).encode(), self.server)
        return call_id, branch

    def recv(self, deadline: float) -> dict | None:
        self.sock.settimeout(max(0.01, deadline - time.time()))
        try:
            data, addr = self.sock.recvfrom(65535)
        except socket.timeout:
            return None
        text = data.decode(errors="replace")
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        hdrs: dict[str, str] = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs.setdefault(k.strip().lower(), v.strip())
        return {"start": lines[0], "h": hdrs, "body": body, "raw": text, "addr": addr}

    def answer_notify(self, m: dict) -> None:
        h = m["h"]
        via = "\r\n".join(f"Via: {v.strip()}" for v in re.findall(r"^(?:Via|v): (.*)$", m["raw"], re.M | re.I))
        resp = (f"SIP/2.0 200 OK\r\n{via}\r\nFrom: {h.get('from')}\r\nTo: {h.get('to')}\r\n"
                f"Call-ID: {h.get('call-id')}\r\nCSeq: {h.get('cseq')}\r\nContent-Length: 0\r\n\r\n")
        self.sock.sendto(resp.encode(), m["addr"])

    def final(self, branch: str) -> dict:
        """The final response of the transaction `branch` (NOTIFYs meanwhile are answered and kept)."""
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            m = self.recv(deadline)
            if m is None:
                break
            if m["start"].startswith("SIP/2.0"):
                code = int(m["start"].split()[1])
                if branch in m["h"].get("via", "") and code >= 200:
                    return m
            else:
                if m["start"].startswith("NOTIFY"):
                    self.answer_notify(m)
                self.pending.append(m)
        raise RuntimeError(f"no final response for branch {branch}")

    def notify(self, call_id: str, pred) -> dict:
        deadline = time.time() + TIMEOUT
        while True:
            for m in self.pending:
                if m["start"].startswith("NOTIFY") and m["h"].get("call-id") == call_id and pred(m):
                    self.pending.remove(m)
                    return m
            m = self.recv(deadline)
            if m is None:
                raise RuntimeError("no matching NOTIFY: got " +
                                   json.dumps([p["start"] + " " + p["h"].get("subscription-state", "") for p in self.pending]))
            if m["start"].startswith("NOTIFY"):
                self.answer_notify(m)
                self.pending.append(m)


def pidf(user: str, domain: str, note: str) -> str:
    return ("<?xml version='1.0' encoding='UTF-8'?>"
            f"<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='sip:{user}@{domain}'>"
            f"<tuple id='t1'><status><basic>open</basic></status><note>{note}</note></tuple>"
            "</presence>")


def code(m: dict) -> int:
    return int(m["start"].split()[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("domain")
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--prefix", default="chk")
    a = ap.parse_args()
    host, port = a.addr.rsplit(":", 1)
    server = (host, int(port))
    ua = Ua(server, a.domain)
    if a.probe:
        _, br = ua.request("OPTIONS", "probe", "probe", [])
        deadline = time.time() + 1.0
        while time.time() < deadline:
            m = ua.recv(deadline)
            if m and m["start"].startswith("SIP/2.0") and br in m["h"].get("via", ""):
                return 0
        return 1
    u1, u2 = f"{a.prefix}1", f"{a.prefix}2"
    steps: dict[str, object] = {}
    out = {"ok": False, "steps": steps}
    try:
        # 1. REGISTER.
        _, br = ua.request("REGISTER", u2, u2, ["Expires: 600"])
        r = ua.final(br)
        steps["REGISTER"] = r["start"]
        if not 200 <= code(r) < 300:
            raise RuntimeError(f"REGISTER: {r['start']}")
        # 2. PUBLISH.
        ev = ["Event: presence", "Expires: 600"]
        _, br = ua.request("PUBLISH", u1, u1, ev, pidf(u1, a.domain, "first note"),
                           ctype="application/pidf+xml")
        r = ua.final(br)
        steps["PUBLISH"] = r["start"]
        etag = r["h"].get("sip-etag")
        if not 200 <= code(r) < 300 or not etag:
            raise RuntimeError(f"PUBLISH: {r['start']} etag={etag}")
        # 3. SUBSCRIBE -> 2xx + NOTIFY with the PIDF.
        ftag = rand()
        cid, br = ua.request("SUBSCRIBE", u2, u1, ["Event: presence", "Expires: 600",
                                                   "Accept: application/pidf+xml"], from_tag=ftag)
        r = ua.final(br)
        steps["SUBSCRIBE"] = r["start"]
        if not 200 <= code(r) < 300:
            raise RuntimeError(f"SUBSCRIBE: {r['start']}")
        to_tag = re.search(r"tag=([^;>\s]+)", r["h"]["to"]).group(1)
        n = ua.notify(cid, lambda m: "first note" in m["body"])
        steps["NOTIFY 1"] = n["h"].get("subscription-state")
        if not n["h"].get("subscription-state", "").startswith("active"):
            raise RuntimeError(f"NOTIFY state {n['h'].get('subscription-state')}")
        # 4. PUBLISH refresh with a new body -> NOTIFY with it.
        _, br = ua.request("PUBLISH", u1, u1, ev + [f"SIP-If-Match: {etag}"],
                           pidf(u1, a.domain, "second note"), ctype="application/pidf+xml")
        r = ua.final(br)
        steps["PUBLISH 2"] = r["start"]
        if not 200 <= code(r) < 300:
            raise RuntimeError(f"PUBLISH 2: {r['start']}")
        n = ua.notify(cid, lambda m: "second note" in m["body"])
        steps["NOTIFY 2"] = n["h"].get("subscription-state")
        # 5. un-SUBSCRIBE.
        _, br = ua.request("SUBSCRIBE", u2, u1, ["Event: presence", "Expires: 0"],
                           call_id=cid, from_tag=ftag, to_tag=to_tag)
        r = ua.final(br)
        steps["un-SUBSCRIBE"] = r["start"]
        if not 200 <= code(r) < 300:
            raise RuntimeError(f"un-SUBSCRIBE: {r['start']}")
        n = ua.notify(cid, lambda m: m["h"].get("subscription-state", "").startswith("terminated"))
        steps["NOTIFY 3"] = n["h"].get("subscription-state")
        out["ok"] = True
    except Exception as e:  # noqa: BLE001 -- reported, exit status 1
        out["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
