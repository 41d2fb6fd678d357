"""The accept loop of `durably endpoint`: hypercorn's HTTP/1.1 and HTTP/2 protocols, with its HTTP/2 windows tuned.

Hypercorn 0.18 has no setting for HTTP/2 flow-control windows, and its server builds `H2Protocol` by name
deep inside `worker_serve`. Rather than patch hypercorn's classes, this module runs its own small server:
an asyncio accept loop over the sockets hypercorn's `Config` creates, one `Connection` per client that picks
`H11Protocol` or `TunedH2Protocol` (a subclass of `H2Protocol`, passed explicitly) and moves bytes and events
between the socket and the protocol, hypercorn's `Lifespan`, and a graceful drain. Everything else (HTTP
parsing, ASGI, streams, GOAWAY on shutdown) is hypercorn's, through its public classes.

What a connection does:

- TLS: the protocol follows ALPN (h2 or http/1.1). Cleartext: it starts as HTTP/1.1 and switches to HTTP/2
  when the client sends the HTTP/2 preface (prior knowledge, as Restate connects) or asks for `Upgrade: h2c`.
- It closes after `keep_alive_timeout` seconds idle, or at once when idle during a drain.
- While draining, hypercorn's protocols refuse new requests (HTTP/2: GOAWAY once idle) and finish running ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import h2.exceptions
import h2.settings
from hypercorn.asyncio.lifespan import Lifespan
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config, Sockets
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.events import Body
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H2CProtocolRequiredError, H2ProtocolAssumedError, H11Protocol
from hypercorn.typing import AppWrapper
from hypercorn.utils import parse_socket_addr

log = logging.getLogger("durably.endpoint")

# HTTP/2's initial window (RFC 9113): the connection window starts here and grows only by WINDOW_UPDATE.
H2_DEFAULT_WINDOW = 65_535
READ_SIZE = 65_536


class EndpointConfig(Config):
    """Hypercorn's Config plus the two HTTP/2 windows it has no setting for (bytes)."""

    h2_stream_window: int = H2_DEFAULT_WINDOW
    h2_connection_window: int = H2_DEFAULT_WINDOW


class TunedH2Protocol(H2Protocol):
    """Hypercorn's HTTP/2 protocol advertising `config.h2_stream_window` and `config.h2_connection_window`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        window = getattr(self.config, "h2_stream_window", H2_DEFAULT_WINDOW)
        # The first SETTINGS frame carries the settings' current values; a value assigned on the Settings
        # object would only be pending (sent in no frame), so the whole set is built with the window in it.
        current = dict(self.connection.local_settings)
        current[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = window
        self.connection.local_settings = h2.settings.Settings(client=False, initial_values=current)

    async def stream_send(self, event: StreamEvent) -> None:
        """A response body chunk goes out as DATA at once when it can: hypercorn would buffer it and leave the
        writing to its send task, a turn of the event loop later (issue 23: a worker killed in between loses
        a step's proposed result). Otherwise (data of the stream still buffered, a window too small, a chunk
        over one frame) hypercorn's buffered path keeps the order and flow control."""
        if isinstance(event, Body) and self._send_now(event.stream_id, event.data):
            await self._flush()
            return
        await super().stream_send(event)

    def _send_now(self, stream_id: int, data: bytes) -> bool:
        buffer = self.stream_buffers.get(stream_id)
        if buffer is None or buffer.buffer or not data:
            return False
        try:
            room = min(self.connection.local_flow_control_window(stream_id), self.connection.max_outbound_frame_size)
            if len(data) > room:
                return False
            self.connection.send_data(stream_id, data)
        except (h2.exceptions.ProtocolError, KeyError):
            return False  # the stream is closing: hypercorn's path deals with it
        return True

    async def initiate(self, headers: list[tuple[bytes, bytes]] | None = None,
                       settings: bytes | None = None) -> None:
        """Send the preface (and take over an h2c upgrade), then open the connection window."""
        await super().initiate(headers, settings)
        window = getattr(self.config, "h2_connection_window", H2_DEFAULT_WINDOW)
        if window > H2_DEFAULT_WINDOW:
            self.connection.increment_flow_control_window(window - H2_DEFAULT_WINDOW)
            await self._flush()


