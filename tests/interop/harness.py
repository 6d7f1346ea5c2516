"""slixmpp client harness for the Rendezvous interop suite.

Every client:
  * connects to the node's address directly (no SRV lookup), STARTTLS only: direct TLS and
    plaintext are disabled, so a server that did not offer STARTTLS fails the login;
  * verifies the server certificate against the node's own self-signed ``cert.pem`` (the only
    trust anchor in its SSL context) with hostname ``localhost``;
  * allows only SCRAM-SHA-256 / SCRAM-SHA-1 (PLAIN is never offered to the server);
  * leaves subscription handling to the test (auto_authorize=None, auto_subscribe=False);
  * records every presence, message, roster push and stream error it sees, so scenarios can
    wait for a condition with a bounded timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import re
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.request
from typing import Any, Callable

from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout

DOMAIN = "localhost"
SCRAM_MECHS = {"SCRAM-SHA-256", "SCRAM-SHA-1"}

log = logging.getLogger("interop")


class CheckFailed(Exception):
    """A scenario expectation did not hold; the message is the reason reported."""


def check(cond: bool, reason: str) -> None:
    if not cond:
        raise CheckFailed(reason)


def tls_context(cert: str) -> ssl.SSLContext:
    """An SSL context whose only trust anchor is the node's self-signed certificate.

    Certificate chain and hostname (``localhost``) are verified, with OpenSSL's
    VERIFY_X509_STRICT on (the Python 3.13+ default) whatever the Python version.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname=True, CERT_REQUIRED
    ctx.load_verify_locations(cafile=cert)
    ctx.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
    return ctx


