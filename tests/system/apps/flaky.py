"""The app of the timeline and `durably invoke` system tests: a step that fails a given number of times.

`Flaky/pay` takes `{"dir": <path>, "fails": N}`: its `charge` step raises on its first N runs (counted in
`<dir>/charges`, so the count survives restarts) and then returns "charged"; it retries every 200 ms.
`Flaky/pay_when_allowed` takes `{"dir": <path>}`: its step raises, retried every 200 ms for as long as it takes,
until the file `<dir>/allowed` exists (a test decides when the invocation may finish, not the clock).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import durably

flaky = durably.Service("Flaky")


def charge(directory: str, fails: int) -> str:
    counter = Path(directory) / "charges"
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    if n <= fails:
        raise RuntimeError(f"card declined (try {n})")
    return "charged"


@flaky.handler(invocation_retry_policy=durably.InvocationRetryPolicy(initial_interval=timedelta(milliseconds=200),
                                                                     exponentiation_factor=1.0, max_attempts=20))
async def pay(ctx: durably.Context, req: dict) -> str:
    await ctx.run_typed("reserve", lambda: "reserved")
    return await ctx.run_typed("charge", charge, None, req["dir"], int(req["fails"]))


def charge_when_allowed(directory: str) -> str:
    return charge(directory, -1 if (Path(directory) / "allowed").exists() else 1 << 30)


@flaky.handler(invocation_retry_policy=durably.InvocationRetryPolicy(initial_interval=timedelta(milliseconds=200),
                                                                     exponentiation_factor=1.0))
async def pay_when_allowed(ctx: durably.Context, req: dict) -> str:
    await ctx.run_typed("reserve", lambda: "reserved")
    return await ctx.run_typed("charge", charge_when_allowed, None, req["dir"])


app = durably.app(services=[flaky])
