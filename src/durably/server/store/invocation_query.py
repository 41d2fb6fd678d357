"""One page of invocations, newest first, filtered, paged by keyset (never OFFSET, never a scan per page).

Rows are ordered by (created_at, seq) descending. A page ends with a cursor "created_at.seq"; the next page
asks for rows strictly before it, which the indexes on (created_at), (status, created_at) and
(service, created_at) answer by seeking, however deep the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from durably.server.store.base import COL, INVOCATION_COLUMNS, Store

_SELECT = f"SELECT {', '.join(INVOCATION_COLUMNS)} FROM invocations"


@dataclass
class InvocationFilter:
    """What to show: every field is optional; times are ms since the epoch (creation time, inclusive)."""

    status: str | None = None
    service: str | None = None
    handler: str | None = None
    key: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


def parse_cursor(cursor: str) -> tuple[int, int]:
    """'created_at.seq' -> (created_at, seq); ValueError if malformed."""
    created, _, seq = cursor.partition(".")
    return int(created), int(seq)


def cursor_of(row: tuple[Any, ...]) -> str:
    """The cursor that pages on after this row."""
    return f"{row[COL['created_at']]}.{row[COL['seq']]}"


def page(store: Store, flt: InvocationFilter, limit: int, before: tuple[int, int] | None = None,
         ) -> list[tuple[Any, ...]]:
    """Up to `limit` invocation rows, newest first, strictly older than `before` if given."""
    where: list[str] = []
    params: list[Any] = []
    for column in ("status", "service", "handler", "key"):
        value = getattr(flt, column)
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if flt.key:
        where.append("key != ''")  # lets SQLite use the partial index of keyed invocations
    if flt.since_ms is not None:
        where.append("created_at >= ?")
        params.append(flt.since_ms)
    if flt.until_ms is not None:
        where.append("created_at <= ?")
        params.append(flt.until_ms)
    if before is not None:
        # The first term lets SQLite seek the index on created_at; the second breaks ties within one ms.
        where.append("created_at <= ? AND (created_at < ? OR seq < ?)")
        params.extend((before[0], before[0], before[1]))
    sql = _SELECT
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, seq DESC LIMIT ?"
    return store.query(sql, (*params, limit))
