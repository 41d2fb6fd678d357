"""Optional bearer-token authentication for the ingress and the admin API (`--ingress-token`, `--admin-token`).

Restate's open-source server has none; a deployment reachable from a network needs some. Every request
except the health check must carry `Authorization: Bearer <token>`; others get 401 in Restate's error shape
before anything is read or run. The comparison takes the same time whatever the token sent, and neither
token ever reaches a log line. A request let in goes on without its `Authorization` header, so the token
never reaches a handler (`ctx.request().headers`), a remote deployment or the journal.

The admin listener's web UI signs a browser in with the token once and gives it an expiring session cookie
(durably.server.http.sessions), never the token; sign-in attempts are throttled per client address.
"""

from __future__ import annotations

import hmac
import html
import logging
import math
from typing import Any
from urllib.parse import parse_qs

from durably.sdk.asgi import BodyTooLarge, Receive, Send, error, is_cross_site, read_body, respond
from durably.server.http.sessions import (
    LEGACY_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    UI_HEADERS,
    SignInThrottle,
    UiSessions,
    cookie_header,
    cookie_values,
    is_tls,
)

_LOGIN_FORM = """<!doctype html><html><head><meta charset="utf-8"><title>Durably: sign in</title></head>
<body style="font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto">
<h1>Durably admin</h1><p>This server requires its admin token (<code>--admin-token</code>).</p>{note}
<form method="post" action="{action}"><label>Admin token <input type="password" name="token" autofocus
 required></label> <button type="submit">Sign in</button></form></body></html>"""
_HTML = b"text/html; charset=utf-8"

log = logging.getLogger("durably.auth")


class BearerAuth:
    """Wraps an ASGI app: requests need `Authorization: Bearer <token>`, except `open_paths`."""

    def __init__(self, app: Any, token: str, source: str, open_paths: frozenset[str],
                 login_path: str | None = None) -> None:
        if not token:
            raise ValueError("an empty token would let everyone in")
        self.app = app
        self._expected = token.encode()
        self.source = source
        self.open_paths = open_paths
        #: Where a browser signs in (the admin's web UI); its session cookie then stands for the header.
        self.login_path = login_path
        self.sessions = UiSessions()
        self.throttle = SignInThrottle()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") in self.open_paths:
            await self.app(scope, receive, send)
            return
        by_header, by_session = self._allowed(scope)
        if by_header or by_session:
            if by_header:  # the token goes no further than this check
                scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]}
            await self.app(scope, receive, send)
            return
        if self.login_path is not None:
            path = scope["path"].rstrip("/")
            if path == self.login_path:
                await self._login(scope, receive, send)
                return
            if scope["method"] == "GET" and (path + "/").startswith(self.login_path.rsplit("/", 1)[0] + "/"):
                await respond(send, 303, b"", None, [(b"location", self.login_path.encode())])
                return
        log.info("refused %s %s on the %s: missing or wrong bearer token", scope["method"], scope["path"][:200],
                 self.source)
        await error(send, 401, f"this {self.source} requires 'Authorization: Bearer <token>'", self.source,
                    [(b"www-authenticate", b'Bearer realm="durably"')])

    def _allowed(self, scope: dict[str, Any]) -> tuple[bool, bool]:
        """(the bearer header holds the token, a session cookie of the UI is valid)."""
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.strip().partition(b" ")
                if scheme.lower() != b"bearer":
                    given = b""
        # compare_digest: the time taken does not tell how much of the token was right.
        by_header = self._matches(given.strip())
        by_session = self.login_path is not None and any(
            self.sessions.valid(v) for v in cookie_values(scope["headers"], SESSION_COOKIE))
        return by_header, by_session

    def _matches(self, given: bytes) -> bool:
        return hmac.compare_digest(given, self._expected)

    async def _page(self, send: Send, status: int, body: bytes,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
        await respond(send, status, body, _HTML, [*UI_HEADERS, (b"cache-control", b"no-store"), *(headers or ())])

    async def _login(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """The UI's sign-in form: the token typed once becomes a session cookie only this listener accepts."""
        action = html.escape(self.login_path or "")
        if scope["method"] != "POST":
            await self._page(send, 200, _LOGIN_FORM.format(note="", action=action).encode())
            return
        if is_cross_site(scope):
            await self._page(send, 403, b"cross-site sign-in is refused")
            return
        client = (scope.get("client") or ("?",))[0]
        wait = self.throttle.take(client)
        if wait:
            log.warning("refused a sign-in to the %s UI from %s: too many attempts", self.source, client)
            retry = str(max(1, math.ceil(wait)))
            note = f'<p style="color:#b00">Too many sign-in attempts: try again in {retry} s.</p>'
            await self._page(send, 429, _LOGIN_FORM.format(note=note, action=action).encode(),
                             [(b"retry-after", retry.encode())])
            return
        try:
            form = parse_qs((await read_body(scope, receive, 64 * 1024)).decode("utf-8", "replace"))
        except BodyTooLarge:
            await self._page(send, 413, b"sign-in form too large")
            return
        given = form.get("token", [""])[0].strip().encode()
        if not self._matches(given):
            log.info("refused a sign-in to the %s UI: wrong token", self.source)
            note = '<p style="color:#b00">That is not the admin token.</p>'
            await self._page(send, 401, _LOGIN_FORM.format(note=note, action=action).encode())
            return
        secure = is_tls(scope)
        await respond(send, 303, b"", None, [
            (b"location", b"/ui"), cookie_header(SESSION_COOKIE, self.sessions.new(), SESSION_SECONDS, secure),
            cookie_header(LEGACY_COOKIE, "", 0, secure)])  # an older version's cookie held the token itself
