"""The engine: the one writer of every invocation, journal and state change.

Everything that changes durable state goes into the current batch; the batch is committed as one
transaction (group commit) and only then are acknowledgements released: run results to handlers,
results to HTTP callers, resumptions. While one batch commits on the writer thread the next one fills.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from google.protobuf.message import Message

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.protocol.ids import InvocationId, random_seed
from durably.sdk.attempt import Attempt
from durably.sdk.context import InvocationContext
from durably.sdk.errors import VMError
from durably.sdk.options import DEFAULT_INVOCATION_RETRY_POLICY, InvocationRetryPolicy
from durably.sdk.service import App, Handler
from durably.sdk.vm import SIGNAL_HANDLE_BASE, VM
from durably.server.clock import Clock, TimerHandle
from durably.server.invocation import (
    BACKING_OFF,
    COMPLETED,
    INVOKED,
    PAUSED,
    SCHEDULED,
    SUSPENDED,
    Invocation,
    Outcome,
    outcome_of_row,
)
from durably.server.store.base import Batch, Store
from durably.server.threads import DaemonThreadPool

log = logging.getLogger("durably.engine")

DAY_MS = 24 * 3600 * 1000


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
    run_threads: int = 64


class _LocalTransport:
    """Hands an in-process attempt's messages straight to the engine, no bytes in between."""

    __slots__ = ("attempt", "engine", "inv")

    def __init__(self, engine: Engine, inv: Invocation) -> None:
        self.engine = engine
        self.inv = inv
        self.attempt: Attempt | None = None

    def send(self, messages: list[tuple[int, Message]]) -> None:
        self.engine.on_attempt_messages(self.inv, self.attempt, messages)


