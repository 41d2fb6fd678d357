"""Issue 20, item 13: `durably.testing.TestRuntime` with sync `ctx.run` closures.

`settle()` used to decide the runtime was idle after 20 loop ticks without journal growth while a sync
closure still ran on its thread: `advance()` then fired nothing (the sleep was registered afterwards) and
`attach` never returned, even for a closure that does no work. `settle()` now waits for running step threads
and pending commits.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import durably
from durably.testing import TestRuntime

svc = durably.Service("Sync")


def slow_work() -> int:
    time.sleep(0.3)  # the work of the step (a blocking call), not synchronisation
    return 41


@svc.handler()
async def no_work_then_sleep(ctx: durably.Context) -> str:
    value = await ctx.run_typed("nothing", lambda: "x")
    await ctx.sleep(timedelta(hours=1))
    return value + "!"


@svc.handler()
async def slow_then_sleep(ctx: durably.Context) -> int:
    value = await ctx.run_typed("slow", slow_work)
    await ctx.sleep(timedelta(days=1))
    return value + 1


@svc.handler()
async def chain(ctx: durably.Context) -> int:
    total = 0
    for i in range(5):
        total += await ctx.run_typed(f"step-{i}", lambda i=i: i)
    return total


APP = durably.app(services=[svc])


async def test_settle_waits_for_a_running_sync_step() -> None:
    async with TestRuntime(APP, virtual_clock=True) as rt:
        inv = await rt.send("Sync/slow_then_sleep")
        await rt.settle()
        assert rt.engine is not None and rt.engine.run_executor.busy() == 0
        # The step's result and the sleep are journaled (input, run, sleep).
        loaded = rt.engine.table.load(inv)
        assert loaded is not None
        if loaded.journal is None:
            rt.engine.table.load_journal(loaded)
        assert loaded.journal is not None and len(loaded.journal) >= 3


async def test_advance_fires_the_sleep_after_a_sync_step_that_does_nothing() -> None:
    async with TestRuntime(APP, virtual_clock=True) as rt:
        for _ in range(5):  # the race was narrow: try it a few times
            inv = await rt.send("Sync/no_work_then_sleep")
            await rt.advance(timedelta(hours=1))
            assert await asyncio.wait_for(rt.attach(inv, "Sync/no_work_then_sleep"), 10) == "x!"


async def test_attach_returns_after_a_slow_sync_step_and_a_day() -> None:
    async with TestRuntime(APP, virtual_clock=True) as rt:
        inv = await rt.send("Sync/slow_then_sleep")
        await rt.advance(timedelta(days=1))
        assert await asyncio.wait_for(rt.attach(inv, "Sync/slow_then_sleep"), 10) == 42


async def test_settle_then_attach_on_a_chain_of_sync_steps_in_always_replay() -> None:
    async with TestRuntime(APP, virtual_clock=True, always_replay=True) as rt:
        inv = await rt.send("Sync/chain")
        await rt.settle()
        assert await asyncio.wait_for(rt.attach(inv, "Sync/chain"), 10) == 10
