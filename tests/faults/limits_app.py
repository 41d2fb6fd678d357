"""The app served by the resource-limit system tests and `bench/memory_bench.py`."""

from __future__ import annotations

import durably

limits = durably.Service("Limits", description="Handlers for the resource-limit tests.")


@limits.handler()
async def size(ctx: durably.Context, data: str) -> int:
    """The length of the input string (the request body is journaled as the input entry)."""
    return len(data)


@limits.handler()
async def ping(ctx: durably.Context) -> str:
    """A cheap request to see that the server still answers."""
    return "pong"


app = durably.app(services=[limits])
