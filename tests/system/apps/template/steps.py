"""The service of the template-shaped app: `Steps/run` runs N journaled steps, one of which can wait on a file.

Each step's closure appends `step <i> <pid>` to `<dir>/effects.log` (fsynced) before it returns; step `block_at`
then waits for `<dir>/gate`, so a test can kill the process while the handler is inside that step.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import durably as restate

steps = restate.Service("Steps")


def step(directory: str, i: int, block: bool) -> str:
    d = Path(directory)
    with open(d / "effects.log", "a", encoding="utf-8") as f:
        f.write(f"step {i} {os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())
    # The app's own wait (not test synchronisation): the test creates the gate file to release it.
    while block and not (d / "gate").exists():
        time.sleep(0.005)
    return f"value-{i}"


@steps.handler()
async def run(ctx: restate.Context, req: dict) -> list[str]:
    return [await ctx.run_typed(f"step {i}", step, None, req["dir"], i, i == req.get("block_at", -1))
            for i in range(req["steps"])]
