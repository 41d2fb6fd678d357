"""The app `bench/crash_loop.py` SIGKILLs: five journaled steps that record every execution, then a call.

Each step's closure appends `start <key> <i> <pid>` to `<dir>/steps.log` when it begins and
`done <key> <i> <token>` when it ends, and returns the fresh random token. The invocation's output lists the
five tokens the journal kept, so the benchmark can tell a re-run of a step whose result had been committed
(a bug: a start line after the done line of the kept token) from a re-run of one cut off by the kill.

After its steps, each invocation calls the `Tally` object of one of 16 keys, which appends the invocation's key
to its state. With `--partitions N` most of those calls cross partitions (the caller lives where its
idempotency key hashes, the tally where its key does); each must be applied exactly once, so every
acknowledged key appears once in all the tallies together.
"""

from __future__ import annotations

import os
import time
import uuid

import durably

crash_loop = durably.Service("CrashLoop", description="Five recorded steps per invocation, then a call.")
tally = durably.VirtualObject("Tally", description="The keys of the invocations that called it, in call order.")
TALLIES = 16

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


@tally.handler()
async def add(ctx: durably.ObjectContext, key: str) -> int:
    """Append `key` (not idempotent on purpose: a call applied twice shows as a key listed twice)."""
    keys = await ctx.get("keys") or []
    keys.append(key)
    ctx.set("keys", keys)
    return len(keys)


@tally.handler(kind="shared")
async def keys(ctx: durably.ObjectSharedContext) -> list[str]:
    """The keys appended so far."""
    return await ctx.get("keys") or []


@crash_loop.handler()
async def run(ctx: durably.Context, req: dict) -> list[str]:
    """Five journaled steps, then one call to a tally; returns the tokens the journal kept."""
    tokens = [await ctx.run_typed(f"step {i}", step, None, req["dir"], req["key"], i, int(req["step_ms"]))
              for i in range(5)]
    await ctx.object_call(add, key=tally_of(req["key"]), arg=req["key"])
    return tokens


def tally_of(key: str) -> str:
    """The tally an invocation key calls."""
    return f"tally-{sum(key.encode()) % TALLIES}"


app = durably.app(services=[crash_loop, tally])
