"""The storage interface the engine writes through, one batch (one transaction) at a time."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from durably.server.store.invocation_query import InvocationFilter

from durably.server.store.ops import AttemptRecord, DeploymentRecord, LinkRecords, StoreOp

# Columns of the invocations table, in order; rows travel as tuples in this order.
INVOCATION_COLUMNS = (
    "id", "service", "handler", "key", "status", "idempotency_key", "created_at", "modified_at",
    "execution_time", "attempts", "retry_count", "last_entry_at", "next_retry_at", "last_error",
    "journal_length", "waiting", "output", "failure_code", "failure_message", "failure_metadata",
    "completed_at", "retention_until", "inbox_seq", "seq",
)
COL = {name: i for i, name in enumerate(INVOCATION_COLUMNS)}


@dataclass
class Batch:
    """Everything one group commit writes. Callbacks run on the event loop after the commit."""

    invocations: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # (invocation seq, index, type id, encoded entry, appended at ms)
    journal: list[tuple[int, int, int, bytes, int]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # (fire_at ms, invocation id, kind, completion id) to add; (invocation id, kind, completion id) to drop.
    timers_add: list[tuple[int, str, str, int]] = field(default_factory=list)
    timers_del: list[tuple[str, str, int]] = field(default_factory=list)
    # Typed operations (state, promises, waiters, calls, deployments, rules), written in order after the rows above.
    ops: list[StoreOp] = field(default_factory=list)
    callbacks: list[Callable[[], None]] = field(default_factory=list)

    def empty(self) -> bool:
        """Nothing to write and nobody waiting."""
        return not (self.invocations or self.journal or self.deleted or self.callbacks or self.timers_add
                    or self.timers_del or self.ops)


class Store(ABC):
    """Durable storage of invocations and journals.

    `commit` may run on a writer thread; every other method runs on the event loop. The engine only
    reads what it has already committed, so readers never see half a batch.
    """

    #: Whether commit blocks on I/O and should run off the event loop.
    threaded: bool = False
    #: Set, once and for good, when the store finds its database damaged: what is wrong and how to restore.
    corruption: str | None = None
    #: Set while the store checks its database for damage after the server started (large databases).
    checking: str | None = None
    #: Told that message when corruption is found (from any thread); the engine stops writing and health says it.
    on_corrupt: Callable[[str], None] | None = None

    @abstractmethod
    def commit(self, batch: Batch) -> None:
        """Write a batch atomically (and durably, if the store is durable)."""

    @abstractmethod
    def load_invocation(self, invocation_id: str) -> tuple[Any, ...] | None:
        """One invocation row, or None."""

    @abstractmethod
    def load_journal(self, invocation_id: str) -> list[tuple[int, bytes]]:
        """An invocation's journal as (type id, encoded entry), in order."""

    @abstractmethod
    def unfinished(self, statuses: Sequence[str] | None = None, keyed: bool = False) -> list[tuple[Any, ...]]:
        """Rows of invocations that are not completed: of `statuses` only if given, with a key only if `keyed`."""

    @abstractmethod
    def list_invocations(self, status: str | None = None, limit: int = 100) -> list[tuple[Any, ...]]:
        """Invocation rows, newest first, optionally of one status."""

    @abstractmethod
    def expired(self, now_ms: int, limit: int = 1000) -> list[str]:
        """Ids of completed invocations whose retention has passed."""

    @abstractmethod
    def load_timers(self, until_ms: int) -> list[tuple[int, str, str, int]]:
        """Timers due by `until_ms`, earliest first, as (fire_at, invocation id, kind, completion id)."""

    @abstractmethod
    def journal_rows(self, invocation_id: str, offset: int = 0,
                     limit: int | None = None) -> list[tuple[int, int, bytes, int]]:
        """The journal as (index, type id, encoded entry, appended at ms), in order, from index `offset`,
        at most `limit` entries (all if None)."""

    @abstractmethod
    def max_seq(self) -> int:
        """The highest invocation sequence number in use (0 if none)."""

    @abstractmethod
    def load_state(self, service: str, key: str) -> dict[bytes, bytes]:
        """All state of one object or workflow key."""

    # Bounded state reads: a key may hold very many state names. These defaults go through load_state; a
    # backend answers them from its index instead.

    def state_value(self, service: str, key: str, name: bytes) -> bytes | None:
        """One state value of a key, or None."""
        return self.load_state(service, key).get(name)

    def state_names(self, service: str, key: str) -> list[bytes]:
        """Every state name of a key, in order."""
        return sorted(self.load_state(service, key))

    def state_page(self, service: str, key: str, after: bytes | None, limit: int,
                   max_bytes: int) -> list[tuple[bytes, bytes]]:
        """State entries of a key in name order, strictly after `after`: at most `limit` entries, and no more
        once names and values reach `max_bytes` (the entry that crosses it is included: a page is never
        empty while entries remain)."""
        out: list[tuple[bytes, bytes]] = []
        size = 0
        for name, value in sorted(self.load_state(service, key).items()):
            if after is not None and name <= after:
                continue
            if len(out) >= limit or (out and size >= max_bytes):
                break
            out.append((name, value))
            size += len(name) + len(value)
        return out

    @abstractmethod
    def load_promise(self, service: str, key: str, name: str) -> tuple[bytes | None, int | None, str | None] | None:
        """A completed promise as (value, failure code, failure message), or None if not completed."""

    @abstractmethod
    def load_waiters(self) -> list[tuple[str, str, int, int]]:
        """Every registered waiter: (target, waiting invocation, completion id, notification type)."""

    def waiters_of(self, target: str) -> list[tuple[str, int, int]]:
        """Who waits on one target: (waiting invocation, completion id, notification type), in order."""
        return [(inv_id, cid, type_id) for t, inv_id, cid, type_id in self.load_waiters() if t == target]

    @abstractmethod
    def load_deployments(self) -> list[DeploymentRecord]:
        """Every registered deployment, oldest first."""

    @abstractmethod
    def load_concurrency_rules(self) -> dict[str, int | None]:
        """The concurrency rules changed over the admin API (pattern -> limit, None: deleted); {} if none."""

    @abstractmethod
    def load_subscriptions(self) -> list[dict[str, Any]]:
        """Every Kafka subscription as stored (`Subscription.to_json()`), oldest first."""

    def load_links(self) -> LinkRecords:
        """What this partition keeps of its links to the others (server/engine/crossing/outbox.py); none by default."""
        return LinkRecords([], 0, {})

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    # Operator queries: what the admin API, the web UI and /metrics ask of the store.

    @abstractmethod
    def invocation_page(self, flt: InvocationFilter, limit: int,
                        before: tuple[int, int] | None = None) -> list[tuple[Any, ...]]:
        """Up to `limit` invocation rows matching `flt`, newest first by creation sequence, strictly older
        than the (created_at, seq) cursor `before` if given (its seq decides)."""

    @abstractmethod
    def count_journal(self, invocation_id: str) -> int:
        """How many journal entries the invocation has in the store."""

    @abstractmethod
    def caller_of(self, invocation_id: str) -> str | None:
        """The invocation whose call or send created this one, if any."""

    @abstractmethod
    def state_keys(self, service: str, after: str, limit: int) -> list[str]:
        """Keys of `service` that hold state, in order, strictly after `after`, at most `limit`."""

    @abstractmethod
    def count_by_status(self, statuses: Sequence[str]) -> dict[str, int]:
        """How many invocations have each of `statuses` (a status with none is left out)."""

    @abstractmethod
    def count_timers(self) -> int:
        """How many durable timers have not fired yet."""

    # Reads that may run on a worker thread (the admin API and the UI read journals off the event loop). A
    # store keeps them safe to call from any thread; these defaults read through `journal_rows`.

    def journal_sizes(self, invocation_id: str, offset: int = 0,
                      limit: int | None = None) -> list[tuple[int, int, int, int]]:
        """(index, type id, stored size in bytes, appended at ms) from index `offset`, without the entries."""
        return [(i, t, len(raw), at) for i, t, raw, at in self.journal_rows(invocation_id, offset, limit)]

    def journal_length(self, invocation_id: str) -> int:
        """How many entries the journal has (safe on a worker thread)."""
        return self.count_journal(invocation_id)

    def journal_previews(self, invocation_id: str, first: int, last: int,
                         cap: int) -> list[tuple[int, int, bytes, int, int]]:
        """Entries `first`..`last` as (index, type id, the encoded entry's first `cap` bytes, appended at ms,
        stored size)."""
        rows = self.journal_rows(invocation_id, first, last - first + 1)
        return [(i, t, raw[:cap], at, len(raw)) for i, t, raw, at in rows]

    def invocation_preview(self, invocation_id: str, cap: int) -> tuple[tuple[Any, ...], int] | None:
        """One invocation row with its output cut to `cap` bytes, and the output's stored size; None if none."""
        row = self.load_invocation(invocation_id)
        if row is None:
            return None
        out = row[COL["output"]]
        size = len(out) if out is not None else 0
        return (row, size) if out is None else ((*row[:COL["output"]], out[:cap], *row[COL["output"] + 1:]), size)

    def journal_entry(self, invocation_id: str, index: int) -> tuple[int, int, bytes, int] | None:
        """One whole entry as (index, type id, encoded entry, appended at ms), or None."""
        rows = self.journal_rows(invocation_id, index, 1)
        return rows[0] if rows and rows[0][0] == index else None

    def attempt_history(self, invocation_id: str, limit: int = 10_000) -> list[AttemptRecord]:
        """The invocation's attempts in the order they started (at most `limit`); [] if not kept."""
        return []
