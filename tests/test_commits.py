"""What an invocation costs the disk: a short invocation commits its start and its end together (one fsync).

The figures `bench/commits_bench.py` prints for a real `durably serve`, pinned here on the in-process runtime:
an invocation that finishes without waiting takes one commit, and each step whose result the handler awaits
takes one more (its result is acknowledged only after the commit that holds it). A sync closure runs on a
step thread; the commit waits briefly for its result, so a quick one costs one commit too (its command and its
result together), while one that blocks holds nobody else's commit for more than about a millisecond.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import durably
from durably.server.engine import committer, threads
from durably.testing import TestRuntime

svc = durably.Service("Costs")


@svc.handler()
async def echo(ctx: durably.Context, value: str) -> str:
    return value


@svc.handler()
async def steps(ctx: durably.Context, n: int) -> int:
    async def step(i: int) -> int:  # an async closure runs on the loop, in the tick that journals it
        return i

    total = 0
    for i in range(n):
        total += await ctx.run_typed(f"step {i}", step, i=i)
    return total


@svc.handler()
async def sync_steps(ctx: durably.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run_typed(f"step {i}", lambda i=i: i)  # a sync closure: it runs on a step thread
    return total


# Released by the test: a sync closure that blocks until then (a network call without a timeout).
GATE = threading.Event()


@svc.handler()
async def blocked(ctx: durably.Context) -> str:
    return await ctx.run_typed("wait for the gate", lambda: "through" if GATE.wait(30) else "timed out")


APP = durably.app(services=[svc])


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_a_short_invocation_costs_one_commit(store: str, tmp_path) -> None:
    async with TestRuntime(APP, store, data_dir=tmp_path if store == "sqlite" else None) as rt:
        assert await rt.call("Costs/echo", "warm") == "warm"
        await rt.engine.flushed()
        before = rt.engine.committer.commits
        for i in range(20):
            assert await rt.call("Costs/echo", f"v{i}") == f"v{i}"
        await rt.engine.flushed()
        assert rt.engine.committer.commits - before == 20


@pytest.mark.parametrize("n", [1, 3])
async def test_each_awaited_step_adds_one_commit(n: int, tmp_path) -> None:
    async with TestRuntime(APP, "sqlite", data_dir=tmp_path) as rt:
        assert await rt.call("Costs/steps", 0) == 0
        await rt.engine.flushed()
        before = rt.engine.committer.commits
        assert await rt.call("Costs/steps", n) == sum(range(n))
        await rt.engine.flushed()
        assert rt.engine.committer.commits - before == n + 1


@pytest.mark.parametrize("n", [1, 3])
async def test_a_quick_sync_step_costs_one_commit_like_an_async_one(n: int, tmp_path, monkeypatch) -> None:
    # The waits are bounded at about a millisecond; widened here so that a slow test machine (a thread that takes
    # longer to wake) cannot split a step over two commits.
    monkeypatch.setattr(threads, "ARRIVING_S", 5.0)
    monkeypatch.setattr(committer, "HOLD_MAX_S", 5.0)
    async with TestRuntime(APP, "sqlite", data_dir=tmp_path) as rt:
        assert await rt.call("Costs/sync_steps", 0) == 0
        await rt.engine.flushed()
        before = rt.engine.committer.commits
        assert await rt.call("Costs/sync_steps", n) == sum(range(n))
        await rt.engine.flushed()
        assert rt.engine.committer.commits - before == n + 1


async def test_concurrent_sync_steps_share_their_commits(tmp_path, monkeypatch) -> None:
    # 16 invocations of 4 sync steps each, started together, stay in step: each round of steps is one commit
    # (one fsync), not one per drain of the threads.
    monkeypatch.setattr(threads, "ARRIVING_S", 5.0)
    monkeypatch.setattr(committer, "HOLD_MAX_S", 5.0)
    async with TestRuntime(APP, "sqlite", data_dir=tmp_path) as rt:
        assert await rt.call("Costs/sync_steps", 0) == 0
        await rt.engine.flushed()
        ids = [await rt.send("Costs/sync_steps", 4) for _ in range(16)]  # each start committed (16 commits)
        before = rt.engine.committer.commits
        assert [await rt.attach(i, "Costs/sync_steps") for i in ids] == [6] * 16
        await rt.engine.flushed()
        assert rt.engine.committer.commits - before <= 4 + 1


async def test_a_blocked_sync_step_does_not_hold_other_invocations_commits(tmp_path) -> None:
    GATE.clear()
    async with TestRuntime(APP, "sqlite", data_dir=tmp_path) as rt:
        try:
            stuck = await rt.send("Costs/blocked")
            # Others keep committing while that closure stays out: a stream of sync steps (which keep the
            # threads moving) and plain invocations all finish while the gate is still closed.
            results = await asyncio.wait_for(asyncio.gather(
                *(rt.call("Costs/sync_steps", 5) for _ in range(20)),
                *(rt.call("Costs/echo", f"v{i}") for i in range(20))), timeout=20)
            assert results == [10] * 20 + [f"v{i}" for i in range(20)]
            assert not GATE.is_set()
            assert rt.engine.run_executor.busy() == 1
        finally:
            GATE.set()
        assert await rt.attach(stuck, "Costs/blocked") == "through"
