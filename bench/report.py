#!/usr/bin/env python3
"""The comparison table of scripts/bench.sh (python3 stdlib only).

  report.py report --raw bench/results/raw --out bench/results
      reads the raw files bench.sh wrote (meta.json, the load generator summaries
      <server>-n<N>-{setup,logins,idle,ramp}.json and <server>-sip-{subs,publish-r<R>,cycle-r<R>}.json,
      the memory samples *-mem.json and *-start.json), prints one table (figure x server, the
      ratio Rendezvous / each peer, the target of that ratio and whether it is met) and writes it
      to OUT/<UTC date and time>.md and .json and OUT/latest.md.
  report.py step KIND RATE FILE
      exit status 0 when the SIP ramp step in FILE passed: KIND (publish | cycle) transactions
      with < 1% failures (non-2xx or timeout) and at least 90% of RATE answered per second.
      bench.sh stops a SIP ramp at the first step that does not pass; the report uses the
      same rule.

The raw summaries follow the `rendezvous loadgen --json` contract (version 1).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from typing import Any

SERVERS = ["rendezvous", "prosody", "ejabberd", "kamailio"]
TITLE = {"rendezvous": "Rendezvous", "prosody": "Prosody", "ejabberd": "ejabberd", "kamailio": "Kamailio"}
PEERS = SERVERS[1:]
STEP_MAX_FAILED = 0.01
STEP_MIN_ANSWERED = 0.9


def load(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def step_verdict(kind: str, rate: float, d: dict) -> tuple[bool, str]:
    """Whether a SIP ramp step passed, and why not."""
    tx = d.get("sip", {}).get(kind) or {}
    sent, failed, per_s = tx.get("sent", 0), tx.get("failed", 0), tx.get("per_s", 0.0)
    if not sent:
        return False, "nothing sent"
    if failed > STEP_MAX_FAILED * sent:
        return False, f"{failed} of {sent} failed"
    if per_s < STEP_MIN_ANSWERED * rate:
        return False, f"{per_s:.0f}/s answered of {rate:.0f}/s asked"
    return True, "ok"


def sip_ramp(raw: str, srv: str, kind: str) -> dict | None:
    """The SIP ramp of one server: steps in rate order, the highest passing one."""
    steps = []
    for path in glob.glob(os.path.join(raw, f"{srv}-sip-{kind}-r*.json")):
        m = re.search(r"-r(\d+(?:\.\d+)?)\.json$", path)
        d = load(path)
        if not m or d is None:
            continue
        rate = float(m.group(1))
        ok, why = step_verdict(kind, rate, d)
        tx = d["sip"][kind]
        steps.append({"rate": rate, "ok": ok, "why": why, "per_s": tx.get("per_s", 0.0),
                      "mon": path[:-len(".json")] + "-mon.json",
                      "p99_ms": tx.get("latency", {}).get("p99_ms"), "sent": tx.get("sent", 0),
                      "failed": tx.get("failed", 0)})
    if not steps:
        return None
    steps.sort(key=lambda s: s["rate"])
    best = None
    for s in steps:
        if not s["ok"]:
            break
        best = s
    return {"steps": steps, "best": best, "all_passed": all(s["ok"] for s in steps)}


class Table:
    """Rows of figures; each row has a value per server (or None)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []
        # Where a measured figure hit its limit: CPU of the server's and the load generator's
        # core at the top passing step and at the first failing one.
        self.limits: list[dict[str, Any]] = []

    def add(self, key: str, label: str, unit: str, values: dict[str, float | None],
            better: str = "higher", targets: list[tuple[str, float]] | None = None,
            absolute: tuple[str, float] | None = None, fmt: str = "int",
            marks: dict[str, str] | None = None) -> None:
        """targets: (peer, minimum Rendezvous/peer ratio); absolute: ("<=", bound) on Rendezvous."""
        row: dict[str, Any] = {"key": key, "label": label, "unit": unit, "better": better,
                               "values": values, "fmt": fmt, "marks": marks or {},
                               "ratios": {}, "targets": []}
        rv = values.get("rendezvous")
        for p in PEERS:
            v = values.get(p)
            if rv is not None and v:
                row["ratios"][p] = rv / v
        for peer, want in targets or []:
            r = row["ratios"].get(peer)
            row["targets"].append({"peer": peer, "ratio_at_least": want, "ratio": r,
                                   "met": None if r is None else r >= want})
        if absolute:
            op, bound = absolute
            met = None if rv is None else (rv <= bound if op == "<=" else rv >= bound)
            row["targets"].append({"rendezvous": f"{'≤' if op == '<=' else '≥'} {bound:g} {unit}", "value": rv, "met": met})
        self.rows.append(row)


