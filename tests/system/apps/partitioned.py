"""The app of the partition tests: each handler says which process ran it (its pid), so a test can check that a
request was answered by the partition that owns it."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import durably

counter = durably.VirtualObject("Counter")


@counter.handler()
async def add(ctx: durably.ObjectContext, delta: int) -> dict:
    """Add delta; the new value and the pid of the partition that holds the key."""
    value = (await ctx.get("value") or 0) + delta
    ctx.set("value", value)
    return {"value": value, "pid": os.getpid()}


@counter.handler(kind="shared")
async def get(ctx: durably.ObjectSharedContext) -> int:
    """The current value."""
    return await ctx.get("value") or 0


@counter.handler()
async def hold(ctx: durably.ObjectContext, path: str) -> str:
    """Hold the key: write an awakeable's id to `path` and wait for it."""
    awakeable_id, fut = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", lambda: Path(path).write_text(awakeable_id))
    return await fut


plain = durably.Service("Plain")


@plain.handler()
async def pid(ctx: durably.Context) -> int:
    """The pid of the partition it ran in, after one journaled step."""
    return await ctx.run_typed("pid", lambda: os.getpid())


@plain.handler()
async def wait(ctx: durably.Context, path: str) -> str:
    """Write an awakeable's id to `path`, then wait for it to be resolved from outside."""
    awakeable_id, fut = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", lambda: Path(path).write_text(awakeable_id))
    value = await fut
    return f"{value} in {os.getpid()}"


@plain.handler()
async def slow(ctx: durably.Context, steps: int) -> int:
    """`steps` journaled steps with a short sleep between them (long enough to kill a process mid-way)."""
    total = 0
    for i in range(steps):
        total += await ctx.run_typed(f"step-{i}", lambda i=i: i)
        await ctx.sleep(timedelta(milliseconds=50))
    return total


caller = durably.Service("Caller")


@caller.handler()
async def add_to(ctx: durably.Context, key: str) -> dict:
    """Call Counter/{key}/add (a call to another partition when the key is owned there)."""
    return await ctx.object_call(add, key=key, arg=1)


@caller.handler()
async def hold_at(ctx: durably.Context, args: dict) -> str:
    """Call Counter/{key}/hold and wait for it: a call tree that may span both partitions."""
    return await ctx.object_call(hold, key=args["key"], arg=args["path"])


flow = durably.Workflow("Signup")


@flow.main()
async def run(ctx: durably.WorkflowContext, email: str) -> dict:
    """Wait for the confirmation promise; answer with it and the pid of the partition that ran the workflow."""
    code = await ctx.promise("confirm", type_hint=str).value()
    return {"email": email, "code": code, "pid": os.getpid()}


@flow.handler()
async def confirm(ctx: durably.WorkflowSharedContext, code: str) -> int:
    """Resolve the confirmation promise; the pid of the partition that took it."""
    await ctx.promise("confirm", type_hint=str).resolve(code)
    return os.getpid()


app = durably.app(services=[counter, plain, caller, flow])
