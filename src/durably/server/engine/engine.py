"""The engine: the one writer of every invocation, journal, state, timer and inbox change.

Everything that changes durable state goes into the current batch of the group committer; the batch is
committed as one transaction and only then are acknowledgements released: run results to handlers,
results to callers, resumptions. The engine decides what to start, queue, retry, resume, complete or purge.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from google.protobuf.message import Message

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.protocol.ids import InvocationId, new_deployment_id, parse_awakeable_id, sha256_random_seed
from durably.sdk.attempt import Attempt
from durably.sdk.context import InvocationContext
from durably.sdk.errors import VMError
from durably.sdk.options import DEFAULT_INVOCATION_RETRY_POLICY, InvocationRetryPolicy
from durably.sdk.service import App, Handler
from durably.sdk.vm import CANCEL_SIGNAL, SIGNAL_HANDLE_BASE, VM
from durably.server.engine import calltree
from durably.server.engine.calltree import ActionResult
from durably.server.engine.clock import Clock
from durably.server.engine.committer import GroupCommitter
from durably.server.engine.flow_control import (
    LIMIT_KEY_HEADER,
    SCOPE_HEADER,
    ConcurrencyLimiter,
    FlowControlError,
    check_scope,
    without_flow_headers,
)
from durably.server.engine.invocation import (
    BACKING_OFF,
    COMPLETED,
    INBOXED,
    INVOKED,
    PAUSED,
    SCHEDULED,
    SUSPENDED,
    Invocation,
    Outcome,
    outcome_of_row,
)
from durably.server.engine.keys import KeyTable
from durably.server.engine.retention import retention_for
from durably.server.engine.secret_headers import DEFAULT_SECRET_HEADERS, input_messages
from durably.server.engine.threads import AttemptThreads, StepThreads, report_stuck
from durably.server.engine.timers import TimerService
from durably.server.observe.lifecycle_log import LifecycleLog
from durably.server.observe.loop_stalls import LoopStallMonitor
from durably.server.observe.metrics import EngineStats
from durably.server.process.limits import (
    DEFAULT_ENTRY_LIMIT,
    ENTRY_TOO_LARGE_CODE,
    command_too_large,
    run_result_too_large,
)
from durably.server.remote.attempt import ConnectionPool, RemoteAttempt, RemoteAttemptError
from durably.server.remote.deployments import (
    Deployment,
    DiscoveryError,
    RemoteService,
    discover,
    services_from_manifest,
)
from durably.server.store.base import COL, Store

log = logging.getLogger("durably.engine")

# Statuses in which an exclusive invocation holds its key's lock.
_HOLDING = frozenset({INVOKED, SUSPENDED, BACKING_OFF, PAUSED})
# Statuses in which an invocation waits without an attempt and is dropped from memory.
_EVICTABLE = frozenset({SUSPENDED, SCHEDULED, INBOXED, PAUSED})


_RULES_META_KEY = "concurrency_rules"


class EngineStopped(RuntimeError):
    """The engine is shutting down or failed to write to its store."""


class WorkflowAlreadyInvoked(Exception):
    """The workflow's main handler already ran (or runs) for this key."""

    def __init__(self, inv_id: str) -> None:
        super().__init__("the workflow method was already invoked")
        self.invocation_id = inv_id


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
    run_threads: int = 256  # sync ctx.run threads, stuck ones included (server/threads.py)
    # Resource limits (docs: README "Resource limits"; defaults in server/limits.py).
    journal_entry_limit: int = DEFAULT_ENTRY_LIMIT
    loop_stall_threshold: float | None = None  # None: not watched (tests); `durably serve` sets 1 s
    stuck_report_interval: float = 60.0
    # Count what /metrics shows (plain ints on the hot path); off leaves `Engine.stats` None.
    metrics: bool = True
    # OpenTelemetry spans (durably.server.observe.tracing.InvocationTracing), None when not configured.
    tracing: Any = None
    # Restate 1.7's concurrency rules, pattern -> limit (see server/flow_control.py).
    concurrency_rules: dict[str, int] = field(default_factory=dict)
    # Security (durably serve --request-identity-key, --secret-header): a RequestSigner for requests to remote
    # deployments, and the request headers handlers see but the journal never stores (see secret_headers.py).
    request_signer: Any = None
    secret_headers: frozenset[str] = DEFAULT_SECRET_HEADERS


class _LocalTransport:
    """Hands an in-process attempt's messages straight to the engine, no bytes in between."""

    __slots__ = ("attempt", "engine", "inv")

    def __init__(self, engine: Engine, inv: Invocation) -> None:
        self.engine = engine
        self.inv = inv
        self.attempt: Attempt | None = None

    def send(self, messages: list[tuple[int, Message]]) -> None:
        self.engine.on_attempt_messages(self.inv, self.attempt, messages)


def _note(cid: int) -> pb.NotificationMessage:
    return pb.NotificationMessage(completion_id=cid)


def _outcome_note(cid: int, outcome: Outcome) -> pb.NotificationMessage:
    note = _note(cid)
    if outcome.failure_code is not None:
        note.failure.code = outcome.failure_code
        note.failure.message = outcome.failure_message or ""
        for k, v in (outcome.failure_metadata or {}).items():
            note.failure.metadata.add(key=k, value=v)
    else:
        note.value.content = outcome.value or b""
    return note


def _flow_fields(cmd: Any) -> tuple[str | None, str | None]:
    """The scope and limit key of a call or send command (None when absent)."""
    return (cmd.scope if cmd.HasField("scope") else None,
            cmd.limit_key if cmd.HasField("limit_key") else None)


def _failure_note(cid: int, code: int, message: str) -> pb.NotificationMessage:
    note = _note(cid)
    note.failure.code = code
    note.failure.message = message
    return note


