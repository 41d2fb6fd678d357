"""The engine: the one writer of every invocation, journal, state, timer and inbox change.

Everything that changes durable state goes into the current batch of the group committer; the batch is
committed as one transaction and only then are acknowledgements released: run results to handlers,
results to callers, resumptions. The engine decides what to start, queue, retry, resume, complete or purge.

This module wires the engine's parts and keeps the methods ingress, admin, the UI and tests call. The
parts talk through two interfaces (interfaces.py): the invocation table (table.py) and the attempt
lifecycle (lifecycle.py). The others: admission (admission.py: new invocations, key locks, concurrency
slots and rules), the commands of running attempts (commands.py), calls, sends, awakeables, signals and
promises (calls.py), operator actions on call trees (calltree.py), and what can be invoked (catalog.py).
With partitions, what crosses to another partition goes out through the outbox (crossing/outbox.py) and comes in
through the inbox (crossing/inbox.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.protobuf.message import Message

from durably.protocol import protocol_pb2 as pb
from durably.sdk.service import App, Handler
from durably.server.engine.admission import Admission
from durably.server.engine.calls import Calls, OutcomeWaiters
from durably.server.engine.calltree import ActionResult, CallTree
from durably.server.engine.catalog import Catalog
from durably.server.engine.clock import Clock
from durably.server.engine.commands import Commands
from durably.server.engine.committer import GroupCommitter, StoreFailed
from durably.server.engine.crossing.inbox import Inbox
from durably.server.engine.crossing.outbox import Outbox, b64, encode_answer
from durably.server.engine.flow_control import ConcurrencyLimiter
from durably.server.engine.interfaces import EngineOptions, EngineStopped, RunningAttempt
from durably.server.engine.invocation import COMPLETED, Invocation, Outcome, outcome_of_row
from durably.server.engine.keys import KeyTable
from durably.server.engine.lifecycle import Lifecycle
from durably.server.engine.table import Table
from durably.server.engine.threads import StepThreads, report_stuck
from durably.server.engine.timers import TimerService
from durably.server.observe.lifecycle_log import LifecycleLog
from durably.server.observe.loop_stalls import LoopStallMonitor
from durably.server.observe.metrics import EngineStats
from durably.server.partitions.link import PeerLink
from durably.server.remote.attempt import ConnectionPool
from durably.server.remote.deployments import Deployment
from durably.server.store.base import COL, Store

__all__ = ["Engine", "EngineOptions", "EngineStopped", "WorkflowAlreadyInvoked"]


class WorkflowAlreadyInvoked(Exception):
    """The workflow's main handler already ran (or runs) for this key."""

    def __init__(self, inv_id: str) -> None:
        super().__init__("the workflow method was already invoked")
        self.invocation_id = inv_id


