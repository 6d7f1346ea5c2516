#!/usr/bin/env python3
"""MOE-MP reference client: the client side of docs/moe-mp.md, on slixmpp.

Library (async, for tests and tools) and a small command line (``--help``). Only the standard
library and slixmpp.

Covers every flow of the document:

* §1   settings: save (XEP-0049), fetch (XEP-0049 or the MOE short form), announce
       ``<moe settings='push'/>`` in the initial presence and answer settings pushes;
* §2.1 work-list request / answer / decline;
* §2.2 file request (the requester listens), §2.3 offer (the addressee listens),
       §2.4 broadcast (send; each addressee answers its own offer with a subset);
* §2.5 the P2P TCP transfer: :class:`TransferListener` (one-time token, SHA-256 verified,
       percent-encoded names) and :func:`send_files`;
* §3   groups list / create / rename / delete;
* §4   add-contact, contact-request (accept / refuse), contact-refused.

Shape of the API: :class:`MoeClient` wraps one ``ClientXMPP``; requests are awaitable methods
that raise :class:`MoeError` (the stanza error with its MOE condition); what other users or the
server send arrives on asyncio queues (``requests``, ``contact_requests``, ``contact_refusals``,
``settings_pushes``) and answers to our own exchanges are awaited with
:meth:`MoeClient.wait_answer`. Everything seen is also recorded in lists (``presences``,
``roster_pushes``, ``message_errors``, ``incoming``) so tests can assert on the whole history.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import re
import secrets
import ssl
import sys
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher.base import MatcherBase

NS = "urn:rendezvous:params:xml:ns:moe"
CLIENT_NS = "jabber:client"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
PRIVATE_NS = "jabber:iq:private"
ROSTER_NS = "jabber:iq:roster"

#: docs §2: exchange ids and endpoint tokens.
EXCHANGE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
#: docs §2.5 transfer protocol.
TRANSFER_MAGIC = "MOE-MP/1"
MAX_LINE = 8192  # bytes: longest header line accepted by the listener
MAX_TRANSFER_BYTES = 256 * 1024 * 1024  # listener default cap on the sum of file sizes
TRANSFER_TIMEOUT = 60.0  # s: default bound on one P2P transfer
IQ_TIMEOUT = 10.0  # s: default bound on one iq round trip
REQUEST_KINDS = ("worklist-request", "file-request", "offer")
ANSWER_KINDS = ("worklist", "accept", "decline")

log = logging.getLogger("moe")


def q(tag: str, ns: str = NS) -> str:
    """Clark notation ``{ns}tag``."""
    return f"{{{ns}}}{tag}"


# ---------------------------------------------------------------------------- errors


class MoeError(Exception):
    """A stanza error (RFC 6120 §8.3) with its MOE condition, if any (docs: "Errors")."""

    def __init__(self, etype: str, condition: str, moe: str | None, text: str | None,
                 what: str = "") -> None:
        self.type = etype
        self.condition = condition
        self.moe = moe
        self.text = text
        desc = f"{condition}" + (f"/{moe}" if moe else "") + (f" ({text})" if text else "")
        super().__init__(f"{what}: {desc}" if what else desc)


class TransferError(Exception):
    """The P2P transfer failed; the message is the peer's ``ERR`` reason or the local cause."""


def parse_error(stanza_xml: ET.Element, what: str = "") -> MoeError | None:
    """The ``<error/>`` child of a stanza as a :class:`MoeError` (None when there is none)."""
    err = stanza_xml.find(q("error", CLIENT_NS))
    if err is None:
        return None
    cond, moe, text = "undefined-condition", None, None
    for child in err:
        if child.tag == q("text", STANZAS_NS):
            text = child.text or ""
        elif child.tag.startswith(f"{{{STANZAS_NS}}}"):
            cond = child.tag.split("}", 1)[1]
        elif child.tag.startswith(f"{{{NS}}}"):
            moe = child.tag.split("}", 1)[1]
    return MoeError(err.get("type", ""), cond, moe, text, what)


# ---------------------------------------------------------------------------- payload types


@dataclass
class FileInfo:
    """``<file name size sha256/>``; size and sha256 are optional in a request or an accept."""

    name: str
    size: int | None = None
    sha256: str | None = None

    @classmethod
    def of(cls, name: str, data: bytes) -> "FileInfo":
        return cls(name, len(data), hashlib.sha256(data).hexdigest())

    @classmethod
    def parse(cls, el: ET.Element) -> "FileInfo":
        size = el.get("size")
        return cls(el.get("name", ""), int(size) if size is not None and size.isdigit() else None,
                   el.get("sha256"))

    def element(self) -> ET.Element:
        el = ET.Element(q("file"), name=self.name)
        if self.size is not None:
            el.set("size", str(self.size))
        if self.sha256 is not None:
            el.set("sha256", self.sha256)
        return el


@dataclass
class Endpoint:
    """``<endpoint host port token/>``: where the listening side of §2.5 waits."""

    host: str
    port: int
    token: str

    @classmethod
    def parse(cls, el: ET.Element) -> "Endpoint":
        return cls(el.get("host", ""), int(el.get("port", "0") or 0), el.get("token", ""))

    def element(self) -> ET.Element:
        return ET.Element(q("endpoint"), host=self.host, port=str(self.port), token=self.token)


