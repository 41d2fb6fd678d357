"""Issue 21, item 3: the hand-off of sync `ctx.run` closures to their threads and of their outcomes back.

Outcomes come back to the event loop through one inbox per loop, drained in one go per wake-up. These tests
pin down what that must keep: every outcome of closures that finish together is delivered, once, on the loop,
in the order they finished; a closure that raises delivers its exception; a closure that never ran (its
attempt was aborted while it waited for a stuck thread) is told so; the result of a closure whose attempt was
aborted is never journaled; closures of a handler that awaits several at once all come back.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

import durably
import durably.extensions
from durably import InvocationRetryPolicy
from durably.protocol import messages as m
from durably.sdk.errors import TerminalError
from durably.server.engine.calltree import ActionResult
from durably.server.engine.threads import StepJob, StepThreads
from durably.testing import TestRuntime


async def poll(condition, what: str, within: float = 20.0):  # type: ignore[no-untyped-def]
    """Wait on the loop until `condition()` is truthy, or fail."""
    deadline = time.monotonic() + within
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.005)
    return result


def block_until(condition, what: str, within: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Wait *without* yielding to the loop (so nothing it has queued runs meanwhile), or fail."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        time.sleep(0.001)


class Outcomes:
    """Collects (tag, result, exception, thread) as `on_done` callbacks are called."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, Any, BaseException | None, int]] = []

    def callback(self, tag: Any):  # type: ignore[no-untyped-def]
        def on_done(result: Any, exc: BaseException | None) -> None:
            self.seen.append((tag, result, exc, threading.get_ident()))
        return on_done


