"""Time for the engine: the system clock, or a virtual one that tests move by hand.

Everything in the engine that waits (durable timers, retry backoff, inactivity and abort timeouts, delayed
sends) schedules through a Clock, so a test can skip a day of sleeps at once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    """What `call_at` returns."""

    def cancel(self) -> None:
        """Do not run the callback."""


class Clock:
    """The system clock; callbacks run on the event loop."""

    def __init__(self) -> None:
        if type(self).now is Clock.now:
            # The engine reads the time several times per step: the builtin itself, without a Python frame.
            self.now = time.time  # type: ignore[method-assign]

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run `callback` on the loop once `now()` reaches `when`."""
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, when - self.now()), callback)


class _VirtualHandle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock(Clock):
    """A clock that only moves when told to. `advance` fires due callbacks in time order."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._heap: list[tuple[float, int, _VirtualHandle, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        """The virtual time."""
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Queue a callback for virtual time `when` (due ones run on the next loop iteration)."""
        handle = _VirtualHandle()
        if when <= self._now:
            asyncio.get_running_loop().call_soon(lambda: None if handle.cancelled else callback())
        else:
            heapq.heappush(self._heap, (when, next(self._seq), handle, callback))
        return handle

    def next_due(self) -> float | None:
        """When the next queued callback is due, if any."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, until: float) -> Callable[[], None] | None:
        """Move to the next callback due by `until` and return it (time stops at it), or None."""
        when = self.next_due()
        if when is None or when > until:
            return None
        _, _, _, cb = heapq.heappop(self._heap)
        self._now = max(self._now, when)
        return cb

    def set(self, when: float) -> None:
        """Move the time forward without running callbacks (use `advance` to run them)."""
        self._now = max(self._now, when)
