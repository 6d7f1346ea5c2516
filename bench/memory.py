#!/usr/bin/env python3
"""Memory of a server process tree, for scripts/bench.sh (python3 stdlib only).

A server's memory is the PSS (proportional set size, /proc/PID/smaps_rollup) summed over the
process and all its descendants: for a single-process server (Rendezvous, Prosody, ejabberd's
beam.smp with its small helper ports) it is its RSS less its share of pages mapped by other
processes (shared libraries); for Kamailio, whose workers share one shared-memory segment,
summing RSS would count that segment once per process, PSS counts it once. VmRSS of the main
process is reported beside it.

  memory.py kib PID
      prints "PSS_TREE_KIB VMRSS_KIB NPROC".
  memory.py sample --pid PID --watch LOADGEN_PID --out FILE [--base KIB]
                   [--port PORT --min-conns N] [--interval 0.5] [--settle 4]
      samples the server while LOADGEN_PID runs and writes FILE (JSON):
      {"baseline_kib", "plateau_kib", "max_kib", "method", "samples": [[t, kib, conns], ...]}.
      The plateau is the first moment the memory is settled: the load generator has run at
      least --settle seconds, (with --port) at least --min-conns TCP connections to PORT are
      ESTABLISHED, memory is at least 1 MiB over the baseline, and over the last --settle
      seconds it moved by at most 1% (or 256 KiB). If that never happens, the largest sample
      is used ("method": "max").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += children(p)
    return seen


def field_kib(path: str, name: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def kib(pid: int) -> tuple[int, int, int]:
    """(PSS summed over the tree, VmRSS of pid, number of processes) in KiB."""
    procs = tree(pid)
    pss = sum(field_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in procs)
    return pss, field_kib(f"/proc/{pid}/status", "VmRSS"), len(procs)


def established(port: int) -> int:
    """ESTABLISHED TCP connections whose local port is `port` (server side), IPv4 and IPv6."""
    n = 0
    hexport = f"{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].rsplit(":", 1)[1] == hexport and parts[3] == "01":
                        n += 1
        except OSError:
            pass
    return n


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def sample(a: argparse.Namespace) -> int:
    t0 = time.time()
    base = a.base if a.base is not None else kib(a.pid)[0]
    samples: list[list[float]] = []
    plateau = None
    while alive(a.watch) and alive(a.pid):
        t = time.time() - t0
        m = kib(a.pid)[0]
        conns = established(a.port) if a.port else 0
        samples.append([round(t, 2), m, conns])
        if plateau is None and t >= a.settle and m >= base + 1024:
            if not a.port or conns >= a.min_conns:
                window = [s[1] for s in samples if s[0] >= t - a.settle]
                if len(window) >= 3 and max(window) - min(window) <= max(0.01 * m, 256):
                    if not a.port or all(s[2] >= a.min_conns for s in samples if s[0] >= t - a.settle):
                        plateau = m
        time.sleep(a.interval)
    peak = max((s[1] for s in samples), default=base)
    out = {
        "baseline_kib": base,
        "plateau_kib": plateau if plateau is not None else peak,
        "max_kib": peak,
        "method": "plateau" if plateau is not None else "max",
        "max_conns": max((s[2] for s in samples), default=0),
        "samples": samples,
    }
    with open(a.out, "w") as f:
        json.dump(out, f)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kib")
    k.add_argument("pid", type=int)
    s = sub.add_parser("sample")
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--watch", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--base", type=int)
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--min-conns", type=int, default=0)
    s.add_argument("--interval", type=float, default=0.5)
    s.add_argument("--settle", type=float, default=4.0)
    a = ap.parse_args()
    if a.cmd == "kib":
        pss, rss, n = kib(a.pid)
        print(pss, rss, n)
        return 0 if n and alive(a.pid) else 1
    return sample(a)


if __name__ == "__main__":
    sys.exit(main())
