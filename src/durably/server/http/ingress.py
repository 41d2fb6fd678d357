"""HTTP ingress with Restate's paths, status codes and error bodies.

    POST /{Service}/{handler}[/send]              call (wait for the result) or send (202)
    POST /{Object}/{key}/{handler}[/send]         the same on a keyed service
    GET  /restate/invocation/{id}/attach|output   wait for / peek at an invocation's result
    GET  /restate/invocation/{Service}[/{key}]/{handler}/{idempotencyKey}/attach|output
    GET  /restate/workflow/{Workflow}/{key}/attach|output
    POST /restate/call|send/{Service}[/{key}]/{handler}                 the same, Restate's newer form
    POST /restate/scope/{scope}/call|send/{Service}[/{key}]/{handler}   within a scope (flow control); a limit
         key comes in `?limit-key=l1[/l2]` or the `x-restate-limit-key` header
    POST /restate/awakeables/{id}/resolve|reject
    GET  /restate/health
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from durably.protocol import protocol_pb2 as pb
from durably.protocol.ids import InvocationId
from durably.sdk.asgi import (
    BodyTooLarge,
    ClientDisconnected,
    Receive,
    Send,
    error,
    lifespan,
    read_body,
    respond,
    respond_json,
)
from durably.sdk.input_check import input_problem
from durably.sdk.service import Handler
from durably.server.engine.engine import Engine, EngineStopped
from durably.server.engine.flow_control import LIMIT_KEY_HEADER, FlowControlError, check_scope
from durably.server.engine.invocation import Outcome
from durably.server.http.delay import parse_delay
from durably.server.http.sessions import DURABLY_COOKIES, without_cookies
from durably.server.process.limits import DEFAULT_MAX_BODY, BodyBudget, OverBudget
from durably.server.store.errors import StoreCorrupt

log = logging.getLogger("durably.ingress")

# Hop-by-hop and idempotency headers stay out of the journaled request headers, as in Restate.
_DROPPED_HEADERS = frozenset({"connection", "host", "idempotency-key", "idempotency-expires", "content-length",
                              "transfer-encoding", "keep-alive"})
LIMIT_KEY_HEADER_B = LIMIT_KEY_HEADER.encode()
_OK_HEALTH = json.dumps({"status": "ok"}).encode()


class Ingress:
    """The ingress ASGI app over one engine."""

    def __init__(self, engine: Engine, body_limit: int = DEFAULT_MAX_BODY, budget: BodyBudget | None = None) -> None:
        self.engine = engine
        self.body_limit = body_limit
        # Why the server as a whole is not ready yet although this engine is (a partition whose siblings start).
        self.readiness: Callable[[], str | None] | None = None
        # Request bodies held at once (None: unbounded, as in tests that drive the app in process).
        self.budget = budget

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        lease = scope["durably.body_lease"] = self.budget.lease() if self.budget is not None else None
        try:
            await self._route(scope, receive, send)
        except BodyTooLarge:
            await error(send, 413, f"request body exceeds the limit of {self.body_limit} bytes")
        except OverBudget as e:
            await error(send, 503, str(e), headers=[(b"retry-after", b"1")])
        except ClientDisconnected:
            pass  # nobody to answer; nothing was invoked with a partial body
        except (EngineStopped, StoreCorrupt) as e:
            await error(send, 503, str(e))
        finally:
            if lease is not None:
                lease.release()

    async def _read_body(self, scope: dict[str, Any], receive: Receive) -> bytes:
        lease = scope.get("durably.body_lease")
        return await read_body(scope, receive, self.body_limit, lease.reserve if lease is not None else None)

    async def _route(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") or scope["path"].encode()
        segments = [unquote(s) for s in raw.decode("latin-1").split("?", 1)[0].strip("/").split("/")]
        method = scope["method"]
        if not segments or segments == [""]:
            await error(send, 404, "no service in the path: call /{Service}/{handler}")
            return
        flow_scope: str | None = None
        explicit: bool | None = None  # call or send said in the path (/restate/call|send/...), else None
        if segments[0] == "restate":
            rest = segments[1:]
            if len(rest) >= 2 and rest[0] == "scope":
                flow_scope, rest = rest[1], rest[2:]
                if not rest or rest[0] not in ("call", "send"):
                    await error(send, 404, "bad path: use /restate/scope/{scope}/call|send/{Service}[/{key}]/"
                                "{handler}")
                    return
            if not rest or rest[0] not in ("call", "send") or len(rest) < 3:
                await self._restate_path(segments[1:], method, scope, receive, send)
                return
            explicit = rest[0] == "send"
            segments = rest[1:]
        if method not in ("POST", "GET"):
            await error(send, 405, f"method {method} not allowed: use POST")
            return
        svc = self.engine.services.get(segments[0])
        if svc is None:
            await error(send, 404, f"service '{segments[0]}' not found")
            return
        rest = segments[1:]
        if explicit is None:
            is_send = len(rest) >= 2 and rest[-1] == "send"
            if is_send:
                rest = rest[:-1]
        else:
            is_send = explicit
        keyed = svc.kind != "service"
        if keyed and len(rest) != 2:
            await error(send, 400, f"'{svc.name}' is keyed: call /{svc.name}/{{key}}/{{handler}}")
            return
        if not keyed and len(rest) != 1:
            await error(send, 400 if len(rest) > 1 else 404,
                        f"bad path for service '{svc.name}': call /{svc.name}/{{handler}}")
            return
        key, hname = (rest[0], rest[1]) if keyed else ("", rest[0])
        handler = svc.handlers.get(hname)
        if handler is None:
            await error(send, 404, f"handler '{svc.name}/{hname}' not found")
            return
        if handler.is_private:
            await error(send, 400, f"handler '{svc.name}/{hname}' is private: only other handlers may call it")
            return
        await self._invoke(scope, receive, send, handler, key, is_send, flow_scope)

    async def _invoke(self, scope: dict[str, Any], receive: Receive, send: Send, handler: Handler, key: str,
                      is_send: bool, flow_scope: str | None = None) -> None:
        raw_query = scope.get("query_string", b"")
        query = parse_qs(raw_query.decode("latin-1")) if raw_query else {}
        limit_key = query["limit-key"][0] if "limit-key" in query else None
        if limit_key is None:
            limit_key = next((v.decode("latin-1") for n, v in scope["headers"] if n.lower() == LIMIT_KEY_HEADER_B),
                             None)
        try:
            check_scope(flow_scope, limit_key)
        except FlowControlError as e:
            await error(send, 400, str(e))
            return
        delay_ms = 0
        if "delay" in query:
            if not is_send:
                await error(send, 400, "'delay' is only allowed on /send requests")
                return
            try:
                delay_ms = int(parse_delay(query["delay"][0]).total_seconds() * 1000)
            except ValueError as e:
                await error(send, 400, str(e))
                return
        body = await self._read_body(scope, receive)
        headers: list[tuple[str, str]] = []
        idem: str | None = None
        for name, value in scope["headers"]:
            n = name.decode("latin-1").lower()
            if n == "idempotency-key":
                idem = value.decode("latin-1")
                continue
            if n in _DROPPED_HEADERS:
                continue
            text = value.decode("latin-1")
            if n == "cookie":
                # Browsers send a host's cookies to every port: the admin UI's session is not the handler's.
                text = without_cookies(text, DURABLY_COOKIES)
                if not text:
                    continue
            headers.append((n, text))
        path = scope.get("raw_path") or scope["path"].encode()
        qs = scope.get("query_string", b"")
        headers.append(("x-restate-ingress-path", path.decode("latin-1") + ("?" + qs.decode("latin-1") if qs else "")))
        if idem is not None and not idem:
            await error(send, 400, "the idempotency-key header must not be empty")
            return
        if idem is not None and handler.kind == "workflow":
            await error(send, 400, "idempotency keys are not allowed on a workflow's main handler: it runs once "
                        "per workflow key already")
            return
        problem = _validate_input(handler, body)
        if problem is not None:
            await error(send, 400, problem)
            return
        inv, inv_id, created = self.engine.invoke(handler, body, headers, key, idem, delay_ms, flow_scope, limit_key)
        # The journal has the input now; this request may wait for the outcome as long as the invocation runs,
        # and must not keep a second copy of a large body alive all that time.
        del body
        if not created and handler.kind == "workflow" and not is_send:
            await respond_json(send, 409, {"code": 409, "message": "the workflow method was already invoked",
                                                "source": "ingress"},
                               [(b"x-restate-id", inv_id.encode()), (b"x-restate-error-source", b"ingress")])
            return
        if is_send:
            await self.engine.barrier()
            reply = {"invocationId": inv_id, "status": "Accepted" if created else "PreviouslyAccepted"}
            if created and inv is not None and inv.execution_time is not None:
                reply["executionTime"] = _rfc3339(inv.execution_time)
            await respond_json(send, 202, reply)
            return
        outcome = await self.engine.wait_outcome(inv_id)
        assert outcome is not None
        await respond_outcome(send, inv_id, outcome, handler)

    async def _restate_path(self, segs: list[str], method: str, scope: dict[str, Any], receive: Receive,
                            send: Send) -> None:
        if segs == ["health"]:
            problem = self.engine.health_problem() or (self.readiness() if self.readiness is not None else None)
            if problem is not None:
                await error(send, 503, problem)
                return
            await respond(send, 200, _OK_HEALTH)
            return
        if len(segs) == 3 and segs[0] in ("awakeables", "a") and segs[2] in ("resolve", "reject"):
            if method != "POST":
                await error(send, 405, f"method {method} not allowed: use POST")
                return
            body = await self._read_body(scope, receive)
            await self._complete_awakeable(send, segs[1], segs[2] == "resolve", body)
            return
        if len(segs) >= 3 and segs[0] in ("invocation", "workflow") and segs[-1] in ("attach", "output"):
            if method != "GET":
                await error(send, 405, f"method {method} not allowed: use GET")
                return
            target = segs[1:-1]
            if segs[0] == "workflow":
                resolved = self._workflow_target(target)
            elif len(target) == 1:
                try:
                    resolved = str(InvocationId.parse(target[0]))
                except ValueError as e:
                    resolved = (400, f"malformed invocation id: {e}")
            else:
                resolved = self._idempotent_target(target)
            if isinstance(resolved, tuple):
                await error(send, *resolved)
                return
            await self._attach_or_output(send, resolved, segs[-1] == "attach")
            return
        await error(send, 404, "unknown /restate path")

    async def _complete_awakeable(self, send: Send, awakeable_id: str, resolve: bool, body: bytes) -> None:
        self.engine.check_writable()
        failure = None
        if not resolve:
            failure = pb.Failure(code=500, message=body.decode("utf-8", "replace"))
        try:
            found = self.engine.complete_awakeable(awakeable_id, body if resolve else None, failure)
        except ValueError as e:  # malformed, or a built-in signal's id (the cancel signal's, say)
            await error(send, 400, str(e))
            return
        if not found:
            await error(send, 404, f"awakeable {awakeable_id} not found: its invocation does not exist or has "
                        "completed")
        else:
            await self.engine.barrier()
            await respond(send, 202)

    def _workflow_target(self, target: list[str]) -> str | tuple[int, str]:
        if len(target) != 2:
            return 400, "bad path: use /restate/workflow/{Workflow}/{key}/attach|output"
        svc = self.engine.services.get(target[0])
        if svc is None or svc.kind != "workflow":
            return 404, f"workflow '{target[0]}' not found"
        return str(InvocationId.for_workflow(svc.name, target[1]))

    def _idempotent_target(self, target: list[str]) -> str | tuple[int, str]:
        svc = self.engine.services.get(target[0])
        if svc is None:
            return 404, f"service '{target[0]}' not found"
        keyed = svc.kind != "service"
        if len(target) != (4 if keyed else 3):
            shape = "{Service}/{key}/{handler}/{idempotencyKey}" if keyed else "{Service}/{handler}/{idempotencyKey}"
            return 400, f"bad path: use /restate/invocation/{shape}/attach|output"
        key = target[1] if keyed else None
        hname, idem = target[-2], target[-1]
        if hname not in svc.handlers:
            return 404, f"handler '{svc.name}/{hname}' not found"
        return str(InvocationId.for_idempotent_request(svc.name, hname, idem, key))

    async def _attach_or_output(self, send: Send, inv_id: str, attach: bool) -> None:
        if attach:
            outcome = await self.engine.wait_outcome(inv_id)
            if outcome is None:
                await error(send, 404, f"invocation {inv_id} not found")
                return
        else:
            exists, outcome = self.engine.peek_outcome(inv_id)
            if not exists:
                await error(send, 404, f"invocation {inv_id} not found")
                return
            if outcome is None:
                await error(send, 470, f"invocation {inv_id} has not completed yet")
                return
        await respond_outcome(send, inv_id, outcome, None)


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _validate_input(handler: Handler, body: bytes) -> str | None:
    if not handler.takes_input:
        if body:
            return f"handler '{handler.service.name}/{handler.name}' takes no input, but the request has a body"
        return None
    # Checked against the handler's type hint here, before anything is journaled (sdk/input_check.py).
    return input_problem(f"{handler.service.name}/{handler.name}", handler.input_type, handler.input_serde, body)


async def respond_outcome(send: Send, inv_id: str, outcome: Outcome, handler: Handler | None) -> None:
    """Answer with an invocation's result: 200 and the output, or the failure in Restate's shape."""
    id_header = (b"x-restate-id", inv_id.encode())
    if outcome.failure_code is None:
        body = outcome.value or b""
        ctype = (handler.content_type if handler is not None else "application/json").encode()
        await respond(send, 200, body, ctype if body else None, [id_header])
        return
    code = outcome.failure_code
    status = code if 400 <= code <= 599 else 500
    payload: dict[str, Any] = {"code": code, "message": outcome.failure_message or ""}
    if outcome.failure_metadata:
        payload["metadata"] = outcome.failure_metadata
    payload["source"] = "invocation"
    await respond_json(send, status, payload, [id_header, (b"x-restate-error-source", b"invocation")])
