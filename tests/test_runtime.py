"""Runtime behaviour of handlers: steps, retries, RunOptions, determinism, errors.

Every test runs on the in-memory and the SQLite store, normally and in always-replay mode.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import pydantic
import pytest

import durably
from durably import InvocationRetryPolicy, RetryableError, RunOptions, TerminalError
from durably.server.engine.invocation import BACKING_OFF, PAUSED
from durably.server.store.base import COL


def make_app() -> tuple[durably.App, Counter[str], list[object]]:
    svc = durably.Service("Svc")
    executed: Counter[str] = Counter()
    seen: list[object] = []

    @svc.handler()
    async def three_steps(ctx: durably.Context, name: str) -> str:
        a = await ctx.run_typed("a", lambda: executed.update(["a"]) or f"a-{name}")

        async def b_fn(prefix: str, *, suffix: str) -> str:
            executed["b"] += 1
            return prefix + suffix

        b = await ctx.run_typed("b", b_fn, None, a, suffix="-b")
        c = await ctx.run("c", lambda: executed.update(["c"]) or b + "-c")
        return c

    flaky_failures = {"left": 2}

    @svc.handler()
    async def flaky(ctx: durably.Context) -> str:
        await ctx.run_typed("before", lambda: executed.update(["before"]))

        def sometimes() -> str:
            executed["flaky"] += 1
            if flaky_failures["left"] > 0:
                flaky_failures["left"] -= 1
                raise ConnectionError("the other system is down")
            return "ok"

        return await ctx.run_typed("flaky", sometimes)

    @svc.handler()
    async def exhausted(ctx: durably.Context) -> str:
        def always_fails() -> None:
            executed["write"] += 1
            raise ValueError("boom")

        try:
            await ctx.run_typed("write", always_fails, RunOptions(max_attempts=3,
                                                                  initial_retry_interval=timedelta(milliseconds=1)))
        except TerminalError as err:
            await ctx.run_typed("compensate", lambda: executed.update(["compensate"]))
            return f"compensated after: {err.message}"
        return "unreachable"

    @svc.handler()
    async def by_duration(ctx: durably.Context) -> str:
        def always_fails() -> None:
            executed["timed"] += 1
            raise ValueError("still down")

        opts: RunOptions[None] = RunOptions(max_retry_duration=timedelta(seconds=1),
                                            initial_retry_interval=timedelta(milliseconds=10),
                                            max_retry_interval=timedelta(milliseconds=20))
        try:
            await ctx.run_typed("timed", always_fails, opts)
        except TerminalError as err:
            return err.message
        return "unreachable"

    @svc.handler()
    async def terminal_in_run(ctx: durably.Context) -> str:
        def refuse() -> None:
            executed["refuse"] += 1
            raise TerminalError("card declined", status_code=402)

        await ctx.run_typed("charge", refuse)
        return "unreachable"

    @svc.handler()
    async def catches_terminal(ctx: durably.Context) -> str:
        def refuse() -> None:
            executed["refuse2"] += 1
            raise TerminalError("nope", status_code=422)

        try:
            await ctx.run_typed("charge", refuse)
        except TerminalError as e:
            return f"caught {e.status_code} {e.message}"
        return "unreachable"

    @svc.handler()
    async def deterministic(ctx: durably.Context) -> dict:
        values = {"uuid": str(ctx.uuid()), "random": ctx.random().random(), "time": await ctx.time()}
        seen.append(values)
        executed["deterministic"] += 1
        if executed["deterministic"] == 1:
            raise RuntimeError("fail the first attempt after drawing the values")
        return values

    entries = Counter[str]()

    @svc.handler()
    async def changes_path(ctx: durably.Context) -> str:
        entries["changes_path"] += 1
        if entries["changes_path"] == 1:
            await ctx.run_typed("a", lambda: "a")
            raise RuntimeError("first attempt fails after step a")
        return await ctx.run_typed("b", lambda: "b")

    @svc.handler()
    async def ctx_in_run(ctx: durably.Context) -> str:
        async def bad() -> str:
            return await ctx.run_typed("nested", lambda: "x")

        try:
            await ctx.run_typed("outer", bad)
        except TerminalError as e:
            return e.message
        return "unreachable"

    @svc.handler()
    async def rand_in_run(ctx: durably.Context) -> str:
        def bad() -> float:
            return ctx.random().random()

        try:
            await ctx.run_typed("outer", bad)
        except TerminalError as e:
            return e.message
        return "unreachable"

    return durably.app(services=[svc]), executed, seen


async def test_steps_run_once_and_results_flow(runtime) -> None:
    app, executed, _ = make_app()
    async with runtime(app) as rt:
        assert await rt.call("Svc/three_steps", "x") == "a-x-b-c"
    assert executed == Counter({"a": 1, "b": 1, "c": 1})


async def test_journal_holds_commands_and_results(runtime) -> None:
    app, _, _ = make_app()
    async with runtime(app) as rt:
        inv = await rt.send("Svc/three_steps", "x")
        await rt.attach(inv)
        await rt.engine.flushed()
        types = [t for t, _ in rt.store.load_journal(inv)]
    # input, 3 x (run command, run completion), output
    assert types == [0x0400, 0x0411, 0x8011, 0x0411, 0x8011, 0x0411, 0x8011, 0x0401]


async def test_failing_closure_is_retried_with_journaled_steps_replayed(runtime) -> None:
    app, executed, _ = make_app()
    async with runtime(app) as rt:
        assert await rt.call("Svc/flaky") == "ok"
    assert executed["flaky"] == 3
    assert executed["before"] == 1


async def test_run_options_max_attempts_then_terminal_error_and_compensation(runtime) -> None:
    app, executed, _ = make_app()
    async with runtime(app) as rt:
        result = await rt.call("Svc/exhausted")
    assert result == "compensated after: ValueError('boom')"
    assert executed["write"] == 3
    assert executed["compensate"] == 1


async def test_max_retry_duration_stops_retries(runtime) -> None:
    app, executed, _ = make_app()
    async with runtime(app) as rt:
        result = await asyncio.wait_for(rt.call("Svc/by_duration"), 30)
    assert result == "ValueError('still down')"
    # 1 s of budget (real time, so a loaded machine still fits a second try) with 10-20 ms between
    # tries: several tries, but a bounded number.
    assert 2 <= executed["timed"] <= 100


async def test_terminal_error_in_closure_is_journaled_not_retried(runtime) -> None:
    app, executed, _ = make_app()
    async with runtime(app) as rt:
        with pytest.raises(TerminalError) as info:
            await rt.call("Svc/terminal_in_run")
        assert (info.value.status_code, info.value.message) == (402, "card declined")
        assert await rt.call("Svc/catches_terminal") == "caught 422 nope"
        async with rt.http() as http:
            resp = await http.post("/Svc/terminal_in_run", content=b"")
    assert resp.status_code == 402
    assert resp.json() == {"code": 402, "message": "card declined", "source": "invocation"}
    assert resp.headers["x-restate-id"].startswith("inv_1")
    assert executed["refuse"] == 2  # once per invocation, never retried
    assert executed["refuse2"] == 1


async def test_uuid_random_time_are_stable_across_attempts(runtime) -> None:
    app, _, seen = make_app()
    async with runtime(app) as rt:
        result = await rt.call("Svc/deterministic")
    assert len(seen) >= 2
    assert all(v == seen[0] for v in seen)
    assert result == seen[0]


async def test_different_path_on_replay_is_a_journal_mismatch(runtime) -> None:
    app, _, _ = make_app()
    policy = InvocationRetryPolicy(initial_interval=timedelta(milliseconds=1), max_attempts=3,
                                   on_max_attempts="kill")
    async with runtime(app, retry_policy=policy) as rt:
        other = await rt.send("Svc/three_steps", "y")
        with pytest.raises(TerminalError) as info:
            await rt.call("Svc/changes_path")
        assert await rt.attach(other, "Svc/three_steps") == "a-y-b-c"
        await rt.engine.flushed()
        inv_rows = [r for r in rt.store.list_invocations() if r[COL["handler"]] == "changes_path"]
        journal = rt.store.load_journal(inv_rows[0][COL["id"]])
    msg = info.value.message
    assert info.value.status_code == 570
    assert "mismatch" in msg
    assert "'run' (index '1', name 'a')" in msg
    assert "'run' (index '1', name 'b')" in msg
    # The log still holds exactly what the first attempt did, plus the failure output from the kill.
    assert [t for t, _ in journal][:3] == [0x0400, 0x0411, 0x8011]


async def test_ctx_inside_run_closure_is_refused(runtime) -> None:
    app, _, _ = make_app()
    async with runtime(app) as rt:
        nested = await rt.call("Svc/ctx_in_run")
        rand = await rt.call("Svc/rand_in_run")
    assert "inside the ctx.run closure 'outer'" in nested
    assert "ctx.run" in nested
    assert "ctx.random()" in rand


async def test_retry_policy_kill_fails_with_last_error(runtime) -> None:
    svc = durably.Service("K", invocation_retry_policy=InvocationRetryPolicy(
        max_attempts=2, on_max_attempts="kill", initial_interval=timedelta(milliseconds=1)))
    tries = Counter[str]()

    @svc.handler()
    async def always(ctx: durably.Context) -> None:
        tries["n"] += 1
        raise RuntimeError(f"attempt {tries['n']} failed")

    async with runtime(durably.app(services=[svc])) as rt:
        with pytest.raises(TerminalError) as info:
            await rt.call("K/always")
    assert tries["n"] == 2
    assert info.value.message == "RuntimeError('attempt 2 failed')"


async def test_retry_policy_pause_parks_the_invocation(runtime) -> None:
    svc = durably.Service("P")
    tries = Counter[str]()

    @svc.handler(invocation_retry_policy=InvocationRetryPolicy(max_attempts=2,
                                                               initial_interval=timedelta(milliseconds=1)))
    async def always(ctx: durably.Context) -> None:
        tries["n"] += 1
        raise RuntimeError("down")

    async with runtime(durably.app(services=[svc])) as rt:
        inv = await rt.send("P/always")
        deadline = asyncio.get_running_loop().time() + 10
        while rt.store.load_invocation(inv)[COL["status"]] != PAUSED:
            assert asyncio.get_running_loop().time() < deadline, "never paused"
            await asyncio.sleep(0.005)
        row = rt.store.load_invocation(inv)
    assert tries["n"] == 2
    assert row[COL["attempts"]] == 2
    assert "down" in row[COL["last_error"]]


async def test_retryable_error_retry_after_is_honoured(runtime) -> None:
    svc = durably.Service("R")

    @svc.handler()
    async def later(ctx: durably.Context) -> None:
        raise RetryableError("rate limited", retry_after=timedelta(hours=1))

    async with runtime(durably.app(services=[svc])) as rt:
        inv = await rt.send("R/later")
        now = rt.engine.now_ms()
        while rt.store.load_invocation(inv)[COL["status"]] != BACKING_OFF:
            await rt.engine.barrier()
        row = rt.store.load_invocation(inv)
    assert row[COL["next_retry_at"]] - now >= 3_590_000
    assert "rate limited" in row[COL["last_error"]]


class Order(pydantic.BaseModel):
    item: str
    quantity: int


@dataclass
class Receipt:
    item: str
    total: float


async def test_pydantic_and_dataclass_types_from_hints(runtime) -> None:
    svc = durably.Service("Shop")

    @svc.handler()
    async def buy(ctx: durably.Context, order: Order) -> Receipt:
        assert isinstance(order, Order)

        def price() -> Receipt:
            return Receipt(order.item, order.quantity * 2.5)

        receipt = await ctx.run_typed("price", price)
        assert isinstance(receipt, Receipt)
        return receipt

    async with runtime(durably.app(services=[svc])) as rt:
        result = await rt.call("Shop/buy", Order(item="tea", quantity=4))
        async with rt.http() as http:
            bad = await http.post("/Shop/buy", json={"item": "tea", "quantity": "many"})
    assert result == Receipt("tea", 10.0)
    assert bad.status_code == 400
    assert "quantity" in bad.json()["message"]


async def test_always_replay_replays_every_step_from_the_store(runtime) -> None:
    app, executed, _ = make_app()
    async with runtime(app) as rt:
        inv = await rt.send("Svc/three_steps", "x")
        assert await rt.attach(inv, "Svc/three_steps") == "a-x-b-c"
        await rt.engine.flushed()
        attempts = rt.store.load_invocation(inv)[COL["attempts"]]
    # One attempt per step plus the last one when replaying always; one attempt otherwise.
    assert attempts == (4 if runtime.always_replay else 1)
    assert executed == Counter({"a": 1, "b": 1, "c": 1})
