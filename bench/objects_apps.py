"""The benchmark app served by `bench/objects_bench.py`: a virtual object "Counter" with durable state per key.

Serve it by hand with:

    .venv/bin/durably serve bench/objects_apps.py:app --port 8080 --data-dir /tmp/objects-bench-data
    curl -X POST localhost:8080/Counter/hot/add -H 'content-type: application/json' -d 1
    curl -X POST localhost:8080/Counter/hot/get

Handlers:
    Counter/{key}/add   exclusive: adds its input (an int) to the key's "value" state and returns the new value;
                        invocations on one key run one at a time, in arrival order (the key's durable inbox)
    Counter/{key}/get   shared: returns the key's "value" (0 if unset); does not wait behind the inbox
"""

from __future__ import annotations

import durably

counter = durably.VirtualObject("Counter", description="A durable counter per key, for measuring keyed state.")


@counter.handler()
async def add(ctx: durably.ObjectContext, delta: int) -> int:
    """Add `delta` to this key's value; return the new value."""
    value: int = (await ctx.get("value", type_hint=int) or 0) + delta
    ctx.set("value", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: durably.ObjectSharedContext) -> int:
    """This key's current value (0 if it was never added to)."""
    return await ctx.get("value", type_hint=int) or 0


app = durably.app(services=[counter])
