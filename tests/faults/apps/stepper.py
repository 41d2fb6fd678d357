"""The app under test of the fault tests.

`Stepper/run` takes `{"dir": <path>, "steps": N, "block_at": k, "pad": bytes, "async_steps": bool}` and runs
N journaled steps (sync closures on threads, or coroutines on the loop).
Each step's closure appends `step <i> <pid>` to `<dir>/effects.log` (fsynced) and returns `pad` bytes of
text, so a test can make commits as large as it likes; step `block_at` then waits until `<dir>/gate` exists.
`Stepper/await_awakeable` writes its awakeable's id to `<dir>/awakeable` and waits for it.
The test and the handlers talk only through those files.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import durably

stepper = durably.Service("Stepper", description="Steps that record their side effects, for fault tests.")

GATE_POLL_S = 0.005


def append_line(path: Path, line: str) -> None:
    """Append one line durably (the test reads it after a SIGKILL)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def do_step(directory: str, i: int, block: bool, pad: int) -> str:
    """The side effect of step i; blocks on the gate file when asked to."""
    d = Path(directory)
    append_line(d / "effects.log", f"step {i} {os.getpid()}")
    if block:
        # The app's own wait (not test synchronisation): the test creates the gate file to release it.
        while not (d / "gate").exists():
            time.sleep(GATE_POLL_S)
    return f"value-{i}" + "x" * pad


async def do_step_async(directory: str, i: int, block: bool, pad: int) -> str:
    """Like do_step, as a coroutine (it runs on the event loop, not on a thread)."""
    d = Path(directory)
    append_line(d / "effects.log", f"step {i} {os.getpid()}")
    while block and not (d / "gate").exists():  # noqa: ASYNC110 - the signal is a file made by another process
        await asyncio.sleep(GATE_POLL_S)
    return f"value-{i}" + "x" * pad


@stepper.handler()
async def run(ctx: durably.Context, req: dict) -> list[str]:
    """Run `steps` journaled steps, one of which may block on the gate; returns their values' heads."""
    values = []
    action = do_step_async if req.get("async_steps") else do_step
    for i in range(int(req["steps"])):
        value = await ctx.run_typed(f"step {i}", action, None, req["dir"], i, i == int(req.get("block_at", -1)),
                                    int(req.get("pad", 0)))
        values.append(value[:16])
    return values


@stepper.handler()
async def await_awakeable(ctx: durably.Context, req: dict) -> str:
    """Wait for an awakeable whose id it leaves in `<dir>/awakeable`."""
    awakeable_id, promise = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", lambda: (Path(req["dir"]) / "awakeable").write_text(awakeable_id))
    return await promise


app = durably.app(services=[stepper])
