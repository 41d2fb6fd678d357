"""The comparison benchmark's handlers, written with Durably (embedded: `durably serve`).

`bench/compare/restate_app.py` has the same handlers written with the real restate-sdk and
`bench/compare/dbos_app.py` the same workloads written with DBOS; the driver (`bench/compare/run.py`) calls all
of them through the same HTTP paths:

    POST /Bench/echo              returns its input
    POST /Bench/steps1|3|10       1, 3 or 10 journaled steps; returns their sum
    POST /Bench/steps10_sync      the same with sync closures (`lambda: i`; Durably runs them on threads)
    POST /Bench/payload           one journaled step whose result is the (100 KB) input; returns its length
    POST /Bench/fanout            {"n": 100, "ms": 100}: n concurrent durable sleeps of ms; returns n
    POST /Bench/gate/send         steps "before", "gate", "after"; while BENCH_GATE_BLOCK=1 the gate step
                                  appends a line to BENCH_GATE_FILE and blocks (the SIGKILL recovery workload)
    POST /Counter/{key}/add       exclusive handler: adds its input to the key's state; returns the new value
    POST /Counter/{key}/get       shared handler: the key's value (0 if never added to)
    POST /Replay/{key}/run        workflow: n journaled steps, then waits on the promise "go" (suspending after
                                  0.2 s) and returns n; POST /Replay/{key}/go resolves the promise
    POST /Park/wait/send          sleeps an hour (suspends after 1 s): the memory-per-suspended-invocation workload
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

import durably

bench = durably.Service("Bench")
counter = durably.VirtualObject("Counter")
replay = durably.Workflow("Replay", inactivity_timeout=timedelta(milliseconds=200))
park = durably.Service("Park", inactivity_timeout=timedelta(seconds=1))


async def _steps(ctx: durably.Context, n: int) -> int:
    total = 0
    for i in range(n):

        async def step(i: int = i) -> int:
            return i

        total += await ctx.run_typed("step", step)
    return total


@bench.handler()
async def echo(ctx: durably.Context, x: Any) -> Any:
    return x


@bench.handler()
async def steps1(ctx: durably.Context, x: Any) -> int:
    return await _steps(ctx, 1)


@bench.handler()
async def steps3(ctx: durably.Context, x: Any) -> int:
    return await _steps(ctx, 3)


@bench.handler()
async def steps10(ctx: durably.Context, x: Any) -> int:
    return await _steps(ctx, 10)


@bench.handler()
async def steps10_sync(ctx: durably.Context, x: Any) -> int:
    """10 steps whose closures are sync lambdas, run on the step threads."""
    total = 0
    for i in range(10):
        total += await ctx.run_typed("step", lambda i=i: i)
    return total


@bench.handler()
async def payload(ctx: durably.Context, x: str) -> int:
    async def keep() -> str:
        return x

    return len(await ctx.run_typed("keep", keep))


@bench.handler()
async def fanout(ctx: durably.Context, spec: dict[str, int]) -> int:
    sleeps = [ctx.sleep(timedelta(milliseconds=spec["ms"])) for _ in range(spec["n"])]
    await durably.gather(*sleeps)
    return len(sleeps)


async def _one() -> int:
    return 1


async def _gate() -> int:
    if os.environ.get("BENCH_GATE_BLOCK") == "1":
        with open(os.environ["BENCH_GATE_FILE"], "a") as f:  # noqa: ASYNC230 (one short append, then we block)
            f.write("x\n")
        await asyncio.Event().wait()  # until the process is killed
    return 1


@bench.handler()
async def gate(ctx: durably.Context, x: Any) -> int:
    await ctx.run_typed("before", _one)
    await ctx.run_typed("gate", _gate)
    return await ctx.run_typed("after", _one)


@counter.handler()
async def add(ctx: durably.ObjectContext, delta: int) -> int:
    value: int = (await ctx.get("value", type_hint=int) or 0) + delta
    ctx.set("value", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: durably.ObjectSharedContext) -> int:
    return await ctx.get("value", type_hint=int) or 0


@replay.main()
async def run(ctx: durably.WorkflowContext, n: int) -> int:
    total = await _steps(ctx, n)
    await ctx.promise("go", type_hint=int).value()
    return n if total == sum(range(n)) else -1


@replay.handler()
async def go(ctx: durably.WorkflowSharedContext) -> None:
    await ctx.promise("go", type_hint=int).resolve(1)


@park.handler()
async def wait(ctx: durably.Context) -> str:
    await ctx.sleep(timedelta(hours=1))
    return "woke"


app = durably.app(services=[bench, counter, replay, park])

# For `durably serve` driving the restate-sdk twin of these services: they come from the registered deployment.
no_services = durably.app(services=[])
