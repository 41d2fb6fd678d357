"""The internal sockets between partitions: forwarded requests and peer deliveries (server/partitions/forward.py,
internal.py), against a real uvicorn on a unix socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from durably.sdk.asgi import ClientDisconnected, read_body
from durably.server.partitions.forward import Clients, Forwarder, UdsPeerLink
from durably.server.partitions.internal import InternalApp
from durably.server.partitions.layout import socket_path
from durably.server.partitions.link import PeerUnreachable

from .unix_server import serving


class FakeEngine:
    def health_problem(self) -> str | None:
        return None


class Receiving(FakeEngine):
    async def receive_from_partition(self, payload: bytes) -> bytes:
        return b"got " + payload


class Stopping(FakeEngine):
    async def receive_from_partition(self, payload: bytes) -> bytes:
        raise RuntimeError("the engine is stopping")


async def owner_ingress(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ingress answer a caller must see unchanged: an odd status, its own headers, a body in pieces."""
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 470,
                "headers": [(b"x-restate-id", b"inv_1abc"), (b"content-type", b"application/json")]})
    for piece in (b'{"path": "', scope["path"].encode(), b'", "body": "', body, b'"}'):
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


@asynccontextmanager
async def partition(root: Path, index: int, engine: Any) -> AsyncIterator[None]:
    async with serving(InternalApp(engine, owner_ingress, owner_ingress, index), socket_path(root, index)):
        yield


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return self.messages[0]["status"]

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


def request(path: str, body: bytes) -> tuple[dict[str, Any], Any]:
    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return scope, receive


def test_a_forwarded_request_gets_the_owner_s_answer_unchanged(tmp_path: Path) -> None:
    async def main() -> None:
        clients = Clients(tmp_path, 2)
        async with partition(tmp_path, 1, FakeEngine()):
            out = Recorder()
            await Forwarder(clients)(1, *request("/Counter/k/add", b"41"), out)
            assert out.status == 470
            assert out.headers[b"x-restate-id"] == b"inv_1abc"
            assert json.loads(out.body) == {"path": "/Counter/k/add", "body": "41"}
        await clients.close()

    asyncio.run(main())


def test_an_owner_that_is_down_is_a_503_in_restate_s_shape(tmp_path: Path) -> None:
    async def main() -> None:
        clients = Clients(tmp_path, 2)
        out = Recorder()
        await Forwarder(clients)(1, *request("/Counter/k/add", b"1"), out)
        assert out.status == 503
        assert out.headers[b"retry-after"] == b"1"
        body = json.loads(out.body)
        assert body["code"] == 503 and "partition 1" in body["message"] and "restarting" in body["message"]
        await clients.close()

    asyncio.run(main())


def test_peer_deliveries_reach_receive_from_partition(tmp_path: Path) -> None:
    async def main() -> None:
        clients = Clients(tmp_path, 3)
        link = UdsPeerLink(clients)
        with pytest.raises(PeerUnreachable):
            await link.deliver(2, b"batch")
        async with partition(tmp_path, 2, Receiving()):
            assert await link.deliver(2, b"batch-1") == b"got batch-1"
        async with partition(tmp_path, 1, Stopping()):  # cannot take it now: the sender keeps it and retries
            with pytest.raises(PeerUnreachable, match="stopping"):
                await link.deliver(1, b"batch")
        with pytest.raises(ValueError):
            await link.deliver(3, b"batch")
        await clients.close()

    asyncio.run(main())


def test_a_long_data_directory_still_gets_its_sockets(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)

    async def main() -> None:
        clients = Clients(deep, 1)
        async with partition(deep, 0, Receiving()):
            assert await UdsPeerLink(clients).deliver(0, b"x") == b"got x"
        await clients.close()

    asyncio.run(main())


def test_a_caller_gone_mid_body_never_reaches_the_owner_as_a_whole_request(tmp_path: Path) -> None:
    """The caller sends part of a chunked body and disconnects: the owner must see a broken request, not a short
    body passed off as complete (which would start an invocation with a truncated input)."""
    outcome: asyncio.Queue[str] = asyncio.Queue()

    async def owner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body = await read_body(scope, receive, 1 << 20)
        except ClientDisconnected:
            outcome.put_nowait("disconnected")
            return
        outcome.put_nowait(f"complete: {body!r}")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    messages = [{"type": "http.request", "body": b'{"half": ', "more_body": True}, {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/Counter/k/add", "raw_path": b"/Counter/k/add",
             "query_string": b"", "headers": [(b"content-type", b"application/json")]}

    async def main() -> None:
        clients = Clients(tmp_path, 2)
        async with serving(owner, socket_path(tmp_path, 1)):
            out = Recorder()
            await Forwarder(clients)(1, scope, receive, out)
            assert out.messages == []  # nobody to answer
            assert await asyncio.wait_for(outcome.get(), 10) == "disconnected"
        await clients.close()

    asyncio.run(main())
