#!/usr/bin/env python3
"""Memory and CPU of a server (and CPU of the load generator) for scripts/bench.sh (stdlib only).

A server's memory is the PSS (proportional set size, /proc/PID/smaps_rollup) summed over the
process and all its descendants: for a single-process server (Rendezvous, Prosody, ejabberd's
beam.smp with its small helper ports) it is its RSS less its share of pages mapped by other
processes (shared libraries); for Kamailio, whose workers share one shared-memory segment,
summing RSS would count that segment once per process, PSS counts it once. CPU is utime +
stime summed over the same processes (for the load generator: `timeout` and its child).

  monitor.py kib PID
      prints "PSS_TREE_KIB VMRSS_KIB NPROC".
  monitor.py calm [--cores 0,1] [--below 15] [--for 3] [--max 300]
      waits until each of those cores was less than --below % busy over --for seconds (this
      machine is shared: a build on the server's core halves a server's figure), at most
      --max seconds; prints the busiest core's load; exit status 1 on timeout.
  monitor.py quiet PID [--below 10] [--for 3] [--max 300]
      waits until the process tree used less than --below % of a core over --for seconds
      (a server still working off a backlog), at most --max seconds; exit status 1 on timeout.
  monitor.py watch --pid SERVER_PID --watch LOADGEN_PID --log LOADGEN_OUTPUT --out FILE
                   [--mem] [--base KIB] [--port PORT --min-conns N] [--kamailio-ctl SOCKET]
                   [--interval 0.5] [--settle 4]
      samples while LOADGEN_PID runs and writes FILE (JSON):
      "phases": one per phase line the load generator prints with `--progress never`
        (`loadgen login: …`, `loadgen step 3/9 (562/s): …`, `loadgen measure: …`), each with
        its start and end (the previous line's time, this line's time) and how busy the
        server's and the load generator's processes were meanwhile ("server_cpu_pct",
        "loadgen_cpu_pct"; 100 = one core), and how busy the two cores were in all
        ("server_core_pct", "loadgen_core_pct", from /proc/stat; --cores, default 0,1): on a
        shared machine, the server core's busy time beyond the server's own is someone else's;
      with --mem also "baseline_kib" (--base, or the first sample), "plateau_kib", "max_kib",
        "method", "hold", "max_conns", "kamailio_shm_real_used_kib" and the samples. The
        plateau is the median of the samples in the second half of the hold (from the `login`
        or `roster setup` line to the `hold` line; "method": "hold"); without those lines,
        the first moment memory settled: the load generator has run --settle seconds, (with
        --port) at least --min-conns TCP connections to PORT are ESTABLISHED, memory is at
        least 1 MiB over the baseline and moved by at most 1% (or 256 KiB) over the last
        --settle seconds ("method": "settled"); failing that the largest sample ("max").
        With --kamailio-ctl each sample also asks Kamailio (kamcmd core.shmmem) how much of
        its shared memory is in use (real_used), reported at the plateau: PSS keeps the
        high-water mark of every page ever touched, this does not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
PHASE = re.compile(r"^loadgen ([a-z][^:]*):(.*)$")


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
    seen: list[int] = []
    todo = [pid]
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


def cpu_s(pids: list[int]) -> float:
    """utime + stime of these processes (all their threads), seconds."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def core_busy_s(cores: list[int]) -> list[float]:
    """Busy time (all but idle and iowait) of each core since boot, seconds."""
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    name, *v = line.split()
                    v = [int(x) for x in v]
                    out[int(name[3:])] = (sum(v[:8]) - v[3] - v[4]) / TICK
    except OSError:
        pass
    return [out.get(c, 0.0) for c in cores]


def calm(a: argparse.Namespace) -> int:
    cores = [int(c) for c in a.cores.split(",")]
    end = time.time() + a.max
    worst = 100.0
    while time.time() < end:
        t0, b0 = time.time(), core_busy_s(cores)
        time.sleep(a.window)
        t1, b1 = time.time(), core_busy_s(cores)
        worst = max(100 * (y - x) / (t1 - t0) for x, y in zip(b0, b1))
        if worst < a.below:
            print(f"{worst:.0f}")
            return 0
    print(f"{worst:.0f}")
    return 1


def quiet(a: argparse.Namespace) -> int:
    end = time.time() + a.max
    prev_t, prev = time.time(), cpu_s(tree(a.pid))
    while time.time() < end and alive(a.pid):
        time.sleep(a.window)
        t, c = time.time(), cpu_s(tree(a.pid))
        if 100 * (c - prev) / (t - prev_t) < a.below:
            return 0
        prev_t, prev = t, c
    return 1


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
        except (OSError, StopIteration):
            pass
    return n


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kamailio_shm_kib(sock: str) -> int | None:
    """Kamailio's shared memory in use (core.shmmem real_used), KiB."""
    try:
        out = subprocess.run(["kamcmd", "-s", sock, "core.shmmem"], capture_output=True,
                             text=True, timeout=2).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"real_used:\s*(\d+)", out)
    return int(m.group(1)) // 1024 if m else None


class LogTail:
    """New complete lines of a growing file."""

    def __init__(self, path: str | None):
        self.path, self.pos, self.rest = path, 0, ""

    def lines(self) -> list[str]:
        if not self.path:
            return []
        try:
            with open(self.path, errors="replace") as f:
                f.seek(self.pos)
                data = f.read()
                self.pos = f.tell()
        except OSError:
            return []
        data = self.rest + data
        *done, self.rest = data.split("\n")
        return done


