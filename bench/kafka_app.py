"""The sink of bench/kafka_bench.py: a one-step handler (one journaled `ctx.run`), as a service."""

from __future__ import annotations

import os

import durably

sink = durably.Service("KafkaSink")
# Served as a deployment behind restate-server (bench/kafka_bench.py --restate), completions are counted by
# appending a byte to this file: Restate keeps no count the bench could scrape.
_COUNT_FILE = os.environ.get("KAFKA_BENCH_COUNT_FILE")


@sink.handler()
async def one_step(ctx: durably.Context, value: int) -> int:
    async def step() -> int:
        return value + 1

    result = await ctx.run_typed("step", step)
    if _COUNT_FILE:
        fd = os.open(_COUNT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, b".")
        os.close(fd)
    return result


app = durably.app(services=[sink])
