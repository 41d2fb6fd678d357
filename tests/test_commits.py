"""What an invocation costs the disk: a short invocation commits its start and its end together (one fsync).

The figures `bench/commits_bench.py` prints for a real `durably serve`, pinned here on the in-process runtime:
an invocation that finishes without waiting takes one commit, and each step whose result the handler awaits
takes one more (its result is acknowledged only after the commit that holds it). A sync closure runs on a
step thread, so its command is usually committed while the thread runs, and its result in a commit of its own.
"""

from __future__ import annotations

import pytest

import durably
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
