"""Issue 20, item 9: a sync step that hangs must not fill the thread cap through its retries.

With `--run-threads 32`, 8 invocations whose sync step hung filled all 32 threads in 25 s: each retry (after
the abort timeout) started a new thread for the same step while the previous attempt's thread was still stuck
in it. After killing all 8, an unrelated sync step still got 503 until restart. Now a retry waits for its
previous attempt's thread (counted and logged), and threads stuck in steps of invocations that ended no longer
count against the cap.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import timedelta

import pytest

import durably
from durably import InvocationRetryPolicy
from durably.server.engine.calltree import ActionResult
from durably.testing import TestRuntime

hang = threading.Event()
svc = durably.Service("Hung")
FAST = InvocationRetryPolicy(initial_interval=timedelta(milliseconds=10), max_interval=timedelta(milliseconds=20))
SHORT = timedelta(milliseconds=100)


def wait_forever() -> str:
    hang.wait()  # stands for a call without a timeout; the test releases it at the end
    return "done"


@svc.handler(inactivity_timeout=SHORT, abort_timeout=SHORT)
async def stuck(ctx: durably.Context) -> str:
    return await ctx.run_typed("call", wait_forever)


@svc.handler()
async def quick(ctx: durably.Context) -> int:
    return await ctx.run_typed("add", lambda: 1 + 1)


APP = durably.app(services=[svc])


async def poll(condition, what: str, within: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)
    return result


async def test_retries_of_a_hung_step_wait_for_its_thread_and_kill_frees_the_cap(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    hang.clear()
    rt = TestRuntime(APP, retry_policy=FAST)
    rt.options.run_threads = 3
    try:
        async with rt:
            engine = rt.engine
            assert engine is not None
            pool = engine.run_executor
            ids = [await rt.send("Hung/stuck") for _ in range(2)]

            def retried(n: int) -> bool:
                return all((inv := engine.table.load(i)) is not None and inv.retry_count >= n for i in ids)

            await poll(lambda: retried(4), "each invocation to be retried four times")
            # One thread per hung invocation, however many retries: the retries wait for it.
            status = pool.status()
            assert status["busy"] == 2 and status["threads"] == 2, status
            assert status["waiting_for_stuck"] >= 4, status
            assert "waits for the thread of its previous attempt" in caplog.text
            # The cap still has room for an unrelated sync step.
            assert await asyncio.wait_for(rt.call("Hung/quick"), 10) == 2

            # Fill the cap with a third hung step, then kill all three: their threads stay stuck (Python
            # cannot stop them) but no longer hold the cap, so unrelated sync steps run again.
            ids.append(await rt.send("Hung/stuck"))
            await poll(lambda: pool.busy() == 3, "the third closure to run")
            for inv_id in ids:
                assert engine.kill(inv_id) is ActionResult.DONE
            await rt.settle()
            assert pool.busy() == 3
            assert await asyncio.wait_for(rt.call("Hung/quick"), 10) == 2
            assert pool.status()["refused"] == 0
    finally:
        hang.set()
