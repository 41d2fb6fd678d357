"""One Kafka consumer per subscription: records in, `deliver` per record, offsets committed only after it.

    consumer = SubscriptionConsumer(subscription, cluster, deliver)
    consumer.start()            # a task on the running loop; returns at once
    ...
    await consumer.stop()       # finish (or abandon) in-flight deliveries, commit, leave the group

`deliver(record)` is the engine's barrier: it returns once the invocation the record produced is durably
recorded (or raises). Only then is the record counted as handled, and the partition's committed offset moves
to `offset + 1`. So a crash anywhere re-delivers at most the records whose offsets were not committed, and
the engine deduplicates those by `record.idempotency_key`: at-least-once to `deliver`, exactly once into the
log.

Ordering: each assigned partition has one worker that delivers its records strictly in offset order, one at
a time; partitions proceed in parallel. A `deliver` that is a `StagedDeliver` (it has `begin`, as the engine's
`invocation_deliver` with a `create` callback does) is pipelined instead (`pipeline.PartitionPipeline`): the
partition's invocations are created in offset order without waiting for each other's commit, and the offset
moves only over records whose invocations, and all before them, are durably recorded. A `deliver` that
raises `RecordRefused` is logged and the record is skipped (the partition is not wedged); any other exception
is retried with exponential backoff.

Rebalances: when partitions are revoked, their queued records are dropped (the next owner reads them from the
committed offset), in-flight deliveries get `revoke_timeout` to finish, and what finished is committed before
the partitions are given up. A delivery still running after that is cancelled and its offset not committed.
Lost partitions (session expired) commit nothing.

Broker trouble is a state, not a crash: the client reconnects by itself, errors are logged (rate-limited)
and counted, and if the client itself fails the consumer is recreated with backoff. The task never raises.

The Kafka client is librdkafka through `confluent-kafka` (the optional extra `durably[kafka]`), the library
Restate's own consumer (rdkafka) is built on, chosen over aiokafka because: a cluster's extra properties are
librdkafka property names in Restate (`additional_options`), so SASL/TLS settings pass through unchanged;
librdkafka implements every assignment strategy (eager, cooperative-sticky, the KIP-848 protocol) with
synchronous revoke callbacks, which is where in-flight deliveries are finished and committed; and its
reconnect, coordinator-failover and fetch-resume logic is the most exercised there is. Its calls block, so they
all run on one thread per consumer (librdkafka calls the rebalance, commit, error and statistics callbacks on
that same thread, inside `consume` and `close`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from durably.server.ingest.kafka_client import (
    KAFKA_EXTRA_HINT,
    LOG_EVERY,
    ClientLogger,
    ClientThread,
    KafkaUnavailable,
    import_kafka,
    kafka_available,
)
from durably.server.ingest.pipeline import PartitionPipeline
from durably.server.ingest.records import Deliver, KafkaRecord, RecordRefused
from durably.server.ingest.stats import ConsumerState, ConsumerStats
from durably.server.ingest.subscriptions import KafkaCluster, Subscription

__all__ = [
    "KAFKA_EXTRA_HINT",
    "ConsumerOptions",
    "Deliver",
    "KafkaUnavailable",
    "SubscriptionConsumer",
    "kafka_available",
]

log = logging.getLogger("durably.ingest")

T = TypeVar("T")

# Client error codes that mean "cannot reach the cluster" (librdkafka's local codes), not a bad request.
_UNREACHABLE = frozenset({"_ALL_BROKERS_DOWN", "_TRANSPORT", "_RESOLVE", "_TIMED_OUT", "_MSG_TIMED_OUT",
                          "_WAIT_COORD", "NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE",
                          "COORDINATOR_LOAD_IN_PROGRESS"})


@dataclass(frozen=True)
class ConsumerOptions:
    """Tuning of a subscription consumer; the defaults suit a server."""

    # Records buffered per partition before its fetching is paused (resumed at half).
    max_buffered: int = 500
    # How often handled offsets are committed (asynchronously; at revoke and stop, synchronously).
    commit_interval: float = 0.2
    poll_timeout: float = 0.1
    poll_batch: int = 500
    # A pipelined partition (a `StagedDeliver`): records begun but not yet durable at most, and per batch.
    max_in_flight: int = 1000
    begin_batch: int = 100
    # Backoff between attempts of a failing `deliver`.
    retry_initial: float = 0.05
    retry_max: float = 10.0
    # How long a rebalance waits for in-flight deliveries of revoked partitions.
    revoke_timeout: float = 30.0
    # Bounds on the final commit and on leaving the group at stop (a dead broker must not hang shutdown).
    close_timeout: float = 10.0
    # Backoff between recreations of a failed client.
    restart_initial: float = 0.2
    restart_max: float = 10.0
    # An assigned partition that is not paused, with records on the broker past what it received, that receives
    # nothing for this long while the broker is up, is stuck in the client: the client is recreated.
    stall_timeout: float = 60.0


class _Partition:
    """One assigned partition: its buffered records, its worker, and how far it got."""

    def __init__(self, topic: str, partition: int) -> None:
        self.tp = (topic, partition)
        self.records: deque[KafkaRecord] = deque()
        self.wake = asyncio.Event()
        self.releasing = asyncio.Event()
        self.done: int | None = None  # offset of the last handled record
        self.last_routed = -1
        self.paused = False
        self.task: asyncio.Task[None] | None = None
        # The stall watch: `last_routed` as last seen, and since when it has not moved with records waiting.
        self.seen_routed = -1
        self.still_since: float | None = None


class SubscriptionConsumer:
    """Consumes one subscription's topic and hands each record to `deliver`, committing after it returns."""

    def __init__(self, subscription: Subscription, cluster: KafkaCluster, deliver: Deliver,
                 options: ConsumerOptions | None = None) -> None:
        self.subscription = subscription
        self.cluster = cluster
        self.options = options or ConsumerOptions()
        self.stats = ConsumerStats(subscription.id)
        self._deliver = deliver
        self._config = subscription.consumer_config(cluster)
        self._parts: dict[tuple[str, int], _Partition] = {}
        self._requested: dict[tuple[str, int], int] = {}
        self._pause_wanted: set[tuple[str, int]] = set()
        self._resume_wanted: set[tuple[str, int]] = set()
        self._last_commit = 0.0
        self._last_logged: dict[str, float] = {}
        self._fatal: str | None = None
        self._closing = False
        self._drain_timeout = self.options.revoke_timeout
        self._stop_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: ClientThread | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> asyncio.Task[None]:
        """Start consuming on the running loop (a task that never raises); fails if the extra is missing."""
        import_kafka()
        if self._task is not None:
            raise RuntimeError(f"consumer for {self.subscription.id} already started")
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"kafka-consumer-{self.subscription.id}")
        return self._task

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop: in-flight deliveries get `drain_timeout` to finish, handled offsets are committed, the
        consumer leaves its group. Records not yet handled are read again by the next consumer of the group.
        """
        if self._task is None or self._stop_event is None:
            return
        self._drain_timeout = drain_timeout
        self.stats.state = "stopping"
        self._stop_event.set()
        bound = drain_timeout + 2 * self.options.close_timeout + 5
        try:
            await asyncio.wait_for(asyncio.shield(self._task), bound)
        except TimeoutError:
            log.warning("Kafka subscription %s: consumer did not stop within %.0f s; abandoning it",
                        self.subscription.id, bound)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for part in list(self._parts.values()):
            if part.task is not None:
                part.task.cancel()
        self._parts.clear()
        self.stats.state = "stopped"

    # ---- supervision ---------------------------------------------------------------------------------

    @property
    def _stopping(self) -> bool:
        return self._stop_event is not None and self._stop_event.is_set()

    async def _run(self) -> None:
        backoff = self.options.restart_initial
        while not self._stopping:
            try:
                await self._session()
                backoff = self.options.restart_initial
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.restarts += 1
                self.stats.last_error = f"consumer failed: {exc}"
                log.warning("Kafka subscription %s: consumer failed (%s); recreating it in %.1f s",
                            self.subscription.id, exc, backoff)
                assert self._stop_event is not None
                try:
                    await asyncio.wait_for(self._stop_event.wait(), backoff)
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, self.options.restart_max)
        self.stats.state = "stopped"

    async def _session(self) -> None:
        ck = import_kafka()
        # A thread per client: if leaving the group hangs on a dead broker, the next client does not queue
        # behind it (the old thread ends whenever that call returns).
        self._thread = ClientThread(f"kafka-{self.subscription.id}")
        try:
            await self._client_session(ck)
        finally:
            self._thread.close()

    async def _client_session(self, ck: Any) -> None:
        assert self._thread is not None
        self._fatal = None
        self._closing = False
        self._set_state("starting")
        consumer = await self._thread.call(ck.Consumer, self._client_config())
        try:
            await self._thread.call(consumer.subscribe, [self.subscription.source.topic], self._on_assign,
                                    self._on_revoke, self._on_lost)
            while not self._stopping:
                if self._fatal is not None:
                    raise RuntimeError(f"fatal Kafka client error: {self._fatal}")
                msgs = await self._thread.call(consumer.consume, self.options.poll_batch, self.options.poll_timeout)
                if msgs:
                    self._route(msgs, ck)
                await self._flow_control(consumer, ck)
                await self._commit(consumer, ck)
        finally:
            await self._close(consumer, ck)

    async def _close(self, consumer: Any, ck: Any) -> None:
        """Release every partition (bounded), commit what was handled, leave the group (bounded)."""
        assert self._thread is not None
        timeout = self._drain_timeout if self._stopping else min(self._drain_timeout, 5.0)
        offsets = await self._release(list(self._parts), timeout)
        if offsets:
            try:
                await asyncio.wait_for(self._commit_sync(consumer, ck, offsets), self.options.close_timeout)
            except Exception as exc:
                log.warning("Kafka subscription %s: final commit failed (%s); those records will be read again "
                            "and deduplicated", self.subscription.id, exc)
        self._closing = True
        try:
            await asyncio.wait_for(self._thread.call(consumer.close), self.options.close_timeout)
        except Exception as exc:
            log.warning("Kafka subscription %s: leaving the consumer group failed: %s", self.subscription.id, exc)

    def _client_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"statistics.interval.ms": "1000", "log.connection.close": "false"}
        config.update(self._config)
        # The consumer owns offsets: it commits a record's offset only after `deliver` returned.
        config.update({
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "enable.partition.eof": "false",
            "on_commit": self._on_commit,
            "error_cb": self._on_error,
            "stats_cb": self._on_stats,
            "logger": ClientLogger(),
        })
        return config

    # ---- records -------------------------------------------------------------------------------------

    def _route(self, msgs: list[Any], ck: Any) -> None:
        sub_id = self.subscription.id
        got_record = False
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != ck.KafkaError._PARTITION_EOF:
                    self._client_error(err.name(), err.str(), err.fatal())
                continue
            got_record = True
            tp = (msg.topic(), msg.partition())
            part = self._parts.get(tp)
            # Not ours (any more), or already routed: the partition's owner reads it from the committed offset.
            if part is None or part.releasing.is_set() or msg.offset() <= part.last_routed:
                continue
            part.last_routed = msg.offset()
            ts_type, ts = msg.timestamp()
            part.records.append(KafkaRecord(
                subscription_id=sub_id, topic=tp[0], partition=tp[1], offset=msg.offset(),
                timestamp_ms=ts if ts_type != ck.TIMESTAMP_NOT_AVAILABLE else None,
                key=msg.key(), value=msg.value(), headers=tuple(msg.headers() or ()),
            ))
            part.wake.set()
            self.stats.records_consumed += 1
            if not part.paused and len(part.records) >= self.options.max_buffered:
                self._pause_wanted.add(tp)
        # Only a record proves the broker reachable: a batch of nothing but client errors (all brokers down)
        # must not flip the state back to running.
        if got_record:
            self._set_state("running")

    async def _work(self, part: _Partition) -> None:
        begin = getattr(self._deliver, "begin", None)
        if begin is not None:
            await self._pipeline(part, begin).run()
            return
        while True:
            while not part.records:
                if part.releasing.is_set():
                    return
                part.wake.clear()
                await part.wake.wait()
            if part.releasing.is_set():
                return
            record = part.records.popleft()
            if not await self._deliver_one(part, record):
                return
            part.done = record.offset
            if part.paused and len(part.records) <= self.options.max_buffered // 2:
                self._resume_wanted.add(part.tp)

    def _pipeline(self, part: _Partition, begin: Callable[[KafkaRecord], Awaitable[None]]) -> PartitionPipeline:
        def delivered(n: int) -> None:
            self.stats.deliveries += n

        def taken() -> None:
            if part.paused and len(part.records) <= self.options.max_buffered // 2:
                self._resume_wanted.add(part.tp)

        return PartitionPipeline(part, begin, window=self.options.max_in_flight, batch=self.options.begin_batch,
                                 refused=self._refused, failed=lambda r, e, a: self._failed(part, r, e, a),
                                 delivered=delivered, taken=taken)

    def _refused(self, record: KafkaRecord, exc: RecordRefused) -> None:
        self.stats.refused += 1
        self.stats.last_error = f"record {record.topic}/{record.partition}@{record.offset} refused: {exc}"
        log.error("Kafka subscription %s: record %s/%d@%d refused and skipped: %s", self.subscription.id,
                  record.topic, record.partition, record.offset, exc)

    async def _deliver_one(self, part: _Partition, record: KafkaRecord) -> bool:
        """Deliver until it returns or refuses (True), or the partition is released mid-retry (False)."""
        attempt = 0
        while True:
            try:
                await self._deliver(record)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # this worker is being cancelled (release, stop)
                # A cancellation from inside `deliver` is its failure, not ours to propagate: retry.
                exc = RuntimeError("deliver was cancelled")
                if not await self._failed(part, record, exc, attempt):
                    return False
                attempt += 1
                continue
            except RecordRefused as exc:
                self._refused(record, exc)
                return True
            except Exception as exc:
                if not await self._failed(part, record, exc, attempt):
                    return False
                attempt += 1
            else:
                self.stats.deliveries += 1
                return True

    async def _failed(self, part: _Partition, record: KafkaRecord, exc: BaseException, attempt: int) -> bool:
        """Count and log a failed attempt, then back off; False if the partition was released meanwhile."""
        self.stats.delivery_errors += 1
        self.stats.last_error = f"delivering {record.topic}/{record.partition}@{record.offset}: {exc!r}"
        delay = min(self.options.retry_max, self.options.retry_initial * (2 ** min(attempt, 30)))
        # Log the first failure and then each doubling, not every retry of a long outage.
        if (attempt + 1) & attempt == 0:
            log.warning("Kafka subscription %s: delivering %s/%d@%d failed (attempt %d): %r; retrying",
                        self.subscription.id, record.topic, record.partition, record.offset, attempt + 1, exc)
        try:
            await asyncio.wait_for(part.releasing.wait(), delay)
        except TimeoutError:
            return True
        return False

    async def _flow_control(self, consumer: Any, ck: Any) -> None:
        assert self._thread is not None
        pause = [tp for tp in self._pause_wanted if tp in self._parts and not self._parts[tp].paused]
        resume = [tp for tp in self._resume_wanted if tp in self._parts and self._parts[tp].paused]
        self._pause_wanted.clear()
        self._resume_wanted.clear()
        for tps, fn, paused in ((pause, consumer.pause, True), (resume, consumer.resume, False)):
            if not tps:
                continue
            try:
                await self._thread.call(fn, [ck.TopicPartition(t, p) for t, p in tps])
            except ck.KafkaException as exc:
                self._client_error("PAUSE" if paused else "RESUME", str(exc), False)
                continue
            for tp in tps:
                if tp in self._parts:
                    self._parts[tp].paused = paused
                    (self.stats.paused.add if paused else self.stats.paused.discard)(tp)

    # ---- offsets -------------------------------------------------------------------------------------

    def _commit_due(self) -> list[tuple[str, int, int]]:
        due = []
        for tp, part in self._parts.items():
            if part.done is None:
                continue
            nxt = part.done + 1
            if nxt > self.stats.committed.get(tp, -1) and nxt != self._requested.get(tp):
                due.append((tp[0], tp[1], nxt))
        return due

    async def _commit(self, consumer: Any, ck: Any) -> None:
        now = time.monotonic()
        if now - self._last_commit < self.options.commit_interval:
            return
        self._last_commit = now
        due = self._commit_due()
        if not due:
            return
        assert self._thread is not None
        for t, p, off in due:
            self._requested[(t, p)] = off
        try:
            await self._thread.call(_commit_async, consumer, [ck.TopicPartition(t, p, off) for t, p, off in due])
        except ck.KafkaException as exc:
            for t, p, _ in due:
                self._requested.pop((t, p), None)
            self._commit_failed(str(exc))

    async def _commit_sync(self, consumer: Any, ck: Any, offsets: list[tuple[str, int, int]]) -> None:
        assert self._thread is not None
        result = await self._thread.call(_commit_sync, consumer, [ck.TopicPartition(t, p, o) for t, p, o in offsets])
        self._committed(result)

    def _committed(self, partitions: list[Any]) -> None:
        failed = []
        for tp in partitions or ():
            key = (tp.topic, tp.partition)
            if tp.error is not None:
                failed.append(f"{tp.topic}/{tp.partition}: {tp.error}")
                self._requested.pop(key, None)
            elif tp.offset >= 0 and tp.offset > self.stats.committed.get(key, -1):
                self.stats.committed[key] = tp.offset
        if failed:
            self._commit_failed("; ".join(failed))
        else:
            self.stats.commits += 1

    def _commit_failed(self, why: str) -> None:
        self.stats.commit_errors += 1
        self.stats.last_error = f"commit failed: {why}"
        if self._should_log("commit"):
            log.warning("Kafka subscription %s: committing offsets failed (%s); retrying at the next commit",
                        self.subscription.id, why)

    # ---- rebalances (called on the client thread, inside consume/close) ------------------------------

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> T | None:
        assert self._loop is not None
        try:
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        except RuntimeError:  # the loop is gone (interpreter shutdown): nothing to hand over to
            coro.close()
            return None

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self._on_loop(self._assigned([(p.topic, p.partition) for p in partitions]))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        offsets = self._on_loop(self._release(tps, self.options.revoke_timeout)) or []
        if offsets and not self._closing:
            ck = import_kafka()
            try:
                result = _commit_sync(consumer, [ck.TopicPartition(t, p, o) for t, p, o in offsets])
                self._on_loop(self._apply(self._committed, result))
            except ck.KafkaException as exc:
                self._on_loop(self._apply(self._commit_failed, f"at revoke: {exc}"))

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        # The group already gave these away: whatever finished cannot be committed by us any more.
        self._on_loop(self._release([(p.topic, p.partition) for p in partitions], 0.0))

    @staticmethod
    async def _apply(fn: Callable[..., None], *args: Any) -> None:
        fn(*args)

    async def _assigned(self, tps: list[tuple[str, int]]) -> None:
        for tp in tps:
            old = self._parts.pop(tp, None)
            if old is not None and old.task is not None:
                old.task.cancel()
            part = _Partition(*tp)
            part.task = asyncio.create_task(self._work(part), name=f"kafka-{self.subscription.id}-{tp[0]}-{tp[1]}")
            part.task.add_done_callback(self._worker_ended)
            self._parts[tp] = part
            self._requested.pop(tp, None)
            self.stats.assigned.add(tp)
        if tps:
            log.info("Kafka subscription %s: assigned %s", self.subscription.id,
                     ", ".join(f"{t}/{p}" for t, p in sorted(tps)))

    def _worker_ended(self, task: asyncio.Task[None]) -> None:
        # A worker only ends when released; if it died of a bug instead, its partition would silently stop:
        # recreate the client, which re-reads every partition from its committed offset.
        if not task.cancelled() and task.exception() is not None:
            self._fatal = f"partition worker failed: {task.exception()!r}"
            log.error("Kafka subscription %s: %s", self.subscription.id, self._fatal, exc_info=task.exception())

    async def _release(self, tps: list[tuple[str, int]], grace: float) -> list[tuple[str, int, int]]:
        """Stop the partitions' workers (in-flight deliveries get `grace` seconds); return the offsets to commit."""
        parts = [self._parts[tp] for tp in tps if tp in self._parts]
        for part in parts:
            part.records.clear()
            part.releasing.set()
            part.wake.set()
        tasks = [p.task for p in parts if p.task is not None and not p.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace) if grace > 0 else ((), set(tasks))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                log.warning("Kafka subscription %s: %d delivery(ies) still running at release were cancelled; "
                            "their records will be read again and deduplicated", self.subscription.id, len(pending))
        offsets = []
        for part in parts:
            if part.done is not None and part.done + 1 > self.stats.committed.get(part.tp, -1):
                offsets.append((part.tp[0], part.tp[1], part.done + 1))
            self._parts.pop(part.tp, None)
            self._requested.pop(part.tp, None)
            self.stats.assigned.discard(part.tp)
            self.stats.paused.discard(part.tp)
            self.stats.lag.pop(part.tp, None)
        return offsets

    # ---- client callbacks (client thread) -----------------------------------------------------------

    def _on_commit(self, err: Any, partitions: list[Any]) -> None:
        if err is not None:
            self._hand_over(self._commit_failed, str(err))
            for tp in partitions or ():
                self._hand_over(self._requested.pop, (tp.topic, tp.partition), None)
        else:
            self._hand_over(self._committed, partitions)

    def _on_error(self, err: Any) -> None:
        self._hand_over(self._client_error, err.name(), err.str(), err.fatal())

    def _on_stats(self, raw: str) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            return
        self._hand_over(self._apply_stats, data)

    def _hand_over(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass

    # ---- state, lag and errors (event loop) ----------------------------------------------------------

    def _client_error(self, name: str, text: str, fatal: bool) -> None:
        self.stats.broker_errors += 1
        self.stats.last_error = f"{name}: {text}"
        if name in _UNREACHABLE:
            self._set_state("broker-unavailable")
        if fatal:
            self._fatal = f"{name}: {text}"
        if fatal or self._should_log(name):
            log.warning("Kafka subscription %s: %s: %s%s", self.subscription.id, name, text,
                        " (fatal: the consumer will be recreated)" if fatal else " (the client keeps retrying)")

    def _apply_stats(self, data: dict[str, Any]) -> None:
        brokers = [b for b in (data.get("brokers") or {}).values() if b.get("nodeid", -1) >= 0]
        if any(b.get("state") == "UP" for b in brokers):
            if self.stats.state == "broker-unavailable":
                log.info("Kafka subscription %s: broker reachable again", self.subscription.id)
                self._set_state("running")
        elif brokers and self.stats.state == "running":
            self._set_state("broker-unavailable")
        for topic, tdata in (data.get("topics") or {}).items():
            for pid, pdata in (tdata.get("partitions") or {}).items():
                tp = (topic, int(pid))
                if tp not in self.stats.assigned:
                    continue
                hi = pdata.get("hi_offset", -1)
                committed = self.stats.committed.get(tp, pdata.get("committed_offset", -1001))
                if isinstance(hi, int) and hi >= 0 and isinstance(committed, int) and committed >= 0:
                    self.stats.lag[tp] = max(0, hi - committed)
                part = self._parts.get(tp)
                if part is not None and isinstance(hi, int) and isinstance(committed, int):
                    self._watch_stall(part, hi, committed, str(pdata.get("fetch_state", "?")), time.monotonic())

    def _watch_stall(self, part: _Partition, hi: int, committed: int, fetch_state: str, now: float) -> None:
        """Recreate the client if `part` receives nothing for `stall_timeout` while records wait for it.

        Seen once in a test run: the broker was killed just after a rebalance gave this consumer its partitions,
        and once it was back the client never fetched them again (no error, no record, the lag never fell). A
        new client reads every partition from its committed offset, as after any recreation. A partition the
        client never fetched has no high watermark in its statistics (`hi` < 0): out of the `active` fetch state
        that long, it is as stuck (seen once too, after a broker restart that came with a rebalance)."""
        unfetched = hi < 0 and fetch_state != "active"
        waiting = unfetched or hi > max(part.last_routed + 1, committed)
        if (not waiting or part.paused or part.releasing.is_set() or self.stats.state not in ("starting", "running")
                or part.last_routed != part.seen_routed):
            part.seen_routed = part.last_routed
            part.still_since = None
            return
        if part.still_since is None:
            part.still_since = now
        elif now - part.still_since >= self.options.stall_timeout and self._fatal is None:
            what = ("and the client never fetched it (high watermark unknown, " if unfetched else
                    f"with {hi - max(part.last_routed + 1, committed)} records waiting on the broker (")
            self._fatal = (f"partition {part.tp[0]}/{part.tp[1]} received nothing for {now - part.still_since:.0f} s "
                           f"{what}fetch state {fetch_state})")
            log.warning("Kafka subscription %s: %s; recreating the client", self.subscription.id, self._fatal)

    def _set_state(self, state: ConsumerState) -> None:
        # Once stopping, only `stop()` moves the state on.
        if self.stats.state not in ("stopping", "stopped"):
            self.stats.state = state

    def _should_log(self, what: str) -> bool:
        now = time.monotonic()
        if now - self._last_logged.get(what, -LOG_EVERY) >= LOG_EVERY:
            self._last_logged[what] = now
            return True
        return False


def _commit_async(consumer: Any, offsets: list[Any]) -> None:
    consumer.commit(offsets=offsets, asynchronous=True)


def _commit_sync(consumer: Any, offsets: list[Any]) -> list[Any]:
    return consumer.commit(offsets=offsets, asynchronous=False)
