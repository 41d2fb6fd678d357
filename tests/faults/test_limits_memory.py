"""The ingress's budget of request bodies held at once (issue 10, item 9); figures in bench/memory_bench.py."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path

import httpx
import pytest
from system.conftest import ServerProcess, wait_until

import durably
from durably.testing import TestRuntime

from .test_limits_connections import drain_until_closed, sockets

APP = f"{Path(__file__).resolve().parent / 'limits_app.py'}:app"
MiB = 1024 * 1024


@pytest.mark.system
def test_bodies_over_the_inflight_budget_get_503_with_retry_after(tmp_path: Path) -> None:
    server = ServerProcess(APP, tmp_path / "data", tmp_path / "server.log")
    server.extra_args = ["--max-inflight-body", "8MiB"]
    server.start()
    try:
        body = json.dumps("x" * (3 * MiB - 2)).encode()
        head = (b"POST /Limits/size HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        client = httpx.Client(base_url=server.url, timeout=30)
        # Two clients are sending 3 MiB bodies (they sent the first bytes and hold the rest).
        with sockets(server.port, 2, head + body[:1000]) as held:

            def refused() -> httpx.Response | None:
                resp = client.post("/Limits/size", content=body, headers={"content-type": "application/json"})
                return resp if resp.status_code == 503 else None

            resp = wait_until(refused, 20, "a third 3 MiB body to be refused")
            assert isinstance(resp, httpx.Response)
            assert resp.headers["retry-after"] == "1"
            message = resp.json()["message"]
            assert resp.json()["code"] == 503 and "8.0 MiB" in message and "--max-inflight-body" in message
            # Small requests still pass, and the held bodies complete normally.
            assert client.post("/Limits/ping").json() == "pong"
            for s in held:
                s.setblocking(True)
                s.sendall(body[1000:])
                s.setblocking(False)
            for answer in drain_until_closed(held, 20).values():
                assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(str(len(body) - 2).encode())
        # Their budget is given back: a new 3 MiB body is accepted.
        resp = client.post("/Limits/size", content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 200 and resp.json() == len(body) - 2
    finally:
        server.ensure_dead()


attempts: list[weakref.ref[object]] = []
held = durably.Service("Held")


@held.handler()
async def keep(ctx: durably.Context, data: str) -> int:
    attempts.append(weakref.ref(ctx._attempt))  # type: ignore[attr-defined]
    return len(data)


async def test_a_finished_attempt_and_its_input_are_freed_without_waiting_for_the_gc() -> None:
    """A reference cycle kept each request's body alive until a full collection: RSS stayed at its peak."""
    attempts.clear()
    gc.collect()
    gc.disable()
    try:
        async with TestRuntime(durably.app(services=[held])) as rt:
            for _ in range(3):
                assert await rt.call("Held/keep", "x" * 1000) == 1000
            assert [a() for a in attempts] == [None, None, None]
    finally:
        gc.enable()
