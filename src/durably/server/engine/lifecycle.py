"""The attempt lifecycle: start, abort, complete, fail (retry, backoff, pause), suspend and wake attempts.

An invocation runs as a sequence of attempts. Each one replays the journal and goes on; it ends with an
output (complete), a suspension (it waits on something missing: the next notification it waits for
starts a new attempt), or a failure, which the retry policy turns into a backoff, a pause or a failed
outcome. A watchdog asks an attempt that made no progress for the inactivity timeout to suspend, and
aborts it after the abort timeout. Completion tells its listeners, in the order they were added.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import timedelta
from typing import Any

from google.protobuf.message import Message

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.protocol.ids import sha256_random_seed
from durably.sdk.attempt import Attempt
from durably.sdk.context import InvocationContext
from durably.sdk.errors import VMError
from durably.sdk.service import Handler
from durably.sdk.vm import SIGNAL_HANDLE_BASE, VM
from durably.server.engine.admission import flow_of
from durably.server.engine.calls import OutcomeWaiters
from durably.server.engine.catalog import Catalog
from durably.server.engine.clock import Clock
from durably.server.engine.commands import start_state, state_view
from durably.server.engine.committer import GroupCommitter
from durably.server.engine.flow_control import without_flow_headers
from durably.server.engine.interfaces import (
    AttemptSink,
    CompletionListener,
    EngineOptions,
    EngineStopped,
    InvocationTable,
    RunningAttempt,
)
from durably.server.engine.invocation import (
    BACKING_OFF,
    COMPLETED,
    HOLDING,
    INBOXED,
    INVOKED,
    PAUSED,
    SUSPENDED,
    Invocation,
    Outcome,
)
from durably.server.engine.keys import KeyTable
from durably.server.engine.threads import AttemptThreads, StepThreads
from durably.server.observe.lifecycle_log import LifecycleLog
from durably.server.observe.metrics import EngineStats
from durably.server.remote.attempt import ConnectionPool, RemoteAttempt, RemoteAttemptError
from durably.server.remote.deployments import RemoteService
from durably.server.store.base import Store
from durably.server.store.ops import EndAttempt, StartAttempt

log = logging.getLogger("durably.engine")


# ---- retention ----
# How long a completed invocation (its row, output and journal) is kept before it is purged. Settings, as
# restate-sdk names them, on the handler first, then its service, then the server-wide default
# (`durably serve --retention`, 1 day unless set):
# - `journal_retention`: how long a completed invocation stays visible with its journal (admin API, UI).
# - `idempotency_retention`: for a request with an idempotency key, how long a repeat gets the stored
#   result instead of running again; the invocation is kept for the longer of the two.
# - `workflow_retention` (workflow main handlers): how long the run's result, state and promises are kept.
# Durably keeps one deadline per invocation (row and journal go together), the longest that applies.

def retry_delay_ms(initial_ms: float, factor: float, cap_ms: float, attempts: int, jitter: float) -> float:
    """The wait before the next attempt: exponential from `initial_ms`, spread by up to `jitter` (0.3: 30 %)
    and never over `cap_ms` (the policy's max_interval). Below the cap the window is [delay, delay * (1 +
    jitter)]; at the cap it is [cap / (1 + jitter), cap], so retries stay spread without passing it."""
    base = min(initial_ms * factor ** max(0, attempts - 1), cap_ms)
    high = min(base * (1 + jitter), cap_ms)
    low = min(base, high / (1 + jitter))
    return low + random.random() * (high - low)


def _first(*values: timedelta | None) -> timedelta | None:
    return next((v for v in values if v is not None), None)


def retention_for(handler: Any, has_idempotency_key: bool, default: timedelta) -> timedelta:
    """The retention of a completed invocation of `handler` (None: a handler no longer in the app)."""
    if handler is None:
        return default
    svc = handler.service
    journal = _first(handler.journal_retention, getattr(svc, "journal_retention", None))
    if handler.kind == "workflow":
        return _first(handler.workflow_retention, journal, default)  # type: ignore[return-value]
    if has_idempotency_key:
        idem = _first(handler.idempotency_retention, getattr(svc, "idempotency_retention", None))
        if idem is not None or journal is not None:
            return max(v for v in (idem, journal) if v is not None)
    return journal if journal is not None else default


class LocalTransport:
    """Hands an in-process attempt's messages straight to the engine, no bytes in between."""

    __slots__ = ("attempt", "inv", "sink")

    def __init__(self, sink: AttemptSink, inv: Invocation) -> None:
        self.sink = sink
        self.inv = inv
        self.attempt: Attempt | None = None

    def send(self, messages: list[tuple[int, Message]]) -> None:
        self.sink.on_attempt_messages(self.inv, self.attempt, messages)  # type: ignore[arg-type]