def fmt_value(v: float | None, fmt: str) -> str:
    if v is None:
        return "–"
    if fmt == "int":
        return f"{v:,.0f}"
    if fmt == "1":
        return f"{v:,.1f}"
    return f"{v:,.2f}"


def fmt_target(t: dict) -> str:
    verdict = {True: "met", False: "**missed**", None: "n/a"}[t["met"]]
    if "peer" in t:
        return f"≥ {t['ratio_at_least']:g}× {TITLE[t['peer']]}: {verdict}"
    return f"Rendezvous {t['rendezvous']}: {verdict}"


BUSY = 85.0  # % of one core from which a side counts as saturated


def phase_cpu(mon: dict | None, pred) -> tuple[float | None, float | None, float | None]:
    """(server %, load generator %, others' % on the server's core) of the first phase of a
    monitor file matching pred(name)."""
    for ph in (mon or {}).get("phases", []):
        if pred(ph["name"]):
            if ph["end"] - ph["start"] < 2.0:  # too short for 0.5 s samples
                return None, None, None
            srv, core = ph.get("server_cpu_pct"), ph.get("server_core_pct")
            other = None if srv is None or core is None else max(0.0, core - srv)
            return srv, ph.get("loadgen_cpu_pct"), other
    return None, None, None


def step_rate(name: str) -> float | None:
    m = re.search(r"\((\d+(?:\.\d+)?)/s\)", name)
    return float(m.group(1)) if name.startswith("step") and m else None


def verdict(cpu: tuple | None) -> str:
    if not cpu or cpu[0] is None:
        return "?"
    server, lg = cpu[0], cpu[1]
    other = cpu[2] if len(cpu) > 2 and cpu[2] is not None else 0.0
    if server >= BUSY:
        return "server (core busy)"
    if server + other >= BUSY:
        return "**other processes** on the server's core (the figure is low)"
    if lg is not None and lg >= BUSY:
        return "**load generator** (its core busy; a lower bound for the server)"
    return "neither core busy (latency or losses)"


