"""The admin API (default port 9070): health, services, and invocation inspection."""

from __future__ import annotations

from typing import Any

from durably.protocol import messages as m
from durably.protocol.ids import InvocationId
from durably.sdk.vm import notification_value
from durably.server.engine import Engine
from durably.server.http import Receive, Send, error, lifespan, respond_json
from durably.server.store.base import INVOCATION_COLUMNS


def service_json(svc: Any) -> dict[str, Any]:
    """A service as the admin API shows it."""
    ty = {"service": "SERVICE", "object": "VIRTUAL_OBJECT", "workflow": "WORKFLOW"}[svc.kind]
    handlers = []
    for h in svc.handlers.values():
        entry: dict[str, Any] = {"name": h.name}
        if h.kind is not None:
            entry["ty"] = {"exclusive": "EXCLUSIVE", "shared": "SHARED", "workflow": "WORKFLOW"}[h.kind]
        if h.documentation:
            entry["documentation"] = h.documentation
        entry["public"] = not h.is_private
        handlers.append(entry)
    out: dict[str, Any] = {"name": svc.name, "ty": ty, "handlers": handlers, "public": not svc.ingress_private,
                           "deployment_id": "embedded", "revision": 1}
    if svc.description:
        out["documentation"] = svc.description
    return out


def invocation_json(row: tuple[Any, ...]) -> dict[str, Any]:
    """An invocation row as JSON."""
    out = dict(zip(INVOCATION_COLUMNS, row, strict=True))
    if out["output"] is not None:
        out["output"] = out["output"].decode("utf-8", "replace")
    return {k: v for k, v in out.items() if v is not None}


def journal_json(entries: list[tuple[int, bytes]]) -> list[dict[str, Any]]:
    """Journal entries with their type, name and result, readable by a person."""
    out = []
    for idx, (type_id, raw) in enumerate(entries):
        msg = m.decode(type_id, raw)
        entry: dict[str, Any] = {"index": idx, "type": m.type_name(type_id)}
        name = getattr(msg, "name", "")
        if name:
            entry["name"] = name
        if m.is_notification(type_id):
            value = notification_value(msg)
            which = msg.WhichOneof("id")
            entry[which or "id"] = getattr(msg, which) if which else None
            if isinstance(value, bytes):
                entry["value"] = value.decode("utf-8", "replace")
            elif value is not None and hasattr(value, "code"):
                entry["failure"] = {"code": value.code, "message": value.message}
        elif type_id == m.OUTPUT:
            if msg.WhichOneof("result") == "failure":
                entry["failure"] = {"code": msg.failure.code, "message": msg.failure.message}
            else:
                entry["value"] = msg.value.content.decode("utf-8", "replace")
        elif type_id == m.INPUT:
            entry["value"] = msg.value.content.decode("utf-8", "replace")
        out.append(entry)
    return out


class Admin:
    """The admin ASGI app."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        segs = [s for s in scope["path"].strip("/").split("/") if s]
        if segs and segs[0] in ("v2", "v3", "v4"):
            segs = segs[1:]
        method = scope["method"]
        if segs == ["health"]:
            await respond_json(send, 200, {"status": "ok"})
        elif segs == ["services"] and method == "GET":
            await respond_json(send, 200, {"services": [service_json(s) for s in self.engine.app.services.values()]})
        elif len(segs) == 2 and segs[0] == "services" and method == "GET":
            svc = self.engine.app.services.get(segs[1])
            if svc is None:
                await error(send, 404, f"service '{segs[1]}' not found")
            else:
                await respond_json(send, 200, service_json(svc))
        elif segs == ["invocations"] and method == "GET":
            rows = self.engine.store.list_invocations()
            await respond_json(send, 200, {"invocations": [invocation_json(r) for r in rows]})
        elif len(segs) == 2 and segs[0] == "invocations" and method == "GET":
            await self._describe(send, segs[1])
        else:
            await error(send, 404, "not found")

    async def _describe(self, send: Send, inv_id: str) -> None:
        try:
            InvocationId.parse(inv_id)
        except ValueError as e:
            await error(send, 400, f"malformed invocation id: {e}")
            return
        await self.engine.flushed()
        row = self.engine.store.load_invocation(inv_id)
        if row is None:
            await error(send, 404, f"invocation {inv_id} not found")
            return
        body = invocation_json(row)
        body["journal"] = journal_json(self.engine.store.load_journal(inv_id))
        await respond_json(send, 200, body)
