"""The sink of bench/kafka_bench.py: a one-step handler (one journaled `ctx.run`), as a service."""

from __future__ import annotations

import durably

sink = durably.Service("KafkaSink")


@sink.handler()
async def one_step(ctx: durably.Context, value: int) -> int:
    async def step() -> int:
        return value + 1

    return await ctx.run_typed("step", step)


app = durably.app(services=[sink])
