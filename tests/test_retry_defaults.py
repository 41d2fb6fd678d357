"""The default retry policy is restate-server 1.7.12's, as measured against the real server in .interop:
its admin API reports 500ms initial interval, factor 2.0, 1m cap, 70 attempts, then Pause; the waits seen
between attempts of an always-failing handler were 0.61, 1.1, 2.2, 4.0, 8.2, 19.7, 40.2 s, and with a 1 s
interval and 1 s cap 25 waits of 1.03-1.29 s: 0-30% of jitter on top of the capped interval. Durably keeps the
same intervals and jitter but never waits past the documented cap: at the cap the jitter spreads downward."""

from __future__ import annotations

from datetime import datetime, timedelta

from test_admin import admin

import durably
from durably.testing import TestRuntime

svc = durably.Service("AlwaysFails")


@svc.handler()
async def fail(ctx: durably.Context) -> None:
    raise RuntimeError("boom")


async def test_default_waits_double_from_500ms_to_a_60s_cap_with_up_to_30pct_jitter() -> None:
    async with TestRuntime(durably.app(services=[svc]), virtual_clock=True) as rt, admin(rt) as client:
        inv = await rt.send("AlwaysFails/fail")
        await rt.settle()
        waits = []
        for _ in range(10):
            body = (await client.get(f"/invocations/{inv}")).json()
            assert body["status"] == "backing-off", body
            now_ms = rt.clock.now() * 1000
            next_ms = datetime.fromisoformat(body["next_retry_at"].replace("Z", "+00:00")).timestamp() * 1000
            waits.append((next_ms - now_ms) / 1000)
            await rt.advance(timedelta(milliseconds=next_ms - now_ms + 1))
        bases = [min(0.5 * 2 ** n, 60.0) for n in range(10)]
        for wait, base in zip(waits, bases, strict=True):
            high = min(base * 1.3, 60.0)
            low = min(base, high / 1.3)
            assert low - 0.002 <= wait <= high + 0.002, (waits, bases)
        body = (await client.get(f"/invocations/{inv}")).json()
        assert body["attempts"] == 11
