"""Pipelined hand-over of one partition's records: invocations created in offset order without waiting for
each other's commit, offsets handled only up to the highest one whose invocation (and every one before it) is
durably recorded.

A `StagedDeliver` (`records`) splits delivering a record in two: `begin(record)` creates its invocation at once (in the
engine's memory, so the next `begin` is ordered after it) and returns an awaitable that resolves once that
invocation is durably recorded. `PartitionPipeline` calls `begin` for the partition's buffered records in
offset order, in batches, and awaits each batch's durability in the background while it creates the next;
the store commits them together (group commit), so one partition is no longer bounded by one commit per
record.

What it keeps from the one-at-a-time hand-over:

- Order: invocations are created strictly in offset order, so an object key's invocations queue in its inbox
  in offset order, and run in that order.
- Commit after record: `part.done` (what the consumer commits, plus one) only moves over a prefix of the
  partition whose invocations are all durable; a refused record (`RecordRefused`) counts as handled in its
  place in that prefix.
- Failures: a `begin` that raises anything else stops creation at that record, which is retried with
  backoff before any later record is created. A batch whose durability fails puts every record not yet
  handled back in front of the buffer, in order, to be begun again after a backoff; the records' idempotency
  keys make the ones that were in fact recorded attach to their first invocation instead of starting another.
- Release (rebalance, stop): no new record is begun; the batches in flight get the release's grace to become
  durable, and only those count.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from durably.server.ingest.records import KafkaRecord, RecordRefused

__all__ = ["PartitionPipeline", "PipelineFeed"]


class PipelineFeed(Protocol):
    """The partition as the pipeline sees it: its buffered records and how far it got."""

    records: deque[KafkaRecord]
    wake: asyncio.Event
    releasing: asyncio.Event
    done: int | None


class PartitionPipeline:
    """Hands one partition's records to a `StagedDeliver`, keeping up to `window` records in flight."""

    def __init__(self, part: PipelineFeed, begin: Callable[[KafkaRecord], Awaitable[None]], *, window: int,
                 batch: int, refused: Callable[[KafkaRecord, RecordRefused], None],
                 failed: Callable[[KafkaRecord, BaseException, int], Awaitable[bool]],
                 delivered: Callable[[int], None], taken: Callable[[], None]) -> None:
        self.part = part
        self._begin = begin
        self._window = max(1, window)
        self._batch = max(1, batch)
        self._refused = refused
        self._failed = failed  # counts, logs, backs off; False if the partition was released meanwhile
        self._delivered = delivered
        self._taken = taken  # records left the buffer (the consumer may resume fetching)
        # Batches created, oldest first: (records, the task awaiting their durability, how many were not refused).
        self._inflight: deque[tuple[list[KafkaRecord], asyncio.Task[None], int]] = deque()
        self._count = 0
        self._failure: tuple[KafkaRecord, BaseException] | None = None

    @property
    def in_flight(self) -> int:
        """Records begun whose durability is not settled yet."""
        return self._count

    async def run(self) -> None:
        """Until the partition is released: begin records in order, settle their durability in order."""
        part = self.part
        attempt = 0
        try:
            while not part.releasing.is_set():
                if self._failure is not None:
                    record, exc = self._failure
                    self._failure = None
                    if not await self._failed(record, exc, attempt):
                        break
                    attempt += 1
                    continue
                if part.records and self._count < self._window:
                    error = self._create()
                    self._taken()
                    if error is not None:
                        if not await self._failed(*error, attempt):
                            break
                        attempt += 1
                        continue
                    attempt = 0
                    # Let the loop run what was just created (and route fetched records) before the next batch.
                    await asyncio.sleep(0)
                    continue
                part.wake.clear()
                await part.wake.wait()
            # Released: what is in flight gets the release's grace (the caller cancels us after it).
            while self._inflight:
                await asyncio.wait([task for _, task, _ in self._inflight])
                self._settle()
        finally:
            for _, task, _ in self._inflight:
                task.cancel()
            self._inflight.clear()
            self._count = 0

    def _create(self) -> tuple[KafkaRecord, BaseException] | None:
        """Begin buffered records in offset order, one batch; the record whose `begin` failed, if one did."""
        part = self.part
        records: list[KafkaRecord] = []
        waiters: list[Awaitable[None]] = []
        error: tuple[KafkaRecord, BaseException] | None = None
        while part.records and len(records) < self._batch and self._count + len(records) < self._window:
            record = part.records[0]
            try:
                waiter = self._begin(record)
            except RecordRefused as exc:
                self._refused(record, exc)
            except Exception as exc:
                error = (record, exc)
                break
            else:
                waiters.append(waiter)
            part.records.popleft()
            records.append(record)
        if records:
            task = asyncio.ensure_future(_durable(waiters))
            self._inflight.append((records, task, len(waiters)))
            self._count += len(records)
            task.add_done_callback(self._on_durable)
        return error

    def _on_durable(self, _task: asyncio.Task[None]) -> None:
        self._settle()
        self.part.wake.set()

    def _settle(self) -> None:
        """Move `done` over the finished batches at the head; on a failed one, requeue what is not handled."""
        part = self.part
        while self._inflight and self._inflight[0][1].done():
            records, task, delivered = self._inflight[0]
            exc = None if task.cancelled() else task.exception()
            if task.cancelled() or exc is not None:
                # Every record from this batch on goes back in front of the buffer, in order; the failure is
                # reported (with backoff) by the run loop before any of them is begun again.
                requeue = [r for recs, _, _ in self._inflight for r in recs]
                for _, other, _ in self._inflight:
                    if other is not task:
                        other.remove_done_callback(self._on_durable)
                        other.cancel()
                self._inflight.clear()
                self._count = 0
                if not part.releasing.is_set():
                    part.records.extendleft(reversed(requeue))
                    self._failure = (records[0], exc if exc is not None else RuntimeError("durability cancelled"))
                return
            self._inflight.popleft()
            self._count -= len(records)
            part.done = records[-1].offset
            self._delivered(delivered)


async def _durable(waiters: list[Awaitable[None]]) -> None:
    # One commit usually makes the whole batch durable: awaiting them in turn costs no task per record.
    pending = iter(waiters)
    try:
        for waiter in pending:
            await waiter
    finally:
        for waiter in pending:
            close: Any = getattr(waiter, "close", None)
            if close is not None:
                close()
