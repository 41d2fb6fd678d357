"""Kill reaches the whole call tree: children killed too, key locks freed, queued calls run, callers told."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import durably
from durably.server.engine.calltree import ActionResult
from durably.server.engine.invocation import COMPLETED, INBOXED
from durably.server.store.base import COL

awakeables: dict[str, str] = {}

loop = durably.VirtualObject("Loop")


@loop.handler()
async def spin(ctx: durably.ObjectContext) -> str:
    """Waits for an awakeable, then calls itself on its own key: it deadlocks on its own lock."""
    aw_id, fut = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", lambda: awakeables.__setitem__(ctx.key(), aw_id))
    await fut
    return await ctx.object_call(spin, key=ctx.key(), arg=None)


@loop.handler()
async def add(ctx: durably.ObjectContext, delta: int) -> int:
    value = (await ctx.get("value") or 0) + delta
    ctx.set("value", value)
    return value


@loop.handler(kind="shared")
async def peek(ctx: durably.ObjectSharedContext) -> int:
    return await ctx.get("value") or 0


root = durably.Service("Root")


@root.handler()
async def start(ctx: durably.Context, key: str) -> str:
    return await ctx.object_call(spin, key=key, arg=None)


chain = durably.Service("Chain")


@chain.handler()
async def down(ctx: durably.Context, n: int) -> str:
    """Calls itself n levels deep; the deepest waits for an awakeable nobody resolves."""
    if n == 0:
        aw_id, fut = ctx.awakeable(type_hint=str)
        await ctx.run_typed("publish", lambda: awakeables.__setitem__("deepest", aw_id))
        return await fut
    return await ctx.service_call(down, n - 1)


APP = durably.app(services=[loop, root, chain])


async def until(cond: Callable[[], object], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 10.0
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def rows(rt, handler: str) -> list[tuple]:
    return [r for r in rt.store.list_invocations() if r[COL["handler"]] == handler]


async def _deadlock(rt, http, key: str) -> tuple[asyncio.Task, str]:
    awakeables.pop(key, None)
    call = asyncio.create_task(http.post("/Root/start", json=key))
    await until(lambda: key in awakeables, "the awakeable")
    resolved = await http.post(f"/restate/awakeables/{awakeables[key]}/resolve", json="go")
    assert resolved.status_code == 202
    await until(lambda: any(r[COL["status"]] == INBOXED for r in rows(rt, "spin")), "the self-call to queue")
    root_id = rows(rt, "start")[0][COL["id"]]
    return call, root_id


async def test_kill_of_the_root_frees_a_key_deadlocked_on_its_own_lock(runtime) -> None:
    async with runtime(APP) as rt, rt.http() as http:
        call, root_id = await _deadlock(rt, http, "k1")
        assert rt.engine.kill(root_id) is ActionResult.DONE
        answer = await asyncio.wait_for(call, 10)
        assert (answer.status_code, answer.json()["message"]) == (409, "killed")
        # Both spins (the one holding the lock and its queued self-call) are killed with the root.
        await rt.engine.flushed()
        spins = rows(rt, "spin")
        assert len(spins) == 2
        assert {(r[COL["status"]], r[COL["failure_code"]], r[COL["failure_message"]]) for r in spins} == {
            (COMPLETED, 409, "killed")}
        # The key answers again: a shared and an exclusive call.
        shared = await asyncio.wait_for(http.post("/Loop/k1/peek"), 10)
        exclusive = await asyncio.wait_for(http.post("/Loop/k1/add", json=2), 10)
        assert (shared.status_code, shared.json()) == (200, 0)
        assert (exclusive.status_code, exclusive.json()) == (200, 2)


async def test_calls_queued_behind_a_killed_invocation_run(runtime) -> None:
    async with runtime(APP) as rt, rt.http() as http:
        call, root_id = await _deadlock(rt, http, "k2")
        queued = asyncio.create_task(http.post("/Loop/k2/add", json=5))
        await until(lambda: any(r[COL["status"]] == INBOXED for r in rows(rt, "add")), "add to queue")
        assert rt.engine.kill(root_id) is ActionResult.DONE
        done = await asyncio.wait_for(queued, 10)
        assert (done.status_code, done.json()) == (200, 5)
        assert (await call).status_code == 409


async def test_caller_of_a_killed_child_sees_409_killed(runtime) -> None:
    async with runtime(APP) as rt, rt.http() as http:
        awakeables.pop("k3", None)
        call = asyncio.create_task(http.post("/Root/start", json="k3"))
        await until(lambda: "k3" in awakeables and rows(rt, "spin"), "the awakeable")
        spin_id = rows(rt, "spin")[0][COL["id"]]
        assert rt.engine.kill(spin_id) is ActionResult.DONE
        answer = await asyncio.wait_for(call, 10)
        assert answer.status_code == 409
        assert answer.json() == {"code": 409, "message": "killed", "source": "invocation"}
        assert rt.engine.kill(spin_id) is ActionResult.CONFLICT  # already completed


async def test_kill_reaches_every_level_of_a_deep_call_chain(runtime) -> None:
    awakeables.pop("deepest", None)
    async with runtime(APP) as rt, rt.http() as http:
        call = asyncio.create_task(http.post("/Chain/down", json=20))
        await until(lambda: "deepest" in awakeables and len(rows(rt, "down")) == 21, "the chain to be built")
        first = min(rows(rt, "down"), key=lambda r: r[COL["seq"]])[COL["id"]]  # created first: the top
        assert rt.engine.kill(first) is ActionResult.DONE
        assert (await asyncio.wait_for(call, 10)).status_code == 409
        await rt.engine.flushed()
        statuses = {(r[COL["status"]], r[COL["failure_message"]]) for r in rows(rt, "down")}
        assert statuses == {(COMPLETED, "killed")}
