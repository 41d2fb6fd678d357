"""The admin API (default port 9070), with Restate's paths and status codes.

    GET    /health
    GET    /threads                                     sync-step threads (stuck ones) and event-loop stalls
    GET    /metrics                                     Prometheus metrics
    GET    /ui/...                                      the web UI (durably.server.http.ui)
    GET    /services, /services/{name}
    GET    /services/{name}/state/{key}                 a page of a key's state (?limit=&after=next_cursor)
    POST   /services/{name}/state {"object_key", "new_state", "version"?}   replace a key's state (Restate's)
    GET    /invocations[?status=&service=&handler=&key=&since=&until=&limit=&before=]   newest first, paged
    GET    /invocations/{id}[?journal_offset=&journal_limit=]   the invocation with a page of its journal
    GET    /invocations/{id}/journal/{index}[/value]    one journal entry whole (or only its value, raw)
    PATCH  /invocations/{id}/cancel|kill|pause|resume|purge
    GET|PUT|DELETE /rules                               concurrency rules (flow control) and their usage
    PUT /limits/rules, POST /limits/rules/bulk-delete   the same, in Restate's rule-book API
    POST   /subscriptions {"source", "sink", "options"?}   a Kafka subscription (durably.server.http.subscriptions)
    GET    /subscriptions[?sink=&source=], /subscriptions/{id};  DELETE /subscriptions/{id}
    POST   /deployments {"uri", "use_http_11"?, "force"?, "additional_headers"?}   discover and register
    GET    /deployments, /deployments/{id};  DELETE /deployments/{id}
    DELETE /invocations/{id}?mode=cancel|kill|purge     (deprecated form)

Paths also answer under /v2, /v3 and /v4 prefixes, as Restate's do. `Admin.routes` is the table that maps a
method and a path pattern to a handler; a path no route takes is 405 under a known resource, else 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
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
from durably.server.engine.engine import Engine, EngineStopped
from durably.server.engine.flow_control import (
    MAX_RULES_PER_REQUEST,
    FlowControlError,
    TooManyRules,
    check_limit,
    parse_rule,
)
from durably.server.engine.object_state import (
    STATE_PAGE,
    StateConflict,
    decode_cursor,
    has_state,
    parse_new_state,
    read_state_page,
    replace_state,
    state_json,
)
from durably.server.http.journal_page import journal_page, journal_paging, read_page_off_loop
from durably.server.http.shapes import (
    ACTION_STATUS,
    LIST_LIMIT_ERROR,
    entry_value,
    invocation_json,
    journal_entry_json,
    list_limit,
    parse_json,
    service_json,
    waiting_json,
)
from durably.server.http.subscriptions import SubscriptionRoutes
from durably.server.http.ui.app import WebUI
from durably.server.observe.kafka_metrics import KafkaCollector
from durably.server.observe.loop_stalls import threads_json
from durably.server.observe.metrics import CONTENT_TYPE as METRICS_TYPE
from durably.server.observe.metrics import render as render_metrics
from durably.server.process.kafka import KafkaSubscriptions
from durably.server.process.limits import ADMIN_BODY_LIMIT
from durably.server.remote.deployments import DiscoveryError
from durably.server.store.errors import StoreCorrupt
from durably.server.store.invocation_query import InvocationFilter, cursor_of, page, parse_cursor

_ACTIONS = ("cancel", "kill", "pause", "resume", "purge")
# Restate's admin API answers under these prefixes too.
_VERSION_PREFIXES = ("v2", "v3", "v4")
# Methods a browser sends from another site's page only for reading.
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# A path under one of these that no route takes answers 405 (the resource exists, not with that method);
# any other unknown path is 404.
_METHOD_CHECKED = ("services", "invocations", "health", "deployments", "threads", "subscriptions")


@dataclass(frozen=True)
class Request:
    """One admin request as a route's handler sees it."""

    scope: dict[str, Any]
    receive: Receive
    send: Send
    method: str
    query: dict[str, str]


