"""Store faults are named (disk full, read-only, I/O error) and retried until the store commits again."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

import durably
from durably.server.engine.engine import EngineStopped
from durably.server.store import MemoryStore, SQLiteStore
from durably.server.store.base import Batch
from durably.server.store.errors import classify
from durably.server.store.ops import AddPromise, SetState
from durably.testing import TestRuntime
from durably.testing.faults import FaultyStore

svc = durably.Service("Svc")


@svc.handler()
async def twice(ctx: durably.Context, n: int) -> int:
    a = await ctx.run_typed("a", lambda: n + 1)
    return await ctx.run_typed("b", lambda: a * 2)


app = durably.app(services=[svc])


def sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    e = sqlite3.OperationalError(message)
    e.sqlite_errorcode = code  # type: ignore[attr-defined]
    return e


class FlakyStore(FaultyStore):
    """Fails commits with `error` while `broken` is set; nothing of a failed commit is written."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(MemoryStore(), crash_after_appends=10**9)
        self.error = error
        self.broken = False
        self.failures = 0
        self.retried = asyncio.Event()  # set on the second failure: the committer retried (MemoryStore
        # commits on the event loop, so setting it here is safe)

    def commit(self, batch: Batch) -> None:
        if self.broken:
            self.failures += 1
            if self.failures >= 2:
                self.retried.set()
            raise self.error
        self.inner.commit(batch)


@pytest.mark.parametrize(("error", "cause"), [
    (sqlite_error("database or disk is full", 13), "disk full"),
    (sqlite_error("attempt to write a readonly database", 8), "read-only"),
    (sqlite_error("disk I/O error", 10 | (4 << 8)), "I/O error"),
])
async def test_a_failing_store_is_named_then_recovers(error: BaseException, cause: str) -> None:
    store = FlakyStore(error)
    async with TestRuntime(app, store) as rt:
        assert await rt.call("Svc/twice", 1) == 4
        engine = rt.engine
        assert engine is not None
        store.broken = True
        waiting = asyncio.ensure_future(rt.call("Svc/twice", 5, idempotency_key="k"))
        await asyncio.wait_for(store.retried.wait(), 30)
        problem = engine.store_problem()
        assert problem is not None and f"({cause})" in problem
        with pytest.raises(EngineStopped, match=cause):
            await rt.call("Svc/twice", 7)
        assert not waiting.done()  # not acknowledged while nothing is committed
        store.broken = False
        assert await asyncio.wait_for(waiting, 30) == 12
        assert engine.store_problem() is None
        assert await rt.call("Svc/twice", 2) == 6


def test_errors_that_are_not_the_disk_stay_fatal() -> None:
    assert not classify(sqlite3.IntegrityError("UNIQUE constraint failed: journal.idx")).retryable
    assert not classify(sqlite_error("database disk image is malformed", 11)).retryable
    assert classify(OSError(28, "No space left on device")).cause == "disk full"


def test_a_failed_commit_rolls_back_and_the_store_keeps_working(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    try:
        # A promise is completed once: the second insert fails after the state write went in.
        promise = AddPromise("S", "k", "p", b"1", None, None)
        bad = Batch(ops=[SetState("S", "k", b"a", b"1"), promise, promise])
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint"):  # the cause, not a failed ROLLBACK
            store.commit(bad)
        assert store.load_state("S", "k") == {}  # nothing of the failed batch
        store.reopen_writer()  # what a retry after an I/O error does
        store.commit(Batch(ops=[SetState("S", "k", b"a", b"2")]))
        assert store.load_state("S", "k") == {b"a": b"2"}
    finally:
        store.close()
