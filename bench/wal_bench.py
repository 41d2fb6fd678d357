"""WAL bytes and pages each invocation writes, as a user's `durably serve` pays them (issue 21, item 2).

    .venv/bin/python bench/wal_bench.py [--calls 200] [--src /work/main/src --src src] [--rounds 2]

For each source tree given with `--src` (default: this checkout's `src`), and `--rounds` times over, interleaved
(tree A, tree B, tree A, ...), it starts `durably serve bench/compare/durably_app.py:app` (SQLite,
synchronous=FULL) on a fresh data directory with that tree first on PYTHONPATH, warms it up with 50 calls, and
traces the server with `strace -f -y -e trace=pwrite64,fdatasync,fsync` while it makes `--calls` sequential
HTTP calls of Bench/echo, then of Bench/steps10 (one at a time by default: no two invocations share a commit, the
worst case for group commit; `--conns 32` shows what invocations sharing commits cost). From the trace, per invocation:

- WAL pages: pwrite64 calls of one page (4096 bytes) to `durably.sqlite3-wal` (each WAL frame is a 24-byte
  header and its page, two writes);
- WAL bytes: every byte written to the WAL (frame headers included);
- db pages: pages a checkpoint copied into `durably.sqlite3` meanwhile (SQLite checkpoints at 1000 WAL pages);
- fdatasync: fdatasync + fsync calls of the process.

The figures do not depend on the machine's load: they are counts, not times.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from procs import Proc, free_port, request, serve_cmd

REPO = Path(__file__).resolve().parents[1]
PAGE = 4096
LINE = re.compile(r"^(?:\[pid\s+\d+\]\s+)?(?:\d+\s+)?(\w+)\((\d+)<([^>]*)>.*\)\s+=\s+(-?\d+)")


def parse(trace: Path) -> dict[str, int]:
    """Sum an `strace -y` log: WAL writes (calls, one-page writes, bytes), database page writes, syncs."""
    out = {"wal_bytes": 0, "wal_pages": 0, "wal_writes": 0, "db_pages": 0, "syncs": 0}
    for line in trace.read_text(errors="replace").splitlines():
        found = LINE.match(line)
        if not found:
            continue
        call, _, path, ret = found.groups()
        n = int(ret)
        if call in ("fdatasync", "fsync"):
            out["syncs"] += 1
        elif call == "pwrite64" and n > 0:
            if path.endswith("-wal"):
                out["wal_bytes"] += n
                out["wal_writes"] += 1
                out["wal_pages"] += n == PAGE
            elif path.endswith(".sqlite3"):
                out["db_pages"] += n // PAGE
    return out


def measure(src: Path, handler: str, calls: int, tmp: Path, tag: str, conns: int) -> dict[str, float]:
    port, admin_port = free_port(), free_port()
    cmd = serve_cmd("bench/compare/durably_app.py:app", port, admin_port, tmp / f"data-{tag}")
    proc = Proc(tag, cmd, REPO, tmp / f"{tag}.log", env={"PYTHONPATH": str(src)})
    proc.start()
    trace = tmp / f"strace-{tag}.log"
    try:
        proc.wait_healthy(f"http://127.0.0.1:{admin_port}/health", timeout=60)
        url = f"http://127.0.0.1:{port}/Bench/{handler}"
        for i in range(50):
            status, _ = request("POST", url, i)
            if status != 200:
                raise SystemExit(f"{tag}: warm-up call answered {status}")
        tracer = subprocess.Popen(["strace", "-f", "-y", "-e", "trace=pwrite64,fdatasync,fsync", "-p",
                                   str(proc.pid), "-o", str(trace)], stderr=subprocess.PIPE)
        assert tracer.stderr is not None
        if b"attached" not in tracer.stderr.readline():
            raise SystemExit("strace could not attach")
        def run(i: int) -> None:
            status, _ = request("POST", url, i)
            if status != 200:
                raise SystemExit(f"{tag}: call {i} answered {status}")

        with ThreadPoolExecutor(conns) as pool:
            list(pool.map(run, range(calls)))
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
    finally:
        proc.stop()
    got = parse(trace)
    return {k: v / calls for k, v in got.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="sequential calls of each handler")
    parser.add_argument("--src", action="append", type=Path, help="a source tree to measure (repeatable)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds over the source trees")
    parser.add_argument("--handlers", default="echo,steps10")
    parser.add_argument("--conns", type=int, default=1, help="calls at a time (1: sequential, the worst case)")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        print("strace is not installed")
        return 1
    srcs = [p.resolve() for p in (args.src or [REPO / "src"])]
    print(f"{'tree':28} {'handler':8} {'WAL pages':>10} {'WAL bytes':>10} {'db pages':>9} {'fdatasync':>10}"
          f"   per invocation, {args.calls} calls {args.conns} at a time, synchronous=FULL")
    with tempfile.TemporaryDirectory(prefix="durably-wal-bench-") as tmp_s:
        tmp = Path(tmp_s)
        for rnd in range(args.rounds):
            for n, src in enumerate(srcs):
                for handler in args.handlers.split(","):
                    r = measure(src, handler, args.calls, tmp, f"{rnd}-{n}-{handler}", args.conns)
                    name = str(src)[-28:]
                    print(f"{name:28} {handler:8} {r['wal_pages']:10.2f} {r['wal_bytes']:10.0f} "
                          f"{r['db_pages']:9.2f} {r['syncs']:10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
