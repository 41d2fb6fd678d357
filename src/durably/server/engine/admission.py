"""Admission: creating invocations and deciding when they may run.

A new (or newly due) invocation first needs a slot of every concurrency rule its scope matches (flow
control, `ConcurrencyLimiter`), then, for an exclusive handler of an object or workflow, its key's lock
(`KeyTable`). Waiting for either it is "inboxed". A completion passes the key's lock on to the next
invocation in the key's inbox and frees its slots for the next one queued on them. After a restart, both
are rebuilt from the invocations found in the store.
"""

from __future__ import annotations

import logging

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.sdk.service import Handler
from durably.server.engine.catalog import Catalog
from durably.server.engine.flow_control import (
    LIMIT_KEY_HEADER,
    SCOPE_HEADER,
    ConcurrencyLimiter,
    FlowControlError,
    check_scope,
)
from durably.server.engine.interfaces import AttemptLifecycle, EngineOptions, InvocationTable
from durably.server.engine.invocation import (
    BACKING_OFF,
    COMPLETED,
    HOLDING,
    INBOXED,
    INVOKED,
    SCHEDULED,
    Invocation,
    Outcome,
)
from durably.server.engine.keys import KeyTable
from durably.server.engine.secret_headers import input_messages
from durably.server.engine.timers import TimerService
from durably.server.observe.metrics import EngineStats
from durably.server.store.base import COL, Store
from durably.server.store.ops import SaveConcurrencyRules

log = logging.getLogger("durably.engine")

# What recovery resumes or queues at start, whatever the service: attempts to run again, retries to arm,
# invocations queued for a key or a concurrency slot.
RECOVER_NOW = (INVOKED, BACKING_OFF, INBOXED)


def flow_of(table: InvocationTable, inv: Invocation) -> tuple[str | None, str | None]:
    """The invocation's scope and limit key, as journaled in its input command."""
    if inv.flow is None:
        if inv.journal is None:
            table.load_journal(inv)
        scope = limit_key = None
        if inv.journal:
            for h in inv.journal[0][1].headers:  # type: ignore[attr-defined]
                if h.key == SCOPE_HEADER:
                    scope = h.value
                elif h.key == LIMIT_KEY_HEADER:
                    limit_key = h.value
        inv.flow = (scope, limit_key)
    return inv.flow


