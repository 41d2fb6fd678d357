"""The engine: the one writer of every invocation, journal and state change.

Everything that changes durable state goes into the current batch; the batch is committed as one
transaction (group commit) and only then are acknowledgements released: run results to handlers,
results to HTTP callers, resumptions. While one batch commits on the writer thread the next one fills.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import random
import time
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
from durably.server.invocation import (
    BACKING_OFF,
    COMPLETED,
    INVOKED,
    PAUSED,
    SUSPENDED,
    Invocation,
    Outcome,
    outcome_of_row,
)
from durably.server.store.base import Batch, Store

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
                 clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.store = store
        self.options = options or EngineOptions()
        self.clock = clock
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
        return int(self.clock() * 1000)

    # ---- lifecycle ----

    async def start(self) -> None:
        """Resume every unfinished invocation found in the store."""
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        for row in self.store.unfinished():
            inv = Invocation.from_row(row)
            self._recover(inv)
        self._cleanup_task = self._loop.create_task(self._cleanup_loop())

    def _recover(self, inv: Invocation) -> None:
        if inv.status == INVOKED:
            self._active[inv.id] = inv
            self._start_attempt(inv)
        elif inv.status == BACKING_OFF:
            self._active[inv.id] = inv
            delay = max(0.0, ((inv.next_retry_at or 0) - self.now_ms()) / 1000)
            inv.retry_timer = self._loop.call_later(delay, self._retry_now, inv)  # type: ignore[union-attr]
        elif inv.status == SUSPENDED:
            self._load_journal(inv)
            if inv.waiting and any(h in inv.completed_handles for h in inv.waiting):
                self._active[inv.id] = inv
                self._start_attempt(inv)
            else:
                inv.journal = None
                inv.completed_handles = set()
        # paused: waits for an operator; nothing to do.

    async def stop(self) -> None:
        """Stop running attempts (they resume on the next start), write what is pending, close."""
        self._stopping = True
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
        for inv in list(self._active.values()):
            if inv.retry_timer is not None:
                inv.retry_timer.cancel()
            if inv.attempt is not None:
                inv.attempt.abort()
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

        def done() -> None:
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
            if inv.attempt is not None:
                inv.attempt.abort()
        for waiters in self._waiters.values():
            for w in waiters:
                if not w.done():
                    w.set_exception(EngineStopped(f"the store failed: {exc!r}"))
        self._waiters.clear()
        if self._idle is not None:
            self._idle.set()

    # ---- journal ----

    def _append(self, inv: Invocation, type_id: int, msg: Message) -> None:
        now = self.now_ms()
        self._batch.journal.append((inv.id, inv.journal_length, type_id, msg.SerializeToString(), now))
        if inv.journal is not None:
            inv.journal.append((type_id, msg))
        inv.journal_length += 1
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
               idempotency_key: str | None = None) -> tuple[Invocation | None, str, bool]:
        """Start an invocation; returns (in-memory invocation or None, id, created).

        With an idempotency key the id is derived from it: a second request finds the first invocation
        (running, or completed and still retained) and is attached to it instead (`created` is False).
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
        self._start_attempt(inv)
        return inv, inv_id, True

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
        attempt = Attempt(handler, vm, transport)
        transport.attempt = attempt
        inv.attempt = attempt
        if self.options.always_replay:
            attempt.close_input()
        ctx = InvocationContext(attempt, inv.id, inv.key)
        task = self._loop.create_task(self._run_attempt(inv, attempt, ctx))  # type: ignore[union-attr]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        for type_id, msg in msgs:
            if inv.attempt is not attempt or attempt is None:
                return  # a stale attempt (aborted, superseded): its writes are ignored
            if m.is_command(type_id):
                self._append(inv, type_id, msg)
                if type_id == m.OUTPUT:
                    inv.output_command = msg
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

    def _complete(self, inv: Invocation, outcome: Outcome) -> None:
        now = self.now_ms()
        inv.attempt = None
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
        inv.attempt = None
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
        inv.attempt = None
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
                inv.retry_timer = self._loop.call_later(delay_ms / 1000, self._retry_now, inv)  # type: ignore[union-attr]

        self._after_commit(schedule)

    def _retry_now(self, inv: Invocation) -> None:
        inv.retry_timer = None
        if inv.status == BACKING_OFF and not self._stopping:
            self._start_attempt(inv)

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
