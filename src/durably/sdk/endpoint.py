"""The ASGI endpoint that makes an app a Restate service deployment.

    GET  .../discover                     the endpoint manifest (services, handlers, options)
    POST .../invoke/{service}/{handler}   one attempt, as a stream of protocol frames (v5 to v7)
    GET  .../health

Serve `app` with any ASGI server that speaks HTTP/2 cleartext (e.g. `hypercorn --bind 0.0.0.0:9080 app:app`)
and register it with a Restate server (`restate deployments register http://host:9080`). The handlers run on
the same journal state machine as in `durably serve`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Coroutine, Generator
from typing import Any

from google.protobuf.message import Message

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.protocol.framing import FrameDecoder, FramingError, encode_message
from durably.protocol.ids import sha256_random_seed
from durably.sdk.asgi import Receive, Scope, Send, lifespan, respond
from durably.sdk.attempt import Attempt
from durably.sdk.errors import VMError
from durably.sdk.serde import is_msgspec_struct
from durably.sdk.service import App, Handler, ServiceDefinition, manifest_state_fields

log = logging.getLogger("durably.endpoint")


SUPPORTED_PROTOCOLS = {f"application/vnd.restate.invocation.v{v}": v for v in (5, 6, 7)}
MANIFEST_TYPE = "application/vnd.restate.endpointmanifest.v{}+json"
SERVER_HEADER = (b"x-restate-server", b"durably-python/0.1.0")


def _ms(delta: Any) -> int | None:
    return None if delta is None else int(delta.total_seconds() * 1000)


def _retry_fields(policy: Any, version: int) -> dict[str, Any]:
    if policy is None:
        return {}
    if version < 4:
        raise ValueError("invocation retry policies need endpoint manifest v4")
    out = {
        "retryPolicyInitialInterval": _ms(policy.initial_interval),
        "retryPolicyExponentiationFactor": policy.exponentiation_factor,
        "retryPolicyMaxInterval": _ms(policy.max_interval),
        "retryPolicyMaxAttempts": policy.max_attempts,
        "retryPolicyOnMaxAttempts": policy.on_max_attempts.upper() if policy.on_max_attempts else None,
    }
    return out


def _json_schema(hint: Any) -> Any:
    if hint is None:
        return True
    try:
        import pydantic

        if isinstance(hint, type) and issubclass(hint, pydantic.BaseModel):
            return hint.model_json_schema(mode="serialization")
    except ImportError:  # pragma: no cover - pydantic is optional
        pass
    if is_msgspec_struct(hint):
        import msgspec

        return msgspec.json.schema(hint)
    simple = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}
    origin = getattr(hint, "__origin__", hint)
    if origin in simple:
        return {"type": simple[origin]}
    return True


def _handler_manifest(h: Handler, version: int) -> dict[str, Any]:
    out: dict[str, Any] = {"name": h.name}
    if h.kind is not None:
        out["ty"] = {"exclusive": "EXCLUSIVE", "shared": "SHARED", "workflow": "WORKFLOW"}[h.kind]
    if h.takes_input:
        out["input"] = {"required": False, "contentType": h.accept, "jsonSchema": _json_schema(h.input_type)}
    else:
        out["input"] = {}
    if h.returns_output:
        out["output"] = {"contentType": h.content_type, "setContentTypeIfEmpty": False,
                         "jsonSchema": _json_schema(h.output_type)}
    else:
        out["output"] = {"setContentTypeIfEmpty": False}
    if version >= 2:
        if h.documentation:
            out["documentation"] = h.documentation
        if h.metadata:
            out["metadata"] = h.metadata
    if version >= 3:
        out.update({
            "inactivityTimeout": _ms(h.inactivity_timeout), "abortTimeout": _ms(h.abort_timeout),
            "journalRetention": _ms(h.journal_retention), "ingressPrivate": h.ingress_private,
        })
        if h.kind is not None:
            out.update(_state_fields(h.state_preload, h.enable_lazy_state, version))
        if h.kind == "workflow":
            out["workflowCompletionRetention"] = _ms(h.workflow_retention)
        else:
            out["idempotencyRetention"] = _ms(h.idempotency_retention)
    out.update(_retry_fields(h.invocation_retry_policy, version))
    return {k: v for k, v in out.items() if v is not None}


def _state_fields(state_preload: Any, enable_lazy_state: bool | None, version: int) -> dict[str, Any]:
    lazy, whitelist = manifest_state_fields(state_preload, enable_lazy_state)
    if whitelist is not None and version < 5:
        # As restate-sdk 1.3: the list form cannot be said in an older manifest, and silently preloading
        # all or nothing instead would change what the handler sees.
        raise ValueError("eagerStateKeysWhitelist is only supported in discovery protocol version 5")
    return {"enableLazyState": lazy, "eagerStateKeysWhitelist": whitelist}


def _service_manifest(svc: ServiceDefinition, version: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": svc.name,
        "ty": {"service": "SERVICE", "object": "VIRTUAL_OBJECT", "workflow": "WORKFLOW"}[svc.kind],
        "handlers": [_handler_manifest(h, version) for h in svc.handlers.values()],
    }
    if version >= 2:
        if svc.description:
            out["documentation"] = svc.description
        if svc.metadata:
            out["metadata"] = svc.metadata
    if version >= 3:
        out.update({
            "inactivityTimeout": _ms(svc.inactivity_timeout), "abortTimeout": _ms(svc.abort_timeout),
            "journalRetention": _ms(svc.journal_retention), "idempotencyRetention": _ms(svc.idempotency_retention),
            "ingressPrivate": svc.ingress_private,
        })
        if svc.kind != "service":
            out.update(_state_fields(svc.state_preload, svc.enable_lazy_state, version))
    out.update(_retry_fields(svc.invocation_retry_policy, version))
    return {k: v for k, v in out.items() if v is not None}


def manifest(app: App, version: int, protocol_mode: str) -> dict[str, Any]:
    """The endpoint manifest Restate's discovery expects (numbers in ms, nulls omitted)."""
    return {
        "protocolMode": protocol_mode,
        "minProtocolVersion": 5,
        "maxProtocolVersion": 7,
        "services": [_service_manifest(s, version) for s in app.services.values()],
    }


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def _plain(send: Send, status: int, text: str) -> None:
    await respond(send, status, text.encode(), b"text/plain", [SERVER_HEADER])


