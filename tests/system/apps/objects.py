"""The app the CLI system tests drive: a Counter object, a greeter with a journaled step, and a long sleeper.

`Sleeper/nap` books, sleeps an hour and, when cancelled, journals an `undo` step before failing, so a test can
see the compensation in the journal. `Counter/{key}/hold` holds the key until it is killed.
"""

from __future__ import annotations

from datetime import timedelta

import durably
from durably import TerminalError

counter = durably.VirtualObject("Counter", description="A number per key.")


@counter.handler()
async def add(ctx: durably.ObjectContext, delta: int) -> int:
    """Add delta and return the new value."""
    value = (await ctx.get("value") or 0) + delta
    ctx.set("value", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: durably.ObjectSharedContext) -> int:
    """The current value."""
    return await ctx.get("value") or 0


@counter.handler()
async def hold(ctx: durably.ObjectContext) -> str:
    """Hold the key until the awakeable is resolved (or the invocation killed)."""
    _, fut = ctx.awakeable(type_hint=str)
    return await fut


greeter = durably.Service("Greeter")


@greeter.handler()
async def greet(ctx: durably.Context, name: str) -> dict:
    """Greet with one journaled step."""
    shout = await ctx.run_typed("shout", lambda: name.upper())
    return {"greeting": f"hello {shout}", "length": len(shout)}


@greeter.handler()
async def refuse(ctx: durably.Context, name: str) -> str:
    """Always fails with a terminal error."""
    raise TerminalError(f"no greeting for {name}", 422)


sleeper = durably.Service("Sleeper")


@sleeper.handler()
async def nap(ctx: durably.Context) -> str:
    """Sleep an hour; on cancellation journal the compensation."""
    await ctx.run_typed("book", lambda: "booked")
    try:
        await ctx.sleep(timedelta(hours=1))
    except TerminalError:
        await ctx.run_typed("undo", lambda: "undone")
        raise
    return "rested"


@sleeper.handler()
async def stumble(ctx: durably.Context) -> str:
    """Fails before its first await, every attempt (a cancellation can never reach it)."""
    raise RuntimeError("stumbled before the first await")


app = durably.app(services=[counter, greeter, sleeper])