class Client:
    """One slixmpp ClientXMPP with recorders and bounded waits."""

    def __init__(
        self,
        user: str,
        password: str,
        *,
        host: str,
        port: int,
        cert: str,
        resource: str = "interop",
        register: bool = False,
    ) -> None:
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.bare = f"{user}@{DOMAIN}"
        x = ClientXMPP(f"{self.bare}/{resource}", password)
        self.x = x
        x.register_plugin("xep_0030")
        x.register_plugin("xep_0077")
        x.register_plugin("xep_0199")
        # STARTTLS only.
        x.enable_direct_tls = False
        x.enable_starttls = True
        x.enable_plaintext = False
        x.ssl_context = tls_context(cert)
        # SCRAM only; never PLAIN, encrypted or not.
        x["feature_mechanisms"].use_mechs = set(SCRAM_MECHS)
        x["feature_mechanisms"].unencrypted_plain = False
        x["feature_mechanisms"].encrypted_plain = False
        # The test answers subscription requests itself.
        x.auto_authorize = None
        x.auto_subscribe = False
        x.whitespace_keepalive = False

        self.register = register
        if register:
            x["xep_0077"].force_registration = True
            x.add_event_handler("register", self._on_register)
        self.registration_form: Any = None
        self.registered: bool | None = None
        self.register_error: str | None = None

        self.session_started = False
        self.tls_ok = False
        self.tls_version: str | None = None
        self.peer_cert: dict | None = None
        self.mechanism: str | None = None
        self.auth_failure: str | None = None
        self.stream_errors: list[tuple[str, str]] = []
        self.disconnected = False
        self.disconnect_reason: Any = None
        self.eof = False
        self.presences: list[Any] = []
        self.messages: list[Any] = []
        self.roster_pushes: list[Any] = []
        self.events: list[str] = []

        x.add_event_handler("session_start", self._on_session_start)
        x.add_event_handler("tls_success", self._on_tls)
        x.add_event_handler("auth_success", self._on_auth_success)
        x.add_event_handler("failed_auth", self._on_failed_auth)
        x.add_event_handler("failed_all_auth", lambda _e: self._note("failed_all_auth"))
        x.add_event_handler("no_auth", lambda _e: self._note("no_auth"))
        x.add_event_handler("ssl_invalid_chain", self._on_bad_chain)
        x.add_event_handler("stream_error", self._on_stream_error)
        x.add_event_handler("disconnected", self._on_disconnected)
        x.add_event_handler("eof_received", self._on_eof)
        x.add_event_handler("connection_failed", lambda e: self._note(f"connection_failed: {e}"))
        x.add_event_handler("presence", self._on_presence)
        x.add_event_handler("message", self._on_message)
        x.add_event_handler("roster_update", self._on_roster_push)

    # ------------------------------------------------------------------ recorders
    def _note(self, what: str) -> None:
        log.debug("%s: %s", self.user, what)
        self.events.append(what)

    async def _on_register(self, form: Any) -> None:
        self.registration_form = form
        iq = self.x.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.user
        iq["register"]["password"] = self.password
        try:
            await iq.send(timeout=10)
            self.registered = True
        except IqError as e:
            self.registered = False
            self.register_error = e.iq["error"]["condition"] or "error"
            # Do not go on to authenticate with an account we could not create.
            self.x.abort()
        except IqTimeout:
            self.registered = False
            self.register_error = "timeout"
            self.x.abort()

    def _on_session_start(self, _event: Any) -> None:
        self.session_started = True
        self._note("session_start")

    def _on_tls(self, _event: Any = None) -> None:
        self.tls_ok = True
        obj = self.x.transport.get_extra_info("ssl_object") if self.x.transport else None
        if obj is not None:
            self.tls_version = obj.version()
            # Non-empty only when the certificate was verified (CERT_REQUIRED).
            self.peer_cert = obj.getpeercert()
        self._note(f"tls_success {self.tls_version}")

    def _on_auth_success(self, _stanza: Any) -> None:
        mech = self.x["feature_mechanisms"].mech
        self.mechanism = getattr(mech, "name", None)
        self._note(f"auth_success {self.mechanism}")

    def _on_failed_auth(self, stanza: Any) -> None:
        self.auth_failure = stanza["condition"] or "failure"
        self._note(f"failed_auth {self.auth_failure}")

    def _on_bad_chain(self, exc: Any) -> None:
        self._note(f"ssl_invalid_chain {exc}")
        self.x.abort()

    def _on_stream_error(self, err: Any) -> None:
        self.stream_errors.append((err["condition"], err["text"]))
        self._note(f"stream_error {err['condition']} {err['text']!r}")

    def _on_disconnected(self, reason: Any) -> None:
        self.disconnected = True
        self.disconnect_reason = reason
        self._note(f"disconnected {reason!r}")

    def _on_eof(self, _e: Any) -> None:
        self.eof = True

    def _on_presence(self, p: Any) -> None:
        self.presences.append(p)

    def _on_message(self, m: Any) -> None:
        self.messages.append(m)

    def _on_roster_push(self, iq: Any) -> None:
        self.roster_pushes.append(iq)

    # ------------------------------------------------------------------ actions
    @property
    def full(self) -> str:
        return str(self.x.boundjid.full)

    def describe(self) -> str:
        """Recent client events, for failure reasons."""
        return "; ".join(self.events[-6:]) or "no events"

    async def login(self, timeout: float = 15.0) -> None:
        """Connects and waits for session_start (after STARTTLS, SASL and bind)."""
        self.x.connect(self.host, self.port)
        try:
            await until(
                lambda: self.session_started or self.disconnected or self.auth_failure,
                timeout,
                f"{self.user}: session start",
            )
        except CheckFailed:
            raise CheckFailed(f"{self.user}: no session within {timeout:.0f}s ({self.describe()})")
        check(self.session_started, f"{self.user}: login failed ({self.describe()})")

    def check_secure_login(self) -> None:
        """STARTTLS negotiated and verified, SASL mechanism was SCRAM, JID bound as asked."""
        check("starttls" in self.x.features, f"{self.user}: STARTTLS was not negotiated")
        check(self.tls_ok, f"{self.user}: no tls_success event")
        check(bool(self.peer_cert), f"{self.user}: server certificate was not verified")
        check(
            self.mechanism in SCRAM_MECHS,
            f"{self.user}: SASL mechanism was {self.mechanism!r}, expected SCRAM",
        )
        check(
            self.x.boundjid.bare == self.bare,
            f"{self.user}: bound JID {self.x.boundjid.full} is not under {self.bare}",
        )

    async def get_roster(self, timeout: float = 10.0) -> Any:
        try:
            return await self.x.get_roster(timeout=timeout)
        except IqError as e:
            raise CheckFailed(f"{self.user}: roster get failed: {e.iq['error']['condition']}")
        except IqTimeout:
            raise CheckFailed(f"{self.user}: roster get timed out")

    def subscription(self, jid: str) -> str | None:
        roster = self.x.client_roster
        if jid not in roster:
            return None
        return roster[jid]["subscription"]

    def presences_from(self, jid: str, ptype: str | None = None) -> list[Any]:
        """Presences whose from is jid (bare or full, compared as given)."""
        out = []
        for p in self.presences:
            f = p["from"]
            if str(f) != jid and f.bare != jid:
                continue
            if ptype is not None and p["type"] != ptype:
                continue
            out.append(p)
        return out

    async def disconnect(self, wait: float = 2.0) -> None:
        if self.x.transport is None:
            self.x.cancel_connection_attempt()
            return
        try:
            await asyncio.wait_for(self.x.disconnect(wait=wait), wait + 2)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - best effort
            self.x.abort()

    def abort(self) -> None:
        self.x.cancel_connection_attempt()
        self.x.abort()