@dataclass
class WorkItem:
    """A work-list ``<item name path? modified?/>`` (§2.1)."""

    name: str
    path: str | None = None
    modified: str | None = None

    @classmethod
    def parse(cls, el: ET.Element) -> "WorkItem":
        return cls(el.get("name", ""), el.get("path"), el.get("modified"))

    def element(self) -> ET.Element:
        el = ET.Element(q("item"), name=self.name)
        if self.path is not None:
            el.set("path", self.path)
        if self.modified is not None:
            el.set("modified", self.modified)
        return el


@dataclass
class Incoming:
    """A request from another user: ``worklist-request``, ``file-request`` or ``offer``."""

    kind: str
    id: str
    sender: str  # full JID it came from
    requester: str  # bare JID the answer goes to (and names in ``requester``)
    files: list[FileInfo] = field(default_factory=list)
    endpoint: Endpoint | None = None
    element: ET.Element | None = None
    msg_id: str = ""


@dataclass
class Answer:
    """An answer to one of our exchanges: ``worklist``, ``accept`` or ``decline``."""

    kind: str
    id: str
    requester: str
    sender: str
    items: list[WorkItem] = field(default_factory=list)
    files: list[FileInfo] = field(default_factory=list)
    endpoint: Endpoint | None = None
    element: ET.Element | None = None


@dataclass
class ContactRequest:
    """``<contact-request jid name?/>`` delivered by the server (§4)."""

    jid: str
    name: str | None
    sender: str
    msg_id: str


# ---------------------------------------------------------------------------- §2.5 transfer


def encode_name(name: str) -> str:
    """File name for a ``FILE`` header: percent-encoded UTF-8, nothing left unescaped but
    RFC 3986 unreserved characters (so no space, ``%`` or control character)."""
    return urllib.parse.quote(name, safe="", encoding="utf-8", errors="strict")


def decode_name(raw: str) -> str:
    return urllib.parse.unquote(raw, encoding="utf-8", errors="strict")


def new_token() -> str:
    """A one-time endpoint token (32 characters of ``[A-Za-z0-9_-]``)."""
    return secrets.token_urlsafe(24)


class TransferListener:
    """The listening side of §2.5: one TCP port, one one-time token.

    The first connection that presents the token consumes it; every other connection gets
    ``ERR token``. Each ``FILE`` is read (exactly ``size`` bytes) and hashed; after ``END`` the
    listener answers ``OK`` when every checksum matched (and, when ``expected`` is given, every
    file was expected and had the expected size/sha256, and with ``require_all`` none is
    missing), else ``ERR …``. A requester (§2.2) expects the names it asked for, not all of
    them; an offer's addressee (§2.3) expects exactly the files it accepted.
    ``await result()`` gives ``{name: bytes}`` of a transfer answered ``OK``.
    """

    def __init__(self, host: str = "127.0.0.1", *, expected: Iterable[FileInfo] | None = None,
                 require_all: bool = True, advertise: str | None = None,
                 max_bytes: int = MAX_TRANSFER_BYTES,
                 timeout: float = TRANSFER_TIMEOUT, dest: Path | None = None) -> None:
        self.host = host
        self.advertise = advertise or host
        self.token = new_token()
        self.expected = {f.name: f for f in expected} if expected is not None else None
        self.require_all = require_all
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.dest = dest
        self.refused_tokens = 0  # connections turned away with ERR token
        self._used = False
        self._server: asyncio.base_events.Server | None = None
        self._done: asyncio.Future[dict[str, bytes]] = asyncio.get_running_loop().create_future()
        self.port = 0

    async def start(self) -> Endpoint:
        self._server = await asyncio.start_server(self._serve, self.host, 0, limit=MAX_LINE)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.endpoint

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.advertise, self.port, self.token)

    def set_expected(self, files: Iterable[FileInfo]) -> None:
        """Restricts the transfer to these files (e.g. the accepted subset of an offer)."""
        self.expected = {f.name: f for f in files}

    async def result(self, timeout: float | None = None) -> dict[str, bytes]:
        """The files of the transfer once answered ``OK``; TransferError if it failed."""
        return await asyncio.wait_for(asyncio.shield(self._done), timeout or self.timeout)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if not self._done.done():
            self._done.set_exception(TransferError("listener closed before a transfer"))
            self._done.exception()  # retrieved: no "never retrieved" warning

    async def __aenter__(self) -> "TransferListener":
        await self.start()
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        self.close()

    def _fail(self, reason: str) -> None:
        if not self._done.done():
            self._done.set_exception(TransferError(reason))
            self._done.exception()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(self._transfer(reader, writer), self.timeout)
        except asyncio.TimeoutError:
            await _reply(writer, "ERR timeout")
            if self._used:
                self._fail("transfer timed out")
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as e:
            if self._used:
                self._fail(f"transfer broken: {e!r}")
        finally:
            writer.close()

    async def _transfer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = (await reader.readline()).decode("ascii", "replace").rstrip("\n")
        if self._used or hello != f"{TRANSFER_MAGIC} {self.token}":
            self.refused_tokens += 1
            await _reply(writer, "ERR token")
            return
        self._used = True  # one-time: consumed by the first connection that presents it
        files: dict[str, bytes] = {}
        bad: list[str] = []
        total = 0
        while True:
            line = await reader.readline()
            if not line.endswith(b"\n"):
                raise ConnectionError("connection closed before END")
            text = line.decode("utf-8", "replace").rstrip("\n")
            if text == "END":
                break
            parts = text.split(" ")
            if len(parts) != 4 or parts[0] != "FILE" or not parts[1].isdigit() \
                    or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[2]):
                await _reply(writer, "ERR header")
                self._fail(f"bad header line {text[:80]!r}")
                return
            size, sha = int(parts[1]), parts[2].lower()
            try:
                name = decode_name(parts[3])
            except UnicodeDecodeError:
                await _reply(writer, "ERR name")
                self._fail(f"file name is not percent-encoded UTF-8: {parts[3][:80]!r}")
                return
            total += size
            if total > self.max_bytes:
                await _reply(writer, "ERR too-large")
                self._fail(f"more than {self.max_bytes} bytes offered")
                return
            data = await reader.readexactly(size)
            if hashlib.sha256(data).hexdigest() != sha:
                bad.append(f"checksum {encode_name(name)}")
            if self.expected is not None:
                want = self.expected.get(name)
                if want is None:
                    bad.append(f"unexpected {encode_name(name)}")
                elif (want.size is not None and want.size != size) or \
                        (want.sha256 is not None and want.sha256.lower() != sha):
                    bad.append(f"mismatch {encode_name(name)}")
            if name in files:
                bad.append(f"duplicate {encode_name(name)}")
            files[name] = data
        if self.expected is not None and self.require_all:
            bad += [f"missing {encode_name(n)}" for n in self.expected if n not in files]
        if bad:
            await _reply(writer, "ERR " + bad[0])
            self._fail("; ".join(bad))
            return
        if self.dest is not None:
            for name, data in files.items():
                (self.dest / Path(name).name).write_bytes(data)
        await _reply(writer, "OK")
        if not self._done.done():
            self._done.set_result(files)


