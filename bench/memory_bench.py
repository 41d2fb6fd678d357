"""Memory of `durably serve` under a burst of large request bodies (issue 10, item 9).

Run from the repository root:

    .venv/bin/python bench/memory_bench.py                 # 12 concurrent 30 MiB bodies, default budget
    .venv/bin/python bench/memory_bench.py --budget 100GiB # the same without a budget (as before it existed)
    .venv/bin/python bench/memory_bench.py --bodies 12 --mib 30 --rounds 3

Serves `bench/memory_app.py:app` (a handler that returns the length of its input) on free ports with a
fresh temporary data dir. Baseline: VmRSS after a few small warm-up calls. Then `--rounds` bursts of
`--bodies` concurrent POSTs of a `--mib` MiB JSON string, each on its own connection; the bench prints how
many were answered 200 and how many 503 (over the in-flight body budget), the peak RSS (VmHWM) and the RSS
once the burst is over (after `--settle` seconds idle). Figures for the issue are in the final line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import Proc, free_port, serve_cmd  # bench/ is not a package: found through sys.path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
MiB = 1024 * 1024


def status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bodies", type=int, default=12)
    ap.add_argument("--mib", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--budget", default=None, help="--max-inflight-body of the server (default: its default)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds idle before 'after' is read")
    args = ap.parse_args()

    port, admin = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="durably-membench-") as tmp:
        extra = ["--max-inflight-body", args.budget] if args.budget else []
        cmd = serve_cmd("bench/memory_app.py:app", port, admin, Path(tmp) / "data", *extra, synchronous=None)
        proc = Proc("durably", cmd, REPO, Path(tmp) / "server.log")
        proc.start()
        try:
            url = f"http://127.0.0.1:{port}"
            try:
                proc.wait_healthy(f"{url}/restate/health", 30)
            except RuntimeError as e:
                print(e)
                return 1
            for _ in range(20):
                httpx.post(f"{url}/Memory/size", json="warm-up", timeout=30).raise_for_status()
            baseline = status_mib(proc.pid, "VmRSS")
            body = json.dumps("x" * (args.mib * MiB - 2)).encode()

            def post(_: int) -> int:
                with httpx.Client(timeout=120) as c:
                    r = c.post(f"{url}/Memory/size", content=body, headers={"content-type": "application/json"})
                    return r.status_code

            print(f"durably serve, {args.bodies} concurrent {args.mib} MiB bodies, "
                  f"budget {args.budget or 'default (256 MiB)'}")
            print(f"  baseline RSS        {baseline:8.1f} MiB")
            after = baseline
            for round_ in range(1, args.rounds + 1):
                with ThreadPoolExecutor(args.bodies) as pool:
                    codes = list(pool.map(post, range(args.bodies)))
                time.sleep(args.settle)  # idle, so what is still held is what stays
                after = status_mib(proc.pid, "VmRSS")
                peak = status_mib(proc.pid, "VmHWM")
                counts = {c: codes.count(c) for c in sorted(set(codes))}
                print(f"  round {round_}: answers {counts}; peak RSS {peak:8.1f} MiB; after {after:8.1f} MiB "
                      f"(anon {status_mib(proc.pid, 'RssAnon'):.1f}, file {status_mib(proc.pid, 'RssFile'):.1f})")
            print(f"RSS baseline {baseline:.0f} MiB, peak {status_mib(proc.pid, 'VmHWM'):.0f} MiB, "
                  f"after {after:.0f} MiB")
        finally:
            proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
