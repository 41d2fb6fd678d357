"""Retention of completed invocations: 1 day by default, server-wide setting, per service and handler
`journal_retention`, and `idempotency_retention` for requests with an idempotency key."""

from __future__ import annotations

from datetime import timedelta

import durably
from durably.testing import TestRuntime

plain = durably.Service("Plain")
short = durably.Service("Short", journal_retention=timedelta(minutes=10))
keyed = durably.Service("Keyed", journal_retention=timedelta(minutes=5), idempotency_retention=timedelta(hours=2))


@plain.handler()
async def hi(ctx: durably.Context) -> str:
    return "hi"


@short.handler()
async def brief(ctx: durably.Context) -> str:
    return "brief"


@short.handler(journal_retention=timedelta(hours=3))
async def kept(ctx: durably.Context) -> str:
    return "kept"


@keyed.handler()
async def pay(ctx: durably.Context) -> str:
    return "paid"


APP = durably.app(services=[plain, short, keyed])


async def exists(rt: TestRuntime, inv: str) -> bool:
    return rt.engine.store.load_invocation(inv) is not None  # type: ignore[union-attr]


async def purge_after(rt: TestRuntime, delta: timedelta) -> None:
    await rt.advance(delta)
    rt.engine.purge_expired()  # type: ignore[union-attr]
    await rt.settle()


async def test_per_service_handler_and_idempotency_retention() -> None:
    async with TestRuntime(APP, virtual_clock=True) as rt:
        ids = {}
        for target in ("Plain/hi", "Short/brief", "Short/kept", "Keyed/pay"):
            ids[target] = await rt.send(target)
            await rt.attach(ids[target])
        ids["Keyed/pay+key"] = await rt.send("Keyed/pay", idempotency_key="k1")
        await rt.attach(ids["Keyed/pay+key"])
        await purge_after(rt, timedelta(minutes=6))
        assert not await exists(rt, ids["Keyed/pay"])  # journal_retention 5 min, no idempotency key
        assert await exists(rt, ids["Keyed/pay+key"])  # idempotency_retention 2 h
        await purge_after(rt, timedelta(minutes=5))
        assert not await exists(rt, ids["Short/brief"])
        assert await exists(rt, ids["Short/kept"]) and await exists(rt, ids["Plain/hi"])
        await purge_after(rt, timedelta(hours=2))
        assert not await exists(rt, ids["Keyed/pay+key"])
        await purge_after(rt, timedelta(hours=1))
        assert not await exists(rt, ids["Short/kept"])
        assert await exists(rt, ids["Plain/hi"])  # the default: 1 day
        await purge_after(rt, timedelta(hours=21))
        assert not await exists(rt, ids["Plain/hi"])


async def test_server_wide_default() -> None:
    rt = TestRuntime(APP, virtual_clock=True)
    rt.options.retention = timedelta(minutes=1)
    async with rt:
        inv = await rt.send("Plain/hi")
        await rt.attach(inv)
        kept = await rt.send("Short/brief")
        await rt.attach(kept)
        await purge_after(rt, timedelta(minutes=2))
        assert not await exists(rt, inv)
        assert await exists(rt, kept)  # its service says 10 minutes
