"""The benchmark app served by `bench/http_bench.py`: a Service "Bench" with trivial handlers.

Serve it by hand with:

    .venv/bin/durably serve bench/apps.py:app --port 8080 --data-dir /tmp/bench-data

Handlers:
    Bench/echo          returns its input (one invocation, no journaled steps)
    Bench/steps10       10 journaled steps, each an async closure (runs on the event loop)
    Bench/steps10_sync  10 journaled steps, each a sync lambda (runs on durably's thread pool)
"""

from __future__ import annotations

from typing import Any

import durably

STEPS = 10

bench = durably.Service("Bench", description="Trivial handlers for measuring durably's overhead.")


@bench.handler()
async def echo(ctx: durably.Context, x: Any) -> Any:
    """Return the input unchanged."""
    return x


@bench.handler()
async def steps10(ctx: durably.Context, x: Any) -> int:
    """Run 10 journaled steps whose closures are trivial async functions; return their sum."""
    total = 0
    for i in range(STEPS):

        async def step(i: int = i) -> int:
            return i

        total += await ctx.run_typed("step", step)
    return total


@bench.handler()
async def steps10_sync(ctx: durably.Context, x: Any) -> int:
    """Run 10 journaled steps whose closures are trivial sync lambdas (thread pool); return their sum."""
    total = 0
    for i in range(STEPS):
        total += await ctx.run_typed("step", lambda i=i: i)
    return total


app = durably.app(services=[bench])
