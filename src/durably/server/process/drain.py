"""Draining an embedded server: it stops taking new invocations from outside while the ones it has finish.

Used to move to a Restate cluster (docs/scaling.md): start `durably serve --drain` on the old data directory, point
callers at the cluster, and stop the old server once `durably invocations list` shows nothing unfinished. Calls
and sends made by running handlers still go through (they belong to the work being finished), and so do
attach, output and awakeable requests; only `POST /{Service}/...` from outside is refused, with 503.
"""

from __future__ import annotations

from typing import Any

from durably.sdk.asgi import Receive, Send, error


class DrainingIngress:
    """Wraps the ingress: new invocations get 503, everything under /restate/ passes."""

    def __init__(self, ingress: Any) -> None:
        self.ingress = ingress

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope["path"].startswith("/restate/"):
            await error(send, 503, "this server is draining: it finishes the invocations it has and takes no new "
                                   "ones; send new invocations to its successor")
            return
        await self.ingress(scope, receive, send)
