"""The SQL of invocation listings (the UI, `GET /invocations`): a page newest first by keyset, never OFFSET.

The invocations table is keyed by the creation sequence (the rowid), so the table is in creation order, and
so are the indexes on (service), (service, key) and unfinished (status), which carry the rowid. A page is a
seek into one of them however deep it is; a time range becomes a range of sequence numbers first.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from durably.server.store.base import INVOCATION_COLUMNS

if TYPE_CHECKING:
    from durably.server.store.invocation_query import InvocationFilter

SELECT_INVOCATIONS = f"SELECT {', '.join(INVOCATION_COLUMNS)} FROM invocations"


def status_term(status: str) -> str:
    """The WHERE term of a listing by status. Unfinished rows are found through their partial index (SQLite
    uses it only when the query says `status != 'completed'` itself); completed rows are not in any index by
    status: they are most rows, found in rowid order (`+status` keeps SQLite off the retention index, which
    would find them all and sort them)."""
    return "+status = ?" if status == "completed" else "status = ? AND status != 'completed'"


def invocation_page(conn: sqlite3.Connection, flt: InvocationFilter, limit: int,
                    before: tuple[int, int] | None = None) -> list[tuple[Any, ...]]:
    """Up to `limit` rows matching `flt`, newest first, strictly older than the cursor `before`."""
    where: list[str] = []
    params: list[Any] = []
    for column in ("status", "service", "handler", "key"):
        value = getattr(flt, column)
        if value:
            where.append(status_term(value) if column == "status" else f"{column} = ?")
            params.append(value)
    if flt.key:
        where.append("key != ''")  # lets SQLite use the partial index of keyed invocations
    if flt.since_ms is not None:
        where.append("created_at >= ? AND seq >= ?")
        params.extend((flt.since_ms, seq_from(conn, flt.since_ms)))
    if flt.until_ms is not None:
        where.append("created_at <= ? AND seq < ?")
        params.extend((flt.until_ms, seq_from(conn, flt.until_ms + 1)))
    if before is not None:
        # The cursor is the last row shown: (created_at, seq). Rows older than it in (created_at, seq) order;
        # the seq bound from its time keeps the scan on the index. Partitions merge their pages by the same
        # order, so a cursor from another partition's row (its seq from another sequence) pages here too.
        created, seq = before
        where.append("seq < ? AND (created_at < ? OR (created_at = ? AND seq < ?))")
        params.extend((seq_from(conn, created + 1), created, created, seq))
    sql = SELECT_INVOCATIONS
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY seq DESC LIMIT ?"
    return conn.execute(sql, (*params, limit)).fetchall()


def seq_from(conn: sqlite3.Connection, at_ms: int) -> int:
    """The first sequence number created at or after `at_ms` (past the last if none), by a binary search over
    the rowid: creation times grow with the sequence. Where the clock stepped back, a row made during the step
    may fall outside a range that names its time; the created_at terms keep every row shown inside it."""
    # Two subqueries: SQLite answers a lone min() or max() from the end of the tree, both in one by a scan.
    first, last = conn.execute("SELECT (SELECT min(seq) FROM invocations), (SELECT max(seq) FROM invocations)"
                               ).fetchone()
    if first is None:
        return 0
    lo, hi = first, last + 1  # the answer is in [lo, hi]
    probe = "SELECT seq, created_at FROM invocations WHERE seq >= ? ORDER BY seq LIMIT 1"
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.execute(probe, (mid,)).fetchone()
        if row is None:
            hi = mid
        elif row[1] >= at_ms:
            hi = min(mid, row[0])  # no row between mid and row[0]: either bound selects the same rows
        else:
            lo = row[0] + 1
    return lo
