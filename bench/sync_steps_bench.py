"""Sync `ctx.run` closures against async ones: the 10-step handler, in process, steps/s and CPU per step.

    PYTHONPATH=$PWD/src .venv/bin/python bench/sync_steps_bench.py [--invocations 1000] [--rounds 5]
        [--concurrency 32] [--synchronous FULL]

Runs the engine in process on uvloop (as `durably serve` does) over a SQLite store, `--concurrency` invocations
in flight (the 32 connections of the HTTP benchmark, without the HTTP noise), alternating the two handlers
round by round:

    steps10_async   10 journaled steps whose closures are `async def step(): return i`
    steps10_sync    the same with sync closures (`lambda: i`), run on the step threads

For each it prints steps/s (wall clock), the process CPU time per step (`time.process_time()`: every thread,
the loop, the writer and the step threads) and the context switches per step (getrusage), medians over the
rounds, then the sync/async ratios. CPU time is far less disturbed by other load on the machine than wall
clock: read it when the box is busy. The issue's target is a sync figure within 1.3x of the async one.

`--synchronous FULL` (the default of `durably serve`) includes the fsyncs; `OFF` leaves only the CPU work.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import durably  # noqa: E402
from durably.server.engine.engine import Engine, EngineOptions  # noqa: E402
from durably.server.store import SQLiteStore  # noqa: E402

STEPS = 10
bench = durably.Service("Bench")


@bench.handler()
async def steps10_async(ctx: durably.Context, x: Any) -> int:
    total = 0
    for i in range(STEPS):

        async def step(i: int = i) -> int:
            return i

        total += await ctx.run_typed("step", step)
    return total


@bench.handler()
async def steps10_sync(ctx: durably.Context, x: Any) -> int:
    total = 0
    for i in range(STEPS):
        total += await ctx.run_typed("step", lambda i=i: i)
    return total


APP = durably.app(services=[bench])
HANDLERS = ("steps10_async", "steps10_sync")


def _switches() -> int:
    """Context switches of the process so far (voluntary and not): every thread hop costs some."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_nvcsw + ru.ru_nivcsw


async def run_once(handler: str, n: int, concurrency: int, synchronous: str,
                   tmp: Path) -> tuple[float, float, float]:
    """(steps per second, CPU seconds per step, context switches per step) of `n` invocations."""
    store = SQLiteStore(tmp, synchronous)
    engine = Engine(APP, store, EngineOptions())
    await engine.start()
    h = APP.services["Bench"].handlers[handler]
    sem = asyncio.Semaphore(concurrency)
    expected = sum(range(STEPS))

    async def one() -> None:
        async with sem:
            _, inv_id, _ = engine.invoke(h, b'"x"', [])
            out = await engine.wait_outcome(inv_id)
            if out is None or out.value != str(expected).encode():
                raise RuntimeError(f"{handler} answered {out!r}")

    # A few invocations first: threads started, caches warm.
    await asyncio.gather(*(one() for _ in range(concurrency)))
    cpu, wall, switches = time.process_time(), time.perf_counter(), _switches()
    await asyncio.gather(*(one() for _ in range(n)))
    cpu, wall, switches = time.process_time() - cpu, time.perf_counter() - wall, _switches() - switches
    await engine.stop()
    return n * STEPS / wall, cpu / (n * STEPS), switches / (n * STEPS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invocations", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--synchronous", default="FULL", help="SQLite synchronous mode (FULL, NORMAL, OFF)")
    args = parser.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Unix
        runner = asyncio.run
    results: dict[str, list[tuple[float, float, float]]] = {h: [] for h in HANDLERS}
    for r in range(args.rounds):
        for handler in (HANDLERS if r % 2 == 0 else HANDLERS[::-1]):
            with tempfile.TemporaryDirectory() as tmp:
                results[handler].append(runner(run_once(handler, args.invocations, args.concurrency,
                                                        args.synchronous, Path(tmp))))
    print(f"{'handler':14} {'steps/s':>9} {'CPU us/step':>12} {'switches/step':>14}   (medians of {args.rounds} "
          f"rounds, {args.invocations} invocations x {STEPS} steps, {args.concurrency} in flight, "
          f"synchronous={args.synchronous})")
    med = {h: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v) * 1e6,
               statistics.median(r[2] for r in v)) for h, v in results.items()}
    for h in HANDLERS:
        print(f"{h:14} {med[h][0]:9,.0f} {med[h][1]:12.1f} {med[h][2]:14.2f}")
    a, s = med["steps10_async"], med["steps10_sync"]
    print(f"async/sync: steps/s {a[0] / s[0]:.2f}x, CPU per step sync/async {s[1] / a[1]:.2f}x (target: within 1.3x)")


if __name__ == "__main__":
    main()
