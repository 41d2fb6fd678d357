"""Write docs/benchmarks.md and its chart from the JSON that bench/compare/run.py produced.

    .venv/bin/python bench/compare/report.py [docs/benchmarks.json]

The page and the PNG are written next to the JSON file (benchmarks.md, benchmarks.png).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from workloads import LABELS, THROUGHPUT, Workload

BY_NAME = {w.name: w for w in THROUGHPUT}
COLORS = {"durably": "#2b6cb0", "durably-p2": "#1a365d", "durably-sdk": "#63b3ed", "restate": "#dd6b20",
          "dbos": "#38a169"}
PEERS = ("restate", "dbos")
TIMES, DASH = "\u00d7", "\u2013"  # written as escapes: the page uses the typographic signs
# Targets of the comparison (issue 21): Durably embedded against Restate driving the restate-sdk.
STEPS_TARGET = 8.0  # journaled steps/s, async and sync closures
INVOCATIONS_TARGET = 4.0  # echo invocations/s
LATENCY_TARGET = 6.0  # echo p50 at one connection: at most 1/6 of Restate's
PARTITIONS_TARGET = 1.5  # --partitions 2 against --partitions 1, 10 steps at 32 connections
INTEROP_TARGET = 1.0  # Durably driving the restate-sdk against Restate driving it, every workload

# Why Durably trails a peer where it does; looked up by (Durably system, workload, peer).
EXPLANATIONS: dict[tuple[str, str], str] = {
    ("durably-sdk", "payload"): (
        "With 100 KB payloads each invocation writes about 200 KB (the input and the step's result) to the "
        "write-ahead log with an fsync, and Durably's HTTP/2 client (the pure-Python h2 library) carries each payload "
        "three times (the Start message, the step's result in, the result notification out) in hypercorn's 16 KiB "
        "frames, while hypercorn and the SDK take most of the second core. At one connection the round trip is "
        "latency-bound and this costs Durably the lead; with many requests in flight they share commits and "
        "connections. These figures move by 20% or more between runs."),
}


def fmt(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


def ms(v: float) -> str:
    return f"{v:,.2f}" if v < 10 else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}{TIMES}" if b else DASH


def _throughput_index(results: dict[str, Any]) -> dict[tuple[str, int, str], dict[str, Any]]:
    return {(r["workload"], r["connections"], r["system"]): r for r in results["throughput"]}


def verdicts(results: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(headline lines on the targets, lines naming every workload where a Durably system trails a peer)."""
    idx = _throughput_index(results)
    head: list[str] = []
    behind: list[str] = []

    def get(w: str, c: int, s: str) -> dict[str, Any] | None:
        return idx.get((w, c, s))

    def verdict(x: float, target: float) -> str:
        return f"**{x:.2f}{TIMES}** (target ≥ {target}{TIMES}: {'met' if x >= target else 'MISSED'})"

    for workload, what, metric, target in (
            ("steps10", "Journaled steps per second (10-step handler, 32 connections)", "units_per_s", STEPS_TARGET),
            ("steps10sync", "Journaled steps per second with sync closures (10 steps, 32 connections)",
             "units_per_s", STEPS_TARGET),
            ("echo", "Invocations per second (echo, 32 connections)", "req_per_s", INVOCATIONS_TARGET)):
        d, r = get(workload, 32, "durably"), get(workload, 32, "restate")
        if d and r:
            x = d["median"]["req_per_s"] / r["median"]["req_per_s"]
            head.append(f"- {what}: Durably {fmt(d['median'][metric])}, Restate {fmt(r['median'][metric])}: "
                        f"{verdict(x, target)}.")
    d, r = get("echo", 1, "durably"), get("echo", 1, "restate")
    if d and r and d["median"]["p50_ms"]:
        x = r["median"]["p50_ms"] / d["median"]["p50_ms"]
        head.append(f"- Echo p50 at one connection: Durably {ms(d['median']['p50_ms'])} ms, Restate "
                    f"{ms(r['median']['p50_ms'])} ms: Restate's is {verdict(x, LATENCY_TARGET)} Durably's.")
    one, two = get("steps10", 32, "durably"), get("steps10", 32, "durably-p2")
    if one and two:
        x = two["median"]["req_per_s"] / one["median"]["req_per_s"]
        head.append(f"- Partitions (10-step handler, 32 connections): 2 partitions {fmt(two['median']['units_per_s'])}"
                    f" steps/s, 1 partition {fmt(one['median']['units_per_s'])}: {verdict(x, PARTITIONS_TARGET)}.")
    pairs = sorted({(w, c) for (w, c, s) in idx if s == "durably-sdk" and (w, c, "restate") in idx})
    if pairs:
        worst = min(pairs, key=lambda p: idx[(*p, "durably-sdk")]["median"]["req_per_s"]
                    / idx[(*p, "restate")]["median"]["req_per_s"])
        x = (idx[(*worst, "durably-sdk")]["median"]["req_per_s"]
             / idx[(*worst, "restate")]["median"]["req_per_s"])
        head.append(f"- Interop (Durably driving the restate-sdk, against Restate driving it, {len(pairs)} figures): "
                    f"the lowest ratio is {worst[0]} at {worst[1]} connection{'s' if worst[1] > 1 else ''}, "
                    f"{verdict(x, INTEROP_TARGET)}.")

    comparisons: list[tuple[str, str, str, float, float, bool]] = []  # (workload label, ours, peer, a, b, higher)
    for (w, c, s), rec in idx.items():
        if s not in PEERS:
            continue
        for ours in ("durably", "durably-sdk"):
            if ours == "durably-sdk" and s != "restate":
                continue  # Durably driving the restate-sdk is compared with Restate driving the same deployment
            mine = idx.get((w, c, ours))
            if mine:
                comparisons.append((f"{w} at {c} connection{'s' if c > 1 else ''}", ours, s,
                                    mine["median"]["req_per_s"], rec["median"]["req_per_s"], True))
    for kind, field, higher in (("recovery", "median_s", False), ("memory", "per_invocation_kib", False)):
        rows = {r["system"]: r for r in results[kind]}
        for s in PEERS:
            for ours in ("durably", "durably-sdk"):
                if s in rows and ours in rows and (ours == "durably" or s == "restate"):
                    comparisons.append((kind, ours, s, rows[ours][field], rows[s][field], higher))
    replay = {(r["system"], r["entries"]): r["median_ms"] for r in results["replay"]}
    for (s, n), v in replay.items():
        if s in PEERS:
            for ours in ("durably", "durably-sdk"):
                if (ours, n) in replay and (ours == "durably" or s == "restate"):
                    comparisons.append((f"replay of {n:,} entries", ours, s, replay[(ours, n)], v, False))

    dbos_shared = [c for c in comparisons if c[1] == "durably" and c[2] == "dbos"]
    dbos_behind = [c for c in dbos_shared if (c[3] < c[4] if c[5] else c[3] > c[4])]
    if dbos_shared:
        head.append(f"- Against DBOS: Durably is ahead on {len(dbos_shared) - len(dbos_behind)} of the "
                    f"{len(dbos_shared)} figures they share" + (" (all of them)." if not dbos_behind else "."))
    for label, ours, peer, a, b, higher in sorted(comparisons):
        if (a < b) if higher else (a > b):
            why = EXPLANATIONS.get((ours, label.split(" ")[0]), "")
            better = "throughput" if higher else "value (lower is better)"
            behind.append(f"- **{LABELS[ours]}** trails **{LABELS[peer]}** on {label}: {better} "
                          f"{a:,.2f} vs {b:,.2f}. {why}".rstrip())
    return head, behind


