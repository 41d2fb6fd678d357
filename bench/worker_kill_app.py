"""The app of bench/worker_kill_repeats.py: one service whose handler runs 5 journaled steps, sync and async.

The same file is served by both SDKs: `KILL_BENCH_SDK=restate` imports restate-sdk, anything else imports
`durably as restate`. Every execution of a step appends `<invocation> <step> <nonce>` to the file named by
KILL_BENCH_EFFECTS, fsynced before the step returns, so the benchmark counts how often each step really ran.
"""

from __future__ import annotations

import os
import time
import uuid

if os.environ.get("KILL_BENCH_SDK") == "restate":
    import restate
else:
    import durably as restate  # type: ignore[no-redef]

STEPS = 5

service = restate.Service("KillBench")


def record(inv: str, step: int) -> str:
    """One execution of a step: its effect line, on disk before the step's result leaves the process."""
    nonce = uuid.uuid4().hex
    began = time.time()
    fd = os.open(os.environ["KILL_BENCH_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{inv} {step} {nonce}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    # When the step returned: a line in the trace file (not fsynced: the page cache outlives a SIGKILL).
    fd = os.open(os.environ["KILL_BENCH_EFFECTS"] + ".trace", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{nonce} {began:.6f} {time.time():.6f}\n".encode())
    finally:
        os.close(fd)
    return nonce


async def record_async(inv: str, step: int) -> str:
    return record(inv, step)


@service.handler()
async def run(ctx: restate.Context, inv: str) -> list[str]:
    out = []
    for i in range(STEPS):
        # Even steps are sync closures (a thread of the executor), odd ones coroutines (the event loop).
        action = record if i % 2 == 0 else record_async
        out.append(await ctx.run_typed(f"step {i}", action, inv=inv, step=i))
    return out


app = restate.app(services=[service])
