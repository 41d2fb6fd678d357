"""The app the web UI's browser tests drive: a trip booked in 3 steps that then waits a day to confirm
(cancelling it runs the compensations), a planner that calls it (caller and callee), and a Counter object."""

from __future__ import annotations

from datetime import timedelta

import durably
from durably import TerminalError

trips = durably.Service("Trips", description="Books a trip in three steps, then waits a day to confirm.")


@trips.handler()
async def book(ctx: durably.Context, traveller: str) -> str:
    """Reserve flight, hotel and car; sleep a day; cancelled: release all three."""
    done = []
    for step in ("flight", "hotel", "car"):
        done.append(await ctx.run_typed(f"reserve {step}", lambda s=step: f"{s} for {traveller}"))
    try:
        await ctx.sleep(timedelta(days=1))
    except TerminalError:
        for step in reversed(done):
            await ctx.run_typed(f"release {step.split()[0]}", lambda s=step: f"released {s}")
        raise
    return f"confirmed: {', '.join(done)}"


@trips.handler()
async def plan(ctx: durably.Context, traveller: str) -> str:
    """Send a booking (a callee) and answer at once."""
    ctx.service_send(book, traveller)
    return f"planning for {traveller}"


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


app = durably.app(services=[trips, counter])