def spread(results: dict[str, Any], limit: float = 1.3) -> list[str]:
    """Lines naming every throughput figure whose runs differ by more than `limit` (fastest / slowest)."""
    out = []
    for r in results["throughput"]:
        rates = [x["req_per_s"] for x in r["runs"]]
        if len(rates) > 1 and max(rates) > 0 and (min(rates) == 0 or max(rates) / min(rates) > limit):
            stolen = [x.get("steal_cpus", 0.0) for x in r["runs"]]
            host = (f" The hypervisor took {', '.join(f'{x:.2f}' for x in stolen)} CPUs during them."
                    if max(stolen) >= 0.05 else "")
            out.append(f"- {LABELS[r['system']]}, {r['workload']} at {r['connections']} connection"
                       f"{'s' if r['connections'] > 1 else ''}: runs of {', '.join(fmt(x) for x in rates)} "
                       f"requests/s, in that order.{host}")
    return out


def throughput_tables(results: dict[str, Any]) -> list[str]:
    idx = _throughput_index(results)
    systems = [s for s in LABELS if any(r["system"] == s for r in results["throughput"])]
    skipped = {(x["system"], x["workload"]): x["why"] for x in results["skipped"]}
    out: list[str] = []
    for w in THROUGHPUT:
        if not any(k[0] == w.name for k in idx):
            continue
        out.append(f"### {w.title}\n")
        out.append(f"`POST {w.path.replace('%d', '{1..100}')}`" + _workload_note(w) + "\n")
        unit = f" | {w.unit}/s" if w.unit else ""
        out.append(f"| system | connections | requests/s{unit} | p50 ms | p99 ms | Durably vs this |")
        out.append("|---|---:|---:" + ("|---:" if w.unit else "") + "|---:|---:|---:|")
        for c in w.connections:
            ours = idx.get((w.name, c, "durably"))
            for s in systems:
                rec = idx.get((w.name, c, s))
                if rec is None:
                    if (s, w.name) in skipped:
                        out.append(f"| {LABELS[s]} | {c} | n/a: {skipped[(s, w.name)]} |" + (" |" if w.unit else "")
                                   + " | | |")
                    continue
                m = rec["median"]
                vs = ratio(ours["median"]["req_per_s"], m["req_per_s"]) if ours and s != "durably" else ""
                if s == "durably-p2":
                    vs = f"({ratio(m['req_per_s'], ours['median']['req_per_s'])} 1 partition)" if ours else ""
                if s == "durably-sdk":
                    rs = idx.get((w.name, c, "restate"))
                    vs = ""
                    if rs:
                        vs = f"({ratio(m['req_per_s'], rs['median']['req_per_s'])} Restate)"
                units = f" | {fmt(m['units_per_s'])}" if w.unit else ""
                flag = f" ⚠ {rec['failed_requests']} failed" if rec["failed_requests"] else ""
                if sum(r["requests"] for r in rec["runs"]) == 0:  # wrk reports no latency then
                    p50 = p99 = f"> {rec.get('duration_s', 0) * 1000:,.0f} (none finished)"
                else:
                    p50, p99 = ms(m["p50_ms"]), ms(m["p99_ms"])
                out.append(f"| {LABELS[s]} | {c} | {fmt(m['req_per_s'])}{flag}{units} | {p50} | {p99} | {vs} |")
        out.append("")
    return out


