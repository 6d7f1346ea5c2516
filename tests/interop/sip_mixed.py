#!/usr/bin/env python3
"""Mixed XMPP + SIP interop check, driven by scripts/sipp.sh against a node with
``presence_policy = "domain"`` and ``sip_auth = false``.

XMPP side (slixmpp, through harness.Client: STARTTLS verified against the node's self-signed
cert.pem, SCRAM): alice logs in, subscribes to bob (approved by the server under the domain
policy) and goes online with status "xmpp-hello".
SIP side (sipp, tests/sipp/mixed_bob.xml): bob PUBLISHes a note "sip-hello", SUBSCRIBEs to
alice and checks that the NOTIFY body holds "xmpp-hello" (sipp exits 0 only then).
Back on the XMPP side: alice must have received available presence from
bob@localhost/<resource> whose status is "sip-hello" (RFC 8048 §4: a published tuple is shown
as a resource of the user).

Writes one line ``PASS|FAIL<TAB>mixed<TAB>reason`` to --results; exit 0 on PASS.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DOMAIN, CheckFailed, Client, check, is_available, until  # noqa: E402

WAIT = 10.0  # s: bound for any single expected XMPP event
SIPP_LIMIT = 25  # s: hard cap on the sipp run (sipp itself has -timeout 15s)
TOTAL_LIMIT = 60  # s: hard cap on the whole check
XMPP_STATUS = "xmpp-hello"
SIP_NOTE = "sip-hello"


async def run_sipp(cmd: list[str], out: Path) -> int:
    """Runs sipp without blocking the slixmpp event loop; returns its exit status."""
    with out.open("wb") as f:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=f, stderr=asyncio.subprocess.STDOUT
        )
        try:
            return await asyncio.wait_for(proc.wait(), SIPP_LIMIT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return 124


def sipp_reason(errors: Path, rc: int) -> str:
    """sipp's last logged event on one line (a failed regexp check: the regexp and the start
    of the text it looked in), or its exit status."""
    try:
        text = errors.read_text(errors="replace")
    except OSError:
        text = ""
    events = re.split(r"^\d{4}-\d{2}-\d{2}\t[^\t]*\t[\d.]+: ", text, flags=re.M)[1:]
    if not events:
        return f"sipp exit status {rc}"
    ev = " ".join(events[-1].split())
    m = re.match(r"Failed regexp match: looking in '(.*)', with regexp '(.*)'$", ev)
    if m:
        return f"no match for regexp '{m.group(2)[:160]}' in '{m.group(1)[:100]}...'"
    return ev[:240]


async def mixed(args: argparse.Namespace) -> str:
    alice = Client("alice", args.alice_password, host="127.0.0.1", port=args.port, cert=args.cert,
                   resource="mixed")
    bob_bare = f"bob@{DOMAIN}"
    try:
        await alice.login()
        alice.check_secure_login()
        await alice.get_roster()
        alice.x.send_presence(pstatus=XMPP_STATUS)
        alice.x.send_presence(pto=bob_bare, ptype="subscribe")
        await until(
            lambda: alice.subscription(bob_bare) in ("to", "both"),
            WAIT,
            lambda: f"alice: roster item {bob_bare} to become 'to' "
            f"(is {alice.subscription(bob_bare)!r}; domain policy approves it)",
        )

        # SIP bob: publish sip-hello, watch alice and expect xmpp-hello in the NOTIFY.
        errors = args.work / "mixed_bob_errors.log"
        cmd = [
            args.sipp, "-sf", str(args.scenario), "-m", "1", "-s", "alice", "-key", "watcher", "bob",
            "-i", "127.0.0.1", "-p", str(args.sipp_port), "-t", args.transport,
            "-timeout", "15s", "-timeout_error", "-nostdin",
            "-trace_err", "-error_file", str(errors),
            "-trace_msg", "-message_file", str(args.work / "mixed_bob_messages.log"),
            f"127.0.0.1:{args.sip_port}",
        ]
        logging.getLogger("interop").info("running %s", " ".join(cmd))
        rc = await run_sipp(cmd, args.work / "mixed_bob.out")
        sip_ok = rc == 0
        sip_why = "" if sip_ok else f"SIP bob: {sipp_reason(errors, rc)} (sipp exit {rc})"

        # XMPP alice: bob's publication arrives as presence of a resource of bob.
        def from_bob() -> list:
            return [
                p for p in alice.presences_from(bob_bare)
                if is_available(p) and p["from"].resource and p["status"] == SIP_NOTE
            ]

        try:
            got = await until(
                from_bob,
                WAIT,
                lambda: f"presence from {bob_bare}/<resource> with status {SIP_NOTE!r} "
                f"(got {[(str(p['from']), p['type'], p['status']) for p in alice.presences_from(bob_bare)]})",
            )
            xmpp_ok, xmpp_why = True, f"alice got {got[0]['from']} status {SIP_NOTE!r}"
        except CheckFailed as e:
            xmpp_ok, xmpp_why = False, f"XMPP alice: {e}"

        check(sip_ok and xmpp_ok, "; ".join(w for w in (sip_why, "" if xmpp_ok else xmpp_why) if w))
        return f"SIP bob's NOTIFY held {XMPP_STATUS!r}; {xmpp_why}"
    finally:
        await alice.disconnect()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, required=True, help="the node's XMPP c2s port")
    p.add_argument("--cert", required=True, help="the node's <data_dir>/cert.pem")
    p.add_argument("--sip-port", type=int, required=True, help="the node's SIP port")
    p.add_argument("--sipp-port", type=int, required=True, help="sipp's local port")
    p.add_argument("--transport", default="u1", help="sipp -t (u1 or t1)")
    p.add_argument("--alice-password", required=True)
    p.add_argument("--sipp", default="sipp")
    p.add_argument("--scenario", type=Path, required=True, help="tests/sipp/mixed_bob.xml")
    p.add_argument("--work", type=Path, required=True, help="directory for sipp's logs")
    p.add_argument("--results", type=Path, required=True, help="results file (appended)")
    p.add_argument("--log", type=Path, help="slixmpp DEBUG log file")
    args = p.parse_args()

    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setLevel(logging.ERROR)
    if args.log:
        fh = logging.FileHandler(args.log)
        fh.setLevel(logging.DEBUG)
        handlers.append(fh)
    logging.basicConfig(
        level=logging.DEBUG if args.log else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
    )

    t0 = time.monotonic()
    try:
        note = asyncio.run(asyncio.wait_for(mixed(args), TOTAL_LIMIT))
        ok, reason = True, note
    except CheckFailed as e:
        ok, reason = False, str(e)
    except asyncio.TimeoutError:
        ok, reason = False, f"timed out after {TOTAL_LIMIT}s"
    except Exception as e:  # noqa: BLE001 - a crash is a FAIL with its message
        logging.getLogger("interop").exception("mixed crashed")
        ok, reason = False, f"{type(e).__name__}: {e}"
    reason = " ".join(reason.split()) + f" [{time.monotonic() - t0:.1f}s]"
    line = f"{'PASS' if ok else 'FAIL'}\tmixed\t{reason}"
    print(line, flush=True)
    with args.results.open("a") as f:
        f.write(line + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
