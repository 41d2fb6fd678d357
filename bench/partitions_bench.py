"""`durably serve --partitions N`: the 10-step handler at 32 connections with 1 and with 2 partitions.

    .venv/bin/python bench/partitions_bench.py [--partitions 1,2] [--rounds 2] [--duration 10] [--connections 32]

Each round starts a fresh `durably serve bench/compare/durably_app.py:app --partitions N --synchronous full` on
its own data directory, warms up, drives POST /Bench/steps10 with wrk (one thread, closed loop), and prints
journaled steps/s, invocations/s and the server's CPU seconds per invocation (the supervisor and every partition
process, from /proc). The counts are interleaved (1, 2, 1, 2, ...) so a machine whose load changes affects
both alike; the summary is the median of the rounds. The issue's target is 2 partitions >= 1.5x one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from http_bench import LUA_TEMPLATE, run_wrk  # noqa: E402 (bench/ is not a package)
from procs import free_port  # noqa: E402

REPO = HERE.parent
APP = REPO / "bench" / "compare" / "durably_app.py"
STEPS = 10


def tree_cpu(root: int) -> float:
    """utime + stime (seconds) of `root` and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(p for p, pp in parents.items() if pp == pid)
    return total


def serve(partitions: int, data_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port, admin = free_port(), free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "durably.cli.main", "serve", f"{APP}:app", "--partitions",
                             str(partitions), "--data-dir", str(data_dir), "--port", str(port), "--admin-port",
                             str(admin), "--synchronous", "full", "--log-level", "warning"],
                            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    import urllib.request

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"durably serve exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/health", timeout=1) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"durably serve did not start: {log.read_text()}")


def one_round(partitions: int, args: argparse.Namespace, work: Path, lua: Path) -> dict[str, float]:
    data = work / f"data-{partitions}-{time.monotonic_ns()}"
    proc, port = serve(partitions, data, work / f"serve-{partitions}.log")
    try:
        url = f"http://127.0.0.1:{port}/Bench/steps10"
        run_wrk(args.wrk, url, lua, args.connections, 1, args.warmup)
        cpu0, t0 = tree_cpu(proc.pid), time.monotonic()
        stats, _ = run_wrk(args.wrk, url, lua, args.connections, 1, args.duration)
        cpu1, t1 = tree_cpu(proc.pid), time.monotonic()
        if stats["non2xx"] or stats["timeout"]:
            raise RuntimeError(f"errors under load: {stats}")
        seconds = stats["duration_us"] / 1e6
        invocations = stats["requests"] / seconds
        return {"invocations_s": invocations, "steps_s": invocations * STEPS, "p50_ms": stats["p50_us"] / 1e3,
                "cpu_ms_per_invocation": 1e3 * (cpu1 - cpu0) / max(1, stats["requests"]),
                "server_cores": (cpu1 - cpu0) / (t1 - t0)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", default="1,2", help="partition counts to compare (default 1,2)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    args = parser.parse_args()
    counts = [int(x) for x in args.partitions.split(",")]
    results: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory(prefix="durably-partitions-bench-") as tmp:
        work = Path(tmp)
        lua = work / "bench.lua"
        lua.write_text(LUA_TEMPLATE.format(body=json.dumps(json.dumps("x"))))
        for r in range(args.rounds):
            for n in counts:
                res = one_round(n, args, work, lua)
                results[n].append(res)
                print(f"round {r + 1} --partitions {n}: {res['steps_s']:,.0f} steps/s "
                      f"({res['invocations_s']:,.0f} invocations/s, p50 {res['p50_ms']:.1f} ms), "
                      f"{res['cpu_ms_per_invocation']:.2f} CPU ms/invocation, {res['server_cores']:.2f} cores busy",
                      flush=True)
    print(f"\n10-step handler, {args.connections} connections, median of {args.rounds} rounds "
          f"({os.cpu_count()} CPUs on this machine):")
    base = statistics.median(r["steps_s"] for r in results[counts[0]])
    for n in counts:
        steps = statistics.median(r["steps_s"] for r in results[n])
        cpu = statistics.median(r["cpu_ms_per_invocation"] for r in results[n])
        print(f"  --partitions {n}: {steps:,.0f} steps/s ({steps / base:.2f}x --partitions {counts[0]}), "
              f"{cpu:.2f} CPU ms/invocation")


if __name__ == "__main__":
    main()
