"""Where a batch commits: on the event loop while the disk is quick, on the writer thread once it is slow.

A bounded batch commits on the loop (a quick fsync costs less than two thread hops); a large one goes to the
writer thread. A commit that was slow (a disk that stalls) sends the batches after it to the writer thread, so a
slow disk holds the loop for one commit at most, and a quick commit there brings small batches back.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from durably.server.engine import committer
from durably.server.engine.committer import INLINE_COMMIT_BYTES, INLINE_COMMIT_ROWS, GroupCommitter
from durably.server.store.base import Batch
from durably.server.store.memory import MemoryStore


class DiskStore(MemoryStore):
    """A store that commits where it is told, taking `delay` seconds per commit (a disk that stalls)."""

    threaded = True

    def __init__(self) -> None:
        super().__init__()
        self.delay = 0.0
        self.threads: list[str] = []

    def commit(self, batch: Batch) -> None:
        self.threads.append("loop" if threading.current_thread() is threading.main_thread() else "writer")
        if self.delay:
            time.sleep(self.delay)  # the injected slow fsync, not a synchronisation
        super().commit(batch)


_next = iter(range(1_000_000))


async def commit_one(c: GroupCommitter, rows: int = 1, size: int = 10) -> None:
    for _ in range(rows):
        c.batch.journal.append((1, next(_next), 1, b"x" * size, 0))
    await c.barrier()


@pytest.fixture
def slow_is(monkeypatch: pytest.MonkeyPatch) -> None:
    # Far from the delays below, so that a busy test machine cannot make a quick commit look slow.
    monkeypatch.setattr(committer, "INLINE_SLOW_S", 0.1)


async def test_a_bounded_batch_commits_on_the_loop_and_a_large_one_on_the_writer(slow_is: None) -> None:
    store = DiskStore()
    c = GroupCommitter(store, lambda e: None)
    c.start()
    try:
        await commit_one(c, rows=INLINE_COMMIT_ROWS // 2)
        await commit_one(c, rows=INLINE_COMMIT_ROWS + 1)  # too many rows
        await commit_one(c, rows=2, size=INLINE_COMMIT_BYTES)  # too many bytes
        await commit_one(c)
        assert store.threads == ["loop", "writer", "writer", "loop"]
    finally:
        c.close()


async def test_a_slow_disk_holds_the_loop_for_one_commit_then_commits_go_to_the_writer(slow_is: None) -> None:
    store = DiskStore()
    c = GroupCommitter(store, lambda e: None)
    c.start()
    loop = asyncio.get_running_loop()
    try:
        await commit_one(c)
        store.delay = 0.3  # the disk stalls
        await commit_one(c)  # on the loop: that one holds it
        # The next small batch goes to the writer thread: the loop keeps running while it commits.
        ticks = 0
        pending = asyncio.ensure_future(commit_one(c))
        while not pending.done():
            ticks += 1
            await asyncio.sleep(0.01)
        await pending
        assert ticks >= 5, "the loop was held while the writer committed"
        store.delay = 0.0  # the disk is quick again: the next commit, on the writer, shows it ...
        await commit_one(c)
        await commit_one(c)  # ... and small batches come back to the loop
        assert store.threads == ["loop", "loop", "writer", "writer", "loop"]
        assert loop.is_running()
    finally:
        c.close()