def build(raw: str) -> tuple[dict, Table]:
    meta = load(os.path.join(raw, "meta.json")) or {}
    sizes = meta.get("sizes") or sorted({int(m.group(1)) for p in os.listdir(raw)
                                         for m in [re.search(r"-n(\d+)-", p)] if m})
    t = Table()
    present = [s for s in SERVERS if glob.glob(os.path.join(raw, f"{s}-*.json"))]

    def xmpp(srv: str, n: int, part: str) -> dict | None:
        return load(os.path.join(raw, f"{srv}-n{n}-{part}.json"))

    for n in sizes:
        deliveries, updates, p99, logins, idle, idle0, peak = {}, {}, {}, {}, {}, {}, {}
        marks_upd: dict[str, str] = {}
        for srv in ("rendezvous", "prosody", "ejabberd"):
            if srv not in present:
                continue
            passes = sorted((p for p in glob.glob(os.path.join(raw, f"{srv}-n{n}-setup*.json"))
                             if re.search(r"setup\d*\.json$", p)),
                            key=lambda p: int(re.search(r"setup(\d*)\.json$", p).group(1) or 1))
            setups = [d for d in (load(p) for p in passes) if d]
            if setups:
                reg = setups[0].get("registrations", {})
                if reg.get("failed"):
                    t.notes.append(f"{TITLE[srv]} N={n}: {reg['failed']} registrations failed.")
                if len(setups) > 1:
                    t.notes.append(f"{TITLE[srv]} N={n}: the roster setup took {len(setups)} load "
                                   "generator runs (each one's wait is bounded).")
                if setups[-1].get("errors"):
                    t.notes.append(f"{TITLE[srv]} N={n} setup errors (last run): "
                                   f"{json.dumps(setups[-1]['errors'])}.")
            lg = xmpp(srv, n, "logins")
            if lg:
                logins[srv] = lg["logins"]["per_s"]
                cpu = phase_cpu(xmpp(srv, n, "logins-mon"), lambda name: name == "login")
                t.limits.append({"figure": f"SCRAM logins, N={n:,}", "server": srv, "top": None,
                                 "top_cpu": cpu, "fail": None, "fail_cpu": None,
                                 "limit": verdict(cpu)})
                if lg["logins"].get("failed"):
                    t.notes.append(f"{TITLE[srv]} N={n}: {lg['logins']['failed']} of "
                                   f"{lg['logins']['ok'] + lg['logins']['failed']} logins failed.")
            for kind, vals, what in (("idle0", idle0, "sessions without contacts"),
                                     ("idle", idle, f"sessions with {meta.get('contacts', 20)} contacts")):
                mem = xmpp(srv, n, f"{kind}-mon")
                if not mem:
                    continue
                vals[srv] = (mem["plateau_kib"] - mem["baseline_kib"]) / n
                if mem.get("max_conns", n) < n:
                    t.notes.append(f"{TITLE[srv]} N={n}: only {mem['max_conns']} of {n} idle {what} "
                                   "were connected while the memory was read.")
                if mem.get("method") == "max":
                    t.notes.append(f"{TITLE[srv]} N={n}: memory of idle {what}: no hold seen and "
                                   "never settled; the largest sample is used.")
            rp = xmpp(srv, n, "ramp")
            if rp:
                steps = rp.get("ramp", [])
                updates[srv] = rp.get("sustained_rate", 0.0)
                deliveries[srv] = rp.get("sustained_delivered_per_s", 0.0)
                peak[srv] = max((s.get("delivered_per_s", 0.0) for s in steps), default=None)
                mon = xmpp(srv, n, "ramp-mon")
                failing = next((s for s in steps if not s.get("ok")), None)

                def cpu_at(rate):
                    if rate is None:
                        return None
                    return phase_cpu(mon, lambda name: step_rate(name) is not None
                                     and abs(step_rate(name) - rate) < 0.5)

                top_cpu = cpu_at(rp.get("sustained_rate") or None)
                fail_cpu = cpu_at(failing["rate"]) if failing else None
                t.limits.append({"figure": f"Presence ramp, N={n:,}", "server": srv,
                                 "top": rp.get("sustained_rate"), "top_cpu": top_cpu,
                                 "fail": failing["rate"] if failing else None, "fail_cpu": fail_cpu,
                                 "limit": verdict(fail_cpu) if failing else "not reached"})
                passing = [s for s in steps if s.get("ok") and s.get("rate") == rp.get("sustained_rate")]
                p99[srv] = passing[-1]["latency"]["p99_ms"] if passing else None
                if steps and all(s.get("ok") for s in steps):
                    marks_upd[srv] = "≥"
                    t.notes.append(f"{TITLE[srv]} N={n}: every ramp step passed; the sustained rate "
                                   "is a lower bound (raise BENCH_RAMP's maximum).")
                if steps and not steps[0].get("ok"):
                    t.notes.append(f"{TITLE[srv]} N={n}: the first ramp step already failed "
                                   f"(loss {steps[0].get('lost')}, p99 {steps[0]['latency'].get('p99_ms')} ms).")
        size = f"N={n:,}"
        t.add(f"presence_deliveries_n{n}", f"Presence deliveries/s at saturation, {size}", "/s",
              deliveries, targets=[("prosody", 10), ("ejabberd", 5)], marks=marks_upd)
        t.add(f"presence_updates_n{n}", f"Presence updates/s sustained (no loss, p99 < 100 ms), {size}",
              "/s", updates, marks=marks_upd)
        t.add(f"presence_p99_n{n}", f"p99 latency at that rate, {size}", "ms", p99, better="lower", fmt="1")
        t.add(f"presence_peak_n{n}", f"Peak deliveries/s in any ramp step, {size}", "/s", peak)
        t.add(f"logins_n{n}", f"SCRAM-SHA-256 logins/s, {size}", "/s", logins,
              targets=[("prosody", 10)])
        t.add(f"idle0_kib_n{n}", f"Memory per idle session without contacts, {size}", "KiB", idle0,
              better="lower", absolute=("<=", 8), fmt="1")
        t.add(f"idle_kib_n{n}", f"Memory per idle session with {meta.get('contacts', 20)} contacts, {size}",
              "KiB", idle, better="lower", fmt="1")

    publish, cycle, subs_mib, per_sub = {}, {}, {}, {}
    marks_pub: dict[str, str] = {}
    marks_cyc: dict[str, str] = {}
    for srv in ("rendezvous", "kamailio"):
        if srv not in present:
            continue
        for kind, vals, marks in (("publish", publish, marks_pub), ("cycle", cycle, marks_cyc)):
            r = sip_ramp(raw, srv, kind)
            if r is None:
                continue
            vals[srv] = r["best"]["per_s"] if r["best"] else 0.0
            fail = next((st for st in r["steps"] if not st["ok"]), None)
            meas = lambda st: phase_cpu(load(st["mon"]), lambda name: name == "measure") if st else None
            t.limits.append({"figure": f"SIP {'PUBLISH' if kind == 'publish' else 'SUBSCRIBE+NOTIFY'}",
                             "server": srv, "top": r["best"]["rate"] if r["best"] else None,
                             "top_cpu": meas(r["best"]), "fail": fail["rate"] if fail else None,
                             "fail_cpu": meas(fail), "limit": verdict(meas(fail)) if fail else "not reached"})
            if r["all_passed"]:
                marks[srv] = "≥"
                t.notes.append(f"{TITLE[srv]}: every SIP {kind} step passed; the figure is a lower "
                               "bound (raise BENCH_SIP_RAMP's maximum).")
            failed = [s for s in r["steps"] if not s["ok"]]
            if failed:
                t.notes.append(f"{TITLE[srv]}: SIP {kind} ramp stopped at {failed[0]['rate']:,.0f}/s: "
                               f"{failed[0]['why']}.")
        mem = load(os.path.join(raw, f"{srv}-sip-subs-mon.json"))
        subs = load(os.path.join(raw, f"{srv}-sip-subs.json"))
        if mem:
            subs_mib[srv] = mem["plateau_kib"] / 1024
            active = (subs or {}).get("sip", {}).get("active_subscriptions", 0)
            want = meta.get("sip_subscriptions", 10000)
            if active:
                per_sub[srv] = (mem["plateau_kib"] - mem["baseline_kib"]) / active
            if active < want:
                t.notes.append(f"{TITLE[srv]}: {active} of {want} SIP subscriptions were active.")
            shm = mem.get("kamailio_shm_real_used_kib")
            if shm:
                t.notes.append(f"{TITLE[srv]}: with the subscriptions held, its own count of shared "
                               f"memory in use (core.shmmem real_used) was {shm / 1024:,.1f} MiB; the "
                               f"PSS ({mem['plateau_kib'] / 1024:,.1f} MiB) keeps every page the "
                               "shared-memory allocator ever touched, e.g. by the transactions of the "
                               "SUBSCRIBE burst.")
            if mem.get("method") == "max":
                t.notes.append(f"{TITLE[srv]}: memory with the subscriptions: no hold seen and never "
                               "settled; the largest sample is used.")
    t.add("sip_publish", "SIP PUBLISH/s sustained (< 1% failures)", "/s", publish,
          targets=[("kamailio", 2)], marks=marks_pub)
    t.add("sip_cycle", "SIP SUBSCRIBE+NOTIFY/s sustained (< 1% failures)", "/s", cycle,
          targets=[("kamailio", 2)], marks=marks_cyc)
    t.add("sip_subs_mib", f"Memory with {meta.get('sip_subscriptions', 10000):,} SIP subscriptions",
          "MiB", subs_mib, better="lower", fmt="1")
    t.add("sip_per_sub_kib", "Memory per SIP subscription", "KiB", per_sub, better="lower", fmt="2")
    start = {}
    for srv in present:
        d = load(os.path.join(raw, f"{srv}-n{sizes[0]}-start.json")) if sizes else None
        d = d or load(os.path.join(raw, f"{srv}-sip-start.json"))
        if d:
            start[srv] = d["start_kib"] / 1024
    t.add("start_mib", "Memory after start", "MiB", start, better="lower", fmt="1")
    for x in t.limits:
        for when in ("top_cpu", "fail_cpu"):
            c = x[when]
            if c and len(c) > 2 and c[2] is not None and c[2] >= 10:
                t.notes.append(f"{x['figure']}, {TITLE[x['server']]}: other processes took {c[2]:.0f}% "
                               f"of the server's core at the {'top passing' if when == 'top_cpu' else 'first failing'} "
                               "step: the machine was shared, the figure may be low.")
    try:
        with open(os.path.join(raw, "not-calm.txt")) as f:
            busy = [line.split() for line in f if line.strip()]
    except OSError:
        busy = []
    if busy:
        t.notes.append(f"{len(busy)} runs started while a core was still busy with other jobs "
                       "(bench.sh waited BENCH_CALM_SECS): "
                       + ", ".join(f"{b[0]} ({b[1]}%)" for b in busy[:12])
                       + (" …" if len(busy) > 12 else "") + ".")
    # Rows with no value at all (a server set without them) are left out.
    t.rows = [r for r in t.rows if any(v is not None for v in r["values"].values())]
    for r in t.rows:
        r["present"] = present
    return meta, t


