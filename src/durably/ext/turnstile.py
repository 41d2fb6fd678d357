"""Lets a batch of parallel tool calls touch the context one at a time, in the model's order.

Frameworks run the tool calls of one model response concurrently. Each tool may journal steps through
`ctx`, and the journal must record them in the same order on every replay, so tool `i+1` starts only
after tool `i` has finished. If a tool fails, the ones after it are released and fail too, so none of
them writes to the journal after a failure the handler is about to see.
"""

from __future__ import annotations

import asyncio
import itertools


class TurnCancelled(Exception):
    """An earlier tool call of the same batch failed; this one must not run."""


class Turnstile:
    """Ordered turns for the ids of one batch (the tool call ids of one model response)."""

    def __init__(self, ids: list[str]) -> None:
        self._next = dict(itertools.pairwise(ids))
        self._events = {i: asyncio.Event() for i in ids}
        self.cancelled = False
        if ids:
            self._events[ids[0]].set()

    def __contains__(self, call_id: str) -> bool:
        return call_id in self._events

    async def wait_for(self, call_id: str) -> None:
        """Wait for `call_id`'s turn; raises TurnCancelled if an earlier call failed."""
        event = self._events.get(call_id)
        if event is not None:
            await event.wait()
        if self.cancelled:
            raise TurnCancelled(f"tool call {call_id} skipped: an earlier tool call of this turn failed")

    def allow_next_after(self, call_id: str) -> None:
        """`call_id` is done: the next one may go."""
        nxt = self._next.get(call_id)
        if nxt is not None:
            self._events[nxt].set()

    def cancel_all_after(self, call_id: str) -> None:
        """`call_id` failed: release every later call so each raises TurnCancelled."""
        self.cancelled = True
        nxt = self._next.get(call_id)
        while nxt is not None:
            self._events[nxt].set()
            nxt = self._next.get(nxt)

    def cancel_all(self) -> None:
        """Release every waiting call (the attempt is over)."""
        self.cancelled = True
        for event in self._events.values():
            event.set()
