"""Event enrichment: package location events from Kafka, enriched with what was registered about each package.

Senders register a package over HTTP (`PackageTracker/<id>/register` with its destination and sender). Scanners
along the way publish `{"timestamp", "location"}` events keyed by package id to a topic; a subscription feeds
them to `PackageTracker/update_location`, which adds each to the package's history in object state and marks
the package delivered once it reaches its destination. An event for a package nobody registered fails
terminally (there is nothing to enrich it with). `get_package_info` answers the enriched view.
"""

from __future__ import annotations

import durably

tracker = durably.VirtualObject("PackageTracker")


@tracker.handler()
async def register(ctx: durably.ObjectContext, info: dict) -> None:
    ctx.set("info", {"destination": info["destination"], "sender": info["sender"]})


@tracker.handler()
async def update_location(ctx: durably.ObjectContext, event: dict) -> None:
    info = await ctx.get("info")
    if info is None:
        raise durably.TerminalError(f"package {ctx.key()} is not registered", status_code=404)
    updates = await ctx.get("updates") or []
    updates.append({"at": event["timestamp"], "location": event["location"]})
    ctx.set("updates", updates)
    if event["location"] == info["destination"]:
        ctx.set("delivered_at", event["timestamp"])


@tracker.handler(kind="shared")
async def get_package_info(ctx: durably.ObjectSharedContext) -> dict:
    info = await ctx.get("info")
    if info is None:
        raise durably.TerminalError(f"package {ctx.key()} is not registered", status_code=404)
    updates = await ctx.get("updates") or []
    return {"package": ctx.key(), **info, "updates": updates,
            "last_location": updates[-1]["location"] if updates else None,
            "delivered_at": await ctx.get("delivered_at")}


app = durably.app(services=[tracker])
