"""The engine's record of one invocation, and how it maps to a store row."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from durably.protocol.ids import InvocationId
from durably.server.store.base import COL

if TYPE_CHECKING:
    from durably.server.engine.interfaces import RunningAttempt

SCHEDULED = "scheduled"
INBOXED = "inboxed"
INVOKED = "invoked"
SUSPENDED = "suspended"
BACKING_OFF = "backing-off"
PAUSED = "paused"
COMPLETED = "completed"

# Statuses in which an exclusive invocation holds its key's lock (and a scoped one its concurrency slots).
HOLDING = frozenset({INVOKED, SUSPENDED, BACKING_OFF, PAUSED})


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an invocation ended: an output value or a failure."""

    value: bytes | None = None
    failure_code: int | None = None
    failure_message: str | None = None
    failure_metadata: dict[str, str] | None = None

    @property
    def failed(self) -> bool:
        """Whether the invocation ended with a failure."""
        return self.failure_code is not None


@dataclass(eq=False, slots=True)
class Invocation:
    """An invocation as the engine holds it while it is active (and as a row when it is not)."""

    id: str
    service: str
    handler: str
    key: str
    status: str
    idempotency_key: str | None
    created_at: int
    modified_at: int
    execution_time: int | None = None
    attempts: int = 0
    retry_count: int = 0
    last_entry_at: int | None = None
    next_retry_at: int | None = None
    last_error: str | None = None
    journal_length: int = 0
    waiting: list[int | str] | None = None  # completion/signal handles; named signals by name
    outcome: Outcome | None = None
    completed_at: int | None = None
    retention_until: int | None = None
    inbox_seq: int | None = None
    seq: int = 0
    # Only while the invocation is in memory:
    version: int = 0  # bumped on every change; eviction waits until the changed row is committed
    # Also only while the invocation is in memory:
    flow: tuple[str | None, str | None] | None = None  # (scope, limit key) once read from the input command
    journal: list[tuple[int, Message]] | None = None
    attempt: RunningAttempt | None = None
    output_command: Message | None = None
    retry_timer: Any = None
    task: Any = None
    # Inactivity/abort watchdog of the running attempt (engine clock seconds).
    last_activity: float = 0.0
    last_from_attempt: float = 0.0
    input_closed: bool = False
    watchdog: Any = None
    raw_id: bytes | None = None  # the 24-byte id, once known (minted here, or parsed on first use)

    @property
    def id_bytes(self) -> bytes:
        """The 24-byte raw id sent in StartMessage."""
        if self.raw_id is None:
            self.raw_id = InvocationId.parse(self.id).to_bytes()
        return self.raw_id

    def to_row(self) -> tuple[Any, ...]:
        """The invocations-table row."""
        o = self.outcome
        return (
            self.id, self.service, self.handler, self.key, self.status, self.idempotency_key,
            self.created_at, self.modified_at, self.execution_time, self.attempts, self.retry_count,
            self.last_entry_at, self.next_retry_at, self.last_error, self.journal_length,
            json.dumps(self.waiting) if self.waiting is not None else None,
            o.value if o is not None else None,
            o.failure_code if o is not None else None,
            o.failure_message if o is not None else None,
            json.dumps(o.failure_metadata) if o is not None and o.failure_metadata else None,
            self.completed_at, self.retention_until, self.inbox_seq, self.seq,
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Invocation:
        """Rebuild from a row (without journal)."""
        inv = cls(
            id=row[COL["id"]], service=row[COL["service"]], handler=row[COL["handler"]], key=row[COL["key"]],
            status=row[COL["status"]], idempotency_key=row[COL["idempotency_key"]],
            created_at=row[COL["created_at"]], modified_at=row[COL["modified_at"]],
            execution_time=row[COL["execution_time"]], attempts=row[COL["attempts"]],
            retry_count=row[COL["retry_count"]], last_entry_at=row[COL["last_entry_at"]],
            next_retry_at=row[COL["next_retry_at"]], last_error=row[COL["last_error"]],
            journal_length=row[COL["journal_length"]],
            waiting=json.loads(row[COL["waiting"]]) if row[COL["waiting"]] else None,
            completed_at=row[COL["completed_at"]], retention_until=row[COL["retention_until"]],
            inbox_seq=row[COL["inbox_seq"]], seq=row[COL["seq"]],
        )
        if row[COL["status"]] == COMPLETED:
            inv.outcome = outcome_of_row(row)
        return inv


def outcome_of_row(row: tuple[Any, ...]) -> Outcome:
    """The outcome stored in a completed row."""
    md = row[COL["failure_metadata"]]
    return Outcome(
        value=row[COL["output"]],
        failure_code=row[COL["failure_code"]],
        failure_message=row[COL["failure_message"]],
        failure_metadata=json.loads(md) if md else None,
    )