def markdown(meta: dict, t: Table, elapsed: float | None) -> str:
    present = t.rows[0]["present"] if t.rows else []
    peers = [p for p in PEERS if p in present and "rendezvous" in present]
    head = ["Figure"] + [TITLE[s] for s in present] + [f"Rendezvous ÷ {TITLE[p]}" for p in peers] + ["Target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|"]
    for r in t.rows:
        cells = [f"{r['label']} ({r['unit']})"]
        for s in present:
            v = r["values"].get(s)
            cells.append((r["marks"].get(s, "") + fmt_value(v, r["fmt"])) if s in r["values"] else "–")
        for p in peers:
            q = r["ratios"].get(p)
            cells.append("–" if q is None else f"{q:,.2f}×")
        cells.append("; ".join(fmt_target(x) for x in r["targets"]) or "")
        lines.append("| " + " | ".join(cells) + " |")
    v = meta.get("versions", {})
    mem_gib = meta.get("mem_total_kib", 0) / 1024 / 1024
    out = [
        f"# Rendezvous and its peers: {meta.get('started_utc', '?')}",
        "",
        f"- Machine: {meta.get('nproc', '?')} cores ({meta.get('cpu', '?')}), {mem_gib:.1f} GiB RAM, "
        f"Linux {meta.get('kernel', '?')}; each server pinned to core {meta.get('server_cpu', 0)}, "
        f"the load generator to core {meta.get('loadgen_cpu', 1)}.",
        f"- Command: `{meta.get('command', '?')}`" + (f" ({elapsed / 60:.0f} min)" if elapsed else ""),
        f"- Versions: Rendezvous {v.get('rendezvous', '?')}, Prosody {v.get('prosody', '-')}, "
        f"ejabberd {v.get('ejabberd', '-')}, Kamailio {v.get('kamailio', '-')} (Debian packages); "
        "configurations in bench/peers/.",
        f"- Workload: XMPP N = {', '.join(f'{n:,}' for n in meta.get('sizes', []))} users, "
        f"{meta.get('contacts', 20)} mutual contacts each, SASL {meta.get('sasl', '?').upper()}, "
        f"presence ramp {meta.get('ramp', '?')} (START:FACTOR:MAX updates/s, {meta.get('step_secs', '?')} s "
        f"steps, stop at the first loss or p99 > 100 ms); SIP {meta.get('sip_users', '?'):,} users over UDP, "
        f"no authentication, ramp {meta.get('sip_ramp', '?')}, {meta.get('sip_subscriptions', '?'):,} "
        "subscriptions held for the memory figure.",
        "- Memory: PSS summed over the server's processes (RSS for a single process; Kamailio's "
        "shared memory counted once). Per idle session: (memory with N idle sessions - memory "
        "before) / N; per subscription likewise.",
        "- `≥`: every step passed, the figure is a lower bound. `–`: not measured.",
        "",
        *lines,
        "",
    ]
    if t.limits:
        def cpu(c):
            if not c or c[0] is None:
                return "–"
            other = "" if len(c) < 3 or c[2] is None or c[2] < 5 else f" (+{c[2]:.0f}% others)"
            return f"{c[0]:.0f}%{other} / {'–' if c[1] is None else f'{c[1]:.0f}%'}"

        def rate(r):
            return "–" if r is None else f"{r:,.0f}/s"

        out += ["Where each figure met its limit (CPU of the server / of the load generator, "
                f"100% = one core, ≥ {BUSY:.0f}% counts as busy; \"others\": other processes on the "
                "server's core, this machine being shared):", "",
                "| Figure | Server | Top passing step | CPU there | First failing step | CPU there | Limit |",
                "|---|---|---:|---:|---:|---:|---|"]
        for x in t.limits:
            out.append(f"| {x['figure']} | {TITLE[x['server']]} | {rate(x['top'])} | {cpu(x['top_cpu'])} | "
                       f"{rate(x['fail'])} | {cpu(x['fail_cpu'])} | {x['limit']} |")
        out.append("")
    if t.notes:
        out += ["Notes:", ""] + [f"- {n}" for n in t.notes] + [""]
    return "\n".join(out)


