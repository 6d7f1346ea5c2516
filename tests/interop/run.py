#!/usr/bin/env python3
"""Entry point of the Rendezvous interop suite (driven by scripts/interop.sh).

Phases (the node's lifecycle is handled by interop.sh):
  main            scenarios a–f against a fresh node; writes the state file (users).
  watch-shutdown  logs A in, writes --ready, and waits for the node to end the stream
                  (interop.sh sends SIGTERM meanwhile); scenario h (client side).
  restart         scenario g against the restarted node.

Each scenario result is appended to --results as one line
``PASS|FAIL<TAB>id<TAB>title<TAB>reason`` and echoed to stdout.
Exit status: 0 when every scenario of the phase passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import CheckFailed  # noqa: E402
import scenarios as sc  # noqa: E402

SCENARIO_TIMEOUT = 20.0

TITLES = {
    "a": "in-band registration (XEP-0077)",
    "b": "login STARTTLS+SCRAM, roster, initial presence",
    "c": "mutual subscription -> 'both'",
    "d": "presence show/status both ways",
    "e": "chat message and reply",
    "f": "disconnect -> unavailable",
    "h": "SIGTERM: <system-shutdown/>, clean exit",
    "g": "restart: rosters persisted, presence flows",
}
# Scenario -> scenarios it needs (a failure there makes it 'not run').
NEEDS = {"b": "a", "c": "b", "d": "c", "e": "b", "f": "b", "h": "a", "g": "c"}


class Reporter:
    def __init__(self, results: Path, prior: Path | None) -> None:
        self.results = results
        self.outcome: dict[str, bool] = {}
        self.prior: dict[str, bool] = {}
        if prior is not None and prior.exists():
            for line in prior.read_text().splitlines():
                parts = line.split("\t")
                if len(parts) >= 2:
                    self.prior[parts[1]] = parts[0] == "PASS"

    def record(self, sid: str, ok: bool, reason: str, secs: float | None = None) -> None:
        self.outcome[sid] = ok
        reason = " ".join(reason.split())  # one line, no tabs
        verdict = "PASS" if ok else "FAIL"
        timing = f" [{secs:.1f}s]" if secs is not None else ""
        print(f"{verdict} {sid}. {TITLES[sid]}: {reason}{timing}", flush=True)
        with self.results.open("a") as f:
            f.write(f"{verdict}\t{sid}\t{TITLES[sid]}\t{reason}{timing}\n")


async def run_one(
    rep: Reporter, sid: str, fn: Callable[[], Awaitable[str]], timeout: float = SCENARIO_TIMEOUT
) -> bool:
    need = NEEDS.get(sid)
    if need and (rep.outcome.get(need) is False or rep.prior.get(need) is False):
        rep.record(sid, False, f"not run: depends on scenario {need}, which failed")
        return False
    t0 = time.monotonic()
    try:
        note = await asyncio.wait_for(fn(), timeout)
        rep.record(sid, True, note, time.monotonic() - t0)
        return True
    except CheckFailed as e:
        rep.record(sid, False, str(e), time.monotonic() - t0)
    except asyncio.TimeoutError:
        rep.record(sid, False, f"scenario timed out after {timeout:.0f}s", time.monotonic() - t0)
    except Exception as e:  # noqa: BLE001 - a crash in a scenario is a FAIL with the trace
        logging.getLogger("interop").error("scenario %s crashed:\n%s", sid, traceback.format_exc())
        rep.record(sid, False, f"{type(e).__name__}: {e}", time.monotonic() - t0)
    return False


async def phase_main(args: argparse.Namespace, rep: Reporter) -> None:
    w = sc.World(args.host, args.port, args.cert, users=sc.new_users())
    args.state.write_text(json.dumps({"users": w.users}, indent=2))
    try:
        await run_one(rep, "a", lambda: sc.a_register(w))
        await run_one(rep, "b", lambda: sc.b_login(w))
        await run_one(rep, "c", lambda: sc.c_subscribe(w))
        await run_one(rep, "d", lambda: sc.d_presence(w))
        await run_one(rep, "e", lambda: sc.e_message(w))
        await run_one(rep, "f", lambda: sc.f_unavailable(w))
    finally:
        await asyncio.wait_for(w.close_all(), 10)


async def phase_watch_shutdown(args: argparse.Namespace, rep: Reporter) -> None:
    w = sc.World(args.host, args.port, args.cert, users=json.loads(args.state.read_text())["users"])
    try:
        await run_one(
            rep,
            "h",
            lambda: sc.h_watch_shutdown(w, str(args.ready), args.wait),
            timeout=args.wait + 20,
        )
    finally:
        for c in w.clients.values():
            c.abort()


async def phase_restart(args: argparse.Namespace, rep: Reporter) -> None:
    w = sc.World(args.host, args.port, args.cert, users=json.loads(args.state.read_text())["users"])
    try:
        await run_one(rep, "g", lambda: sc.g_restart(w))
    finally:
        await asyncio.wait_for(w.close_all(), 10)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("phase", choices=["main", "watch-shutdown", "restart"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True, help="the node's <data_dir>/cert.pem")
    p.add_argument("--state", type=Path, required=True, help="JSON file shared by the phases")
    p.add_argument("--results", type=Path, required=True, help="results file (appended)")
    p.add_argument("--prior", type=Path, help="results of earlier phases (default: --results)")
    p.add_argument("--ready", type=Path, help="watch-shutdown: written once A is online")
    p.add_argument("--wait", type=float, default=20.0, help="watch-shutdown: max wait (s)")
    p.add_argument("--log", type=Path, help="slixmpp DEBUG log file")
    args = p.parse_args()

    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.ERROR)
    handlers.append(console)
    if args.log:
        fh = logging.FileHandler(args.log)
        fh.setLevel(logging.DEBUG)
        handlers.append(fh)
    logging.basicConfig(
        level=logging.DEBUG if args.log else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
    )

    rep = Reporter(args.results, args.prior or args.results)
    phase = {
        "main": phase_main,
        "watch-shutdown": phase_watch_shutdown,
        "restart": phase_restart,
    }[args.phase]
    asyncio.run(phase(args, rep))
    return 0 if rep.outcome and all(rep.outcome.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