async def _reply(writer: asyncio.StreamWriter, line: str) -> None:
    try:
        writer.write(line.encode() + b"\n")
        await writer.drain()
    except ConnectionError:
        pass


async def send_files(endpoint: Endpoint, files: Iterable[tuple[str, bytes]], *,
                     timeout: float = TRANSFER_TIMEOUT) -> str:
    """The connecting side of §2.5: sends the files, returns ``OK`` or raises TransferError
    with the listener's ``ERR`` reason."""

    async def run() -> str:
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        try:
            writer.write(f"{TRANSFER_MAGIC} {endpoint.token}\n".encode("ascii"))
            for name, data in files:
                sha = hashlib.sha256(data).hexdigest()
                writer.write(f"FILE {len(data)} {sha} {encode_name(name)}\n".encode("ascii"))
                writer.write(data)
                await writer.drain()
            writer.write(b"END\n")
            await writer.drain()
        except ConnectionError:
            pass  # the listener may have answered ERR and closed; read its reason below
        try:
            line = (await reader.readline()).decode("utf-8", "replace").rstrip("\n")
        finally:
            writer.close()
        if line == "OK":
            return line
        raise TransferError(line or "connection closed without an answer")

    try:
        return await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        raise TransferError(f"no answer within {timeout:.0f}s") from None
    except OSError as e:
        raise TransferError(f"cannot reach {endpoint.host}:{endpoint.port}: {e}") from None


# ---------------------------------------------------------------------------- the client


class _MoeChild(MatcherBase):
    """Matches a stanza ``{jabber:client}<kind>`` that has a child in the MOE namespace."""

    def match(self, xml: Any) -> bool:
        el = xml.xml
        if el.tag != q(self._criteria, CLIENT_NS):
            return False
        return any(c.tag.startswith(f"{{{NS}}}") for c in el)


