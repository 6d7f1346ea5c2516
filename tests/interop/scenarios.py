"""The interop scenarios (a–h) run by ``run.py``.

Each scenario is an ``async def`` taking the shared :class:`World`; it raises
:class:`harness.CheckFailed` with the reason on failure and returns a short success note.
Scenarios a–f run in the ``main`` phase against a fresh node, h (orderly shutdown) in the
``watch-shutdown`` phase while interop.sh sends SIGTERM, g in the ``restart`` phase after the
node was restarted on the same data dir.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from harness import DOMAIN, CheckFailed, Client, check, is_available, until

WAIT = 10.0  # bound for any single expected event


@dataclass
class World:
    host: str
    port: int
    cert: str
    users: dict[str, dict[str, str]] = field(default_factory=dict)
    clients: dict[str, Client] = field(default_factory=dict)

    def client(self, who: str, *, register: bool = False, resource: str = "interop") -> Client:
        u = self.users[who]
        return Client(
            u["name"],
            u["password"],
            host=self.host,
            port=self.port,
            cert=self.cert,
            register=register,
            resource=resource,
        )

    def bare(self, who: str) -> str:
        return f"{self.users[who]['name']}@{DOMAIN}"

    async def close_all(self) -> None:
        await asyncio.gather(*(c.disconnect() for c in self.clients.values()))
        self.clients.clear()


def new_users() -> dict[str, dict[str, str]]:
    run = secrets.token_hex(4)
    return {
        who: {"name": f"interop-{who.lower()}-{run}", "password": secrets.token_urlsafe(12)}
        for who in ("A", "B")
    }


def field_names(form: Any) -> set[str]:
    """Child element names of the <query xmlns='jabber:iq:register'/> of a get result."""
    names: set[str] = set()
    if form is None:
        return names
    query = form.xml.find("{jabber:iq:register}query")
    if query is None:
        return names
    for child in query:
        names.add(child.tag.split("}")[-1])
    return names


# --------------------------------------------------------------------------- a
async def a_register(w: World) -> str:
    """Two users register in-band (XEP-0077 §3.1) on a STARTTLS stream, then log in with the
    new credentials; registering an existing username again gets <conflict/>."""
    regs = {who: w.client(who, register=True, resource="register") for who in ("A", "B")}
    try:
        await asyncio.gather(*(c.login() for c in regs.values()))
        for who, c in regs.items():
            check(c.registered is True, f"{c.user}: registration failed: {c.register_error}")
            fields = field_names(c.registration_form)
            check(
                {"username", "password"} <= fields,
                f"{c.user}: registration form fields {sorted(fields)} lack username/password",
            )
            c.check_secure_login()
    finally:
        await asyncio.gather(*(c.disconnect() for c in regs.values()))

    # Same username again, different password: XEP-0077 §3.1 / RFC 6120 §8.3.3.2 <conflict/>.
    dup = Client(
        w.users["A"]["name"],
        "another-password",
        host=w.host,
        port=w.port,
        cert=w.cert,
        register=True,
        resource="dup",
    )
    try:
        dup.x.connect(w.host, w.port)
        await until(lambda: dup.registered is not None, WAIT, "the duplicate registration reply")
        check(
            dup.registered is False and dup.register_error == "conflict",
            f"re-registering {dup.user}: expected <conflict/>, got "
            f"{'success' if dup.registered else dup.register_error}",
        )
    finally:
        dup.abort()
    return f"registered {w.bare('A')} and {w.bare('B')}; duplicate got <conflict/>"


# --------------------------------------------------------------------------- b
async def b_login(w: World) -> str:
    """Both log in (STARTTLS + SCRAM), fetch the (empty) roster and send initial presence,
    which the server reflects to the sender (RFC 6121 §4.2.2)."""
    for who in ("A", "B"):
        w.clients[who] = w.client(who)
    a, b = w.clients["A"], w.clients["B"]
    await asyncio.gather(a.login(), b.login())
    notes = []
    for c in (a, b):
        c.check_secure_login()
        await c.get_roster()
        items = [str(j) for j in c.x.client_roster.keys() if str(j) != c.bare]
        check(not items, f"{c.user}: a new account's roster is not empty: {items}")
        notes.append(f"{c.user.split('-')[1]}: {c.tls_version}/{c.mechanism}")
    for c in (a, b):
        c.x.send_presence()
    for c in (a, b):
        await until(
            lambda c=c: [p for p in c.presences_from(c.full) if is_available(p)],
            WAIT,
            f"{c.user}: its own initial presence reflected back (RFC 6121 §4.2.2)",
        )
    return "; ".join(notes) + "; roster empty; own presence reflected"


# --------------------------------------------------------------------------- c
async def c_subscribe(w: World) -> str:
    """Mutual subscription (RFC 6121 §3.1): A subscribes to B, B approves and subscribes back,
    A approves; both rosters end with subscription 'both'."""
    a, b = w.clients["A"], w.clients["B"]
    a_bare, b_bare = a.bare, b.bare

    a.x.send_presence(pto=b_bare, ptype="subscribe")
    subs = await until(
        lambda: b.presences_from(a_bare, "subscribe"), WAIT, "B: A's subscribe request"
    )
    check(
        str(subs[0]["from"]) == a_bare,
        f"B: subscribe came from {subs[0]['from']}, expected the bare JID {a_bare} "
        "(RFC 6121 §3.1.2)",
    )
    b.x.send_presence(pto=a_bare, ptype="subscribed")
    await until(lambda: a.presences_from(b_bare, "subscribed"), WAIT, "A: B's subscribed")
    # RFC 6121 §3.1.5: after approval the contact's server sends the contact's current presence.
    await until(
        lambda: [p for p in a.presences_from(b.full) if is_available(p)],
        WAIT,
        "A: B's available presence after B approved (RFC 6121 §3.1.5)",
    )
    await until(
        lambda: a.subscription(b_bare) == "to",
        WAIT,
        lambda: f"A: roster item {b_bare} to become 'to' (is {a.subscription(b_bare)!r})",
    )

    b.x.send_presence(pto=a_bare, ptype="subscribe")
    await until(lambda: a.presences_from(b_bare, "subscribe"), WAIT, "A: B's subscribe request")
    a.x.send_presence(pto=b_bare, ptype="subscribed")
    await until(lambda: b.presences_from(a_bare, "subscribed"), WAIT, "B: A's subscribed")
    await until(
        lambda: [p for p in b.presences_from(a.full) if is_available(p)],
        WAIT,
        "B: A's available presence after A approved (RFC 6121 §3.1.5)",
    )
    try:
        await until(
            lambda: a.subscription(b_bare) == "both" and b.subscription(a_bare) == "both",
            WAIT,
            "both roster items to become 'both'",
        )
    except CheckFailed as e:
        raise CheckFailed(
            f"{e}: A has {b_bare}={a.subscription(b_bare)!r}, "
            f"B has {a_bare}={b.subscription(a_bare)!r}"
        ) from None
    note = ""
    early = _presence_before_subscribed(a, b) + _presence_before_subscribed(b, a)
    if early:
        note = f" (note: {', '.join(early)})"
    return "A↔B subscription 'both' on both rosters" + note


def _presence_before_subscribed(user: Client, contact: Client) -> list[str]:
    """RFC 6121 §3.1.5: the contact's server sends <subscribed/> and *then* current presence.
    Reports (without failing) when the user saw the contact's presence first."""
    seq = user.presences
    first_avail = next(
        (i for i, p in enumerate(seq) if str(p["from"]) == contact.full and is_available(p)), None
    )
    first_subd = next(
        (
            i
            for i, p in enumerate(seq)
            if p["from"].bare == contact.bare and p["type"] == "subscribed"
        ),
        None,
    )
    if first_avail is not None and first_subd is not None and first_avail < first_subd:
        who = user.user.split("-")[1].upper()
        return [f"{who} got the contact's presence before its <subscribed/>"]
    return []


