"""A small HTTP/1.1 response leaves in one write: the head waits for the body (issue 21, echo latency).

uvicorn writes a response's status line and headers, then its body, in two transport writes: two send()
system calls and two TCP segments per small answer. The ingress joins them; a head whose body does not come
in the same loop turn (a streamed response) still goes out at the end of that turn, and an informational
100 Continue goes out at once, since the client waits for it before sending its body.
"""

from __future__ import annotations

import asyncio

from durably.server.http.connection_limits import OneWriteResponses


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n"


async def test_head_and_body_go_out_in_one_write() -> None:
    t = Recorder()
    w = OneWriteResponses(t, asyncio.get_running_loop())  # type: ignore[arg-type]
    w.write(HEAD)
    assert t.writes == []
    w.write(b'"hello"')
    assert t.writes == [HEAD + b'"hello"']
    await asyncio.sleep(0)  # the end of the turn finds nothing left to write
    assert t.writes == [HEAD + b'"hello"']


async def test_a_head_without_its_body_leaves_at_the_end_of_the_turn() -> None:
    t = Recorder()
    w = OneWriteResponses(t, asyncio.get_running_loop())  # type: ignore[arg-type]
    w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    await asyncio.sleep(0)
    assert t.writes == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
    w.write(b"5\r\nhello\r\n")
    assert t.writes[-1] == b"5\r\nhello\r\n"


async def test_100_continue_is_not_held_and_close_writes_what_is_held() -> None:
    t = Recorder()
    w = OneWriteResponses(t, asyncio.get_running_loop())  # type: ignore[arg-type]
    w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert t.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    w.write(HEAD)
    w.close()
    assert t.writes[-1] == HEAD and t.closed
    assert w.get_extra_info("peername") == "info:peername"
