"""The remote invoker: one attempt of a remote deployment's handler over HTTP/2 or HTTP/1.1.

The attempt streams `Start` and the stored journal, then relays what the deployment writes to the engine
and the engine's notifications back, exactly like the in-process path but as frames. Request/response
deployments (HTTP/1.1, Lambda-style) get the whole journal with the request body closed: every await on
something new suspends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import httpx
from google.protobuf.message import Message

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.protocol.framing import FrameDecoder, FramingError, encode_frame, encode_message, frame_header
from durably.sdk.service import Handler
from durably.server.remote.deployments import Deployment
from durably.server.remote.h2client import INITIAL_WINDOW, H2Connection, H2Error, H2Stream

if TYPE_CHECKING:
    from durably.server.engine.interfaces import AttemptSink
    from durably.server.engine.invocation import Invocation

log = logging.getLogger("durably.remote")

_TERMINAL = (m.END, m.SUSPENSION, m.ERROR)


class RemoteAttemptError(Exception):
    """The deployment misbehaved or could not be reached; the attempt fails and is retried."""


class ConnectionPool:
    """HTTP/2 connections to deployments (many streams each), and one HTTP/1.1 client."""

    def __init__(self, max_streams_per_connection: int = 500, signer: Any = None,
                 spread_connections: int = 8) -> None:
        # A RequestSigner (durably serve --request-identity-key): every request to a deployment is signed.
        self.signer = signer
        # Servers close a connection after so many requests (hypercorn: 1,000, with a GOAWAY that can stall
        # the last ones); move to a fresh connection well before that and let the old one drain.
        self.max_streams_per_connection = max_streams_per_connection
        # The deployment's connection flow-control window (HTTP/2's default 64 KiB where the server keeps it,
        # as hypercorn does) is shared by every stream on the connection: 32 invocations each sending a
        # 100 KB input on one connection would each wait their turn for WINDOW_UPDATEs. A request goes on
        # the first connection with window enough for its body; when none has, up to `spread_connections`
        # connections are opened while all are busy. Small requests (and their frames, written together), and
        # one request after another, stay on one: an idle connection needs no more, and each new one was
        # measured to cost a sequence of 100 KB requests a third of its rate.
        self.spread_connections = spread_connections
        self._h2: dict[str, list[H2Connection]] = {}
        self._lock = asyncio.Lock()
        self.http11 = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10))

    def _pick(self, conns: list[H2Connection], size: int) -> H2Connection | None:
        """The connection for a request of `size` bytes, or None when a new one should be opened."""
        usable = [c for c in conns if len(c.streams) < 90 and c.opened < self.max_streams_per_connection]
        if not usable:
            return None
        # A body larger than any window the server grants fits once a connection's window is whole again.
        need = min(size, INITIAL_WINDOW)
        for c in usable:
            if c.send_window >= need:
                return c
        # A server acks in steps (hypercorn: every 32 KiB), so an idle connection's window may stay short of
        # a whole one; it is still free. Only when every connection is busy does a new one help.
        idle = [c for c in usable if not c.streams]
        if idle:
            return max(idle, key=lambda c: c.send_window)
        if len(usable) < self.spread_connections:
            return None
        return max(usable, key=lambda c: c.send_window)

    async def stream(self, deployment: Deployment, path: str, headers: list[tuple[str, str]],
                     size: int = 0) -> H2Stream:
        """Open a request stream on a connection to the deployment, for a body of about `size` bytes."""
        url = urlsplit(deployment.uri)
        key = f"{url.hostname}:{url.port or 80}"
        async with self._lock:
            conns = []
            for c in self._h2.get(key, []):
                if c.opened >= self.max_streams_per_connection and not c.streams:
                    c.close()  # drained
                elif not c.closed:
                    conns.append(c)
            conn = self._pick(conns, size)
            if conn is None:
                try:
                    conn = await asyncio.wait_for(H2Connection.connect(url.hostname or "127.0.0.1", url.port or 80), 10)
                except (OSError, TimeoutError) as e:
                    raise RemoteAttemptError(f"cannot connect to {deployment.uri}: {e!r}") from None
                conns.append(conn)
            self._h2[key] = conns
        return await conn.request("POST", path, headers)

    def connections(self) -> list[H2Connection]:
        """The HTTP/2 connections open now, to every deployment."""
        return [c for conns in self._h2.values() for c in conns if not c.closed]

    async def close(self) -> None:
        """Close every connection."""
        for conns in self._h2.values():
            for c in conns:
                c.close()
        self._h2.clear()
        await self.http11.aclose()


class AttemptTracing(Protocol):
    """What a remote attempt needs of tracing: the W3C trace headers of the invocation's attempt span."""

    def attempt_headers(self, invocation_id: str) -> dict[str, str]:
        """`traceparent` and `tracestate`, or {} when the attempt has no span."""


