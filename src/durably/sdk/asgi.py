"""Small ASGI helpers shared by the SDK endpoint and the server's ingress and admin apps."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

JSON = b"application/json"


def is_cross_site(scope: Scope) -> bool:
    """Whether a browser sent this request from another site's page (Origin or Sec-Fetch-Site say so).

    Browsers send such "simple" requests (a form post, a text/plain fetch) without asking first, so an
    API that changes things must refuse them itself. Clients that are not browsers send neither header."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = headers.get("origin")
    return origin is not None and urlsplit(origin).netloc != headers.get("host", "")


class BodyTooLarge(Exception):
    """The request body exceeds the configured limit."""


class ClientDisconnected(Exception):
    """The client went away (or was disconnected by a timeout) before its request body was complete."""


async def read_body(scope: dict[str, Any], receive: Receive, limit: int,
                    reserve: Callable[[int], None] | None = None) -> bytes:
    """The whole request body; raises BodyTooLarge past `limit` bytes without buffering the rest.

    `reserve(n)` is called before n more bytes are held (the declared length at once, else chunk by chunk);
    it may raise to refuse them (a memory budget). A disconnect raises ClientDisconnected: a partial body
    is never returned.
    """
    declared = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                pass
            else:
                if declared > limit:
                    raise BodyTooLarge
    if reserve is not None and declared:
        reserve(declared)
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = msg.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            if reserve is not None and declared is None:
                reserve(len(chunk))
            chunks.append(chunk)
        if not msg.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def respond(send: Send, status: int, body: bytes = b"", content_type: bytes | None = JSON,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send a complete response."""
    hdrs = list(headers or ())
    if content_type is not None and body:
        hdrs.append((b"content-type", content_type))
    hdrs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, status: int, payload: Any,
                       headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send a JSON response."""
    await respond(send, status, json.dumps(payload).encode(), JSON, headers)


async def error(send: Send, status: int, message: str, source: str = "ingress",
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send an error in Restate's shape: `{"code", "message", "source"}` with `x-restate-error-source`."""
    await respond_json(send, status, {"code": status, "message": message, "source": source},
                       [(b"x-restate-error-source", source.encode()), *(headers or ())])


async def lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge ASGI lifespan events; the server object owns startup and shutdown."""
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
