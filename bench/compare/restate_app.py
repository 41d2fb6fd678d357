"""The comparison benchmark's handlers, written with the real restate-sdk (`import restate`).

The twin of `bench/compare/durably_app.py` (same services, handlers and behaviour; see its docstring for the
paths). It runs in `.interop/sdk-venv`, served by hypercorn from this directory, and is registered both with a
Restate server and with Durably (`durably deployments register`), so the two drive the very same deployment.
"""

# No `from __future__ import annotations`: the SDK reads the handlers' annotations to pick serdes.
import asyncio
import os
from datetime import timedelta
from typing import Any

import restate

bench = restate.Service("Bench")
counter = restate.VirtualObject("Counter")
replay = restate.Workflow("Replay", inactivity_timeout=timedelta(milliseconds=200))
park = restate.Service("Park", inactivity_timeout=timedelta(seconds=1))


async def _steps(ctx: restate.Context, n: int) -> int:
    total = 0
    for i in range(n):

        async def step(i: int = i) -> int:
            return i

        total += await ctx.run_typed("step", step)
    return total


@bench.handler()
async def echo(ctx: restate.Context, x: Any) -> Any:
    return x


@bench.handler()
async def steps1(ctx: restate.Context, x: Any) -> int:
    return await _steps(ctx, 1)


@bench.handler()
async def steps3(ctx: restate.Context, x: Any) -> int:
    return await _steps(ctx, 3)


@bench.handler()
async def steps10(ctx: restate.Context, x: Any) -> int:
    return await _steps(ctx, 10)


@bench.handler()
async def steps10_sync(ctx: restate.Context, x: Any) -> int:
    total = 0
    for i in range(10):
        total += await ctx.run_typed("step", lambda i=i: i)
    return total


@bench.handler()
async def payload(ctx: restate.Context, x: str) -> int:
    async def keep() -> str:
        return x

    return len(await ctx.run_typed("keep", keep))


@bench.handler()
async def fanout(ctx: restate.Context, spec: dict) -> int:
    sleeps = [ctx.sleep(timedelta(milliseconds=spec["ms"])) for _ in range(spec["n"])]
    await restate.gather(*sleeps)
    return len(sleeps)


async def _gate() -> int:
    if os.environ.get("BENCH_GATE_BLOCK") == "1":
        with open(os.environ["BENCH_GATE_FILE"], "a") as f:  # noqa: ASYNC230 (one short append, then we block)
            f.write("x\n")
        await asyncio.Event().wait()  # until the process is killed
    return 1


async def _one() -> int:
    return 1


@bench.handler()
async def gate(ctx: restate.Context, x: Any) -> int:
    await ctx.run_typed("before", _one)
    await ctx.run_typed("gate", _gate)
    return await ctx.run_typed("after", _one)


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("value", type_hint=int) or 0) + delta
    ctx.set("value", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("value", type_hint=int) or 0


@replay.main()
async def run(ctx: restate.WorkflowContext, n: int) -> int:
    total = await _steps(ctx, n)
    await ctx.promise("go", type_hint=int).value()
    return n if total == sum(range(n)) else -1


@replay.handler()
async def go(ctx: restate.WorkflowSharedContext) -> None:
    await ctx.promise("go", type_hint=int).resolve(1)


@park.handler()
async def wait(ctx: restate.Context) -> str:
    await ctx.sleep(timedelta(hours=1))
    return "woke"


app = restate.app(services=[bench, counter, replay, park])
