"""The benchmark app served by `bench/sleep_bench.py`: durable timers, suspension and restart.

Serve it by hand with:

    .venv/bin/durably serve bench/sleep_apps.py:app --port 8080 --data-dir /tmp/sleep-bench-data

Handlers:
    SleepBench/nap     sleeps 1 s between two journaled `ctx.time()` calls; returns t1 - t0 (seconds)
    SleepBench/ping    returns "pong" (no journaled steps)
    LongSleep/hour     sleeps 1 hour; its service suspends an attempt after 1 s of inactivity
"""

from __future__ import annotations

from datetime import timedelta

import durably

NAP = timedelta(seconds=1)
LONG_SLEEP = timedelta(hours=1)
INACTIVITY_TIMEOUT = timedelta(seconds=1)

sleep_bench = durably.Service("SleepBench", description="Short durable timers, for wake-up latency.")
long_sleep = durably.Service(
    "LongSleep",
    description="Long durable timers that suspend quickly, for memory and restart with many pending.",
    inactivity_timeout=INACTIVITY_TIMEOUT,
)


@sleep_bench.handler()
async def nap(ctx: durably.Context) -> float:
    """Sleep 1 s; return the journaled time between going to sleep and waking up, in seconds."""
    t0 = await ctx.time()
    await ctx.sleep(NAP)
    t1 = await ctx.time()
    return t1 - t0


@sleep_bench.handler()
async def ping(ctx: durably.Context) -> str:
    """Answer at once: a liveness check for a freshly (re)started server."""
    return "pong"


@long_sleep.handler()
async def hour(ctx: durably.Context) -> str:
    """Sleep 1 hour (suspended after 1 s of inactivity, woken from the store by the timer)."""
    await ctx.sleep(LONG_SLEEP)
    return "woke"


app = durably.app(services=[sleep_bench, long_sleep])