class Engine:
    """Runs invocations of an app's handlers against a store. Use from one event loop."""

    def __init__(self, app: App, store: Store, options: EngineOptions | None = None,
                 clock: Clock | None = None) -> None:
        self.app = app
        self.store = store
        self.options = options = options or EngineOptions()
        self.clock = clock = clock or Clock()
        self.committer = GroupCommitter(store, self._store_failed)
        # The part that starts delayed invocations takes the timers' callback once it exists (below).
        self.timers = TimerService(store, self.committer, clock, int(options.timer_window.total_seconds() * 1000),
                                   lambda inv_id, kind, cid: None)
        # Sync ctx.run closures run here; a closure abandoned by the abort timeout keeps its thread.
        self.run_executor = StepThreads(options.run_threads)
        self.keys = KeyTable()
        self.limiter = ConcurrencyLimiter(options.concurrency_rules)
        self.pool = ConnectionPool(signer=options.request_signer)
        self.stats: EngineStats | None = EngineStats() if options.metrics else None
        self.events = LifecycleLog()
        self.tracing = options.tracing
        if self.stats is not None:
            self.committer.on_commit = self._committed_batch
        self.loop_stalls: LoopStallMonitor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cleanup_task: asyncio.Task[None] | None = None
        self._stuck_task: asyncio.Task[None] | None = None

        # The parts. Each gets the two interfaces (table, lifecycle) and its narrow collaborators.
        self.table = table = Table(store, self.committer, clock, self.tracing)
        self.catalog = catalog = Catalog(app, table, store, self.pool)
        # Every invocable service: the embedded app's and those of registered deployments.
        self.services: dict[str, Any] = catalog.services
        self.deployments: dict[str, Deployment] = catalog.deployments
        self.outcomes = OutcomeWaiters(table, store)
        self.lifecycle = lifecycle = Lifecycle(table, catalog, self.keys, store, self.committer, clock, options,
                                               self.stats, self.events, self.run_executor, self.pool, self.outcomes)
        self.admission = admission = Admission(table, lifecycle, catalog, self.keys, self.limiter, store,
                                               self.timers, options, self.stats)
        self.timers.on_fire = admission.timer_fired
        # Across partitions: messages to others (written with their cause) and from them (applied once).
        parts = options.partitions
        self.outbox: Outbox | None = None if parts.single else Outbox(table, store, parts)
        self.calltree = CallTree(table, lifecycle, catalog, store, self.stats, parts, self.outbox)
        self.calls = calls = Calls(table, lifecycle, catalog, store, admission.invoke, self.outcomes,
                                   self.calltree.cancel, self.tracing, parts, self.outbox)
        self.inbox: Inbox | None = None if parts.single else Inbox(parts, table, lifecycle, catalog, calls,
                                                                    self.calltree, self.barrier)
        self.commands = Commands(table, lifecycle, calls, self.keys, store, self.timers, clock, options,
                                 self.outcomes)
        lifecycle.sink = self.commands
        # On completion the order is behaviour: first the invocations waiting on the outcome are notified
        # (their notifications go into the same batch, before anything the next holder of the key writes),
        # then the key's lock passes to the next invocation in the key's inbox, then the concurrency slots
        # are freed (so a queued invocation admitted by them finds the key's lock already passed on).
        lifecycle.add_completion_listener(calls.answer_waiters)
        lifecycle.add_completion_listener(admission.pass_key_on)
        lifecycle.add_completion_listener(admission.free_slots)

    @property
    def appends(self) -> int:
        """Journal entries written since the start (/metrics)."""
        return self.table.appends

    # ---- services ----

    def handler(self, service: str, name: str) -> Handler | None:
        """A handler of the embedded app or of a registered deployment."""
        return self.catalog.handler(service, name)

    async def register_deployment(self, uri: str, use_http_11: bool = False, force: bool = False,
                                  additional_headers: dict[str, str] | None = None) -> tuple[Deployment, bool]:
        """Discover a deployment and route its services to it; returns (deployment, created).

        Raises DiscoveryError (with an HTTP status) if it cannot be reached, speaks no common protocol, or
        would take over a service of the embedded app.
        """
        dep, created = await self.catalog.register(uri, use_http_11, force, additional_headers)
        if created or force:
            await self.barrier()
        return dep, created

    async def remove_deployment(self, dep_id: str) -> bool:
        """Forget a deployment; its services stop being invocable. False if there is no such deployment."""
        if not self.catalog.remove(dep_id):
            return False
        await self.barrier()
        return True

    # ---- time ----

    def now_ms(self) -> int:
        """The engine's clock in ms since the epoch."""
        return int(self.clock.now() * 1000)

    # ---- lifecycle ----

    async def start(self) -> None:
        """Resume every unfinished invocation found in the store."""
        self._loop = self.lifecycle.loop = asyncio.get_running_loop()
        self.committer.start()
        loop = self._loop
        # Corruption found by any read or commit (the writer thread's too) stops writes, as a failed commit does.
        self.store.on_corrupt = lambda message: loop.call_soon_threadsafe(self._store_corrupt, message)
        if self.store.corruption is not None:
            self._store_corrupt(self.store.corruption)
        if self.outbox is not None and self.inbox is not None:
            links = self.store.load_links()
            self.outbox.restore(links.outbox, links.last_seq)
            self.inbox.restore(links.applied)
        self.admission.restore()
        self.catalog.restore()
        self.calls.restore()
        self.admission.recover()
        self.timers.start()
        loop, pool = self._loop, self.run_executor
        self.committer.arriving = lambda: pool.arriving(loop)
        self._cleanup_task = self._loop.create_task(self._cleanup_loop())
        # User code that stalls the server is named in the log (stuck step threads, a blocked loop).
        self._stuck_task = self._loop.create_task(report_stuck(self.run_executor, self.options.stuck_report_interval))
        if self.options.loop_stall_threshold is not None:
            self.loop_stalls = LoopStallMonitor(self._loop, self.options.loop_stall_threshold)
            self.loop_stalls.start()
        if self.outbox is not None:
            self.outbox.begin()

    # ---- partitions ----

    def attach_peers(self, link: PeerLink) -> None:
        """The process layer's way to reach the other partitions (`durably serve --partitions N`): the outbox
        delivers through it from now on (or from `start`). Nothing to do with one partition."""
        if self.outbox is not None:
            self.outbox.attach(link)

    async def receive_from_partition(self, payload: bytes) -> bytes:
        """What another partition's outbox delivered (its `PeerLink.deliver` payload): apply each message once,
        commit, and answer with the highest seq of that partition now applied here (see crossing/outbox.py)."""
        if self.inbox is None:
            return encode_answer(error="this server has one partition: nothing to deliver to")
        if self._loop is None:
            return encode_answer(error="the partition is starting; deliver again")  # nothing applied before recovery
        return await self.inbox.receive(payload)

    async def stop(self, close_store: bool = True) -> None:
        """Stop running attempts (they resume on the next start), write what is pending, close."""
        self.lifecycle.stopping = True
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
        if self._stuck_task is not None:
            self._stuck_task.cancel()
        if self.loop_stalls is not None:
            self.loop_stalls.stop()
        self.timers.stop()
        if self.outbox is not None:
            await self.outbox.stop()  # what is not acknowledged stays in the store for the next start
        for inv in self.table.active():
            self.lifecycle.halt(inv)
        await self.lifecycle.cancel_tasks()
        await self.committer.flushed()
        self.outcomes.fail_all(EngineStopped(self.lifecycle.stop_reason()))
        self.committer.close()
        await self.pool.close()
        if self.tracing is not None:
            self.tracing.close()
        # Abandoned sync closures may still run; do not wait for them.
        self.run_executor.shutdown(wait=False, cancel_futures=True)
        if close_store:
            self.store.close()

    def _store_failed(self, exc: BaseException) -> None:
        # Nothing of the failed batch may be acknowledged; stop taking work rather than guess.
        self.lifecycle.stopping = True
        self.timers.stop()
        for inv in self.table.active():
            self.lifecycle.abort(inv)
        self.outcomes.fail_all(EngineStopped(f"the store failed: {exc}"))

    def _store_corrupt(self, message: str) -> None:
        if not self.lifecycle.stopping:
            self.committer.fail(StoreFailed(message))

    def _committed_batch(self, rows: int, seconds: float) -> None:
        st = self.stats
        if st is not None:
            st.batch_rows.observe(rows)
            st.commit_seconds.observe(seconds)

    def begin_drain(self) -> int:
        """Graceful stop: refuse new invocations, fire no timers, and ask every running attempt to suspend
        at its next wait (a running step finishes and is journaled first). Returns how many are running."""
        self.lifecycle.draining = True
        self.timers.stop()
        return self.lifecycle.close_inputs()

    def running_attempts(self) -> int:
        """Attempts still running (draining waits for this to reach 0)."""
        return self.lifecycle.running()

    def waiting_callers(self) -> int:
        """HTTP callers (and attaches) waiting for an invocation's outcome."""
        return self.outcomes.count()

    def health_problem(self) -> str | None:
        """Why the server should not get traffic now (stopping, store failing), or None."""
        if self.lifecycle.draining or self.lifecycle.stopping:
            return self.store_problem() or self.lifecycle.stop_reason()
        return self.store_problem()

    def check_writable(self) -> None:
        """Raise EngineStopped (503) if a write now could not be committed soon: stopping, or the store failing."""
        problem = self.store_problem() if self.store.corruption is not None else None
        if problem is not None:
            raise EngineStopped(problem)
        self.lifecycle.check_writable()

    def store_problem(self) -> str | None:
        """Why the store cannot commit now (disk full, read-only, corrupt...), or None while it can."""
        if self.store.corruption is not None and self.committer.failed is None:
            return f"the store failed: {self.store.corruption}"  # found by a read; the engine stops next tick
        return self.lifecycle.store_problem() or self.store.checking

    async def flushed(self) -> None:
        """Wait until everything written so far is committed."""
        await self.committer.flushed()

    async def barrier(self) -> None:
        """Wait until everything written so far is committed; raises EngineStopped if the store failed."""
        try:
            await self.committer.barrier()
        except Exception as e:
            raise EngineStopped(self.lifecycle.stop_reason()) from e

    # ---- invocations ----

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
        return self.admission.invoke(handler, body, headers, key, idempotency_key, delay_ms, scope, limit_key)

    def invoke_at_owner(self, handler: Handler, body: bytes, headers: list[tuple[str, str]], key: str,
                        idempotency_key: str) -> asyncio.Future[None] | None:
        """With partitions: if another partition owns the idempotent invocation this would create, send it there
        (through the outbox, committed with the next commit: `barrier()`; applied there once) and return what
        resolves once the owner has durably created it (or found it: the idempotency key dedups); None if this
        partition owns it (then `invoke` it here). What Kafka ingestion in one partition uses."""
        if self.outbox is None:
            return None
        parts = self.options.partitions
        inv_id = str(parts.id_for(handler.service.name, handler.name, workflow=handler.kind == "workflow",
                                  keyed=handler.service.kind != "service", key=key, idempotency_key=idempotency_key))
        if parts.is_local(inv_id):
            return None
        dest, seq = self.outbox.send_to_owner(inv_id, {
            "kind": "invoke", "id": inv_id, "service": handler.service.name, "handler": handler.name, "key": key,
            "idempotency_key": idempotency_key, "scope": None, "limit_key": None, "param": b64(body),
            "headers": headers, "invoke_time": 0, "caller": None, "reply": None})
        return self.outbox.applied(dest, seq)

    async def wait_outcome(self, inv_id: str) -> Outcome | None:
        """Wait until an invocation completes; None if there is no such invocation."""
        if self.table.get(inv_id) is None:
            row = self.store.load_invocation(inv_id)
            if row is None:
                return None
            if row[COL["status"]] == COMPLETED:
                return outcome_of_row(row)
        if self.lifecycle.stopping:
            raise EngineStopped(self.lifecycle.stop_reason())
        fut: asyncio.Future[Outcome] = self._loop.create_future()  # type: ignore[union-attr]
        self.outcomes.add(inv_id, fut)
        return await fut

    def peek_outcome(self, inv_id: str) -> tuple[bool, Outcome | None]:
        """(exists, outcome if completed and committed)."""
        return self.outcomes.peek(inv_id)

    def on_attempt_messages(self, inv: Invocation, attempt: RunningAttempt | None,
                            msgs: list[tuple[int, Message]]) -> None:
        """Process what an attempt wrote, in order."""
        self.commands.on_attempt_messages(inv, attempt, msgs)

    def notify(self, inv_id: str, type_id: int, note: pb.NotificationMessage) -> bool:
        """Journal a notification for an invocation and wake it if it waits for it.

        Returns False if the invocation does not exist or has completed (the notification is dropped).
        """
        return self.lifecycle.notify(inv_id, type_id, note)

    def complete_awakeable(self, awakeable_id: str, value: bytes | None, failure: pb.Failure | None) -> bool:
        """Resolve (value) or reject (failure) an awakeable; False: no such invocation. A malformed id, or one
        that names a built-in signal (cancel...), raises ValueError saying why, and changes nothing."""
        return self.calls.complete_awakeable(awakeable_id, value, failure)

    # ---- operator actions ----

    def set_concurrency_rule(self, pattern: str, limit: int | None) -> bool:
        """Create or change (limit) or delete (None) a concurrency rule; queued invocations that now fit start.

        Returns False when deleting a rule that does not exist. Raises FlowControlError on a bad pattern.
        The change is kept in the store (like Restate's rule book) and applies again after a restart, except
        for patterns `durably serve --concurrency-limit` names: those take the flag's value at every start.
        Await `barrier()` to know it is durable.
        """
        return self.admission.set_concurrency_rule(pattern, limit)

    def set_concurrency_rules(self, changes: dict[str, int | None]) -> list[str]:
        """Create, change or delete many rules at once (pattern -> limit, None: delete), checked whole before
        any applies; returns the patterns that changed. One store write of these rules only, whatever the size
        of the rule book. Raises FlowControlError on a bad pattern or limit, TooManyRules past MAX_RULES_TOTAL
        (durably.server.engine.flow_control). Await `barrier()` to know it is durable."""
        return self.admission.set_concurrency_rules(changes)

    # What each does to an invocation and its call tree: server/engine/calltree.py.

    def cancel(self, inv_id: str) -> ActionResult:
        """Cancel an invocation (and, through its handler, the calls it made)."""
        return self.calltree.cancel(inv_id)

    def kill(self, inv_id: str) -> ActionResult:
        """Kill an invocation and every call below it; callers get 409 "killed"."""
        return self.calltree.kill(inv_id)

    def pause(self, inv_id: str) -> ActionResult:
        """Stop retrying an invocation until it is resumed."""
        return self.calltree.pause(inv_id)

    def resume(self, inv_id: str) -> ActionResult:
        """Run a paused invocation again with a fresh retry budget."""
        return self.calltree.resume(inv_id)

    def purge(self, inv_id: str) -> ActionResult:
        """Delete a completed invocation with its journal."""
        return self.calltree.purge(inv_id)

    # ---- housekeeping ----

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(60)
            self.purge_expired()

    def purge_expired(self) -> int:
        """Delete completed invocations whose retention has passed; returns how many."""
        return self.calltree.purge_expired()

    def live_row(self, inv_id: str) -> tuple[Any, ...] | None:
        """The current row of an invocation held in memory (None if it is not)."""
        inv = self.table.get(inv_id)
        return None if inv is None else inv.to_row()

    def active_count(self) -> int:
        """Invocations held in memory right now."""
        return self.table.count()

    def is_stopping(self) -> bool:
        """Whether the engine stopped taking work."""
        return self.lifecycle.stopping
