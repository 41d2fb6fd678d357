"""A small HTTP/1.1 client for the partitions' internal unix sockets: the hot path of `--partitions N`.

Every keyed call that lands on a partition that does not own its key, and every outbox delivery between
partitions, is one request to another partition's internal listener. httpx spent about 2 ms of CPU on each of
them here: its connection pool looks at every pooled connection on every request (a `poll` per idle one),
which made 100 object keys with 2 partitions 2.3x slower than with one. Both ends are ours, so this client does
only what they need: keep-alive connections in a last-in-first-out pool, a request written in one go (its body
streamed as it arrives), and the answer parsed by httptools and streamed back as it comes, which an attach that
waits for a long invocation needs.

An idle connection is dropped after `idle_s`, before the listener's keep-alive timeout closes it, so a request
is never written to a connection the other end is closing. A request that fails before any answer arrived
raises `UdsUnreachable`: the owner did not get it, or died with it; the caller says so (503) and the client
retries.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import cast

import httptools

# Headers of one hop: the client of the next hop sets its own. `expect` goes too: the body is sent at once,
# never after a `100 Continue`.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade",
                        b"proxy-connection", b"expect"})
_HIGH_WATER = 1 << 20  # bytes buffered either way before the producer is made to wait
_MAX_IDLE_CONNECTIONS = 64


class UdsUnreachable(ConnectionError):
    """No answer came: the listener could not be reached, or the connection broke before the answer began."""


class UdsResponse:
    """An answer: its status and headers at once, its body as it arrives (`chunks()` or `read()`)."""

    def __init__(self, conn: _Connection, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self._conn = conn
        self._released = False
        self.status_code = status
        self.headers = headers

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive. Raises UdsUnreachable if the connection breaks before its end."""
        conn = self._conn
        while True:
            while conn.body:
                chunk = conn.body.popleft()
                conn.buffered -= len(chunk)
                if conn.reading_paused and conn.buffered < _HIGH_WATER // 2 and conn.transport is not None:
                    conn.reading_paused = False
                    conn.transport.resume_reading()
                yield chunk
            if conn.complete:
                return
            if conn.lost is not None:
                raise UdsUnreachable(f"the connection broke during the answer: {conn.lost}")
            conn.wake = asyncio.get_running_loop().create_future()
            await conn.wake

    async def read(self) -> bytes:
        """The whole body."""
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        """Done with the answer: its connection goes back to the pool if it can carry another request."""
        conn = self._conn
        if not self._released:
            self._released = True
            conn.client._release(conn)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one request at a time."""

    def __init__(self, client: UdsClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost: BaseException | str | None = None
        self.idle_since = 0.0
        self.write_ready: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.reading_paused = False
        self.complete = False
        self.sent = False  # the whole request was written
        self.wake: asyncio.Future[None] | None = None

    # ---- asyncio.Protocol ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(f"unreadable answer: {e}")
            if self.transport is not None:
                self.transport.close()

    def eof_received(self) -> bool | None:
        return False  # close our end too

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(exc or "closed by the listener")
        if self.write_ready is not None and not self.write_ready.done():
            self.write_ready.set_result(None)

    def pause_writing(self) -> None:
        self.write_ready = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.write_ready is not None and not self.write_ready.done():
            self.write_ready.set_result(None)
        self.write_ready = None

    # ---- httptools callbacks ----

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # ----

    def _wake(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    def _fail(self, why: BaseException | str) -> None:
        if self.lost is None:
            self.lost = why
        if not self.head.done():
            self.head.set_exception(UdsUnreachable(f"no answer: {why}"))
            self.head.exception()  # retrieved: nobody may be waiting any more
        self._wake()

    def reusable(self) -> bool:
        return (self.transport is not None and not self.transport.is_closing() and self.lost is None
                and self.complete and self.sent and self.parser.should_keep_alive())

    async def drain(self) -> None:
        """Wait while the other end is not reading (a lost connection ends the wait; `head` then tells why)."""
        if self.write_ready is not None:
            await self.write_ready


class UdsClient:
    """Requests to one unix socket, over a pool of keep-alive connections."""

    def __init__(self, path: Path | str, idle_s: float = 0.5, connect_timeout_s: float = 2.0) -> None:
        self.path = str(path)
        self.idle_s = idle_s
        self.connect_timeout_s = connect_timeout_s
        self._idle: deque[_Connection] = deque()
        self._open: set[_Connection] = set()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to be timed out
            if conn.transport is not None and not conn.transport.is_closing() and now - conn.idle_since < self.idle_s:
                conn._reset()
                return conn
            self._drop(conn)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_unix_connection(lambda: _Connection(self), self.path)
        except (OSError, TimeoutError) as e:
            raise UdsUnreachable(f"cannot connect to {self.path}: {e!r}") from None
        self._open.add(conn)
        return conn

    def _drop(self, conn: _Connection) -> None:
        self._open.discard(conn)
        if conn.transport is not None:
            conn.transport.close()

    def _release(self, conn: _Connection) -> None:
        if conn.reusable() and len(self._idle) < _MAX_IDLE_CONNECTIONS:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            self._drop(conn)

    async def request(self, method: str, target: str, headers: list[tuple[bytes, bytes]] | None = None,
                      body: bytes | AsyncIterable[bytes] | None = None) -> UdsResponse:
        """Send a request and return once the answer's status and headers arrived; read its body from the
        response, then `close()` it. `headers` are sent as given, less the hop-by-hop ones; a body of bytes goes
        with its content-length, an iterable one as it comes (with the content-length given in `headers`, else
        chunked)."""
        conn = await self._connect()
        try:
            await self._send(conn, method, target, headers or [], body)
            await conn.head
        except BaseException:
            self._drop(conn)
            raise
        if method == "HEAD":
            conn.complete, conn.sent = True, False  # no body follows; not reused (the parser would wait for one)
        return UdsResponse(conn, conn.parser.get_status_code(), conn.headers)

    async def _send(self, conn: _Connection, method: str, target: str, headers: list[tuple[bytes, bytes]],
                    body: bytes | AsyncIterable[bytes] | None) -> None:
        lines = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1")]
        length: bytes | None = None
        host = False
        for name, value in headers:
            lower = name.lower()
            if lower in HOP_BY_HOP:
                continue
            if lower == b"content-length":
                length = value
            host = host or lower == b"host"
            lines += [name, b": ", value, b"\r\n"]
        if not host:  # HTTP/1.1 requires one; the caller's (kept above) is what the owner's ingress sees
            lines.append(b"host: partition\r\n")
        transport = conn.transport
        if transport is None:
            raise UdsUnreachable(f"the connection broke: {conn.lost}")
        if body is None or isinstance(body, bytes):
            if length is None and (body or method not in ("GET", "HEAD", "DELETE")):
                lines.append(b"content-length: %d\r\n" % len(body or b""))
            lines += [b"\r\n", body or b""]
            transport.write(b"".join(lines))
            conn.sent = True
            return
        chunked = length is None
        if chunked:
            lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        transport.write(b"".join(lines))
        async for chunk in body:
            if conn.head.done() or conn.transport is None:
                break  # the answer came early (a refusal), or the connection broke: the rest is not wanted
            if chunk:
                conn.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                await conn.drain()
        else:
            if conn.transport is not None and not conn.head.done():
                if chunked:
                    conn.transport.write(b"0\r\n\r\n")
                conn.sent = True
        # An answer that came before the whole body was sent leaves the connection unusable (`sent` is False).

    async def aclose(self) -> None:
        """Close every connection."""
        self._idle.clear()
        for conn in list(self._open):
            self._drop(conn)
        await asyncio.sleep(0)  # let the transports run their close callbacks