class Engine:
    """Runs invocations of an app's handlers against a store. Use from one event loop."""

    def __init__(self, app: App, store: Store, options: EngineOptions | None = None,
                 clock: Clock | None = None) -> None:
        self.app = app
        self.store = store
        self.options = options or EngineOptions()
        self.clock = clock or Clock()
        # Sync ctx.run closures run here; a closure abandoned by the abort timeout keeps its thread.
        self.run_executor = DaemonThreadPool(self.options.run_threads)
        self._timers: list[tuple[int, int, str, str, int]] = []
        self._timer_keys: set[tuple[str, str, int]] = set()
        self._timer_seq = 0
        self._timer_handle: TimerHandle | None = None
        self._timer_handle_at: int | None = None
        self._window_end = 0
        self._window_task: asyncio.Task[None] | None = None
        self.appends = 0
        self._barriers: set[asyncio.Future[None]] = set()
        self._active: dict[str, Invocation] = {}
        self._waiters: dict[str, list[asyncio.Future[Outcome]]] = {}
        self._batch = Batch()
        self._dirty: dict[str, Invocation] = {}
        self._flush_scheduled = False
        self._committing = False
        self._idle: asyncio.Event | None = None
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "durably-writer") if store.threaded else None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._failed: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cleanup_task: asyncio.Task[None] | None = None

    # ---- time ----

    def now_ms(self) -> int:
        """The engine's clock in ms since the epoch."""
        return int(self.clock.now() * 1000)

    # ---- lifecycle ----

    async def start(self) -> None:
        """Resume every unfinished invocation found in the store."""
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        for row in self.store.unfinished():
            inv = Invocation.from_row(row)
            self._recover(inv)
        self._load_timer_window()
        self._cleanup_task = self._loop.create_task(self._cleanup_loop())

    def _recover(self, inv: Invocation) -> None:
        if inv.status == INVOKED:
            self._active[inv.id] = inv
            self._start_attempt(inv)
        elif inv.status == BACKING_OFF:
            self._active[inv.id] = inv
            inv.retry_timer = self.clock.call_at((inv.next_retry_at or 0) / 1000, lambda: self._retry_now(inv))
        # Suspended and scheduled invocations wait in the store for their timers or notifications (a
        # notification that arrived before a crash already moved its invocation back to invoked); paused
        # ones wait for an operator.

    async def stop(self, close_store: bool = True) -> None:
        """Stop running attempts (they resume on the next start), write what is pending, close."""
        self._stopping = True
        for bg in (self._cleanup_task, self._window_task):
            if bg is not None:
                bg.cancel()
        if self._timer_handle is not None:
            self._timer_handle.cancel()
        for inv in list(self._active.values()):
            for handle in (inv.retry_timer, inv.watchdog):
                if handle is not None:
                    handle.cancel()
            self._abort_attempt(inv)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.flushed()
        for waiters in self._waiters.values():
            for w in waiters:
                if not w.done():
                    w.set_exception(EngineStopped("the server is shutting down"))
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        # Abandoned sync closures may still run; do not wait for them.
        self.run_executor.shutdown(wait=False, cancel_futures=True)
        if close_store:
            self.store.close()

    async def flushed(self) -> None:
        """Wait until everything written so far is committed."""
        while not self._batch.empty() or self._committing or self._flush_scheduled:
            assert self._idle is not None
            self._idle.clear()
            self._schedule_flush()
            await self._idle.wait()

    def barrier(self) -> asyncio.Future[None]:
        """A future that resolves once everything written so far is committed."""
        fut: asyncio.Future[None] = self._loop.create_future()  # type: ignore[union-attr]
        if self._failed is not None:
            fut.set_exception(EngineStopped(self._stop_reason()))
            return fut
        self._barriers.add(fut)

        def done() -> None:
            self._barriers.discard(fut)
            if not fut.done():
                fut.set_result(None)

        self._after_commit(done)
        return fut

    # ---- group commit ----

    def _mark(self, inv: Invocation) -> None:
        inv.modified_at = self.now_ms()
        self._dirty[inv.id] = inv
        self._schedule_flush()

    def _after_commit(self, cb: Callable[[], None]) -> None:
        self._batch.callbacks.append(cb)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._committing:
            return  # the commit in flight starts the next one when it is done
        if self._dirty:
            self._batch.invocations = {i: inv.to_row() for i, inv in self._dirty.items()}
            self._dirty = {}
        batch = self._batch
        if batch.empty():
            if self._idle is not None:
                self._idle.set()
            return
        self._batch = Batch()
        if self._writer is None:
            try:
                self.store.commit(batch)
            except BaseException as e:  # a broken store must not leave callers hanging
                self._store_failed(e)
                return
            self._committed(batch)
            return
        self._committing = True
        fut = self._loop.run_in_executor(self._writer, self.store.commit, batch)  # type: ignore[union-attr]
        fut.add_done_callback(lambda f: self._commit_done(batch, f))

    def _commit_done(self, batch: Batch, fut: asyncio.Future[None]) -> None:
        self._committing = False
        exc = fut.exception()
        if exc is not None:
            self._store_failed(exc)
            return
        self._committed(batch)
        self._schedule_flush()

    def _committed(self, batch: Batch) -> None:
        for cb in batch.callbacks:
            try:
                cb()
            except Exception:
                log.exception("post-commit callback failed")
        if self._batch.empty() and not self._dirty and self._idle is not None:
            self._idle.set()

    def _store_failed(self, exc: BaseException) -> None:
        # Nothing of the failed batch may be acknowledged; stop taking work rather than guess.
        log.critical("the store failed to commit; the engine stops: %r", exc)
        self._failed = exc
        self._stopping = True
        for inv in list(self._active.values()):
            self._abort_attempt(inv)
        for waiters in self._waiters.values():
            for w in waiters:
                if not w.done():
                    w.set_exception(EngineStopped(f"the store failed: {exc!r}"))
        self._waiters.clear()
        for fut in self._barriers:
            if not fut.done():
                fut.set_exception(EngineStopped(f"the store failed: {exc!r}"))
        self._barriers.clear()
        if self._idle is not None:
            self._idle.set()

    # ---- journal ----

    def _append(self, inv: Invocation, type_id: int, msg: Message) -> None:
        now = self.now_ms()
        self._batch.journal.append((inv.id, inv.journal_length, type_id, msg.SerializeToString(), now))
        if inv.journal is not None:
            inv.journal.append((type_id, msg))
        inv.journal_length += 1
        self.appends += 1
        inv.retry_count = 0
        inv.last_entry_at = now
        if m.is_notification(type_id):
            which = msg.WhichOneof("id")  # type: ignore[attr-defined]
            if which == "completion_id":
                inv.completed_handles.add(msg.completion_id)  # type: ignore[attr-defined]
            elif which == "signal_id":
                inv.completed_handles.add(SIGNAL_HANDLE_BASE + msg.signal_id)  # type: ignore[attr-defined]
        self._mark(inv)

    def _load_journal(self, inv: Invocation) -> None:
        entries: list[tuple[int, Message]] = []
        done: set[int] = set()
        for type_id, raw in self.store.load_journal(inv.id):
            msg = m.decode(type_id, raw)
            entries.append((type_id, msg))
            if m.is_notification(type_id):
                which = msg.WhichOneof("id")  # type: ignore[attr-defined]
                if which == "completion_id":
                    done.add(msg.completion_id)  # type: ignore[attr-defined]
                elif which == "signal_id":
                    done.add(SIGNAL_HANDLE_BASE + msg.signal_id)  # type: ignore[attr-defined]
        inv.journal = entries
        inv.completed_handles = done

    # ---- ingress ----

    def lookup_handler(self, service: str, handler: str) -> Handler | None:
        """The handler for a target, if the app has it."""
        return self.app.handler(service, handler)

    def invoke(self, handler: Handler, body: bytes, headers: list[tuple[str, str]], key: str = "",
               idempotency_key: str | None = None, delay_ms: int = 0) -> tuple[Invocation | None, str, bool]:
        """Start an invocation; returns (in-memory invocation or None, id, created).

        With an idempotency key the id is derived from it: a second request finds the first invocation
        (running, or completed and still retained) and is attached to it instead (`created` is False).
        With `delay_ms` the invocation is scheduled: it starts when a durable timer fires.
        """
        if self._stopping:
            raise EngineStopped(self._stop_reason())
        svc = handler.service.name
        if idempotency_key is not None:
            inv_id = str(InvocationId.for_idempotent_request(svc, handler.name, idempotency_key, key or None))
            if inv_id in self._active or self.store.load_invocation(inv_id) is not None:
                return self._active.get(inv_id), inv_id, False
        elif key:
            inv_id = str(InvocationId.for_keyed(svc, key))
        else:
            inv_id = str(InvocationId.random())
        now = self.now_ms()
        inv = Invocation(id=inv_id, service=svc, handler=handler.name, key=key, status=INVOKED,
                         idempotency_key=idempotency_key, created_at=now, modified_at=now, journal=[])
        inp = pb.InputCommandMessage()
        for k, v in headers:
            inp.headers.add(key=k, value=v)
        inp.value.content = body
        self._active[inv_id] = inv
        self._append(inv, m.INPUT, inp)
        if delay_ms > 0:
            inv.status = SCHEDULED
            inv.execution_time = now + delay_ms
            self._add_timer(inv.id, "start", 0, inv.execution_time)
            self._after_commit(lambda: self._evict_if(inv, SCHEDULED))
            return inv, inv_id, True
        self._start_attempt(inv)
        return inv, inv_id, True

    def _evict_if(self, inv: Invocation, status: str) -> None:
        # Invariant 6: what waits on a timer or a notification is not kept in memory.
        if inv.status == status and inv.attempt is None:
            inv.journal = None
            inv.completed_handles = set()
            self._active.pop(inv.id, None)

    def _stop_reason(self) -> str:
        if self._failed is not None:
            return f"the store failed: {self._failed!r}"
        return "the server is shutting down"

    async def wait_outcome(self, inv_id: str) -> Outcome | None:
        """Wait until an invocation completes; None if there is no such invocation."""
        inv = self._active.get(inv_id)
        if inv is None:
            row = self.store.load_invocation(inv_id)
            if row is None:
                return None
            if row[4] == COMPLETED:
                return outcome_of_row(row)
        elif inv.status == COMPLETED and inv.outcome is not None:
            # Completed but the commit may still be in flight: wait for it before answering.
            pass
        if self._stopping:
            raise EngineStopped(self._stop_reason())
        fut: asyncio.Future[Outcome] = self._loop.create_future()  # type: ignore[union-attr]
        self._waiters.setdefault(inv_id, []).append(fut)
        return await fut

    def peek_outcome(self, inv_id: str) -> tuple[bool, Outcome | None]:
        """(exists, outcome if completed and committed)."""
        inv = self._active.get(inv_id)
        if inv is not None:
            return True, None
        row = self.store.load_invocation(inv_id)
        if row is None:
            return False, None
        return True, outcome_of_row(row) if row[4] == COMPLETED else None

    # ---- attempts ----

    def _start_attempt(self, inv: Invocation) -> None:
        if self._stopping:
            return
        handler = self.app.handler(inv.service, inv.handler)
        if inv.journal is None:
            self._load_journal(inv)
        assert inv.journal is not None
        inv.status = INVOKED
        inv.attempts += 1
        inv.next_retry_at = None
        inv.waiting = None
        self._mark(inv)
        transport = _LocalTransport(self, inv)
        if handler is None:
            # The app no longer has this handler (code changed between restarts): retry, then pause.
            self._attempt_failed(inv, pb.ErrorMessage(
                code=404, message=f"handler {inv.service}/{inv.handler} is not in the app"))
            return
        now = self.now_ms()
        id_bytes = inv.id_bytes
        start = pb.StartMessage(
            id=id_bytes, debug_id=inv.id, known_entries=len(inv.journal), key=inv.key,
            partial_state=True, random_seed=random_seed(id_bytes),
            retry_count_since_last_stored_entry=inv.retry_count,
            duration_since_last_stored_entry=max(0, now - inv.last_entry_at) if inv.last_entry_at else 0,
        )
        if inv.idempotency_key:
            start.idempotency_key = inv.idempotency_key
        try:
            vm = VM(start, inv.journal)
        except VMError as e:
            self._attempt_failed(inv, pb.ErrorMessage(code=e.code, message=e.message))
            return
        attempt = Attempt(handler, vm, transport, executor=self.run_executor, clock=self.clock.now)
        transport.attempt = attempt
        inv.attempt = attempt
        inv.input_closed = False
        inv.last_activity = inv.last_from_attempt = self.clock.now()
        if self.options.always_replay:
            attempt.close_input()
            inv.input_closed = True
        ctx = InvocationContext(attempt, inv.id, inv.key)
        task = self._loop.create_task(self._run_attempt(inv, attempt, ctx))  # type: ignore[union-attr]
        inv.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._arm_watchdog(inv, attempt, handler)

    # ---- inactivity and abort timeouts ----

    def _timeouts(self, handler: Handler) -> tuple[float, float]:
        inactivity = handler.effective_inactivity_timeout() or self.options.inactivity_timeout
        abort = handler.effective_abort_timeout() or self.options.abort_timeout
        return inactivity.total_seconds(), abort.total_seconds()

    def _arm_watchdog(self, inv: Invocation, attempt: Attempt, handler: Handler) -> None:
        inactivity, abort = self._timeouts(handler)
        if inv.input_closed:
            due = inv.last_from_attempt + abort
        else:
            due = inv.last_activity + inactivity
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
        inv.attempt = None
        inv.task = None
        if inv.watchdog is not None:
            inv.watchdog.cancel()
            inv.watchdog = None
        if attempt is not None:
            attempt.abort()
        if task is not None and not task.done():
            task.cancel()

    async def _run_attempt(self, inv: Invocation, attempt: Attempt, ctx: InvocationContext) -> None:
        try:
            await attempt.run(ctx)
        except Exception as e:  # a bug in the runtime must not take the server down
            log.exception("attempt of %s crashed", inv.id)
            if inv.attempt is attempt:
                self._attempt_failed(inv, pb.ErrorMessage(code=500, message=f"internal error: {e!r}"))
            return
        if inv.attempt is attempt and not self._stopping:
            # The handler returned without a terminal message (cannot happen with the SDK's attempt
            # driver, but a remote deployment may do it): treat as a failure.
            self._attempt_failed(inv, pb.ErrorMessage(code=571, message="the attempt ended without End"))

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
                self._append(inv, type_id, msg)
                if type_id == m.OUTPUT:
                    inv.output_command = msg
                elif type_id == m.SLEEP:
                    self._add_timer(inv.id, "sleep", msg.result_completion_id, msg.wake_up_time)  # type: ignore[attr-defined]
            elif type_id == m.PROPOSE_RUN_COMPLETION:
                self._run_completed(inv, attempt, msg)  # type: ignore[arg-type]
            elif type_id == m.END:
                self._end(inv)
            elif type_id == m.SUSPENSION:
                self._suspend(inv, msg)  # type: ignore[arg-type]
            elif type_id == m.ERROR:
                self._attempt_failed(inv, msg)  # type: ignore[arg-type]
            else:
                log.warning("ignoring unexpected message %s from %s", m.type_name(type_id), inv.id)

    def _run_completed(self, inv: Invocation, attempt: Attempt, msg: pb.ProposeRunCompletionMessage) -> None:
        note = pb.NotificationMessage(completion_id=msg.result_completion_id)
        if msg.WhichOneof("result") == "failure":
            note.failure.CopyFrom(msg.failure)
        else:
            note.value.content = msg.value
        self._append(inv, m.RUN_COMPLETION, note)

        def deliver() -> None:
            if inv.attempt is attempt:
                inv.last_activity = self.clock.now()
                attempt.deliver(m.RUN_COMPLETION, note)

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
        inv.attempt = None
        inv.task = None
        if inv.watchdog is not None:
            inv.watchdog.cancel()
            inv.watchdog = None

    def _complete(self, inv: Invocation, outcome: Outcome) -> None:
        now = self.now_ms()
        self._detach(inv)
        inv.status = COMPLETED
        inv.outcome = outcome
        inv.completed_at = now
        inv.retention_until = now + int(self.options.retention.total_seconds() * 1000)
        inv.waiting = None
        inv.next_retry_at = None
        self._mark(inv)

        def release() -> None:
            self._active.pop(inv.id, None)
            for w in self._waiters.pop(inv.id, ()):
                if not w.done():
                    w.set_result(outcome)

        self._after_commit(release)

    def _suspend(self, inv: Invocation, msg: pb.SuspensionMessage) -> None:
        self._detach(inv)
        waiting = list(msg.waiting_completions) + [SIGNAL_HANDLE_BASE + s for s in msg.waiting_signals]
        inv.waiting = waiting
        inv.status = SUSPENDED
        self._mark(inv)
        ready = any(h in inv.completed_handles for h in waiting)

        def after() -> None:
            if inv.status != SUSPENDED or inv.attempt is not None:
                return
            # Invariant 6: a suspended invocation keeps nothing in memory; the next attempt reloads.
            inv.journal = None
            inv.completed_handles = set()
            if ready:
                self._start_attempt(inv)
            else:
                self._active.pop(inv.id, None)

        self._after_commit(after)

    def _attempt_failed(self, inv: Invocation, err: pb.ErrorMessage) -> None:
        self._detach(inv)
        inv.retry_count += 1
        inv.last_error = json.dumps({"code": err.code, "message": err.message})
        handler = self.app.handler(inv.service, inv.handler)
        policy = (handler.effective_retry_policy(self.options.default_retry_policy) if handler is not None
                  else self.options.default_retry_policy)
        if err.code in (570, 571):
            log.error("invocation %s: %s", inv.id, err.message)
        else:
            log.info("invocation %s attempt %d failed: %s", inv.id, inv.attempts, err.message)
        if policy.max_attempts is not None and inv.attempts >= policy.max_attempts:
            if policy.on_max_attempts == "kill":
                code = err.code if 400 <= err.code <= 599 else 500
                self._complete(inv, Outcome(failure_code=code, failure_message=err.message))
                return
            inv.status = PAUSED
            self._mark(inv)

            def park() -> None:
                if inv.status == PAUSED:
                    inv.journal = None
                    self._active.pop(inv.id, None)

            self._after_commit(park)
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

        def schedule() -> None:
            if inv.status == BACKING_OFF and not self._stopping:
                inv.journal = None
                inv.retry_timer = self.clock.call_at(inv.next_retry_at / 1000,  # type: ignore[operator]
                                                     lambda: self._retry_now(inv))

        self._after_commit(schedule)

    def _retry_now(self, inv: Invocation) -> None:
        inv.retry_timer = None
        if inv.status == BACKING_OFF and not self._stopping:
            self._start_attempt(inv)

    # ---- notifications from outside the attempt ----

    def notify(self, inv_id: str, type_id: int, note: pb.NotificationMessage) -> bool:
        """Journal a notification for an invocation and wake it if it waits for it.

        Returns False if the invocation does not exist or has completed (the notification is dropped).
        """
        inv = self._active.get(inv_id)
        if inv is None:
            row = self.store.load_invocation(inv_id)
            if row is None:
                return False
            inv = Invocation.from_row(row)
            if inv.status == COMPLETED:
                return False
            self._active[inv_id] = inv
        if inv.status == COMPLETED:
            return False
        self._append(inv, type_id, note)
        which = note.WhichOneof("id")
        handle = note.completion_id if which == "completion_id" else SIGNAL_HANDLE_BASE + note.signal_id
        attempt = inv.attempt
        if attempt is not None:
            def deliver() -> None:
                if inv.attempt is attempt:
                    inv.last_activity = self.clock.now()
                    attempt.deliver(type_id, note)

            self._after_commit(deliver)
        elif inv.status == SUSPENDED:
            if inv.waiting is not None and handle in inv.waiting:
                # Durably mark the resumption with the notification, so a crash in between resumes too.
                inv.status = INVOKED
                inv.waiting = None
                self._mark(inv)

                def resume() -> None:
                    if inv.status == INVOKED and inv.attempt is None:
                        inv.journal = None
                        self._start_attempt(inv)

                self._after_commit(resume)
            else:
                self._after_commit(lambda: self._evict_if(inv, SUSPENDED))
        return True

    # ---- durable timers ----

    def _add_timer(self, inv_id: str, kind: str, cid: int, fire_at: int) -> None:
        self._batch.timers_add.append((fire_at, inv_id, kind, cid))
        self._schedule_flush()
        if fire_at <= self._window_end:
            self._push_timer(fire_at, inv_id, kind, cid)

    def _push_timer(self, fire_at: int, inv_id: str, kind: str, cid: int) -> None:
        key = (inv_id, kind, cid)
        if key in self._timer_keys:
            return
        self._timer_keys.add(key)
        self._timer_seq += 1
        heapq.heappush(self._timers, (fire_at, self._timer_seq, inv_id, kind, cid))
        self._arm_timers()

    def _arm_timers(self) -> None:
        if not self._timers or self._stopping:
            return
        first = self._timers[0][0]
        if self._timer_handle is not None:
            if self._timer_handle_at is not None and self._timer_handle_at <= first:
                return
            self._timer_handle.cancel()
        self._timer_handle_at = first
        self._timer_handle = self.clock.call_at(first / 1000, self._fire_timers)

    def _fire_timers(self) -> None:
        self._timer_handle = None
        self._timer_handle_at = None
        if self._stopping:
            return
        now = self.now_ms()
        while self._timers and self._timers[0][0] <= now:
            _, _, inv_id, kind, cid = heapq.heappop(self._timers)
            self._timer_keys.discard((inv_id, kind, cid))
            self._timer_fired(inv_id, kind, cid)
        self._arm_timers()

    def _timer_fired(self, inv_id: str, kind: str, cid: int) -> None:
        self._batch.timers_del.append((inv_id, kind, cid))
        self._schedule_flush()
        if kind == "sleep":
            note = pb.NotificationMessage(completion_id=cid)
            note.void.SetInParent()
            self.notify(inv_id, m.SLEEP_COMPLETION, note)
        elif kind == "start":
            inv = self._active.get(inv_id)
            if inv is None:
                row = self.store.load_invocation(inv_id)
                if row is None:
                    return
                inv = Invocation.from_row(row)
            if inv.status == SCHEDULED:
                self._active[inv_id] = inv
                inv.journal = None
                self._start_attempt(inv)

    def _load_timer_window(self) -> None:
        """Keep timers due within the window in memory; the rest wait in the store."""
        window_ms = int(self.options.timer_window.total_seconds() * 1000)
        end = self.now_ms() + window_ms
        for fire_at, inv_id, kind, cid in self.store.load_timers(end):
            self._push_timer(fire_at, inv_id, kind, cid)
        self._window_end = end
        self._arm_timers()
        self._window_task = self._loop.create_task(self._next_window(end - window_ms // 2))  # type: ignore[union-attr]

    async def _next_window(self, at_ms: int) -> None:
        fut: asyncio.Future[None] = self._loop.create_future()  # type: ignore[union-attr]
        handle = self.clock.call_at(at_ms / 1000, lambda: fut.done() or fut.set_result(None))
        try:
            await fut
        finally:
            handle.cancel()
        # Timers added since the last load are in memory or in the store once this returns.
        await self.flushed()
        if not self._stopping:
            self._load_timer_window()

    # ---- housekeeping ----

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(60)
            self.purge_expired()

    def purge_expired(self) -> int:
        """Delete completed invocations whose retention has passed; returns how many."""
        ids = [i for i in self.store.expired(self.now_ms()) if i not in self._active]
        if ids:
            self._batch.deleted.extend(ids)
            self._schedule_flush()
        return len(ids)

    # ---- introspection ----

    def active_count(self) -> int:
        """Invocations held in memory right now."""
        return len(self._active)
