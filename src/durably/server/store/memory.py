"""An in-memory store for tests: the SQLite schema in a private in-memory database, no fsync."""

from __future__ import annotations

from durably.server.store.sqlite import SQLiteStore


class MemoryStore(SQLiteStore):
    """Same schema and SQL as the embedded store, kept in memory; nothing survives the process."""

    threaded = False

    def __init__(self) -> None:
        super().__init__(None)
