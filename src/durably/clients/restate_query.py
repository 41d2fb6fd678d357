"""Invocations on a Restate server, in the shape of Durably's admin API.

Restate's admin API has the same deployment, service and invocation-action endpoints as Durably's, but no
`GET /invocations[/{id}]`: it answers SQL over its system tables on `POST /query` instead. The CLI uses this module
when a server answers 404/405 to those GETs, so `durably invocations list|describe` work against both runtimes.
"""

from __future__ import annotations

import json
from typing import Any

# Durably's status names for Restate's: an invocation waiting for its key is "pending" there, "inboxed" here;
# "ready" (about to run) and "running" are both an invoked attempt.
FROM_RESTATE_STATUS = {"pending": "inboxed", "ready": "invoked", "running": "invoked"}
TO_RESTATE_STATUS = {"inboxed": ["pending"], "invoked": ["ready", "running"]}

_INVOCATION_COLUMNS = ("id, target, status, created_at, modified_at, completed_at, retry_count, idempotency_key, "
                       "completion_result, completion_failure, scheduled_start_at, next_retry_at, last_failure, "
                       "invoked_by")


def literal(value: str) -> str:
    """A SQL string literal (quotes doubled), so user input never becomes SQL."""
    return "'" + value.replace("'", "''") + "'"


def list_query(*, status: str | None = None, service: str | None = None, handler: str | None = None,
               key: str | None = None, limit: int | None = None) -> str:
    """The SQL for `GET /invocations` with these filters, newest first."""
    where = []
    if status:
        names = TO_RESTATE_STATUS.get(status, [status])
        where.append(f"status IN ({', '.join(literal(s) for s in names)})")
    for column, value in (("target_service_name", service), ("target_handler_name", handler),
                          ("target_service_key", key)):
        if value is not None:
            where.append(f"{column} = {literal(value)}")
    sql = f"SELECT {_INVOCATION_COLUMNS} FROM sys_invocation"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql


def describe_queries(invocation_id: str) -> tuple[str, str]:
    """The SQL for one invocation and for its journal."""
    lit = literal(invocation_id)
    return (f"SELECT {_INVOCATION_COLUMNS} FROM sys_invocation WHERE id = {lit}",
            f"SELECT index, entry_type, name, appended_at, entry_json FROM sys_journal WHERE id = {lit} "
            "ORDER BY index")


def invocation_json(row: dict[str, Any]) -> dict[str, Any]:
    """A sys_invocation row in the shape of Durably's `GET /invocations` items."""
    out: dict[str, Any] = {"id": row.get("id"), "target": row.get("target"),
                           "status": FROM_RESTATE_STATUS.get(row.get("status", ""), row.get("status"))}
    for name in ("created_at", "modified_at", "completed_at", "idempotency_key", "next_retry_at"):
        if row.get(name):
            out[name] = row[name]
    if row.get("scheduled_start_at"):
        out["execution_time"] = row["scheduled_start_at"]
    retries = row.get("retry_count") or 0
    out["attempts"] = retries + (0 if out["status"] in ("scheduled", "inboxed") else 1)
    if retries:
        out["retry_count"] = retries
    if row.get("completion_result") == "failure":
        out["failure_code"] = 500
        out["failure_message"] = row.get("completion_failure") or ""
    if row.get("last_failure") and "failure_code" not in out:
        out["last_error"] = {"code": 500, "message": row["last_failure"]}
    return {k: v for k, v in out.items() if v is not None}


def journal_json(row: dict[str, Any]) -> dict[str, Any]:
    """A sys_journal row as one entry of Durably's journal description."""
    entry: dict[str, Any] = {"index": row.get("index"), "type": row.get("entry_type", ""),
                             "appended_at": row.get("appended_at")}
    if row.get("name"):
        entry["name"] = row["name"]
    result = _completion_result(row.get("entry_json"))
    if result is not None:
        entry.update(result)
    return {k: v for k, v in entry.items() if v is not None}


def _completion_result(raw: str | None) -> dict[str, Any] | None:
    """The value or failure of a completion notification, from Restate's JSON rendering of the entry."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    completion = data.get("Notification", {}).get("Completion") if isinstance(data, dict) else None
    if not isinstance(completion, dict) or len(completion) != 1:
        return None
    result = next(iter(completion.values())).get("result")
    if isinstance(result, dict) and isinstance(result.get("Success"), list):
        text = bytes(result["Success"]).decode("utf-8", "replace")
        try:
            return {"value": json.loads(text)}
        except ValueError:
            return {"value": text}
    if isinstance(result, dict) and isinstance(result.get("Failure"), dict):
        failure = result["Failure"]
        return {"failure": {"code": failure.get("code"), "message": failure.get("message")}}
    return None
