#!/usr/bin/env python3
"""A raw-socket XMPP client that follows a cluster's redirects (DESIGN.md §4).

It logs in with SASL PLAIN (on a loopback/test listener with TLS optional), binds a
resource and sends initial presence. A server that names another home is followed:
- the XEP-0051 iq `<query xmlns='urn:xmpp:cxfr'><server>host:port</server></query>` after
  binding (answered with a result, then the client leaves and reconnects there), or
- the `<see-other-host>host:port</see-other-host>` stream error (RFC 6120 §4.9.3.19).

Usage: xmpp_redirect.py HOST:PORT DOMAIN USER PASSWORD [--hold SECONDS] [--prefer see-other-host]
Prints one JSON line: {"user", "server" (host:port it ended on), "hops", "via" (list of
redirect kinds)}; exits non-zero on failure. Every wait is bounded.
"""

import base64
import json
import re
import socket
import sys
import time

TIMEOUT = 10.0


class Stream:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT)
        self.buf = ""

    def send(self, text):
        self.sock.sendall(text.encode())

    def read_until(self, pattern, deadline):
        rx = re.compile(pattern, re.S)
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            if time.time() > deadline:
                raise TimeoutError(f"waiting for {pattern!r}; have {self.buf[-300:]!r}")
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise ConnectionError(f"closed while waiting for {pattern!r}; have {self.buf[-300:]!r}")
            self.buf += data.decode(errors="replace")

    def close(self):
        try:
            self.send("</stream:stream>")
        except OSError:
            pass
        self.sock.close()


def open_stream(s, domain, deadline):
    s.send(
        f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
    )
    return s.read_until(r"<stream:features.*?</stream:features>|<stream:error>.*?</stream:error>", deadline)


SEE_OTHER = r"<see-other-host[^>]*>([^<]+)</see-other-host>"


def login(addr, domain, user, password, prefer_see_other):
    """One connection: returns ("done", stream), ("cxfr", target) or ("see-other-host", target)."""
    deadline = time.time() + TIMEOUT
    s = Stream(addr)
    m = open_stream(s, domain, deadline)
    if "stream:error" in m.group(0):
        raise RuntimeError(f"stream error at open: {m.group(0)}")
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    s.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    m = s.read_until(r"<success[^>]*/>|<success[^>]*>.*?</success>|<failure.*?</failure>", deadline)
    if "failure" in m.group(0):
        raise RuntimeError(f"SASL failure: {m.group(0)}")
    m = open_stream(s, domain, deadline)
    other = re.search(SEE_OTHER, m.group(0))
    if other:
        s.sock.close()
        return "see-other-host", other.group(1).strip()
    s.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
           "<resource>redirect</resource></bind></iq>")
    s.read_until(r"<iq[^>]*id=.b1.*?</iq>|<iq[^>]*id=.b1[^>]*/>", deadline)
    s.send("<presence/>")
    # A redirecting server speaks now; a home stays silent (or sends roster/presence).
    quiet_until = time.time() + 0.5
    while time.time() < quiet_until:
        cx = re.search(r"<iq[^>]*type=.set.[^>]*>\s*<query xmlns=.urn:xmpp:cxfr.>.*?<server>([^<]+)</server>.*?</iq>", s.buf, re.S)
        other = re.search(SEE_OTHER, s.buf)
        if cx and not prefer_see_other:
            iq_id = re.search(r"id=['\"]([^'\"]+)['\"]", cx.group(0)).group(1)
            try:
                s.send(f"<iq type='result' id='{iq_id}'/>")
            except OSError:
                pass  # with redirect = "both" the server already closed after the iq
            s.close()
            return "cxfr", cx.group(1).strip()
        if other:
            s.sock.close()
            return "see-other-host", other.group(1).strip()
        try:
            s.sock.settimeout(0.1)
            data = s.sock.recv(65536)
            if not data:
                raise ConnectionError("closed after bind")
            s.buf += data.decode(errors="replace")
        except socket.timeout:
            pass
    s.sock.settimeout(TIMEOUT)
    return "done", s


def main():
    args = sys.argv[1:]
    hold = 0.0
    prefer = False
    if "--hold" in args:
        i = args.index("--hold")
        hold = float(args[i + 1])
        del args[i:i + 2]
    if "--prefer" in args:
        i = args.index("--prefer")
        prefer = args[i + 1] == "see-other-host"
        del args[i:i + 2]
    addr, domain, user, password = args
    via = []
    for _ in range(4):
        kind, result = login(addr, domain, user, password, prefer)
        if kind == "done":
            print(json.dumps({"user": user, "server": addr, "hops": len(via), "via": via}), flush=True)
            end = time.time() + hold
            while time.time() < end:
                time.sleep(min(0.5, max(0.0, end - time.time())))
            result.close()
            return 0
        via.append(kind)
        addr = result
    print(json.dumps({"user": user, "error": "too many redirects", "via": via}), flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