def report(a: argparse.Namespace) -> int:
    meta, t = build(a.raw)
    el = load(os.path.join(a.raw, "elapsed.json"))
    md = markdown(meta, t, el.get("seconds") if el else None)
    print(md)
    stamp = meta.get("started_utc", "unknown").replace(":", "")[:15] + "Z"
    os.makedirs(a.out, exist_ok=True)
    base = os.path.join(a.out, stamp)
    with open(base + ".md", "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write(md)
    rows = [{k: v for k, v in r.items() if k not in ("fmt", "present")} for r in t.rows]
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "figures": rows, "limits": t.limits, "notes": t.notes,
                   "elapsed_s": el.get("seconds") if el else None}, f, indent=1)
    print(f"written: {base}.md, {base}.json, {os.path.join(a.out, 'latest.md')}", file=sys.stderr)
    return 0


def step(a: argparse.Namespace) -> int:
    d = load(a.file)
    if d is None:
        print(f"{a.file}: no summary", file=sys.stderr)
        return 1
    ok, why = step_verdict(a.kind, a.rate, d)
    if not ok:
        print(f"{a.kind} {a.rate:g}/s: {why}", file=sys.stderr)
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report")
    r.add_argument("--raw", default="bench/results/raw")
    r.add_argument("--out", default="bench/results")
    s = sub.add_parser("step")
    s.add_argument("kind", choices=["publish", "cycle"])
    s.add_argument("rate", type=float)
    s.add_argument("file")
    a = ap.parse_args()
    return report(a) if a.cmd == "report" else step(a)


if __name__ == "__main__":
    sys.exit(main())
