"""What counting for /metrics costs on the hot path: echo and steps10 with metrics on and off.

    .venv/bin/python bench/metrics_overhead.py [--invocations 2000] [--rounds 5]

Runs the engine in process on a SQLite store (synchronous=OFF, so the disk does not drown the difference),
32 invocations in flight, alternating metrics on and off for several rounds, and reports the process CPU
time per invocation (every thread: the loop, the writer, the step threads) and the throughput, medians
over the rounds. CPU time is far less disturbed by other load on the machine than wall-clock throughput,
so the on/off ratio stays readable on a busy box. The ingress timing (two clock reads and a bisect per HTTP
request) is not in this loop; `bench/http_bench.py --serve-args=--no-metrics` measures end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import durably  # noqa: E402
from durably.server.engine.engine import Engine, EngineOptions  # noqa: E402
from durably.server.store import SQLiteStore  # noqa: E402

bench = durably.Service("Bench")


@bench.handler()
async def echo(ctx: durably.Context, value: str) -> str:
    return value


@bench.handler()
async def steps10(ctx: durably.Context, value: str) -> str:
    async def step() -> str:
        return value

    for i in range(10):
        await ctx.run_typed(f"s{i}", step)
    return value


APP = durably.app(services=[bench])


async def run_once(handler: str, n: int, metrics: bool, tmp: Path) -> tuple[float, float]:
    """(CPU seconds per invocation, invocations per second)."""
    store = SQLiteStore(tmp, "OFF")
    engine = Engine(APP, store, EngineOptions(metrics=metrics))
    await engine.start()
    h = APP.services["Bench"].handlers[handler]
    sem = asyncio.Semaphore(32)

    async def one() -> None:
        async with sem:
            _, inv_id, _ = engine.invoke(h, b'"x"', [])
            await engine.wait_outcome(inv_id)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await engine.stop()
    return cpu / n, n / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invocations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{'workload':10} {'metrics':8} {'CPU us/inv':>11} {'inv/s':>9}   (medians of {args.rounds} rounds, "
          f"{args.invocations} invocations each)")
    for handler in ("echo", "steps10"):
        results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for r in range(args.rounds):
            for metrics in ((True, False) if r % 2 == 0 else (False, True)):
                with tempfile.TemporaryDirectory() as tmp:
                    results[metrics].append(asyncio.run(run_once(handler, args.invocations, metrics, Path(tmp))))
        med = {m: (statistics.median(c for c, _ in v) * 1e6, statistics.median(t for _, t in v))
               for m, v in results.items()}
        for m in (False, True):
            print(f"{handler:10} {'on' if m else 'off':8} {med[m][0]:11.1f} {med[m][1]:9,.0f}")
        print(f"{handler:10} on/off   CPU {med[True][0] / med[False][0]:.3f}x, throughput "
              f"{med[True][1] / med[False][1]:.3f}x")


if __name__ == "__main__":
    main()
