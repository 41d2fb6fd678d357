"""The app `durably serve` runs in the Kafka end-to-end tests: sinks that record what each record did.

- `Tally/add` (virtual object): appends the record's value (a JSON int) to the key's `seen` list and keeps
  the Kafka metadata headers of the last record in `last_headers`. A negative value fails terminally after
  recording it, so a terminal failure is visible in state and must not stall its partition.
"""

from __future__ import annotations

import durably

tally = durably.VirtualObject("Tally")


@tally.handler()
async def add(ctx: durably.ObjectContext, value: int) -> int:
    seen = await ctx.get("seen") or []
    seen.append(value)
    ctx.set("seen", seen)
    ctx.set("last_headers", {k: v for k, v in ctx.request().headers.items()
                             if k.startswith(("kafka.", "restate.", "x-"))})
    if value < 0:
        raise durably.TerminalError(f"negative value {value}")
    return len(seen)


@tally.handler(kind="shared")
async def get(ctx: durably.ObjectSharedContext) -> list[int]:
    return await ctx.get("seen") or []


@tally.handler(kind="shared")
async def headers(ctx: durably.ObjectSharedContext) -> dict[str, str]:
    return await ctx.get("last_headers") or {}


app = durably.app(services=[tally])
