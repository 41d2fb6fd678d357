"""The benchmark app of `bench/interop_bench.py`, written with the real restate-sdk (`import restate`).

It runs in the restate-sdk virtual environment (`.interop/sdk-venv`, installed by `scripts/test.sh`), served
by hypercorn (HTTP/2 cleartext) from this directory:

    cd bench && ../.interop/sdk-venv/bin/hypercorn --bind 127.0.0.1:9080 interop_sdk_app:app

and is registered with both a Restate server and Durably, so that the two drive the very same deployment.

Handlers of the Service "SdkBench" (the twins of bench/apps.py's "Bench"):
    SdkBench/echo     returns its input (no journaled steps)
    SdkBench/steps10  10 journaled steps (`ctx.run_typed`), each a trivial async function; returns their sum (45)
"""

# No `from __future__ import annotations`: the SDK reads the handlers' annotations to pick serdes.
from typing import Any

import restate

STEPS = 10

bench = restate.Service("SdkBench")


@bench.handler()
async def echo(ctx: restate.Context, x: Any) -> Any:
    """Return the input unchanged."""
    return x


@bench.handler()
async def steps10(ctx: restate.Context, x: Any) -> int:
    """Run 10 journaled steps whose actions are trivial async functions; return their sum."""
    total = 0
    for i in range(STEPS):

        async def step(i: int = i) -> int:
            return i

        total += await ctx.run_typed("step", step)
    return total


app = restate.app(services=[bench])
