"""Issue 20: the retry delay's jitter stays inside the policy's max_interval (waits of 61-77 s were seen with a
60 s cap), and still spreads retries at the cap."""

from __future__ import annotations

from datetime import timedelta

import durably
from durably import InvocationRetryPolicy
from durably.testing import TestRuntime

svc = durably.Service("Flaky")


@svc.handler()
async def always_fails(ctx: durably.Context) -> None:
    raise RuntimeError("down")


APP = durably.app(services=[svc])
POLICY = InvocationRetryPolicy(initial_interval=timedelta(seconds=8), max_interval=timedelta(seconds=60),
                               exponentiation_factor=2.0, max_attempts=40)


async def test_retry_delays_never_exceed_the_cap_and_stay_spread() -> None:
    async with TestRuntime(APP, virtual_clock=True, retry_policy=POLICY) as rt:
        assert rt.engine is not None
        inv_id = await rt.send("Flaky/always_fails")
        await rt.settle()
        delays: list[int] = []
        for _ in range(30):
            inv = rt.engine.table.load(inv_id)
            assert inv is not None and inv.next_retry_at is not None
            delays.append(inv.next_retry_at - int(rt.clock.now() * 1000))
            # To the retry, where the next attempt fails and the next delay starts.
            await rt.advance(timedelta(milliseconds=delays[-1]))
        assert max(delays) <= 60_000, delays
        assert delays[0] >= 8_000  # the first retry waits at least initial_interval
        at_cap = delays[5:]
        assert len(set(at_cap)) > 1, "retries at the cap are still spread by the jitter"
