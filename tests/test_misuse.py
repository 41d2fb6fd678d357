"""A handler that uses the SDK wrongly: named once in the log, caller told at once, still retried."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import httpx
import pytest

import durably
from durably.sdk import misuse
from durably.server.engine.invocation import BACKING_OFF, COMPLETED
from durably.server.http.admin import Admin
from durably.server.store.base import COL

svc = durably.Service("Buggy")


@svc.handler()
async def no_such_method(ctx: durably.Context) -> str:
    return await ctx.telepathy("x")  # type: ignore[attr-defined]


@svc.handler()
async def bad_keyword(ctx: durably.Context) -> bytes:
    return await ctx.generic_call("Buggy", "no_such_method", b"", teleport=True)  # type: ignore[call-arg]


@svc.handler()
async def no_such_function(ctx: durably.Context) -> list:
    return await durably.race(ctx.sleep(timedelta(seconds=1)))  # type: ignore[attr-defined]


APP = durably.app(services=[svc])


@pytest.mark.parametrize(("handler", "words"), [
    ("no_such_method", "has no attribute 'telepathy'"),
    ("bad_keyword", "takes no keyword argument 'teleport'"),
    ("no_such_function", "module durably has no attribute 'race'"),
])
async def test_caller_sees_the_bug_at_once_and_it_keeps_retrying(runtime, caplog, handler: str, words: str) -> None:
    caplog.set_level(logging.ERROR, logger="durably.handler")
    misuse._logged.clear()  # once per process and line: start afresh for each scenario
    async with runtime(APP) as rt, rt.http() as http:
        resp = await asyncio.wait_for(http.post(f"/Buggy/{handler}"), 10)
        assert resp.status_code == 500
        body = resp.json()
        assert words in body["message"]
        assert f"handler Buggy/{handler} at {__file__}:" in body["message"]
        assert body["source"] == "invocation"
        inv = resp.headers["x-restate-id"]
        # Still retried under the retry policy; describe shows the error meanwhile.
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            row = rt.engine.live_row(inv) or rt.store.load_invocation(inv)
            if row[COL["attempts"]] >= 3:
                break
            assert asyncio.get_running_loop().time() < deadline, "no retries"
            await asyncio.sleep(0.005)
        assert row[COL["status"]] != COMPLETED
        assert row[COL["status"]] in (BACKING_OFF, "invoked")
        assert words in row[COL["last_error"]]
        admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine)), base_url="http://admin")
        async with admin:
            described = (await admin.get(f"/invocations/{inv}")).json()
        assert described["last_error"]["code"] == 500 and words in described["last_error"]["message"]
        logged = [r for r in caplog.records if f"Buggy/{handler}" in r.getMessage()]
        assert len(logged) == 1, "logged once, not on every retry"
        assert "bug in the handler" in logged[0].getMessage()
