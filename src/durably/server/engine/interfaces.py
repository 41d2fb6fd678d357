"""The two interfaces the engine's parts talk through, what the engine needs of an attempt, its settings.

- `InvocationTable`: the invocations held in memory and everything written for them (rows, journal
  entries, typed batch operations), committed by the group committer (table.py).
- `AttemptLifecycle`: starting, ending and waking attempts (lifecycle.py).

Each part of the engine (admission, commands, calls, call tree, catalog) receives these two, plus the
narrow collaborators it needs (store, clock, options, stats, timers...), in its constructor, never the
engine itself; no part reaches into another's private names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from google.protobuf.message import Message

from durably.protocol import protocol_pb2 as pb
from durably.sdk.options import DEFAULT_INVOCATION_RETRY_POLICY, InvocationRetryPolicy
from durably.server.engine.invocation import Invocation, Outcome
from durably.server.engine.secret_headers import DEFAULT_SECRET_HEADERS
from durably.server.partitions.map import PartitionMap
from durably.server.process.limits import DEFAULT_EAGER_STATE_LIMIT, DEFAULT_ENTRY_LIMIT, EagerStateLimit
from durably.server.store.ops import StoreOp

if TYPE_CHECKING:
    from durably.sdk.service import Handler


class EngineStopped(RuntimeError):
    """The engine is shutting down or failed to write to its store."""


@dataclass
class EngineOptions:
    """Runtime-wide settings."""

    always_replay: bool = False
    default_retry_policy: InvocationRetryPolicy = DEFAULT_INVOCATION_RETRY_POLICY
    retention: timedelta = timedelta(days=1)
    jitter: float = 0.3
    inactivity_timeout: timedelta = timedelta(minutes=1)
    abort_timeout: timedelta = timedelta(minutes=10)
    # Timers due within this window are kept in memory; later ones wait in the store.
    timer_window: timedelta = timedelta(minutes=1)
    run_threads: int = 256  # sync ctx.run threads, stuck ones included (server/engine/threads.py)
    # Resource limits (docs: README "Resource limits"; defaults in server/process/limits.py).
    journal_entry_limit: int = DEFAULT_ENTRY_LIMIT
    eager_state: EagerStateLimit = DEFAULT_EAGER_STATE_LIMIT  # the state a Start carries; the rest is lazy
    loop_stall_threshold: float | None = None  # None: not watched (tests); `durably serve` sets 1 s
    stuck_report_interval: float = 60.0
    # Count what /metrics shows (plain ints on the hot path); off leaves `Engine.stats` None.
    metrics: bool = True
    # OpenTelemetry spans (durably.server.observe.tracing.InvocationTracing), None when not configured.
    tracing: Any = None
    # Restate 1.7's concurrency rules, pattern -> limit (see server/engine/flow_control.py).
    concurrency_rules: dict[str, int] = field(default_factory=dict)
    # Security (durably serve --request-identity-key, --secret-header): a RequestSigner for requests to remote
    # deployments, and the request headers handlers see but the journal never stores (see secret_headers.py).
    request_signer: Any = None
    secret_headers: frozenset[str] = DEFAULT_SECRET_HEADERS
    # Which partition this engine is, of how many (durably serve --partitions; server/partitions/map.py).
    partitions: PartitionMap = field(default_factory=PartitionMap)


class RunningAttempt(Protocol):
    """One attempt of a handler, in process (`durably.sdk.attempt.Attempt`) or on a remote deployment
    (`durably.server.remote.attempt.RemoteAttempt`)."""

    handler: Handler
    # The handler failed by misusing the SDK: the message (only an in-process attempt can tell; else None).
    code_bug: str | None
    # Where its sync ctx.run closures run (an AttemptThreads in process; None for a remote attempt).
    executor: Any
    # How it hands its messages to the engine (a LocalTransport in process; None for a remote attempt).
    transport: Any

    async def run(self, ctx: Any) -> None:
        """Run until the attempt ends (its terminal message was handed over) or fails (raises)."""

    def deliver(self, type_id: int, msg: Message) -> None:
        """A committed notification for the attempt."""

    def close_input(self) -> None:
        """Nothing more will be delivered: suspend at the next wait on something missing."""

    def abort(self) -> None:
        """End the attempt now without writing anything more."""


class AttemptSink(Protocol):
    """Where a running attempt hands what it wrote (commands, run proposals, its terminal message)."""

    def on_attempt_messages(self, inv: Invocation, attempt: RunningAttempt | None,
                            msgs: list[tuple[int, Message]]) -> None:
        """Process the messages in order."""


class InvocationTable(Protocol):
    """The invocations held in memory, and every write made for them in the current batch."""

    appends: int  # journal entries written since the start (/metrics)

    def get(self, inv_id: str) -> Invocation | None:
        """The invocation if it is held in memory."""

    def load(self, inv_id: str) -> Invocation | None:
        """The invocation, from memory or (made active, with its journal unless completed) from the store."""

    def load_journal(self, inv: Invocation) -> None:
        """Read the invocation's journal from the store into memory."""

    def activate(self, inv: Invocation) -> None:
        """Hold the invocation in memory."""

    def drop(self, inv: Invocation) -> None:
        """Forget the invocation (it completed and is committed); its journal goes too."""

    def active(self) -> list[Invocation]:
        """Every invocation held in memory (a copy)."""

    def count(self) -> int:
        """How many invocations are held in memory."""

    def touch(self, inv: Invocation) -> None:
        """Something of the invocation is written with the current batch (evicts it once committed if it
        waits without an attempt)."""

    def mark(self, inv: Invocation) -> None:
        """The invocation's row changed: write it with the current batch."""

    def append(self, inv: Invocation, type_id: int, msg: Message, live: Message | None = None) -> None:
        """Append a journal entry (`live`: what attempts in this process see instead of `msg`)."""

    def after_commit(self, cb: Callable[[], None]) -> None:
        """Run `cb` once everything written so far is committed."""

    def write(self, op: StoreOp) -> None:
        """Write a typed operation with the current batch, in order with the others."""

    def delete(self, inv_id: str) -> None:
        """Delete a completed invocation with its journal, timers and waiters."""

    def now_ms(self) -> int:
        """The engine's clock in ms since the epoch."""


