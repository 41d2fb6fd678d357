"""Issue 23: when a deployment's worker is SIGKILLed, every step whose result had not yet left the process runs
again. So a step's ProposeRunCompletion goes to the ASGI server's `send` the moment the closure returns: in the
same event-loop turn for an async closure, and in the first turn after its thread ends for a sync one (the turn
that learns of it), never a turn later through a queue or a task switch."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import durably
from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.protocol.framing import FrameDecoder, encode_message

TURN = [0]  # event-loop turns counted by a ticker task
returned_at: dict[str, int] = {}
svc = durably.Service("SendPath")


async def async_step() -> str:
    returned_at["async"] = TURN[0]
    return "a"


def sync_step() -> str:
    returned_at["sync"] = TURN[0]  # read in the worker thread: the turn the loop is in as the closure returns
    assert threading.current_thread() is not threading.main_thread()
    return "s"


@svc.handler()
async def one(ctx: durably.Context, kind: str) -> str:
    return await ctx.run_typed("step", async_step if kind == "async" else sync_step)


APP = durably.app(services=[svc])


async def ticker() -> None:
    while True:
        await asyncio.sleep(0)
        TURN[0] += 1


async def proposal_turn(kind: str) -> tuple[int, int]:
    """(turn the closure returned in, turn its proposal reached the ASGI send)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    decoder = FrameDecoder()
    sent_at: list[int] = []

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        for frame in decoder.feed(message.get("body", b"")):
            if frame.type_id == m.PROPOSE_RUN_COMPLETION:
                sent_at.append(TURN[0])

    start = pb.StartMessage(id=b"\x07" * 16, debug_id=f"inv_{kind}", known_entries=1)
    inp = pb.InputCommandMessage()
    inp.value.content = f'"{kind}"'.encode()
    inbox.put_nowait({"type": "http.request", "body": encode_message(start) + encode_message(inp),
                      "more_body": True})
    scope = {"type": "http", "method": "POST", "path": "/invoke/SendPath/one", "http_version": "2",
             "headers": [(b"content-type", b"application/vnd.restate.invocation.v6")], "query_string": b""}
    tick = asyncio.create_task(ticker())
    call = asyncio.create_task(APP(scope, receive, send))
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while not sent_at:
            assert asyncio.get_running_loop().time() < deadline, "no ProposeRunCompletion was sent"
            await asyncio.sleep(0.001)
        return returned_at[kind], sent_at[0]
    finally:
        inbox.put_nowait({"type": "http.disconnect"})
        await asyncio.wait_for(call, 10)
        tick.cancel()


async def test_an_async_steps_proposal_is_sent_in_the_turn_the_closure_returns() -> None:
    returned, sent = await proposal_turn("async")
    assert sent == returned


async def test_a_sync_steps_proposal_is_sent_in_the_first_turn_after_its_thread_returns() -> None:
    returned, sent = await proposal_turn("sync")
    assert sent - returned <= 1
