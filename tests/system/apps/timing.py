"""The app under test of the time-recovery system tests: durable sleeps, delayed sends and a waiting workflow.

- `Timing/nap` takes `{"seconds": s}`: journals the time, sleeps `s` seconds durably, journals the time again
  and returns both (`{"before", "after"}`), so a test can check the sleep against journaled values.
- `Timing/record` takes `{"dir", "tag"}` and appends `<tag> <wall time> <pid>` to `<dir>/runs.log` in a
  journaled step: a test sends it with `?delay=` and reads when it really ran.
- The workflow `Waiter` records a step in `<dir>/runs.log`, says it is waiting (state `stage`), and waits on
  its promise `go`; the shared handler `release` resolves that promise, `stage` reads the state.

The test and the handlers talk only through HTTP and those files.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import durably

timing = durably.Service("Timing", description="Durable sleeps and delayed sends under test.")
waiter = durably.Workflow("Waiter", description="A workflow that waits on its promise.")


def append_line(path: Path, line: str) -> None:
    """Append one line durably (the test reads it, possibly after a SIGKILL)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def record_run(directory: str, tag: str) -> float:
    """The side effect of a step: when, and in which process, it ran."""
    now = time.time()
    append_line(Path(directory) / "runs.log", f"{tag} {now:.6f} {os.getpid()}")
    return now


@timing.handler()
async def nap(ctx: durably.Context, req: dict) -> dict:
    """Sleep durably for `seconds`; return the journaled times taken before and after the sleep."""
    before = await ctx.time()
    await ctx.sleep(timedelta(seconds=float(req["seconds"])), "nap")
    after = await ctx.time()
    return {"before": before, "after": after}


@timing.handler()
async def record(ctx: durably.Context, req: dict) -> float:
    """Record that this invocation ran (meant to be sent with a delay)."""
    return await ctx.run_typed("record", record_run, None, req["dir"], req["tag"])


@waiter.main()
async def run(ctx: durably.WorkflowContext, req: dict) -> dict:
    """Record a step, then wait for the promise `go` and return its value."""
    started = await ctx.run_typed("started", record_run, None, req["dir"], f"started {ctx.key()}")
    ctx.set("stage", "waiting")
    value = await ctx.promise("go", type_hint=str).value()
    ctx.set("stage", "done")
    return {"key": ctx.key(), "started": started, "go": value}


@waiter.handler()
async def release(ctx: durably.WorkflowSharedContext, value: str) -> None:
    """Resolve the workflow's promise `go`."""
    await ctx.promise("go", type_hint=str).resolve(value)


@waiter.handler()
async def stage(ctx: durably.WorkflowSharedContext) -> str:
    """Where the workflow stands."""
    return await ctx.get("stage", type_hint=str) or "not started"


app = durably.app(services=[timing, waiter])
