"""The invocation table: the invocations held in memory, and where a journal entry is written.

An invocation is in memory while it runs or is about to (invariant 6: what waits on a timer, a
notification, its key or an operator is not). Everything written for it goes into the group committer's
current batch: its row (`mark`), journal entries (`append`), typed operations (`write`: state, promises,
waiters...). Acknowledgements wait for the commit (`after_commit`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from durably.protocol import messages as m
from durably.server.engine.clock import Clock
from durably.server.engine.committer import GroupCommitter
from durably.server.engine.invocation import COMPLETED, INBOXED, PAUSED, SCHEDULED, SUSPENDED, Invocation
from durably.server.store.base import Store
from durably.server.store.ops import StoreOp

# Statuses in which an invocation waits without an attempt and is dropped from memory.
EVICTABLE = frozenset({SUSPENDED, SCHEDULED, INBOXED, PAUSED})


class Table:
    """Implements `InvocationTable` over a store and its group committer."""

    def __init__(self, store: Store, committer: GroupCommitter, clock: Clock, tracing: Any) -> None:
        self.store = store
        self.committer = committer
        self.clock = clock
        self.tracing = tracing  # durably.server.observe.tracing.InvocationTracing, or None
        self.appends = 0
        self._active: dict[str, Invocation] = {}

    def now_ms(self) -> int:
        """The engine's clock in ms since the epoch."""
        return int(self.clock.now() * 1000)

    # ---- in memory ----

    def get(self, inv_id: str) -> Invocation | None:
        """The invocation if it is held in memory."""
        return self._active.get(inv_id)

    def activate(self, inv: Invocation) -> None:
        """Hold the invocation in memory."""
        self._active[inv.id] = inv

    def drop(self, inv: Invocation) -> None:
        """Forget a completed (and committed) invocation."""
        self._active.pop(inv.id, None)
        inv.journal = None

    def active(self) -> list[Invocation]:
        """Every invocation held in memory (a copy: the caller may change the table while it goes)."""
        return list(self._active.values())

    def count(self) -> int:
        """How many invocations are held in memory."""
        return len(self._active)

    def load_journal(self, inv: Invocation) -> None:
        """Read the invocation's journal from the store."""
        inv.journal = [(t, m.decode(t, raw)) for t, raw in self.store.load_journal(inv.id)]
        inv.journal_length = len(inv.journal)

    def load(self, inv_id: str) -> Invocation | None:
        """The invocation, from memory or (made active) from the store."""
        inv = self._active.get(inv_id)
        if inv is not None:
            return inv
        row = self.store.load_invocation(inv_id)
        if row is None:
            return None
        inv = Invocation.from_row(row)
        if inv.status != COMPLETED:
            # Loaded whole: appends made from now on go to this journal and to the store alike.
            self.load_journal(inv)
            self._active[inv_id] = inv
        return inv

    def _evict(self, inv: Invocation, version: int) -> None:
        # Invariant 6: what waits on a timer, a notification, its key or an operator is not kept in memory.
        # Only once everything written for it is committed (same version), so a reload sees it all.
        if inv.version == version and inv.attempt is None and inv.status in EVICTABLE:
            inv.journal = None
            if self._active.get(inv.id) is inv:
                del self._active[inv.id]

    # ---- writes ----

    def touch(self, inv: Invocation) -> None:
        """Something of the invocation is written with the current batch."""
        inv.version += 1
        self.committer.schedule()
        if inv.attempt is None and inv.status in EVICTABLE:
            version = inv.version
            self.committer.after_commit(lambda: self._evict(inv, version))

    def mark(self, inv: Invocation) -> None:
        """The invocation's row changed (status, retries, outcome): write it with the current batch."""
        inv.modified_at = int(self.clock.now() * 1000)
        self.committer.mark(inv)
        self.touch(inv)

    def append(self, inv: Invocation, type_id: int, msg: Message, live: Message | None = None) -> None:
        """Append a journal entry. This is where every journal entry is written (committed with the batch)."""
        # `live`: what attempts in this process see instead of `msg` (the input with its secret headers).
        now = int(self.clock.now() * 1000)
        self.committer.batch.journal.append((inv.seq, inv.journal_length, type_id, msg.SerializeToString(), now))
        if inv.journal is not None:
            inv.journal.append((type_id, msg if live is None else live))
        inv.journal_length += 1
        self.appends += 1
        if self.tracing is not None:
            self.tracing.appended(inv.id, type_id, msg, inv.journal_length - 1)
        inv.retry_count = 0
        inv.last_entry_at = now
        # Only the journal row is written: the invocation row's journal length and last-entry time are
        # refreshed whenever the row is written for a status change, and rebuilt from the journal on load.
        self.touch(inv)

    def after_commit(self, cb: Callable[[], None]) -> None:
        """Run `cb` once everything written so far is committed."""
        self.committer.after_commit(cb)

    def write(self, op: StoreOp) -> None:
        """Write a typed operation with the current batch, after those written before it."""
        self.committer.batch.ops.append(op)
        self.committer.schedule()

    def delete(self, inv_id: str) -> None:
        """Delete a completed invocation with its journal, timers and waiters."""
        self.committer.batch.deleted.append(inv_id)
        self.committer.schedule()