def tls_context(cert: str | None, insecure: bool = False) -> ssl.SSLContext:
    """Verifies the server against ``cert`` only (a node's self-signed cert.pem), against the
    system store when None, or not at all with ``insecure``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cert:
        ctx.load_verify_locations(cafile=cert)
    else:
        ctx.load_default_certs()
    return ctx


class MoeClient:
    """One XMPP session speaking MOE-MP (docs/moe-mp.md)."""

    def __init__(self, jid: str, password: str, *, host: str | None = None, port: int = 5222,
                 cert: str | None = None, insecure: bool = False,
                 settings_push: bool = False, transfer_host: str = "127.0.0.1") -> None:
        self.jid = JID(jid)
        self.bare = self.jid.bare
        self.domain = self.jid.domain
        self.host = host or self.domain
        self.port = port
        self.settings_push = settings_push
        self.transfer_host = transfer_host
        x = ClientXMPP(jid, password)
        self.x = x
        x.register_plugin("xep_0030")
        x.enable_direct_tls = False
        x.enable_starttls = True
        x.enable_plaintext = False
        x.ssl_context = tls_context(cert, insecure)
        x.plugin["feature_mechanisms"].use_mechs = {"SCRAM-SHA-256", "SCRAM-SHA-1"}
        x.plugin["feature_mechanisms"].unencrypted_plain = False
        x.auto_authorize = None  # subscriptions are the caller's business
        x.auto_subscribe = False
        x.whitespace_keepalive = False

        # Queues: what others send us.
        self.requests: asyncio.Queue[Incoming] = asyncio.Queue()
        self.contact_requests: asyncio.Queue[ContactRequest] = asyncio.Queue()
        self.contact_refusals: asyncio.Queue[str] = asyncio.Queue()
        self.settings_pushes: asyncio.Queue[ET.Element] = asyncio.Queue()
        # Records: everything, for assertions.
        self.incoming: list[Incoming] = []
        self.answers: list[Answer] = []
        self.presences: list[Any] = []
        self.roster_pushes: list[ET.Element] = []  # <item/> of each roster push (type='set')
        self.message_errors: list[tuple[str, MoeError, ET.Element]] = []  # (id, error, stanza)
        self.moe_messages: list[ET.Element] = []
        self.pushes_seen: list[ET.Element] = []
        self.events: list[str] = []
        self._session = asyncio.Event()
        self._gone = asyncio.Event()
        self.disconnect_reason: Any = None

        x.add_event_handler("session_start", lambda _e: self._session.set())
        x.add_event_handler("disconnected", self._on_disconnected)
        x.add_event_handler("failed_all_auth", lambda _e: self._fail_login("authentication failed"))
        x.add_event_handler("connection_failed", lambda e: self._fail_login(f"connection failed: {e}"))
        x.add_event_handler("presence", self.presences.append)
        x.register_handler(Callback("MOE message", _MoeChild("message"), self._on_message))
        x.register_handler(Callback("MOE iq", _MoeChild("iq"), self._on_iq))
        x.register_handler(Callback("MOE message error", _ErrorMessage(), self._on_message_error))
        x.add_event_handler("roster_update", self._on_roster)

    # ------------------------------------------------------------------ session
    def _fail_login(self, why: str) -> None:
        self.events.append(why)
        self._gone.set()

    def _on_disconnected(self, reason: Any) -> None:
        self.disconnect_reason = reason
        self.events.append(f"disconnected {reason!r}")
        self._gone.set()
        self._session.clear()

    @property
    def full(self) -> str:
        return str(self.x.boundjid.full)

    async def connect(self, timeout: float = 15.0) -> None:
        """STARTTLS + SCRAM + bind; ConnectionError when there is no session within timeout."""
        self._gone.clear()
        self.x.connect(self.host, self.port)
        sess = asyncio.ensure_future(self._session.wait())
        gone = asyncio.ensure_future(self._gone.wait())
        try:
            await asyncio.wait({sess, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sess.cancel()
            gone.cancel()
        if not self._session.is_set():
            self.x.cancel_connection_attempt()
            self.x.abort()
            raise ConnectionError(f"{self.bare}: no session ({'; '.join(self.events[-3:]) or 'timeout'})")

    async def login(self, *, presence: bool = True, timeout: float = 15.0, **presence_kw: Any) -> None:
        """connect(), fetch the roster, and (unless presence=False) send initial presence (with
        the settings-push announcement when the client was made with settings_push=True)."""
        await self.connect(timeout)
        await self.x.get_roster(timeout=IQ_TIMEOUT)
        if presence:
            # RFC 6121 §4.2.2: the server echoes initial presence to the sending resource too.
            # Waiting for that echo means the server has the resource as available before
            # login returns, so a message sent to us right after is not bounced.
            echoed = asyncio.get_running_loop().create_future()

            def on_presence(p: Any) -> None:
                if p["from"] == self.x.boundjid and not echoed.done():
                    echoed.set_result(None)

            self.x.add_event_handler("presence_available", on_presence)
            try:
                self.send_presence(**presence_kw)
                if presence_kw.get("pto") is None and presence_kw.get("ptype") is None:
                    await asyncio.wait_for(echoed, timeout)
            finally:
                self.x.del_event_handler("presence_available", on_presence)

    def send_presence(self, *, push: bool | None = None, pto: str | None = None,
                      ptype: str | None = None, status: str | None = None) -> None:
        """Presence; ``push`` (default: the client's settings_push, only for broadcast
        presence) adds ``<moe settings='push'/>`` (§1)."""
        p = self.x.make_presence(pto=pto, ptype=ptype, pstatus=status)
        if push is None:
            push = self.settings_push and pto is None and ptype is None
        if push:
            p.xml.append(ET.Element(q("moe"), settings="push"))
        p.send()

    async def close(self, wait: float = 2.0) -> None:
        if self.x.transport is None:
            self.x.cancel_connection_attempt()
        else:
            try:
                await asyncio.wait_for(self.x.disconnect(wait=wait), wait + 2)
            except Exception:  # noqa: BLE001 - best effort
                self.x.abort()
        # slixmpp cancels its send loop only when the stream object is garbage-collected
        # ("Task was destroyed but it is pending!"); end it here instead.
        task = getattr(self.x, "_run_out_filters", None)
        if task is not None and not task.done():
            task.cancel()
            try:
                await asyncio.wait_for(task, 1)
            except (asyncio.CancelledError, asyncio.TimeoutError):
                pass

    # ------------------------------------------------------------------ plumbing
    async def iq(self, itype: str, payload: ET.Element, *, to: str | None = None,
                 timeout: float = IQ_TIMEOUT, what: str = "") -> ET.Element:
        """Sends an iq with this payload; the result's ``<iq/>`` element, or MoeError."""
        iq = self.x.Iq()
        iq["type"] = itype
        if to:
            iq["to"] = to
        iq.xml.append(payload)
        what = what or f"iq {itype} {payload.tag.split('}')[-1]}"
        try:
            res = await iq.send(timeout=timeout)
        except IqError as e:
            raise parse_error(e.iq.xml, what) or MoeError("", "undefined-condition", None, None, what)
        except IqTimeout:
            raise MoeError("wait", "timeout", None, f"no answer within {timeout:.0f}s", what) from None
        return res.xml

    def send_message(self, to: str, payload: ET.Element, *, msg_id: str | None = None) -> str:
        """Sends a ``<message/>`` carrying payload; returns its id."""
        m = self.x.make_message(mto=to)
        m["id"] = msg_id or self.x.new_id()
        m.xml.append(payload)
        m.send()
        return m["id"]

    async def wait_for(self, pred: Callable[[], Any], timeout: float, what: str) -> Any:
        """Polls pred every 20 ms; TimeoutError naming ``what`` after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() >= deadline:
                raise asyncio.TimeoutError(f"{self.bare}: no {what} within {timeout:.0f}s")
            await asyncio.sleep(0.02)

    async def wait_error(self, msg_id: str, timeout: float = IQ_TIMEOUT) -> MoeError:
        """The error bounced for the message we sent with this id."""
        hit = await self.wait_for(
            lambda: [e for i, e, _ in self.message_errors if i == msg_id], timeout,
            f"error for message {msg_id}")
        return hit[0]

    # ------------------------------------------------------------------ incoming
    def _on_roster(self, iq: Any) -> None:
        if iq["type"] != "set":
            return  # a roster get result, not a push
        query = iq.xml.find(q("query", ROSTER_NS))
        if query is not None:
            self.roster_pushes.extend(query.findall(q("item", ROSTER_NS)))

    def _on_message_error(self, msg: Any) -> None:
        err = parse_error(msg.xml, f"message {msg['id']}") or \
            MoeError("", "undefined-condition", None, None)
        self.message_errors.append((msg["id"], err, msg.xml))

    def _on_message(self, msg: Any) -> None:
        if msg["type"] == "error":
            return  # handled by _on_message_error
        sender = msg["from"]
        for el in msg.xml:
            if not el.tag.startswith(f"{{{NS}}}"):
                continue
            self.moe_messages.append(el)
            kind = el.tag.split("}", 1)[1]
            if kind in REQUEST_KINDS:
                req = Incoming(kind, el.get("id", ""), str(sender), sender.bare,
                               [FileInfo.parse(f) for f in el.findall(q("file"))],
                               _endpoint(el), el, msg["id"])
                self.incoming.append(req)
                self.requests.put_nowait(req)
            elif kind in ANSWER_KINDS:
                self.answers.append(Answer(
                    kind, el.get("id", ""), el.get("requester", ""), str(sender),
                    [WorkItem.parse(i) for i in el.findall(q("item"))],
                    [FileInfo.parse(f) for f in el.findall(q("file"))], _endpoint(el), el))
            elif kind == "contact-request":
                self.contact_requests.put_nowait(
                    ContactRequest(el.get("jid", ""), el.get("name"), str(sender), msg["id"]))
            elif kind == "contact-refused":
                self.contact_refusals.put_nowait(el.get("jid", ""))
            else:
                log.info("%s: unhandled MOE message payload %s", self.bare, kind)

    def _on_iq(self, iq: Any) -> None:
        el = iq.xml.find(q("settings"))
        if iq["type"] == "set" and el is not None:
            self.pushes_seen.append(el)
            self.settings_pushes.put_nowait(el)
            iq.reply(clear=True).send()
        elif iq["type"] in ("get", "set"):
            r = iq.reply(clear=True)
            r["error"]["type"] = "cancel"
            r["error"]["condition"] = "feature-not-implemented"
            r.send()
        # results/errors to our own iqs are matched by id in iq.send()

    async def wait_answer(self, xid: str, timeout: float = IQ_TIMEOUT, *,
                          sender: str | None = None) -> Answer:
        """The answer (worklist, accept or decline) to our exchange ``xid`` (from ``sender``'s
        bare JID when given)."""
        def hit() -> list[Answer]:
            return [a for a in self.answers if a.id == xid and
                    (sender is None or JID(a.sender).bare == sender)]
        return (await self.wait_for(hit, timeout, f"answer to exchange {xid}"))[0]

    async def next_request(self, timeout: float = IQ_TIMEOUT) -> Incoming:
        return await asyncio.wait_for(self.requests.get(), timeout)

    # ------------------------------------------------------------------ §1 settings
    async def save_settings(self, settings: ET.Element) -> None:
        """XEP-0049 set of ``<settings xmlns=MOE>``."""
        query = ET.Element(q("query", PRIVATE_NS))
        query.append(settings)
        await self.iq("set", query, what="save settings")

    async def fetch_settings(self, form: str = "short") -> ET.Element:
        """The stored settings, by the MOE short form (``short``) or XEP-0049 (``private``)."""
        if form == "short":
            res = await self.iq("get", ET.Element(q("settings")), what="fetch settings (short)")
            el = res.find(q("settings"))
        else:
            query = ET.Element(q("query", PRIVATE_NS))
            query.append(ET.Element(q("settings")))
            res = await self.iq("get", query, what="fetch settings (XEP-0049)")
            el = res.find(f"{q('query', PRIVATE_NS)}/{q('settings')}")
        if el is None:
            raise MoeError("", "bad-answer", None, f"no <settings/> in {ET.tostring(res)[:200]!r}",
                           "fetch settings")
        return el

    # ------------------------------------------------------------------ §2 requests (sender)
    def request_worklist(self, to: str, xid: str) -> str:
        return self.send_message(to, ET.Element(q("worklist-request"), id=xid))

    def request_files(self, to: str, xid: str, names: Iterable[str], endpoint: Endpoint) -> str:
        el = ET.Element(q("file-request"), id=xid)
        for n in names:
            el.append(FileInfo(n).element())
        el.append(endpoint.element())
        return self.send_message(to, el)

    def offer(self, to: str, xid: str, files: Iterable[FileInfo]) -> str:
        el = ET.Element(q("offer"), id=xid)
        for f in files:
            el.append(f.element())
        return self.send_message(to, el)

    def broadcast(self, xid: str, to: Iterable[str], files: Iterable[FileInfo]) -> str:
        """§2.4: one offer to several users, sent to the server (ids ``xid/<bare JID>``)."""
        el = ET.Element(q("broadcast"), id=xid)
        for j in to:
            ET.SubElement(el, q("to"), jid=j)
        offer = ET.SubElement(el, q("offer"))
        for f in files:
            offer.append(f.element())
        return self.send_message(self.domain, el)

    # ------------------------------------------------------------------ §2 answers (addressee)
    def _answer(self, req: Incoming, kind: str, children: Iterable[ET.Element] = ()) -> str:
        el = ET.Element(q(kind), id=req.id, requester=req.requester)
        for c in children:
            el.append(c)
        return self.send_message(req.requester, el)

    def answer_worklist(self, req: Incoming, items: Iterable[WorkItem]) -> str:
        return self._answer(req, "worklist", (i.element() for i in items))

    def decline(self, req: Incoming) -> str:
        return self._answer(req, "decline")

    async def accept_file_request(self, req: Incoming, files: dict[str, bytes], *,
                                  timeout: float = TRANSFER_TIMEOUT) -> str:
        """§2.2: accepts the requested files we have (``files``: name -> content, a subset of
        the request), then connects to the requester's endpoint and sends them. Returns the
        listener's ``OK``; TransferError otherwise."""
        if req.endpoint is None:
            raise TransferError("file request without an endpoint")
        self._answer(req, "accept", (FileInfo.of(n, d).element() for n, d in files.items()))
        return await send_files(req.endpoint, files.items(), timeout=timeout)

    async def accept_offer(self, req: Incoming, names: Iterable[str], *,
                           dest: Path | None = None) -> TransferListener:
        """§2.3: accepts a subset of an offer and listens; ``await listener.result()`` gives the
        files once the offerer has sent them (verified against the offered size/sha256)."""
        names = list(names)
        offered = {f.name: f for f in req.files}
        listener = TransferListener(self.transfer_host,
                                    expected=[offered.get(n, FileInfo(n)) for n in names], dest=dest)
        ep = await listener.start()
        self._answer(req, "accept", [FileInfo(n).element() for n in names] + [ep.element()])
        return listener

    async def send_accepted(self, answer: Answer, files: dict[str, bytes], *,
                            timeout: float = TRANSFER_TIMEOUT) -> str:
        """§2.3/2.4, offerer side: sends the accepted files to the addressee's endpoint."""
        if answer.endpoint is None:
            raise TransferError("accept without an endpoint")
        chosen = [(f.name, files[f.name]) for f in answer.files if f.name in files]
        return await send_files(answer.endpoint, chosen, timeout=timeout)

    # ------------------------------------------------------------------ §3 groups
    async def list_groups(self) -> list[str]:
        res = await self.iq("get", ET.Element(q("groups")), what="groups list")
        el = res.find(q("groups"))
        return [g.get("name", "") for g in (el.findall(q("group")) if el is not None else [])]

    async def _groups(self, op: str, **attrs: str) -> None:
        el = ET.Element(q("groups"))
        ET.SubElement(el, q(op), **attrs)
        await self.iq("set", el, what=f"groups {op} {attrs}")

    async def create_group(self, name: str) -> None:
        await self._groups("create", name=name)

    async def rename_group(self, name: str, to: str) -> None:
        await self._groups("rename", name=name, to=to)

    async def delete_group(self, name: str) -> None:
        await self._groups("delete", name=name)

    # ------------------------------------------------------------------ §4 contacts
    async def add_contact(self, jid: str, name: str | None = None, group: str | None = None) -> None:
        el = ET.Element(q("add-contact"), jid=jid)
        if name is not None:
            el.set("name", name)
        if group is not None:
            el.set("group", group)
        await self.iq("set", el, what=f"add-contact {jid}")

    async def respond_contact(self, jid: str, accept: bool) -> None:
        el = ET.Element(q("contact-response"), jid=jid, accept="true" if accept else "false")
        await self.iq("set", el, what=f"contact-response {jid}")

    # ------------------------------------------------------------------ roster helpers
    async def roster(self) -> dict[str, dict[str, Any]]:
        """A fresh roster get: bare JID -> {subscription, name, groups, ask}."""
        res = await self.iq("get", ET.Element(q("query", ROSTER_NS)), what="roster get")
        out = {}
        for it in res.iter(q("item", ROSTER_NS)):
            out[it.get("jid", "")] = {
                "subscription": it.get("subscription", "none"), "name": it.get("name"),
                "ask": it.get("ask"),
                "groups": sorted(g.text or "" for g in it.findall(q("group", ROSTER_NS)))}
        return out

    async def set_roster_item(self, jid: str, name: str | None = None,
                              groups: Iterable[str] = ()) -> None:
        query = ET.Element(q("query", ROSTER_NS))
        item = ET.SubElement(query, q("item", ROSTER_NS), jid=jid)
        if name is not None:
            item.set("name", name)
        for g in groups:
            ET.SubElement(item, q("group", ROSTER_NS)).text = g
        await self.iq("set", query, what=f"roster set {jid}")


