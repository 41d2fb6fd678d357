"""A service served as a remote deployment (hypercorn) that the web UI's browser test registers and removes."""

from __future__ import annotations

import durably

far = durably.Service("FarGreeter", description="Lives in another process.")


@far.handler()
async def wave(ctx: durably.Context, name: str) -> str:
    """Wave from afar."""
    return f"hi {name} from afar"


app = durably.app(services=[far])
