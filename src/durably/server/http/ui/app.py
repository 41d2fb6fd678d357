"""The web UI at the admin listener's /ui: routes, forms and operator actions.

GETs render pages; POSTs (forms) act through the same engine calls as the admin API and answer with a
redirect (303) to the page that shows the result, so a reload never repeats an action. The result's words
ride in the redirect's `?msg=`/`?err=`, vouched for by a short-lived signed cookie (sessions.FlashNotes): a
page shows them only with that cookie, so a link cannot make the UI say something. Every response carries
the UI's security headers (Content-Security-Policy, X-Frame-Options).
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from durably.protocol.ids import InvocationId
from durably.sdk.asgi import BodyTooLarge, Receive, Send, is_cross_site, read_body, respond
from durably.server.engine.engine import Engine
from durably.server.engine.object_state import (
    StateConflict,
    decode_cursor,
    has_state,
    read_state,
    read_state_page,
    replace_state,
    state_json,
)
from durably.server.http.sessions import (
    FLASH_COOKIE,
    FLASH_SECONDS,
    UI_HEADERS,
    FlashNotes,
    cookie_header,
    cookie_values,
    is_tls,
)
from durably.server.http.shapes import ACTION_STATUS, parse_json
from durably.server.http.ui import pages
from durably.server.http.ui.html import Markup, layout, url
from durably.server.http.ui.overview import OVERVIEW_SCRIPT, overview_page
from durably.server.http.ui.subscriptions import subscriptions_section
from durably.server.http.ui.timeline import journal_view
from durably.server.http.ui.timeline_svg import MAX_BARS
from durably.server.observe.overview import Overview
from durably.server.process.kafka import KafkaSubscriptions
from durably.server.process.limits import JOURNAL_VALUE_PREVIEW
from durably.server.remote.deployments import DiscoveryError
from durably.server.store.base import COL
from durably.server.store.invocation_query import InvocationFilter, page, parse_cursor

_HTML = b"text/html; charset=utf-8"
_LIST_QUERY = ("status", "service", "handler", "key", "since", "until", "before")
_ACTIONS = ("cancel", "kill", "pause", "resume", "purge")
_DONE = {"cancel": "cancellation requested", "kill": "killed", "pause": "paused", "resume": "resumed",
         "purge": "purged"}


def _input_ms(text: str | None) -> int | None:
    """A datetime-local value (taken as UTC) or ms since the epoch."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    t = datetime.fromisoformat(text.rstrip("Z"))
    return int(t.replace(tzinfo=UTC).timestamp() * 1000)


def _list_filter(query: dict[str, str]) -> InvocationFilter:
    """The invocation list's filter from its query; ValueError if a time is malformed."""
    return InvocationFilter(status=query.get("status") or None, service=query.get("service") or None,
                            handler=query.get("handler") or None, key=query.get("key") or None,
                            since_ms=_input_ms(query.get("since")), until_ms=_input_ms(query.get("until")))


async def _redirect(send: Send, location: str) -> None:
    await respond(send, 303, b"", None, [(b"location", location.encode())])


async def _svg(send: Send, body: str) -> None:
    await respond(send, 200, body.encode(), b"image/svg+xml; charset=utf-8", [(b"cache-control", b"no-store")])


async def _html(send: Send, body: bytes | str, status: int = 200) -> None:
    await respond(send, status, body.encode() if isinstance(body, str) else body, _HTML,
                  [(b"cache-control", b"no-store")])


def _flash_text(query: dict[str, str] | dict[str, list[str]]) -> str | None:
    """What a flash cookie vouches for: the `msg` and `err` of a query (None: it has neither)."""
    def one(name: str) -> str:
        v = query.get(name) or ""
        return v[0] if isinstance(v, list) else v

    return f"{one('msg')}\0{one('err')}" if one("msg") or one("err") else None