class _StreamTransport:
    """Writes the attempt's messages as frames on the HTTP response (in the negotiated version's form).

    A frame goes to the ASGI server's `send` the moment the attempt hands it over, in the same event-loop turn,
    not one turn later through a queue and a writer task: a worker SIGKILLed in between would lose a step's
    proposed result, and the step would run again (issue 23). Only when a `send` suspends (the server applies
    back-pressure) does the rest of the writing continue in a task, and frames handed over meanwhile wait
    behind it, in order.
    """

    def __init__(self, send: Send, version: int = 6) -> None:
        self._send = send
        self._pending: list[bytes] = []
        self._writing = False
        self._task: asyncio.Future[None] | None = None
        self._v7 = version >= 7

    def send(self, messages: list[tuple[int, Message]]) -> None:
        failed = self._task is not None and self._task.done() and (
            self._task.cancelled() or self._task.exception() is not None)
        if failed:
            return  # a write already failed (drain raises it): the stream takes nothing more
        self._pending.append(b"".join(self._frame(t, msg) for t, msg in messages))
        if not self._writing:
            self._task = _start_eagerly(self._write_pending())

    def _frame(self, type_id: int, msg: Message) -> bytes:
        if not self._v7:
            return encode_message(msg)
        if type_id == m.PROPOSE_RUN_COMPLETION:
            return encode_message(msg, ack=True)  # v7: the server answers with ProposeRunCompletionAck
        if type_id == m.SUSPENSION:
            return encode_message(_v7_suspension(msg))  # type: ignore[arg-type]
        return encode_message(msg)

    async def _write_pending(self) -> None:
        self._writing = True
        try:
            while self._pending:
                chunk = b"".join(self._pending)
                self._pending.clear()
                await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            self._writing = False

    async def drain(self) -> None:
        """Wait until every frame handed over went to `send`; raises what a `send` raised."""
        while self._task is not None:
            task = self._task
            await task
            if task is self._task:
                self._task = None

    def abandon(self) -> None:
        """The stream is dead or the server gave up on us: write nothing more."""
        self._pending.clear()
        task, self._task = self._task, None
        if task is not None:
            if task.done():
                if not task.cancelled():
                    task.exception()  # retrieved: a failed write into a dead stream is expected
            else:
                task.cancel()


