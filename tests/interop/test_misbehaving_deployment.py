"""A deployment that misbehaves gets a logged error and a retry; the server keeps serving the rest."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest

import durably
from durably import InvocationRetryPolicy, TerminalError
from durably.protocol import protocol_pb2 as pb
from durably.protocol.framing import encode_message
from durably.testing import TestRuntime

from .conftest import Deployment

pytestmark = pytest.mark.interop

CTYPE = b"application/vnd.restate.invocation.v6"
MANIFEST = {
    "protocolMode": "BIDI_STREAM", "minProtocolVersion": 5, "maxProtocolVersion": 6,
    "services": [{"name": "Bad", "ty": "SERVICE", "handlers": [
        {"name": n, "input": {}, "output": {"setContentTypeIfEmpty": False}}
        for n in ("garbage", "wrong_type", "no_end", "status_500", "mismatch")]}],
}


async def bad_deployment(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that discovers fine and then answers every invocation wrongly, each its own way."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path.endswith("/health"):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if path.endswith("/discover"):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/vnd.restate.endpointmanifest.v3+json")]})
        await send({"type": "http.response.body", "body": json.dumps(MANIFEST).encode()})
        return
    handler = path.rsplit("/", 1)[-1]
    if handler == "status_500":
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"oops"})
        return
    ctype = b"text/plain" if handler == "wrong_type" else CTYPE
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", ctype)]})
    if handler == "garbage":
        body = b"\xff" * 64
    elif handler == "no_end":
        out = pb.OutputCommandMessage()
        out.value.content = b'"half"'
        body = encode_message(out)
    elif handler == "mismatch":
        body = encode_message(pb.ErrorMessage(code=570, message="journal mismatch: recorded run, attempted sleep"))
    else:
        body = b""
    await send({"type": "http.response.body", "body": body, "more_body": False})


@pytest.fixture(scope="module")
def bad() -> Iterator[Deployment]:
    dep = Deployment(bad_deployment)  # type: ignore[arg-type]
    dep.start()
    yield dep
    dep.stop()


svc = durably.Service("Healthy")


@svc.handler()
async def ping(ctx: durably.Context) -> str:
    return await ctx.run_typed("pong", lambda: "pong")


@pytest.fixture
async def rt(bad: Deployment) -> AsyncIterator[TestRuntime]:
    policy = InvocationRetryPolicy(max_attempts=3, on_max_attempts="kill",
                                   initial_interval=timedelta(milliseconds=5), max_interval=timedelta(milliseconds=10))
    async with TestRuntime(durably.app(services=[svc]), retry_policy=policy) as runtime:
        await runtime.engine.register_deployment(bad.url)
        yield runtime


@pytest.mark.parametrize(("handler", "words"), [
    ("garbage", "garbage"),
    ("wrong_type", "content type"),
    ("no_end", "without End"),
    ("status_500", "answered 500"),
    ("mismatch", "journal mismatch"),
])
async def test_misbehaving_deployment_is_retried_then_fails_clearly(rt: TestRuntime, handler: str, words: str,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(TerminalError) as info:
        await rt.call(f"Bad/{handler}")
    assert words in info.value.message
    assert words in caplog.text  # logged for the operator
    assert await rt.call("Healthy/ping") == "pong"  # the rest keeps working


async def test_unreachable_deployment_is_retried(bad: Deployment) -> None:
    policy = InvocationRetryPolicy(max_attempts=2, on_max_attempts="kill", initial_interval=timedelta(milliseconds=5))
    async with TestRuntime(durably.app(services=[svc]), retry_policy=policy) as runtime:
        other = Deployment(bad_deployment)  # type: ignore[arg-type]
        other.start()
        await runtime.engine.register_deployment(other.url)
        other.stop()  # gone after discovery
        with pytest.raises(TerminalError) as info:
            await runtime.call("Bad/garbage")
        assert "connect" in info.value.message or "failed" in info.value.message
        assert await runtime.call("Healthy/ping") == "pong"


async def test_connections_rotate_before_the_servers_request_limit() -> None:
    """hypercorn closes a connection after N requests with a GOAWAY; Durably moves on before that."""
    from .apps import app as durably_app

    dep = Deployment(durably_app, max_requests=3)
    dep.start()
    try:
        async with TestRuntime(durably.app(services=[svc])) as runtime:
            await runtime.engine.register_deployment(dep.url)
            runtime.engine.pool.max_streams_per_connection = 2  # below the server's limit of 3
            import asyncio

            # A remote handler takes and returns raw bytes here (its types live in the deployment).
            results = await asyncio.gather(*(runtime.call("InteropCounter/goaway/add", b"1") for _ in range(20)))
            assert sorted(int(r) for r in results) == list(range(1, 21))
            await runtime.engine.flushed()
            rows = runtime.store.query("SELECT attempts, last_error FROM invocations WHERE service = 'InteropCounter'")
            assert all(attempts == 1 and err is None for attempts, err in rows), rows
    finally:
        dep.stop()
