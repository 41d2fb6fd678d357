"""The app under test of the crash-recovery system tests.

`Crashy/run` takes `{"dir": <path>, "steps": N, "block_at": k}` and runs N durable steps. Every step's closure
appends `step <i> <pid>` to `<dir>/effects.log` (flushed and fsynced) before it returns; step `block_at` then
waits until `<dir>/gate` exists, so a test can kill the server while the handler is inside that step.
Before the steps, each attempt appends its deterministic values (uuid, random, time) to `<dir>/values.log`.

The test and the handler talk only through those files.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import durably

crashy = durably.Service("Crashy", description="Multi-step handler for crash-recovery system tests.")

GATE_POLL_S = 0.005


def append_line(path: Path, line: str) -> None:
    """Append one line and make it durable before returning (the test reads it after a SIGKILL)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def do_step(directory: str, i: int, block: bool) -> str:
    """The side effect of step i; blocks on the gate file when asked to."""
    d = Path(directory)
    append_line(d / "effects.log", f"step {i} {os.getpid()}")
    if block:
        gate = d / "gate"
        # The app's own wait (not test synchronisation): the test creates the gate file to release it.
        while not gate.exists():
            time.sleep(GATE_POLL_S)
    return f"value-{i}"


async def do_step_async(directory: str, i: int, block: bool) -> str:
    """Like do_step, but as a coroutine (runs on the event loop, so a shutdown can cancel it)."""
    d = Path(directory)
    append_line(d / "effects.log", f"step {i} {os.getpid()}")
    if block:
        gate = d / "gate"
        while not gate.exists():  # noqa: ASYNC110 - the signal is a file created by another process
            await asyncio.sleep(GATE_POLL_S)
    return f"value-{i}"


@crashy.handler()
async def run(ctx: durably.Context, req: dict) -> dict:
    """Record deterministic values, then run `steps` journaled steps, one of which may block on the gate."""
    directory = req["dir"]
    steps = int(req["steps"])
    block_at = int(req.get("block_at", -1))
    action = do_step_async if req.get("async_steps") else do_step
    uid = str(ctx.uuid())
    rnd = ctx.random().random()
    now = await ctx.time()
    # Outside ctx.run on purpose: every attempt writes this line, so the test can compare attempts.
    append_line(Path(directory) / "values.log",
                json.dumps({"pid": os.getpid(), "uuid": uid, "random": rnd, "time": now}))
    values = []
    for i in range(steps):
        values.append(await ctx.run_typed(f"step {i}", action, None, directory, i, i == block_at))
    return {"values": values, "uuid": uid, "random": rnd, "time": now, "invocation": ctx.request().id}


app = durably.app(services=[crashy])