# Told of every completion: (the invocation, its outcome, whether it held or waited for its key's lock).
CompletionListener = Callable[[Invocation, Outcome, bool], None]


class AttemptLifecycle(Protocol):
    """Starting, ending and waking attempts; the retry, backoff and pause policy."""

    stopping: bool  # stopped taking work (shutting down, or the store failed)
    draining: bool  # graceful stop: no new work; running attempts finish their step and suspend

    def start(self, inv: Invocation) -> None:
        """Run an attempt of the invocation now (unless the engine is stopping or draining)."""

    def abort(self, inv: Invocation) -> None:
        """End the running attempt now (kill, timeout, shutdown); its later writes are ignored."""

    def halt(self, inv: Invocation) -> None:
        """Abort the running attempt and cancel a pending retry: nothing of the invocation runs now."""

    def complete(self, inv: Invocation, outcome: Outcome) -> None:
        """End the invocation with an outcome; completion listeners run in their order."""

    def fail(self, inv: Invocation, err: pb.ErrorMessage) -> None:
        """The attempt failed: retry after a backoff, pause, or complete with the failure (the policy)."""

    def suspend(self, inv: Invocation, msg: pb.SuspensionMessage) -> None:
        """The attempt suspended: wait for one of the completions or signals it names."""

    def detach(self, inv: Invocation) -> None:
        """The invocation has no attempt any more (its watchdog goes too)."""

    def arm_retry(self, inv: Invocation) -> None:
        """Start the next attempt of a backing-off invocation when its backoff is over."""

    def pause(self, inv: Invocation) -> None:
        """Stop the invocation (operator pause) until it is restarted."""

    def restart(self, inv: Invocation) -> None:
        """Run the invocation again now with a fresh retry budget (resume, cancel of a paused one)."""

    def notify(self, inv_id: str, type_id: int, note: pb.NotificationMessage) -> bool:
        """Journal a notification and wake the invocation if it waits for it; False if it is gone."""

    def notify_running(self, inv: Invocation, type_id: int, note: pb.NotificationMessage) -> None:
        """Journal a notification for an invocation whose attempt may run; delivered after the commit."""

    def check_writable(self) -> None:
        """Raise EngineStopped if a write now could not be committed soon."""

    def add_completion_listener(self, listener: CompletionListener) -> None:
        """Be told of every completion, after the listeners added before."""
