"""Journal entry limit, paged describe, and the admin API's body limit (issue 10, items 11 and 12)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

import durably
from durably import TerminalError
from durably.clients.http import AdminClient
from durably.server.http.admin import Admin
from durably.testing import TestRuntime

svc = durably.Service("Blobs")


@svc.handler()
async def make(ctx: durably.Context, size: int) -> str:
    """Journals a step result of `size` bytes; reports the step's failure if it was refused."""
    try:
        data = await ctx.run_typed("blob", lambda: "x" * size)
    except TerminalError as e:
        return f"refused {e.status_code}: {e.message}"
    return f"kept {len(data)}"


@svc.handler()
async def many(ctx: durably.Context, n: int) -> int:
    """Journals n small steps."""
    total = 0
    for i in range(n):
        total += await ctx.run_typed(f"s{i}", lambda i=i: i)
    return total


APP = durably.app(services=[svc])


@asynccontextmanager
async def admin(rt: TestRuntime) -> AsyncIterator[httpx.AsyncClient]:
    assert rt.engine is not None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine)),
                                 base_url="http://admin") as client:
        yield client


async def test_a_step_result_over_the_entry_limit_fails_the_step_with_size_and_limit() -> None:
    rt = TestRuntime(APP)
    rt.options.journal_entry_limit = 4096
    async with rt:
        assert await rt.call("Blobs/make", 1000) == "kept 1000"
        out = await rt.call("Blobs/make", 10_000)
    assert out.startswith("refused 500: ")
    assert "run 'blob'" in out
    assert "9.8 KiB (10002 bytes)" in out  # the JSON string with its quotes
    assert "4.0 KiB (4096 bytes)" in out


async def test_the_default_entry_limit_is_32_mib() -> None:
    async with TestRuntime(APP) as rt:
        assert rt.options.journal_entry_limit == 32 * 1024 * 1024
        out = await rt.call("Blobs/make", 33 * 1024 * 1024)
    assert out.startswith("refused 500:") and "33.0 MiB" in out and "32.0 MiB (33554432 bytes)" in out


async def test_describe_pages_a_long_journal() -> None:
    async with TestRuntime(APP, "sqlite") as rt, admin(rt) as client:
        inv_id = await rt.send("Blobs/many", 600)
        await rt.attach(inv_id)
        first = (await client.get(f"/invocations/{inv_id}")).json()
        total = first["journal_length"]
        assert total == 1202  # input, 600 runs and their completions, output
        assert len(first["journal"]) == 1000 and first["journal_next_offset"] == 1000
        page = (await client.get(f"/invocations/{inv_id}", params={"journal_offset": 1190,
                                                                     "journal_limit": 50})).json()
        assert [e["index"] for e in page["journal"]] == list(range(1190, total))
        assert "journal_next_offset" not in page
        bad = await client.get(f"/invocations/{inv_id}", params={"journal_limit": 0})
        assert bad.status_code == 400 and "journal_limit" in bad.json()["message"]


async def test_the_cli_client_follows_journal_pages() -> None:
    async with TestRuntime(APP) as rt:
        inv_id = await rt.send("Blobs/many", 700)
        await rt.attach(inv_id)
        assert rt.engine is not None
        transport = httpx.ASGITransport(app=Admin(rt.engine))
        # The CLI's client is synchronous; run its requests against the in-process app from a thread.
        import asyncio

        def describe() -> dict[str, object]:
            loop_client = httpx.Client(transport=_SyncOverAsync(transport, loop), base_url="http://admin")
            client = AdminClient("http://admin")
            client._http = loop_client
            return client.invocation(inv_id)

        loop = asyncio.get_running_loop()
        inv = await asyncio.to_thread(describe)
    journal = inv["journal"]
    assert isinstance(journal, list)
    assert [e["index"] for e in journal] == list(range(inv["journal_length"]))  # type: ignore[arg-type]
    assert len(journal) > 1000


class _SyncOverAsync(httpx.BaseTransport):
    """A sync transport that runs each request on the test's event loop."""

    def __init__(self, inner: httpx.AsyncBaseTransport, loop: object) -> None:
        self.inner = inner
        self.loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        import asyncio

        async def go() -> httpx.Response:
            body = request.read()
            req = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            resp = await self.inner.handle_async_request(req)
            content = await resp.aread()
            return httpx.Response(resp.status_code, headers=resp.headers, content=content)

        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(30)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [2 * 1024 * 1024])
async def test_an_oversized_admin_body_is_413_in_restates_shape(size: int) -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        resp = await client.post("/deployments", content=b'{"uri": "' + b"x" * size + b'"}',
                                 headers={"content-type": "application/json"})
        assert resp.status_code == 413
        body = resp.json()
        assert body["code"] == 413 and "limit" in body["message"]
        assert resp.headers["x-restate-error-source"] == "admin"
        # Chunked (no content-length) is refused the same way.

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(size // 65536):
                yield b"y" * 65536

        resp = await client.post("/deployments", content=chunks())
        assert resp.status_code == 413 and resp.json()["code"] == 413
        # Every admin route that reads a body answers the same way.
        resp = await client.put("/rules", content=b"x" * 200_000)
        assert resp.status_code == 413 and resp.json()["code"] == 413
