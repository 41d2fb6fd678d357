"""User code that stalls the server (issue 10, items 6 and 7).

Sync `ctx.run` closures that never return must not starve other sync steps, and the threads they hold
after their invocation was killed are counted, logged and shown by the admin API. A handler that blocks
the event loop is named in the log.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import timedelta

import httpx
import pytest

import durably
from durably import InvocationRetryPolicy
from durably.server.engine.calltree import ActionResult
from durably.server.http.admin import Admin
from durably.testing import TestRuntime

release = threading.Event()
orders = durably.Service("Orders")
FAST = InvocationRetryPolicy(initial_interval=timedelta(milliseconds=20), max_interval=timedelta(milliseconds=50))


def charge_forever() -> str:
    # Stands for a network call without a timeout; the test releases it at the end.
    release.wait()
    return "charged"


@orders.handler()
async def place(ctx: durably.Context) -> str:
    return await ctx.run_typed("charge", charge_forever)


@orders.handler()
async def quick(ctx: durably.Context) -> int:
    return await ctx.run_typed("add", lambda: 1 + 1)


@orders.handler()
async def blocks_loop(ctx: durably.Context, seconds: float) -> str:
    await ctx.run_typed("before", lambda: "ok")
    time.sleep(seconds)  # noqa: ASYNC251 - the mistake under test: blocking in an async handler
    return "done"


APP = durably.app(services=[orders])


async def poll(condition, what: str, within: float = 20.0):  # type: ignore[no-untyped-def]
    """Wait until `condition()` is truthy (checked every 10 ms), or fail."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)


async def test_stuck_sync_steps_do_not_starve_others_and_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    release.clear()
    rt = TestRuntime(APP, retry_policy=FAST)
    rt.options.run_threads = 4
    rt.options.stuck_report_interval = 0.05
    try:
        async with rt, httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine)),
                                         base_url="http://admin") as admin:
            assert rt.engine is not None
            pool = rt.engine.run_executor
            stuck = [await rt.send("Orders/place") for _ in range(3)]
            await poll(lambda: len(pool.jobs()) == 3, "three closures to run")
            for inv_id in stuck:
                assert rt.engine.kill(inv_id) is ActionResult.DONE
            # Three threads stay stuck, yet other sync steps run.
            for _ in range(5):
                assert await asyncio.wait_for(rt.call("Orders/quick"), 10) == 2
            await poll(lambda: "3 threads stuck in Orders/place step 'charge' for" in caplog.text, "the stuck log")
            threads = (await admin.get("/threads")).json()["run_threads"]
            assert threads["max_threads"] == 4 and threads["stuck"] == 3
            assert {(s["target"], s["step"], s["stuck"]) for s in threads["steps"]} == {
                ("Orders/place", "charge", True)}
            assert sorted(s["invocation_id"] for s in threads["steps"]) == sorted(stuck)
            assert threads["stuck_summary"][0].startswith("3 threads stuck in Orders/place step 'charge'")

            # Threads stuck in steps of killed invocations no longer hold the cap (issue 20): four live hung
            # steps fill it, and new sync steps now fail their attempt, retryably.
            for _ in range(4):
                await rt.send("Orders/place")
            await poll(lambda: len(pool.jobs()) == 7, "the four new closures to run")
            waiting = await rt.send("Orders/quick")

            async def last_error() -> str:
                body = (await admin.get(f"/invocations/{waiting}")).json()
                return (body.get("last_error") or {}).get("message", "")

            deadline = time.monotonic() + 20
            while "threads for sync ctx.run steps are busy" not in (msg := await last_error()):
                assert time.monotonic() < deadline, msg
                await asyncio.sleep(0.01)
            assert "all 4 threads" in msg and "GET /threads" in msg
            assert "3 more stuck in steps of ended invocations do not count" in msg
            assert (await admin.get("/threads")).json()["run_threads"]["refused"] >= 1
            # Once the closures return, the retried step runs.
            release.set()
            assert await asyncio.wait_for(rt.attach(waiting, "Orders/quick"), 20) == 2
            await poll(lambda: not pool.jobs(), "the stuck threads to be free")
            assert "is free again" in caplog.text
    finally:
        release.set()


async def test_a_handler_that_blocks_the_event_loop_is_named_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    rt = TestRuntime(APP)
    rt.options.loop_stall_threshold = 0.5
    async with rt, httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine)),
                                     base_url="http://admin") as admin:
        inv_id = await rt.send("Orders/blocks_loop", 2.0)
        assert await rt.attach(inv_id, "Orders/blocks_loop") == "done"
        await poll(lambda: "runs again after being blocked" in caplog.text, "the recovery line")
        # (A loaded machine may stall the loop elsewhere too: look for the line naming our invocation.)
        lines = [r.getMessage() for r in caplog.records
                 if "event loop has been blocked" in r.getMessage() and inv_id in r.getMessage()]
        assert lines, caplog.text
        assert f"by invocation {inv_id} (Orders/blocks_loop)" in lines[0]
        assert "test_limits_threads.py" in lines[0] and "in blocks_loop()" in lines[0]
        assert "sync ctx.run closure" in lines[0]
        loop = (await admin.get("/threads")).json()["event_loop"]
        assert loop["threshold_s"] == 0.5 and loop["stalls"] >= 1 and loop["last"]["blocked_s"] >= 0.5