class WebUI:
    """Serves /ui/... for one engine."""

    def __init__(self, engine: Engine, subscriptions: KafkaSubscriptions | None = None) -> None:
        self.engine = engine
        # The overview's ring of samples, fed by the loop monitor's timer (none without metrics).
        self.overview = Overview(engine) if engine.stats is not None else None
        self.subscriptions = subscriptions
        self.flash = FlashNotes()
        # With --partitions N: the other partitions' rows and overview points (partitions/uiview.PeerViews), so
        # the list and the overview show the whole server. None in one process.
        self.peers: Any = None

    def _sending(self, scope: dict[str, Any], send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
        """`send` with the UI's headers, `extra`, and a flash cookie on a redirect that carries a note."""

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *UI_HEADERS, *extra]
                location = dict(headers).get(b"location")
                text = _flash_text(parse_qs(urlsplit(location.decode()).query)) if location else None
                if message["status"] == 303 and text is not None:
                    headers.append(cookie_header(FLASH_COOKIE, self.flash.cookie_value(text), FLASH_SECONDS,
                                                 is_tls(scope), "/ui"))
                message = {**message, "headers": headers}
            await send(message)

        return wrapped

    async def handle(self, scope: dict[str, Any], receive: Receive, send: Send, segs: list[str], method: str,
                     query: dict[str, str]) -> None:
        """Route one request; `segs` are the path segments after `ui`."""
        extra: list[tuple[bytes, bytes]] = []
        text = _flash_text(query)
        if text is not None:
            if method == "GET" and self.flash.genuine(cookie_values(scope["headers"], FLASH_COOKIE), text):
                # Shown once: a reload or a later link with the same words shows nothing.
                extra.append(cookie_header(FLASH_COOKIE, "", 0, is_tls(scope), "/ui"))
            else:
                query = {k: v for k, v in query.items() if k not in ("msg", "err")}
        send = self._sending(scope, send, extra)
        if method == "POST":
            if is_cross_site(scope):
                # A page elsewhere must not make the operator's browser kill or purge through its forms.
                await _html(send, "cross-site form posts are refused: use the UI's own pages", 403)
                return
            try:
                form = {k: v[0] for k, v in parse_qs((await read_body(scope, receive, 1024 * 1024)).decode()).items()}
            except BodyTooLarge:
                await _html(send, "form too large", 413)
                return
            await self._post(send, segs, form)
            return
        if method != "GET":
            await _html(send, "method not allowed", 405)
        elif not segs:
            await _redirect(send, "/ui/overview")
        elif segs == ["overview"]:
            await self._overview(send)
        elif segs == ["invocations"]:
            await self._invocations(send, query)
        elif len(segs) == 2 and segs[0] == "invocations":
            await self._invocation(send, segs[1], query)
        elif segs == ["services"]:
            body = pages.services_page(self.engine, query.get("msg"), query.get("err"))
            body = Markup(body + subscriptions_section(self.subscriptions))
            await _html(send, layout("Services", "services", body))
        elif segs == ["state"]:
            await self._state(send, query.get("service"), query.get("key"), query.get("msg"), query.get("err"),
                              after=query.get("after", ""), cursor=query.get("cursor"))
        else:
            await _html(send, layout("Not found", "", Markup("<h1>Not found</h1>")), 404)

    async def _overview(self, send: Send) -> None:
        minutes = None
        if self.overview is not None:
            now = self.overview.clock()  # type: ignore[operator]
            minutes = self.overview.per_minute(now)
            if self.peers is not None:
                try:
                    minutes = await self.peers.minutes(minutes, now)
                except Exception as ex:  # a partition restarting: say so rather than show part of the server
                    await _html(send, layout("Overview", "overview", Markup(
                        f'<h1>Overview</h1><div class="error">{pages.e(ex)}</div>')), 503)
                    return
        await _html(send, layout("Overview", "overview", overview_page(minutes), OVERVIEW_SCRIPT))

    def minutes(self, now: float) -> list[Any] | None:
        """This engine's overview points at `now` (None without metrics): what a partition gives partition 0."""
        return None if self.overview is None else self.overview.per_minute(now)

    async def rows(self, query: dict[str, str], limit: int) -> list[tuple[Any, ...]]:
        """This engine's page of the invocation list for the UI's query (filters, `before`); ValueError if bad."""
        flt = _list_filter(query)
        before = parse_cursor(query["before"]) if query.get("before") else None
        await self.engine.flushed()
        return [self.engine.live_row(r[COL["id"]]) or r for r in page(self.engine.store, flt, limit, before)]

    async def _invocations(self, send: Send, query: dict[str, str]) -> None:
        try:
            flt = _list_filter(query)
            rows = await self.rows(query, pages.PAGE_SIZE)
        except ValueError as e:
            await _html(send, layout("Invocations", "invocations", Markup(f'<div class="error">bad filter: '
                                                                          f'{pages.e(e)}</div>')), 400)
            return
        if self.peers is not None:
            shared = {k: v for k, v in query.items() if k in _LIST_QUERY}
            try:
                rows = await self.peers.rows(rows, shared, pages.PAGE_SIZE)
            except Exception as ex:  # a partition restarting: say so rather than show part of the server
                await _html(send, layout("Invocations", "invocations", Markup(
                    f'<div class="error">{pages.e(ex)}</div>')), 503)
                return
        if query.get("fragment") == "rows":
            await _html(send, pages.invocation_rows(rows))
            return
        live = not query.get("before")
        kept = {k: v for k, v in query.items() if k != "fragment"}
        body = pages.invocations_page(flt, sorted(self.engine.services), rows, pages.PAGE_SIZE, live, kept)
        await _html(send, layout("Invocations", "invocations", body, pages.LIVE_LIST_SCRIPT if live else ""))

    async def _invocation(self, send: Send, inv_id: str, query: dict[str, str]) -> None:
        try:
            InvocationId.parse(inv_id)
        except ValueError as e:
            await _html(send, layout("Bad id", "invocations", Markup(f'<div class="error">malformed invocation id: '
                                                                     f'{pages.e(e)}</div>')), 400)
            return
        await self.engine.flushed()
        # The row's output may be many MB: read on a worker thread, cut to a preview.
        found = await asyncio.to_thread(self.engine.store.invocation_preview, inv_id, JOURNAL_VALUE_PREVIEW)
        row, output_size = found if found is not None else (None, 0)
        if row is None:
            body = Markup(f'<div class="error">invocation {pages.e(inv_id)} not found (purged, or never existed)'
                          '</div><a href="/ui/invocations">all invocations</a>')
            await _html(send, layout("Not found", "invocations", body), 404)
            return
        live = self.engine.live_row(inv_id)
        if query.get("fragment") == "main" and query.get("seen"):
            # The live refresh: nothing changed, nothing to read or send.
            length = await asyncio.to_thread(self.engine.store.journal_length, inv_id)
            if pages.seen_token(live or row, length) == query["seen"]:
                await respond(send, 204, b"", None, [(b"cache-control", b"no-store")])
                return
        if query.get("fragment") == "timeline":
            # The timeline alone: only the entries of the bars it draws are read (a step is about two entries).
            view = await asyncio.to_thread(journal_view, self.engine.store, inv_id, 2 * MAX_BARS)
            await _svg(send, pages.timeline_of(row, live, view, int(self.engine.clock.now() * 1000)))
            return
        # The journal is read on a worker thread, bounded: every entry's type, size and time, and the entries
        # of its two ends cut to a preview (a journal of 20 MB steps or of 20,000 steps must not hold the loop).
        # Rendering a thousand steps takes tens of ms: done on the same thread, not on the loop.
        caller, now_ms = self.engine.store.caller_of(inv_id), int(self.engine.clock.now() * 1000)

        def render() -> str:
            view = journal_view(self.engine.store, inv_id, pages.MAX_STEPS)
            return pages.invocation_main(row, live, view, caller, query.get("msg"), query.get("err"), now_ms,
                                         output_size)

        main = await asyncio.to_thread(render)
        if query.get("fragment") == "main":
            await _html(send, main)
            return
        await _html(send, layout(inv_id, "invocations", main, pages.LIVE_INVOCATION_SCRIPT))

    async def _state(self, send: Send, service: str | None, key: str | None, msg: str | None, err: str | None,
                     edited: str | None = None, status: int = 200, after: str = "", cursor: str | None = None,
                     ) -> None:
        objects = sorted(n for n, s in self.engine.services.items() if s.kind != "service")
        body, keys = None, None
        if service and not has_state(self.engine, service):
            err = err or f"'{service}' is not a virtual object or workflow"
        elif service and key:
            # A page of the state: a key may hold very many names. Only a state that fits one page is editable.
            try:
                state_after = decode_cursor(cursor) if cursor else None
            except ValueError as ex:
                err, state_after, status = str(ex), None, 400
            page_ = await read_state_page(self.engine, service, key, state_after, pages.STATE_NAMES_PAGE)
            body = state_json(service, key, page_.state, page_)
        elif service:
            # Keys with state, in order, a page at a time (the state table's primary key answers this).
            await self.engine.flushed()
            keys = self.engine.store.state_keys(service, after, pages.KEYS_PAGE)
        page_ = pages.state_page(objects, service, key, body, msg, err, edited, keys)
        await _html(send, layout("State", "state", page_), status)

    async def _post(self, send: Send, segs: list[str], form: dict[str, str]) -> None:
        if len(segs) == 3 and segs[0] == "invocations" and segs[2] in _ACTIONS:
            inv_id, action = segs[1], segs[2]
            try:
                InvocationId.parse(inv_id)
            except ValueError:
                await _html(send, "malformed invocation id", 400)
                return
            status = ACTION_STATUS[getattr(self.engine, action)(inv_id)]
            if status in (200, 202):
                await self.engine.barrier()
            if action == "purge" and status == 200:
                await _redirect(send, url("/invocations", msg=f"{inv_id} purged"))
                return
            note = ({"msg": _DONE[action]} if status in (200, 202) else
                    {"err": f"cannot {action}: " + ("not found" if status == 404 else "not in a state that allows it")})
            await _redirect(send, url(f"/invocations/{inv_id}", **note))
        elif segs == ["deployments"]:
            uri = form.get("uri", "").strip()
            if not uri.startswith(("http://", "https://")):
                await _redirect(send, url("/services", err="the deployment URI must start with http:// or https://"))
                return
            try:
                dep, created = await self.engine.register_deployment(uri, bool(form.get("use_http_11")))
            except DiscoveryError as e:
                await _redirect(send, url("/services", err=f"cannot register {uri}: {e}"))
                return
            verb = "registered" if created else "already registered"
            await _redirect(send, url("/services", msg=f"{verb} {dep.id} ({', '.join(dep.services)})"))
        elif len(segs) == 3 and segs[0] == "deployments" and segs[2] == "remove":
            removed = await self.engine.remove_deployment(segs[1])
            await _redirect(send, url("/services", **({"msg": f"removed {segs[1]}"} if removed
                                                        else {"err": f"no deployment {segs[1]}"})))
        elif segs == ["state"]:
            await self._save_state(send, form)
        else:
            await _html(send, "not found", 404)

    async def _save_state(self, send: Send, form: dict[str, str]) -> None:
        service, key, text = form.get("service", ""), form.get("key", ""), form.get("state", "")
        try:
            values = parse_json(text or "{}")
            if not isinstance(values, dict):
                raise ValueError("the state must be a JSON object of names to values")
            new = {k.encode(): json.dumps(v, separators=(",", ":")).encode() for k, v in values.items()}
        except RecursionError:
            await self._state(send, service, key, None, "not saved: the JSON is nested too deeply", edited=text,
                              status=400)
            return
        except ValueError as e:
            await self._state(send, service, key, None, f"not saved: {e}", edited=text, status=400)
            return
        if not (await read_state_page(self.engine, service, key, None, pages.STATE_NAMES_PAGE)).complete:
            await self._state(send, service, key, None, "not saved: this state has more names than one page; "
                              "change it with `durably state set` or the admin API", status=409)
            return
        current = await read_state(self.engine, service, key)
        # Binary values are not in the editor; keep them.
        shown = state_json(service, key, current)
        for name in shown.get("binary", {}):
            new.setdefault(name.encode(), base64.b64decode(shown["binary"][name]))
        try:
            await replace_state(self.engine, service, key, new, form.get("version") or None)
        except StateConflict as e:
            await self._state(send, service, key, None, f"not saved: {e}", edited=text, status=e.status)
            return
        await _redirect(send, url("/state", service=service, key=key, msg="saved"))
