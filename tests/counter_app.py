"""The counter virtual object that several test apps share; each adds its own handlers to it."""

from __future__ import annotations

import durably


def counter_object(name: str, awakeables: dict[str, str]) -> durably.VirtualObject:
    """A virtual object `name` with `add` (exclusive: add to the key's value, return it), `get` (shared) and
    `hold` (keeps the key's lock until the awakeable it publishes in `awakeables[key]` is resolved)."""
    counter = durably.VirtualObject(name)

    @counter.handler()
    async def add(ctx: durably.ObjectContext, delta: int) -> int:
        value = (await ctx.get("value") or 0) + delta
        ctx.set("value", value)
        return value

    @counter.handler(kind="shared")
    async def get(ctx: durably.ObjectSharedContext) -> int:
        return await ctx.get("value") or 0

    @counter.handler()
    async def hold(ctx: durably.ObjectContext) -> str:
        """Holds the key's lock until someone resolves the awakeable."""
        aw_id, fut = ctx.awakeable(type_hint=str)
        await ctx.run_typed("publish", lambda: awakeables.__setitem__(ctx.key(), aw_id))
        return await fut

    return counter
