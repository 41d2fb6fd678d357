"""Optional bearer-token authentication for the ingress and the admin API (`--ingress-token`, `--admin-token`).

Restate's open-source server has none; a deployment reachable from a network needs some. Every request
except the health check must carry `Authorization: Bearer <token>`; others get 401 in Restate's error shape
before anything is read or run. The comparison takes the same time whatever the token sent, and neither
token ever reaches a log line.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from durably.asgi import Receive, Send, error

log = logging.getLogger("durably.auth")


class BearerAuth:
    """Wraps an ASGI app: requests need `Authorization: Bearer <token>`, except `open_paths`."""

    def __init__(self, app: Any, token: str, source: str, open_paths: frozenset[str]) -> None:
        if not token:
            raise ValueError("an empty token would let everyone in")
        self.app = app
        self._expected = token.encode()
        self.source = source
        self.open_paths = open_paths

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") in self.open_paths or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        log.info("refused %s %s on the %s: missing or wrong bearer token", scope["method"], scope["path"][:200],
                 self.source)
        await error(send, 401, f"this {self.source} requires 'Authorization: Bearer <token>'", self.source,
                    [(b"www-authenticate", b'Bearer realm="durably"')])

    def _allowed(self, scope: dict[str, Any]) -> bool:
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.strip().partition(b" ")
                if scheme.lower() != b"bearer":
                    given = b""
                break
        # compare_digest: the time taken does not tell how much of the token was right.
        return hmac.compare_digest(given.strip(), self._expected)
