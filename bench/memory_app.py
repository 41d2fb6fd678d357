"""The app of bench/memory_bench.py: one handler that takes a (large) input and returns its length."""

from __future__ import annotations

import durably

memory = durably.Service("Memory")


@memory.handler()
async def size(ctx: durably.Context, data: str) -> int:
    """The length of the input (the body is journaled as the input entry)."""
    return len(data)


app = durably.app(services=[memory])
