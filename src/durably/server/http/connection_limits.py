"""Connection and header limits, enforced in uvicorn's HTTP/1.1 protocol (httptools does the parsing).

uvicorn has an idle keep-alive timeout but no timeout for reading a request's headers or body, no limit on
the header block, and a concurrency limit that answers 503 without a word in the log. A slow or idle client
could therefore hold a connection (and a file descriptor) forever, and a 40 MB header block was buffered
and journaled. This protocol subclass adds, per connection:

- a header timeout: the request line and headers must be complete within `header_timeout` of the
  connection opening (or of the first byte of the next request); else 408 and close. A connection that
  never sent a byte is closed without a response.
- a body timeout: the body must be complete within `body_timeout` of the headers; else 408 (if no
  response was started) and close.
- a header limit: more than `max_header_bytes` of request line and headers, or more than `max_headers`
  fields, is answered 431 and the connection closed; the bytes are counted as they arrive, so a giant
  header is refused before it is buffered.
- a connection cap: a connection opened while the listener already has `max_connections` is answered
  503 with Retry-After and closed at once, and the log says the cap was reached (at most every 10 s).
- with `--partitions N`, the ingress's share of connections: each partition counts its connections where the
  others see them, and one holding more than its share answers a request with `connection: close` so that the
  client reconnects and the kernel deals that connection again (server/partitions/balance.py).

Errors are in Restate's shape, `{"code", "message"}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from durably.sdk.asgi import Receive, Send, error
from durably.server.process.limits import ResourceLimits

log = logging.getLogger("durably.connections")

_WARN_EVERY_S = 10.0
# How long a connection refused outside the app keeps reading before it is closed.
_LINGER_S = 2.0
# Shorter past the connection cap: there the descriptors are what is scarce (the request, if any, is small).
_OVER_CAP_LINGER_S = 0.25


class _RateLimitedWarning:
    """Logs a condition at most every few seconds, with how often it happened meanwhile."""

    def __init__(self) -> None:
        self.last = 0.0
        self.count = 0

    def __call__(self, message: str, *args: Any) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= _WARN_EVERY_S:
            if self.count > 1:
                message += f" ({self.count} times since the last such message)"
            log.warning(message, *args)
            self.last = now
            self.count = 0


def raw_error(status: int, message: str, source: str, retry_after: bool = False) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection (for errors outside any request)."""
    body = json.dumps({"code": status, "message": message}).encode()
    head = [STATUS_LINE[status], b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n", b"connection: close\r\n",
            b"x-restate-error-source: " + source.encode() + b"\r\n"]
    if retry_after:
        head.append(b"retry-after: 1\r\n")
    return b"".join(head) + b"\r\n" + body


