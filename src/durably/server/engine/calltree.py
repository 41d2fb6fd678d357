"""Operator actions on invocations and the call trees below them: cancel, kill, pause, resume, purge.

An invocation's calls (not its one-way sends) are its children: the journal holds each `CallCommand` and
the `CallInvocationIdCompletion` notification naming the callee. Cancel and kill reach the whole tree:

- cancel is cooperative: the cancel signal goes to the invocation; its handler passes it on to the calls it
  made (the SDK does that at the await where it sees the cancellation) and may run compensations.
- kill is not: every invocation of the tree, children first, is ended at once with 409 "killed", no user
  code runs. Each frees its key's lock, so what is queued behind it runs, and whoever awaits one of them
  (its caller, an attached client) gets 409 "killed".

The invocation table and the attempt lifecycle own the state; `CallTree` decides what to do with it and is
the one place to read to learn "what happens on kill". Each action returns an `ActionResult`; the HTTP
layer maps it to a status code.

With partitions, a call tree may span them: a child owned by another partition is killed by a message through
the outbox (crossing/outbox.py), committed with the kill here; its partition goes on down its own part of the
tree (a cancel reaches children through the handler, whose cancel signal travels the same way). An action on
an invocation owned elsewhere (cancel, kill, pause, resume, purge) is sent there likewise and answers ACCEPTED;
the owner applies it as its own action (what it answers there, e.g. "not found", is not reported back: the
admin API sends actions to the owner directly, so this path is for callers inside another partition).
"""

from __future__ import annotations

import enum
from typing import Any

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.sdk.vm import CANCEL_SIGNAL
from durably.server.engine.catalog import Catalog
from durably.server.engine.crossing.outbox import Outbox
from durably.server.engine.interfaces import AttemptLifecycle, InvocationTable
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
)
from durably.server.observe.metrics import EngineStats
from durably.server.partitions.map import PartitionMap
from durably.server.store.base import COL, Store
from durably.server.store.ops import ClearAllState, DropPromises


class ActionResult(enum.Enum):
    """What an operator action did; the HTTP layer turns it into a status code."""

    DONE = "done"  # it took effect now (kill, purge)
    ACCEPTED = "accepted"  # it was accepted and takes effect as the invocation runs (cancel, pause, resume)
    ALREADY = "already"  # nothing to do: the invocation already is where the action would put it (pause)
    NOT_FOUND = "not found"  # no such invocation
    CONFLICT = "conflict"  # the invocation's state does not allow it (completed, not paused, not completed)


KILLED = Outcome(failure_code=409, failure_message="killed")
CANCELLED = Outcome(failure_code=409, failure_message="cancelled")


