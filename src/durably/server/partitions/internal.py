"""The internal listener of a partition process: a unix socket under the data directory, never on the network.

    POST /__durably/peer           an outbox delivery from another partition -> Engine.receive_from_partition
    GET  /__durably/health         200 once this partition serves (the supervisor's readiness check)
    GET  /__durably/ui/rows        this partition's page of the UI's invocation list (partitions/uiview.py)
    GET  /__durably/ui/minutes     this partition's overview points (partitions/uiview.py)
    *    /__durably/admin/{path}   this partition's admin API (the supervisor's fan-out asks each partition)
    *    anything else             this partition's own ingress, unrouted: requests other partitions forwarded
                                   here because this partition owns them

Tokens and the Host check were applied where the request came in (the public listeners); the socket's
directory is readable by the server's user only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from durably.sdk.asgi import Receive, Send, error, lifespan, read_body, respond
from durably.server.partitions.forward import ADMIN_PREFIX, HEALTH_PATH, PEER_PATH
from durably.server.partitions.uiview import MINUTES_PATH, ROWS_PATH, minutes_to_json, rows_to_json

log = logging.getLogger("durably.partitions")

# A peer delivery is a batch of outbox entries; the engine bounds its size, this bounds a confused sender.
MAX_DELIVERY = 64 << 20


class InternalApp:
    """The ASGI app behind one partition's internal socket."""

    def __init__(self, engine: Any, ingress: Any, admin: Any, index: int,
                 group_serving: Callable[[], bool] = lambda: True) -> None:
        self.engine = engine
        self.ingress = ingress
        self.admin = admin
        self.index = index
        self.group_serving = group_serving

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == PEER_PATH:
            await self._peer(scope, receive, send)
        elif path == HEALTH_PATH:
            problem = self.engine.health_problem()
            if problem is not None:
                await error(send, 503, problem, "admin")
            else:
                # "group": whether this partition knows every partition serves (its ingress health says so).
                await respond(send, 200, json.dumps({"status": "ok", "partition": self.index,
                                                     "group": self.group_serving()}).encode())
        elif path in (ROWS_PATH, MINUTES_PATH):
            await self._ui_data(scope, send)
        elif path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"):
            inner = dict(scope)
            inner["path"] = path[len(ADMIN_PREFIX):] or "/"
            raw = scope.get("raw_path")
            if raw is not None:
                inner["raw_path"] = raw[len(ADMIN_PREFIX):] or b"/"
            await self.admin(inner, receive, send)
        else:
            await self.ingress(scope, receive, send)

    async def _ui_data(self, scope: dict[str, Any], send: Send) -> None:
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        ui = self.admin.ui
        try:
            if scope["path"] == ROWS_PATH:
                body = rows_to_json(await ui.rows(query, int(query.get("limit", "50"))))
            else:
                minutes = ui.minutes(float(query["now"]))
                body = minutes_to_json(minutes) if minutes is not None else b"[]"
        except (ValueError, KeyError) as e:
            await error(send, 400, f"bad UI query: {e}", "admin")
            return
        await respond(send, 200, body, b"application/json")

    async def _peer(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await error(send, 405, "use POST", "partition")
            return
        payload = await read_body(scope, receive, MAX_DELIVERY)
        try:
            answer = await self.engine.receive_from_partition(payload)
        except Exception as e:  # an engine that is stopping, or a delivery it cannot apply: the sender retries
            log.warning("partition %d could not take a delivery: %r", self.index, e)
            await error(send, 503, f"partition {self.index} could not take the delivery: {e}", "partition")
            return
        await respond(send, 200, answer, b"application/octet-stream")
