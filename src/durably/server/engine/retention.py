"""How long a completed invocation (its row, output and journal) is kept before it is purged.

Settings, as restate-sdk names them, on the handler first, then its service, then the server-wide default
(`durably serve --retention`, 1 day unless set):

- `journal_retention`: how long a completed invocation stays visible with its journal (admin API, UI).
- `idempotency_retention`: for a request with an idempotency key, how long a repeat gets the stored
  result instead of running again; the invocation is kept for the longer of the two.
- `workflow_retention` (workflow main handlers): how long the run's result, state and promises are kept.

Durably keeps one deadline per invocation (row and journal go together), the longest that applies.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def _first(*values: timedelta | None) -> timedelta | None:
    return next((v for v in values if v is not None), None)


def retention_for(handler: Any, has_idempotency_key: bool, default: timedelta) -> timedelta:
    """The retention of a completed invocation of `handler` (None: a handler no longer in the app)."""
    if handler is None:
        return default
    svc = handler.service
    journal = _first(handler.journal_retention, getattr(svc, "journal_retention", None))
    if handler.kind == "workflow":
        return _first(handler.workflow_retention, journal, default)  # type: ignore[return-value]
    if has_idempotency_key:
        idem = _first(handler.idempotency_retention, getattr(svc, "idempotency_retention", None))
        if idem is not None or journal is not None:
            return max(v for v in (idem, journal) if v is not None)
    return journal if journal is not None else default
