"""What one invocation costs the server at one connection: CPU per call and latency, `durably serve` over HTTP.

    PYTHONPATH=$PWD/src .venv/bin/python bench/echo_cpu_bench.py [--calls 2000] [--rounds 3]
        [--handlers echo,steps10_sync] [--log-level info] [--serve-args '--no-metrics']

Starts `durably serve bench/compare/durably_app.py:app` (SQLite, synchronous=FULL, the log at `--log-level`,
default info as a user runs it, written to a file), then per round and handler makes `--calls` sequential
POSTs on one keep-alive connection and reads the server's CPU time (utime+stime of every thread, from
/proc/<pid>/stat) before and after. Prints per handler the medians over the rounds of:

- CPU us/call: the server's CPU per invocation (the figure to read on a loaded machine: other load changes it
  far less than wall-clock figures), and its user and system parts (system is mostly the fsyncs: pass
  `--serve-args '--synchronous off'` to see the interpreter's work alone);
- p50/p99 ms: the client's wall-clock latency per call.

The client is plain `http.client`, in this process: its own CPU is not counted.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from procs import Proc, free_port, serve_cmd

REPO = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of every thread of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def one_round(port: int, pid: int, handler: str, calls: int) -> tuple[float, float, float, float]:
    """(server user CPU seconds per call, system CPU seconds per call, p50 s, p99 s) of `calls` sequential
    calls."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = b'"hello"'
    headers = {"Content-Type": "application/json"}

    def call() -> None:
        conn.request("POST", f"/Bench/{handler}", body, headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"{handler} answered {r.status}: {data[:200]!r}")

    for _ in range(50):  # warm: connection, caches, step threads
        call()
    times = []
    user, system = cpu_seconds(pid)
    for _ in range(calls):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    user2, system2 = cpu_seconds(pid)
    conn.close()
    times.sort()
    return (user2 - user) / calls, (system2 - system) / calls, times[len(times) // 2], times[int(len(times) * 0.99)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--handlers", default="echo", help="comma-separated handlers of bench/compare/durably_app.py")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--serve-args", default="", help="extra `durably serve` arguments")
    args = parser.parse_args()
    handlers = [h for h in args.handlers.split(",") if h]
    results: dict[str, list[tuple[float, float, float, float]]] = {h: [] for h in handlers}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        port, admin_port = free_port(), free_port()
        cmd = serve_cmd("bench/compare/durably_app.py:app", port, admin_port, tmp / "data", "--log-level",
                        args.log_level, *args.serve_args.split())
        proc = Proc("durably", cmd, REPO, tmp / "serve.log")
        proc.start()
        try:
            proc.wait_healthy(f"http://127.0.0.1:{admin_port}/health", timeout=60)
            for _ in range(args.rounds):
                for h in handlers:
                    results[h].append(one_round(port, proc.pid, h, args.calls))
        finally:
            proc.stop()
    print(f"{'handler':14} {'CPU us/call':>12} {'user':>7} {'system':>7} {'p50 ms':>8} {'p99 ms':>8}   (medians of "
          f"{args.rounds} rounds, {args.calls} sequential calls, 1 connection, log level {args.log_level})")
    for h, rs in results.items():
        user = statistics.median(r[0] for r in rs) * 1e6
        system = statistics.median(r[1] for r in rs) * 1e6
        cpu = statistics.median(r[0] + r[1] for r in rs) * 1e6
        p50 = statistics.median(r[2] for r in rs) * 1e3
        p99 = statistics.median(r[3] for r in rs) * 1e3
        print(f"{h:14} {cpu:12.1f} {user:7.1f} {system:7.1f} {p50:8.3f} {p99:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