@dataclass(frozen=True)
class Route:
    """Requests with one of `methods` (None: any method) on a path matching `pattern` go to `handler`.

    A pattern's segments are literals, `{name}` (one segment, passed to the handler as `name`) or, last, `{name*}`
    (the remaining segments, possibly none, passed as a list). The handler is called with the Request first.
    """

    methods: tuple[str, ...] | None
    pattern: tuple[str, ...]
    handler: Callable[..., Awaitable[None]]

    @classmethod
    def of(cls, methods: str | None, pattern: str, handler: Callable[..., Awaitable[None]]) -> Route:
        """A route from `"GET"` or `"GET DELETE"` (None: any) and a pattern such as `"deployments/{dep_id}"`."""
        return cls(None if methods is None else tuple(methods.split()), tuple(pattern.split("/")), handler)

    def match(self, method: str, segs: list[str]) -> dict[str, Any] | None:
        """The handler's path arguments if this route takes the request, else None."""
        if self.methods is not None and method not in self.methods:
            return None
        params: dict[str, Any] = {}
        for i, part in enumerate(self.pattern):
            if part.endswith("*}"):
                params[part[1:-2]] = segs[i:]
                return params
            if i >= len(segs):
                return None
            if part.startswith("{"):
                params[part[1:-1]] = segs[i]
            elif part != segs[i]:
                return None
        return params if len(segs) == len(self.pattern) else None


async def _invocation_id_ok(send: Send, inv_id: str) -> bool:
    """Whether `inv_id` is a well-formed invocation id; if not, the 400 is answered here."""
    try:
        InvocationId.parse(inv_id)
    except ValueError as e:
        await error(send, 400, f"malformed invocation id: {e}", "admin")
        return False
    return True


