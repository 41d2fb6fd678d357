"""The last hour of the server in a bounded ring of samples, for the UI's overview page.

A sample copies the counters `/metrics` reads (EngineStats: invocations started, completed, failed, the
per-service latency histograms, loop stalls), the backlog by status from the status index, and the step
threads' state. It is taken on the loop monitor's timer every `SAMPLE_INTERVAL_S` (10 s), never on the hot
path; the ring keeps an hour of them (`RING_SIZE`). `per_minute` turns the samples into per-minute series.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from durably.server.observe.metrics import LATENCY_BUCKETS, SAMPLE_INTERVAL_S

if TYPE_CHECKING:
    from durably.server.engine.engine import Engine

BACKLOG = ("inboxed", "backing-off", "paused", "suspended")
WINDOW_S = 3600
RING_SIZE = int(WINDOW_S / SAMPLE_INTERVAL_S) + 1


@dataclass
class Sample:
    """The counters at one time (cumulative ones as they were; gauges as they are)."""

    at: float  # seconds since the epoch
    started: int
    completed: int
    failed: int
    latency: dict[str, list[int]]  # service -> cumulative bucket counts of LATENCY_BUCKETS (+ overflow)
    backlog: dict[str, int]
    threads_busy: int
    threads_stuck: int
    loop_stalls: int


@dataclass
class Minute:
    """One minute of the overview's charts."""

    start: float
    started: int = 0
    completed: int = 0
    failed: int = 0
    latency: dict[str, list[int]] = field(default_factory=dict)  # bucket counts in this minute
    backlog: dict[str, int] = field(default_factory=dict)  # the last sample's
    threads_stuck: int = 0  # the most seen
    threads_busy: int = 0
    loop_stalls: int = 0
    sampled: bool = False  # a sample fell in this minute (the server was up and sampling)


def quantile(counts: list[int], q: float) -> float | None:
    """The upper bound (s) of the bucket that holds quantile `q` of `counts` (None if empty)."""
    total = sum(counts)
    if not total:
        return None
    running = 0
    for i, n in enumerate(counts):
        running += n
        if running >= q * total:
            return LATENCY_BUCKETS[i] if i < len(LATENCY_BUCKETS) else LATENCY_BUCKETS[-1] * 2
    return None


class Overview:
    """The ring of samples of one engine."""

    def __init__(self, engine: Engine, clock: object = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self.ring: deque[Sample] = deque(maxlen=RING_SIZE)
        if engine.stats is not None:
            engine.stats.samplers.append(self.sample)

    def sample(self) -> None:
        """Take one sample now (the loop monitor calls this every SAMPLE_INTERVAL_S)."""
        st = self.engine.stats
        if st is None:
            return
        threads = self.engine.run_executor.status()
        monitor = self.engine.loop_stalls
        self.ring.append(Sample(
            at=self.clock(),  # type: ignore[operator]
            started=sum(st.started.values()), completed=sum(st.completed.values()), failed=sum(st.failed.values()),
            latency={svc: list(h.counts) for svc, h in st.invocation_seconds.items()},
            backlog=self.engine.store.count_by_status(BACKLOG),
            threads_busy=threads["busy"], threads_stuck=threads["stuck"],
            loop_stalls=monitor.stalls if monitor is not None else st.loop_stalls))

    def per_minute(self, now: float | None = None) -> list[Minute]:
        """The last hour as 60 minutes, oldest first: counts are what happened in the minute."""
        now = self.clock() if now is None else now  # type: ignore[operator]
        first = (now // 60 - 59) * 60
        minutes = [Minute(first + 60 * i) for i in range(60)]
        prev: Sample | None = None
        for s in self.ring:
            i = int((s.at - first) // 60)
            if 0 <= i < 60:
                mm = minutes[i]
                mm.backlog = s.backlog
                mm.sampled = True
                mm.threads_stuck = max(mm.threads_stuck, s.threads_stuck)
                mm.threads_busy = max(mm.threads_busy, s.threads_busy)
                if prev is not None:
                    mm.started += s.started - prev.started
                    mm.completed += s.completed - prev.completed
                    mm.failed += s.failed - prev.failed
                    mm.loop_stalls += max(0, s.loop_stalls - prev.loop_stalls)
                    for svc, counts in s.latency.items():
                        before = prev.latency.get(svc, [0] * len(counts))
                        acc = mm.latency.setdefault(svc, [0] * len(counts))
                        for k, n in enumerate(counts):
                            acc[k] += n - before[k]
            prev = s
        return minutes