class _ErrorMessage(MatcherBase):
    """Matches ``<message type='error'/>`` (with or without a body)."""

    def __init__(self) -> None:
        super().__init__(None)

    def match(self, xml: Any) -> bool:
        return xml.xml.tag == q("message", CLIENT_NS) and xml.xml.get("type") == "error"


def _endpoint(el: ET.Element) -> Endpoint | None:
    ep = el.find(q("endpoint"))
    return Endpoint.parse(ep) if ep is not None else None


def canonical(el: ET.Element) -> tuple:
    """A comparable form of an element: tag, attributes, stripped text, children."""
    return (el.tag, tuple(sorted(el.attrib.items())), (el.text or "").strip(),
            tuple(canonical(c) for c in el))


# ---------------------------------------------------------------------------- CLI


def _read_files(paths: Iterable[str]) -> dict[str, bytes]:
    return {Path(p).name: Path(p).read_bytes() for p in paths}


async def _cli(args: argparse.Namespace) -> int:
    password = args.password or os.environ.get("MOE_PASSWORD") or ""
    c = MoeClient(args.jid, password, host=args.host, port=args.port, cert=args.cert,
                  insecure=args.insecure, settings_push=args.cmd == "settings-get",
                  transfer_host=args.transfer_host)
    await c.login()
    try:
        cmd = args.cmd
        if cmd == "settings-save":
            await c.save_settings(ET.fromstring(Path(args.file).read_text()))
            print("saved")
        elif cmd == "settings-get":
            el = await c.fetch_settings(args.form)
            try:
                print(ET.tostring(el, encoding="unicode", default_namespace=NS))
            except ValueError:  # content outside the MOE namespace
                print(ET.tostring(el, encoding="unicode"))
        elif cmd == "worklist":
            xid = args.id or f"w{secrets.token_hex(4)}"
            c.request_worklist(args.to, xid)
            a = await c.wait_answer(xid, args.wait)
            if a.kind == "decline":
                print("declined")
            for i in a.items:
                print(f"{i.name}\t{i.path or ''}\t{i.modified or ''}")
        elif cmd == "fetch":
            xid = args.id or f"f{secrets.token_hex(4)}"
            dest = Path(args.dest)
            dest.mkdir(parents=True, exist_ok=True)
            async with TransferListener(args.transfer_host, dest=dest, require_all=False,
                                        expected=[FileInfo(n) for n in args.names]) as lis:
                c.request_files(args.to, xid, args.names, lis.endpoint)
                a = await c.wait_answer(xid, args.wait)
                if a.kind == "decline":
                    print("declined")
                    return 1
                got = await lis.result()
            for f in a.files:
                if f.name not in got or hashlib.sha256(got[f.name]).hexdigest() != f.sha256:
                    print(f"{f.name}: not received as accepted (size/sha256)")
            for n, d in got.items():
                print(f"received {n} ({len(d)} bytes) -> {dest / Path(n).name}")
        elif cmd in ("offer", "broadcast"):
            files = _read_files(args.files)
            infos = [FileInfo.of(n, d) for n, d in files.items()]
            xid = args.id or f"o{secrets.token_hex(4)}"
            tos = args.to.split(",")
            if cmd == "offer":
                c.offer(tos[0], xid, infos)
                ids = {tos[0]: xid}
            else:
                c.broadcast(xid, tos, infos)
                ids = {t: f"{xid}/{JID(t).bare}" for t in tos}
            rc = 0
            for t, i in ids.items():
                try:
                    a = await c.wait_answer(i, args.wait)
                except asyncio.TimeoutError:
                    print(f"{t}: no answer")
                    rc = 1
                    continue
                if a.kind == "decline":
                    print(f"{t}: declined")
                    continue
                try:
                    print(f"{t}: {await c.send_accepted(a, files)} "
                          f"{', '.join(f.name for f in a.files)}")
                except TransferError as e:
                    print(f"{t}: transfer failed: {e}")
                    rc = 1
            return rc
        elif cmd == "serve":
            await _serve(c, args)
        elif cmd == "groups":
            if args.op == "list":
                print("\n".join(await c.list_groups()))
            elif args.op == "create":
                await c.create_group(args.name)
            elif args.op == "rename":
                await c.rename_group(args.name, args.to)
            elif args.op == "delete":
                await c.delete_group(args.name)
        elif cmd == "add-contact":
            await c.add_contact(args.contact, args.name, args.group)
            print("requested")
            if args.wait:
                r = await asyncio.wait_for(c.contact_refusals.get(), args.wait)
                print(f"refused by {r}")
        return 0
    finally:
        await c.close()