class Admin:
    """The admin ASGI app."""

    def __init__(self, engine: Engine, body_limit: int = ADMIN_BODY_LIMIT,
                 subscriptions: KafkaSubscriptions | None = None) -> None:
        self.engine = engine
        self.body_limit = body_limit
        # `durably serve` passes its running subscriptions; without them (an embedding that runs no consumers)
        # no Kafka cluster is configured, so every POST /subscriptions names the missing --kafka-cluster.
        self.subscriptions = subscriptions if subscriptions is not None else KafkaSubscriptions(engine, {})
        subs = SubscriptionRoutes(self.subscriptions, body_limit)
        self.ui = WebUI(engine, self.subscriptions)
        # Per-pattern versions of Restate's rule-book API, counted while this server runs.
        self._rule_versions: dict[str, int] = {}
        # Tried in order; the first route that takes the request answers it.
        self.routes = [
            Route.of(None, "health", self._health),
            Route.of("GET", "threads", self._threads),
            Route.of(None, "ui/{segs*}", self._ui),
            Route.of("GET", "metrics", self._metrics),
            Route.of("GET", "services", self._services),
            Route.of(None, "services/{service}/state/{key_segs*}", self._state),
            Route.of("GET", "services/{name}", self._service),
            Route.of("GET", "invocations", self._list),
            Route.of("GET", "invocations/{inv_id}", self._describe),
            Route.of("GET", "invocations/{inv_id}/journal/{index}", self._entry),
            Route.of("GET", "invocations/{inv_id}/journal/{index}/value", partial(self._entry, raw=True)),
            *(Route.of("PATCH", f"invocations/{{inv_id}}/{action}", partial(self._action, action=action))
              for action in _ACTIONS),
            Route.of("DELETE", "invocations/{inv_id}", self._deprecated_action),
            Route.of("GET POST", "subscriptions", subs.collection),
            Route.of("GET DELETE", "subscriptions/{sub_id}", subs.item),
            Route.of("POST", "deployments", self._register),
            Route.of("GET", "deployments", self._deployments),
            Route.of("GET DELETE", "deployments/{dep_id}", self._deployment),
            Route.of(None, "rules", self._rules),
            Route.of(None, "limits/rules", partial(self._restate_rules, delete=False)),
            Route.of(None, "limits/rules/bulk-delete", partial(self._restate_rules, delete=True)),
        ]

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
        except StoreCorrupt as e:  # a read met a damaged page: the engine stops writing, health says why
            await error(send, 503, str(e), "admin")

    async def _route(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        segs = [s for s in scope["path"].strip("/").split("/") if s]
        if segs and segs[0] in _VERSION_PREFIXES:
            segs = segs[1:]
        method = scope["method"]
        if method not in _SAFE_METHODS and segs[:1] != ["ui"] and is_cross_site(scope):
            # A page on another site must not register a deployment or purge through the operator's
            # browser (a text/plain POST needs no CORS preflight). The UI answers its own forms.
            await error(send, 403, "cross-site requests to the admin API are refused", "admin")
            return
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        request = Request(scope, receive, send, method, query)
        for route in self.routes:
            params = route.match(method, segs)
            if params is not None:
                await route.handler(request, **params)
                return
        if segs and segs[0] in _METHOD_CHECKED:
            await error(send, 405, f"method {method} not allowed here", "admin")
        else:
            await error(send, 404, "not found", "admin")

    async def _health(self, req: Request) -> None:
        problem = self.engine.health_problem()
        if problem is not None:
            await error(req.send, 503, problem, "admin")
        else:
            await respond_json(req.send, 200, {"status": "ok"})

    async def _threads(self, req: Request) -> None:
        await respond_json(req.send, 200, threads_json(self.engine))

    async def _ui(self, req: Request, segs: list[str]) -> None:
        await self.ui.handle(req.scope, req.receive, req.send, segs, req.method, req.query)

    async def _metrics(self, req: Request) -> None:
        if self.engine.stats is None:
            await error(req.send, 404, "metrics are off (durably serve --no-metrics)", "admin")
            return
        await self.engine.flushed()  # counted completions are committed: the counts agree
        await respond(req.send, 200, render_metrics(self.engine, KafkaCollector(self.subscriptions)), METRICS_TYPE)

    async def _services(self, req: Request) -> None:
        await respond_json(req.send, 200, {"services": [service_json(s) for s in self.engine.services.values()]})

    async def _service(self, req: Request, name: str) -> None:
        svc = self.engine.services.get(name)
        if svc is None:
            await error(req.send, 404, f"service '{name}' not found", "admin")
        else:
            await respond_json(req.send, 200, service_json(svc))

    async def _deployments(self, req: Request) -> None:
        await respond_json(req.send, 200, {"deployments": [d.to_json() for d in self.engine.deployments.values()]})

    async def _deployment(self, req: Request, dep_id: str) -> None:
        dep = self.engine.deployments.get(dep_id)
        if dep is None:
            await error(req.send, 404, f"deployment {dep_id} not found", "admin")
        elif req.method == "GET":
            await respond_json(req.send, 200, dep.to_json())
        else:
            await self.engine.remove_deployment(dep.id)
            await respond(req.send, 202)

    async def _state(self, req: Request, service: str, key_segs: list[str]) -> None:
        """`GET .../state/{key}` reads a key's state (the key may hold '/'); `POST .../state` replaces one."""
        scope, receive, send, method = req.scope, req.receive, req.send, req.method
        if method == "GET" and key_segs:
            key = "/".join(key_segs)
            kind = has_state(self.engine, service)
            if kind is None:
                await error(send, 404, f"service '{service}' not found", "admin")
            elif not kind:
                await error(send, 400, f"'{service}' is a service: only virtual objects and workflows have state",
                            "admin")
            else:
                try:
                    limit = int(req.query.get("limit", str(STATE_PAGE)))
                    if not 1 <= limit <= STATE_PAGE:
                        raise ValueError(f"limit must be an integer from 1 to {STATE_PAGE}")
                    after = decode_cursor(req.query["after"]) if "after" in req.query else None
                except ValueError as e:
                    msg = str(e) if "cursor" in str(e) or "limit" in str(e) else \
                        f"limit must be an integer from 1 to {STATE_PAGE}"
                    await error(send, 400, msg, "admin")
                    return
                page_ = await read_state_page(self.engine, service, key, after, limit)
                await respond_json(send, 200, state_json(service, key, page_.state, page_))
            return
        if method != "POST" or key_segs:
            await error(send, 405, f"method {method} not allowed here", "admin")
            return
        try:
            key, new_state, version = parse_new_state(parse_json(await read_body(scope, receive, 32 * 1024 * 1024)))
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

    async def _rules(self, req: Request) -> None:
        """The concurrency rule book: GET lists rules and usage; PUT {"pattern", "concurrency"}; DELETE ?pattern=."""
        scope, receive, send, method, query = req.scope, req.receive, req.send, req.method, req.query
        limiter = self.engine.limiter
        try:
            if method == "GET":
                rules = [{"pattern": p, "concurrency": n} for p, n in limiter.rules().items()]
                await respond_json(send, 200, {"rules": rules, "usage": limiter.usage()})
            elif method == "PUT":
                body = parse_json(await read_body(scope, receive, 64 * 1024) or b"{}")
                pattern, limit = body["pattern"], body["concurrency"]
                if not isinstance(pattern, str) or not isinstance(limit, int) or isinstance(limit, bool):
                    raise FlowControlError("send {\"pattern\": \"checkout/*\", \"concurrency\": 5}")
                try:
                    self.engine.set_concurrency_rule(pattern, limit)
                except TooManyRules as e:
                    await error(send, 422, str(e), "admin")
                    return
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

    async def _restate_rules(self, req: Request, delete: bool) -> None:
        """Restate's rule-book API: `PUT /limits/rules` upserts a batch, `POST /limits/rules/bulk-delete`
        removes one (the patterns actually removed come back). A batch is checked whole before any of it
        applies; a malformed one is 422, as in Restate. A batch of more than MAX_RULES_PER_REQUEST rules is 413,
        one that would take the book past MAX_RULES_TOTAL is 422; a batch costs one store write of its rules."""
        scope, receive, send, method = req.scope, req.receive, req.send, req.method
        if method != ("POST" if delete else "PUT"):
            await error(send, 405, f"method {method} not allowed: use {'POST' if delete else 'PUT'}", "admin")
            return
        try:
            body = parse_json(await read_body(scope, receive, 1024 * 1024) or b"null")
            if not isinstance(body, list) or not all(isinstance(r, dict) and isinstance(r.get("pattern"), str)
                                                     for r in body):
                raise FlowControlError("the body must be a JSON array of objects with a \"pattern\"")
            if len(body) > MAX_RULES_PER_REQUEST:
                await error(send, 413, f"{len(body)} rules in one request, at most {MAX_RULES_PER_REQUEST}: send "
                            "the batch in parts", "admin")
                return
            changes: dict[str, int | None] = {}
            for r in body:
                parse_rule(r["pattern"])
                limit = (r.get("limits") or {}).get("concurrency")
                if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
                    raise FlowControlError(f"{r['pattern']}: limits.concurrency must be a whole number >= 1")
                if limit is not None:
                    check_limit(limit, r["pattern"])
                # A parked (disabled) rule or one without a limit constrains nothing: the limiter drops it.
                changes[r["pattern"]] = None if delete or r.get("disabled", False) else limit
            changed = self.engine.set_concurrency_rules(changes)
        except (ValueError, FlowControlError) as e:
            message = str(e) if isinstance(e, TooManyRules) else f"bad rule batch: {e}"
            await error(send, 422, message, "admin")
            return
        engine = self.engine
        await engine.barrier()
        if delete:
            for pattern in changed:
                self._rule_versions.pop(pattern, None)
            await respond_json(send, 200, changed)
            return
        out = []
        now = engine.now_ms()
        for r in body:
            limit = (r.get("limits") or {}).get("concurrency")
            self._rule_versions[r["pattern"]] = self._rule_versions.get(r["pattern"], 0) + 1
            item = {"pattern": r["pattern"], "limits": {"concurrency": limit},
                    "disabled": bool(r.get("disabled", False)), "version": self._rule_versions[r["pattern"]],
                    "last_modified_millis_since_epoch": now}
            if r.get("description") is not None:
                item["description"] = r["description"]
            out.append(item)
        await respond_json(send, 200, out)

    async def _register(self, req: Request) -> None:
        scope, receive, send = req.scope, req.receive, req.send
        try:
            body = parse_json(await read_body(scope, receive, self.body_limit) or b"{}")
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

    async def _list(self, req: Request) -> None:
        send, query = req.send, req.query
        limit = list_limit(query)
        if limit is None:
            await error(send, 400, LIST_LIMIT_ERROR, "admin")
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
        if query.get("cursors") == "1":  # each row's cursor: how a partitioned server merges its partitions' pages
            body["cursors"] = [cursor_of(r) for r in rows]
        await respond_json(send, 200, body)

    def _row_json(self, row: tuple[Any, ...]) -> dict[str, Any]:
        # A running invocation's row is written only on status changes; its live record is more current.
        live = self.engine.live_row(row[0])
        body = invocation_json(live if live is not None else row)
        if isinstance(body.get("waiting"), list):
            body["waiting"] = waiting_json(body["waiting"])
        return body

    async def _describe(self, req: Request, inv_id: str) -> None:
        send, query = req.send, req.query
        if not await _invocation_id_ok(send, inv_id):
            return
        page = journal_page(query)
        if isinstance(page, str):
            await error(send, 400, page, "admin")
            return
        await self.engine.flushed()
        offset, limit = page
        # Bounded by bytes as well as entries, and read on a worker thread: entries of many MB must neither
        # make a page of hundreds of MB nor hold the event loop while they are read. The row is read after
        # it, so the status shown is the latest one.
        entries, total = await read_page_off_loop(self.engine.store, inv_id, offset, limit,
                                           f"/invocations/{inv_id}/journal/{{index}}/value")
        await self.engine.flushed()
        row = self.engine.store.load_invocation(inv_id)
        if row is None:
            await error(send, 404, f"invocation {inv_id} not found", "admin")
            return
        body = self._row_json(row)
        parts = self.engine.options.partitions
        if not parts.single:  # with --partitions N: which process holds it (absent in one process, as on Restate)
            body["partition"] = parts.owner(inv_id)
        body["journal"] = entries
        body.update(journal_paging(total, offset, len(entries)))
        await respond_json(send, 200, body)

    async def _entry(self, req: Request, inv_id: str, index: str, raw: bool = False) -> None:
        """One journal entry whole (`raw`: only the user data it carries, as it was written)."""
        send = req.send
        if not await _invocation_id_ok(send, inv_id):
            return
        if not index.isdigit():
            await error(send, 400, "the journal index must be an integer >= 0", "admin")
            return
        await self.engine.flushed()
        row = await asyncio.to_thread(self.engine.store.journal_entry, inv_id, int(index))
        if row is None:
            await error(send, 404, f"invocation {inv_id} has no journal entry {index}", "admin")
            return
        if not raw:
            await respond_json(send, 200, await asyncio.to_thread(journal_entry_json, *row))
            return
        value = await asyncio.to_thread(lambda: entry_value(row[1], m.decode(row[1], row[2])))
        if value is None:
            await error(send, 404, f"journal entry {index} of {inv_id} carries no value", "admin")
            return
        await respond(send, 200, value, b"application/octet-stream")

    async def _deprecated_action(self, req: Request, inv_id: str) -> None:
        """`DELETE /invocations/{id}?mode=`: Restate's older form of cancel, kill and purge."""
        mode = req.query.get("mode", "cancel")
        if mode not in ("cancel", "kill", "purge"):
            await error(req.send, 400, "mode must be cancel, kill or purge", "admin")
            return
        await self._action(req, inv_id, mode, deprecated=True)

    async def _action(self, req: Request, inv_id: str, action: str, deprecated: bool = False) -> None:
        send = req.send
        if not await _invocation_id_ok(send, inv_id):
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
