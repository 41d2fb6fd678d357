"""Issue 21, item 4: no extra loop hop between a commit on the writer thread and what waits for it.

A batch too large to commit on the event loop goes to the writer thread. The loop learns of the commit in one
callback, and the batch's after-commit callbacks (results handed to handlers, answers to callers) run in that
same callback: not a loop iteration later through a Future and its done-callback.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from durably.server.engine.committer import INLINE_COMMIT_ROWS, GroupCommitter
from durably.server.store.base import Batch
from durably.server.store.memory import MemoryStore


class GatedStore(MemoryStore):
    """Commits on the writer thread, each commit held until the test lets it go."""

    threaded = True

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_with: BaseException | None = None

    def commit(self, batch: Batch) -> None:
        self.entered.set()
        self.release.wait(20)
        if self.fail_with is not None:
            raise self.fail_with
        super().commit(batch)


def block_until(condition, what: str, within: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Wait without yielding to the loop, or fail."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        time.sleep(0.001)


def big_batch(c: GroupCommitter) -> None:
    # More rows than an inline commit takes: this batch goes to the writer thread.
    for i in range(INLINE_COMMIT_ROWS + 1):
        c.batch.journal.append((1, i, 1, b"x" * 100, 0))


async def test_after_commit_callbacks_run_in_the_loop_iteration_that_learns_of_a_writer_commit() -> None:
    loop = asyncio.get_running_loop()
    store = GatedStore()
    failures: list[BaseException] = []
    c = GroupCommitter(store, failures.append)
    c.start()
    ran: list[str] = []
    try:
        big_batch(c)
        c.after_commit(lambda: ran.append("acknowledged"))
        barrier = c.barrier()
        await asyncio.sleep(0)  # the scheduled flush hands the batch to the writer
        block_until(store.entered.is_set, "the writer to start the commit")
        ready = loop._ready  # type: ignore[attr-defined]  # what the loop runs in its next iteration
        queued = len(ready)
        store.release.set()
        # The loop is not running: the writer's wake-up is queued, nothing of the commit has run yet.
        block_until(lambda: len(ready) > queued, "the writer to tell the loop")
        assert ran == []
        await asyncio.sleep(0)  # one loop iteration
        assert ran == ["acknowledged"]
        assert barrier.done() and barrier.exception() is None
        assert c.commits == 1 and failures == []
    finally:
        store.release.set()
        await c.flushed()
        c.close()


async def test_a_failed_writer_commit_is_still_reported_and_nothing_acknowledged() -> None:
    store = GatedStore()
    store.fail_with = ValueError("the disk is on fire")
    failures: list[BaseException] = []
    c = GroupCommitter(store, failures.append)
    c.start()
    ran: list[str] = []
    try:
        big_batch(c)
        c.after_commit(lambda: ran.append("acknowledged"))
        store.release.set()
        deadline = time.monotonic() + 20
        while not failures:
            assert time.monotonic() < deadline, "the failure was not reported"
            await asyncio.sleep(0.005)
        assert ran == [] and c.failed is not None
    finally:
        c.close()
