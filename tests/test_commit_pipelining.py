"""Issue 21: the group committer keeps the loop and the disk busy at the same time.

Every step's result waits for the commit that holds it, so a commit wakes every handler it acknowledges and
their next steps all wait for the next commit. With one commit per wake-up the loop and the disk work in
turns. When the loop's work on a commit's acknowledgements takes longer than a commit, the committer starts
the next commit halfway through them; when the disk is the slower one it does not (halves would only double
the commits). Both times are measured as the server runs; here a fake clock makes them exact.
"""

from __future__ import annotations

import asyncio
import threading
import types

import pytest

from durably.server.engine import committer as committer_mod
from durably.server.engine.committer import PIPELINE_AFTER, GroupCommitter
from durably.server.store.base import Batch
from durably.server.store.memory import MemoryStore


class FakeTime:
    """`time` for the committer: perf_counter moves only when the test says, on each thread by itself (the
    loop's work and the writer's commits take the time they are given, however the threads interleave)."""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def now(self) -> float:
        return getattr(self._local, "now", 1000.0)

    @now.setter
    def now(self, value: float) -> None:
        self._local.now = value

    def perf_counter(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


class TimedStore(MemoryStore):
    """Commits on the writer thread; each commit 'takes' `commit_s` of the fake clock and is recorded."""

    threaded = True

    def __init__(self, clock: FakeTime, commit_s: float) -> None:
        super().__init__()
        self.clock = clock
        self.commit_s = commit_s
        self.sizes: list[int] = []

    def commit(self, batch: Batch) -> None:
        self.clock.now += self.commit_s
        self.sizes.append(len(batch.journal))
        super().commit(batch)


async def run_handlers(monkeypatch: pytest.MonkeyPatch, commit_s: float, step_s: float, handlers: int = 20,
                       steps: int = 30) -> tuple[TimedStore, GroupCommitter]:
    """`handlers` loops of `steps` journaled steps; each step costs the loop `step_s` and waits for its commit."""
    clock = FakeTime()
    monkeypatch.setattr(committer_mod, "time", types.SimpleNamespace(perf_counter=clock.perf_counter,
                                                                     monotonic=clock.monotonic))
    store = TimedStore(clock, commit_s)
    c = GroupCommitter(store, lambda e: None)
    c.start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    left = {h: steps for h in range(handlers)}

    def step(h: int) -> None:
        clock.now += step_s  # the handler's work until its next write
        left[h] -= 1
        c.batch.journal.append((h, steps - left[h], 1, b"x" * 50, 0))
        c.after_commit(lambda: wake(h))

    def wake(h: int) -> None:
        # As a woken handler task: it runs in a later loop iteration, in the order it was woken.
        if left[h]:
            loop.call_soon(step, h)
        elif not any(left.values()):
            done.set()

    for h in range(handlers):
        loop.call_soon(step, h)
    await asyncio.wait_for(done.wait(), 30)
    await c.flushed()
    c.close()
    return store, c


async def test_a_loop_slower_than_the_disk_commits_in_two_halves(monkeypatch: pytest.MonkeyPatch) -> None:
    # 20 handlers at 0.2 ms each: 4 ms of loop work per round, against 1 ms commits.
    store, c = await run_handlers(monkeypatch, commit_s=0.001, step_s=0.0002)
    assert sum(store.sizes) == 20 * 30, "every step is committed exactly once"
    assert c.pipelined > 0
    steady = store.sizes[len(store.sizes) // 2:-1]
    # Once measured, the next commit starts halfway through a commit's acknowledgements: it holds the first
    # half of the woken handlers' steps and what the second half of the previous round wrote meanwhile.
    assert max(steady) <= 15, store.sizes
    assert len(store.sizes) > 1.4 * 30, store.sizes


async def test_a_disk_slower_than_the_loop_keeps_one_commit_per_round(monkeypatch: pytest.MonkeyPatch) -> None:
    # 20 handlers at 0.05 ms each: 1 ms of loop work per round, against 10 ms commits.
    store, c = await run_handlers(monkeypatch, commit_s=0.010, step_s=0.00005)
    assert sum(store.sizes) == 20 * 30
    assert c.pipelined == 0
    assert store.sizes[1:] == [20] * (len(store.sizes) - 1), store.sizes


async def test_few_acknowledgements_are_never_split(monkeypatch: pytest.MonkeyPatch) -> None:
    store, c = await run_handlers(monkeypatch, commit_s=0.0001, step_s=0.01, handlers=PIPELINE_AFTER - 1)
    assert sum(store.sizes) == (PIPELINE_AFTER - 1) * 30
    assert c.pipelined == 0
