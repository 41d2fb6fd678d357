"""Durable timers, delayed sends, suspension, inactivity and abort timeouts, combinators, crash recovery."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import timedelta

import pytest

import durably
from durably import RunOptions, TerminalError
from durably.server.engine.engine import EngineStopped
from durably.server.engine.invocation import COMPLETED, SCHEDULED, SUSPENDED
from durably.server.store.base import COL
from durably.testing import TestRuntime


def status(rt: TestRuntime, inv: str) -> str:
    return rt.store.load_invocation(inv)[COL["status"]]


def sleepy_app() -> tuple[durably.App, Counter[str]]:
    svc = durably.Service("Sleepy")
    seen: Counter[str] = Counter()

    @svc.handler()
    async def day(ctx: durably.Context) -> int:
        for hour in range(24):
            await ctx.sleep(timedelta(hours=1), name=f"hour {hour}")
        await ctx.run_typed("done", lambda: seen.update(["done"]))
        return 24

    @svc.handler()
    async def nap(ctx: durably.Context, seconds: float) -> str:
        before = await ctx.time()
        await ctx.sleep(timedelta(seconds=seconds))
        after = await ctx.time()
        seen["nap"] += 1
        return f"{after - before:.3f}"

    @svc.handler()
    async def hello(ctx: durably.Context, name: str) -> str:
        seen["hello"] += 1
        return f"hello {name}"

    return durably.app(services=[svc]), seen


async def test_a_day_of_sleeps_in_virtual_time(runtime) -> None:
    app, seen = sleepy_app()
    async with runtime(app, virtual_clock=True) as rt:
        inv = await rt.send("Sleepy/day")
        await rt.advance(timedelta(hours=23, minutes=59))
        assert status(rt, inv) == SUSPENDED
        assert rt.engine.active_count() == 0  # a suspended invocation holds nothing in memory
        await rt.advance(timedelta(minutes=2))
        assert await rt.attach(inv, "Sleepy/day") == 24
    assert seen["done"] == 1


async def test_sleep_is_never_restarted_from_zero(runtime) -> None:
    app, _ = sleepy_app()
    async with runtime(app, virtual_clock=True) as rt:
        inv = await rt.send("Sleepy/nap", 10)
        await rt.advance(timedelta(seconds=4))
        await rt.restart()
        await rt.advance(timedelta(seconds=4))
        assert status(rt, inv) != COMPLETED
        await rt.restart()
        await rt.advance(timedelta(seconds=2))
        assert status(rt, inv) == COMPLETED
        assert float(await rt.attach(inv, "Sleepy/nap")) == pytest.approx(10, abs=0.01)


async def test_timer_due_while_down_fires_on_restart(runtime) -> None:
    app, seen = sleepy_app()
    async with runtime(app, virtual_clock=True) as rt:
        inv = await rt.send("Sleepy/nap", 5)
        await rt.advance(timedelta(seconds=1))
        await rt.engine.stop(close_store=False)
        rt.clock.set(rt.clock.now() + 3600)  # the server was down for an hour
        await rt.restart()
        await rt.settle()
        assert status(rt, inv) == COMPLETED
    assert seen["nap"] == 1


async def test_short_sleep_in_real_time_stays_in_memory() -> None:
    app, _ = sleepy_app()
    async with TestRuntime(app) as rt:
        took = float(await asyncio.wait_for(rt.call("Sleepy/nap", 0.05), 10))
    assert took >= 0.05


async def test_delayed_send_runs_after_its_delay(runtime) -> None:
    app, seen = sleepy_app()
    async with runtime(app, virtual_clock=True) as rt, rt.http() as http:
        resp = await http.post("/Sleepy/hello/send?delay=2s", json="later")
        assert resp.status_code == 202
        body = resp.json()
        assert body["status"] == "Accepted"
        assert body["executionTime"].endswith("Z")
        inv = body["invocationId"]
        await rt.advance(timedelta(seconds=1))
        assert seen["hello"] == 0
        assert status(rt, inv) == SCHEDULED
        await rt.restart()
        await rt.advance(timedelta(seconds=2))
        assert seen["hello"] == 1
        assert await rt.attach(inv, "Sleepy/hello") == "hello later"


@pytest.mark.parametrize("delay", ["500ms", "PT0.5S", "500", "0.5s"])
async def test_delay_formats(delay: str) -> None:
    app, seen = sleepy_app()
    async with TestRuntime(app, virtual_clock=True) as rt, rt.http() as http:
        resp = await http.post(f"/Sleepy/hello/send?delay={delay}", json="x")
        assert resp.status_code == 202
        await rt.advance(timedelta(milliseconds=499))
        assert seen["hello"] == 0
        await rt.advance(timedelta(milliseconds=2))
        assert seen["hello"] == 1


def hanging_app(sync: bool) -> tuple[durably.App, dict[str, object]]:
    svc = durably.Service("Hang", inactivity_timeout=timedelta(seconds=1), abort_timeout=timedelta(seconds=1))
    state: dict[str, object] = {"attempts": 0, "cancelled": 0, "release": threading.Event(),
                                "started": threading.Event()}

    if sync:
        def step() -> str:
            state["attempts"] += 1  # type: ignore[operator]
            state["started"].set()  # type: ignore[attr-defined]
            if state["attempts"] == 1:
                state["release"].wait(30)  # type: ignore[attr-defined]
                return "late first"
            return "second"
    else:
        async def step() -> str:  # type: ignore[misc]
            state["attempts"] += 1  # type: ignore[operator]
            state["started"].set()  # type: ignore[attr-defined]
            if state["attempts"] == 1:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    state["cancelled"] += 1  # type: ignore[operator]
                    raise
            return "second"

    @svc.handler()
    async def slow(ctx: durably.Context) -> str:
        return await ctx.run_typed("llm", step)

    return durably.app(services=[svc]), state


@pytest.mark.parametrize("sync", [False, True])
async def test_hanging_closure_is_aborted_and_retried(runtime, sync: bool) -> None:
    app, state = hanging_app(sync)
    # settle (in advance) gives a closure still running after step_wait up as hanging.
    async with runtime(app, virtual_clock=True, step_wait=timedelta(milliseconds=300)) as rt:
        inv = await rt.send("Hang/slow")
        assert await asyncio.to_thread(state["started"].wait, 10)  # type: ignore[attr-defined]
        await rt.advance(timedelta(seconds=2.5))
        if sync:
            # The retry does not take a second thread while the first attempt's is stuck in the step (issue
            # 20): it runs on that thread once the late closure returns.
            state["release"].set()  # type: ignore[attr-defined]
        result = await asyncio.wait_for(rt.attach(inv, "Hang/slow"), 10)
        state["release"].set()  # type: ignore[attr-defined]
        await rt.settle()
        journal = rt.store.load_journal(inv)
    assert result == "second"
    assert state["attempts"] == 2
    if not sync:
        assert state["cancelled"] == 1
    # The first attempt's late result is ignored: one run completion in the log.
    assert [t for t, _ in journal].count(0x8011) == 1


async def test_default_timeouts_let_a_closure_run_nine_minutes() -> None:
    svc = durably.Service("Long")
    gate = asyncio.Event()
    runs = Counter[str]()

    async def llm() -> str:
        runs["llm"] += 1
        await gate.wait()
        return "answer"

    @svc.handler()
    async def ask(ctx: durably.Context) -> str:
        return await ctx.run_typed("llm", llm)

    async with TestRuntime(durably.app(services=[svc]), virtual_clock=True) as rt:
        inv = await rt.send("Long/ask")
        await rt.advance(timedelta(minutes=9))
        gate.set()
        assert await rt.attach(inv, "Long/ask") == "answer"
        # Never aborted: no failed attempt (after the inactivity timeout the attempt suspends once the
        # step's result is journaled, and resumes by replay).
        assert rt.store.load_invocation(inv)[COL["last_error"]] is None
    assert runs["llm"] == 1


def combinator_app() -> durably.App:
    svc = durably.Service("Comb")

    @svc.handler()
    async def timeout(ctx: durably.Context) -> list:
        never = ctx.sleep(timedelta(days=365))
        return await durably.select(result=never, timeout=ctx.sleep(timedelta(milliseconds=200)))

    @svc.handler()
    async def race(ctx: durably.Context) -> list:
        slow = ctx.run_typed("slow", _slow_value)
        fast = ctx.sleep(timedelta(milliseconds=1))
        order = []
        async for f in durably.as_completed(slow, fast):
            order.append("slow" if f is slow else "fast")
        return order

    @svc.handler()
    async def everything(ctx: durably.Context) -> list:
        futs = [ctx.run_typed(f"r{i}", lambda i=i: i * i) for i in range(4)]
        done = await durably.gather(*futs)
        return [await f for f in done]

    @svc.handler()
    async def first_done(ctx: durably.Context) -> int:
        a = ctx.run_typed("a", lambda: 1)
        b = ctx.sleep(timedelta(hours=1))
        completed, pending = await durably.wait_completed(a, b)
        return len(completed) * 10 + len(pending)

    @svc.handler()
    async def failing_winner(ctx: durably.Context) -> str:
        def boom() -> None:
            raise TerminalError("nope", 400)

        try:
            await durably.select(a=ctx.run_typed("boom", boom), b=ctx.sleep(timedelta(hours=1)))
        except TerminalError as e:
            return e.message
        return "unreachable"

    @svc.handler()
    async def not_durable(ctx: durably.Context) -> str:
        try:
            await durably.select(a="not a future")  # type: ignore[arg-type]
        except TerminalError as e:
            return e.message
        return "unreachable"

    return durably.app(services=[svc])


async def _slow_value() -> str:
    await asyncio.sleep(0.05)
    return "slow"


async def test_select_returns_the_sleep_when_the_other_never_completes(runtime) -> None:
    async with runtime(combinator_app(), virtual_clock=True) as rt:
        inv = await rt.send("Comb/timeout")
        await rt.advance(timedelta(milliseconds=250))
        assert await rt.attach(inv, "Comb/timeout") == ["timeout", None]


async def test_select_in_real_time() -> None:
    async with TestRuntime(combinator_app()) as rt:
        assert await asyncio.wait_for(rt.call("Comb/timeout"), 10) == ["timeout", None]


async def test_combinators(runtime) -> None:
    async with runtime(combinator_app()) as rt:
        assert await rt.call("Comb/race") == ["fast", "slow"]
        assert await rt.call("Comb/everything") == [0, 1, 4, 9]
        assert await rt.call("Comb/first_done") == 11
        assert await rt.call("Comb/failing_winner") == "nope"
        assert "not" in await rt.call("Comb/not_durable")


def counted_app() -> tuple[durably.App, Counter[str]]:
    svc = durably.Service("Count")
    executed: Counter[str] = Counter()

    @svc.handler()
    async def steps(ctx: durably.Context) -> list:
        out = []
        for i in range(3):
            out.append(await ctx.run_typed(f"s{i}", lambda i=i: executed.update([f"s{i}"]) or i))
        try:
            await ctx.run_typed("fails", _always_fails, RunOptions(max_attempts=2))
        except TerminalError:
            out.append(await ctx.run_typed("compensate", lambda: executed.update(["comp"]) or "comp"))
        await ctx.sleep(timedelta(milliseconds=1))
        out.append(str(ctx.uuid()))
        return out


    return durably.app(services=[svc]), executed


def _always_fails() -> None:
    raise ValueError("no")


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_crash_after_every_journal_append(store: str, tmp_path) -> None:
    app, executed = counted_app()
    async with TestRuntime(app, store, data_dir=tmp_path / "clean") as rt:
        expected = await rt.call("Count/steps", idempotency_key="k")
        await rt.engine.flushed()
        total = sum(len(rt.store.load_journal(r[COL["id"]])) for r in rt.store.list_invocations())
    assert total > 10
    for n in range(1, total + 1):
        executed.clear()
        async with TestRuntime(app, store, data_dir=tmp_path / f"crash{n}", crash_after_appends=n) as rt:
            try:
                result = await asyncio.wait_for(rt.call("Count/steps", idempotency_key="k"), 10)
            except EngineStopped:
                assert rt.crashed
                await rt.restart()
                result = await asyncio.wait_for(rt.call("Count/steps", idempotency_key="k"), 10)
        assert result == expected, f"crash after append {n}"
        # At most the step in flight at the crash runs twice.
        assert all(count <= 2 for count in executed.values()), (n, executed)
        assert sum(executed.values()) <= 5, (n, executed)
