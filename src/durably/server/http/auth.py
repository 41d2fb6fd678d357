"""Optional bearer-token authentication for the ingress and the admin API (`--ingress-token`, `--admin-token`).

Restate's open-source server has none; a deployment reachable from a network needs some. Every request
except the health check must carry `Authorization: Bearer <token>`; others get 401 in Restate's error shape
before anything is read or run. The comparison takes the same time whatever the token sent, and neither
token ever reaches a log line.
"""

from __future__ import annotations

import hmac
import html
import logging
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from durably.sdk.asgi import BodyTooLarge, Receive, Send, error, is_cross_site, read_body, respond

# The web UI's login keeps the admin token in this cookie: HttpOnly (no script reads it) and
# SameSite=Strict (no other site's page makes the browser send it).
UI_COOKIE = "durably_admin_token"
_LOGIN_FORM = """<!doctype html><html><head><meta charset="utf-8"><title>Durably: sign in</title></head>
<body style="font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto">
<h1>Durably admin</h1><p>This server requires its admin token (<code>--admin-token</code>).</p>{note}
<form method="post" action="{action}"><label>Admin token <input type="password" name="token" autofocus
 required></label> <button type="submit">Sign in</button></form></body></html>"""

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
        #: Where a browser signs in (the admin's web UI); its cookie then stands for the header.
        self.login_path = login_path

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") in self.open_paths or self._allowed(scope):
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

    def _allowed(self, scope: dict[str, Any]) -> bool:
        given = b""
        cookie = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.strip().partition(b" ")
                if scheme.lower() != b"bearer":
                    given = b""
            elif name == b"cookie" and self.login_path is not None:
                morsel = SimpleCookie(value.decode("latin-1")).get(UI_COOKIE)
                cookie = morsel.value.encode("latin-1") if morsel is not None else b""
        # compare_digest: the time taken does not tell how much of the token was right.
        return self._matches(given.strip()) or (bool(cookie) and self._matches(cookie))

    def _matches(self, given: bytes) -> bool:
        return hmac.compare_digest(given, self._expected)

    async def _login(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """The UI's sign-in form: the token typed once becomes a cookie only this site's pages send."""
        html_type = b"text/html; charset=utf-8"
        action = html.escape(self.login_path or "")
        if scope["method"] != "POST":
            await respond(send, 200, _LOGIN_FORM.format(note="", action=action).encode(), html_type)
            return
        if is_cross_site(scope):
            await respond(send, 403, b"cross-site sign-in is refused", html_type)
            return
        try:
            form = parse_qs((await read_body(scope, receive, 64 * 1024)).decode("utf-8", "replace"))
        except BodyTooLarge:
            await respond(send, 413, b"sign-in form too large", html_type)
            return
        given = form.get("token", [""])[0].strip().encode()
        if not self._matches(given):
            log.info("refused a sign-in to the %s UI: wrong token", self.source)
            note = '<p style="color:#b00">That is not the admin token.</p>'
            await respond(send, 401, _LOGIN_FORM.format(note=note, action=action).encode(), html_type)
            return
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{UI_COOKIE}={given.decode()}; Path=/; HttpOnly; SameSite=Strict{secure}"
        await respond(send, 303, b"", None, [(b"location", b"/ui"), (b"set-cookie", cookie.encode("latin-1"))])