class Connection:
    """One client connection: bytes from the socket to the protocol, events from the protocol to the socket."""

    def __init__(self, app: AppWrapper, config: Config, context: WorkerContext, state: dict[str, Any],
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.app = app
        self.config = config
        self.context = context
        self.state = state
        self.reader = reader
        self.writer = writer
        self._send_lock = asyncio.Lock()
        self._idle: asyncio.Task[None] | None = None
        self._closed = False
        self.protocol: H11Protocol | H2Protocol

    async def run(self) -> None:
        """Serve the connection until either side closes it."""
        sock = self.writer.get_extra_info("socket")
        try:
            client = parse_socket_addr(sock.family, sock.getpeername())
            server = parse_socket_addr(sock.family, sock.getsockname())
        except OSError:
            self.writer.close()
            return
        tls = self.writer.get_extra_info("ssl_object")
        try:
            async with TaskGroup(asyncio.get_running_loop()) as tasks:
                args = (self.app, self.config, self.context, tasks, self.state, tls is not None,
                        client, server, self._on_event)
                self._args = args
                if tls is not None and tls.selected_alpn_protocol() == "h2":
                    self.protocol = TunedH2Protocol(*args)
                else:
                    self.protocol = H11Protocol(*args)
                await self.protocol.initiate()
                self._restart_idle()
                await self._read()
        except OSError:
            pass
        finally:
            await self._close()

    async def _read(self) -> None:
        while not self.reader.at_eof():
            try:
                data = await asyncio.wait_for(self.reader.read(READ_SIZE), self.config.read_timeout)
            except (ConnectionError, OSError, TimeoutError, ssl.SSLError):
                break
            await self._to_protocol(RawData(data))
        await self._to_protocol(Closed())

    async def _to_protocol(self, event: Event) -> None:
        try:
            await self.protocol.handle(event)
        except H2ProtocolAssumedError as e:
            # The HTTP/2 preface on a cleartext connection: h2c with prior knowledge.
            await self._switch(e.data)
        except H2CProtocolRequiredError as e:
            # An HTTP/1.1 request with `Upgrade: h2c`: its answer comes on stream 1 of the new protocol.
            await self._switch(e.data, e.headers, e.settings)

    async def _switch(self, rest: bytes, headers: list[tuple[bytes, bytes]] | None = None,
                      settings: bytes | None = None) -> None:
        self.protocol = TunedH2Protocol(*self._args)
        await self.protocol.initiate(headers, settings)
        if rest:
            await self.protocol.handle(RawData(data=rest))

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, RawData):
            async with self._send_lock:
                try:
                    self.writer.write(event.data)
                    await self.writer.drain()
                except (ConnectionError, RuntimeError):
                    await self.protocol.handle(Closed())
        elif isinstance(event, Closed):
            await self._close()
        elif isinstance(event, Updated):
            if event.idle:
                self._restart_idle()
            else:
                self._stop_idle()

    def _restart_idle(self) -> None:
        self._stop_idle()
        if not self._closed:
            self._idle = asyncio.get_running_loop().create_task(self._close_when_idle())

    def _stop_idle(self) -> None:
        if self._idle is not None and self._idle is not asyncio.current_task():
            self._idle.cancel()
        self._idle = None

    async def _close_when_idle(self) -> None:
        # Idle: closed after the keep-alive timeout, or as soon as the server drains.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.context.terminated.wait(), self.config.keep_alive_timeout)
        await asyncio.shield(self._close_from_server())

    async def _close_from_server(self) -> None:
        await self.protocol.handle(Closed())
        self.writer.close()

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_idle()
        with contextlib.suppress(NotImplementedError, OSError, RuntimeError):
            self.writer.write_eof()  # not on TLS
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.CancelledError):
            self.writer.close()
            await self.writer.wait_closed()


async def serve(app: AppWrapper, config: EndpointConfig, sockets: Sockets,
                shutdown_trigger: Callable[[], Awaitable[Any]]) -> None:
    """Serve `app` on `sockets` until `shutdown_trigger` returns, then drain (up to `config.graceful_timeout`)."""
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {}
    lifespan = Lifespan(app, config, loop, state)
    lifespan_task = loop.create_task(lifespan.handle_lifespan())
    await lifespan.wait_for_startup()
    if lifespan_task.done() and lifespan_task.exception() is not None:
        raise lifespan_task.exception()  # type: ignore[misc]
    context = WorkerContext(None)  # no request-count limit per worker
    connections: set[asyncio.Task[Any]] = set()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        task.add_done_callback(connections.discard)
        await Connection(app, config, context, state, reader, writer).run()

    tls = config.create_ssl_context() if config.ssl_enabled else None
    servers = [await asyncio.start_server(accepted, sock=sock, backlog=config.backlog, ssl=tls,
                                          ssl_handshake_timeout=config.ssl_handshake_timeout)
               for sock in sockets.secure_sockets]
    servers += [await asyncio.start_server(accepted, sock=sock, backlog=config.backlog)
                for sock in sockets.insecure_sockets]
    try:
        stop = loop.create_task(shutdown_trigger())
        terminate = loop.create_task(context.terminate.wait())
        done, pending = await asyncio.wait({stop, terminate}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()
    finally:
        # Drain: new connections are refused, idle ones close, running requests get the graceful timeout.
        await context.terminated.set()
        for srv in servers:
            srv.close()  # (not wait_closed: since Python 3.12 it waits for every connection, the drain's job)
        if connections:
            _, late = await asyncio.wait(set(connections), timeout=config.graceful_timeout)
            for task in late:
                task.cancel()
            if late:
                log.warning("durably endpoint: %d connection(s) still busy after the %.0f s drain were cut",
                            len(late), config.graceful_timeout)
                await asyncio.wait(late, timeout=5)
        await lifespan.wait_for_shutdown()
        lifespan_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lifespan_task
