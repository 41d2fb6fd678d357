"""What a page of invocations asks for: the filter, and the keyset cursor that pages on (never OFFSET).

Rows are ordered newest first by their creation sequence (creation times grow with it). A page ends with a
cursor "created_at.seq"; the next page asks for rows strictly before it, which the store answers by seeking
its listing indexes, however deep the page (`Store.invocation_page`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from durably.server.store.base import COL, Store


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
    return store.invocation_page(flt, limit, before)