class CallTree:
    """Operator actions on invocations and their call trees; purging completed invocations."""

    def __init__(self, table: InvocationTable, lifecycle: AttemptLifecycle, catalog: Catalog, store: Store,
                 stats: EngineStats | None, partitions: PartitionMap | None = None,
                 outbox: Outbox | None = None) -> None:
        self.table = table
        self.partitions = partitions or PartitionMap()
        self.outbox = outbox
        self.lifecycle = lifecycle
        self.catalog = catalog
        self.store = store
        self.stats = stats

    def children(self, inv: Invocation) -> list[str]:
        """The invocation ids this invocation called (in call order; one-way sends are not children)."""
        if inv.journal is None:
            self.table.load_journal(inv)
        id_slots: set[int] = set()
        found: list[str] = []
        for type_id, msg in inv.journal or ():
            if type_id == m.CALL:
                id_slots.add(msg.invocation_id_notification_idx)  # type: ignore[attr-defined]
            elif type_id == m.CALL_INVOCATION_ID_COMPLETION:
                note: Any = msg
                if note.completion_id in id_slots and note.invocation_id:
                    found.append(note.invocation_id)
        return found

    def _elsewhere(self, inv_id: str, kind: str) -> bool:
        """Send `kind` (cancel, kill, pause, resume, purge) to the partition owning `inv_id` if it is not this
        one; whether it was."""
        if self.outbox is None or self.partitions.single:
            return False
        try:
            if self.partitions.is_local(inv_id):
                return False
        except ValueError:
            return False
        self.outbox.send_to_owner(inv_id, {"kind": kind, "target": inv_id})
        return True

    def cancel(self, inv_id: str) -> ActionResult:
        """Cancel: the handler gets TerminalError 409 at its next await. ACCEPTED, NOT_FOUND or CONFLICT (completed)."""
        if self._elsewhere(inv_id, "cancel"):
            return ActionResult.ACCEPTED
        inv = self.table.load(inv_id)
        if inv is None:
            return ActionResult.NOT_FOUND
        if inv.status == COMPLETED:
            return ActionResult.CONFLICT
        if inv.status in (INBOXED, SCHEDULED):
            self.lifecycle.complete(inv, CANCELLED)
            return ActionResult.ACCEPTED
        note = pb.NotificationMessage(signal_id=CANCEL_SIGNAL)
        note.void.SetInParent()
        self.lifecycle.notify(inv_id, m.SIGNAL_NOTIFICATION, note)
        if inv.status == PAUSED:
            self.lifecycle.restart(inv)  # let it run its compensations
        return ActionResult.ACCEPTED

    def kill(self, inv_id: str) -> ActionResult:
        """End an invocation and every call below it now, without user code. DONE, NOT_FOUND or CONFLICT (completed)."""
        if self._elsewhere(inv_id, "kill"):
            return ActionResult.ACCEPTED
        inv = self.table.load(inv_id)
        if inv is None:
            return ActionResult.NOT_FOUND
        if inv.status == COMPLETED:
            return ActionResult.CONFLICT
        self._kill_tree(inv, set())
        return ActionResult.DONE

    def _kill_tree(self, root: Invocation, seen: set[str]) -> None:
        # Depth first without recursion (a call chain may be deeper than Python's stack). Each invocation is
        # stopped when first reached, so it makes no new calls while its children go; it completes only after
        # its children: a child queued behind its own parent's key (a self-call) must be gone before the
        # parent's completion hands the lock to the next one in the inbox.
        stack: list[tuple[Invocation, list[str]]] = [(self._stop(root, seen), self.children(root))]
        while stack:
            inv, pending = stack[-1]
            if pending:
                child_id = pending.pop(0)
                if child_id in seen:
                    continue
                if self._elsewhere(child_id, "kill"):  # its partition kills it and its own calls
                    seen.add(child_id)
                    continue
                child = self.table.load(child_id)
                if child is not None and child.status != COMPLETED:
                    stack.append((self._stop(child, seen), self.children(child)))
                continue
            stack.pop()
            self.lifecycle.complete(inv, KILLED)

    def _stop(self, inv: Invocation, seen: set[str]) -> Invocation:
        seen.add(inv.id)
        self.lifecycle.halt(inv)
        return inv

    def pause(self, inv_id: str) -> ActionResult:
        """Stop retrying an invocation until it is resumed. ACCEPTED, ALREADY (paused), NOT_FOUND or CONFLICT."""
        if self._elsewhere(inv_id, "pause"):
            return ActionResult.ACCEPTED
        inv = self.table.load(inv_id)
        if inv is None:
            return ActionResult.NOT_FOUND
        if inv.status == PAUSED:
            return ActionResult.ALREADY
        if inv.status not in (INVOKED, SUSPENDED, BACKING_OFF):
            return ActionResult.CONFLICT
        self.lifecycle.pause(inv)
        return ActionResult.ACCEPTED

    def resume(self, inv_id: str) -> ActionResult:
        """Run a paused invocation again with a fresh retry budget. ACCEPTED, NOT_FOUND or CONFLICT (not paused)."""
        if self._elsewhere(inv_id, "resume"):
            return ActionResult.ACCEPTED
        inv = self.table.load(inv_id)
        if inv is None:
            return ActionResult.NOT_FOUND
        if inv.status != PAUSED:
            return ActionResult.CONFLICT
        self.lifecycle.restart(inv)
        return ActionResult.ACCEPTED

    def purge(self, inv_id: str) -> ActionResult:
        """Delete a completed invocation with its journal. DONE, NOT_FOUND or CONFLICT (not completed)."""
        if self._elsewhere(inv_id, "purge"):
            return ActionResult.ACCEPTED
        if self.table.get(inv_id) is not None:
            return ActionResult.CONFLICT
        row = self.store.load_invocation(inv_id)
        if row is None:
            return ActionResult.NOT_FOUND
        if row[COL["status"]] != COMPLETED:
            return ActionResult.CONFLICT
        self._delete(row)
        return ActionResult.DONE

    def purge_expired(self) -> int:
        """Delete completed invocations whose retention has passed; returns how many."""
        n = 0
        for inv_id in self.store.expired(self.table.now_ms()):
            row = self.store.load_invocation(inv_id)
            if row is not None and self.table.get(inv_id) is None:
                self._delete(row)
                n += 1
        return n

    def _delete(self, row: tuple[Any, ...]) -> None:
        if self.stats is not None:
            self.stats.purged += 1
        self.table.delete(row[COL["id"]])
        handler = self.catalog.handler(row[COL["service"]], row[COL["handler"]])
        if handler is not None and handler.kind == "workflow":
            # A workflow's state and promises live as long as its run.
            svc, key = row[COL["service"]], row[COL["key"]]
            self.table.write(ClearAllState(svc, key))
            self.table.write(DropPromises(svc, key))