class OneWriteResponses:
    """The connection's transport as a response sees it: the status line and headers wait for the body.

    uvicorn writes a response's head and its body in two calls, which on a fresh socket are two send()
    system calls and two TCP segments for a small answer. The head is held until the body's first write
    joins it, or until the loop's current turn ends (a streamed response's head is not kept back), so a
    small response leaves in one send(). Informational answers (100 Continue) go out at once: the client
    waits for them before it sends the body.
    """

    __slots__ = ("_held", "_loop", "_turn_end", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._turn_end: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self.transport.write(held + data)
        elif data[:7] == b"HTTP/1." and data[9:10] != b"1":
            self._held = data
            if self._turn_end is None:
                self._turn_end = self._loop.call_soon(self._end_of_turn)
        else:
            self.transport.write(data)

    def _end_of_turn(self) -> None:
        self._turn_end = None
        self.flush()

    def flush(self) -> None:
        """Write a held head now."""
        held = self._held
        if held is not None:
            self._held = None
            if not self.transport.is_closing():
                self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class ConnectionShare(Protocol):
    """Where a listener shared by several processes keeps its connections even (server/partitions/balance.py)."""

    def publish(self, connections: int) -> None:
        """This process now holds `connections` connections."""

    def should_close(self, connections: int) -> bool:
        """Whether to close, after its answer, the connection whose request just arrived."""


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header/body timeouts, header limits and a connection cap."""

    limits: ResourceLimits = ResourceLimits()
    listener = "ingress"
    shares: ConnectionShare | None = None
    over_cap_warning = _RateLimitedWarning()
    header_timeout_warning = _RateLimitedWarning()
    body_timeout_warning = _RateLimitedWarning()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._one_write = OneWriteResponses(transport, self.loop)
        self._raw_header_bytes = 0
        self._header_bytes = 0
        self._header_count = 0
        self._in_headers = True
        self._got_bytes = False
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.limits.header_timeout, self._header_timed_out)
        if self.shares is not None:
            self.shares.publish(len(self.connections))
        if len(self.connections) > self.limits.max_connections:
            # Answered and closed at once, so that idle connections past the cap cannot use up the
            # process's file descriptors (which would lock out the other listener too).
            self.over_cap_warning(
                "%s: %d connections are open, over the cap of %d (--max-connections); new ones get 503",
                self.listener, len(self.connections), self.limits.max_connections)
            self._fail_connection(503, f"too many connections: this server's {self.listener} accepts "
                                  f"{self.limits.max_connections}; retry later", retry_after=True,
                                  linger=_OVER_CAP_LINGER_S)

    def connection_lost(self, exc: Exception | None) -> None:
        self._one_write.flush()  # nothing is sent on a lost connection; a held head is dropped with it
        self._cancel_timers()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)
        if self.shares is not None:
            self.shares.publish(len(self.connections))

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:
            return  # answered and closing: what the client still sends is read and dropped
        self._got_bytes = True
        if self._in_headers:
            self._raw_header_bytes += len(data)
        super().data_received(data)
        if (self._in_headers and self._raw_header_bytes > self.limits.max_header_bytes
                and not self.transport.is_closing()):
            self._fail_connection(431, self._header_message())

    def _fail_connection(self, status: int, message: str, retry_after: bool = False,
                         linger: float = _LINGER_S) -> None:
        """Answer with an error outside the app and close the connection.

        The close lingers: we send FIN and keep reading (and dropping) what the client still sends for a
        moment, because closing a socket with unread data sends a reset, which can destroy the error
        response before the client reads it.
        """
        self._cancel_timers()
        self.transport.write(raw_error(status, message, self.listener, retry_after))
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app sees a disconnect, and whatever it still sends goes nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
        self._linger = self.loop.call_later(linger, self.transport.close)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()

    def _header_message(self) -> str:
        return (f"request header fields too large: at most {self.limits.max_header_bytes} bytes of request line "
                f"and headers and {self.limits.max_headers} header fields are accepted")

    # ---- parser callbacks ----

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        self._header_count = 0
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timed_out)

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        self._header_count += 1
        if self._header_count <= self.limits.max_headers:  # past it nothing more is kept: it is refused
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._in_headers = False
        self._raw_header_bytes = 0
        app = self.app
        if self._header_count > self.limits.max_headers or self._header_bytes > self.limits.max_header_bytes:
            self.app = _Refuse(431, self._header_message(), self.listener)
        try:
            super().on_headers_complete()
        finally:
            self.app = app
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = self._one_write  # type: ignore[assignment]
            shares = self.shares
            if shares is not None and cycle.keep_alive and shares.should_close(len(self.connections)):
                cycle.keep_alive = False  # uvicorn answers with `connection: close` and closes after it
        self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._in_headers = True
        super().on_message_complete()

    # ---- timeouts ----

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._in_headers:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # Still answering the previous request (a long call): its response resets the clock.
            self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timed_out)
            return
        if not (self._got_bytes and self._raw_header_bytes):
            self.transport.close()  # an idle connection: nothing to answer
            return
        self.header_timeout_warning("%s: closed a connection that did not send its headers within %g s "
                             "(--header-timeout)", self.listener, self.limits.header_timeout)
        self._fail_connection(408, f"request headers not received within {self.limits.header_timeout:g} s")

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        self.body_timeout_warning("%s: closed a connection that did not send its request body within %g s "
                             "(--body-timeout)", self.listener, self.limits.body_timeout)
        cycle = self.cycle
        if cycle is not None and cycle.response_started:
            # The app answered already (e.g. 413 without reading the body): just stop waiting for it.
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.close()
            return
        self._fail_connection(408, f"request body not received within {self.limits.body_timeout:g} s")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._in_headers and self._header_timer is None and not self.transport.is_closing():
            # The idle time before the next request is the keep-alive timeout's; the clock for its
            # headers starts with its first byte (on_message_begin).
            self._raw_header_bytes = 0
            self._got_bytes = False


class _Refuse:
    """An ASGI app that answers every request with one error and closes the connection."""

    def __init__(self, status: int, message: str, source: str) -> None:
        self.status = status
        self.message = message
        self.source = source

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await error(send, self.status, self.message, self.source, [(b"connection", b"close")])


def protocol_class(limits: ResourceLimits, listener: str,
                   shares: ConnectionShare | None = None) -> type[LimitedHttpProtocol]:
    """The protocol class for one listener (`http=` of uvicorn's Config); `shares` for a port shared by partitions."""
    return type(f"Limited{listener.title()}Protocol", (LimitedHttpProtocol,),
                {"limits": limits, "listener": listener, "shares": shares, "over_cap_warning": _RateLimitedWarning(),
                 "header_timeout_warning": _RateLimitedWarning(), "body_timeout_warning": _RateLimitedWarning()})
