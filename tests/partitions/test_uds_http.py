"""The lean HTTP/1.1 client of the partitions' internal sockets (server/partitions/uds_http.py), against a real
uvicorn on a unix socket (the internal listener's server) and, for broken answers, a raw socket server."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from durably.sdk.asgi import read_body
from durably.server.partitions.uds_http import UdsClient, UdsUnreachable

from .unix_server import serving


class App:
    """Echoes what it got (method, path, headers, body digest); `/stream` answers in two parts, the second only
    once the test allows it; `/big` answers `n` bytes."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen_headers: list[dict[bytes, bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await read_body(scope, receive, 1 << 30)
        self.seen_headers.append(dict(scope["headers"]))
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first;", "more_body": True})
            await self.release.wait()
            await send({"type": "http.response.body", "body": b"second", "more_body": False})
            return
        if scope["path"] == "/big":
            size = int(scope["query_string"].decode().split("=")[1])
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(size).encode())]})
            await send({"type": "http.response.body", "body": b"z" * size, "more_body": False})
            return
        answer = f"{scope['method']} {scope['path']} {len(body)} {hashlib.sha256(body).hexdigest()}".encode()
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x-answer", b"yes")]})
        await send({"type": "http.response.body", "body": answer, "more_body": False})


def listener(path: Path, app: App, keep_alive_s: float = 5.0) -> AbstractAsyncContextManager[uvicorn.Server]:
    return serving(app, path, timeout_keep_alive=keep_alive_s)


@asynccontextmanager
async def client_of(path: Path, **options: Any) -> AsyncIterator[UdsClient]:
    """A client of `path`, closed however the test ends."""
    client = UdsClient(path, **options)
    try:
        yield client
    finally:
        await client.aclose()


async def until(predicate: Any, what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_sequential_requests_share_one_kept_alive_connection(tmp_path: Path) -> None:
    app = App()
    async with listener(tmp_path / "s.sock", app) as server, client_of(tmp_path / "s.sock") as client:
        for i in range(5):
            r = await client.request("POST", f"/a/{i}", [(b"content-type", b"application/json")], b"[1]")
            assert (r.status_code, await r.read()) == (201, f"POST /a/{i} 3 {hashlib.sha256(b'[1]').hexdigest()}"
                                                       .encode())
            assert (b"x-answer", b"yes") in r.headers
            r.close()
        assert len(server.server_state.connections) == 1
        assert server.server_state.total_requests == 5


async def test_an_answer_streams_as_it_comes(tmp_path: Path) -> None:
    """An attach waits as long as the invocation runs: its answer must not be held until it ends."""
    app = App()
    async with listener(tmp_path / "s.sock", app), client_of(tmp_path / "s.sock") as client:
        r = await client.request("GET", "/stream")
        chunks = r.chunks()
        assert await anext(chunks) == b"first;"  # the second part is not sent until this arrived
        app.release.set()
        assert b"".join([c async for c in chunks]) == b"second"
        r.close()


async def test_large_bodies_both_ways_and_a_streamed_request_body(tmp_path: Path) -> None:
    app = App()
    payload = bytes(range(256)) * 12_288  # 3 MiB

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 65_536):
            yield payload[i:i + 65_536]

    async with listener(tmp_path / "s.sock", app), client_of(tmp_path / "s.sock") as client:
        expected = f"PUT /up {len(payload)} {hashlib.sha256(payload).hexdigest()}".encode()
        r = await client.request("PUT", "/up", [], pieces())  # no content-length: chunked
        assert await r.read() == expected
        r.close()
        r = await client.request("PUT", "/up", [(b"content-length", str(len(payload)).encode())], pieces())
        assert await r.read() == expected
        r.close()
        r = await client.request("GET", "/big?n=5000000")
        assert len(await r.read()) == 5_000_000
        r.close()


async def test_hop_by_hop_headers_and_expect_are_not_passed_on(tmp_path: Path) -> None:
    """curl sends `expect: 100-continue` with bodies over 1 KB; the body goes at once, so the owner must not
    answer `100 Continue` into the middle of the exchange."""
    app = App()
    async with listener(tmp_path / "s.sock", app), client_of(tmp_path / "s.sock") as client:
        headers = [(b"host", b"example.com:8080"), (b"expect", b"100-continue"), (b"connection", b"close"),
                   (b"x-keep", b"1")]
        r = await client.request("POST", "/h", headers, b"x" * 2000)
        assert r.status_code == 201
        await r.read()
        r.close()
        seen = app.seen_headers[-1]
        assert b"expect" not in seen and seen[b"host"] == b"example.com:8080" and seen[b"x-keep"] == b"1"
        # `connection: close` of the caller's hop did not close this one.
        r = await client.request("POST", "/again", [], b"")
        assert r.status_code == 201
        r.close()


async def test_a_connection_the_listener_closed_is_not_used_again(tmp_path: Path) -> None:
    app = App()
    # A long idle_s: only the close itself can tell the client.
    async with listener(tmp_path / "s.sock", app, keep_alive_s=0.1) as server, \
            client_of(tmp_path / "s.sock", idle_s=60.0) as client:
        r = await client.request("POST", "/one", [], b"")
        await r.read()
        r.close()
        await until(lambda: not server.server_state.connections, "the listener to close the idle connection")
        r = await client.request("POST", "/two", [], b"")
        assert r.status_code == 201 and (await r.read()).startswith(b"POST /two")
        r.close()


async def test_no_listener_is_unreachable(tmp_path: Path) -> None:
    client = UdsClient(tmp_path / "missing.sock")
    with pytest.raises(UdsUnreachable, match="cannot connect"):
        await client.request("POST", "/x", [], b"")


@pytest.mark.parametrize("sent", [b"", b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part"])
async def test_a_listener_that_dies_before_or_during_the_answer(tmp_path: Path, sent: bytes) -> None:
    """Before the answer began: unreachable (the caller answers 503). During it: the body raises, not a short
    body passed off as whole."""

    async def die(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(sent)
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(die, path=str(tmp_path / "d.sock"))
    async with server, client_of(tmp_path / "d.sock") as client:
        if not sent:
            with pytest.raises(UdsUnreachable, match="no answer"):
                await client.request("GET", "/x")
        else:
            r = await client.request("GET", "/x")
            assert r.status_code == 200
            with pytest.raises(UdsUnreachable, match="broke during the answer"):
                await r.read()
            r.close()


async def test_a_head_answer_has_no_body_and_the_next_request_still_works(tmp_path: Path) -> None:
    """A HEAD answer carries the length of a body that never comes: it must not be waited for."""
    app = App()
    async with listener(tmp_path / "s.sock", app), client_of(tmp_path / "s.sock") as client:
        r = await client.request("HEAD", "/h")
        assert r.status_code == 201 and await asyncio.wait_for(r.read(), 10) == b""
        r.close()
        r = await client.request("POST", "/after", [], b"")
        assert (await r.read()).startswith(b"POST /after")
        r.close()
