"""Named signals (restate-sdk 1.2's ctx.signal / resolve_signal / reject_signal), in every store and replay mode."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

import durably
from durably import TerminalError
from durably.server.engine.invocation import SUSPENDED
from durably.server.store.base import COL

awakeables: dict[str, str] = {}

svc = durably.Service("Signals")


@svc.handler()
async def wait_one(ctx: durably.Context) -> str:
    return await ctx.signal("approve", type_hint=str)


@svc.handler()
async def wait_select(ctx: durably.Context) -> list:
    """A signal raced against a long sleep and an awakeable nobody resolves."""
    _, aw = ctx.awakeable(type_hint=str)
    return await durably.select(sig=ctx.signal("go", type_hint=str), timeout=ctx.sleep(timedelta(hours=1)), aw=aw)


@svc.handler()
async def wait_gather(ctx: durably.Context) -> list[str]:
    a, b = ctx.signal("a", type_hint=str), ctx.signal("b", type_hint=str)
    await durably.gather(a, b)
    order = [f async for f in durably.as_completed(ctx.signal("a", type_hint=str), ctx.signal("b", type_hint=str))]
    assert len(order) == 2
    return [await a, await b]


@svc.handler()
async def late_ask(ctx: durably.Context) -> str:
    """Asks for the signal only after an awakeable: the signal arrived before it was awaited."""
    aw_id, aw = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", lambda: awakeables.__setitem__("late", aw_id))
    await aw
    return await ctx.signal("early", type_hint=str)


@svc.handler()
async def caught(ctx: durably.Context) -> str:
    try:
        await ctx.signal("approve", type_hint=str)
    except TerminalError as e:
        return f"rejected {e.status_code} {e.message}"
    return "resolved"


@svc.handler()
async def resolve(ctx: durably.Context, req: dict) -> None:
    ctx.resolve_signal(req["id"], req["name"], req["value"])


@svc.handler()
async def reject(ctx: durably.Context, req: dict) -> None:
    ctx.reject_signal(req["id"], req["name"], req["message"], req.get("code", 500))


APP = durably.app(services=[svc])


async def until(cond: Callable[[], object], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 10.0
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def test_a_handler_resolves_another_invocations_signal(runtime) -> None:
    async with runtime(APP) as rt:
        inv = await rt.send("Signals/wait_one")
        await rt.call("Signals/resolve", {"id": inv, "name": "approve", "value": "yes"})
        assert await rt.attach(inv, "Signals/wait_one") == "yes"


async def test_the_waiter_suspends_on_the_signal_by_name(runtime) -> None:
    async with runtime(APP, inactivity_timeout=timedelta(milliseconds=1)) as rt:
        inv = await rt.send("Signals/wait_one")

        def suspended() -> bool:
            row = rt.store.load_invocation(inv)
            return row is not None and row[COL["status"]] == SUSPENDED

        await until(suspended, "the waiter to suspend")
        assert "approve" in rt.store.load_invocation(inv)[COL["waiting"]]
        await rt.call("Signals/resolve", {"id": inv, "name": "approve", "value": "later"})
        assert await rt.attach(inv, "Signals/wait_one") == "later"


async def test_reject_signal_raises_terminal_error_with_code(runtime) -> None:
    async with runtime(APP) as rt:
        inv = await rt.send("Signals/caught")
        await rt.call("Signals/reject", {"id": inv, "name": "approve", "message": "no way", "code": 403})
        assert await rt.attach(inv, "Signals/caught") == "rejected 403 no way"
        inv2 = await rt.send("Signals/wait_one")
        await rt.call("Signals/reject", {"id": inv2, "name": "approve", "message": "denied"})
        with pytest.raises(TerminalError) as info:
            await rt.attach(inv2, "Signals/wait_one")
        assert (info.value.status_code, info.value.message) == (500, "denied")


async def test_signal_in_select_beats_sleep_and_awakeable(runtime) -> None:
    async with runtime(APP) as rt:
        inv = await rt.send("Signals/wait_select")
        await rt.call("Signals/resolve", {"id": inv, "name": "go", "value": "now"})
        assert await rt.attach(inv, "Signals/wait_select") == ["sig", "now"]


async def test_signals_in_gather_and_as_completed(runtime) -> None:
    async with runtime(APP) as rt:
        inv = await rt.send("Signals/wait_gather")
        await rt.call("Signals/resolve", {"id": inv, "name": "b", "value": "B"})
        await rt.call("Signals/resolve", {"id": inv, "name": "a", "value": "A"})
        assert await rt.attach(inv, "Signals/wait_gather") == ["A", "B"]


async def test_a_signal_sent_before_it_is_awaited_is_kept(runtime) -> None:
    awakeables.clear()
    async with runtime(APP) as rt, rt.http() as http:
        inv = await rt.send("Signals/late_ask")
        await until(lambda: "late" in awakeables, "the awakeable")
        await rt.call("Signals/resolve", {"id": inv, "name": "early", "value": "first"})
        assert (await http.post(f"/restate/awakeables/{awakeables['late']}/resolve", json="x")).status_code == 202
        assert await rt.attach(inv, "Signals/late_ask") == "first"


async def test_signal_to_a_completed_or_unknown_invocation_is_dropped(runtime) -> None:
    async with runtime(APP) as rt:
        inv = await rt.send("Signals/wait_one")
        await rt.call("Signals/resolve", {"id": inv, "name": "approve", "value": "1"})
        assert await rt.attach(inv, "Signals/wait_one") == "1"
        await rt.call("Signals/resolve", {"id": inv, "name": "approve", "value": "2"})  # no error for the sender
        assert await rt.attach(inv, "Signals/wait_one") == "1"
