"""A small HTTP/2 cleartext (prior knowledge) client with full-duplex streams.

Restate's protocol needs both directions of one request open at once: the server keeps writing
notifications while it reads the handler's commands. Common HTTP clients send the whole request body
before they read the response, so the remote invoker uses this client, built on the `h2` state machine.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import socket
from collections import deque
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame
from hpack import NeverIndexedHeaderTuple

# Request headers whose value is new on every request (or a credential): sent as never-indexed literals, so
# they neither churn HPACK's dynamic table nor make every lookup in it scan past dozens of dead ids (HPACK's
# table search is a Python loop), and a token is never kept in a table (RFC 7541 §7.1.3).
NEVER_INDEXED = frozenset({"x-restate-invocation-id", "traceparent", "tracestate", "x-restate-jwt-v1",
                           "authorization"})

# How long streams the peer kept after a graceful GOAWAY may take before they are failed (and retried).
GOAWAY_GRACE = 5.0


def data_frame_body_repr(frame: hyperframe.frame.DataFrame) -> str:
    """The body part of a DATA frame's repr, as hyperframe writes it, from its first ten bytes only.

    h2 formats every frame it receives (`repr(frame)` for a trace log line, even when nothing logs), and
    hyperframe's repr of a DATA frame copies the whole body and hex-encodes it to show ten bytes: for a
    100 KB step result that was a 100 KB copy and a 200 KB hex string per frame. Same text, no copy.
    """
    pad = frame.pad_length if "PADDED" in frame.flags else 0
    total = len(frame.serialize_padding_data()) + len(frame.data) + pad
    if not total:
        return "None"
    head = (frame.serialize_padding_data() + bytes(frame.data[:10]) + b"\0" * min(pad, 10))[:10]
    return "<hex:" + binascii.hexlify(head).decode("ascii") + ("..." if total > 10 else "") + ">"


_spared = False


def spare_data_frame_reprs() -> None:
    """Make hyperframe's DATA frame repr use `data_frame_body_repr` (same text, no copy of the body).

    Process-wide, so it is not done on import: the first `H2Connection` (a remote deployment is in use) asks for
    it. The text is unchanged for anyone else who formats frames (hypercorn's endpoint server included).
    """
    global _spared
    if not _spared:
        hyperframe.frame.DataFrame._body_repr = data_frame_body_repr  # type: ignore[method-assign,assignment]
        _spared = True


class H2Error(Exception):
    """The connection or the stream failed."""


class H2Stream:
    """One request: send body chunks while reading the response."""

    def __init__(self, conn: H2Connection, stream_id: int) -> None:
        self._conn = conn
        self.id = stream_id
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self._headers_ready = asyncio.Event()
        self._data: deque[bytes | None] = deque()
        self._data_ready = asyncio.Event()
        self._window = asyncio.Event()
        self.error: str | None = None
        self.local_closed = False
        self.remote_closed = False
        # The peer said (GOAWAY) it never processed this stream: it may be sent again, elsewhere, at once.
        self.refused = False

    async def response(self) -> tuple[int, dict[str, str]]:
        """Wait for the response head."""
        await self._headers_ready.wait()
        if self.status is None:
            raise H2Error(self.error or "the stream closed before a response")
        return self.status, self.headers

    async def send(self, data: bytes) -> None:
        """Send body bytes, waiting for flow-control credit when the peer asks us to."""
        conn = self._conn
        view, pos = memoryview(data), 0
        while pos < len(view):
            if self.error is not None:
                raise H2Error(self.error)
            window = min(conn.h2.local_flow_control_window(self.id), conn.h2.max_outbound_frame_size)
            if window <= 0:
                conn.flush()  # what the window allowed goes out before we wait for more credit
                self._window.clear()
                await self._window.wait()
                continue
            conn.h2.send_data(self.id, bytes(view[pos:pos + window]))
            pos += window
        # One socket write for all the frames of this body (and of the other streams' in this turn).
        conn.flush_soon()

    def send_now(self, data: bytes) -> bool:
        """Send `data` in this turn if the peer's windows take all of it now; False (nothing sent) if they do not.

        No coroutine and no wait: what the engine delivers in one turn (a hundred sleep completions of one commit)
        is framed here at once and leaves with the other streams' frames in one socket write (`flush_soon`).
        """
        if self.error is not None:
            raise H2Error(self.error)
        conn = self._conn
        if len(data) > conn.h2.local_flow_control_window(self.id):
            return False
        size = conn.h2.max_outbound_frame_size
        try:
            if len(data) <= size:
                conn.h2.send_data(self.id, data)
            else:
                view = memoryview(data)
                for pos in range(0, len(data), size):
                    conn.h2.send_data(self.id, bytes(view[pos:pos + size]))
        except h2.exceptions.H2Error as e:
            raise H2Error(f"cannot send on the stream: {e!r}") from None
        conn.flush_soon()
        return True

    def end(self) -> None:
        """Close our side of the stream (no more request body)."""
        if not self.local_closed and self.error is None:
            self.local_closed = True
            try:
                self._conn.h2.end_stream(self.id)
                self._conn.flush_soon()
            except h2.exceptions.H2Error:
                pass
            if self.remote_closed:
                self._conn.streams.pop(self.id, None)

    def reset(self) -> None:
        """Abort the stream."""
        if self.error is None:
            self.error = "reset by us"
            try:
                self._conn.h2.reset_stream(self.id)
                self._conn.flush()
            except h2.exceptions.H2Error:
                pass
        self._closed()

    async def read(self) -> bytes | None:
        """The next chunk of the response body, or None at its end."""
        while not self._data:
            if self.error is not None:
                raise H2Error(self.error)
            self._data_ready.clear()
            await self._data_ready.wait()
        return self._data.popleft()

    # called by the connection
    def _closed(self) -> None:
        self._data.append(None)
        self._data_ready.set()
        self._headers_ready.set()
        self._window.set()


STREAM_WINDOW = 4 * 1024 * 1024
INITIAL_WINDOW = 65535  # HTTP/2's initial flow-control window (RFC 9113 §6.9.2), which many servers keep
MAX_FRAME = 1024 * 1024


class H2Connection(asyncio.Protocol):
    """One HTTP/2 connection with many concurrent streams.

    An asyncio protocol, not a stream reader and writer: what the socket delivers goes to h2 at once (no
    copy into a reader's buffer and out again, no reader task to wake per chunk), and what h2 has to send
    is written once per turn of the event loop (`flush_soon`): the frames of every stream that wrote in
    that turn leave in one system call, which the deployment then reads in one go.
    """

    def __init__(self, authority: str) -> None:
        spare_data_frame_reprs()
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.authority = authority
        self.streams: dict[int, H2Stream] = {}
        self.closed = False
        self.opened = 0  # streams ever opened here
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._flush_pending = False

    @classmethod
    async def connect(cls, host: str, port: int) -> H2Connection:
        """Open a connection (h2c with prior knowledge)."""
        _, conn = await asyncio.get_running_loop().create_connection(lambda: cls(f"{host}:{port}"), host, port)
        return conn

    # ---- asyncio.Protocol ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # small frames (acks, notifications) must not wait for Nagle
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.h2.initiate_connection()
        # Generous receive windows and large frames: journals, notifications and step results arrive in bursts,
        # and with the default 64 KiB stream window a 100 KB step result would wait for a WINDOW_UPDATE round trip
        # while every 16 KiB frame costs a pass through h2's pure-Python framing.
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                                 h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME})
        self.h2.increment_flow_control_window(16 * 1024 * 1024)
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.H2Error as e:
            self._fail(f"connection error: {e!r}")
            return
        for event in events:
            self._event(event)
        self.flush_soon()  # WINDOW_UPDATEs and acks, with whatever the woken streams write in this turn

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection error: {exc!r}" if exc is not None else "the connection was closed by the peer")

    @property
    def send_window(self) -> int:
        """How many body bytes the peer lets us send on this connection now (its connection-level window)."""
        return self.h2.outbound_flow_control_window

    # ---- writing ----

    def flush(self) -> None:
        """Write what h2 has to send now."""
        self._flush_pending = False
        data = self.h2.data_to_send()
        if data and not self.closed and self._transport is not None:
            self._transport.write(data)

    def flush_soon(self) -> None:
        """Write what h2 has to send at the end of this turn of the event loop, with what others add meanwhile."""
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self.flush)

    async def request(self, method: str, path: str, headers: list[tuple[str, str]]) -> H2Stream:
        """Start a request; its body follows through the returned stream (the head leaves with its first bytes,
        or at the end of this turn of the event loop)."""
        if self.closed:
            raise H2Error("the connection is closed")
        sid = self.h2.get_next_available_stream_id()
        self.opened += 1
        stream = H2Stream(self, sid)
        self.streams[sid] = stream
        self.h2.send_headers(sid, [(":method", method), (":scheme", "http"), (":authority", self.authority),
                                   (":path", path),
                                   *(NeverIndexedHeaderTuple(k, v) if k in NEVER_INDEXED else (k, v)
                                     for k, v in headers)])
        self.flush_soon()
        return stream

    def _event(self, event: Any) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived) and stream is not None:
            hdrs = dict(event.headers)
            stream.status = int(hdrs.pop(":status"))
            stream.headers = hdrs
            stream._headers_ready.set()
        elif isinstance(event, h2.events.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream is not None:
                stream._data.append(event.data)
                stream._data_ready.set()
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            stream.remote_closed = True
            stream._closed()
            if stream.local_closed:
                self.streams.pop(stream.id, None)
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            stream.error = f"the stream was reset (error code {event.error_code})"
            stream._closed()
            self.streams.pop(stream.id, None)
        elif isinstance(event, h2.events.WindowUpdated):
            targets = self.streams.values() if not event.stream_id else [stream] if stream else []
            for s in targets:
                s._window.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            # A graceful GOAWAY (servers send one after N requests): streams up to last_stream_id finish
            # normally; later ones were never processed. Either way no new stream goes on this connection.
            self.closed = True
            last = event.last_stream_id
            for s in list(self.streams.values()):
                if last is not None and s.id > last:
                    s.refused = True
                    s.error = "refused by the peer (GOAWAY)"
                    s._closed()
                    self.streams.pop(s.id, None)
            if event.error_code:
                self._fail(f"the peer ended the connection (error code {event.error_code})")
            elif self.streams:
                # Streams it kept must finish soon; some servers stall them instead. Do not wait forever.
                asyncio.get_running_loop().call_later(
                    GOAWAY_GRACE, lambda: self.streams and self._fail("the peer closed the connection (GOAWAY)"))

    def _fail(self, reason: str) -> None:
        self.closed = True
        for stream in list(self.streams.values()):
            if stream.error is None:
                stream.error = reason
            stream._closed()
        self.streams.clear()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def close(self) -> None:
        """Close the connection."""
        if not self.closed:
            try:
                self.h2.close_connection()
                self.flush()
            except h2.exceptions.H2Error:
                pass
            self._fail("closed")
