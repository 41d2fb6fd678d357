"""Paging of the journal in the admin API's invocation description.

A journal can hold tens of thousands of entries; describing one in a single response would build a body of
many megabytes. The description carries one page (`journal_offset`, `journal_limit`) and says where the
next page starts (`journal_next_offset`), so clients such as `durably invocations describe` follow pages.
"""

from __future__ import annotations

from typing import Any

DEFAULT_JOURNAL_PAGE = 1000
MAX_JOURNAL_PAGE = 10_000
# The admin API takes small JSON bodies only (deployment registrations).


def journal_page(query: dict[str, str]) -> tuple[int, int] | str:
    """The (offset, limit) a describe request asks for, or why the query is wrong."""
    try:
        offset = int(query.get("journal_offset", "0"))
        if offset < 0:
            raise ValueError
    except ValueError:
        return "journal_offset must be an integer >= 0"
    try:
        limit = int(query.get("journal_limit", str(DEFAULT_JOURNAL_PAGE)))
        if not 1 <= limit <= MAX_JOURNAL_PAGE:
            raise ValueError
    except ValueError:
        return f"journal_limit must be an integer from 1 to {MAX_JOURNAL_PAGE}"
    return offset, limit


def journal_paging(total: int, offset: int, count: int) -> dict[str, Any]:
    """The paging fields of a description: the journal's length, this page's offset, the next page's."""
    out: dict[str, Any] = {"journal_length": total, "journal_offset": offset}
    if offset + count < total:
        out["journal_next_offset"] = offset + count
    return out