class _Unconnected:
    def on_attempt_messages(self, inv: Invocation, attempt: RunningAttempt | None,
                            msgs: list[tuple[int, Message]]) -> None:
        raise RuntimeError("the lifecycle was not connected to the commands of running attempts")


class Lifecycle:
    """Implements `AttemptLifecycle`."""

    def __init__(self, table: InvocationTable, catalog: Catalog, keys: KeyTable, store: Store,
                 committer: GroupCommitter, clock: Clock, options: EngineOptions, stats: EngineStats | None,
                 events: LifecycleLog, run_executor: StepThreads, pool: ConnectionPool,
                 outcomes: OutcomeWaiters) -> None:
        self.table = table
        self.catalog = catalog
        self.keys = keys
        self.store = store
        self.committer = committer
        self.clock = clock
        self.options = options
        self.stats = stats
        self.events = events
        self.tracing = options.tracing
        self.run_executor = run_executor
        self.pool = pool
        self.outcomes = outcomes
        # Where attempts hand what they write: the commands part (set when the engine wires its parts).
        self.sink: AttemptSink = _Unconnected()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False
        self.draining = False
        self._tasks: set[asyncio.Task[None]] = set()
        # When each running attempt started (ms): the key of its row in the attempt history.
        self._open_attempts: dict[str, int] = {}
        self._listeners: list[CompletionListener] = []

    def add_completion_listener(self, listener: CompletionListener) -> None:
        """Be told of every completion, after the listeners added before."""
        self._listeners.append(listener)

    # ---- whether the engine takes work ----

    def stop_reason(self) -> str:
        """Why the engine takes no work (after `stopping` or `draining` was set)."""
        if self.committer.failed is not None:
            return f"the store failed: {self.committer.failed}"
        return "the server is stopping; retry (with the same idempotency key) once it is back"

    def store_problem(self) -> str | None:
        """Why the store cannot commit now (disk full, read-only...), or None while it can."""
        if self.committer.failed is not None:
            return f"the store failed: {self.committer.failed}"
        err = self.committer.unhealthy
        if err is not None:
            return f"the store cannot commit ({err.cause}): {err.detail}; retrying until it recovers"
        return None

    def check_writable(self) -> None:
        """Raise EngineStopped (503) if a write now could not be committed soon: stopping, or the store failing."""
        if self.stopping or self.draining:
            raise EngineStopped(self.stop_reason())
        if self.committer.unhealthy is not None:
            raise EngineStopped(self.store_problem() or "")

    # ---- starting ----

    def start(self, inv: Invocation) -> None:
        """Run an attempt of the invocation now."""
        if self.stopping or self.draining:
            return  # it stays invoked (or inboxed, backing-off) in the store and starts after the restart
        handler = self.catalog.handler(inv.service, inv.handler)
        if inv.journal is None:
            self.table.load_journal(inv)
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
        self.table.activate(inv)
        self.table.mark(inv)
        self._attempt_started(inv)
        if handler is None:
            # The app no longer has this handler (code changed between restarts): retry, then pause.
            self.fail(inv, pb.ErrorMessage(code=404, message=f"handler {inv.service}/{inv.handler} is not in the app"))
            return
        now = int(self.clock.now() * 1000)
        id_bytes = inv.id_bytes
        start = pb.StartMessage(
            id=id_bytes, debug_id=inv.id, known_entries=len(inv.journal), key=inv.key,
            random_seed=sha256_random_seed(id_bytes), retry_count_since_last_stored_entry=inv.retry_count,
            duration_since_last_stored_entry=max(0, now - inv.last_entry_at) if inv.last_entry_at else 0,
        )
        if inv.idempotency_key:
            start.idempotency_key = inv.idempotency_key
        scope, limit_key = flow_of(self.table, inv)
        if scope is not None:
            start.scope = scope
        if limit_key is not None:
            start.limit_key = limit_key
        preload = handler.preload()
        if preload is False:
            start.partial_state = True
        else:
            # `state_preload`: all (within the eager-state bound), or the names asked for; the rest is lazy.
            state, start.partial_state = start_state(state_view(self.keys, self.store, inv, handler), preload,
                                                     self.options.eager_state)
            for name, value in state.items():
                start.state_map.add(key=name, value=value)
        attempt: RunningAttempt
        ctx: InvocationContext | None = None
        if isinstance(handler.service, RemoteService):
            dep = handler.service.deployment
            journal = list(inv.journal)
            if scope is not None:
                # The scope travels in Start (v7 field); the deployment does not see it as a request header.
                journal[0] = (journal[0][0], without_flow_headers(journal[0][1]))
            attempt = RemoteAttempt(self.sink, inv, handler, dep, start, journal, self.pool,
                                    self.options.always_replay, self.tracing)
            inv.attempt = attempt
            inv.input_closed = self.options.always_replay or not dep.bidi
        else:
            try:
                vm = VM(start, inv.journal)
            except VMError as e:
                self.fail(inv, pb.ErrorMessage(code=e.code, message=e.message))
                return
            transport = LocalTransport(self.sink, inv)
            # What `ctx.request().attempt_headers` shows, as a deployment is sent them by restate-server.
            headers = {"x-restate-invocation-id": inv.id}
            if self.tracing is not None:
                headers.update(self.tracing.attempt_headers(inv.id))
            local = Attempt(handler, vm, transport, clock=self.clock.now, attempt_headers=headers,
                            executor=AttemptThreads(self.run_executor, inv.id, f"{inv.service}/{inv.handler}"))
            transport.attempt = local
            attempt = local
            inv.attempt = attempt
            inv.input_closed = False
            if self.options.always_replay:
                attempt.close_input()
                inv.input_closed = True
            ctx = InvocationContext(local, inv.id, inv.key)
        inv.last_activity = inv.last_from_attempt = self.clock.now()
        task = self.loop.create_task(self._run(inv, attempt, ctx))  # type: ignore[union-attr]
        if ctx is not None:
            # An in-process handler runs its first steps within this tick: commit after them (committer.defer).
            self.committer.defer()
        inv.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._arm_watchdog(inv, attempt, handler)

    async def _run(self, inv: Invocation, attempt: RunningAttempt, ctx: InvocationContext | None) -> None:
        try:
            await attempt.run(ctx)
        except RemoteAttemptError as e:
            log.warning("invocation %s: %s", inv.id, e)
            if inv.attempt is attempt:
                self.abort(inv)
                self.fail(inv, pb.ErrorMessage(code=500, message=str(e)))
            return
        except Exception as e:  # a bug in the runtime must not take the server down
            log.exception("attempt of %s crashed", inv.id)
            if inv.attempt is attempt:
                self.fail(inv, pb.ErrorMessage(code=500, message=f"internal error: {e!r}"))
            return
        if inv.attempt is attempt and not self.stopping:
            # The handler returned without a terminal message (cannot happen with the SDK's attempt
            # driver, but a remote deployment may do it): treat as a failure.
            self.fail(inv, pb.ErrorMessage(code=571, message="the attempt ended without End"))

    # ---- the attempt history (the UI's timeline): one row per attempt, in the batch of its status change ----

    def _attempt_started(self, inv: Invocation) -> None:
        started = int(self.clock.now() * 1000)
        self._open_attempts[inv.id] = started
        self.table.write(StartAttempt(inv.seq, started, inv.attempts))

    def _attempt_ended(self, inv: Invocation, outcome: str, err: pb.ErrorMessage | None = None) -> None:
        started = self._open_attempts.pop(inv.id, None)
        if started is not None:
            error = None if err is None else json.dumps({"code": err.code, "message": err.message})
            self.table.write(EndAttempt(int(self.clock.now() * 1000), outcome, error, inv.seq, started))

    def arm_retry(self, inv: Invocation) -> None:
        """Start the next attempt of a backing-off invocation when its backoff is over."""
        inv.retry_timer = self.clock.call_at(inv.next_retry_at / 1000,  # type: ignore[operator]
                                             lambda: self._retry_now(inv))

    def _retry_now(self, inv: Invocation) -> None:
        inv.retry_timer = None
        if inv.status == BACKING_OFF and not self.stopping:
            if self.stats is not None:
                self.stats.retries[(inv.service, inv.handler)] += 1
            self.start(inv)

    def restart(self, inv: Invocation) -> None:
        """Run the invocation again now with a fresh retry budget (resume, cancel of a paused one)."""
        inv.attempts = 0
        self.start(inv)

    # ---- ending ----

    def detach(self, inv: Invocation) -> None:
        """The invocation has no attempt any more (it ended, failed or was aborted)."""
        if self.tracing is not None:
            self.tracing.attempt_ended(inv.id)
        attempt = inv.attempt
        if attempt is not None and type(attempt.transport) is LocalTransport:
            # The attempt and its transport point at each other, and the attempt's VM holds the input
            # (up to the body limit): break the cycle so it is freed now, not at some later full GC.
            attempt.transport.attempt = None
        inv.attempt = None
        inv.task = None
        if inv.watchdog is not None:
            inv.watchdog.cancel()
            inv.watchdog = None

    def complete(self, inv: Invocation, outcome: Outcome) -> None:
        """End the invocation with an outcome."""
        now = int(self.clock.now() * 1000)
        self._attempt_ended(inv, "completed" if outcome.failure_code is None else "failed")
        self.detach(inv)
        held_key = inv.status in HOLDING or inv.status == INVOKED or inv.status == INBOXED
        inv.status = COMPLETED
        inv.outcome = outcome
        if self.stats is not None:
            counts = self.stats.completed if outcome.failure_code is None else self.stats.failed
            counts[(inv.service, inv.handler)] += 1
            self.stats.invocation_seconds[inv.service].observe((now - inv.created_at) / 1000)
        self.events.ended(inv, outcome, now)
        inv.completed_at = now
        retention = retention_for(self.catalog.handler(inv.service, inv.handler), bool(inv.idempotency_key),
                                  self.options.retention)
        inv.retention_until = now + int(retention.total_seconds() * 1000)
        inv.waiting = None
        inv.next_retry_at = None
        inv.inbox_seq = None
        if inv.retry_timer is not None:
            inv.retry_timer.cancel()
            inv.retry_timer = None
        self.table.mark(inv)
        # A thread still stuck in a step of this invocation no longer holds a place under --run-threads.
        self.run_executor.release_invocation(inv.id)
        # The listeners run in the order the engine added them, and that order is behaviour: waiting
        # invocations are notified, then the key's lock passes on, then the concurrency slot is freed.
        for listener in self._listeners:
            listener(inv, outcome, held_key)

        def release() -> None:
            self.table.drop(inv)
            self.outcomes.resolve(inv.id, outcome)

        self.table.after_commit(release)

    def suspend(self, inv: Invocation, msg: pb.SuspensionMessage) -> None:
        """The attempt suspended, waiting on completions or signals; it starts again when one arrives."""
        self._attempt_ended(inv, "suspended")
        self.detach(inv)
        # Named signals wait under their name (a str never equals an int handle). A v7 deployment sends the
        # awaited future tree: any of its leaves completing is a reason to run again (the SDK re-evaluates).
        waiting: list[int | str] = []
        futures = [msg.awaiting_on] if msg.HasField("awaiting_on") else [msg]
        while futures:
            fut = futures.pop()
            waiting += list(fut.waiting_completions)
            waiting += [SIGNAL_HANDLE_BASE + s for s in fut.waiting_signals]
            waiting += list(fut.waiting_named_signals)
            futures += list(getattr(fut, "nested_futures", ()))  # a SuspensionMessage has none
        inv.waiting = waiting
        inv.status = SUSPENDED
        self.table.mark(inv)
        done = self._completed_handles(inv)
        if not any(h in done for h in waiting):
            self.events.suspended(inv, len(waiting))
        else:
            # What it waits for is already journaled (a run result proposed just before suspending).
            inv.status = INVOKED
            inv.waiting = None
            self._resume_after_commit(inv)

    def _resume_after_commit(self, inv: Invocation) -> None:
        version = inv.version

        def resume() -> None:
            if inv.status == INVOKED and inv.attempt is None:
                if self.options.always_replay and inv.version == version:
                    inv.journal = None  # all of it is committed: replay from the store itself
                self.start(inv)

        self.table.after_commit(resume)

    def _completed_handles(self, inv: Invocation) -> set[int | str]:
        if inv.journal is None:
            self.table.load_journal(inv)
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

    def fail(self, inv: Invocation, err: pb.ErrorMessage) -> None:
        """The attempt failed: retry after a backoff, pause, or complete with the failure."""
        if self.tracing is not None:
            self.tracing.attempt_failed(inv.id, err.code, err.message)
        self._attempt_ended(inv, "failed", err)
        self.detach(inv)
        inv.retry_count += 1
        inv.last_error = json.dumps({"code": err.code, "message": err.message})
        handler = self.catalog.handler(inv.service, inv.handler)
        policy = (handler.effective_retry_policy(self.options.default_retry_policy) if handler is not None
                  else self.options.default_retry_policy)
        # A journal mismatch or protocol violation is a bug to fix, not a passing fault: logged as an error.
        level = logging.ERROR if err.code in (570, 571) else logging.INFO
        if err.behavior == pb.FAIL:  # v7: the deployment says retrying cannot help
            code = err.code if 400 <= err.code <= 599 else 500
            self.complete(inv, Outcome(failure_code=code, failure_message=err.message))
            return
        if err.behavior == pb.PAUSE:  # v7: the deployment asks for an operator
            self._paused(inv, err)
            return
        if policy.max_attempts is not None and inv.attempts >= policy.max_attempts:
            if policy.on_max_attempts == "kill":
                code = err.code if 400 <= err.code <= 599 else 500
                self.complete(inv, Outcome(failure_code=code, failure_message=err.message))
                return
            self._paused(inv, err)
            return
        if err.HasField("next_retry_delay"):
            delay_ms = float(err.next_retry_delay)
        else:
            initial = (policy.initial_interval or timedelta(milliseconds=500)).total_seconds() * 1000
            factor = policy.exponentiation_factor or 2.0
            cap = (policy.max_interval or timedelta(seconds=60)).total_seconds() * 1000
            delay_ms = retry_delay_ms(initial, factor, cap, inv.attempts, self.options.jitter)
        inv.status = BACKING_OFF
        inv.next_retry_at = int(self.clock.now() * 1000) + int(delay_ms)
        self.table.mark(inv)
        self.events.retrying(inv, err.code, err.message, int(delay_ms), level)

        def schedule() -> None:
            if inv.status == BACKING_OFF and not self.stopping:
                self.arm_retry(inv)

        self.table.after_commit(schedule)

    def _paused(self, inv: Invocation, err: pb.ErrorMessage) -> None:
        inv.status = PAUSED
        self.table.mark(inv)
        self.events.paused(inv, err.code, err.message)

    def pause(self, inv: Invocation) -> None:
        """Operator pause: stop what runs now; nothing runs until the invocation is restarted."""
        self.halt(inv)
        inv.status = PAUSED
        self.table.mark(inv)

    def abort(self, inv: Invocation) -> None:
        """End the running attempt now (kill, timeout, shutdown); its later writes are ignored."""
        attempt, task = inv.attempt, inv.task
        if not self.stopping:
            # At shutdown the attempt stays open in the history, like one cut off by a crash: the timeline
            # shows the time the server was down.
            self._attempt_ended(inv, "aborted")
        self.detach(inv)
        if attempt is not None:
            attempt.abort()
            threads = attempt.executor
            if isinstance(threads, AttemptThreads) and threads.abandon():
                log.warning("invocation %s: its attempt was aborted while a sync ctx.run closure runs; the thread "
                            "stays busy until the closure returns (see GET /threads)", inv.id)
        if task is not None and not task.done():
            task.cancel()

    def halt(self, inv: Invocation) -> None:
        """Abort the running attempt and cancel a pending retry."""
        self.abort(inv)
        if inv.retry_timer is not None:
            inv.retry_timer.cancel()
            inv.retry_timer = None

    # ---- inactivity and abort timeouts ----

    def _timeouts(self, handler: Handler) -> tuple[float, float]:
        inactivity = handler.effective_inactivity_timeout() or self.options.inactivity_timeout
        abort = handler.effective_abort_timeout() or self.options.abort_timeout
        return inactivity.total_seconds(), abort.total_seconds()

    def _arm_watchdog(self, inv: Invocation, attempt: RunningAttempt, handler: Handler) -> None:
        inactivity, abort = self._timeouts(handler)
        due = inv.last_from_attempt + abort if inv.input_closed else inv.last_activity + inactivity
        inv.watchdog = self.clock.call_at(due, lambda: self._watchdog_fired(inv, attempt, handler))

    def _watchdog_fired(self, inv: Invocation, attempt: RunningAttempt, handler: Handler) -> None:
        inv.watchdog = None
        if inv.attempt is not attempt or self.stopping:
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
            self.abort(inv)
            self.fail(inv, pb.ErrorMessage(
                code=500, message=f"the attempt was aborted: no journal entry for {inactivity:g} s of inactivity "
                f"plus {abort:g} s of abort timeout (raise the handler's inactivity_timeout/abort_timeout for "
                "long steps)"))
            return
        self._arm_watchdog(inv, attempt, handler)

    # ---- notifications ----

    def notify_running(self, inv: Invocation, type_id: int, note: pb.NotificationMessage) -> None:
        """Journal a notification for an invocation whose attempt is (probably) running; deliver after commit."""
        self.table.append(inv, type_id, note)
        attempt = inv.attempt
        if attempt is None:
            return

        def deliver() -> None:
            # While draining, an attempt gets nothing new: it suspends once its running step is journaled.
            if inv.attempt is attempt and not self.draining:
                inv.last_activity = self.clock.now()
                attempt.deliver(type_id, note)

        self.table.after_commit(deliver)

    def notify(self, inv_id: str, type_id: int, note: pb.NotificationMessage) -> bool:
        """Journal a notification for an invocation and wake it if it waits for it.

        Returns False if the invocation does not exist or has completed (the notification is dropped).
        """
        inv = self.table.load(inv_id)
        if inv is None or inv.status == COMPLETED:
            return False
        if inv.attempt is not None:
            self.notify_running(inv, type_id, note)
            return True
        self.table.append(inv, type_id, note)
        which = note.WhichOneof("id")
        handle: int | str = (note.completion_id if which == "completion_id" else note.signal_name
                             if which == "signal_name" else SIGNAL_HANDLE_BASE + note.signal_id)
        if inv.status == SUSPENDED:
            if inv.waiting is not None and handle in inv.waiting:
                # Durably mark the resumption with the notification, so a crash in between resumes too.
                inv.status = INVOKED
                inv.waiting = None
                self.table.mark(inv)
                self._resume_after_commit(inv)
        return True

    # ---- draining and stopping ----

    def close_inputs(self) -> int:
        """Ask every running attempt to suspend at its next wait; returns how many run."""
        running = 0
        for inv in self.table.active():
            if inv.attempt is not None:
                running += 1
                inv.input_closed = True
                inv.attempt.close_input()
        return running

    def running(self) -> int:
        """Attempts still running."""
        return sum(1 for inv in self.table.active() if inv.attempt is not None)

    async def cancel_tasks(self) -> None:
        """Cancel the tasks of attempts and wait for them to end."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