def _workload_note(w: Workload) -> str:
    notes = {
        "echo": ": one invocation, no journaled step; the input and the result are still recorded durably.",
        "steps1": ": each step's closure is a trivial `async def`; every step is journaled before the handler goes on.",
        "steps3": ".",
        "steps10": ".",
        "steps10sync": ": the closures are sync functions (`lambda: i`); Durably runs them on its step threads, "
                       "DBOS on `asyncio.to_thread`, the restate-sdk as it runs sync actions.",
        "payload": ": a 100 KB JSON string in, one step that returns it (100 KB journaled), its length out.",
        "fanout": ": 100 durable timers started at once, awaited together; timers/s counts them.",
        "hotkey": ": every request goes to the same key, so invocations run one at a time, in arrival order.",
        "keys100": ": wrk picks one of 100 keys per request.",
    }
    return notes.get(w.name, ".")


def other_tables(results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if results["recovery"]:
        n = results["recovery"][0]["in_flight"]
        out.append(f"### Recovery after SIGKILL with {n:,} invocations in flight\n")
        out.append(f"{n:,} invocations of `Bench/gate` (steps *before*, *gate*, *after*) are sent; each blocks inside "
                   "its *gate* step. When all are blocked, every process of the system is killed with SIGKILL (for "
                   "Restate: restate-server and the SDK deployment; for DBOS: the app process), then started again. "
                   "The figure is the time from the restart to the moment the system's own store shows all of them "
                   "completed; *serving* is when its health check first answered. (DBOS recovers at launch by putting "
                   "the workflows back on its internal queue, which it polls about once a second.)\n")
        out.append("| system | all completed after (s) | serving after (s) | runs (s) | Durably vs this |")
        out.append("|---|---:|---:|---|---:|")
        ours = next((r for r in results["recovery"] if r["system"] == "durably"), None)
        for r in results["recovery"]:
            vs = ratio(r["median_s"], ours["median_s"]) + " faster" if ours and r["system"] != "durably" else ""
            runs = ", ".join(f"{x['total_s']:.2f}" for x in r["runs"])
            out.append(f"| {LABELS[r['system']]} | {r['median_s']:.2f} | {r['median_serving_s']:.2f} | {runs} | {vs} |")
        out.append("")
    if results["replay"]:
        out.append("### Replay cost against journal length\n")
        out.append("A workflow runs *n* journaled steps, then waits on a durable promise and suspends (inactivity "
                   "timeout 200 ms). The figure is the time from resolving the promise (`POST /Replay/{key}/go`) to "
                   "the workflow's result (`/restate/workflow/Replay/{key}/attach`): loading the journal, "
                   "replaying *n* entries, finishing. DBOS does not suspend: a DBOS workflow replays its checkpoints "
                   "only when it is recovered, so for DBOS a second process runs the workflow to a blocking step "
                   "and is SIGKILLed, "
                   "and the figure is the time the first process takes to recover it (DBOS's recovery of another "
                   "executor's workflows) and finish it. DBOS 3.4 recovers a workflow by putting it back on its "
                   "internal queue, which it polls about once a second, so up to a second of DBOS's figure is that "
                   "wait; the rest is reading its checkpoints back one step at a time.\n")
        lengths = sorted({r["entries"] for r in results["replay"]})
        systems = [s for s in LABELS if any(r["system"] == s for r in results["replay"])]
        idx = {(r["system"], r["entries"]): r for r in results["replay"]}
        out.append("| system | " + " | ".join(f"{n:,} entries (ms)" for n in lengths) + " |")
        out.append("|---|" + "---:|" * len(lengths))
        for s in systems:
            out.append(f"| {LABELS[s]} | " + " | ".join(ms(idx[(s, n)]["median_ms"]) if (s, n) in idx else DASH
                                                      for n in lengths) + " |")
        out.append("")
    if results["memory"]:
        n = results["memory"][0]["invocations"]
        out.append("### Resident memory per suspended invocation\n")
        out.append(f"{n:,} invocations each sleep one hour (inactivity timeout 1 s, so Durably and Restate suspend "
                   "them; DBOS keeps a waiting workflow as a coroutine in its process). The figure is the growth of "
                   "resident memory (VmRSS of every process of the system: for Restate the server and the SDK "
                   f"deployment) divided by {n:,}, once all are suspended.\n")
        out.append("| system | RSS before (MiB) | RSS after (MiB) | per invocation (KiB) |")
        out.append("|---|---:|---:|---:|")
        for r in results["memory"]:
            out.append(f"| {LABELS[r['system']]} | {r['rss_before_mib']:.1f} | {r['rss_after_mib']:.1f} | "
                       f"{r['per_invocation_kib']:.2f} |")
        out.append("")
    return out


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib  # only the report needs matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = _throughput_index(results)
    systems = [s for s in LABELS if any(r["system"] == s for r in results["throughput"] + results["replay"]
                                        + results["recovery"] + results["memory"])]
    fig, axes = plt.subplots(2, 3, figsize=(18, 9.5))
    width = 0.8 / max(1, len(systems))

    def bars(ax: Any, conns: int, metric: str, title: str, ylabel: str) -> None:
        names = [w.name for w in THROUGHPUT if conns in w.connections and any(k[:2] == (w.name, conns) for k in idx)]
        for i, s in enumerate(systems):
            xs, ys = [], []
            for j, name in enumerate(names):
                rec = idx.get((name, conns, s))
                if rec:
                    xs.append(j + (i - (len(systems) - 1) / 2) * width)
                    ys.append(rec["median"][metric])
            ax.bar(xs, ys, width, label=LABELS[s], color=COLORS[s])
        ax.set_xticks(range(len(names)), names)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", which="both", alpha=0.3)

    bars(axes[0][0], 32, "req_per_s", "Throughput at 32 connections (higher is better)", "requests/s (log)")
    bars(axes[0][1], 1, "p50_ms", "Latency at 1 connection, p50 (lower is better)", "ms (log)")
    bars(axes[0][2], 32, "p99_ms", "Latency at 32 connections, p99 (lower is better)", "ms (log)")
    # The latency panel has room at its upper left (short bars); the throughput panel has none.
    axes[0][1].legend(loc="upper left", fontsize=9)

    ax = axes[1][0]
    for s in systems:
        pts = sorted((r["entries"], r["median_ms"]) for r in results["replay"] if r["system"] == s)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=LABELS[s], color=COLORS[s])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title("Resume with a journal of n entries (lower is better)")
    ax.set_xlabel("journal entries")
    ax.set_ylabel("ms to completion (log)")
    ax.grid(which="both", alpha=0.3)

    for ax, kind, field, title, ylabel in (
        (axes[1][1], "recovery", "median_s", "Recovery after SIGKILL, in flight: {n}", "seconds to all completed"),
        (axes[1][2], "memory", "per_invocation_kib", "Memory per suspended invocation ({n})", "KiB of RSS"),
    ):
        rows = [r for s in systems for r in results[kind] if r["system"] == s]
        ax.bar([LABELS[r["system"]].replace(" ", "\n", 1) for r in rows], [r[field] for r in rows],
               color=[COLORS[r["system"]] for r in rows])
        n = rows[0].get("in_flight", rows[0].get("invocations")) if rows else 0
        ax.set_title(title.format(n=f"{n:,}") + " (lower is better)")
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        for i, r in enumerate(rows):
            ax.annotate(f"{r[field]:.2f}", (i, r[field]), ha="center", va="bottom", fontsize=8)
    meta = results["meta"]
    fig.suptitle(f"Durably, Restate and DBOS on one machine ({meta['machine']['cpus']} CPUs, {meta['mode']} run, "
                 f"median of {meta['runs']}); {meta['date'][:10]}", fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results: dict[str, Any], json_path: Path) -> Path:
    """Write benchmarks.md and benchmarks.png beside `json_path`; return the page's path."""
    page = json_path.with_suffix(".md")
    png = json_path.with_suffix(".png")
    chart(results, png)
    meta = results["meta"]
    head, behind = verdicts(results)
    machine = meta["machine"]
    versions = ", ".join(f"{k} {str(v).removeprefix(k + ' ')}" for k, v in meta["versions"].items())
    lines = [
        "# Benchmarks: Durably, Restate and DBOS side by side",
        "",
        f"One run on one machine, {meta['date']} ({meta['mode']} mode, {meta['elapsed_s']:.0f} s). "
        "Every system ran the same workloads through HTTP on the same machine, with durable writes synced to "
        "disk; the throughput runs of the systems were interleaved, one system loaded at a time. Made by "
        "`bash bench/compare.sh`; the raw figures are in "
        f"[{json_path.name}]({json_path.name}).",
        *(["", meta["note"]] if meta.get("note") else []),
        "",
        *head,
        "",
        f"![Throughput, latency, replay, recovery and memory of each system]({png.name})",
        "",
        "## Where Durably is behind",
        "",
        *(behind or ["Nowhere in this run: on every figure shared with a peer, Durably is ahead."]),
        "",
        "## Results",
        "",
        *(["Figures whose runs differed by more than 30% (the median is quoted):", "", *spread(results), ""]
          if spread(results) else []),
        "Each throughput and latency figure is the median of the runs (requests/s, p50 and p99 each taken "
        "separately). *Durably vs this* is Durably embedded's throughput divided by that system's; for Durably "
        "driving the restate-sdk it is that system against Restate driving the same deployment.",
        "",
        *throughput_tables(results),
        *other_tables(results),
        "## How it was measured",
        "",
        f"- Machine: {machine['cpu']}, {machine['cpus']} CPUs, {machine['memory_gib']} GiB, Linux {machine['kernel']}, "
        f"data on {machine['filesystem']}, Python {machine['python']}. The load generator and every process of the "
        "system under test share these CPUs. Every system is up during the throughput runs, but only one is "
        "loaded at a time: run 1 of each system, then run 2 of each in the opposite order, and so on, each run "
        "after the machine went quiet, so that a machine whose speed drifts over minutes moves every system's "
        "figures alike. Replay, recovery and memory are measured with one system on the machine.",
        f"- Versions: {versions}.",
        f"- Load: wrk, one thread, closed loop (each connection sends its next request when the answer "
        f"arrives); {meta['warmup_s']:g} s of warm-up, then {meta['runs']} run(s) of {meta['duration_s']:g} s per "
        "figure (the fan-out's runs last at least 10 s in a full run); "
        "the median is quoted. Any non-2xx answer or socket error is counted and shown.",
        "- **Durably (embedded)**: `durably serve bench/compare/durably_app.py:app --synchronous full`: ingress, "
        "engine and handlers in one process; SQLite in WAL mode with `synchronous=FULL`, so every commit is "
        "fsynced before a step's result is acknowledged (group commit batches concurrent invocations).",
        "- **Durably → restate-sdk**: `durably serve` with the restate-sdk deployment registered "
        "(`bench/compare/restate_app.py` under hypercorn, one worker, HTTP/2 cleartext); same durability as above.",
        "- **Restate → restate-sdk**: restate-server from npm (`@restatedev/restate-server`) with its default "
        "configuration (replicated loglet on the embedded log server; RocksDB WAL with fsync, "
        "`rocksdb-disable-wal-fsync = false`), driving the same restate-sdk deployment as above.",
        "- hypercorn runs with `keep_alive_max_requests` raised (`bench/compare/hypercorn.toml`) for both runtimes. "
        "With its default, which ends an HTTP/2 connection with GOAWAY after 1,000 requests, Restate retried the "
        "streams cut off and a retried invocation on the hot key hung until its inactivity timeout, stalling that "
        "key for a minute (0 requests/s in whole runs); Durably resends refused streams on a fresh connection and "
        "rotates connections before such limits. The setting keeps that default out of the comparison.",
        "- **DBOS (SQLite)**: DBOS Transact from PyPI, in-process, with async workflows and steps, behind uvicorn "
        "(uvloop, httptools) in `bench/compare/dbos_app.py`; its system database is SQLite with DBOS's own settings "
        "(rollback journal, `synchronous=FULL`, as SQLite defaults): every checkpoint is fsynced. DBOS has no "
        "virtual objects, so the keyed workloads do not apply to it.",
        "- The handlers of every system are in `bench/compare/`: the same steps, the same payloads, the same answers; "
        "each answer is checked before a workload is measured.",
        "",
        "## Run it yourself",
        "",
        "```sh",
        "bash bench/compare.sh            # installs the peers, runs everything, writes this page (about 30 minutes)",
        "bash bench/compare.sh --quick    # one short run of each workload, under 2 minutes (.bench/quick.md)",
        "```",
        "",
        "Other options (`--systems`, `--only`, `--runs`, `--duration`) are listed by "
        "`.venv/bin/python bench/compare/run.py --help`. Figures from a busy machine are low and noisy; "
        "the script warns when other load is present.",
        "",
        "Measured apart from this page: Kafka subscriptions ([kafka-benchmarks.md](kafka-benchmarks.md), "
        "`bench/kafka_bench.py`) and how partitions would scale past this machine "
        "([partitions-scaling.md](partitions-scaling.md), a projection).",
        "",
    ]
    page.write_text("\n".join(lines))
    return page


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "docs" / "benchmarks.json"
    print(write_report(json.loads(path.read_text()), path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
