"""Group commit: every change of a tick goes into one batch, one transaction, one fsync.

Acknowledgements (run results to handlers, answers to callers, resumptions) are callbacks on the batch
that holds what they acknowledge; they run only after that batch is committed.

Where a batch commits: a batch of bounded size (rows and bytes) commits on the event loop while the disk is
quick, because a quick fsync costs less than the two thread hops to a writer thread and back (measured on a
2-core VM: 9-26% more steps/s at 32 connections, echo 3-20% more). SQLite releases the GIL while it writes and
fsyncs, so step threads run meanwhile. A larger batch (many rows, large payloads), and every batch once a commit
was slow (a disk that stalls), goes to the writer thread, and the next batch fills while it commits; a quick
commit there brings the next small batch back to the loop. So a slow disk holds the loop for one commit at
most, and the loop stall monitor names it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable

from durably.server.engine.invocation import Invocation
from durably.server.store.base import Batch, Store
from durably.server.store.errors import StoreError, classify

log = logging.getLogger("durably.commit")


INLINE_COMMIT_ROWS = 256
INLINE_COMMIT_BYTES = 64 * 1024
# A commit slower than this sends the batches after it to the writer thread until one commits quickly again.
INLINE_SLOW_S = 0.002
# The longest a commit waits for sync step results on their way (see `arriving`).
HOLD_MAX_S = 0.001
# Retrying a store that cannot commit (disk full, read-only, I/O error): first after this, doubling to the cap.
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0
# While it lasts, the outage is logged again this often (an operator tailing the log sees it is ongoing).
REMIND_S = 60.0


# Where an invocation row keeps its output, the one column of unbounded size (Invocation.to_row).
_OUTPUT = 16
# What the other columns of an invocation row, or an operation without a payload, are counted as.
_ROW_BYTES = 256


def _small(batch: Batch) -> bool:
    """Few rows and little data: cheap enough to write and fsync on the event loop."""
    if len(batch.journal) + len(batch.invocations) + len(batch.ops) > INLINE_COMMIT_ROWS:
        return False
    size = 0
    for entry in batch.journal:
        size += len(entry[3])
    for row in batch.invocations.values():
        size += _ROW_BYTES + len(row[_OUTPUT] or b"")
    for op in batch.ops:
        size += _ROW_BYTES + sum(len(v) for v in op if isinstance(v, bytes))
    return size <= INLINE_COMMIT_BYTES


class StoreFailed(RuntimeError):
    """The store could not commit; nothing more is written or acknowledged."""


class GroupCommitter:
    """Owns the current batch and the writer thread of one store."""

    def __init__(self, store: Store, on_failure: Callable[[BaseException], None]) -> None:
        self.store = store
        self.batch = Batch()
        self._dirty: dict[str, Invocation] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        # Set when a task started in this tick may still add to the batch before the tick ends (see `defer`).
        self._deferred = False
        self._committing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "durably-writer") if store.threaded else None
        self._barriers: set[asyncio.Future[None]] = set()
        self._on_failure = on_failure
        self.failed: BaseException | None = None
        # Set while the store cannot commit but may recover (disk full...): the batch that failed is kept
        # and retried with backoff; later batches wait behind it, so commit order and acknowledgements hold.
        self.unhealthy: StoreError | None = None
        self._held: Batch | None = None
        self._unhealthy_since = 0.0
        self._reminded = 0.0
        self._retry_delay = RETRY_FIRST_S
        self._retries = 0
        self._retry_handle: asyncio.TimerHandle | None = None
        self._closed = False
        self.commits = 0
        # Told (rows, seconds) after each commit: what /metrics shows of group commit.
        self.on_commit: Callable[[int, float], None] | None = None
        # Asked before a commit starts: whether results that will want a commit are about to arrive (sync step
        # closures on their threads); the commit then waits for them, a bounded time.
        self.arriving: Callable[[], bool] | None = None
        self._waiting_arrivals = False
        self._holding_since: float | None = None
        self._disk_quick = True  # the last commit took less than INLINE_SLOW_S

    def start(self) -> None:
        """Bind to the running loop."""
        self._loop = asyncio.get_running_loop()

    def mark(self, inv: Invocation) -> None:
        """The invocation's row changed: write it with the current batch."""
        self._dirty[inv.id] = inv
        self.schedule()

    def after_commit(self, cb: Callable[[], None]) -> None:
        """Run `cb` once everything written so far is committed."""
        self.batch.callbacks.append(cb)
        self.schedule()

    def barrier(self) -> asyncio.Future[None]:
        """A future resolved once everything written so far is committed (failed if the store fails)."""
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        if self.failed is not None:
            fut.set_exception(StoreFailed(str(self.failed)))
            return fut
        self._barriers.add(fut)

        def done() -> None:
            self._barriers.discard(fut)
            if not fut.done():
                fut.set_result(None)

        self.after_commit(done)
        return fut

    async def flushed(self) -> None:
        """Wait until everything written so far is committed (or the store failed)."""
        while self.failed is None and self.unhealthy is None and (
                not self.batch.empty() or self._dirty or self._committing or self._scheduled):
            self._idle.clear()
            self.schedule()
            await self._idle.wait()

    def defer(self) -> None:
        """Let what the loop already has queued run before the scheduled commit: call after creating a task.

        A new invocation's record and input need to be durable only before anything of it leaves the process
        (an answer, a message to another invocation, a step's result handed back, a timer), and all of those
        wait for a commit. Its handler's first steps were queued after the commit was: running them first lets
        an invocation that finishes without waiting (echo) commit its start and its end together, one commit
        and one fsync instead of two. Nothing is acknowledged earlier than before; invariant 5 holds (a step's
        result still reaches the handler only after the commit that holds it).
        """
        if self._scheduled:
            self._deferred = True

    def schedule(self) -> None:
        """Commit at the end of this loop iteration (everything ready in this tick goes together)."""
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._deferred:
            # Once: the tasks queued before this re-queue run first, then the commit (one loop hop later).
            self._deferred = False
            assert self._loop is not None
            self._loop.call_soon(self._flush)
            return
        self._scheduled = False
        if self._committing or self.failed is not None or self._held is not None:
            return  # the commit in flight (or the retry of a held batch) starts the next one when it is done
        if self.arriving is not None and self.arriving():
            # Their drain schedules the commit again. The wait is bounded however busy the threads stay (new
            # invocations keep posting first steps): the timer commits once it is over.
            now = time.monotonic()
            if self._holding_since is None:
                self._holding_since = now
            if now - self._holding_since < HOLD_MAX_S:
                if not self._waiting_arrivals:
                    self._waiting_arrivals = True
                    assert self._loop is not None
                    self._loop.call_later(HOLD_MAX_S, self._arrivals_due)
                return
        self._holding_since = None
        batch = self.batch
        if self._dirty:
            batch.invocations = {i: inv.to_row() for i, inv in self._dirty.items()}
            self._dirty = {}
        if batch.empty():
            self._idle.set()
            return
        self.batch = Batch()
        # A bounded batch commits right here while the disk is quick (see the module docstring); larger ones,
        # and all of them while the disk is slow, go to the writer thread so the loop keeps working meanwhile.
        start = time.perf_counter()
        if self._writer is None or (self._disk_quick and _small(batch)):
            try:
                self.store.commit(batch)
            except BaseException as e:  # a broken store must not leave callers hanging
                self._commit_failed(batch, e)
                return
            self._disk_quick = time.perf_counter() - start < INLINE_SLOW_S
            self._observe(batch, start)
            self._committed(batch)
            return
        self._commit_on_writer(batch)

    def _arrivals_due(self) -> None:
        self._waiting_arrivals = False
        self.schedule()

    def _commit_on_writer(self, batch: Batch) -> None:
        start = time.perf_counter()
        self._committing = True
        loop = self._loop
        assert loop is not None and self._writer is not None
        commit = self.store.commit
        done = self._commit_done

        def write() -> None:  # on the writer thread
            exc: BaseException | None = None
            began = time.perf_counter()
            try:
                commit(batch)
            except BaseException as e:  # told to the loop, which decides
                exc = e
            self._disk_quick = time.perf_counter() - began < INLINE_SLOW_S
            # The loop learns of the commit in this one callback, which also runs the batch's callbacks: no
            # Future whose done-callback would run them a loop iteration later.
            try:
                loop.call_soon_threadsafe(done, batch, exc, start)
            except RuntimeError:  # the loop is closed: nobody waits for the acknowledgements
                pass

        self._writer.submit(write)

    def _observe(self, batch: Batch, start: float) -> None:
        if self.on_commit is not None:
            self.on_commit(len(batch.journal) + len(batch.invocations), time.perf_counter() - start)

    def _commit_done(self, batch: Batch, exc: BaseException | None, start: float) -> None:
        self._committing = False
        if exc is not None:
            self._commit_failed(batch, exc)
            return
        if self._held is batch:
            self._recovered()
        self._observe(batch, start)
        self._committed(batch)
        self.schedule()

    def _commit_failed(self, batch: Batch, exc: BaseException) -> None:
        err = classify(exc)
        if not err.retryable:
            self._fail(err)
            return
        # Nothing of the batch was written (the transaction rolled back) and nothing of it acknowledged:
        # keep it and try again, in order, before anything newer.
        self._held = batch
        self._retries += 1
        now = time.monotonic()
        if self.unhealthy is None:
            self._unhealthy_since = self._reminded = now
            log.error("the store cannot commit (%s); writes are refused and retried until it recovers", err)
        elif err.cause != self.unhealthy.cause or now - self._reminded >= REMIND_S:
            self._reminded = now
            log.error("the store still cannot commit after %.0f s (%d retries): %s", now - self._unhealthy_since,
                      self._retries, err)
        self.unhealthy = err
        self._idle.set()  # `flushed` callers (shutdown) must not wait for a disk that may not come back
        assert self._loop is not None
        delay, self._retry_delay = self._retry_delay, min(self._retry_delay * 2, RETRY_MAX_S)
        self._retry_handle = self._loop.call_later(delay, self._retry, err)

    def _retry(self, err: StoreError) -> None:
        self._retry_handle = None
        batch = self._held
        if batch is None or self.failed is not None or self._committing or self._closed:
            return
        if err.cause == "I/O error":
            reopen = getattr(self.store, "reopen_writer", None)
            if reopen is not None:
                try:
                    reopen()
                except Exception as e:  # still broken: counted as a failed retry below
                    self._commit_failed(batch, e)
                    return
        if self._writer is None:
            try:
                self.store.commit(batch)
            except BaseException as e:
                self._commit_failed(batch, e)
                return
            self._recovered()
            self._committed(batch)
            self.schedule()
            return
        self._commit_on_writer(batch)

    def _recovered(self) -> None:
        log.warning("the store recovered after %.1f s (%d retries); writing what waited",
                    time.monotonic() - self._unhealthy_since, self._retries)
        self._held = None
        self.unhealthy = None
        self._retries = 0
        self._retry_delay = RETRY_FIRST_S

    def _committed(self, batch: Batch) -> None:
        self.commits += 1
        for cb in batch.callbacks:
            try:
                cb()
            except Exception:
                log.exception("post-commit callback failed")
        if self.batch.empty() and not self._dirty and not self._committing:
            self._idle.set()

    def fail(self, exc: BaseException) -> None:
        """Stop committing for good (the store was found unusable outside a commit, e.g. corrupt on a read)."""
        if self.failed is None and not self._closed:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        log.critical("the store failed to commit; nothing more is written: %s", exc)
        self.failed = exc
        for fut in self._barriers:
            if not fut.done():
                fut.set_exception(StoreFailed(str(exc)))
        self._barriers.clear()
        self._idle.set()
        self._on_failure(exc)

    def close(self) -> None:
        """Stop the writer thread (after `flushed`)."""
        self._closed = True
        if self._retry_handle is not None:
            self._retry_handle.cancel()
        if self._held is not None and self.failed is None:
            log.error("stopping while the store cannot commit (%s): the last writes were not committed, and "
                      "none of them was acknowledged", self.unhealthy)
        if self._writer is not None:
            self._writer.shutdown(wait=True)
