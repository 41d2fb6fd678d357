"""A broken stream (issue 23): when the server's request stream disconnects, the endpoint stops the attempt at
once. Nothing more is written into the dead stream, and no new step starts, even if the previous step's
completion had already arrived."""

from __future__ import annotations

import asyncio
from typing import Any

import durably
from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.protocol.framing import FrameDecoder, encode_frame, encode_message

ran: list[str] = []
svc = durably.Service("Steps")


@svc.handler()
async def two_steps(ctx: durably.Context) -> str:
    await ctx.run_typed("a", lambda: ran.append("a"))
    await ctx.run_typed("b", lambda: ran.append("b"))
    return "done"


APP = durably.app(services=[svc])


class Exchange:
    """One /invoke request driven by hand: what the server sends, and what the endpoint wrote back."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.written: list[tuple[int, Any]] = []
        self.decoder = FrameDecoder()
        self.disconnected = False
        self.written_after_disconnect: list[str] = []
        self.proposed = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] != "http.response.body":
            return
        for frame in self.decoder.feed(message.get("body", b"")):
            if self.disconnected:
                self.written_after_disconnect.append(m.type_name(frame.type_id))
            self.written.append((frame.type_id, frame.message))
            if frame.type_id == m.PROPOSE_RUN_COMPLETION:
                self.proposed.set()

    def body(self, *messages: Any) -> None:
        self.raw(b"".join(encode_message(x) for x in messages))

    def raw(self, data: bytes) -> None:
        self.inbox.put_nowait({"type": "http.request", "body": data, "more_body": True})

    def disconnect(self) -> None:
        self.disconnected = True
        self.inbox.put_nowait({"type": "http.disconnect"})


def scope() -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/invoke/Steps/two_steps", "http_version": "2",
            "headers": [(b"content-type", b"application/vnd.restate.invocation.v6")], "query_string": b""}


async def test_disconnect_after_a_completion_arrived_starts_no_new_step() -> None:
    ran.clear()
    ex = Exchange()
    start = pb.StartMessage(id=b"\x01" * 16, debug_id="inv_1", known_entries=1)
    ex.body(start, pb.InputCommandMessage())
    call = asyncio.create_task(APP(scope(), ex.receive, ex.send))
    await asyncio.wait_for(ex.proposed.wait(), 10)
    assert ran == ["a"]
    # Step a's completion arrives, and the stream breaks right behind it.
    completion = pb.NotificationMessage(completion_id=1)
    completion.value.content = b"null"
    ex.raw(encode_frame(m.RUN_COMPLETION, completion.SerializeToString()))
    ex.disconnect()
    await asyncio.wait_for(call, 10)  # the attempt stopped: it does not wait for anything more
    assert ran == ["a"]  # step b never started on the dead stream
    assert ex.written_after_disconnect == []


async def test_disconnect_while_a_step_waits_for_its_completion_writes_nothing() -> None:
    ran.clear()
    ex = Exchange()
    ex.body(pb.StartMessage(id=b"\x02" * 16, debug_id="inv_2", known_entries=1), pb.InputCommandMessage())
    call = asyncio.create_task(APP(scope(), ex.receive, ex.send))
    await asyncio.wait_for(ex.proposed.wait(), 10)
    ex.disconnect()
    await asyncio.wait_for(call, 10)
    assert ran == ["a"]
    assert ex.written_after_disconnect == []  # no Suspension, no Error into the dead stream