async def _serve(c: MoeClient, args: argparse.Namespace) -> None:
    """Answers requests from a directory: work list = its files; file requests = the files it
    holds; offers accepted (all files) into it; contact requests per --contacts."""
    share = Path(args.dir)
    share.mkdir(parents=True, exist_ok=True)

    async def contacts() -> None:
        while True:
            r = await c.contact_requests.get()
            if args.contacts != "ignore":
                await c.respond_contact(r.jid, args.contacts == "accept")
                print(f"contact request from {r.jid}: {args.contacts}")

    task = asyncio.ensure_future(contacts())
    try:
        while True:
            req = await c.requests.get()
            print(f"{req.kind} {req.id} from {req.sender}")
            if req.kind == "worklist-request":
                c.answer_worklist(req, [WorkItem(p.name, p.name) for p in sorted(share.iterdir())
                                        if p.is_file()])
            elif req.kind == "file-request":
                have = {f.name: (share / Path(f.name).name).read_bytes() for f in req.files
                        if (share / Path(f.name).name).is_file()}
                if not have:
                    c.decline(req)
                    continue
                try:
                    print(f"  sent: {await c.accept_file_request(req, have)}")
                except TransferError as e:
                    print(f"  transfer failed: {e}")
            elif req.kind == "offer":
                lis = await c.accept_offer(req, [f.name for f in req.files], dest=share)
                try:
                    got = await lis.result()
                    print(f"  received {', '.join(got)}")
                except (TransferError, asyncio.TimeoutError) as e:
                    print(f"  transfer failed: {e}")
                finally:
                    lis.close()
    finally:
        task.cancel()


