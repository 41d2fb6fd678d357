"""Prometheus metrics at the admin listener's `/metrics`.

The hot path (a journal append, a commit, an ingress request) only bumps plain ints, dict entries and
fixed-bucket histograms here; nothing of prometheus-client runs per step. A custom collector turns them
into metric families when someone scrapes, and reads the gauges (invocations by status, timers, inboxes,
store size) then, from the store's indexes and the engine's memory.
"""

from __future__ import annotations

import asyncio
import os
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from durably.server.engine.engine import Engine

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_OPEN = ("scheduled", "inboxed", "invoked", "suspended", "backing-off", "paused")

# Seconds. Commits are sub-millisecond to tens of ms; ingress requests up to minutes (a call waits for its result).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# A loop iteration later than this counts as a stall (the monitor wakes every STALL_TICK_S).
STALL_TICK_S = 0.1
STALL_THRESHOLD_S = 0.05
# How often the samplers in `EngineStats.samplers` run (on the loop monitor's timer, not on the hot path).
SAMPLE_INTERVAL_S = 10.0


class Histogram:
    """A fixed-bucket histogram kept in plain Python numbers; `observe` is one bisect and two adds."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one value."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, doc: str, labels: dict[str, str] | None = None,
               family: HistogramMetricFamily | None = None) -> HistogramMetricFamily:
        """As a Prometheus histogram (cumulative buckets), added to `family` if given."""
        fam = family or HistogramMetricFamily(name, doc, labels=list(labels or {}))
        buckets, total = [], 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            total += count
            buckets.append((_fmt(bound), total))
        total += self.counts[-1]
        buckets.append(("+Inf", total))
        fam.add_metric(list((labels or {}).values()), buckets, self.sum)
        return fam


def _fmt(bound: float) -> str:
    return repr(float(bound))


class EngineStats:
    """Counters the engine bumps as it works. Keys are (service, handler)."""

    def __init__(self) -> None:
        self.started: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.completed: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.failed: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.attempts: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.retries: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.batch_rows = Histogram(BATCH_BUCKETS)
        self.commit_seconds = Histogram(LATENCY_BUCKETS)
        self.ingress_seconds = Histogram(LATENCY_BUCKETS)
        self.loop_stall_seconds = 0.0
        self.loop_stalls = 0
        self.loop_stall_max = 0.0
        self.purged = 0
        # Invocation latency (creation to completion) per service: one bisect per completed invocation.
        self.invocation_seconds: defaultdict[str, Histogram] = defaultdict(lambda: Histogram(LATENCY_BUCKETS))
        # Called by the loop monitor every SAMPLE_INTERVAL_S (the UI's overview ring samples these counters).
        self.samplers: list[Callable[[], None]] = []
        # Completed rows in the store not counted above (read once, at the first scrape), so a scrape never
        # counts a million completed rows on the event loop.
        self.completed_base: int | None = None


class LoopMonitor:
    """Measures how late the event loop wakes a sleeping task: time some handler or closure held the loop."""

    def __init__(self, stats: EngineStats) -> None:
        self.stats = stats
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin watching the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        next_sample = time.monotonic()
        while True:
            before = time.perf_counter()
            await asyncio.sleep(STALL_TICK_S)
            if time.monotonic() >= next_sample:
                next_sample = time.monotonic() + SAMPLE_INTERVAL_S
                for sample in self.stats.samplers:
                    sample()
            late = time.perf_counter() - before - STALL_TICK_S
            if late > STALL_THRESHOLD_S:
                st = self.stats
                st.loop_stalls += 1
                st.loop_stall_seconds += late
                st.loop_stall_max = max(st.loop_stall_max, late)


class TimedIngress:
    """Wraps the ingress ASGI app to count each HTTP request's latency."""

    def __init__(self, app: Any, stats: EngineStats) -> None:
        self.app = app
        self.hist = stats.ingress_seconds

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.hist.observe(time.perf_counter() - start)


def _labelled(name: str, doc: str, data: dict[tuple[str, str], int]) -> CounterMetricFamily:
    fam = CounterMetricFamily(name, doc, labels=["service", "handler"])
    for (svc, handler), n in sorted(data.items()):
        fam.add_metric([svc, handler], n)
    return fam


