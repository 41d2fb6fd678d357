"""Issue 21: a deployment's sleeps that end together reach it together, in order, and each once.

A fan-out handler (restate-sdk's `gather` of 100 `ctx.sleep`s) writes its 100 SleepCommands at once; their timers
fire together. What the deployment sees is the point: the 100 SleepCompletion notifications come on the open
HTTP/2 stream as one DATA frame (one hand-over, one wake-up of the handler, not a frame per timer), in
completion-id order, none twice; then its Output and End complete the call. Several such calls at once share a
connection and each still gets exactly its own completions.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

import durably
from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.protocol.framing import FrameDecoder, encode_message
from durably.testing import TestRuntime

from .conftest import Deployment

pytestmark = pytest.mark.interop

CTYPE = b"application/vnd.restate.invocation.v6"
SLEEPS = 100
MANIFEST = {
    "protocolMode": "BIDI_STREAM", "minProtocolVersion": 5, "maxProtocolVersion": 6,
    "services": [{"name": "Fan", "ty": "SERVICE", "handlers": [
        {"name": "out", "input": {}, "output": {"setContentTypeIfEmpty": False}}]}],
}
# Per invocation id: the completion ids of each DATA frame (body chunk) that carried notifications.
SEEN: dict[str, list[list[int]]] = {}


async def fan_deployment(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app speaking the protocol by hand: 100 sleeps ending at the same ms, then the count of wake-ups."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path.endswith("/health") or path.endswith("/discover"):
        body = b"ok" if path.endswith("/health") else json.dumps(MANIFEST).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/vnd.restate.endpointmanifest.v3+json")]})
        await send({"type": "http.response.body", "body": body})
        return
    decoder = FrameDecoder()
    inv_id = ""
    started = False
    while not started:  # Start and the input
        msg = await receive()
        for frame in decoder.feed(msg.get("body", b"")):
            if frame.type_id == m.START:
                inv_id = frame.message.debug_id  # type: ignore[attr-defined]
            elif frame.type_id == m.INPUT:
                started = True
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", CTYPE)]})
    wake = int(time.time() * 1000) + 300
    sleeps = b"".join(encode_message(pb.SleepCommandMessage(wake_up_time=wake, result_completion_id=i))
                      for i in range(1, SLEEPS + 1))
    await send({"type": "http.response.body", "body": sleeps, "more_body": True})
    chunks: list[list[int]] = SEEN.setdefault(inv_id, [])
    got = 0
    while got < SLEEPS:
        msg = await receive()
        ids = [f.message.completion_id for f in decoder.feed(msg.get("body", b""))  # type: ignore[attr-defined]
               if f.type_id == m.SLEEP_COMPLETION]
        if ids:
            chunks.append(ids)
            got += len(ids)
        if not msg.get("more_body", False) and got < SLEEPS:
            return  # the runtime closed its side: a failure the test sees as a missing answer
    out = pb.OutputCommandMessage()
    out.value.content = json.dumps(len(chunks)).encode()
    await send({"type": "http.response.body", "body": encode_message(out) + encode_message(pb.EndMessage()),
                "more_body": False})


@pytest.fixture(scope="module")
def fan() -> Iterator[Deployment]:
    dep = Deployment(fan_deployment)  # type: ignore[arg-type]
    dep.start()
    yield dep
    dep.stop()


async def test_sleeps_that_end_together_reach_the_deployment_in_one_frame_in_order(fan: Deployment) -> None:
    SEEN.clear()
    async with TestRuntime(durably.app(services=[])) as rt:
        await rt.engine.register_deployment(fan.url)
        answers = await asyncio.wait_for(asyncio.gather(*(rt.call("Fan/out", b"null") for _ in range(8))), 60)
    assert [int(a) for a in answers] == [1] * 8  # one wake-up each
    assert len(SEEN) == 8
    for inv_id, chunks in SEEN.items():
        assert chunks == [list(range(1, SLEEPS + 1))], inv_id