async def test_outcomes_of_closures_finishing_together_come_back_in_one_wake_up_in_finishing_order() -> None:
    loop = asyncio.get_running_loop()
    pool = StepThreads(8)
    wakeups = 0
    real = loop.call_soon_threadsafe

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal wakeups
        wakeups += 1
        return real(*args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    gates = [threading.Event() for _ in range(8)]
    finished: list[int] = []
    got = Outcomes()
    owner = object()
    try:
        for i in range(8):
            def work(i: int = i) -> int:
                gates[i].wait(20)
                return i * 10
            pool.post(StepJob(owner, "inv_1", "Svc/h", f"s{i}"), work, (), got.callback(i))
        await poll(lambda: pool.busy() == 8, "eight closures to run")
        # Released in a known order without the loop running: each finishes (and reaches the inbox) before
        # the next is released, so they wait there together.
        for i in (3, 0, 7, 1, 6, 2, 5, 4):
            gates[i].set()
            block_until(lambda: pool.busy() == 7 - len(finished), f"closure {i} to finish")
            finished.append(i)
        block_until(lambda: len(pool._inboxes[loop].done) == 8, "the eight outcomes to reach the inbox")
        assert got.seen == []  # nothing is handed back off the loop
        await asyncio.sleep(0)  # the drain queued by the first outcome runs before this task resumes
        assert [(tag, result, exc) for tag, result, exc, _ in got.seen] == [(i, i * 10, None) for i in finished]
        assert {thread for *_, thread in got.seen} == {threading.get_ident()}
        assert wakeups == 1
        assert pool.live_futures() == []
    finally:
        loop.call_soon_threadsafe = real  # type: ignore[method-assign]
        for g in gates:
            g.set()
        pool.shutdown(wait=False)


async def test_a_closure_that_raises_delivers_its_exception_and_the_thread_serves_the_next() -> None:
    pool = StepThreads(1)
    got = Outcomes()

    def fails() -> None:
        raise ValueError("boom")

    def exits() -> None:
        raise SystemExit(3)

    try:
        pool.post(StepJob(None, "inv_1", "Svc/h", "fails"), fails, (), got.callback("fails"))
        await poll(lambda: len(got.seen) == 1, "the failure")
        pool.post(StepJob(None, "inv_1", "Svc/h", "exits"), exits, (), got.callback("exits"))
        await poll(lambda: len(got.seen) == 2, "the SystemExit")
        pool.post(StepJob(None, "inv_1", "Svc/h", "adds"), lambda a, b: a + b, (2, 3), got.callback("adds"))
        await poll(lambda: len(got.seen) == 3, "the result")
        (t1, r1, e1, _), (t2, r2, e2, _), (t3, r3, e3, _) = got.seen
        assert (t1, r1, type(e1), str(e1)) == ("fails", None, ValueError, "boom")
        assert (t2, r2, type(e2)) == ("exits", None, SystemExit)
        assert (t3, r3, e3) == ("adds", 5, None)
        assert pool.status()["threads"] == 1  # one thread served all three
    finally:
        pool.shutdown(wait=False)


async def test_a_closure_waiting_for_a_stuck_thread_is_told_it_never_ran_when_its_attempt_is_aborted() -> None:
    pool = StepThreads(2)
    gate = threading.Event()
    got = Outcomes()
    first, retry = object(), object()
    ran: list[str] = []

    def hangs() -> str:
        gate.wait(20)
        ran.append("first")
        return "first"

    def retried() -> str:
        ran.append("retry")
        return "retry"

    try:
        pool.post(StepJob(first, "inv_1", "Svc/h", "call"), hangs, (), got.callback("first"))
        await poll(lambda: pool.busy() == 1, "the closure to run")
        assert pool.abandon(first) == 1
        # The retry's closure waits for the stuck thread, then its attempt is aborted as well.
        pool.post(StepJob(retry, "inv_1", "Svc/h", "call"), retried, (), got.callback("retry"))
        assert pool.status()["waiting"] == 1 and pool.waited == 1
        assert pool.live_futures() == []  # settle() does not wait for closures of aborted attempts
        pool.abandon(retry)
        await poll(lambda: len(got.seen) == 1, "the cancelled closure to be told")
        tag, result, exc, _ = got.seen[0]
        assert (tag, result, type(exc)) == ("retry", None, asyncio.CancelledError)
        gate.set()
        await poll(lambda: len(got.seen) == 2, "the stuck closure's outcome")
        assert got.seen[1][:3] == ("first", "first", None)
        assert ran == ["first"]  # the cancelled closure never ran
        await poll(lambda: pool.status()["idle"] == pool.status()["threads"] == 1, "the thread to be idle")
    finally:
        gate.set()
        pool.shutdown(wait=False)


async def test_executor_style_submissions_still_get_a_future() -> None:
    pool = StepThreads(2)
    try:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(pool, lambda: 41 + 1) == 42
        with pytest.raises(ValueError, match="bad"):
            await loop.run_in_executor(pool, int, "bad")
        assert pool.live_futures() == []
    finally:
        pool.shutdown(wait=False)


# ---- through the runtime ----

svc = durably.Service("Hop")
gate = threading.Event()
calls: list[int] = []
FAST = InvocationRetryPolicy(initial_interval=timedelta(milliseconds=10), max_interval=timedelta(milliseconds=20))
SHORT = timedelta(milliseconds=200)


def numbered() -> str:
    calls.append(len(calls) + 1)
    n = len(calls)
    if n == 1:
        gate.wait(30)  # the first attempt's closure hangs until the test lets it go
    return f"call-{n}"


@svc.handler(inactivity_timeout=SHORT, abort_timeout=SHORT)
async def aborted_first(ctx: durably.Context) -> str:
    return await ctx.run_typed("call", numbered)


@svc.handler()
async def killed(ctx: durably.Context) -> str:
    return await ctx.run_typed("call", numbered)


@svc.handler()
async def many_at_once(ctx: durably.Context, n: int) -> list[int]:
    runs = [ctx.run_typed(f"s{i}", lambda i=i: i * i) for i in range(n)]
    return [await r for r in await durably.gather(*runs)]


@svc.handler()
async def sequence(ctx: durably.Context, n: int) -> list[int]:
    return [await ctx.run_typed(f"s{i}", lambda i=i: i) for i in range(n)]


@svc.handler()
async def raises(ctx: durably.Context, terminal: bool) -> str:
    def fail() -> str:
        if terminal:
            raise TerminalError("no such card", 422)
        raise ValueError("flaky")

    return await ctx.run("fail", fail, max_attempts=2)


REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


@svc.handler()
async def sees_context(ctx: durably.Context) -> list[Any]:
    REQUEST_ID.set("req-7")

    def look() -> list[Any]:
        nested = ""
        try:
            ctx.run_typed("nested", lambda: 1)
        except Exception as e:  # ctx calls are refused inside a closure
            nested = str(e)
        return [REQUEST_ID.get(), durably.extensions.current_context() is ctx, nested]

    return await ctx.run_typed("look", look)


APP = durably.app(services=[svc])


def run_completions(rt: TestRuntime, inv_id: str) -> list[str]:
    assert rt.engine is not None
    inv = rt.engine.table.load(inv_id)
    assert inv is not None
    if inv.journal is None:
        rt.engine.table.load_journal(inv)
    assert inv.journal is not None
    out = []
    for type_id, msg in inv.journal:
        if type_id == m.RUN_COMPLETION:
            out.append(msg.value.content.decode() if msg.WhichOneof("result") == "value"  # type: ignore[attr-defined]
                       else f"failure {msg.failure.code}")  # type: ignore[attr-defined]
    return out


async def test_the_result_of_a_closure_whose_attempt_was_aborted_is_never_journaled() -> None:
    gate.clear()
    calls.clear()
    rt = TestRuntime(APP, retry_policy=FAST)
    try:
        async with rt:
            assert rt.engine is not None
            pool = rt.engine.run_executor
            inv_id = await rt.send("Hop/aborted_first")
            # The first attempt's closure hangs past the abort timeout; a retry waits for its thread.
            await poll(lambda: pool.waited >= 1, "a retry to wait for the stuck thread")
            gate.set()
            result = await asyncio.wait_for(rt.attach(inv_id, "Hop/aborted_first"), 20)
            assert len(calls) >= 2 and result == f"call-{len(calls)}"
            assert run_completions(rt, inv_id) == [f'"{result}"']  # "call-1" came back too late: dropped
            await poll(lambda: pool.busy() == 0, "the thread to be free")
    finally:
        gate.set()


async def test_killing_an_invocation_while_its_closure_runs_drops_the_result() -> None:
    gate.clear()
    calls.clear()
    rt = TestRuntime(APP)
    try:
        async with rt:
            assert rt.engine is not None
            pool = rt.engine.run_executor
            inv_id = await rt.send("Hop/killed")
            await poll(lambda: pool.busy() == 1, "the closure to run")
            assert rt.engine.kill(inv_id) is ActionResult.DONE
            with pytest.raises(TerminalError) as killed_err:
                await asyncio.wait_for(rt.attach(inv_id), 20)
            assert killed_err.value.status_code == 409
            gate.set()
            await poll(lambda: pool.busy() == 0, "the closure to return")
            await rt.settle()
            assert calls == [1]
            assert run_completions(rt, inv_id) == []
    finally:
        gate.set()


async def test_many_closures_awaited_at_once_all_come_back() -> None:
    async with TestRuntime(APP) as rt:
        results = await asyncio.gather(*(rt.call("Hop/many_at_once", 12) for _ in range(6)))
        assert results == [[i * i for i in range(12)]] * 6


async def test_closures_awaited_one_after_another_come_back_in_order() -> None:
    async with TestRuntime(APP) as rt:
        results = await asyncio.gather(*(rt.call("Hop/sequence", 10) for _ in range(16)))
        assert results == [list(range(10))] * 16


async def test_a_raising_closure_fails_its_step_with_its_exception() -> None:
    async with TestRuntime(APP, retry_policy=FAST) as rt:
        with pytest.raises(TerminalError) as terminal:
            await rt.call("Hop/raises", True)
        assert (terminal.value.status_code, terminal.value.message) == (422, "no such card")
        with pytest.raises(TerminalError) as spent:
            await rt.call("Hop/raises", False)
        assert "ValueError('flaky')" in spent.value.message


async def test_a_sync_closure_sees_the_handlers_context_variables_and_current_context() -> None:
    async with TestRuntime(APP) as rt:
        req, is_ctx, nested = await rt.call("Hop/sees_context")
        assert (req, is_ctx) == ("req-7", True)
        assert "inside the ctx.run closure 'look'" in nested  # ctx calls are refused inside a closure