async def selftest() -> None:
    """§2.5 on loopback, no server: names, checksums, the one-time and the wrong token."""
    files = {"a b%c é.txt": b"x" * 1000, "empty": b"", "big.bin": os.urandom(300_000)}
    async with TransferListener(expected=[FileInfo.of(n, d) for n, d in files.items()]) as lis:
        assert await send_files(lis.endpoint, files.items()) == "OK"
        assert await lis.result(5) == files
        try:  # the token was consumed
            await send_files(lis.endpoint, files.items())
            raise AssertionError("a used token was accepted")
        except TransferError as e:
            assert str(e) == "ERR token", e
    async with TransferListener() as lis:
        bad = Endpoint(lis.endpoint.host, lis.endpoint.port, "wrong-token-123")
        try:
            await send_files(bad, files.items())
            raise AssertionError("a wrong token was accepted")
        except TransferError as e:
            assert str(e) == "ERR token", e
        reader, writer = await asyncio.open_connection(lis.host, lis.port)  # lying checksum
        writer.write(f"{TRANSFER_MAGIC} {lis.token}\nFILE 3 {'0' * 64} x\nabcEND\n".encode())
        line = (await reader.readline()).decode().strip()
        writer.close()
        assert line == "ERR checksum x", line
    async with TransferListener(expected=[FileInfo("only")]) as lis:
        try:
            await send_files(lis.endpoint, [("other", b"1")])
            raise AssertionError("an unexpected file was accepted")
        except TransferError as e:
            assert str(e).startswith("ERR unexpected"), e


