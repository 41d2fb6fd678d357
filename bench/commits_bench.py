"""Commits and fsyncs per invocation: what each invocation costs the disk, as a user's `durably serve` pays it.

    .venv/bin/python bench/commits_bench.py [--calls 200] [--strace]

Starts `durably serve bench/compare/durably_app.py:app` (SQLite, synchronous=FULL), makes `--calls` sequential
HTTP calls of each handler (one at a time, so no two invocations share a commit), and prints per invocation:

- commits: group commits (one SQLite transaction each), from the server's own `/metrics` counters;
- fsyncs: SQLite COMMITs, from the same counters;
- fdatasync/fsync calls of the server process, counted by `strace -f -c` when `--strace` is given (and strace is
  installed): the figure the operating system sees.

Sequential calls are the worst case for group commit: under load, many invocations share each commit. The
design goal is one commit for an invocation that finishes without waiting (echo), and one more per journaled
step whose result the handler waits for.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from procs import Proc, free_port, request, serve_cmd

REPO = Path(__file__).resolve().parents[1]
HANDLERS = ("echo", "steps1", "steps10")


def counters(admin: str) -> dict[str, float]:
    """durably_commits_total and durably_fsyncs_total from /metrics."""
    with urllib.request.urlopen(f"{admin}/metrics", timeout=10) as r:
        text = r.read().decode()
    found: dict[str, float] = {}
    for name in ("durably_commits_total", "durably_fsyncs_total"):
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        found[name] = float(m.group(1)) if m else float("nan")
    return found


def strace_counts(log: Path) -> int:
    """fdatasync + fsync calls in an `strace -c` summary."""
    total = 0
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split()
        if parts and parts[-1] in ("fdatasync", "fsync") and len(parts) >= 4:
            total += int(parts[3])
    return total


def attach_strace(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """strace -c on every thread of `pid`, counting fsync calls, until it is sent SIGINT."""
    tracer = subprocess.Popen(["strace", "-f", "-c", "-e", "trace=fdatasync,fsync", "-p", str(pid), "-o",
                               str(out)], stderr=subprocess.PIPE)
    assert tracer.stderr is not None
    # strace says "Process N attached" on stderr once it traces the process: only then do the calls count.
    line = tracer.stderr.readline()
    if b"attached" not in line:
        raise RuntimeError(f"strace could not attach to {pid}: {line.decode(errors='replace')}")
    return tracer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="sequential calls of each handler")
    parser.add_argument("--strace", action="store_true", help="also count the process's fdatasync calls")
    args = parser.parse_args()
    use_strace = args.strace and shutil.which("strace") is not None
    if args.strace and not use_strace:
        print("strace is not installed: counting from /metrics only")
    print(f"{'handler':10} {'commits/inv':>12} {'fsyncs/inv':>11}" + (f" {'fdatasync/inv':>14}" if use_strace else "")
          + f"   ({args.calls} sequential calls each, durably serve, synchronous=FULL)")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for handler in HANDLERS:
            port, admin_port = free_port(), free_port()
            cmd = serve_cmd("bench/compare/durably_app.py:app", port, admin_port, tmp / f"data-{handler}")
            trace_log = tmp / f"strace-{handler}.log"
            proc = Proc(handler, cmd, REPO, tmp / f"{handler}.log")
            proc.start()
            try:
                proc.wait_healthy(f"http://127.0.0.1:{admin_port}/health", timeout=60)
                admin = f"http://127.0.0.1:{admin_port}"
                status, _ = request("POST", f"http://127.0.0.1:{port}/Bench/{handler}", 1)
                if status != 200:
                    print(f"{handler}: warm-up call answered {status}")
                    return 1
                tracer = attach_strace(proc.pid, trace_log) if use_strace else None
                before = counters(admin)
                for i in range(args.calls):
                    status, _ = request("POST", f"http://127.0.0.1:{port}/Bench/{handler}", i)
                    if status != 200:
                        print(f"{handler}: call {i} answered {status}")
                        return 1
                after = counters(admin)
                if tracer is not None:
                    tracer.send_signal(signal.SIGINT)  # detach: strace writes its summary
                    tracer.wait(30)
            finally:
                proc.stop()
            commits = (after["durably_commits_total"] - before["durably_commits_total"]) / args.calls
            fsyncs = (after["durably_fsyncs_total"] - before["durably_fsyncs_total"]) / args.calls
            line = f"{handler:10} {commits:12.2f} {fsyncs:11.2f}"
            if use_strace:
                line += f" {strace_counts(trace_log) / args.calls:14.2f}"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
