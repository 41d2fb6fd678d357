"""`durably endpoint` vs. plain hypercorn serving the same Durably app to one Restate node: throughput and latency.

Run from the repository root (needs `bash scripts/test.sh` to have installed `.interop/`, and wrk):

    .venv/bin/python bench/endpoint_bench.py            # 2 s warm-up + 10 s per measurement
    .venv/bin/python bench/endpoint_bench.py --quick    # 1 s warm-up + 4 s per measurement

One restate-server runs on free ports. In turn, bench/compare/durably_app.py:app is served by
  1. plain hypercorn (its defaults: GOAWAY after 1,000 requests per connection, 5 s keep-alive, 64 KiB windows),
  2. `durably endpoint --workers 1`,
  3. `durably endpoint --workers 2`,
each registered with the Restate node (`POST /deployments`, force), and wrk drives Restate's ingress with
`POST /Bench/steps10` (10 journaled steps) and `POST /Bench/echo` at 32 connections. Printed per run: req/s,
p50/p99/max, non-2xx and socket errors (both must be 0), CPU per process group; then each endpoint run's
ratio to plain hypercorn. Target: `durably endpoint` at least as fast as plain hypercorn.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_bench import BODY, LUA_TEMPLATE  # bench/ is not a package: found through sys.path
from interop_bench import RESTATE_WRAPPER, Result, System, measure, start_restate
from procs import Proc, durably_cmd, free_port, healthy, wait_until

BENCH_DIR = Path(__file__).resolve().parent
APP = "durably_app:app"
HANDLERS = ("steps10", "echo")


def start_deployment(kind: str, workdir: Path) -> tuple[Proc, str]:
    port = free_port()
    bindir = Path(sys.executable).parent
    if kind == "hypercorn":
        cmd = [str(bindir / "hypercorn"), "--bind", f"127.0.0.1:{port}", APP]
    else:
        workers = kind.rsplit("-", 1)[1]
        cmd = durably_cmd("endpoint", APP, "--port", str(port), "--workers", workers, "--log-level", "warning")
    proc = Proc(kind, cmd, cwd=BENCH_DIR / "compare", log_path=workdir / f"{kind}.log")
    proc.start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: healthy(f"{url}/health"), 30, kind, proc)
    return proc, url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 s warm-up + 4 s per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1, help="measure every variant this many times, interleaved")
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None or not RESTATE_WRAPPER.exists():
        print("error: needs wrk and .interop/ (bash scripts/test.sh)", file=sys.stderr)
        return 2
    duration, warmup = (4.0, 1.0) if args.quick else (10.0, 2.0)
    variants = ["hypercorn", "endpoint-1", "endpoint-2"]
    workdir = Path(tempfile.mkdtemp(prefix="durably-endpoint-bench-"))
    lua = workdir / "post.lua"
    lua.write_text(LUA_TEMPLATE.format(body=json.dumps(BODY)))
    results: list[Result] = []
    restate = start_restate(workdir)
    try:
        for _ in range(args.rounds):
            for kind in variants:
                dep, url = start_deployment(kind, workdir)
                try:
                    system = System(kind, restate.proc, restate.ingress, restate.admin)
                    system.register(url)
                    for handler in HANDLERS:
                        system.check(handler)
                        r = measure(wrk, system, {"restate-server": restate.proc, "deployment": dep}, lua, handler,
                                    args.connections, duration, warmup)
                        results.append(r)
                        print(f"  {kind:<11} {r.label:<11} {r.req_per_s:8,.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
                              f"p99 {r.p99_ms:7.2f} ms  max {r.max_ms:7.1f} ms  non-2xx {r.non_2xx}  "
                              f"sockerr {r.socket_errors}  CPU restate {r.cpu['restate-server']:.0%} "
                              f"deployment {r.cpu['deployment']:.0%} other {r.cpu.get('other', 0):.0%}", flush=True)
                finally:
                    dep.stop()
    finally:
        restate.proc.stop()
    print("\nbest of rounds, ratio to plain hypercorn (throughput; p50; p99):")
    best: dict[tuple[str, str], Result] = {}
    for r in results:
        key = (r.system, r.handler)
        if key not in best or r.req_per_s > best[key].req_per_s:
            best[key] = r
    clean = all(r.non_2xx == 0 and r.socket_errors == 0 for r in results)
    for handler in HANDLERS:
        base = best[("hypercorn", handler)]
        print(f"  {handler}@{args.connections}: hypercorn {base.req_per_s:,.0f} req/s, p50 {base.p50_ms:.2f} ms, "
              f"p99 {base.p99_ms:.2f} ms")
        for kind in variants[1:]:
            r = best[(kind, handler)]
            print(f"    {kind:<11} {r.req_per_s:8,.0f} req/s  x{r.req_per_s / base.req_per_s:.2f}   "
                  f"p50 x{r.p50_ms / base.p50_ms:.2f}   p99 x{r.p99_ms / base.p99_ms:.2f}   "
                  f"{'MET' if r.req_per_s >= base.req_per_s else 'MISSED'}")
    if not clean:
        print("\nWARNING: some runs had non-2xx responses or socket errors: those figures are not valid")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