def main(argv: list[str] | None = None) -> int:
    if (argv if argv is not None else sys.argv[1:]) == ["selftest"]:
        asyncio.run(selftest())
        print("selftest: ok")
        return 0
    p = argparse.ArgumentParser(description="MOE-MP reference client (docs/moe-mp.md); "
                                "'moe_client.py selftest' checks the P2P transfer on loopback")
    p.add_argument("--jid", required=True)
    p.add_argument("--password", help="default: $MOE_PASSWORD")
    p.add_argument("--host", help="server address (default: the JID's domain)")
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--cert", help="trust only this certificate (a node's cert.pem)")
    p.add_argument("--insecure", action="store_true", help="do not verify the server")
    p.add_argument("--transfer-host", default="127.0.0.1", help="address to listen on for P2P")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for an answer")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("settings-save", help="save <settings xmlns=MOE> from an XML file")
    s.add_argument("file")
    s = sub.add_parser("settings-get", help="fetch the settings")
    s.add_argument("--form", choices=("short", "private"), default="short")
    s = sub.add_parser("worklist", help="ask a user for its work list")
    s.add_argument("to")
    s.add_argument("--id")
    s = sub.add_parser("fetch", help="file request: ask a user for files, receive them P2P")
    s.add_argument("to")
    s.add_argument("names", nargs="+")
    s.add_argument("--dest", default=".")
    s.add_argument("--id")
    for name in ("offer", "broadcast"):
        s = sub.add_parser(name, help=f"{name} files (TO: a JID, or JIDs separated by commas)")
        s.add_argument("to")
        s.add_argument("files", nargs="+")
        s.add_argument("--id")
    s = sub.add_parser("serve", help="answer requests from/into a directory until interrupted")
    s.add_argument("dir")
    s.add_argument("--contacts", choices=("accept", "refuse", "ignore"), default="ignore")
    s = sub.add_parser("groups", help="list/create/rename/delete groups")
    s.add_argument("op", choices=("list", "create", "rename", "delete"))
    s.add_argument("name", nargs="?")
    s.add_argument("to", nargs="?")
    s = sub.add_parser("add-contact", help="ask a user to become a contact")
    s.add_argument("contact")
    s.add_argument("--name")
    s.add_argument("--group")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return asyncio.run(_cli(args))
    except (MoeError, TransferError, ConnectionError, asyncio.TimeoutError) as e:
        print(f"moe_client: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