# --------------------------------------------------------------------------- d
def _presence_with(c: Client, frm: str, show: str, status: str) -> list[Any]:
    return [
        p
        for p in c.presences_from(frm)
        if is_available(p) and p["show"] == show and p["status"] == status
    ]


async def d_presence(w: World) -> str:
    """Presence broadcast to subscribers (RFC 6121 §4.4): show and status arrive intact."""
    a, b = w.clients["A"], w.clients["B"]
    a.x.send_presence(pshow="away", pstatus="at lunch")
    await until(
        lambda: _presence_with(b, a.full, "away", "at lunch"),
        WAIT,
        f"B: presence from {a.full} with show 'away' / status 'at lunch'",
    )
    b.x.send_presence(pshow="dnd", pstatus="busy")
    await until(
        lambda: _presence_with(a, b.full, "dnd", "busy"),
        WAIT,
        f"A: presence from {b.full} with show 'dnd' / status 'busy'",
    )
    return "away/'at lunch' reached B; dnd/'busy' reached A"


# --------------------------------------------------------------------------- e
async def e_message(w: World) -> str:
    """Chat messages both ways (RFC 6121 §5): body, type and the stamped full-JID from."""
    a, b = w.clients["A"], w.clients["B"]
    hello = f"hello from A {secrets.token_hex(3)}"
    reply = f"reply from B {secrets.token_hex(3)}"

    def got(c: Client, body: str) -> list[Any]:
        return [m for m in c.messages if m["body"] == body]

    a.x.send_message(mto=b.bare, mbody=hello, mtype="chat")
    m = (await until(lambda: got(b, hello), WAIT, "B: A's chat message"))[0]
    check(str(m["from"]) == a.full, f"B: message from {m['from']}, expected {a.full}")
    check(m["type"] == "chat", f"B: message type {m['type']!r}, expected 'chat'")
    b.x.send_message(mto=m["from"], mbody=reply, mtype="chat")
    r = (await until(lambda: got(a, reply), WAIT, "A: B's reply"))[0]
    check(str(r["from"]) == b.full, f"A: reply from {r['from']}, expected {b.full}")
    check(r["type"] == "chat", f"A: reply type {r['type']!r}, expected 'chat'")
    check(str(r["to"]) == a.full, f"A: reply to {r['to']}, expected {a.full}")
    return "A→B and B→A delivered with full-JID from"


