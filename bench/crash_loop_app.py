"""The app `bench/crash_loop.py` SIGKILLs: five journaled steps that record every execution.

Each step's closure appends `start <key> <i> <pid>` to `<dir>/steps.log` when it begins and
`done <key> <i> <token>` when it ends, and returns the fresh random token. The invocation's output lists the
five tokens the journal kept, so the benchmark can tell a re-run of a step whose result had been committed
(a bug: a start line after the done line of the kept token) from a re-run of one cut off by the kill.
"""

from __future__ import annotations

import os
import time
import uuid

import durably

crash_loop = durably.Service("CrashLoop", description="Five recorded steps per invocation.")

_fds: dict[str, int] = {}


def _log(directory: str, line: str) -> None:
    # One O_APPEND write per line: the kernel has it once write returns, so a SIGKILL cannot lose it.
    fd = _fds.get(directory)
    if fd is None:
        fd = _fds[directory] = os.open(os.path.join(directory, "steps.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (line + "\n").encode())


def step(directory: str, key: str, i: int, step_ms: int) -> str:
    """One side effect: recorded before and after its work (a sleep)."""
    _log(directory, f"start {key} {i} {os.getpid()}")
    time.sleep(step_ms / 1000)
    token = uuid.uuid4().hex
    _log(directory, f"done {key} {i} {token}")
    return token


@crash_loop.handler()
async def run(ctx: durably.Context, req: dict) -> list[str]:
    """Five journaled steps; returns the tokens the journal kept."""
    return [await ctx.run_typed(f"step {i}", step, None, req["dir"], req["key"], i, int(req["step_ms"]))
            for i in range(5)]


app = durably.app(services=[crash_loop])