def watch(a: argparse.Namespace) -> int:
    t0 = time.time()
    log = LogTail(a.log)
    base = a.base if a.base is not None else (kib(a.pid)[0] if a.mem else 0)
    samples: list[list] = []
    marks: list[tuple[float, str, str]] = []   # (t, phase name, rest of the line)
    cpu_at: list[tuple] = []  # (t, server cpu s, loadgen cpu s, server core busy s, loadgen core busy s)
    cores = [int(c) for c in a.cores.split(",")]
    settled = None
    hold: list[float | None] = [None, None]
    while alive(a.watch) and alive(a.pid):
        t = time.time() - t0
        cpu_at.append((t, cpu_s(tree(a.pid)), cpu_s(tree(a.watch)), *core_busy_s(cores)))
        for line in log.lines():
            m = PHASE.match(line)
            if m:
                marks.append((t, m.group(1), m.group(2).strip()))
                if m.group(1) in ("login", "roster setup") and hold[0] is None:
                    hold[0] = t
                if m.group(1) == "hold" and hold[0] is not None and hold[1] is None:
                    hold[1] = t
        if a.mem:
            m_kib = kib(a.pid)[0]
            conns = established(a.port) if a.port else 0
            shm = kamailio_shm_kib(a.kamailio_ctl) if a.kamailio_ctl else None
            samples.append([round(t, 2), m_kib, conns, shm])
            if settled is None and t >= a.settle and m_kib >= base + 1024:
                window = [x for x in samples if x[0] >= t - a.settle]
                mems = [x[1] for x in window]
                if (len(window) >= 3 and max(mems) - min(mems) <= max(0.01 * m_kib, 256)
                        and (not a.port or all(x[2] >= a.min_conns for x in window))):
                    settled = (m_kib, shm)
        time.sleep(a.interval)
    for line in log.lines():  # lines written at the very end
        m = PHASE.match(line)
        if m:
            marks.append((time.time() - t0, m.group(1), m.group(2).strip()))

    def busy(start: float, end: float) -> list[float | None]:
        inside = [c for c in cpu_at if start - a.interval <= c[0] <= end + a.interval]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] <= 0:
            return [None] * 4
        dt = inside[-1][0] - inside[0][0]
        return [round(100 * (inside[-1][i] - inside[0][i]) / dt, 1) for i in range(1, 5)]

    phases = []
    prev = 0.0
    for t, name, rest in marks:
        s_pct, l_pct, s_core, l_core = busy(prev, t)
        phases.append({"name": name, "line": rest, "start": round(prev, 2), "end": round(t, 2),
                       "server_cpu_pct": s_pct, "loadgen_cpu_pct": l_pct,
                       "server_core_pct": s_core, "loadgen_core_pct": l_core})
        prev = t
    out: dict = {"phases": phases}
    if a.mem:
        peak = max((x[1] for x in samples), default=base)
        method, plateau, shm = "max", peak, None
        if hold[0] is not None and hold[1] is not None:
            mid = (hold[0] + hold[1]) / 2
            inside = sorted((x[1], x[3] or 0) for x in samples if mid <= x[0] <= hold[1])
            if inside:
                method, (plateau, shm) = "hold", inside[len(inside) // 2]
                shms = sorted(x[3] for x in samples if mid <= x[0] <= hold[1] and x[3] is not None)
                shm = shms[len(shms) // 2] if shms else None
        if method == "max" and settled is not None:
            method, (plateau, shm) = "settled", settled
        out.update({
            "baseline_kib": base,
            "plateau_kib": plateau,
            "max_kib": peak,
            "method": method,
            "hold": hold,
            "max_conns": max((x[2] for x in samples), default=0),
            "kamailio_shm_real_used_kib": shm,
            "samples": samples,
        })
    with open(a.out, "w") as f:
        json.dump(out, f)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kib")
    k.add_argument("pid", type=int)
    w = sub.add_parser("watch")
    w.add_argument("--pid", type=int, required=True)
    w.add_argument("--watch", type=int, required=True)
    w.add_argument("--log")
    w.add_argument("--out", required=True)
    w.add_argument("--mem", action="store_true")
    w.add_argument("--base", type=int)
    w.add_argument("--port", type=int, default=0)
    w.add_argument("--min-conns", type=int, default=0)
    w.add_argument("--kamailio-ctl")
    w.add_argument("--interval", type=float, default=0.5)
    w.add_argument("--settle", type=float, default=4.0)
    w.add_argument("--cores", default="0,1")
    q = sub.add_parser("quiet")
    q.add_argument("pid", type=int)
    q.add_argument("--below", type=float, default=10.0)
    q.add_argument("--for", dest="window", type=float, default=3.0)
    q.add_argument("--max", type=float, default=300.0)
    c = sub.add_parser("calm")
    c.add_argument("--cores", default="0,1")
    c.add_argument("--below", type=float, default=15.0)
    c.add_argument("--for", dest="window", type=float, default=3.0)
    c.add_argument("--max", type=float, default=300.0)
    a = ap.parse_args()
    if a.cmd == "calm":
        return calm(a)
    if a.cmd == "quiet":
        return quiet(a)
    if a.cmd == "kib":
        pss, rss, n = kib(a.pid)
        print(pss, rss, n)
        return 0 if n and alive(a.pid) else 1
    return watch(a)


if __name__ == "__main__":
    sys.exit(main())