class Engine:
    """Runs invocations of an app's handlers against a store. Use from one event loop."""

    def __init__(self, app: App, store: Store, options: EngineOptions | None = None,
                 clock: Clock | None = None) -> None:
        self.app = app
        self.store = store
        self.options = options or EngineOptions()
        self.clock = clock or Clock()
        self.committer = GroupCommitter(store, self._store_failed)
        self.timers = TimerService(store, self.committer, self.clock,
                                   int(self.options.timer_window.total_seconds() * 1000), self._timer_fired)
        # Sync ctx.run closures run here; a closure abandoned by the abort timeout keeps its thread.
        self.run_executor = StepThreads(self.options.run_threads)
        self.keys = KeyTable()
        self.limiter = ConcurrencyLimiter(self.options.concurrency_rules)
        # Rules changed over the admin API since the data directory was created (pattern -> limit or None).
        self._rule_changes: dict[str, int | None] = {}
        # Every invocable service: the embedded app's and those of registered deployments.
        self.services: dict[str, Any] = dict(app.services)
        self.deployments: dict[str, Deployment] = {}
        self.pool = ConnectionPool(signer=self.options.request_signer)
        self.appends = 0
        self.stats: EngineStats | None = EngineStats() if self.options.metrics else None
        self.events = LifecycleLog()
        self.tracing = self.options.tracing
        if self.stats is not None:
            self.committer.on_commit = self._committed_batch
        self._active: dict[str, Invocation] = {}
        self._outcome_waiters: dict[str, list[asyncio.Future[Outcome]]] = {}
        # target -> [(waiting invocation, completion id, notification type)], mirrored in the waiters table.
        self._waiters: dict[str, list[tuple[str, int, int]]] = {}
        # Promises completed but maybe not committed yet: (service, key, name) -> outcome.
        self._promises: dict[tuple[str, str, str], Outcome] = {}
        self._inbox_seq = 0
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        # Graceful stop (server/shutdown.py): no new work; running attempts finish their step and suspend.
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cleanup_task: asyncio.Task[None] | None = None
        self._stuck_task: asyncio.Task[None] | None = None
        self.loop_stalls: LoopStallMonitor | None = None

    # ---- services ----

    def handler(self, service: str, name: str) -> Handler | None:
        """A handler of the embedded app or of a registered deployment."""
        svc = self.services.get(service)
        return None if svc is None else svc.handlers.get(name)

    def _add_deployment(self, dep: Deployment, services: list[RemoteService]) -> None:
        self.deployments[dep.id] = dep
        dep.services = [s.name for s in services]
        for svc in services:
            self.services[svc.name] = svc

    async def register_deployment(self, uri: str, use_http_11: bool = False, force: bool = False,
                                  additional_headers: dict[str, str] | None = None) -> tuple[Deployment, bool]:
        """Discover a deployment and route its services to it; returns (deployment, created).

        Raises DiscoveryError (with an HTTP status) if it cannot be reached, speaks no common protocol, or
        would take over a service of the embedded app.
        """
        headers = dict(additional_headers or {})
        existing = next((d for d in self.deployments.values() if d.uri == uri), None)
        if existing is not None and not force:
            return existing, False
        manifest, mode, version = await discover(uri, use_http_11, headers, self.pool.signer)
        dep = Deployment(id=existing.id if existing else new_deployment_id(), uri=uri, use_http_11=use_http_11,
                         additional_headers=headers, protocol_mode=mode, protocol_version=version,
                         manifest=manifest, created_at=self.now_ms())
        services = services_from_manifest(manifest, dep)
        for svc in services:
            if svc.name in self.app.services:
                raise DiscoveryError(f"service '{svc.name}' belongs to the embedded app; rename one of them", 409)
        if existing is not None:
            self._drop_deployment(existing)
        self._add_deployment(dep, services)
        self.committer.batch.ops.append(("INSERT OR REPLACE INTO deployments VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (
            dep.id, dep.uri, int(dep.use_http_11), json.dumps(headers), mode, version, json.dumps(manifest),
            dep.created_at)))
        await self.barrier()
        return dep, existing is None

    def _drop_deployment(self, dep: Deployment) -> None:
        self.deployments.pop(dep.id, None)
        for name in dep.services:
            svc = self.services.get(name)
            if isinstance(svc, RemoteService) and svc.deployment is dep:
                del self.services[name]

    async def remove_deployment(self, dep_id: str) -> bool:
        """Forget a deployment; its services stop being invocable. False if there is no such deployment."""
        dep = self.deployments.get(dep_id)
        if dep is None:
            return False
        self._drop_deployment(dep)
        self.committer.batch.ops.append(("DELETE FROM deployments WHERE id = ?", (dep_id,)))
        await self.barrier()
        return True

    # ---- time ----

    def now_ms(self) -> int:
        """The engine's clock in ms since the epoch."""
        return int(self.clock.now() * 1000)

    # ---- lifecycle ----

    async def start(self) -> None:
        """Resume every unfinished invocation found in the store."""
        self._loop = asyncio.get_running_loop()
        self.committer.start()
        self._restore_rules()
        self._seq = self.store.max_seq()
        for row in self.store.query("SELECT id, uri, use_http_11, headers, protocol_mode, protocol_version, "
                                    "manifest, created_at FROM deployments ORDER BY created_at"):
            dep = Deployment(id=row[0], uri=row[1], use_http_11=bool(row[2]), additional_headers=json.loads(row[3]),
                             protocol_mode=row[4], protocol_version=row[5], manifest=json.loads(row[6]),
                             created_at=row[7])
            try:
                self._add_deployment(dep, services_from_manifest(dep.manifest, dep))
            except DiscoveryError as e:
                log.error("deployment %s (%s) cannot be restored: %s", dep.id, dep.uri, e)
        for target, inv_id, cid, type_id in self.store.load_waiters():
            self._waiters.setdefault(target, []).append((inv_id, cid, type_id))
        rows = [Invocation.from_row(r) for r in self.store.unfinished()]
        # Inboxed behind a key have an inbox position; those without one wait for a concurrency slot.
        inboxed = sorted((i for i in rows if i.status == INBOXED and i.inbox_seq is not None),
                         key=lambda i: i.inbox_seq or 0)
        flow_queued = sorted((i for i in rows if i.status == INBOXED and i.inbox_seq is None),
                             key=lambda i: i.seq)
        self._inbox_seq = max((i.inbox_seq or 0 for i in inboxed), default=0)
        for inv in rows:
            if inv.status in _HOLDING and self._is_exclusive(inv):
                self.keys.hold(inv.service, inv.key, inv.id)
        for inv in inboxed:
            self.keys.enqueue(inv.service, inv.key, inv.id)
        for inv in rows:
            self._recover(inv)
        # Inboxed invocations whose key has no holder any more (their holder completed just before a crash).
        for inv in inboxed:
            entry = self.keys.get(inv.service, inv.key)
            if entry is not None and entry.holder is None and entry.inbox and entry.inbox[0] == inv.id:
                nxt = entry.inbox.popleft()
                entry.holder = nxt
                self._run_queued(nxt)
        self._recover_flow(rows, flow_queued)
        self.timers.start()
        self._cleanup_task = self._loop.create_task(self._cleanup_loop())
        # User code that stalls the server is named in the log (stuck step threads, a blocked loop).
        self._stuck_task = self._loop.create_task(report_stuck(self.run_executor, self.options.stuck_report_interval))
        if self.options.loop_stall_threshold is not None:
            self.loop_stalls = LoopStallMonitor(self._loop, self.options.loop_stall_threshold)
            self.loop_stalls.start()

    def _recover_flow(self, rows: list[Invocation], queued: list[Invocation]) -> None:
        """Rebuild the concurrency counters: running scoped invocations hold slots, queued ones wait again."""
        if self.limiter.rules():
            for inv in rows:
                if inv.status in _HOLDING:
                    scope, limit_key = self._flow_of(inv)
                    if scope is not None:
                        self.limiter.occupy(inv.id, scope, limit_key)
            for inv in queued:
                scope, limit_key = self._flow_of(inv)
                if scope is not None:
                    self.limiter.enqueue(inv.id, scope, limit_key)
            admitted = set(self.limiter.drain())
            queued = [i for i in queued if i.id in admitted or not self.limiter.is_queued(i.id)]
        for inv in queued:
            self._admitted(inv.id)

    def _recover(self, inv: Invocation) -> None:
        if inv.status == INVOKED:
            self._active[inv.id] = inv
            self._start_attempt(inv)
        elif inv.status == BACKING_OFF:
            self._active[inv.id] = inv
            inv.retry_timer = self.clock.call_at((inv.next_retry_at or 0) / 1000, lambda: self._retry_now(inv))
        # Suspended and scheduled invocations wait in the store for their timers or notifications (a
        # notification that arrived before a crash already moved its invocation back to invoked); inboxed
        # ones wait for their key; paused ones wait for an operator.

    async def stop(self, close_store: bool = True) -> None:
        """Stop running attempts (they resume on the next start), write what is pending, close."""
        self._stopping = True
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
        if self._stuck_task is not None:
            self._stuck_task.cancel()
        if self.loop_stalls is not None:
            self.loop_stalls.stop()
        self.timers.stop()
        for inv in list(self._active.values()):
            if inv.retry_timer is not None:
                inv.retry_timer.cancel()
            self._abort_attempt(inv)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.committer.flushed()
        self._fail_outcome_waiters(EngineStopped(self._stop_reason()))
        self.committer.close()
        await self.pool.close()
        if self.tracing is not None:
            self.tracing.close()
        # Abandoned sync closures may still run; do not wait for them.
        self.run_executor.shutdown(wait=False, cancel_futures=True)
        if close_store:
            self.store.close()

    def _fail_outcome_waiters(self, exc: BaseException) -> None:
        for waiters in self._outcome_waiters.values():
            for w in waiters:
                if not w.done():
                    w.set_exception(exc)
        self._outcome_waiters.clear()

    def _store_failed(self, exc: BaseException) -> None:
        # Nothing of the failed batch may be acknowledged; stop taking work rather than guess.
        self._stopping = True
        self.timers.stop()
        for inv in list(self._active.values()):
            self._abort_attempt(inv)
        self._fail_outcome_waiters(EngineStopped(f"the store failed: {exc}"))

    def _stop_reason(self) -> str:
        if self.committer.failed is not None:
            return f"the store failed: {self.committer.failed}"
        return "the server is stopping; retry (with the same idempotency key) once it is back"

    def begin_drain(self) -> int:
        """Graceful stop: refuse new invocations, fire no timers, and ask every running attempt to suspend
        at its next wait (a running step finishes and is journaled first). Returns how many are running."""
        self._draining = True
        self.timers.stop()
        running = 0
        for inv in list(self._active.values()):
            if inv.attempt is not None:
                running += 1
                inv.input_closed = True
                inv.attempt.close_input()
        return running

    def running_attempts(self) -> int:
        """Attempts still running (draining waits for this to reach 0)."""
        return sum(1 for inv in self._active.values() if inv.attempt is not None)

    def waiting_callers(self) -> int:
        """HTTP callers (and attaches) waiting for an invocation's outcome."""
        return sum(len(w) for w in self._outcome_waiters.values())

    def health_problem(self) -> str | None:
        """Why the server should not get traffic now (stopping, store failing), or None."""
        if self._draining or self._stopping:
            return self.store_problem() or self._stop_reason()
        return self.store_problem()

    def check_writable(self) -> None:
        """Raise EngineStopped (503) if a write now could not be committed soon: stopping, or the store failing."""
        if self._stopping or self._draining:
            raise EngineStopped(self._stop_reason())
        if self.committer.unhealthy is not None:
            raise EngineStopped(self.store_problem() or "")

    def store_problem(self) -> str | None:
        """Why the store cannot commit now (disk full, read-only...), or None while it can."""
        if self.committer.failed is not None:
            return f"the store failed: {self.committer.failed}"
        err = self.committer.unhealthy
        if err is not None:
            return f"the store cannot commit ({err.cause}): {err.detail}; retrying until it recovers"
        return None

    async def flushed(self) -> None:
        """Wait until everything written so far is committed."""
        await self.committer.flushed()

    async def barrier(self) -> None:
        """Wait until everything written so far is committed; raises EngineStopped if the store failed."""
        try:
            await self.committer.barrier()
        except Exception as e:
            raise EngineStopped(self._stop_reason()) from e

    # ---- journal ----

    def _touch(self, inv: Invocation) -> None:
        """Something of the invocation is written with the current batch."""
        inv.version += 1
        self.committer.schedule()
        if inv.attempt is None and inv.status in _EVICTABLE:
            version = inv.version
            self.committer.after_commit(lambda: self._evict(inv, version))

    def _mark(self, inv: Invocation) -> None:
        """The invocation's row changed (status, retries, outcome): write it with the current batch."""
        inv.modified_at = self.now_ms()
        self.committer.mark(inv)
        self._touch(inv)

    def _committed_batch(self, rows: int, seconds: float) -> None:
        st = self.stats
        if st is not None:
            st.batch_rows.observe(rows)
            st.commit_seconds.observe(seconds)

    def _after_commit(self, cb: Callable[[], None]) -> None:
        self.committer.after_commit(cb)

    def _append(self, inv: Invocation, type_id: int, msg: Message, live: Message | None = None) -> None:
        # `live`: what attempts in this process see instead of `msg` (the input with its secret headers).
        now = self.now_ms()
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
        self._touch(inv)

    def _load_journal(self, inv: Invocation) -> None:
        inv.journal = [(t, m.decode(t, raw)) for t, raw in self.store.load_journal(inv.id)]
        inv.journal_length = len(inv.journal)

    def _load(self, inv_id: str) -> Invocation | None:
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
            self._load_journal(inv)
            self._active[inv_id] = inv
        return inv

    def _evict(self, inv: Invocation, version: int) -> None:
        # Invariant 6: what waits on a timer, a notification, its key or an operator is not kept in memory.
        # Only once everything written for it is committed (same version), so a reload sees it all.
        if inv.version == version and inv.attempt is None and inv.status in _EVICTABLE:
            inv.journal = None
            if self._active.get(inv.id) is inv:
                del self._active[inv.id]

    # ---- creating invocations ----

    def _is_exclusive(self, inv: Invocation) -> bool:
        handler = self.handler(inv.service, inv.handler)
        if handler is None:
            # Be safe: a keyed invocation of an unknown handler keeps its lock (the key may be "").
            svc = self.services.get(inv.service)
            return svc.kind != "service" if svc is not None else bool(inv.key)
        return handler.service.kind != "service" and not handler.is_shared

    def invoke(self, handler: Handler, body: bytes, headers: list[tuple[str, str]], key: str = "",
               idempotency_key: str | None = None, delay_ms: int = 0, scope: str | None = None,
               limit_key: str | None = None) -> tuple[Invocation | None, str, bool]:
        """Start an invocation; returns (in-memory invocation or None, id, created).

        With an idempotency key the id is derived from it: a second request finds the first invocation
        (running, or completed and still retained) and is attached to it instead (`created` is False).
        A workflow's main handler runs once per key: a second request gets `created` False too.
        With `delay_ms` the invocation is scheduled: it starts when a durable timer fires.
        A `scope` (and `limit_key`) subjects it to the concurrency rules and is part of the identity of
        workflows and idempotent requests; raises FlowControlError if either is malformed.
        """
        check_scope(scope, limit_key)
        self.check_writable()
        svc = handler.service.name
        keyed = handler.service.kind != "service"  # "" is a key like any other (Restate's keyless call)
        if handler.kind == "workflow":
            inv_id = str(InvocationId.for_workflow(svc, key, scope))
        elif idempotency_key is not None:
            inv_id = str(InvocationId.for_idempotent_request(svc, handler.name, idempotency_key,
                                                               key if keyed else None, scope))
        elif keyed:
            inv_id = str(InvocationId.for_keyed(svc, key))
        else:
            inv_id = str(InvocationId.random())
        if (handler.kind == "workflow" or idempotency_key is not None) and (
                inv_id in self._active or self.store.load_invocation(inv_id) is not None):
            return self._active.get(inv_id), inv_id, False
        now = self.now_ms()
        self._seq += 1
        inv = Invocation(id=inv_id, service=svc, handler=handler.name, key=key, status=INVOKED,
                         idempotency_key=idempotency_key, created_at=now, modified_at=now, journal=[], seq=self._seq)
        hdrs = [(k, v) for k, v in headers if k not in (SCOPE_HEADER, LIMIT_KEY_HEADER)]  # only the arguments
        if scope is not None:                                                                 # say what the flow is
            hdrs.append((SCOPE_HEADER, scope))
        if limit_key is not None:
            hdrs.append((LIMIT_KEY_HEADER, limit_key))
        stored, live = input_messages(hdrs, body, self.options.secret_headers)
        inv.flow = (scope, limit_key)
        self._active[inv_id] = inv
        if self.stats is not None:
            self.stats.started[(svc, handler.name)] += 1
        self._append(inv, m.INPUT, stored, live)
        self._mark(inv)
        if delay_ms > 0:
            inv.status = SCHEDULED
            inv.execution_time = now + delay_ms
            self.timers.add(inv.id, "start", 0, inv.execution_time)
        else:
            self._begin(inv, handler)
        return inv, inv_id, True

    def _flow_of(self, inv: Invocation) -> tuple[str | None, str | None]:
        """The invocation's scope and limit key, as journaled in its input command."""
        if inv.flow is None:
            if inv.journal is None:
                self._load_journal(inv)
            scope = limit_key = None
            if inv.journal:
                for h in inv.journal[0][1].headers:  # type: ignore[attr-defined]
                    if h.key == SCOPE_HEADER:
                        scope = h.value
                    elif h.key == LIMIT_KEY_HEADER:
                        limit_key = h.value
            inv.flow = (scope, limit_key)
        return inv.flow

    def _begin(self, inv: Invocation, handler: Handler) -> None:
        """Run a new (or newly due) invocation now, or queue it for a concurrency slot or its key's lock."""
        scope, limit_key = self._flow_of(inv)
        if scope is not None and not self.limiter.admit(inv.id, scope, limit_key):
            inv.status = INBOXED
            inv.inbox_seq = None  # no key position: it waits for a slot (see _recover_flow)
            self._mark(inv)
            return
        self._begin_admitted(inv, handler)

    def _admitted(self, inv_id: str) -> None:
        """A queued invocation got its concurrency slots: go on to its key's lock, or start it."""
        inv = self._load(inv_id)
        if inv is None or inv.status != INBOXED:
            if inv is not None and inv.status == COMPLETED:
                self.limiter.release(inv.id)
            return
        handler = self.handler(inv.service, inv.handler)
        if handler is None:
            self._start_attempt(inv)  # fails and retries with a clear error
            return
        self._begin_admitted(inv, handler)

    def _begin_admitted(self, inv: Invocation, handler: Handler) -> None:
        if handler.service.kind != "service" and not handler.is_shared:
            if not self.keys.acquire(inv.service, inv.key, inv.id):
                self._inbox_seq += 1
                inv.status = INBOXED
                inv.inbox_seq = self._inbox_seq
                self._mark(inv)
                return
        self._start_attempt(inv)

    def _run_queued(self, inv_id: str) -> None:
        """The key's lock passed to an inboxed invocation: start it."""
        inv = self._load(inv_id)
        if inv is None or inv.status != INBOXED:
            # Gone (killed, purged): pass the lock on.
            if inv is not None:
                self._release_key(inv)
            return
        inv.inbox_seq = None
        self._start_attempt(inv)

    def _release_key(self, inv: Invocation) -> None:
        if not self._is_exclusive(inv):
            return
        nxt = self.keys.release(inv.service, inv.key, inv.id)
        if nxt is not None:
            self._run_queued(nxt)
        else:
            svc, key = inv.service, inv.key
            generation = self.keys.generation(svc, key)
            self._after_commit(lambda: self.keys.drop_if_idle(svc, key, generation))

    # ---- outcomes ----

    async def wait_outcome(self, inv_id: str) -> Outcome | None:
        """Wait until an invocation completes; None if there is no such invocation."""
        inv = self._active.get(inv_id)
        if inv is None:
            row = self.store.load_invocation(inv_id)
            if row is None:
                return None
            if row[COL["status"]] == COMPLETED:
                return outcome_of_row(row)
        if self._stopping:
            raise EngineStopped(self._stop_reason())
        fut: asyncio.Future[Outcome] = self._loop.create_future()  # type: ignore[union-attr]
        self._outcome_waiters.setdefault(inv_id, []).append(fut)
        return await fut

    def peek_outcome(self, inv_id: str) -> tuple[bool, Outcome | None]:
        """(exists, outcome if completed and committed)."""
        if inv_id in self._active:
            return True, None
        row = self.store.load_invocation(inv_id)
        if row is None:
            return False, None
        return True, outcome_of_row(row) if row[COL["status"]] == COMPLETED else None

    # ---- attempts ----

    def _start_attempt(self, inv: Invocation) -> None:
        if self._stopping or self._draining:
            return  # it stays invoked (or inboxed, backing-off) in the store and starts after the restart
        handler = self.handler(inv.service, inv.handler)
        if inv.journal is None:
            self._load_journal(inv)
        assert inv.journal is not None
        inv.status = INVOKED
        inv.attempts += 1
        if self.stats is not None:
            self.stats.attempts[(inv.service, inv.handler)] += 1
        if inv.attempts == 1:
            self.events.started(inv)
        if self.tracing is not None:
            self.tracing.attempt_started(inv, inv.journal)
        inv.next_retry_at = None
        inv.waiting = None
        self._active[inv.id] = inv
        self._mark(inv)
        if handler is None:
            # The app no longer has this handler (code changed between restarts): retry, then pause.
            self._attempt_failed(inv, pb.ErrorMessage(
                code=404, message=f"handler {inv.service}/{inv.handler} is not in the app"))
            return
        now = self.now_ms()
        id_bytes = inv.id_bytes
        start = pb.StartMessage(
            id=id_bytes, debug_id=inv.id, known_entries=len(inv.journal), key=inv.key,
            random_seed=sha256_random_seed(id_bytes), retry_count_since_last_stored_entry=inv.retry_count,
            duration_since_last_stored_entry=max(0, now - inv.last_entry_at) if inv.last_entry_at else 0,
        )
        if inv.idempotency_key:
            start.idempotency_key = inv.idempotency_key
        scope, limit_key = self._flow_of(inv)
        if scope is not None:
            start.scope = scope
        if limit_key is not None:
            start.limit_key = limit_key
        lazy = handler.enable_lazy_state or handler.service.enable_lazy_state
        if handler.service.kind == "service" or lazy:
            start.partial_state = True
        else:
            for name, value in self._state_snapshot(inv, handler).items():
                start.state_map.add(key=name, value=value)
        attempt: Any
        ctx: InvocationContext | None = None
        if isinstance(handler.service, RemoteService):
            dep = handler.service.deployment
            journal = list(inv.journal)
            if scope is not None:
                # The scope travels in Start (v7 field); the deployment does not see it as a request header.
                journal[0] = (journal[0][0], without_flow_headers(journal[0][1]))
            attempt = RemoteAttempt(self, inv, handler, dep, start, journal, self.pool,
                                    self.options.always_replay)
            inv.attempt = attempt
            inv.input_closed = self.options.always_replay or not dep.bidi
        else:
            try:
                vm = VM(start, inv.journal)
            except VMError as e:
                self._attempt_failed(inv, pb.ErrorMessage(code=e.code, message=e.message))
                return
            transport = _LocalTransport(self, inv)
            attempt = Attempt(handler, vm, transport, clock=self.clock.now,
                              executor=AttemptThreads(self.run_executor, inv.id, f"{inv.service}/{inv.handler}"))
            transport.attempt = attempt
            inv.attempt = attempt
            inv.input_closed = False
            if self.options.always_replay:
                attempt.close_input()
                inv.input_closed = True
            ctx = InvocationContext(attempt, inv.id, inv.key)
        inv.last_activity = inv.last_from_attempt = self.clock.now()
        task = self._loop.create_task(self._run_attempt(inv, attempt, ctx))  # type: ignore[union-attr]
        inv.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._arm_watchdog(inv, attempt, handler)

    async def _run_attempt(self, inv: Invocation, attempt: Any, ctx: InvocationContext | None) -> None:
        try:
            await attempt.run(ctx)
        except RemoteAttemptError as e:
            log.warning("invocation %s: %s", inv.id, e)
            if inv.attempt is attempt:
                self._abort_attempt(inv)
                self._attempt_failed(inv, pb.ErrorMessage(code=500, message=str(e)))
            return
        except Exception as e:  # a bug in the runtime must not take the server down
            log.exception("attempt of %s crashed", inv.id)
            if inv.attempt is attempt:
                self._attempt_failed(inv, pb.ErrorMessage(code=500, message=f"internal error: {e!r}"))
            return
        if inv.attempt is attempt and not self._stopping:
            # The handler returned without a terminal message (cannot happen with the SDK's attempt
            # driver, but a remote deployment may do it): treat as a failure.
            self._attempt_failed(inv, pb.ErrorMessage(code=571, message="the attempt ended without End"))

    # ---- state ----

    def _state_snapshot(self, inv: Invocation, handler: Handler) -> dict[bytes, bytes]:
        if not handler.is_shared:
            return self.keys.state(inv.service, inv.key, lambda: self.store.load_state(inv.service, inv.key))
        entry = self.keys.get(inv.service, inv.key)
        if entry is not None and entry.state is not None:
            return dict(entry.state)
        return self.store.load_state(inv.service, inv.key)

    def _apply_state(self, inv: Invocation, handler: Handler, type_id: int, msg: Any) -> str | None:
        """Apply a state command; returns an error message if the handler may not do it."""
        if handler.service.kind == "service":
            return f"{inv.service}/{inv.handler} is a service handler: it has no state"
        if handler.is_shared and type_id in (m.SET_STATE, m.CLEAR_STATE, m.CLEAR_ALL_STATE):
            return f"{inv.service}/{inv.handler} is a shared handler: it may read state but not write it"
        svc, key = inv.service, inv.key
        if type_id == m.GET_LAZY_STATE:
            value = self._state_snapshot(inv, handler).get(msg.key)
            note = _note(msg.result_completion_id)
            if value is None:
                note.void.SetInParent()
            else:
                note.value.content = value
            self._notify_running(inv, m.GET_LAZY_STATE_COMPLETION, note)
            return None
        if type_id == m.GET_LAZY_STATE_KEYS:
            note = _note(msg.result_completion_id)
            note.state_keys.keys.extend(sorted(self._state_snapshot(inv, handler)))
            self._notify_running(inv, m.GET_LAZY_STATE_KEYS_COMPLETION, note)
            return None
        if type_id not in (m.SET_STATE, m.CLEAR_STATE, m.CLEAR_ALL_STATE):
            return None  # eager reads carry their result; nothing to do
        state = self.keys.state(svc, key, lambda: self.store.load_state(svc, key))
        ops = self.committer.batch.ops
        if type_id == m.SET_STATE:
            state[msg.key] = msg.value.content
            ops.append(("INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)", (svc, key, msg.key, msg.value.content)))
        elif type_id == m.CLEAR_STATE:
            state.pop(msg.key, None)
            ops.append(("DELETE FROM state WHERE service = ? AND key = ? AND name = ?", (svc, key, msg.key)))
        else:
            state.clear()
            ops.append(("DELETE FROM state WHERE service = ? AND key = ?", (svc, key)))
        return None

    # ---- messages from attempts ----

    def on_attempt_messages(self, inv: Invocation, attempt: Attempt | None,
                            msgs: list[tuple[int, Message]]) -> None:
        """Process what an attempt wrote, in order."""
        if inv.attempt is not attempt or attempt is None:
            return
        inv.last_activity = inv.last_from_attempt = self.clock.now()
        for type_id, msg in msgs:
            if inv.attempt is not attempt:
                return  # a stale attempt (aborted, superseded): its writes are ignored
            if m.is_command(type_id):
                error = command_too_large(type_id, msg, self.options.journal_entry_limit) or self._command(
                    inv, attempt, type_id, msg)
                if error is not None:
                    self._abort_attempt(inv)
                    self._attempt_failed(inv, pb.ErrorMessage(code=571, message=error))
                    return
            elif type_id == m.PROPOSE_RUN_COMPLETION:
                self._run_completed(inv, msg)  # type: ignore[arg-type]
            elif type_id == m.END:
                self._end(inv)
            elif type_id == m.SUSPENSION:
                self._suspend(inv, msg)  # type: ignore[arg-type]
            elif type_id == m.ERROR:
                self._attempt_failed(inv, msg)  # type: ignore[arg-type]
                bug = getattr(attempt, "code_bug", None)  # only the in-process attempt can tell
                if bug is not None:
                    self._tell_waiters_of_bug(inv, bug)
            else:
                log.warning("ignoring unexpected message %s from %s", m.type_name(type_id), inv.id)

    def _command(self, inv: Invocation, attempt: Attempt, type_id: int, msg: Any) -> str | None:
        handler = attempt.handler
        if type_id in (m.GET_LAZY_STATE, m.GET_LAZY_STATE_KEYS, m.SET_STATE, m.CLEAR_STATE, m.CLEAR_ALL_STATE,
                       m.GET_EAGER_STATE, m.GET_EAGER_STATE_KEYS):
            if handler.service.kind == "service" or (
                    handler.is_shared and type_id in (m.SET_STATE, m.CLEAR_STATE, m.CLEAR_ALL_STATE)):
                return self._apply_state(inv, handler, type_id, msg)
            self._append(inv, type_id, msg)
            return self._apply_state(inv, handler, type_id, msg)
        if type_id in (m.GET_PROMISE, m.PEEK_PROMISE, m.COMPLETE_PROMISE) and handler.service.kind != "workflow":
            return f"{inv.service}/{inv.handler} is not a workflow handler: promises belong to workflows"
        self._append(inv, type_id, msg)
        if type_id == m.OUTPUT:
            inv.output_command = msg
        elif type_id == m.SLEEP:
            self.timers.add(inv.id, "sleep", msg.result_completion_id, msg.wake_up_time)
        elif type_id == m.CALL:
            self._call(inv, msg)
        elif type_id == m.ONE_WAY_CALL:
            self._send(inv, msg)
        elif type_id == m.COMPLETE_AWAKEABLE:
            result = msg.value.content if msg.WhichOneof("result") == "value" else None
            fail = msg.failure if msg.WhichOneof("result") == "failure" else None
            if self.complete_awakeable(msg.awakeable_id, result, fail) is None:
                log.warning("invocation %s completed unknown or malformed awakeable %s", inv.id, msg.awakeable_id)
        elif type_id == m.SEND_SIGNAL:
            self._signal(inv, msg)
        elif type_id in (m.GET_PROMISE, m.PEEK_PROMISE, m.COMPLETE_PROMISE):
            self._promise(inv, type_id, msg)
        elif type_id == m.ATTACH_INVOCATION:
            self._attach(inv, msg, m.ATTACH_INVOCATION_COMPLETION, wait=True)
        elif type_id == m.GET_INVOCATION_OUTPUT:
            self._attach(inv, msg, m.GET_INVOCATION_OUTPUT_COMPLETION, wait=False)
        return None

    def _run_completed(self, inv: Invocation, msg: pb.ProposeRunCompletionMessage) -> None:
        note = _note(msg.result_completion_id)
        too_large = run_result_too_large(msg, self._run_name(inv, msg.result_completion_id),
                                         self.options.journal_entry_limit)
        if too_large is not None:
            log.warning("invocation %s: %s", inv.id, too_large)
            note.failure.code = ENTRY_TOO_LARGE_CODE
            note.failure.message = too_large
        elif msg.WhichOneof("result") == "failure":
            note.failure.CopyFrom(msg.failure)
        else:
            note.value.content = msg.value
        self._notify_running(inv, m.RUN_COMPLETION, note)

    def _run_name(self, inv: Invocation, cid: int) -> str:
        for type_id, cmd in reversed(inv.journal or ()):
            if type_id == m.RUN and cmd.result_completion_id == cid:  # type: ignore[attr-defined]
                return cmd.name  # type: ignore[attr-defined,no-any-return]
        return ""

    def _notify_running(self, inv: Invocation, type_id: int, note: pb.NotificationMessage) -> None:
        """Journal a notification for an invocation whose attempt is (probably) running; deliver after commit."""
        self._append(inv, type_id, note)
        attempt = inv.attempt
        if attempt is None:
            return

        def deliver() -> None:
            # While draining, an attempt gets nothing new: it suspends once its running step is journaled.
            if inv.attempt is attempt and not self._draining:
                inv.last_activity = self.clock.now()
                attempt.deliver(type_id, note)

        self._after_commit(deliver)

    def _end(self, inv: Invocation) -> None:
        out = inv.output_command
        if out is None:
            self._attempt_failed(inv, pb.ErrorMessage(code=571, message="End without an output command"))
            return
        if out.WhichOneof("result") == "failure":  # type: ignore[attr-defined]
            f = out.failure  # type: ignore[attr-defined]
            outcome = Outcome(failure_code=f.code, failure_message=f.message,
                              failure_metadata={x.key: x.value for x in f.metadata} or None)
        else:
            outcome = Outcome(value=out.value.content)  # type: ignore[attr-defined]
        self._complete(inv, outcome)

    def _detach(self, inv: Invocation) -> None:
        if self.tracing is not None:
            self.tracing.attempt_ended(inv.id)
        transport = getattr(inv.attempt, "transport", None)
        if isinstance(transport, _LocalTransport):
            # The attempt and its transport point at each other, and the attempt's VM holds the input
            # (up to the body limit): break the cycle so it is freed now, not at some later full GC.
            transport.attempt = None
        inv.attempt = None
        inv.task = None
        if inv.watchdog is not None:
            inv.watchdog.cancel()
            inv.watchdog = None

    def _complete(self, inv: Invocation, outcome: Outcome) -> None:
        now = self.now_ms()
        self._detach(inv)
        was_holding = inv.status in _HOLDING or inv.status == INVOKED
        was_queued = inv.status == INBOXED
        inv.status = COMPLETED
        inv.outcome = outcome
        if self.stats is not None:
            counts = self.stats.completed if outcome.failure_code is None else self.stats.failed
            counts[(inv.service, inv.handler)] += 1
        self.events.ended(inv, outcome, now)
        inv.completed_at = now
        retention = retention_for(self.handler(inv.service, inv.handler), bool(inv.idempotency_key),
                                  self.options.retention)
        inv.retention_until = now + int(retention.total_seconds() * 1000)
        inv.waiting = None
        inv.next_retry_at = None
        inv.inbox_seq = None
        if inv.retry_timer is not None:
            inv.retry_timer.cancel()
            inv.retry_timer = None
        self._mark(inv)
        for caller, cid, type_id in self._waiters.pop(inv.id, ()):
            self.notify(caller, type_id, _outcome_note(cid, outcome))
        self.committer.batch.ops.append(("DELETE FROM waiters WHERE target = ?", (inv.id,)))
        if was_holding or was_queued:
            self._release_key(inv)
        for nxt in self.limiter.release(inv.id):
            self._admitted(nxt)

        def release() -> None:
            self._active.pop(inv.id, None)
            inv.journal = None
            for w in self._outcome_waiters.pop(inv.id, ()):
                if not w.done():
                    w.set_result(outcome)

        self._after_commit(release)

    def _suspend(self, inv: Invocation, msg: pb.SuspensionMessage) -> None:
        self._detach(inv)
        # Named signals wait under their name (a str never equals an int handle). A v7 deployment sends the
        # awaited future tree: any of its leaves completing is a reason to run again (the SDK re-evaluates).
        waiting: list[int | str] = []
        futures = [msg.awaiting_on] if msg.HasField("awaiting_on") else [msg]
        while futures:
            fut = futures.pop()
            waiting += list(fut.waiting_completions)
            waiting += [SIGNAL_HANDLE_BASE + s for s in fut.waiting_signals]
            waiting += list(fut.waiting_named_signals)
            futures += list(getattr(fut, "nested_futures", ()))
        inv.waiting = waiting
        inv.status = SUSPENDED
        self._mark(inv)
        done = self._completed_handles(inv)
        if not any(h in done for h in waiting):
            self.events.suspended(inv, len(waiting))
        else:
            # What it waits for is already journaled (a run result proposed just before suspending).
            inv.status = INVOKED
            inv.waiting = None
            self._resume_after_commit(inv)
            return

    def _resume_after_commit(self, inv: Invocation) -> None:
        version = inv.version

        def resume() -> None:
            if inv.status == INVOKED and inv.attempt is None:
                if self.options.always_replay and inv.version == version:
                    inv.journal = None  # all of it is committed: replay from the store itself
                self._start_attempt(inv)

        self._after_commit(resume)

    def _completed_handles(self, inv: Invocation) -> set[int | str]:
        if inv.journal is None:
            self._load_journal(inv)
        done: set[int | str] = set()
        for type_id, msg in inv.journal or ():
            if m.is_notification(type_id):
                which = msg.WhichOneof("id")  # type: ignore[attr-defined]
                if which == "completion_id":
                    done.add(msg.completion_id)  # type: ignore[attr-defined]
                elif which == "signal_id":
                    done.add(SIGNAL_HANDLE_BASE + msg.signal_id)  # type: ignore[attr-defined]
                elif which == "signal_name":
                    done.add(msg.signal_name)  # type: ignore[attr-defined]
        return done

    def _attempt_failed(self, inv: Invocation, err: pb.ErrorMessage) -> None:
        if self.tracing is not None:
            self.tracing.attempt_failed(inv.id, err.code, err.message)
        self._detach(inv)
        inv.retry_count += 1
        inv.last_error = json.dumps({"code": err.code, "message": err.message})
        handler = self.handler(inv.service, inv.handler)
        policy = (handler.effective_retry_policy(self.options.default_retry_policy) if handler is not None
                  else self.options.default_retry_policy)
        # A journal mismatch or protocol violation is a bug to fix, not a passing fault: logged as an error.
        level = logging.ERROR if err.code in (570, 571) else logging.INFO
        if err.behavior == pb.FAIL:  # v7: the deployment says retrying cannot help
            code = err.code if 400 <= err.code <= 599 else 500
            self._complete(inv, Outcome(failure_code=code, failure_message=err.message))
            return
        if err.behavior == pb.PAUSE:  # v7: the deployment asks for an operator
            inv.status = PAUSED
            self._mark(inv)
            self.events.paused(inv, err.code, err.message)
            return
        if policy.max_attempts is not None and inv.attempts >= policy.max_attempts:
            if policy.on_max_attempts == "kill":
                code = err.code if 400 <= err.code <= 599 else 500
                self._complete(inv, Outcome(failure_code=code, failure_message=err.message))
                return
            inv.status = PAUSED
            self._mark(inv)
            self.events.paused(inv, err.code, err.message)
            return
        if err.HasField("next_retry_delay"):
            delay_ms = float(err.next_retry_delay)
        else:
            initial = (policy.initial_interval or timedelta(milliseconds=500)).total_seconds() * 1000
            factor = policy.exponentiation_factor or 2.0
            cap = (policy.max_interval or timedelta(seconds=60)).total_seconds() * 1000
            delay_ms = min(initial * factor ** max(0, inv.attempts - 1), cap)
            delay_ms *= 1 + random.random() * self.options.jitter
        inv.status = BACKING_OFF
        inv.next_retry_at = self.now_ms() + int(delay_ms)
        self._mark(inv)
        self.events.retrying(inv, err.code, err.message, int(delay_ms), level)

        def schedule() -> None:
            if inv.status == BACKING_OFF and not self._stopping:
                inv.retry_timer = self.clock.call_at(inv.next_retry_at / 1000,  # type: ignore[operator]
                                                     lambda: self._retry_now(inv))

        self._after_commit(schedule)

    def _tell_waiters_of_bug(self, inv: Invocation, message: str) -> None:
        """Answer whoever waits on the invocation over HTTP with the bug now (500); it keeps retrying.

        Callers inside the runtime (other invocations' calls) keep waiting for the real outcome: what they
        see must come from the journal.
        """
        outcome = Outcome(failure_code=500, failure_message=message)

        def answer() -> None:
            for w in self._outcome_waiters.pop(inv.id, ()):
                if not w.done():
                    w.set_result(outcome)

        self._after_commit(answer)

    def _retry_now(self, inv: Invocation) -> None:
        inv.retry_timer = None
        if inv.status == BACKING_OFF and not self._stopping:
            if self.stats is not None:
                self.stats.retries[(inv.service, inv.handler)] += 1
            self._start_attempt(inv)

    # ---- inactivity and abort timeouts ----

    def _timeouts(self, handler: Handler) -> tuple[float, float]:
        inactivity = handler.effective_inactivity_timeout() or self.options.inactivity_timeout
        abort = handler.effective_abort_timeout() or self.options.abort_timeout
        return inactivity.total_seconds(), abort.total_seconds()

    def _arm_watchdog(self, inv: Invocation, attempt: Attempt, handler: Handler) -> None:
        inactivity, abort = self._timeouts(handler)
        due = inv.last_from_attempt + abort if inv.input_closed else inv.last_activity + inactivity
        inv.watchdog = self.clock.call_at(due, lambda: self._watchdog_fired(inv, attempt, handler))

    def _watchdog_fired(self, inv: Invocation, attempt: Attempt, handler: Handler) -> None:
        inv.watchdog = None
        if inv.attempt is not attempt or self._stopping:
            return
        inactivity, abort = self._timeouts(handler)
        now = self.clock.now()
        if not inv.input_closed:
            if now >= inv.last_activity + inactivity:
                # Nothing flowed for the inactivity timeout: ask the attempt to suspend at its next wait.
                inv.input_closed = True
                inv.last_from_attempt = now
                attempt.close_input()
        elif now >= inv.last_from_attempt + abort:
            log.warning("invocation %s: no progress for %.0f s after the inactivity timeout; aborting the attempt",
                        inv.id, abort)
            self._abort_attempt(inv)
            self._attempt_failed(inv, pb.ErrorMessage(
                code=500, message=f"the attempt was aborted: no journal entry for {inactivity:g} s of inactivity "
                f"plus {abort:g} s of abort timeout (raise the handler's inactivity_timeout/abort_timeout for "
                "long steps)"))
            return
        self._arm_watchdog(inv, attempt, handler)

    def _abort_attempt(self, inv: Invocation) -> None:
        attempt, task = inv.attempt, inv.task
        self._detach(inv)
        if attempt is not None:
            attempt.abort()
            threads = getattr(attempt, "executor", None)
            if isinstance(threads, AttemptThreads) and threads.abandon():
                log.warning("invocation %s: its attempt was aborted while a sync ctx.run closure runs; the thread "
                            "stays busy until the closure returns (see GET /threads)", inv.id)
        if task is not None and not task.done():
            task.cancel()

    # ---- notifications from outside the attempt ----

    def notify(self, inv_id: str, type_id: int, note: pb.NotificationMessage) -> bool:
        """Journal a notification for an invocation and wake it if it waits for it.

        Returns False if the invocation does not exist or has completed (the notification is dropped).
        """
        inv = self._load(inv_id)
        if inv is None or inv.status == COMPLETED:
            return False
        if inv.attempt is not None:
            self._notify_running(inv, type_id, note)
            return True
        self._append(inv, type_id, note)
        which = note.WhichOneof("id")
        handle: int | str = (note.completion_id if which == "completion_id" else note.signal_name
                             if which == "signal_name" else SIGNAL_HANDLE_BASE + note.signal_id)
        if inv.status == SUSPENDED:
            if inv.waiting is not None and handle in inv.waiting:
                # Durably mark the resumption with the notification, so a crash in between resumes too.
                inv.status = INVOKED
                inv.waiting = None
                self._mark(inv)
                self._resume_after_commit(inv)
        return True

    # ---- durable timers ----

    def _timer_fired(self, inv_id: str, kind: str, cid: int) -> None:
        if kind == "sleep":
            note = _note(cid)
            note.void.SetInParent()
            self.notify(inv_id, m.SLEEP_COMPLETION, note)
        elif kind == "start":
            inv = self._load(inv_id)
            if inv is not None and inv.status == SCHEDULED:
                handler = self.handler(inv.service, inv.handler)
                inv.execution_time = None
                if handler is None:
                    self._start_attempt(inv)  # fails and retries with a clear error
                else:
                    self._begin(inv, handler)

    # ---- calls and sends ----

    def _child(self, caller: Invocation, service: str, handler_name: str, param: bytes,
               headers: list[tuple[str, str]], key: str, idempotency_key: str | None,
               delay_ms: int, scope: str | None = None,
               limit_key: str | None = None) -> tuple[str | None, bool, str | None]:
        """Create a callee; returns (its id, created, error)."""
        handler = self.handler(service, handler_name)
        if handler is None:
            return None, False, f"handler '{service}/{handler_name}' not found"
        if self.tracing is not None:
            headers = self.tracing.child_headers(caller.id, headers)
        try:
            _, child_id, created = self.invoke(handler, param, headers, key, idempotency_key, delay_ms, scope,
                                               limit_key)
        except FlowControlError as e:
            return None, False, str(e)
        if created:
            self.committer.batch.ops.append(("INSERT OR IGNORE INTO calls VALUES (?, ?)", (child_id, caller.id)))
        if handler.kind == "workflow" and not created:
            return child_id, False, "the workflow method was already invoked"
        return child_id, created, None

    def _call(self, inv: Invocation, cmd: pb.CallCommandMessage) -> None:
        headers = [(h.key, h.value) for h in cmd.headers]
        scope, limit_key = _flow_fields(cmd)
        try:
            check_scope(scope, limit_key)
        except FlowControlError as e:
            child_id, error, code = None, str(e), 400
        else:
            child_id, _, error = self._child(inv, cmd.service_name, cmd.handler_name, cmd.parameter, headers,
                                             cmd.key, cmd.idempotency_key if cmd.HasField("idempotency_key")
                                             else None, 0, scope, limit_key)
            code = 409 if child_id is not None else 404
        id_note = _note(cmd.invocation_id_notification_idx)
        id_note.invocation_id = child_id or ""
        self._notify_running(inv, m.CALL_INVOCATION_ID_COMPLETION, id_note)
        if error is not None and (child_id is None or error.startswith("the workflow")):
            self._notify_running(inv, m.CALL_COMPLETION, _failure_note(cmd.result_completion_id, code, error))
            return
        self._wait_for_outcome(inv, child_id, cmd.result_completion_id, m.CALL_COMPLETION)  # type: ignore[arg-type]

    def _wait_for_outcome(self, inv: Invocation, target_id: str, cid: int, type_id: int) -> None:
        """Answer `inv` on `cid` with the target's outcome, now if it is completed, else when it completes."""
        target = self._active.get(target_id)
        if target is None or target.status == COMPLETED:
            exists, outcome = self.peek_outcome(target_id) if target is None else (True, target.outcome)
            if outcome is not None:
                self._notify_running(inv, type_id, _outcome_note(cid, outcome))
                return
            if not exists:
                self._notify_running(inv, type_id, _failure_note(cid, 404, f"invocation {target_id} not found"))
                return
        self._waiters.setdefault(target_id, []).append((inv.id, cid, type_id))
        self.committer.batch.ops.append(("INSERT OR REPLACE INTO waiters VALUES (?, ?, ?, ?)",
                                         (target_id, inv.id, cid, type_id)))

    def _send(self, inv: Invocation, cmd: pb.OneWayCallCommandMessage) -> None:
        headers = [(h.key, h.value) for h in cmd.headers]
        delay = max(0, cmd.invoke_time - self.now_ms()) if cmd.invoke_time else 0
        child_id, _, error = self._child(inv, cmd.service_name, cmd.handler_name, cmd.parameter, headers, cmd.key,
                                         cmd.idempotency_key if cmd.HasField("idempotency_key") else None, delay,
                                         *_flow_fields(cmd))
        if error is not None and child_id is None:
            log.warning("invocation %s: send to %s/%s dropped: %s", inv.id, cmd.service_name, cmd.handler_name,
                        error)
        id_note = _note(cmd.invocation_id_notification_idx)
        id_note.invocation_id = child_id or ""
        self._notify_running(inv, m.CALL_INVOCATION_ID_COMPLETION, id_note)

    def _attach(self, inv: Invocation, cmd: Any, type_id: int, wait: bool) -> None:
        which = cmd.WhichOneof("target")
        if which == "invocation_id":
            target = cmd.invocation_id
        elif which == "workflow_target":
            target = str(InvocationId.for_workflow(cmd.workflow_target.workflow_name, cmd.workflow_target.workflow_key))
        else:
            t = cmd.idempotent_request_target
            key = t.service_key if t.HasField("service_key") else None
            target = str(InvocationId.for_idempotent_request(t.service_name, t.handler_name, t.idempotency_key, key))
        cid = cmd.result_completion_id
        if wait:
            try:
                InvocationId.parse(target)
            except ValueError as e:
                self._notify_running(inv, type_id, _failure_note(cid, 400, f"malformed invocation id: {e}"))
                return
            self._wait_for_outcome(inv, target, cid, type_id)
            return
        _, outcome = self.peek_outcome(target)
        note = _outcome_note(cid, outcome) if outcome is not None else _note(cid)
        if outcome is None:
            note.void.SetInParent()
        self._notify_running(inv, type_id, note)

    def _signal(self, inv: Invocation, cmd: pb.SendSignalCommandMessage) -> None:
        target = cmd.target_invocation_id
        if cmd.WhichOneof("signal_id") == "idx" and cmd.idx == CANCEL_SIGNAL:
            self.cancel(target)
            return
        if cmd.WhichOneof("signal_id") == "name":
            note = pb.NotificationMessage(signal_name=cmd.name)
        else:
            note = pb.NotificationMessage(signal_id=cmd.idx)
        which = cmd.WhichOneof("result")
        if which == "value":
            note.value.CopyFrom(cmd.value)
        elif which == "failure":
            note.failure.CopyFrom(cmd.failure)
        else:
            note.void.SetInParent()
        self.notify(target, m.SIGNAL_NOTIFICATION, note)

    # ---- awakeables ----

    def complete_awakeable(self, awakeable_id: str, value: bytes | None, failure: pb.Failure | None) -> bool | None:
        """Resolve (value) or reject (failure) an awakeable. None: malformed id; False: no such invocation."""
        try:
            target, idx = parse_awakeable_id(awakeable_id)
        except ValueError:
            return None
        note = pb.NotificationMessage(signal_id=idx)
        if failure is not None:
            note.failure.CopyFrom(failure)
        else:
            note.value.content = value or b""
        return self.notify(str(target), m.SIGNAL_NOTIFICATION, note)

    # ---- promises ----

    def _promise_outcome(self, svc: str, key: str, name: str) -> Outcome | None:
        pending = self._promises.get((svc, key, name))
        if pending is not None:
            return pending
        row = self.store.load_promise(svc, key, name)
        if row is None:
            return None
        value, code, message = row
        return Outcome(value=value) if code is None else Outcome(failure_code=code, failure_message=message)

    def _promise(self, inv: Invocation, type_id: int, cmd: Any) -> None:
        svc, key, name = inv.service, inv.key, cmd.key
        cid = cmd.result_completion_id
        current = self._promise_outcome(svc, key, name)
        if type_id == m.GET_PROMISE:
            if current is not None:
                self._notify_running(inv, m.GET_PROMISE_COMPLETION, _outcome_note(cid, current))
            else:
                target = f"promise:{svc}/{key}/{name}"
                self._waiters.setdefault(target, []).append((inv.id, cid, m.GET_PROMISE_COMPLETION))
                self.committer.batch.ops.append(("INSERT OR REPLACE INTO waiters VALUES (?, ?, ?, ?)",
                                                 (target, inv.id, cid, m.GET_PROMISE_COMPLETION)))
            return
        if type_id == m.PEEK_PROMISE:
            note = _outcome_note(cid, current) if current is not None else _note(cid)
            if current is None:
                note.void.SetInParent()
            self._notify_running(inv, m.PEEK_PROMISE_COMPLETION, note)
            return
        if current is not None:
            self._notify_running(inv, m.COMPLETE_PROMISE_COMPLETION,
                                 _failure_note(cid, 409, f"promise '{name}' was already completed"))
            return
        if cmd.WhichOneof("completion") == "completion_failure":
            outcome = Outcome(failure_code=cmd.completion_failure.code,
                              failure_message=cmd.completion_failure.message)
        else:
            outcome = Outcome(value=cmd.completion_value.content)
        self._promises[(svc, key, name)] = outcome
        self.committer.batch.ops.append(("INSERT INTO promises VALUES (?, ?, ?, ?, ?, ?)",
                                         (svc, key, name, outcome.value, outcome.failure_code,
                                          outcome.failure_message)))
        self._after_commit(lambda: self._promises.pop((svc, key, name), None))
        done = _note(cid)
        done.void.SetInParent()
        self._notify_running(inv, m.COMPLETE_PROMISE_COMPLETION, done)
        target = f"promise:{svc}/{key}/{name}"
        for waiter, wcid, wtype in self._waiters.pop(target, ()):
            self.notify(waiter, wtype, _outcome_note(wcid, outcome))
        self.committer.batch.ops.append(("DELETE FROM waiters WHERE target = ?", (target,)))

    # ---- operator actions ----

    def set_concurrency_rule(self, pattern: str, limit: int | None) -> bool:
        """Create or change (limit) or delete (None) a concurrency rule; queued invocations that now fit start.

        Returns False when deleting a rule that does not exist. Raises FlowControlError on a bad pattern.
        The change is kept in the store (like Restate's rule book) and applies again after a restart, except
        for patterns `durably serve --concurrency-limit` names: those take the flag's value at every start.
        Await `barrier()` to know it is durable.
        """
        found = True
        if limit is None:
            found = self.limiter.delete_rule(pattern)
        else:
            self.limiter.set_rule(pattern, limit)
        if not found:
            return False
        self._rule_changes[pattern.strip()] = limit
        self.committer.batch.ops.append(("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                         (_RULES_META_KEY, json.dumps(self._rule_changes))))
        self.committer.schedule()
        for inv_id in self.limiter.drain():
            self._admitted(inv_id)
        return found

    def _restore_rules(self) -> None:
        rows = self.store.query("SELECT value FROM meta WHERE key = ?", (_RULES_META_KEY,))
        self._rule_changes = json.loads(rows[0][0]) if rows else {}
        for pattern, limit in self._rule_changes.items():
            if pattern in self.options.concurrency_rules:
                continue  # the flag given at this start wins
            try:
                if limit is None:
                    self.limiter.delete_rule(pattern)
                else:
                    self.limiter.set_rule(pattern, limit)
            except FlowControlError as e:
                log.error("stored concurrency rule %r=%r ignored: %s", pattern, limit, e)

    # Call-tree operations live in server/calltree.py; these are the engine's entry points for them.

    def cancel(self, inv_id: str) -> ActionResult:
        """Cancel an invocation (and, through its handler, the calls it made)."""
        return calltree.cancel(self, inv_id)

    def kill(self, inv_id: str) -> ActionResult:
        """Kill an invocation and every call below it; callers get 409 "killed"."""
        return calltree.kill(self, inv_id)

    def pause(self, inv_id: str) -> ActionResult:
        """Stop retrying an invocation until it is resumed."""
        return calltree.pause(self, inv_id)

    def resume(self, inv_id: str) -> ActionResult:
        """Run a paused invocation again with a fresh retry budget."""
        return calltree.resume(self, inv_id)

    def purge(self, inv_id: str) -> ActionResult:
        """Delete a completed invocation with its journal."""
        return calltree.purge(self, inv_id)

    def _delete(self, row: tuple[Any, ...]) -> None:
        inv_id = row[COL["id"]]
        if self.stats is not None:
            self.stats.purged += 1
        self.committer.batch.deleted.append(inv_id)
        handler = self.handler(row[COL["service"]], row[COL["handler"]])
        if handler is not None and handler.kind == "workflow":
            # A workflow's state and promises live as long as its run.
            svc, key = row[COL["service"]], row[COL["key"]]
            self.committer.batch.ops.append(("DELETE FROM state WHERE service = ? AND key = ?", (svc, key)))
            self.committer.batch.ops.append(("DELETE FROM promises WHERE service = ? AND key = ?", (svc, key)))
        self.committer.schedule()

    # ---- housekeeping ----

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(60)
            self.purge_expired()

    def purge_expired(self) -> int:
        """Delete completed invocations whose retention has passed; returns how many."""
        n = 0
        for inv_id in self.store.expired(self.now_ms()):
            row = self.store.load_invocation(inv_id)
            if row is not None and inv_id not in self._active:
                self._delete(row)
                n += 1
        return n

    def live_row(self, inv_id: str) -> tuple[Any, ...] | None:
        """The current row of an invocation held in memory (None if it is not)."""
        inv = self._active.get(inv_id)
        return None if inv is None else inv.to_row()

    def active_count(self) -> int:
        """Invocations held in memory right now."""
        return len(self._active)

    def is_stopping(self) -> bool:
        """Whether the engine stopped taking work."""
        return self._stopping