NOT_AVAILABLE = {"unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "error"}


def is_available(p: Any) -> bool:
    """Available presence (slixmpp reports the <show/> value as the type when there is one)."""
    return p["type"] not in NOT_AVAILABLE


async def until(pred: Callable[[], Any], timeout: float, what: str | Callable[[], str]) -> Any:
    """Polls pred every 20 ms until it is truthy; CheckFailed after timeout seconds (``what``
    may be a callable, evaluated at failure time to show the state reached)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            desc = what() if callable(what) else what
            raise CheckFailed(f"timed out after {timeout:.0f}s waiting for {desc}")
        await asyncio.sleep(0.02)


# =============================================================================================
# Multi-host tests (scripts/netns-*.sh): every node in its own network namespace, the test in
# the clients' namespace. Shared by cluster_netns.py, cluster_data_netns.py and
# cluster_scale_netns.py: cluster facts from cluster.toml, the admin API, PASS/FAIL lines, a
# slixmpp client that follows <see-other-host/> by itself, and sipp runs and their logs.
# =============================================================================================

T0 = time.monotonic()


def say(msg: str) -> None:
    """A progress line, stamped with the seconds since the test started."""
    print(f"[{time.monotonic() - T0:5.1f}s] {msg}", flush=True)


class Results:
    """PASS/FAIL lines: printed, and appended to ``path`` as PASS|FAIL<TAB>name<TAB>reason
    (the format scripts/test.sh tallies)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: list[tuple[str, str, str]] = []

    def record(self, ok: bool, name: str, reason: Any) -> None:
        verdict = "PASS" if ok else "FAIL"
        reason = " ".join(str(reason).split())
        self.lines.append((verdict, name, reason))
        print(f"{verdict} {name}: {reason}", flush=True)
        if self.path:
            with open(self.path, "a") as f:
                f.write(f"{verdict}\t{name}\t{reason}\n")

    def warn(self, name: str, reason: Any) -> None:
        print(f"WARN {name}: {' '.join(str(reason).split())}", flush=True)

    @property
    def failed(self) -> int:
        return sum(1 for v, _, _ in self.lines if v == "FAIL")

    def summary(self, test: str) -> int:
        """Prints `<test>: N passed, M failed (T s)`; returns the exit status."""
        passed = len(self.lines) - self.failed
        print(f"{test}: {passed} passed, {self.failed} failed ({time.monotonic() - T0:.1f}s)",
              flush=True)
        return 1 if self.failed else 0


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of values; None when empty."""
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.0f}ms"


def spread(values: list[float]) -> str:
    """`p50 Xms max Yms` of a list of seconds."""
    return f"p50 {ms(pct(values, 0.5))} max {ms(max(values) if values else None)}"


def netns_args(*required: str, **optional: str) -> argparse.Namespace:
    """The command line of a netns test: --config, --users, --work, --client-ip (required),
    --sipp and --results, which every one takes, then its own `required` options (names
    without the dashes) and `optional` ones (name=default, `_` for `-`). Its log goes to
    <work>/clients.log."""
    ap = argparse.ArgumentParser()
    for name in ("config", "users", "work", "client-ip", *required):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--sipp", default="sipp")
    ap.add_argument("--results", default="", help="also append PASS|FAIL lines here")
    for name, default in optional.items():
        ap.add_argument(f"--{name.replace('_', '-')}", default=default)
    args = ap.parse_args()
    logging.basicConfig(filename=os.path.join(args.work, "clients.log"), level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return args


def run_netns_test(main: Callable[[], Any]) -> None:
    """Runs a netns test's async main() and exits at once with the status it returns: no
    lingering slixmpp or executor work may hold the exit (every sipp run is over by then, and
    the kernel closes the sockets)."""
    rc = asyncio.run(main())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def read_users(path: str) -> list[tuple[str, str]]:
    """users.csv of the netns scripts: name,password per line."""
    users = []
    with open(path) as f:
        for line in f:
            if line.strip():
                name, pw = line.strip().split(",", 1)
                users.append((name, pw))
    return users


class NetCluster:
    """The cluster as its cluster.toml describes it: `[[node]]` and `[[pool]]` entries."""

    def __init__(self, config_path: str) -> None:
        with open(config_path, "rb") as f:
            cfg = tomllib.load(f)
        c = cfg["cluster"]
        self.domain = c["domain"]
        self.max_load = c.get("max_load", 100)
        self.min_load = c.get("min_load", 20)
        self.scale_in_after_s = c.get("scale_in_after_s", 300)
        self.nodes: dict[str, dict] = {}
        for kind in ("node", "pool"):
            for e in cfg.get(kind, []):
                self.nodes[e["id"]] = {"xmpp": e["xmpp"], "sip": e["sip"], "admin": e["admin"],
                                       "kind": kind, "role": e.get("role", "pool")}
        self.primary = next(i for i, n in self.nodes.items() if n["role"] == "primary")
        self.by_xmpp = {n["xmpp"]: i for i, n in self.nodes.items()}
        self.by_ip = {n["sip"].rsplit(":", 1)[0]: i for i, n in self.nodes.items()}

    def admin(self, node_id: str) -> str:
        return self.nodes[node_id]["admin"]

    def node_at(self, addr: str | None) -> str:
        """The node id of an `ip:port` or `ip` (a client's peer, a SIP sender)."""
        if addr is None:
            return "?"
        return self.by_xmpp.get(addr) or self.by_ip.get(addr.rsplit(":", 1)[0], f"?{addr}")


def http_json(addr: str, path: str, method: str = "GET") -> Any:
    """The JSON answer of a node's admin API; None when it does not answer (or not 2xx)."""
    try:
        req = urllib.request.Request(f"http://{addr}{path}", method=method)
        with urllib.request.urlopen(req, timeout=2.0) as r:
            return json.loads(r.read().decode())
    except Exception:  # noqa: BLE001 - unreachable node = no answer
        return None


async def get_json(addr: str, path: str) -> Any:
    return await asyncio.to_thread(http_json, addr, path)


def directory(state: Any) -> dict[str, str]:
    """The primary's directory (user -> home) from its /api/cluster."""
    homes = {}
    for group in (state or {}).get("users", []):
        for u in group.get("users", []):
            homes[u["user_id"].split("@")[0]] = group["server_id"]
    return homes


async def homes_now(cl: NetCluster) -> dict[str, str]:
    return directory(await get_json(cl.admin(cl.primary), "/api/cluster"))


async def snapshot(cl: NetCluster, node_ids: list[str]) -> tuple[Any, dict[str, Any]]:
    """/api/cluster of the primary and /api/node of every node in node_ids."""
    tasks = [get_json(cl.admin(cl.primary), "/api/cluster")]
    tasks += [get_json(cl.admin(i), "/api/node") for i in node_ids]
    res = await asyncio.gather(*tasks)
    return res[0], dict(zip(node_ids, res[1:]))


def ns_pids(ns: str) -> list[int] | None:
    """The processes of network namespace ns (`ip netns pids`); None when it cannot be read."""
    try:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return [int(p) for p in out.stdout.split()]


NOT_SHOWN = ("unavailable", "error", "probe", "subscribe", "subscribed", "unsubscribe",
             "unsubscribed")


class NetSlix:
    """One slixmpp ClientXMPP of the multi-host tests.

    It connects by the JID's domain (the clients' namespace's hosts file maps it to the
    primary) and follows <see-other-host/> the way slixmpp does it by itself
    (BaseXMPP._handle_stream_error: reconnect, STARTTLS and SASL again at the named host):
    the test never reconnects it. slixmpp 1.17 keeps only the host of see-other-host when
    connect() was given an address, hence no address here and every node on port 5222.
    Self-signed node certificates: no verification. Records session starts, stream errors,
    presences and messages with their arrival times.
    """

    def __init__(self, name: str, password: str, domain: str, resource: str = "netns",
                 status: str | None = None) -> None:
        self.name = name
        self.bare = f"{name}@{domain}"
        self.full = f"{self.bare}/{resource}"
        self.x = ClientXMPP(self.full, password)
        self.x.ssl_context.check_hostname = False
        self.x.ssl_context.verify_mode = ssl.CERT_NONE
        self.x.enable_direct_tls = False  # nodes speak STARTTLS on 5222 only
        self.status = status  # sent with the initial presence of every session
        self.connects = 0     # connect() calls made by the test (never after the first)
        self.redirects: list[str] = []                       # "condition:host"
        self.stream_errors: list[tuple[float, str, str]] = []  # (t, condition, host)
        self.starts: list[tuple[float, str | None]] = []     # (t, peer) of each session
        self.disconnects: list[float] = []
        self.last_start: tuple[float, str | None] | None = None
        self.error: str | None = None
        self.presences: list[tuple[float, str, str]] = []  # (t, from full JID, status)
        self.messages: list[tuple[float, str, str]] = []   # (t, from full JID, body)
        self.x.add_event_handler("session_start", self._on_start)
        self.x.add_event_handler("stream_error", self._on_stream_error)
        self.x.add_event_handler("failed_auth", lambda *_: setattr(self, "error", "SASL failure"))
        self.x.add_event_handler("disconnected", self._on_disconnected)
        self.x.add_event_handler("presence", self._on_presence)
        self.x.add_event_handler("message", self._on_message)

    def peer(self) -> str | None:
        t = self.x.transport
        if t is None:
            return None
        p = t.get_extra_info("peername")
        return f"{p[0]}:{p[1]}" if p else None

    def start(self) -> None:
        self.connects += 1
        self.x.connect()  # by the JID's domain: a custom address would defeat see-other-host

    def _on_start(self, _: Any) -> None:
        self.last_start = (time.monotonic(), self.peer())
        self.starts.append(self.last_start)
        if self.status is None:
            self.x.send_presence()
        else:
            self.x.send_presence(pstatus=self.status)

    def _on_stream_error(self, err: Any) -> None:
        self.redirects.append(f"{err['condition']}:{err['see_other_host']}")
        self.stream_errors.append((time.monotonic(), err["condition"], err["see_other_host"]))

    def _on_disconnected(self, _: Any) -> None:
        self.last_start = None
        self.disconnects.append(time.monotonic())

    def _on_presence(self, p: Any) -> None:
        if p["type"] in NOT_SHOWN:
            return
        self.presences.append((time.monotonic(), str(p["from"]), p["status"]))

    def _on_message(self, m: Any) -> None:
        if m["type"] in ("chat", "normal"):
            self.messages.append((time.monotonic(), str(m["from"]), m["body"]))

    def set_status(self, status: str) -> float:
        """Sends available presence with this status (kept for later sessions); returns when."""
        self.status = status
        self.x.send_presence(pstatus=status)
        return time.monotonic()

    async def settled(self, deadline: float, settle: float = 0.6) -> str | None:
        """The peer of a session that lasted `settle` s without moving; None by the deadline."""
        while time.monotonic() < deadline:
            if self.error:
                return None
            s = self.last_start
            if s and time.monotonic() - s[0] >= settle and self.peer() == s[1]:
                return s[1]
            await asyncio.sleep(0.1)
        return None

    def connected_to(self) -> str | None:
        return self.peer() if self.x.transport is not None and self.last_start else None

    def roster_both(self) -> set[str]:
        r = self.x.client_roster
        return {str(j) for j in r if str(j) != self.bare and r[j]["subscription"] == "both"}

    async def roster(self, timeout: float = 3.0) -> dict[str, str] | None:
        """The roster as the server has it now (iq get): {jid: subscription}; None on failure."""
        try:
            await asyncio.wait_for(self.x.get_roster(), timeout)
        except Exception:  # noqa: BLE001 - timeout, iq error, disconnected
            return None
        r = self.x.client_roster
        return {str(j): r[j]["subscription"] for j in r if str(j) != self.bare}

    def stop(self) -> None:
        try:
            self.x.disconnect(wait=0)
        except Exception:  # noqa: BLE001 - best effort
            pass


# ---- sipp runs and their message logs -------------------------------------------------------

class Sipp:
    """Where the sipp runs of one test keep their files (<work>/sipp), and how they run:
    UDP from the clients' address, to the primary's SIP address unless told otherwise."""

    def __init__(self, binary: str, work: str, client_ip: str, cl: NetCluster) -> None:
        self.binary = binary
        self.dir = os.path.join(work, "sipp")
        self.client_ip = client_ip
        self.cl = cl
        os.makedirs(self.dir, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    async def start(self, scenario: str, tag: str, rows: list[tuple[str, ...]], port: int,
                    extra: tuple[str, ...] | list[str] = (), limit: int | None = None,
                    rate: int = 20) -> tuple[Any, Any, str]:
        """Starts one sipp run (one call per row of its injection file); returns
        (process, its output file, its -trace_msg message log path)."""
        csv = self.path(f"{tag}.csv")
        with open(csv, "w") as f:
            f.write("SEQUENTIAL\n")
            for row in rows:
                f.write(";".join(row) + ";\n")
        msgs = self.path(f"{tag}_messages.log")
        cmd = [self.binary, "-sf", scenario, "-inf", csv, "-m", str(len(rows)),
               "-l", str(limit or len(rows)), "-r", str(rate), "-key", "domain", self.cl.domain,
               "-i", self.client_ip, "-p", str(port), "-t", "u1", "-timeout_error", "-nostdin",
               "-trace_err", "-error_file", self.path(f"{tag}_errors.log"),
               "-trace_msg", "-message_file", msgs, *extra,
               self.cl.nodes[self.cl.primary]["sip"]]
        with open(self.path("commands.txt"), "a") as f:
            f.write(" ".join(cmd) + "\n")
        out = open(self.path(f"{tag}.out"), "w")
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=self.dir, stdout=out, stderr=out,
                                                    stdin=asyncio.subprocess.DEVNULL)
        return proc, out, msgs

    @staticmethod
    async def finish(proc: Any, out: Any, limit: float) -> int:
        """sipp's exit status; killed after `limit` s."""
        try:
            rc = await asyncio.wait_for(proc.wait(), limit)
        except asyncio.TimeoutError:
            proc.kill()
            rc = await proc.wait()
        out.close()
        return rc

    def errors(self, tag: str) -> str:
        return sipp_events(self.path(f"{tag}_errors.log"))


def sip_blocks(path: str) -> list[tuple[str, str, str, float]]:
    """sipp -trace_msg log -> [(direction 'sent'|'received', sender address or '', text,
    wall-clock time)]. sipp does not log peers: the sender of a received request is its top
    Via's sent-by."""
    try:
        text = open(path, errors="replace").read()
    except OSError:
        return []
    out = []
    parts = re.split(r"^-{10,}\s*([\d-]+ [\d:.]+)?[^\n]*\n", text, flags=re.M)
    # re.split with one group: [head, stamp1, block1, stamp2, block2, ...]
    for stamp, block in zip(parts[1::2], parts[2::2]):
        m = re.match(r"\s*(UDP|TCP) message (sent|received)[^\n]*\n", block)
        if not m:
            continue
        t = 0.0
        if stamp:
            try:
                t = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
            except ValueError:
                pass
        body = block[m.end():].lstrip("\n")
        via = re.search(r"^Via:\s*SIP/2.0/\w+\s+([\d.]+:\d+)", body, re.M | re.I)
        peer = via.group(1) if (via and m.group(2) == "received" and not body.startswith("SIP/2.0")) else ""
        out.append((m.group(2), peer, body, t))
    return out


def hdr(block: str, name: str) -> str:
    m = re.search(rf"^{name}:\s*(.*)$", block, re.M | re.I)
    return m.group(1).strip() if m else ""


def uri_user(value: str) -> str:
    m = re.search(r"sip:([^@>;]+)@", value)
    return m.group(1) if m else ""


def sipp_events(path: str) -> str:
    """The events of a sipp error log, one short line each."""
    try:
        text = open(path, errors="replace").read()
    except OSError:
        return "no error log"
    events = []
    for ev in re.split(r"\n?\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: ", text)[1:]:
        if not ev.strip():
            continue
        first = " ".join(ev.splitlines()[0].split()) if ev else ""
        cseq = re.search(r"^CSeq: [^\n]*", ev, re.M)
        frm = re.search(r"^From: <sip:([^@>]+)@", ev, re.M)
        tag = re.search(r"^To:[^\n]*;tag=([^;\s>]+)", ev, re.M)
        events.append(" ".join(x for x in (
            first[:160], f"[{cseq.group(0)}]" if cseq else "", f"user {frm.group(1)}" if frm else "",
            f"To-tag {tag.group(1)}" if tag else "") if x))
    return " | ".join(events[:3]) + (f" | ... {len(events)} events" if len(events) > 3 else "")
