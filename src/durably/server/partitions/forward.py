"""Carrying requests between partition processes over their internal unix sockets.

`Forwarder` hands an ingress (or admin) request, as it came, to another partition's internal listener and
streams the answer back with its status and headers, so the caller cannot tell which process answered. An
owner that cannot be reached (it is starting or restarting) is answered 503 in Restate's shape with
`retry-after`: the request was not delivered, nothing was created, and a retry (with its idempotency key) is
safe.

`UdsPeerLink` is the `PeerLink` (server/partitions/link.py) the engine delivers its outbox through: a POST of
opaque bytes to the peer's internal listener, answered by the peer engine's `receive_from_partition`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from durably.sdk.asgi import ClientDisconnected, Receive, Send, error
from durably.server.partitions.layout import reachable_path, socket_path
from durably.server.partitions.link import PeerUnreachable
from durably.server.partitions.uds_http import HOP_BY_HOP, UdsClient, UdsUnreachable

log = logging.getLogger("durably.partitions")
# httpx logs every request at info: one line per forwarded request or health probe would drown the log.
logging.getLogger("httpx").setLevel(logging.WARNING)

PEER_PATH = "/__durably/peer"
ADMIN_PREFIX = "/__durably/admin"
HEALTH_PATH = "/__durably/health"
_CONNECT_TIMEOUT_S = 2.0


def client_for(path: Path, max_connections: int = 512) -> httpx.AsyncClient:
    """An HTTP client of one partition's internal listener. No read timeout: an attach waits as long as the
    invocation runs, exactly as it does when the caller talks to the owner directly."""
    transport = httpx.AsyncHTTPTransport(uds=reachable_path(path), retries=0,
                                         limits=httpx.Limits(max_connections=max_connections,
                                                             max_keepalive_connections=64))
    return httpx.AsyncClient(transport=transport, base_url="http://partition",
                             timeout=httpx.Timeout(None, connect=_CONNECT_TIMEOUT_S))


class Clients:
    """Per partition's internal socket, made on first use: a lean client for the hot paths (forwarded requests and
    outbox deliveries, `uds`) and an httpx client for the admin fan-out (`get`)."""

    def __init__(self, data_dir: Path, count: int, keep_alive_timeout: float = 5.0) -> None:
        self.data_dir = data_dir
        self.count = count
        # Pooled connections are dropped well before the listeners' keep-alive timeout (the same setting in
        # every partition) could close them under a request.
        self.idle_s = min(0.5, keep_alive_timeout / 2)
        self._clients: dict[int, httpx.AsyncClient] = {}
        self._uds: dict[int, UdsClient] = {}

    def get(self, partition: int) -> httpx.AsyncClient:
        """The httpx client of `partition`'s internal listener."""
        client = self._clients.get(partition)
        if client is None:
            client = self._clients[partition] = client_for(socket_path(self.data_dir, partition))
        return client

    def uds(self, partition: int) -> UdsClient:
        """The lean client of `partition`'s internal listener (server/partitions/uds_http.py)."""
        client = self._uds.get(partition)
        if client is None:
            client = self._uds[partition] = UdsClient(reachable_path(socket_path(self.data_dir, partition)),
                                                      idle_s=self.idle_s, connect_timeout_s=_CONNECT_TIMEOUT_S)
        return client

    async def close(self) -> None:
        """Close every pooled connection."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()
        lean, self._uds = self._uds, {}
        for uds in lean.values():
            await uds.aclose()


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            # Raised, not a silent end: a chunked body that just stopped would reach the owner as a whole one.
            raise ClientDisconnected("the caller went away before its request body was complete")
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _target(scope: dict[str, Any], prefix: str) -> str:
    raw = scope.get("raw_path") or scope["path"].encode()
    path = prefix + raw.decode("latin-1").split("?", 1)[0]
    qs = scope.get("query_string", b"")
    return path + ("?" + qs.decode("latin-1") if qs else "")


async def stream(client: UdsClient, scope: dict[str, Any], receive: Receive, send: Send, prefix: str = "",
                 source: str = "ingress", who: str = "the partition that owns this request") -> None:
    """Send the request in `scope` to `client` (its path under `prefix`) and stream the answer back as it is."""
    method = scope["method"]
    has_body = method not in ("GET", "HEAD", "DELETE") or any(
        k.lower() in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])
    try:
        response = await client.request(method, _target(scope, prefix), scope["headers"],
                                        _body(receive) if has_body else None)
    except ClientDisconnected:
        log.debug("the caller of a request for %s went away while sending it", who)
        return  # the owner saw a broken request; nobody is left to answer
    except UdsUnreachable as e:
        # Not delivered (or the owner died before answering): the caller retries, with its idempotency key.
        log.debug("forward to %s failed: %s", who, e)
        await error(send, 503, f"{who} is not serving (starting or restarting); retry in a moment", source,
                    [(b"retry-after", b"1")])
        return
    try:
        out = [(k, v) for k, v in response.headers if k.lower() not in HOP_BY_HOP]
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        async for chunk in response.chunks():  # none for HEAD
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        response.close()


class Forwarder:
    """Forwards ingress requests to their owner's internal listener (see `PartitionRouter`)."""

    def __init__(self, clients: Clients) -> None:
        self.clients = clients

    async def __call__(self, partition: int, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await stream(self.clients.uds(partition), scope, receive, send, who=f"partition {partition}, which owns "
                     "this request,")


class UdsPeerLink:
    """`PeerLink` over the partitions' internal unix sockets."""

    def __init__(self, clients: Clients) -> None:
        self.clients = clients

    async def deliver(self, partition: int, payload: bytes) -> bytes:
        """Hand `payload` to partition `partition`'s engine and return its answer; PeerUnreachable if it is down."""
        if not 0 <= partition < self.clients.count:
            raise ValueError(f"no partition {partition}: there are {self.clients.count}")
        try:
            response = await self.clients.uds(partition).request("POST", PEER_PATH, [], payload)
            try:
                body = await response.read()
            finally:
                response.close()
        except UdsUnreachable as e:
            raise PeerUnreachable(f"partition {partition} is not reachable: {e}") from None
        if response.status_code == 503:
            raise PeerUnreachable(f"partition {partition} is stopping or starting: {body.decode(errors='replace')}")
        if response.status_code != 200:
            raise RuntimeError(f"partition {partition} refused a delivery ({response.status_code}): "
                               f"{body.decode(errors='replace')}")
        return body