def _start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Future[None] | None:
    """Run `coro` right now, up to its first real suspension (Python 3.11 has no eager tasks); None if it
    finished there, else a task that goes on from that point. An exception becomes the returned future's."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    except BaseException as e:  # handed to whoever drains the transport
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(e)
        return failed
    return asyncio.ensure_future(_Resumed(coro, yielded).run())


class _Resumed:
    """Drives a coroutine from where `_start_eagerly` left it (suspended on `yielded`) inside a task."""

    def __init__(self, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    async def run(self) -> None:
        await self

    def __await__(self) -> Generator[Any, Any, None]:
        pending = self.yielded
        while True:
            try:
                value = yield pending
            except BaseException as e:  # thrown into the coroutine where it waits (cancel)
                try:
                    pending = self.coro.throw(e)
                except StopIteration:
                    return
                continue
            try:
                pending = self.coro.send(value)
            except StopIteration:
                return


def _v7_suspension(flat: pb.SuspensionMessage) -> pb.SuspensionMessage:
    """The v7 form of a suspension: the awaited handles as one future that completes with any of them."""
    out = pb.SuspensionMessage()
    fut = out.awaiting_on
    fut.waiting_completions.extend(flat.waiting_completions)
    fut.waiting_signals.extend(flat.waiting_signals)
    fut.waiting_named_signals.extend(flat.waiting_named_signals)
    fut.combinator_type = pb.FIRST_COMPLETED
    return out


class Endpoint:
    """ASGI app for an App: `/discover`, `/invoke/{service}/{handler}`, `/health`."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.verifier: Any = None
        if app.identity_keys:
            # Imported only here: apps without identity keys never load the crypto libraries.
            from durably.protocol.request_identity import IdentityVerifier

            self.verifier = IdentityVerifier(app.identity_keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/")
        if path.endswith("/health") or path == "/health":
            await respond(send, 200, json.dumps({"status": "ok"}).encode(), headers=[SERVER_HEADER])
            return
        if self.verifier is not None and not await self._identified(scope, send):
            return
        if path.endswith("/discover"):
            await self._discover(scope, send)
            return
        parts = path.split("/")
        if len(parts) >= 3 and parts[-3] == "invoke":
            await self._invoke(scope, receive, send, parts[-2], parts[-1])
            return
        await _plain(send, 404, "not found")

    async def _identified(self, scope: Scope, send: Send) -> bool:
        """Check the request's identity token; answer 401 (before reading the body) when it fails."""
        from durably.protocol.request_identity import IdentityError

        try:
            self.verifier.verify(_headers(scope), scope["path"])
        except IdentityError as e:
            log.warning("refused %s %s: %s", scope.get("method", ""), scope["path"][:200], e)
            body = json.dumps({"code": 401, "message": f"request identity check failed: {e}"}).encode()
            headers = [SERVER_HEADER]
            if scope.get("http_version") in ("1.0", "1.1"):
                # The body stays unread: over HTTP/1.1 the connection cannot carry another request after it.
                headers.append((b"connection", b"close"))
            await respond(send, 401, body, headers=headers)
            return False
        return True

    async def _discover(self, scope: Scope, send: Send) -> None:
        accept = _headers(scope).get("accept", "")
        version = next((v for v in (5, 4, 3, 2) if MANIFEST_TYPE.format(v) in accept), None)
        if version is None:
            if accept and "endpointmanifest" in accept:
                await _plain(send, 415, f"unsupported manifest version in accept: {accept}")
                return
            version = 2
        mode = "REQUEST_RESPONSE" if scope.get("http_version") == "1.1" else "BIDI_STREAM"
        try:
            body = json.dumps(manifest(self.app, version, mode)).encode()
        except ValueError as e:
            await _plain(send, 500, str(e))
            return
        await respond(send, 200, body, MANIFEST_TYPE.format(version).encode(), [SERVER_HEADER])

    async def _invoke(self, scope: Scope, receive: Receive, send: Send, service: str, name: str) -> None:
        handler = self.app.handler(service, name)
        if handler is None:
            await _plain(send, 404, f"handler {service}/{name} not found")
            return
        ctype = _headers(scope).get("content-type", "")
        version = SUPPORTED_PROTOCOLS.get(ctype.split(";")[0].strip())
        if version is None:
            await _plain(send, 415, f"unsupported protocol version {ctype!r}: this endpoint speaks v5 to v7")
            return
        log.debug("invocation of %s/%s over protocol v%d", service, name, version)
        # The response head goes out before the body is read: the server waits for it.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", ctype.encode()), SERVER_HEADER]})
        await _Invocation(handler, version, scope, receive, send).run()


class _Invocation:
    """One attempt over one HTTP exchange."""

    def __init__(self, handler: Handler, version: int, scope: Scope, receive: Receive, send: Send) -> None:
        self.handler = handler
        self.version = version
        self.scope = scope
        self.receive = receive
        self.send = send
        self.decoder = FrameDecoder()
        self.input_closed = False
        # The server went away (not just the end of its request body): the response stream is dead too.
        self.disconnected = False
        self.attempt: Attempt | None = None
        self.handler_task: asyncio.Task[None] | None = None

    def _on_disconnect(self) -> None:
        """The stream broke: stop the attempt at once, as restate-sdk does. Nothing more is written (the server
        retries from its journal), no new step starts, and a step in flight is cancelled."""
        self.disconnected = True
        self.input_closed = True
        if self.attempt is not None:
            self.attempt.abort()
        if self.handler_task is not None and not self.handler_task.done():
            self.handler_task.cancel()

    async def _read(self) -> list[tuple[int, Message]] | None:
        """The next frames from the request body; None at its end."""
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                self._on_disconnect()
                return None
            frames = [(f.type_id, f.message) for f in self.decoder.feed(msg.get("body", b""))]
            if not msg.get("more_body", False):
                self.input_closed = True
                return frames
            if frames:
                return frames

    async def _fail(self, code: int, message: str) -> None:
        if self.disconnected:
            return  # nobody to tell
        err = pb.ErrorMessage(code=code, message=message)
        await self.send({"type": "http.response.body", "body": encode_message(err), "more_body": True})
        await self._drain()
        await self.send({"type": "http.response.body", "body": b""})

    async def _drain(self) -> None:
        # Restate's server closes its side only after reading our terminal message; wait for it (§2.2).
        while not self.input_closed:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                self._on_disconnect()
            elif not msg.get("more_body", False):
                self.input_closed = True

    async def run(self) -> None:
        from durably.sdk.context import InvocationContext
        from durably.sdk.vm import VM

        known: list[tuple[int, Message]] = []
        start: pb.StartMessage | None = None
        try:
            while start is None or len(known) < start.known_entries:
                frames = await self._read()
                for type_id, msg in frames or ():
                    if start is None:
                        if type_id != m.START:
                            raise VMError(571, f"expected Start, got {m.type_name(type_id)}")
                        start = msg  # type: ignore[assignment]
                    else:
                        known.append((type_id, msg))
                if frames is None or (self.input_closed and (start is None or len(known) < start.known_entries)):
                    raise VMError(571, "input was closed while still waiting for the journal to replay")
            if start.known_entries == 0:
                raise VMError(571, "known_entries must be at least 1")
            if self.version == 5 and not start.random_seed:
                start.random_seed = sha256_random_seed(start.id)
            vm = VM(start, known)
        except (VMError, FramingError, ValueError) as e:
            code = e.code if isinstance(e, VMError) else 571
            await self._fail(code, str(e))
            return
        transport = _StreamTransport(self.send, self.version)
        headers = _headers(self.scope)
        attempt = Attempt(self.handler, vm, transport, attempt_headers=headers)
        self.attempt = attempt
        if self.input_closed:
            attempt.close_input()
        bidi = not self.input_closed
        # With the body complete (request/response) the reader only watches for the server going away.
        reader = asyncio.create_task(self._feed(attempt) if bidi else self._watch())
        # The handler runs in a task of its own, so a broken stream can stop it where it is.
        self.handler_task = asyncio.create_task(attempt.run(InvocationContext(attempt, start.debug_id, start.key)))
        cancelled = False
        try:
            await asyncio.shield(self.handler_task)
        except asyncio.CancelledError:
            if not self.handler_task.done():
                cancelled = True  # the ASGI server cancelled us (not a broken stream): stop the handler too
                self.handler_task.cancel()
                raise
        finally:
            if cancelled or self.disconnected:
                # The ASGI server is done waiting (its graceful shutdown is over), or the stream broke: leave
                # now, writing nothing more; the server retries the attempt from its journal.
                transport.abandon()
                reader.cancel()
            else:
                await transport.drain()
                if bidi and not reader.done():
                    await reader  # returns when the server closes the request stream
                else:
                    reader.cancel()
        if not self.disconnected:
            await self.send({"type": "http.response.body", "body": b""})

    async def _watch(self) -> None:
        """Request/response mode: the body is read; wait only for the server to go away."""
        while not self.disconnected:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                self._on_disconnect()

    async def _feed(self, attempt: Attempt) -> None:
        try:
            while True:
                frames = await self._read()
                for type_id, msg in frames or ():
                    if m.is_notification(type_id):
                        attempt.deliver(type_id, msg)
                    elif type_id == m.PROPOSE_RUN_COMPLETION_ACK:
                        # v7: the proposed result is durable; it stands for the run's completion.
                        note = attempt.vm.run_completion_acked(msg.completion_id)  # type: ignore[attr-defined]
                        if note is not None:
                            attempt.deliver(m.RUN_COMPLETION, note)
                    elif type_id == m.COMMAND_ACK:
                        pass
                    else:
                        log.warning("unexpected %s from the server", m.type_name(type_id))
                if frames is None or self.input_closed:
                    attempt.close_input()
                    return
        except (FramingError, ValueError) as e:
            log.error("malformed frames from the server: %s", e)
            attempt.close_input()
            await self._drain()


# The switch of embedded mode: set by `durably run`, or by hand (`DURABLY_EMBEDDED=1 python app.py`).
ENV_EMBEDDED = "DURABLY_EMBEDDED"
_TRUE = ("1", "true", "yes", "on")


def embedded_requested() -> bool:
    """True if the environment asks for the embedded runtime next to the deployment endpoint."""
    return os.environ.get(ENV_EMBEDDED, "").strip().lower() in _TRUE


def asgi_endpoint(app: App) -> Any:
    """What serves `app` when an ASGI server calls it (`App.__call__` asks once, on its first call): its
    deployment Endpoint, or, when the environment asks for embedded mode, the Endpoint with Durably's
    runtime started beside it (`durably.hosting.embedded.EmbeddingEndpoint`)."""
    # Decided here, on the first ASGI call, instead of being installed by `import durably`: the runtime lives
    # above the SDK (hosting, and the server behind it), and a process can ask for it only through its
    # environment, since `durably run` and `DURABLY_EMBEDDED=1 python app.py` start a program that runs none of
    # our code before its ASGI server calls the app. That first call (the lifespan startup, or the first
    # request when lifespan is off) is the earliest moment that needs the runtime, so `import durably` stays
    # free of the server and of side effects, and only a process that asked for embedded mode imports it.
    if embedded_requested():
        from durably.hosting.embedded import EmbeddingEndpoint

        return EmbeddingEndpoint(app)
    return Endpoint(app)