class EngineCollector(Collector):
    """Reads one engine's counters and state at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        """Every durably metric, built now."""
        engine = self.engine
        st = engine.stats
        if st is None:
            return
        yield _labelled("durably_invocations_started", "Invocations created.", st.started)
        yield _labelled("durably_invocations_completed", "Invocations that completed with an output.", st.completed)
        yield _labelled("durably_invocations_failed", "Invocations that completed with a failure.", st.failed)
        yield _labelled("durably_attempts", "Attempts started (first runs, resumptions and retries).", st.attempts)
        yield _labelled("durably_retries", "Attempts started again after a failed attempt.", st.retries)
        yield CounterMetricFamily("durably_journal_appends", "Journal entries written.", value=engine.appends)
        yield CounterMetricFamily("durably_commits", "Group commits (one transaction each).",
                                  value=engine.committer.commits)
        yield st.batch_rows.family("durably_commit_batch_rows", "Journal entries and invocation rows per commit.")
        yield st.commit_seconds.family("durably_commit_seconds", "Time from handing a batch to the store until "
                                       "it is committed (write and fsync).")
        store = engine.store
        sync = getattr(store, "sync_stats", None)
        if sync is not None:
            yield CounterMetricFamily("durably_fsync_seconds", "Time spent in SQLite's COMMIT (the fsync).",
                                      value=sync[1])
            yield CounterMetricFamily("durably_fsyncs", "SQLite COMMITs.", value=sync[0])
        yield st.ingress_seconds.family("durably_ingress_request_seconds", "Ingress HTTP request latency.")
        latency: HistogramMetricFamily | None = None
        for svc, hist in sorted(st.invocation_seconds.items()):
            latency = hist.family("durably_invocation_seconds", "Invocation latency, creation to completion.",
                                  {"service": svc}, latency)
        if latency is not None:
            yield latency
        yield CounterMetricFamily("durably_loop_stall_seconds", f"Time the event loop was held up by more than "
                                  f"{STALL_THRESHOLD_S * 1000:g} ms at once.", value=st.loop_stall_seconds)
        yield CounterMetricFamily("durably_loop_stalls", "Times the event loop was held up.", value=st.loop_stalls)
        yield GaugeMetricFamily("durably_loop_stall_max_seconds", "The longest stall seen.", value=st.loop_stall_max)
        by_status = GaugeMetricFamily("durably_invocations", "Invocations in the store by status.",
                                      labels=["status"])
        # Unfinished ones are few and found through the status index; completed ones are counted as they end.
        for status, n in store.count_by_status(_OPEN).items():
            by_status.add_metric([status], n)
        ended = sum(st.completed.values()) + sum(st.failed.values()) - st.purged
        if st.completed_base is None:
            counted = store.count_by_status(("completed",)).get("completed", 0)
            st.completed_base = counted - ended
        by_status.add_metric(["completed"], st.completed_base + ended)
        yield by_status
        yield GaugeMetricFamily("durably_invocations_in_memory", "Invocations held in memory (running or about to).",
                                value=engine.active_count())
        yield GaugeMetricFamily("durably_timers_pending", "Durable timers not fired yet.",
                                value=store.count_timers())
        inbox = GaugeMetricFamily("durably_inbox_depth", "Invocations queued behind a busy key, per service.",
                                  labels=["service"])
        for svc, n in sorted(engine.keys.inbox_depths().items()):
            inbox.add_metric([svc], n)
        yield inbox
        path = getattr(store, "path", None)
        size = 0
        if path is not None:
            for suffix in ("", "-wal", "-shm"):
                try:
                    size += os.stat(f"{path}{suffix}").st_size
                except OSError:
                    pass
        yield GaugeMetricFamily("durably_store_bytes", "Size of the SQLite files (database, WAL, shared memory).",
                                value=size)
        yield GaugeMetricFamily("durably_run_threads_busy", "Sync ctx.run closures running on pool threads; a "
                                "number that stays up means steps are stuck.", value=engine.run_executor.busy())
        # With --partitions N > 1 only (one process has no outbox, and its exposition stays as it was).
        outbox, inbox = engine.outbox, engine.inbox
        if outbox is not None and inbox is not None:
            yield GaugeMetricFamily("durably_partition_outbox_pending", "Messages to other partitions (calls, "
                                    "sends, results, cancels) committed and not yet acknowledged by them.",
                                    value=outbox.pending())
            yield CounterMetricFamily("durably_partition_outbox_delivered", "Messages to other partitions "
                                      "acknowledged by them since this process started.", value=outbox.delivered)
            yield CounterMetricFamily("durably_partition_inbox_applied", "Messages from other partitions applied "
                                      "(once each) since this process started.", value=inbox.applied)


def render(engine: Engine, *extra: Collector) -> bytes:
    """The Prometheus text exposition of one engine's metrics (and of `extra` collectors, e.g. Kafka's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)
