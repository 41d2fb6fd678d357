"""The app of the schema-6 data directory in this folder (made by `make.py` with durably at schema 6)."""

from __future__ import annotations

import durably

keep = durably.Service("Keep")
park = durably.VirtualObject("Park")
# Awakeable ids the handlers publish (a journaled step), by key: `make.py` writes them next to the database.
published: dict[str, str] = {}


@keep.handler()
async def echo(ctx: durably.Context, x: str) -> str:
    return x


@keep.handler()
async def wait(ctx: durably.Context, name: str) -> str:
    """Suspends until its awakeable is resolved; returns the value."""
    aw_id, fut = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", lambda: published.__setitem__(name, aw_id))
    return "woke " + await fut


@park.handler()
async def add(ctx: durably.ObjectContext, delta: int) -> int:
    value = (await ctx.get("value") or 0) + delta
    ctx.set("value", value)
    return value


@park.handler()
async def hold(ctx: durably.ObjectContext) -> str:
    """Holds its key's lock until its awakeable is resolved."""
    aw_id, fut = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", lambda: published.__setitem__("hold:" + ctx.key(), aw_id))
    return "held " + await fut


app = durably.app(services=[keep, park])