# --------------------------------------------------------------------------- f
async def f_unavailable(w: World) -> str:
    """B closes its stream; A gets unavailable presence from B's full JID (RFC 6121 §4.5.2)."""
    a, b = w.clients["A"], w.clients["B"]
    b_full = b.full
    await b.disconnect()
    del w.clients["B"]
    await until(
        lambda: a.presences_from(b_full, "unavailable"), WAIT, f"A: unavailable from {b_full}"
    )
    return f"A saw {b_full} go unavailable"


# --------------------------------------------------------------------------- h
async def h_watch_shutdown(w: World, ready_file: str, timeout: float) -> str:
    """A is online when the node gets SIGTERM: the stream must end with the
    <system-shutdown/> stream error and </stream:stream> (RFC 6120 §4.9.3.20, §4.4)."""
    a = w.client("A", resource="shutdown")
    w.clients["A"] = a
    await a.login()
    a.x.send_presence()
    with open(ready_file, "w") as f:
        f.write("ready\n")
    await until(lambda: a.disconnected, timeout, "A: the server to close the stream")
    conds = [c for c, _ in a.stream_errors]
    check(
        "system-shutdown" in conds,
        f"A: stream closed without <system-shutdown/> (stream errors {conds}, "
        f"disconnect reason {a.disconnect_reason!r})",
    )
    check(
        a.disconnect_reason == "End of stream",
        f"A: got <system-shutdown/> but no </stream:stream> (reason {a.disconnect_reason!r})",
    )
    del w.clients["A"]
    return "online client got <system-shutdown/> and </stream:stream>"


# --------------------------------------------------------------------------- g
async def g_restart(w: World) -> str:
    """After SIGTERM and restart on the same data dir: both accounts still log in, both
    rosters still hold the other with subscription 'both', and presence flows again
    (broadcast of B's initial presence to A, probe answered for B, RFC 6121 §4.2)."""
    a = w.client("A", resource="after-restart")
    w.clients["A"] = a
    await a.login()
    a.check_secure_login()
    await a.get_roster()
    b_bare = w.bare("B")
    check(
        a.subscription(b_bare) == "both",
        f"A's roster after restart: {b_bare} is {a.subscription(b_bare)!r}, expected 'both' "
        f"(items: {[str(j) for j in a.x.client_roster.keys()]})",
    )
    a.x.send_presence(pshow="chat", pstatus="back")

    b = w.client("B", resource="after-restart")
    w.clients["B"] = b
    await b.login()
    b.check_secure_login()
    await b.get_roster()
    a_bare = w.bare("A")
    check(
        b.subscription(a_bare) == "both",
        f"B's roster after restart: {a_bare} is {b.subscription(a_bare)!r}, expected 'both' "
        f"(items: {[str(j) for j in b.x.client_roster.keys()]})",
    )
    b.x.send_presence()
    await until(
        lambda: [p for p in a.presences_from(b.full) if is_available(p)],
        WAIT,
        "A: B's initial presence after the restart",
    )
    await until(
        lambda: _presence_with(b, a.full, "chat", "back"),
        WAIT,
        "B: A's current presence (chat/'back') in answer to B's probe",
    )
    return "rosters persisted ('both' both ways); presence flows after restart"
