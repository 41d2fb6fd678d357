"""The JSON shapes of what the operator surfaces show: services, invocations, journal entries, and the status
code an operator action answers with. The admin API answers with them; the web UI renders them. Also how
the JSON an operator sends is read (`parse_json`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from durably.protocol import messages as m
from durably.sdk.service import ServiceDefinition
from durably.sdk.vm import SIGNAL_HANDLE_BASE, notification_value
from durably.server.engine.calltree import ActionResult
from durably.server.store.base import INVOCATION_COLUMNS

# As Restate's admin API spells them (restate-server 1.7.12's GET /services); the manifest's are upper case.
_TY = {"service": "Service", "object": "VirtualObject", "workflow": "Workflow"}
_HANDLER_TY = {"exclusive": "Exclusive", "shared": "Shared", "workflow": "Workflow"}
# What an operator action did, as the status code Restate's admin API answers with.
ACTION_STATUS = {ActionResult.DONE: 200, ActionResult.ACCEPTED: 202, ActionResult.ALREADY: 200,
                 ActionResult.NOT_FOUND: 404, ActionResult.CONFLICT: 409}
_TIME_COLUMNS = ("created_at", "modified_at", "execution_time", "last_entry_at", "next_retry_at", "completed_at",
                 "retention_until")


def _ms(delta: Any) -> int | None:
    return None if delta is None else int(delta.total_seconds() * 1000)


def service_json(svc: ServiceDefinition) -> dict[str, Any]:
    """A service as the admin API shows it (Restate's ServiceMetadata fields where they apply)."""
    handlers = []
    for h in svc.handlers.values():
        entry: dict[str, Any] = {"name": h.name, "public": not h.is_private,
                                 "input_description": "none" if not h.takes_input else h.accept,
                                 "output_description": h.content_type if h.returns_output else "none"}
        if h.kind is not None:
            entry["ty"] = _HANDLER_TY[h.kind]
        if h.documentation:
            entry["documentation"] = h.documentation
        handlers.append(entry)
    out: dict[str, Any] = {
        "name": svc.name, "ty": _TY[svc.kind], "handlers": handlers, "public": not svc.ingress_private,
        "deployment_id": getattr(getattr(svc, "deployment", None), "id", "embedded"), "revision": 1,
        "inactivity_timeout": _ms(svc.inactivity_timeout), "abort_timeout": _ms(svc.abort_timeout),
        "journal_retention": _ms(svc.journal_retention), "idempotency_retention": _ms(svc.idempotency_retention),
    }
    if svc.description:
        out["documentation"] = svc.description
    if svc.metadata:
        out["metadata"] = svc.metadata
    return {k: v for k, v in out.items() if v is not None}


def list_limit(query: Mapping[str, str]) -> int | None:
    """The `limit` of an invocation listing (100 unless given), or None if it is not an integer in 1..10000."""
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        return None
    return limit if 1 <= limit <= 10_000 else None


LIST_LIMIT_ERROR = "limit must be an integer from 1 to 10000"


def iso(ms: int) -> str:
    """A time in ms since the epoch as RFC 3339 (UTC, ms)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def readable(data: bytes) -> Any:
    """A payload for people: JSON when it parses, else text."""
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def invocation_json(row: tuple[Any, ...]) -> dict[str, Any]:
    """An invocation row as JSON, times as RFC 3339."""
    out = dict(zip(INVOCATION_COLUMNS, row, strict=True))
    out["target"] = f"{out['service']}/{out['key'] + '/' if out['key'] else ''}{out['handler']}"
    if out["output"] is not None:
        out["output"] = readable(out["output"])
    for name in ("last_error", "waiting", "failure_metadata"):
        if out[name]:
            out[name] = json.loads(out[name])
    for name in _TIME_COLUMNS:
        if out[name] is not None:
            out[name] = iso(out[name])
    out.pop("seq", None)
    out.pop("inbox_seq", None)
    return {k: v for k, v in out.items() if v is not None and v != ""}


def journal_entry_json(idx: int, type_id: int, raw: bytes, appended_at: int, msg: Any = None) -> dict[str, Any]:
    """One journal entry: its type, name, result or failure, and when it was appended (`msg`: the entry
    already decoded, else it is decoded from `raw`)."""
    if msg is None:
        msg = m.decode(type_id, raw)
    entry: dict[str, Any] = {"index": idx, "type": m.type_name(type_id), "appended_at": iso(appended_at)}
    name = msg.entry_name if type_id == m.SEND_SIGNAL else getattr(msg, "name", "")
    if name:
        entry["name"] = name
    if m.is_notification(type_id):
        which = msg.WhichOneof("id")
        if which == "signal_id":
            entry["signal"] = msg.signal_id
        elif which == "signal_name":
            entry["signal"] = msg.signal_name
        elif which == "completion_id":
            entry["completion_id"] = msg.completion_id
        value = notification_value(msg)
        if isinstance(value, bytes):
            entry["value"] = readable(value)
        elif isinstance(value, str):
            entry["invocation_id"] = value
        elif isinstance(value, list):
            entry["keys"] = [k.decode("utf-8", "replace") for k in value]
        elif value is not None:
            entry["failure"] = {"code": value.code, "message": value.message}
        return entry
    if type_id == m.INPUT:
        entry["value"] = readable(msg.value.content)
    elif type_id == m.OUTPUT:
        if msg.WhichOneof("result") == "failure":
            entry["failure"] = {"code": msg.failure.code, "message": msg.failure.message}
        else:
            entry["value"] = readable(msg.value.content)
    elif type_id == m.RUN:
        entry["completion_id"] = msg.result_completion_id
    elif type_id == m.SLEEP:
        entry["wake_up_time"] = iso(msg.wake_up_time)
        entry["completion_id"] = msg.result_completion_id
    elif type_id in (m.CALL, m.ONE_WAY_CALL):
        entry["target"] = f"{msg.service_name}/{msg.key + '/' if msg.key else ''}{msg.handler_name}"
        entry["parameter"] = readable(msg.parameter)
    elif type_id in (m.SET_STATE, m.CLEAR_STATE, m.GET_EAGER_STATE, m.GET_LAZY_STATE):
        entry["key"] = msg.key.decode("utf-8", "replace")
        if type_id == m.SET_STATE:
            entry["value"] = readable(msg.value.content)
    elif type_id in (m.GET_PROMISE, m.PEEK_PROMISE, m.COMPLETE_PROMISE):
        entry["promise"] = msg.key
    elif type_id == m.COMPLETE_AWAKEABLE:
        entry["awakeable_id"] = msg.awakeable_id
    elif type_id == m.SEND_SIGNAL:
        entry["target"] = msg.target_invocation_id
        entry["signal"] = msg.idx if msg.WhichOneof("signal_id") == "idx" else msg.name
    return entry


def waiting_json(waiting: list[int | str]) -> list[str]:
    """What a suspended invocation waits for, in words: completions and signals by number or name."""
    return [f"signal '{h}'" if isinstance(h, str) else f"signal {h - SIGNAL_HANDLE_BASE}"
            if h >= SIGNAL_HANDLE_BASE else f"completion {h}" for h in waiting]


def parse_json(data: bytes | str) -> Any:
    """`json.loads` for a body an operator sent: JSON nested too deeply to read (`[[[[...`) is a ValueError
    (answered 400), not a RecursionError (which would be a 500)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply (keep it to a few hundred levels)") from None


def entry_value(type_id: int, msg: Any) -> bytes | None:
    """The user data an entry carries (a value, a parameter, an input or output), or None if it has none."""
    if m.is_notification(type_id):
        value = notification_value(msg)
        return value if isinstance(value, bytes) else None
    if type_id in (m.INPUT, m.SET_STATE):
        return msg.value.content
    if type_id == m.OUTPUT:
        return msg.value.content if msg.WhichOneof("result") == "value" else None
    if type_id in (m.CALL, m.ONE_WAY_CALL):
        return msg.parameter
    if type_id == m.GET_EAGER_STATE and msg.WhichOneof("result") == "value":
        return msg.value.content
    return None
