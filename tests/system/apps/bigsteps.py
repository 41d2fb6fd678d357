"""The app of the large-journal UI test: `Big/steps` runs N steps that each return `mb` MB of text."""

from __future__ import annotations

import durably

big = durably.Service("Big")


@big.handler()
async def steps(ctx: durably.Context, req: dict) -> int:
    size = int(req["mb"]) * 1024 * 1024
    for i in range(int(req["n"])):
        await ctx.run_typed(f"blob {i}", lambda i=i: chr(ord("a") + i) * size)
    return int(req["n"])


app = durably.app(services=[big])
