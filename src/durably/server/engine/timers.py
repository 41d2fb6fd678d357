"""Durable timers: rows in the store, the next window of them in a heap, fired in order.

A timer is written with the batch that creates it, so it survives restarts; one whose time passed while
the server was down fires right after the start. Only timers due within the window are held in memory.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

from durably.server.engine.clock import Clock, TimerHandle
from durably.server.engine.committer import GroupCommitter
from durably.server.store.base import Store

TimerKey = tuple[str, str, int]  # (invocation id, kind, completion id)


class TimerService:
    """Schedules `on_fire(invocation_id, kind, completion_id)` at each timer's time."""

    def __init__(self, store: Store, committer: GroupCommitter, clock: Clock, window_ms: int,
                 on_fire: Callable[[str, str, int], None]) -> None:
        self._store = store
        self._committer = committer
        self._clock = clock
        self._window_ms = window_ms
        self.on_fire = on_fire  # public: the engine wires it to the part that starts delayed invocations
        self._heap: list[tuple[int, int, str, str, int]] = []
        self._keys: set[TimerKey] = set()
        self._seq = 0
        self._handle: TimerHandle | None = None
        self._handle_at: int | None = None
        self._window_end = 0
        self._refresh: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        """Load the first window from the store."""
        self._load_window()

    def stop(self) -> None:
        """Fire nothing more."""
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
        if self._refresh is not None:
            self._refresh.cancel()

    def add(self, inv_id: str, kind: str, cid: int, fire_at_ms: int) -> None:
        """Create a timer (written with the current batch)."""
        self._committer.batch.timers_add.append((fire_at_ms, inv_id, kind, cid))
        self._committer.schedule()
        if fire_at_ms <= self._window_end:
            self._push(fire_at_ms, inv_id, kind, cid)

    def _push(self, fire_at: int, inv_id: str, kind: str, cid: int) -> None:
        key = (inv_id, kind, cid)
        if key in self._keys:
            return
        self._keys.add(key)
        self._seq += 1
        heapq.heappush(self._heap, (fire_at, self._seq, inv_id, kind, cid))
        self._arm()

    def _arm(self) -> None:
        if not self._heap or self._stopped:
            return
        first = self._heap[0][0]
        if self._handle is not None:
            if self._handle_at is not None and self._handle_at <= first:
                return
            self._handle.cancel()
        self._handle_at = first
        self._handle = self._clock.call_at(first / 1000, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._handle_at = None
        if self._stopped:
            return
        now = int(self._clock.now() * 1000)
        while self._heap and self._heap[0][0] <= now:
            _, _, inv_id, kind, cid = heapq.heappop(self._heap)
            self._keys.discard((inv_id, kind, cid))
            self._committer.batch.timers_del.append((inv_id, kind, cid))
            self._committer.schedule()
            self.on_fire(inv_id, kind, cid)
        self._arm()

    def _load_window(self) -> None:
        end = int(self._clock.now() * 1000) + self._window_ms
        for fire_at, inv_id, kind, cid in self._store.load_timers(end):
            self._push(fire_at, inv_id, kind, cid)
        self._window_end = end
        self._arm()
        self._refresh = asyncio.get_running_loop().create_task(self._next_window(end - self._window_ms // 2))

    async def _next_window(self, at_ms: int) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        handle = self._clock.call_at(at_ms / 1000, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            handle.cancel()
        # Timers created since the last load are now either in the heap or committed to the store.
        await self._committer.flushed()
        if not self._stopped:
            self._load_window()

    def pending(self) -> int:
        """Timers held in memory."""
        return len(self._heap)
