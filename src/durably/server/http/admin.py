"""The admin API (default port 9070), with Restate's paths and status codes.

    GET    /health
    GET    /threads                                     sync-step threads (stuck ones) and event-loop stalls
    GET    /metrics                                     Prometheus metrics
    GET    /ui/...                                      the web UI (durably.server.http.ui)
    GET    /services, /services/{name}
    GET    /services/{name}/state/{key}                 a key's state with its version
    POST   /services/{name}/state {"object_key", "new_state", "version"?}   replace a key's state (Restate's)
    GET    /invocations[?status=&service=&handler=&key=&since=&until=&limit=&before=]   newest first, paged
    GET    /invocations/{id}[?journal_offset=&journal_limit=]   the invocation with a page of its journal
    PATCH  /invocations/{id}/cancel|kill|pause|resume|purge
    GET|PUT|DELETE /rules                               concurrency rules (flow control) and their usage
    PUT /limits/rules, POST /limits/rules/bulk-delete   the same, in Restate's rule-book API
    POST   /deployments {"uri", "use_http_11"?, "force"?, "additional_headers"?}   discover and register
    GET    /deployments, /deployments/{id};  DELETE /deployments/{id}
    DELETE /invocations/{id}?mode=cancel|kill|purge     (deprecated form)

Paths also answer under /v2, /v3 and /v4 prefixes, as Restate's do.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from durably.protocol import messages as m
from durably.protocol.ids import InvocationId
from durably.sdk.asgi import (
    BodyTooLarge,
    ClientDisconnected,
    Receive,
    Send,
    error,
    is_cross_site,
    lifespan,
    read_body,
    respond,
    respond_json,
)
from durably.sdk.service import ServiceDefinition
from durably.sdk.vm import SIGNAL_HANDLE_BASE, notification_value
from durably.server.engine.calltree import ActionResult
from durably.server.engine.engine import Engine, EngineStopped
from durably.server.engine.flow_control import FlowControlError, parse_rule
from durably.server.engine.object_state import (
    StateConflict,
    has_state,
    parse_new_state,
    read_state,
    replace_state,
    state_json,
)
from durably.server.http.journal_page import journal_page, journal_paging
from durably.server.observe.metrics import CONTENT_TYPE as METRICS_TYPE
from durably.server.observe.metrics import render as render_metrics
from durably.server.observe.stalls_json import threads_json
from durably.server.process.limits import ADMIN_BODY_LIMIT
from durably.server.remote.deployments import DiscoveryError
from durably.server.store.base import INVOCATION_COLUMNS
from durably.server.store.invocation_query import InvocationFilter, cursor_of, page, parse_cursor

_TY = {"service": "SERVICE", "object": "VIRTUAL_OBJECT", "workflow": "WORKFLOW"}
_HANDLER_TY = {"exclusive": "EXCLUSIVE", "shared": "SHARED", "workflow": "WORKFLOW"}
_ACTIONS = ("cancel", "kill", "pause", "resume", "purge")
# What an operator action did, as the status code Restate's admin API answers with.
ACTION_STATUS = {ActionResult.DONE: 200, ActionResult.ACCEPTED: 202, ActionResult.ALREADY: 200,
                 ActionResult.NOT_FOUND: 404, ActionResult.CONFLICT: 409}
_TIME_COLUMNS = ("created_at", "modified_at", "execution_time", "last_entry_at", "next_retry_at", "completed_at",
                 "retention_until")


def _ms(delta: Any) -> int | None:
    return None if delta is None else int(delta.total_seconds() * 1000)


def service_json(svc: ServiceDefinition) -> dict[str, Any]:
    """A service as the admin API shows it (Restate's ServiceMetadata fields where they apply)."""
    handlers = []
    for h in svc.handlers.values():
        entry: dict[str, Any] = {"name": h.name, "public": not h.is_private,
                                 "input_description": "none" if not h.takes_input else h.accept,
                                 "output_description": h.content_type if h.returns_output else "none"}
        if h.kind is not None:
            entry["ty"] = _HANDLER_TY[h.kind]
        if h.documentation:
            entry["documentation"] = h.documentation
        handlers.append(entry)
    out: dict[str, Any] = {
        "name": svc.name, "ty": _TY[svc.kind], "handlers": handlers, "public": not svc.ingress_private,
        "deployment_id": getattr(getattr(svc, "deployment", None), "id", "embedded"), "revision": 1,
        "inactivity_timeout": _ms(svc.inactivity_timeout), "abort_timeout": _ms(svc.abort_timeout),
        "journal_retention": _ms(svc.journal_retention), "idempotency_retention": _ms(svc.idempotency_retention),
    }
    if svc.description:
        out["documentation"] = svc.description
    if svc.metadata:
        out["metadata"] = svc.metadata
    return {k: v for k, v in out.items() if v is not None}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(data: bytes) -> Any:
    """A payload for people: JSON when it parses, else text."""
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def invocation_json(row: tuple[Any, ...]) -> dict[str, Any]:
    """An invocation row as JSON, times as RFC 3339."""
    out = dict(zip(INVOCATION_COLUMNS, row, strict=True))
    out["target"] = f"{out['service']}/{out['key'] + '/' if out['key'] else ''}{out['handler']}"
    if out["output"] is not None:
        out["output"] = _text(out["output"])
    for name in ("last_error", "waiting", "failure_metadata"):
        if out[name]:
            out[name] = json.loads(out[name])
    for name in _TIME_COLUMNS:
        if out[name] is not None:
            out[name] = _iso(out[name])
    out.pop("seq", None)
    out.pop("inbox_seq", None)
    return {k: v for k, v in out.items() if v is not None and v != ""}


def journal_entry_json(idx: int, type_id: int, raw: bytes, appended_at: int) -> dict[str, Any]:
    """One journal entry: its type, name, result or failure, and when it was appended."""
    msg: Any = m.decode(type_id, raw)
    entry: dict[str, Any] = {"index": idx, "type": m.type_name(type_id), "appended_at": _iso(appended_at)}
    name = msg.entry_name if type_id == m.SEND_SIGNAL else getattr(msg, "name", "")
    if name:
        entry["name"] = name
    if m.is_notification(type_id):
        which = msg.WhichOneof("id")
        if which == "signal_id":
            entry["signal"] = msg.signal_id
        elif which == "signal_name":
            entry["signal"] = msg.signal_name
        elif which == "completion_id":
            entry["completion_id"] = msg.completion_id
        value = notification_value(msg)
        if isinstance(value, bytes):
            entry["value"] = _text(value)
        elif isinstance(value, str):
            entry["invocation_id"] = value
        elif isinstance(value, list):
            entry["keys"] = [k.decode("utf-8", "replace") for k in value]
        elif value is not None:
            entry["failure"] = {"code": value.code, "message": value.message}
        return entry
    if type_id == m.INPUT:
        entry["value"] = _text(msg.value.content)
    elif type_id == m.OUTPUT:
        if msg.WhichOneof("result") == "failure":
            entry["failure"] = {"code": msg.failure.code, "message": msg.failure.message}
        else:
            entry["value"] = _text(msg.value.content)
    elif type_id == m.RUN:
        entry["completion_id"] = msg.result_completion_id
    elif type_id == m.SLEEP:
        entry["wake_up_time"] = _iso(msg.wake_up_time)
        entry["completion_id"] = msg.result_completion_id
    elif type_id in (m.CALL, m.ONE_WAY_CALL):
        entry["target"] = f"{msg.service_name}/{msg.key + '/' if msg.key else ''}{msg.handler_name}"
        entry["parameter"] = _text(msg.parameter)
    elif type_id in (m.SET_STATE, m.CLEAR_STATE, m.GET_EAGER_STATE, m.GET_LAZY_STATE):
        entry["key"] = msg.key.decode("utf-8", "replace")
        if type_id == m.SET_STATE:
            entry["value"] = _text(msg.value.content)
    elif type_id in (m.GET_PROMISE, m.PEEK_PROMISE, m.COMPLETE_PROMISE):
        entry["promise"] = msg.key
    elif type_id == m.COMPLETE_AWAKEABLE:
        entry["awakeable_id"] = msg.awakeable_id
    elif type_id == m.SEND_SIGNAL:
        entry["target"] = msg.target_invocation_id
        entry["signal"] = msg.idx if msg.WhichOneof("signal_id") == "idx" else msg.name
    return entry


def _waiting_json(waiting: list[int | str]) -> list[str]:
    return [f"signal '{h}'" if isinstance(h, str) else f"signal {h - SIGNAL_HANDLE_BASE}"
            if h >= SIGNAL_HANDLE_BASE else f"completion {h}" for h in waiting]


class Admin:
    """The admin ASGI app."""

    def __init__(self, engine: Engine, body_limit: int = ADMIN_BODY_LIMIT) -> None:
        from durably.server.http.ui.app import WebUI  # the UI renders with helpers of this module

        self.engine = engine
        self.body_limit = body_limit
        self.ui = WebUI(engine)
        # Per-pattern versions of Restate's rule-book API, counted while this server runs.
        self._rule_versions: dict[str, int] = {}

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            await self._route(scope, receive, send)
        except BodyTooLarge:  # any route that reads a body
            await error(send, 413, f"request body exceeds the admin API's limit for {scope['path']}", "admin")
        except ClientDisconnected:
            pass  # nobody to answer

    async def _route(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        segs = [s for s in scope["path"].strip("/").split("/") if s]
        if segs and segs[0] in ("v2", "v3", "v4"):
            segs = segs[1:]
        method = scope["method"]
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        if method not in ("GET", "HEAD", "OPTIONS") and segs[:1] != ["ui"] and is_cross_site(scope):
            # A page on another site must not register a deployment or purge through the operator's
            # browser (a text/plain POST needs no CORS preflight). The UI answers its own forms.
            await error(send, 403, "cross-site requests to the admin API are refused", "admin")
        elif segs == ["health"]:
            problem = self.engine.health_problem()
            if problem is not None:
                await error(send, 503, problem, "admin")
            else:
                await respond_json(send, 200, {"status": "ok"})
        elif segs == ["threads"] and method == "GET":
            await respond_json(send, 200, threads_json(self.engine))
        elif segs and segs[0] == "ui":
            await self.ui.handle(scope, receive, send, segs[1:], method, query)
        elif segs == ["metrics"] and method == "GET":
            if self.engine.stats is None:
                await error(send, 404, "metrics are off (durably serve --no-metrics)", "admin")
            else:
                await self.engine.flushed()  # counted completions are committed: the counts agree
                await respond(send, 200, render_metrics(self.engine), METRICS_TYPE)
        elif segs == ["services"] and method == "GET":
            await respond_json(send, 200, {"services": [service_json(s) for s in self.engine.services.values()]})
        elif len(segs) >= 3 and segs[0] == "services" and segs[2] == "state":
            await self._state(scope, receive, send, segs, method)
        elif len(segs) == 2 and segs[0] == "services" and method == "GET":
            svc = self.engine.services.get(segs[1])
            if svc is None:
                await error(send, 404, f"service '{segs[1]}' not found", "admin")
            else:
                await respond_json(send, 200, service_json(svc))
        elif segs == ["invocations"] and method == "GET":
            await self._list(send, query)
        elif len(segs) == 2 and segs[0] == "invocations" and method == "GET":
            await self._describe(send, segs[1], query)
        elif len(segs) == 3 and segs[0] == "invocations" and segs[2] in _ACTIONS and method == "PATCH":
            await self._action(send, segs[1], segs[2])
        elif len(segs) == 2 and segs[0] == "invocations" and method == "DELETE":
            mode = query.get("mode", "cancel")
            if mode not in ("cancel", "kill", "purge"):
                await error(send, 400, "mode must be cancel, kill or purge", "admin")
                return
            await self._action(send, segs[1], mode, deprecated=True)
        elif segs == ["deployments"] and method == "POST":
            await self._register(scope, receive, send)
        elif segs == ["deployments"] and method == "GET":
            await respond_json(send, 200, {"deployments": [d.to_json() for d in self.engine.deployments.values()]})
        elif len(segs) == 2 and segs[0] == "deployments" and method in ("GET", "DELETE"):
            dep = self.engine.deployments.get(segs[1])
            if dep is None:
                await error(send, 404, f"deployment {segs[1]} not found", "admin")
            elif method == "GET":
                await respond_json(send, 200, dep.to_json())
            else:
                await self.engine.remove_deployment(dep.id)
                await respond(send, 202)
        elif segs == ["rules"]:
            await self._rules(scope, receive, send, method, query)
        elif segs in (["limits", "rules"], ["limits", "rules", "bulk-delete"]):
            await self._restate_rules(scope, receive, send, method, segs[-1] == "bulk-delete")
        elif segs and segs[0] in ("services", "invocations", "health", "deployments", "threads"):
            await error(send, 405, f"method {method} not allowed here", "admin")
        else:
            await error(send, 404, "not found", "admin")

    async def _state(self, scope: dict[str, Any], receive: Receive, send: Send, segs: list[str],
                     method: str) -> None:
        service = segs[1]
        if method == "GET" and len(segs) >= 4:
            key = "/".join(segs[3:])
            kind = has_state(self.engine, service)
            if kind is None:
                await error(send, 404, f"service '{service}' not found", "admin")
            elif not kind:
                await error(send, 400, f"'{service}' is a service: only virtual objects and workflows have state",
                            "admin")
            else:
                await respond_json(send, 200, state_json(service, key, await read_state(self.engine, service, key)))
            return
        if method != "POST" or len(segs) != 3:
            await error(send, 405, f"method {method} not allowed here", "admin")
            return
        try:
            key, new_state, version = parse_new_state(json.loads(await read_body(scope, receive, 32 * 1024 * 1024)))
        except BodyTooLarge:
            await error(send, 413, "the new state is larger than 32 MiB", "admin")
            return
        except ValueError as e:
            await error(send, 400, f"bad state change: {e}", "admin")
            return
        kind = has_state(self.engine, service)
        if kind is False:
            await error(send, 400, f"'{service}' is a service: only virtual objects and workflows have state", "admin")
            return
        if kind is None and new_state:  # state of a removed service may still be cleared, as Restate allows
            await error(send, 404, f"service '{service}' not found", "admin")
            return
        try:
            await replace_state(self.engine, service, key, new_state, version)
        except StateConflict as e:
            await error(send, e.status, str(e), "admin")
            return
        await respond(send, 202)

    async def _rules(self, scope: dict[str, Any], receive: Receive, send: Send, method: str,
                     query: dict[str, str]) -> None:
        """The concurrency rule book: GET lists rules and usage; PUT {"pattern", "concurrency"}; DELETE ?pattern=."""
        limiter = self.engine.limiter
        try:
            if method == "GET":
                rules = [{"pattern": p, "concurrency": n} for p, n in limiter.rules().items()]
                await respond_json(send, 200, {"rules": rules, "usage": limiter.usage()})
            elif method == "PUT":
                body = json.loads(await read_body(scope, receive, 64 * 1024) or b"{}")
                pattern, limit = body["pattern"], body["concurrency"]
                if not isinstance(pattern, str) or not isinstance(limit, int) or isinstance(limit, bool):
                    raise FlowControlError("send {\"pattern\": \"checkout/*\", \"concurrency\": 5}")
                self.engine.set_concurrency_rule(pattern, limit)
                await self.engine.barrier()
                await respond_json(send, 200, {"pattern": pattern, "concurrency": limit})
            elif method == "DELETE":
                if "pattern" not in query:
                    raise FlowControlError("say which rule: DELETE /rules?pattern=checkout/*")
                if self.engine.set_concurrency_rule(query["pattern"], None):
                    await self.engine.barrier()
                    await respond(send, 200)
                else:
                    await error(send, 404, f"no rule for pattern {query['pattern']!r}", "admin")
            else:
                await error(send, 405, f"method {method} not allowed here", "admin")
        except (FlowControlError, KeyError, ValueError, TypeError) as e:
            await error(send, 400, f"bad rule: {e}", "admin")

    async def _restate_rules(self, scope: dict[str, Any], receive: Receive, send: Send, method: str,
                             delete: bool) -> None:
        """Restate's rule-book API: `PUT /limits/rules` upserts a batch, `POST /limits/rules/bulk-delete`
        removes one (the patterns actually removed come back). A batch is checked whole before any of it
        applies; a malformed one is 422, as in Restate."""
        if method != ("POST" if delete else "PUT"):
            await error(send, 405, f"method {method} not allowed: use {'POST' if delete else 'PUT'}", "admin")
            return
        try:
            body = json.loads(await read_body(scope, receive, 1024 * 1024) or b"null")
            if not isinstance(body, list) or not all(isinstance(r, dict) and isinstance(r.get("pattern"), str)
                                                     for r in body):
                raise FlowControlError("the body must be a JSON array of objects with a \"pattern\"")
            for r in body:
                parse_rule(r["pattern"])
                limit = (r.get("limits") or {}).get("concurrency")
                if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
                    raise FlowControlError(f"{r['pattern']}: limits.concurrency must be a whole number >= 1")
        except (ValueError, FlowControlError) as e:
            await error(send, 422, f"bad rule batch: {e}", "admin")
            return
        engine = self.engine
        if delete:
            removed = [r["pattern"] for r in body if engine.set_concurrency_rule(r["pattern"], None)]
            await engine.barrier()
            await respond_json(send, 200, removed)
            return
        out = []
        for r in body:
            limit = (r.get("limits") or {}).get("concurrency")
            disabled = bool(r.get("disabled", False))
            # A parked (disabled) rule or one without a limit constrains nothing: the limiter drops it.
            engine.set_concurrency_rule(r["pattern"], None if disabled else limit)
            self._rule_versions[r["pattern"]] = self._rule_versions.get(r["pattern"], 0) + 1
            item = {"pattern": r["pattern"], "limits": {"concurrency": limit}, "disabled": disabled,
                    "version": self._rule_versions[r["pattern"]], "last_modified_millis_since_epoch": engine.now_ms()}
            if r.get("description") is not None:
                item["description"] = r["description"]
            out.append(item)
        await engine.barrier()
        await respond_json(send, 200, out)

    async def _register(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        try:
            body = json.loads(await read_body(scope, receive, self.body_limit) or b"{}")
            uri = body["uri"]
            if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
                raise ValueError("uri must be an http:// or https:// URL")
            headers = body.get("additional_headers") or {}
            if not isinstance(headers, dict):
                raise ValueError("additional_headers must be an object")
        except ClientDisconnected:
            return
        except BodyTooLarge:
            await error(send, 413, f"request body exceeds the admin API's limit of {self.body_limit} bytes", "admin")
            return
        except (ValueError, KeyError, TypeError) as e:
            await error(send, 400, f"bad deployment registration: {e!r}; send {{\"uri\": \"http://host:9080\"}}",
                        "admin")
            return
        try:
            dep, created = await self.engine.register_deployment(uri, bool(body.get("use_http_11", False)),
                                                                 bool(body.get("force", False)), headers)
        except DiscoveryError as e:
            await error(send, e.status, str(e), "admin")
            return
        payload = {"id": dep.id, "services": [service_json(self.engine.services[n]) for n in dep.services],
                   "min_protocol_version": dep.manifest.get("minProtocolVersion"),
                   "max_protocol_version": dep.manifest.get("maxProtocolVersion")}
        await respond_json(send, 201 if created else 200, payload, [(b"location", f"deployments/{dep.id}".encode())])

    async def _list(self, send: Send, query: dict[str, str]) -> None:
        try:
            limit = int(query.get("limit", "100"))
            if not 1 <= limit <= 10_000:
                raise ValueError
        except ValueError:
            await error(send, 400, "limit must be an integer from 1 to 10000", "admin")
            return
        try:
            flt = InvocationFilter(status=query.get("status"), service=query.get("service"),
                                   handler=query.get("handler"), key=query.get("key"),
                                   since_ms=int(query["since"]) if "since" in query else None,
                                   until_ms=int(query["until"]) if "until" in query else None)
            before = parse_cursor(query["before"]) if "before" in query else None
        except ValueError:
            await error(send, 400, "since and until are ms since the epoch; before is a next_cursor", "admin")
            return
        await self.engine.flushed()
        rows = page(self.engine.store, flt, limit, before)
        body: dict[str, Any] = {"invocations": [self._row_json(r) for r in rows]}
        if len(rows) == limit:  # there may be more: ?before=<next_cursor> pages on
            body["next_cursor"] = cursor_of(rows[-1])
        await respond_json(send, 200, body)

    def _row_json(self, row: tuple[Any, ...]) -> dict[str, Any]:
        # A running invocation's row is written only on status changes; its live record is more current.
        live = self.engine.live_row(row[0])
        body = invocation_json(live if live is not None else row)
        if isinstance(body.get("waiting"), list):
            body["waiting"] = _waiting_json(body["waiting"])
        return body

    async def _describe(self, send: Send, inv_id: str, query: dict[str, str]) -> None:
        try:
            InvocationId.parse(inv_id)
        except ValueError as e:
            await error(send, 400, f"malformed invocation id: {e}", "admin")
            return
        page = journal_page(query)
        if isinstance(page, str):
            await error(send, 400, page, "admin")
            return
        await self.engine.flushed()
        row = self.engine.store.load_invocation(inv_id)
        if row is None:
            await error(send, 404, f"invocation {inv_id} not found", "admin")
            return
        body = self._row_json(row)
        offset, limit = page
        rows = self.engine.store.journal_rows(inv_id, offset, limit)
        body["journal"] = [journal_entry_json(*r) for r in rows]
        total = self.engine.store.query("SELECT count(*) FROM journal WHERE invocation_seq = "
                                        "(SELECT seq FROM invocations WHERE id = ?)", (inv_id,))[0][0]
        body.update(journal_paging(total, offset, len(rows)))
        await respond_json(send, 200, body)

    async def _action(self, send: Send, inv_id: str, action: str, deprecated: bool = False) -> None:
        try:
            InvocationId.parse(inv_id)
        except ValueError as e:
            await error(send, 400, f"malformed invocation id: {e}", "admin")
            return
        try:
            self.engine.check_writable()
        except EngineStopped as e:
            await error(send, 503, str(e), "admin")
            return
        status = ACTION_STATUS[getattr(self.engine, action)(inv_id)]
        if status == 404:
            await error(send, 404, f"invocation {inv_id} not found", "admin")
            return
        if status == 409:
            why = {"resume": "it is not paused", "pause": "it is not running, suspended or backing off",
                   "purge": "it has not completed"}.get(action, "it has already completed")
            await error(send, 409, f"cannot {action} invocation {inv_id}: {why}", "admin")
            return
        await self.engine.barrier()
        await respond(send, 202 if deprecated else status)
