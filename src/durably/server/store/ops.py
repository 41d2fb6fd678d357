"""The typed operations a batch carries besides rows and journal entries (state, promises, waiters...).

The engine says what changes; each store decides how to write it (`SQLiteStore.commit` maps every type to
its statement). They are named tuples: as cheap to make as the parameter tuples they replace, and their
order in `Batch.ops` is the order they are written in (a replacement of a key's state is "clear all, then
set each").
"""

from __future__ import annotations

from typing import Any, NamedTuple


class SetState(NamedTuple):
    """Set one state entry of an object or workflow key."""

    service: str
    key: str
    name: bytes
    value: bytes


class ClearState(NamedTuple):
    """Remove one state entry of a key."""

    service: str
    key: str
    name: bytes


class ClearAllState(NamedTuple):
    """Remove every state entry of a key."""

    service: str
    key: str


class AddPromise(NamedTuple):
    """A workflow promise completed, with a value or a failure."""

    service: str
    key: str
    name: str
    value: bytes | None
    failure_code: int | None
    failure_message: str | None


class DropPromises(NamedTuple):
    """Forget every promise of a workflow key (its run was purged)."""

    service: str
    key: str


class AddWaiter(NamedTuple):
    """An invocation waits on a target (an invocation id or `promise:<service>/<key>/<name>`)."""

    target: str
    invocation_id: str
    completion_id: int
    type_id: int


class DropWaiters(NamedTuple):
    """Everyone waiting on a target was answered."""

    target: str


class AddCall(NamedTuple):
    """Who called (or sent to) an invocation; written once, when the callee is created."""

    callee: str
    caller: str


class DeploymentRecord(NamedTuple):
    """A registered remote deployment as stored (headers and manifest as JSON-able values)."""

    id: str
    uri: str
    use_http_11: bool
    headers: dict[str, str]
    protocol_mode: str
    protocol_version: int
    manifest: dict[str, Any]
    created_at: int


class SaveDeployment(NamedTuple):
    """Insert or replace a deployment."""

    deployment: DeploymentRecord


class DropDeployment(NamedTuple):
    """Forget a deployment."""

    id: str


class SaveConcurrencyRules(NamedTuple):
    """Concurrency rules changed over the admin API in one request: each changed pattern's limit (None: deleted)
    and the patterns to forget. Only the rules of the change: a batch costs rows in proportion to its size."""

    changes: dict[str, int | None]
    forget: tuple[str, ...] = ()


class StartAttempt(NamedTuple):
    """An attempt of an invocation started (its row in the attempt history; ended_at stays NULL until it ends)."""

    invocation_seq: int
    started_at: int
    attempt: int


class EndAttempt(NamedTuple):
    """An attempt ended: completed, suspended, failed (with its error) or aborted."""

    ended_at: int
    outcome: str
    error: str | None
    invocation_seq: int
    started_at: int


class AttemptRecord(NamedTuple):
    """One attempt as the history keeps it (times in ms since the epoch; ended_at None: it never ended)."""

    started_at: int
    attempt: int
    ended_at: int | None
    outcome: str | None
    error: str | None


class SaveSubscription(NamedTuple):
    """Insert or replace a Kafka subscription: its id and its JSON form (`Subscription.to_json()`)."""

    id: str
    subscription: dict[str, Any]
    created_at: int


class DropSubscription(NamedTuple):
    """Forget a Kafka subscription."""

    id: str


class AddOutbox(NamedTuple):
    """A message for another partition, committed with what it comes from (server/engine/crossing/outbox.py)."""

    dest: int
    seq: int
    message: bytes


class AckOutbox(NamedTuple):
    """Partition `dest` acknowledged every message up to `seq`: they are deleted, `seq` is remembered."""

    dest: int
    seq: int


class MarkApplied(NamedTuple):
    """The messages of partition `source` up to `seq` are applied here (committed with their effects)."""

    source: int
    seq: int


class LinkRecords(NamedTuple):
    """What a partition keeps of its links at start: unacknowledged messages (dest, seq, message) in order, the
    highest seq it ever used, and per source partition the seq of the last message applied."""

    outbox: list[tuple[int, int, bytes]]
    last_seq: int
    applied: dict[int, int]


StoreOp = (SetState | ClearState | ClearAllState | AddPromise | DropPromises | AddWaiter | DropWaiters | AddCall
           | SaveDeployment | DropDeployment | SaveConcurrencyRules | StartAttempt | EndAttempt | SaveSubscription
           | DropSubscription | AddOutbox | AckOutbox | MarkApplied)