class Admission:
    """New invocations, key locks, concurrency slots and rules, and the recovery of both at start."""

    def __init__(self, table: InvocationTable, lifecycle: AttemptLifecycle, catalog: Catalog, keys: KeyTable,
                 limiter: ConcurrencyLimiter, store: Store, timers: TimerService, options: EngineOptions,
                 stats: EngineStats | None) -> None:
        self.table = table
        self.lifecycle = lifecycle
        self.catalog = catalog
        self.keys = keys
        self.limiter = limiter
        self.store = store
        self.timers = timers
        self.options = options
        self.stats = stats
        self._seq = 0
        self._inbox_seq = 0
        self.recovered_rows = 0  # invocation rows recovery read at start (a restart reads only what it must)

    # ---- creating invocations ----

    def invoke(self, handler: Handler, body: bytes, headers: list[tuple[str, str]], key: str = "",
               idempotency_key: str | None = None, delay_ms: int = 0, scope: str | None = None,
               limit_key: str | None = None, inv_id: str | None = None) -> tuple[Invocation | None, str, bool]:
        """Start an invocation; returns (in-memory invocation or None, id, created). See Engine.invoke.

        `inv_id`: the id another partition chose and journaled for it (server/engine/crossing/inbox.py)."""
        check_scope(scope, limit_key)
        self.lifecycle.check_writable()
        svc = handler.service.name
        keyed = handler.service.kind != "service"  # "" is a key like any other (Restate's keyless call)
        raw_id: bytes | None = None
        if not inv_id:
            minted = self.options.partitions.id_for(svc, handler.name, workflow=handler.kind == "workflow",
                                                    keyed=keyed, key=key, idempotency_key=idempotency_key, scope=scope)
            inv_id, raw_id = str(minted), minted.to_bytes()
        table = self.table
        if handler.kind == "workflow" or idempotency_key is not None:
            existing = table.get(inv_id)
            if existing is not None or self.store.load_invocation(inv_id) is not None:
                return existing, inv_id, False
        now = table.now_ms()
        self._seq += 1
        inv = Invocation(id=inv_id, service=svc, handler=handler.name, key=key, status=INVOKED,
                         idempotency_key=idempotency_key, created_at=now, modified_at=now, journal=[], seq=self._seq,
                         raw_id=raw_id)
        hdrs = [(k, v) for k, v in headers if k not in (SCOPE_HEADER, LIMIT_KEY_HEADER)]  # only the arguments
        if scope is not None:                                                                 # say what the flow is
            hdrs.append((SCOPE_HEADER, scope))
        if limit_key is not None:
            hdrs.append((LIMIT_KEY_HEADER, limit_key))
        stored, live = input_messages(hdrs, body, self.options.secret_headers)
        inv.flow = (scope, limit_key)
        table.activate(inv)
        if self.stats is not None:
            self.stats.started[(svc, handler.name)] += 1
        table.append(inv, m.INPUT, stored, live)
        table.mark(inv)
        if delay_ms > 0:
            inv.status = SCHEDULED
            inv.execution_time = now + delay_ms
            self.timers.add(inv.id, "start", 0, inv.execution_time)
        else:
            self._begin(inv, handler)
        return inv, inv_id, True

    def _begin(self, inv: Invocation, handler: Handler) -> None:
        """Run a new (or newly due) invocation now, or queue it for a concurrency slot or its key's lock."""
        scope, limit_key = flow_of(self.table, inv)
        if scope is not None and not self.limiter.admit(inv.id, scope, limit_key):
            inv.status = INBOXED
            inv.inbox_seq = None  # no key position: it waits for a slot (see _recover_flow)
            self.table.mark(inv)
            return
        self._begin_admitted(inv, handler)

    def _admitted(self, inv_id: str) -> None:
        """A queued invocation got its concurrency slots: go on to its key's lock, or start it."""
        inv = self.table.load(inv_id)
        if inv is None or inv.status != INBOXED:
            if inv is not None and inv.status == COMPLETED:
                self.limiter.release(inv.id)
            return
        handler = self.catalog.handler(inv.service, inv.handler)
        if handler is None:
            self.lifecycle.start(inv)  # fails and retries with a clear error
            return
        self._begin_admitted(inv, handler)

    def _begin_admitted(self, inv: Invocation, handler: Handler) -> None:
        if handler.service.kind != "service" and not handler.is_shared:
            if not self.keys.acquire(inv.service, inv.key, inv.id):
                self._inbox_seq += 1
                inv.status = INBOXED
                inv.inbox_seq = self._inbox_seq
                self.table.mark(inv)
                return
        self.lifecycle.start(inv)

    def _run_queued(self, inv_id: str) -> None:
        """The key's lock passed to an inboxed invocation: start it."""
        inv = self.table.load(inv_id)
        if inv is None or inv.status != INBOXED:
            # Gone (killed, purged): pass the lock on.
            if inv is not None:
                self._release_key(inv)
            return
        inv.inbox_seq = None
        self.lifecycle.start(inv)

    def _release_key(self, inv: Invocation) -> None:
        if not self.catalog.is_exclusive(inv):
            return
        nxt = self.keys.release(inv.service, inv.key, inv.id)
        if nxt is not None:
            self._run_queued(nxt)
        else:
            svc, key = inv.service, inv.key
            generation = self.keys.generation(svc, key)
            self.table.after_commit(lambda: self.keys.drop_if_idle(svc, key, generation))

    # ---- completion listeners (the engine adds them in their order) ----

    def pass_key_on(self, inv: Invocation, outcome: Outcome, held_key: bool) -> None:
        """A completed invocation gives up its key's lock (or its place in the key's inbox)."""
        if held_key:
            self._release_key(inv)

    def free_slots(self, inv: Invocation, outcome: Outcome, held_key: bool) -> None:
        """A completed invocation frees its concurrency slots: queued invocations that now fit go on."""
        for nxt in self.limiter.release(inv.id):
            self._admitted(nxt)

    # ---- durable timers ----

    def timer_fired(self, inv_id: str, kind: str, cid: int) -> None:
        """A durable timer fired: a sleep is over, or a delayed invocation is due."""
        if kind == "sleep":
            note = pb.NotificationMessage(completion_id=cid)
            note.void.SetInParent()
            self.lifecycle.notify(inv_id, m.SLEEP_COMPLETION, note)
        elif kind == "start":
            inv = self.table.load(inv_id)
            if inv is not None and inv.status == SCHEDULED:
                handler = self.catalog.handler(inv.service, inv.handler)
                inv.execution_time = None
                if handler is None:
                    self.lifecycle.start(inv)  # fails and retries with a clear error
                else:
                    self._begin(inv, handler)

    # ---- concurrency rules ----

    def set_concurrency_rules(self, changes: dict[str, int | None]) -> list[str]:
        """Create, change (a limit) or delete (None) rules as one change kept in the store with one operation
        of these rules only; see Engine.set_concurrency_rules. Returns the patterns that changed."""
        self.limiter.check_changes(changes)  # whole or nothing
        changed: list[str] = []
        saved: dict[str, int | None] = {}
        forget: set[str] = set()
        for pattern, limit in changes.items():
            key = pattern.strip()
            if limit is None:
                if not self.limiter.delete_rule(pattern):
                    continue
                # Forgotten, not kept as a deletion: a rule a flag names takes the flag's value at every
                # start anyway (restore), and one no flag names is gone with its row.
                saved.pop(key, None)
                forget.add(key)
            else:
                self.limiter.set_rule(pattern, limit)
                saved[key] = limit
                forget.discard(key)
            changed.append(pattern)
        if saved or forget:
            self.table.write(SaveConcurrencyRules(saved, tuple(sorted(forget))))
            for inv_id in self.limiter.drain():
                self._admitted(inv_id)
        return changed

    def set_concurrency_rule(self, pattern: str, limit: int | None) -> bool:
        """Create, change or delete one rule; see set_concurrency_rules. False: deleting a rule that is not."""
        return bool(self.set_concurrency_rules({pattern: limit}))

    def restore(self) -> None:
        """At start: the rules changed over the admin API, and the last invocation sequence number."""
        for pattern, limit in self.store.load_concurrency_rules().items():
            if pattern in self.options.concurrency_rules:
                continue  # the flag given at this start wins
            try:
                if limit is None:
                    self.limiter.delete_rule(pattern)
                else:
                    self.limiter.set_rule(pattern, limit)
            except FlowControlError as e:
                log.error("stored concurrency rule %r=%r ignored: %s", pattern, limit, e)
        self._seq = self.store.max_seq()

    # ---- recovery at start ----

    def recover(self) -> None:
        """Resume what must run now; rebuild key locks, inboxes and slots. Only the rows that need it are read
        (invariant 6: a restart with a million suspended invocations reads none of them): invoked, backing-off
        and inboxed ones; unfinished keyed ones, whose key locks are rebuilt; with concurrency rules, every one
        that holds slots. Suspended, scheduled and paused invocations of services stay in the store: a
        notification, their timer or an operator loads them."""
        found = {r[COL["seq"]]: r for r in self.store.unfinished(RECOVER_NOW)}
        found.update((r[COL["seq"]], r) for r in self.store.unfinished(keyed=True))
        if self.limiter.rules():
            found.update((r[COL["seq"]], r) for r in self.store.unfinished(tuple(HOLDING)))
        self.recovered_rows = len(found)
        rows = [Invocation.from_row(found[seq]) for seq in sorted(found)]
        # Inboxed behind a key have an inbox position; those without one wait for a concurrency slot.
        inboxed = sorted((i for i in rows if i.status == INBOXED and i.inbox_seq is not None),
                         key=lambda i: i.inbox_seq or 0)
        flow_queued = sorted((i for i in rows if i.status == INBOXED and i.inbox_seq is None),
                             key=lambda i: i.seq)
        self._inbox_seq = max((i.inbox_seq or 0 for i in inboxed), default=0)
        for inv in rows:
            if inv.status in HOLDING and self.catalog.is_exclusive(inv):
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

    def _recover(self, inv: Invocation) -> None:
        if inv.status == INVOKED:
            self.table.activate(inv)
            self.lifecycle.start(inv)
        elif inv.status == BACKING_OFF:
            self.table.activate(inv)
            self.lifecycle.arm_retry(inv)
        # Suspended and scheduled invocations wait in the store for their timers or notifications (a
        # notification that arrived before a crash already moved its invocation back to invoked); inboxed
        # ones wait for their key; paused ones wait for an operator.

    def _recover_flow(self, rows: list[Invocation], queued: list[Invocation]) -> None:
        """Rebuild the concurrency counters: running scoped invocations hold slots, queued ones wait again."""
        if self.limiter.rules():
            for inv in rows:
                if inv.status in HOLDING:
                    scope, limit_key = flow_of(self.table, inv)
                    if scope is not None:
                        self.limiter.occupy(inv.id, scope, limit_key)
            for inv in queued:
                scope, limit_key = flow_of(self.table, inv)
                if scope is not None:
                    self.limiter.enqueue(inv.id, scope, limit_key)
            admitted = set(self.limiter.drain())
            queued = [i for i in queued if i.id in admitted or not self.limiter.is_queued(i.id)]
        for inv in queued:
            self._admitted(inv.id)
