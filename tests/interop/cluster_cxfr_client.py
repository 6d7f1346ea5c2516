#!/usr/bin/env python3
"""A raw-socket XMPP client that follows a cluster's redirects, over STARTTLS.

For clusters whose listeners are not on loopback (there `[xmpp] tls = "required"`; pass
`--no-tls` on loopback): when the server offers `<starttls/>` the client negotiates it
(`<proceed/>`, TLS without certificate verification: the nodes use self-signed certificates)
and restarts the stream before SASL PLAIN. Then it binds a resource and sends initial presence.
A server that names another home is followed:
- the XEP-0051 iq `<query xmlns='urn:xmpp:cxfr'><server>host:port</server></query>` after
  binding (answered with a result, then the client leaves and reconnects there), or
- the `<see-other-host>host:port</see-other-host>` stream error (RFC 6120 §4.9.3.19).

Usage: cluster_cxfr_client.py HOST:PORT DOMAIN USER PASSWORD [--hold SECONDS]
                              [--prefer see-other-host] [--no-tls]
Prints one JSON line: {"user", "server" (host:port it ended on), "hops", "via" (list of
redirect kinds), "tls"}; exits non-zero on failure. Every wait is bounded. With --hold the
session stays up (answering the server's XEP-0199 pings) for that long after the line is
printed, or until SIGTERM.
"""

import base64
import json
import re
import signal
import socket
import ssl
import sys
import time

TIMEOUT = 10.0


class Stream:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT)
        self.buf = ""
        self.tls = False

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

    def starttls(self):
        """Wraps the socket in TLS (no verification: self-signed node certificates)."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.sock = ctx.wrap_socket(self.sock)
        self.buf = ""
        self.tls = True

    def close(self):
        try:
            self.send("</stream:stream>")
        except OSError:
            pass
        self.sock.close()


FEATURES = r"<stream:features.*?</stream:features>|<stream:features[^>]*/>|<stream:error>.*?</stream:error>"


def open_stream(s, domain, deadline):
    s.send(
        f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
    )
    return s.read_until(FEATURES, deadline)


SEE_OTHER = r"<see-other-host[^>]*>([^<]+)</see-other-host>"


def login(addr, domain, user, password, prefer_see_other, use_tls):
    """One connection: returns ("done", stream), ("cxfr", target) or ("see-other-host", target)."""
    deadline = time.time() + TIMEOUT
    s = Stream(addr)
    m = open_stream(s, domain, deadline)
    if "stream:error" in m.group(0):
        raise RuntimeError(f"stream error at open: {m.group(0)}")
    if use_tls and "urn:ietf:params:xml:ns:xmpp-tls" in m.group(0):
        s.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        r = s.read_until(r"<proceed[^>]*/>|<proceed[^>]*>\s*</proceed>|<failure[^>]*xmpp-tls[^>]*(?:/>|>.*?</failure>)", deadline)
        if "failure" in r.group(0):
            raise RuntimeError(f"STARTTLS refused: {r.group(0)}")
        s.starttls()
        m = open_stream(s, domain, deadline)
        if "stream:error" in m.group(0):
            raise RuntimeError(f"stream error after STARTTLS: {m.group(0)}")
    if "PLAIN" not in m.group(0):
        raise RuntimeError(f"no SASL PLAIN offered: {m.group(0)[:300]}")
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


def hold(s, seconds):
    """Keeps the session up: answers XEP-0199 pings, notices a closed stream."""
    end = time.time() + seconds
    s.sock.settimeout(0.5)
    while time.time() < end:
        try:
            data = s.sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            print(json.dumps({"event": "closed by the server"}), flush=True)
            return 1
        s.buf += data.decode(errors="replace")
        for ping in re.finditer(r"<iq[^>]*type=.get.[^>]*>\s*<ping xmlns=.urn:xmpp:ping.", s.buf):
            iq_id = re.search(r"id=['\"]([^'\"]+)['\"]", ping.group(0))
            frm = re.search(r"from=['\"]([^'\"]+)['\"]", ping.group(0))
            if iq_id:
                to = f" to='{frm.group(1)}'" if frm else ""
                s.send(f"<iq type='result' id='{iq_id.group(1)}'{to}/>")
        if "</stream:stream>" in s.buf or "<stream:error" in s.buf:
            print(json.dumps({"event": "stream ended", "tail": s.buf[-200:]}), flush=True)
            return 1
        s.buf = s.buf[-4096:] if len(s.buf) > 65536 else s.buf
    return 0


def main():
    args = sys.argv[1:]
    hold_s = 0.0
    prefer = False
    use_tls = True
    if "--hold" in args:
        i = args.index("--hold")
        hold_s = float(args[i + 1])
        del args[i:i + 2]
    if "--prefer" in args:
        i = args.index("--prefer")
        prefer = args[i + 1] == "see-other-host"
        del args[i:i + 2]
    if "--no-tls" in args:
        args.remove("--no-tls")
        use_tls = False
    addr, domain, user, password = args
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    via = []
    try:
        for _ in range(4):
            kind, result = login(addr, domain, user, password, prefer, use_tls)
            if kind == "done":
                print(json.dumps({"user": user, "server": addr, "hops": len(via), "via": via,
                                  "tls": result.tls}), flush=True)
                try:
                    rc = hold(result, hold_s)
                finally:
                    result.close()
                return rc
            via.append(kind)
            addr = result
    except (OSError, RuntimeError, ssl.SSLError) as e:
        print(json.dumps({"user": user, "error": f"{type(e).__name__}: {e}", "at": addr, "via": via}),
              flush=True)
        return 1
    print(json.dumps({"user": user, "error": "too many redirects", "via": via}), flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
