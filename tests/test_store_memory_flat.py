"""A long-running server's store does not grow in memory with the statements it runs.

Every statement of the SQLite store runs on a cursor that reports corruption met while stepping
(store/corruption.py). sqlite3 keeps a weak reference to every cursor a connection made, and prunes the dead
ones only when cursors are made through `Connection.cursor()`; cursors built directly were never pruned, so each
statement left about 80 bytes behind for good: some 240 bytes per echo invocation, over a GB a day at a few
thousand invocations a second, and a full garbage collection that walked them all got slower and slower.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from durably.server.store import SQLiteStore
from durably.server.store.base import Batch

STATEMENTS = 20_000


def test_statements_leave_nothing_behind(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path, "OFF")
    try:
        store.commit(Batch(journal=[(1, 0, 1, b"x", 0)]))
        for _ in range(500):  # warm: caches and the first prunes
            store.load_journal("inv_1")
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(STATEMENTS):
                store.load_journal("inv_1")
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        # A leak of one weak reference per statement is over 1 MB here; what is left must not scale with them.
        assert grown < 100_000, f"{grown} bytes kept after {STATEMENTS} statements"
    finally:
        store.close()