class RemoteAttempt:
    """An attempt on a remote deployment; the engine talks to it as to an in-process attempt
    (`durably.server.engine.interfaces.RunningAttempt`)."""

    # What only an in-process attempt has (see RunningAttempt): a remote one cannot tell a misuse of the
    # SDK, runs no closures in this process, and writes frames, not messages through a transport.
    code_bug: str | None = None
    executor: Any = None
    transport: Any = None

    def __init__(self, sink: AttemptSink, inv: Invocation, handler: Handler, deployment: Deployment,
                 start: pb.StartMessage, journal: list[tuple[int, Message]], pool: ConnectionPool,
                 close_input: bool, tracing: AttemptTracing | None = None) -> None:
        # Where the deployment's messages go (the engine's commands part): this and `tracing` are all the
        # attempt knows of the engine.
        self.sink = sink
        self.tracing = tracing
        self.inv = inv
        self.handler = handler
        self.deployment = deployment
        self.start = start
        self.journal = journal
        self.pool = pool
        self._stream: H2Stream | None = None
        self._input_closed = close_input or not deployment.bidi
        self._ended = False
        # Every notification delivered in this attempt, to send again if a stream is refused and retried.
        self._delivered: list[bytes] = []
        self._sent = 0  # how many of them the current stream has
        # One writer at a time on the stream: a frame must never land inside another one.
        self._send_lock = asyncio.Lock()
        # v7: run completions the deployment proposed asking for an ack; it gets the ack, not the notification.
        self._ack_requested: set[int] = set()
        self._send_scheduled = False  # a `_send_pending` is queued for this turn

    # ---- engine side ----

    def deliver(self, type_id: int, msg: Message) -> None:
        """A committed notification for the deployment."""
        if self._input_closed or self._ended:
            return  # request/response: it is in the journal for the next attempt
        cid = getattr(msg, "completion_id", None)
        if type_id == m.RUN_COMPLETION and cid in self._ack_requested:
            self._ack_requested.discard(cid)
            frame = encode_message(pb.ProposeRunCompletionAckMessage(completion_id=cid))
        else:
            frame = encode_frame(type_id, msg.SerializeToString())
        self._delivered.append(frame)
        if self._stream is not None and not self._send_scheduled:
            # Once per turn, not once per notification: the notifications of one commit (a hundred timers that
            # fired together) are sent together, after the last of them was delivered.
            self._send_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_pending)

    def close_input(self) -> None:
        """Close the request stream: the deployment suspends when it next waits on something new."""
        if not self._input_closed:
            self._input_closed = True
            if self._stream is not None:
                self._stream.end()

    def abort(self) -> None:
        """Give up on the attempt (abort timeout, kill, shutdown)."""
        self._ended = True
        if self._stream is not None:
            self._stream.reset()

    def _send_pending(self) -> None:
        """Send what was delivered in this turn: at once when nothing else writes and the windows take it,
        else through `_send_delivered` (which waits its turn and for flow-control credit)."""
        self._send_scheduled = False
        stream = self._stream
        if stream is None or stream.local_closed or self._sent >= len(self._delivered):
            return
        if not self._send_lock.locked():
            pending = self._delivered[self._sent:]
            try:
                sent = stream.send_now(pending[0] if len(pending) == 1 else b"".join(pending))
            except H2Error:
                return  # the reader sees the failure too
            if sent:
                self._sent = len(self._delivered)
                return
        asyncio.get_running_loop().create_task(self._send_delivered())

    async def _send_delivered(self) -> None:
        async with self._send_lock:
            stream = self._stream
            if stream is None or stream.local_closed or self._sent >= len(self._delivered):
                return
            frames, self._sent = self._delivered[self._sent:], len(self._delivered)
            try:
                await stream.send(b"".join(frames))
            except H2Error:
                pass  # the reader sees the failure too

    # ---- the exchange ----

    def _request_body(self, *tail: bytes) -> bytes:
        """Start, the journal and `tail` (frames already encoded) as one buffer, each payload copied into it once."""
        parts = [encode_message(self.start)]
        for t, msg in self.journal:
            payload = msg.SerializeToString()
            parts.append(frame_header(t, len(payload)))
            parts.append(payload)
        parts.extend(tail)
        return b"".join(parts)

    def _headers(self) -> list[tuple[str, str]]:
        ctype = f"application/vnd.restate.invocation.v{self.deployment.protocol_version}"
        hdrs = [("content-type", ctype), ("accept", ctype), ("x-restate-invocation-id", self.start.debug_id)]
        if self.start.key:
            hdrs.append(("x-restate-service-key", self.start.key))
        if self.pool.signer is not None:
            hdrs.extend(self.pool.signer.headers(self._path()))
        hdrs.extend((k.lower(), v) for k, v in self.deployment.additional_headers.items())
        if self.tracing is not None:  # the deployment's own spans join the attempt's trace
            hdrs.extend(self.tracing.attempt_headers(self.inv.id).items())
        return hdrs

    def _path(self) -> str:
        base = urlsplit(self.deployment.uri).path.rstrip("/")
        return f"{base}/invoke/{self.handler.service.name}/{self.handler.name}"

    def _check_head(self, status: int, headers: dict[str, str]) -> None:
        if status != 200:
            hint = ""
            if status in (401, 403):
                hint = (": it wants requests signed with a key it knows (durably serve --request-identity-key)"
                        if self.pool.signer is None else ": is this server's public key in its identity_keys?")
            raise RemoteAttemptError(f"{self.deployment.uri} answered {status} to the invocation{hint}")
        expected = f"application/vnd.restate.invocation.v{self.deployment.protocol_version}"
        got = headers.get("content-type", "")
        if got.split(";")[0].strip() != expected:
            raise RemoteAttemptError(f"{self.deployment.uri} answered with content type {got!r}, expected {expected}")

    def _relay(self, decoder: FrameDecoder, chunk: bytes) -> bool:
        """Hand complete frames to the engine; True once the deployment wrote its terminal message."""
        try:
            frames = list(decoder.feed(chunk))
        except (FramingError, ValueError) as e:
            raise RemoteAttemptError(f"garbage from {self.deployment.uri}: {e}") from None
        if self._ended:
            return True
        # Every message of the chunk goes to the engine in one call (a hundred sleeps the handler wrote together
        # are one hand-over); the engine takes them in order and ignores what follows an end of the attempt.
        msgs: list[tuple[int, Message]] = []
        done = False
        for frame in frames:
            type_id = frame.type_id
            if type_id == m.AWAITING_ON:
                continue  # v7: what the handler waits for, a hint; the runtime learns it from the suspension
            if type_id == m.START or (not m.is_command(type_id) and type_id not in (
                    m.PROPOSE_RUN_COMPLETION, *_TERMINAL)):
                if msgs:  # what came before the garbage is taken, as it would have been one by one
                    self.sink.on_attempt_messages(self.inv, self, msgs)
                raise RemoteAttemptError(f"{self.deployment.uri} sent an unexpected {m.type_name(type_id)}")
            if type_id == m.PROPOSE_RUN_COMPLETION and frame.ack:
                self._ack_requested.add(frame.message.result_completion_id)  # type: ignore[attr-defined]
            msgs.append((type_id, frame.message))
            if type_id in _TERMINAL:
                done = True
        if msgs:
            self.sink.on_attempt_messages(self.inv, self, msgs)
        return done or self._ended

    async def run(self, ctx: Any = None) -> None:
        """Run the exchange until the deployment's terminal message (or a failure, raised)."""
        if self.deployment.bidi:
            await self._run_h2()
        else:
            await self._run_http11()

    async def _run_h2(self) -> None:
        for _ in range(5):
            try:
                size = self.start.ByteSize() + sum(msg.ByteSize() + 8 for _, msg in self.journal)
                stream = await self.pool.stream(self.deployment, self._path(), self._headers(), size)
            except H2Error as e:
                raise RemoteAttemptError(f"cannot reach {self.deployment.uri}: {e}") from None
            try:
                async with self._send_lock:
                    self._stream = stream
                await self._exchange(stream)
                return
            except H2Error as e:
                if stream.refused:
                    continue  # never processed by the deployment: send it again on a fresh connection
                if not self._ended:
                    raise RemoteAttemptError(f"the stream to {self.deployment.uri} failed: {e}") from None
                return
            finally:
                if not stream.local_closed:
                    stream.reset()
        raise RemoteAttemptError(f"{self.deployment.uri} refused the stream again and again")

    async def _exchange(self, stream: H2Stream) -> None:
        async with self._send_lock:
            # Notifications delivered so far go with the journal; later ones follow through the cursor.
            self._sent = len(self._delivered)
            await stream.send(self._request_body(*self._delivered))
            if self._input_closed:
                stream.end()
        status, headers = await stream.response()
        self._check_head(status, headers)
        decoder = FrameDecoder()
        while (chunk := await stream.read()) is not None:
            if self._relay(decoder, chunk):
                # The deployment is done; it waits for us to close our side before it ends (§2.2).
                self._ended = True
                stream.end()
        if not self._ended:
            raise RemoteAttemptError(f"{self.deployment.uri} ended the stream without End, Suspension or Error")

    async def _run_http11(self) -> None:
        url = self.deployment.uri.rstrip("/") + self._path()[len(urlsplit(self.deployment.uri).path.rstrip("/")):]
        try:
            async with self.pool.http11.stream("POST", url, content=self._request_body(),
                                               headers=dict(self._headers())) as resp:
                self._check_head(resp.status_code, {k.lower(): v for k, v in resp.headers.items()})
                decoder = FrameDecoder()
                async for chunk in resp.aiter_bytes():
                    if self._relay(decoder, chunk):
                        self._ended = True
        except httpx.HTTPError as e:
            raise RemoteAttemptError(f"the request to {self.deployment.uri} failed: {e!r}") from None
        if not self._ended:
            raise RemoteAttemptError(f"{self.deployment.uri} ended the response without End, Suspension or Error")
