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

import asyncio
import logging
import ssl
import time
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
