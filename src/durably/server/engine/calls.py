"""What one invocation asks of others, and who waits for whose outcome.

Calls and sends create callees; attaches wait on (or peek at) an invocation's outcome; awakeables and
signals notify an invocation; workflow promises are completed once and awaited by any handler of the
workflow. An invocation waiting on another's outcome or on a promise is a waiter, kept in memory and in
the store's waiters table; it is notified when the target completes. HTTP callers waiting on an
outcome (`OutcomeWaiters`) are answered once the completion is committed.

With partitions (`EngineOptions.partitions`), a target owned by another partition is reached through the
outbox (crossing/outbox.py): a call or send to a keyed, idempotent or workflow target elsewhere gets its id here
(journaled before anything is delivered) and is created there; an attach, awakeable, signal or cancel goes
as a message; a waiter may be an invocation of another partition, answered through the outbox too. With one
partition none of this runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.protocol.ids import InvocationId, parse_awakeable_id
from durably.sdk.vm import CANCEL_SIGNAL, FIRST_AWAKEABLE_SIGNAL
from durably.server.engine.catalog import Catalog
from durably.server.engine.crossing.outbox import Outbox, b64
from durably.server.engine.flow_control import FlowControlError, check_scope
from durably.server.engine.interfaces import AttemptLifecycle, InvocationTable
from durably.server.engine.invocation import COMPLETED, Invocation, Outcome, outcome_of_row
from durably.server.partitions.map import PartitionMap
from durably.server.store.base import COL, Store
from durably.server.store.ops import AddCall, AddPromise, AddWaiter, DropWaiters

log = logging.getLogger("durably.engine")

# Creates an invocation: Admission.invoke's signature.
Invoke = Callable[..., tuple[Invocation | None, str, bool]]


def note(cid: int) -> pb.NotificationMessage:
    """An empty notification on completion id `cid`."""
    return pb.NotificationMessage(completion_id=cid)


def outcome_note(cid: int, outcome: Outcome) -> pb.NotificationMessage:
    """A notification carrying an invocation's (or promise's) outcome."""
    n = note(cid)
    if outcome.failure_code is not None:
        n.failure.code = outcome.failure_code
        n.failure.message = outcome.failure_message or ""
        for k, v in (outcome.failure_metadata or {}).items():
            n.failure.metadata.add(key=k, value=v)
    else:
        n.value.content = outcome.value or b""
    return n


def failure_note(cid: int, code: int, message: str) -> pb.NotificationMessage:
    """A notification carrying a failure."""
    n = note(cid)
    n.failure.code = code
    n.failure.message = message
    return n


class AwakeableIdRefused(ValueError):
    """An awakeable id that is malformed, or names a built-in signal rather than a user awakeable."""


def user_awakeable(awakeable_id: str) -> tuple[str, int]:
    """(invocation id, signal index) of an awakeable id that names a user awakeable.

    Signal indexes below 17 are the protocol's built-in signals (1 is cancel). They are not awakeables, and
    their ids are easy to build from an invocation id (which is computable for idempotent requests and
    workflows), so resolving one would let any ingress caller cancel any invocation: refused. A legacy
    `prom_1` id carries its index the same way and is checked the same way.
    """
    try:
        target, idx = parse_awakeable_id(awakeable_id)
    except ValueError as e:
        raise AwakeableIdRefused(f"malformed awakeable id {awakeable_id!r}: {e}") from None
    if idx < FIRST_AWAKEABLE_SIGNAL:
        raise AwakeableIdRefused(f"awakeable id {awakeable_id!r} names built-in signal {idx}, not an awakeable: "
                                 f"awakeables are signals {FIRST_AWAKEABLE_SIGNAL} and up")
    return str(target), idx


def _flow_fields(cmd: Any) -> tuple[str | None, str | None]:
    """The scope and limit key of a call or send command (None when absent)."""
    return (cmd.scope if cmd.HasField("scope") else None,
            cmd.limit_key if cmd.HasField("limit_key") else None)


class OutcomeWaiters:
    """HTTP callers (and attached clients) waiting for an invocation's outcome."""

    def __init__(self, table: InvocationTable, store: Store) -> None:
        self.table = table
        self.store = store
        self._waiters: dict[str, list[asyncio.Future[Outcome]]] = {}

    def add(self, inv_id: str, fut: asyncio.Future[Outcome]) -> None:
        """Resolve `fut` with the invocation's outcome once it completes."""
        self._waiters.setdefault(inv_id, []).append(fut)

    def resolve(self, inv_id: str, outcome: Outcome) -> None:
        """Answer everyone waiting on the invocation now."""
        for w in self._waiters.pop(inv_id, ()):
            if not w.done():
                w.set_result(outcome)

    def fail_all(self, exc: BaseException) -> None:
        """Answer every waiter with an error (the engine stops)."""
        for waiters in self._waiters.values():
            for w in waiters:
                if not w.done():
                    w.set_exception(exc)
        self._waiters.clear()

    def count(self) -> int:
        """How many wait."""
        return sum(len(w) for w in self._waiters.values())

    def peek(self, inv_id: str) -> tuple[bool, Outcome | None]:
        """(exists, outcome if completed and committed)."""
        if self.table.get(inv_id) is not None:
            return True, None
        row = self.store.load_invocation(inv_id)
        if row is None:
            return False, None
        return True, outcome_of_row(row) if row[COL["status"]] == COMPLETED else None


class Calls:
    """Calls, sends, attaches, awakeables, signals and promises of running attempts, and their waiters."""

    def __init__(self, table: InvocationTable, lifecycle: AttemptLifecycle, catalog: Catalog, store: Store,
                 invoke: Invoke, outcomes: OutcomeWaiters, cancel: Callable[[str], Any], tracing: Any,
                 partitions: PartitionMap | None = None, outbox: Outbox | None = None) -> None:
        self.table = table
        self.lifecycle = lifecycle
        self.catalog = catalog
        self.store = store
        self.invoke = invoke
        self.outcomes = outcomes
        self.cancel = cancel
        self.tracing = tracing
        self.partitions = partitions or PartitionMap()
        self.outbox = outbox
        # target -> [(waiting invocation, completion id, notification type)] added since the start, mirrored in
        # the waiters table. Those from before the start stay in the store (a million suspended callers cost
        # no memory) and are read when their target completes.
        self._waiters: dict[str, list[tuple[str, int, int]]] = {}
        self._started_at_seq = 0  # invocations up to this sequence number may have waiters in the store only
        # Promises completed but maybe not committed yet: (service, key, name) -> outcome.
        self._promises: dict[tuple[str, str, str], Outcome] = {}

    def restore(self) -> None:
        """At start: nothing is read; waiters kept in the store are read when their target completes."""
        self._started_at_seq = self.store.max_seq()

    def _take_waiters(self, target: str, stored: bool) -> list[tuple[str, int, int]]:
        """Everyone waiting on `target`: those added since the start and, if `stored`, those in the store."""
        found = self._waiters.pop(target, [])
        if stored:
            # A waiter added since the start and already committed is in both: once each.
            found = list(dict.fromkeys([*self.store.waiters_of(target), *found]))
        return found

    def answer_waiters(self, inv: Invocation, outcome: Outcome, held_key: bool) -> None:
        """Completion listener: whoever waits on the invocation's outcome is notified of it."""
        # Only an invocation made before this start may have waiters the store alone knows (no read on the hot
        # path of new invocations).
        for caller, cid, type_id in self._take_waiters(inv.id, inv.seq <= self._started_at_seq):
            self.notify(caller, type_id, outcome_note(cid, outcome))
        self.table.write(DropWaiters(inv.id))

    # ---- across partitions ----

    def remote(self, inv_id: str) -> bool:
        """Whether another partition owns the invocation (never with one partition)."""
        if self.partitions.single or self.outbox is None:
            return False
        try:
            return not self.partitions.is_local(inv_id)
        except ValueError:
            return False  # not an id: handled here, as with one partition (not found, refused...)

    def notify(self, inv_id: str, type_id: int, n: pb.NotificationMessage) -> bool:
        """Journal a notification for an invocation, here or (through the outbox) in its partition.

        False if it is here and gone; True for another partition's (it is told, whether or not it exists)."""
        if not self.remote(inv_id):
            return self.lifecycle.notify(inv_id, type_id, n)
        self.outbox.send_to_owner(inv_id, {"kind": "notify", "target": inv_id, "type": type_id,  # type: ignore[union-attr]
                                           "note": b64(n.SerializeToString())})
        return True

    def wait_for(self, caller: str, target_id: str, cid: int, type_id: int, wait: bool) -> None:
        """Another partition's invocation `caller` waits for (or peeks at) the outcome of `target_id`, here."""
        if not wait:
            _, outcome = self.outcomes.peek(target_id)
            n = outcome_note(cid, outcome) if outcome is not None else note(cid)
            if outcome is None:
                n.void.SetInParent()
            self.notify(caller, type_id, n)
            return
        self._wait_for_outcome(caller, target_id, cid, type_id)

    def _answer(self, caller: Invocation | str, type_id: int, n: pb.NotificationMessage) -> None:
        if isinstance(caller, Invocation):
            self.lifecycle.notify_running(caller, type_id, n)
        else:
            self.notify(caller, type_id, n)

    def _child_elsewhere(self, caller: Invocation, handler: Any, param: bytes, headers: list[tuple[str, str]],
                         key: str, idempotency_key: str | None, invoke_time: int, scope: str | None,
                         limit_key: str | None, reply: tuple[int, int] | None) -> str | None:
        """The id of a callee another partition owns (sent there to be created), or None if it is created here."""
        if handler.service.kind == "service" and idempotency_key is None:
            return None  # a plain invocation runs where it is made
        child_id = str(self.partitions.id_for(handler.service.name, handler.name,
                                              workflow=handler.kind == "workflow",
                                              keyed=handler.service.kind != "service", key=key,
                                              idempotency_key=idempotency_key, scope=scope))
        if not self.remote(child_id):
            return None
        check_scope(scope, limit_key)
        self.outbox.send_to_owner(child_id, {  # type: ignore[union-attr]
            "kind": "invoke", "id": child_id, "service": handler.service.name, "handler": handler.name,
            "key": key, "idempotency_key": idempotency_key, "scope": scope, "limit_key": limit_key,
            "param": b64(param), "headers": headers, "invoke_time": invoke_time, "caller": caller.id,
            "reply": None if reply is None else {"cid": reply[0], "type": reply[1]}})
        return child_id

    # ---- calls and sends ----

    def _child(self, caller: Invocation, service: str, handler_name: str, param: bytes,
               headers: list[tuple[str, str]], key: str, idempotency_key: str | None,
               delay_ms: int, scope: str | None = None, limit_key: str | None = None,
               invoke_time: int = 0,
               reply: tuple[int, int] | None = None) -> tuple[str | None, bool | None, str | None]:
        """Create a callee; returns (its id, created, error). `created` is None for a callee another partition
        creates (told `reply`: (completion id, type) to answer the caller with, None for a send)."""
        handler = self.catalog.handler(service, handler_name)
        if handler is None:
            return None, False, f"handler '{service}/{handler_name}' not found"
        if self.tracing is not None:
            headers = self.tracing.child_headers(caller.id, headers)
        try:
            if not self.partitions.single:
                elsewhere = self._child_elsewhere(caller, handler, param, headers, key, idempotency_key,
                                                  invoke_time, scope, limit_key, reply)
                if elsewhere is not None:
                    return elsewhere, None, None
            _, child_id, created = self.invoke(handler, param, headers, key, idempotency_key, delay_ms, scope,
                                               limit_key)
        except FlowControlError as e:
            return None, False, str(e)
        if created:
            self.table.write(AddCall(child_id, caller.id))
        if handler.kind == "workflow" and not created:
            return child_id, False, "the workflow method was already invoked"
        return child_id, created, None

    def call(self, inv: Invocation, cmd: pb.CallCommandMessage) -> None:
        """A call command: create the callee, tell the caller its id, answer with its outcome."""
        headers = [(h.key, h.value) for h in cmd.headers]
        scope, limit_key = _flow_fields(cmd)
        try:
            check_scope(scope, limit_key)
        except FlowControlError as e:
            child_id, error, code = None, str(e), 400
        else:
            child_id, created, error = self._child(
                inv, cmd.service_name, cmd.handler_name, cmd.parameter, headers, cmd.key,
                cmd.idempotency_key if cmd.HasField("idempotency_key") else None, 0, scope, limit_key,
                reply=(cmd.result_completion_id, m.CALL_COMPLETION))
            code = 409 if child_id is not None else 404
        id_note = note(cmd.invocation_id_notification_idx)
        id_note.invocation_id = child_id or ""
        self.lifecycle.notify_running(inv, m.CALL_INVOCATION_ID_COMPLETION, id_note)
        if error is not None and (child_id is None or error.startswith("the workflow")):
            self.lifecycle.notify_running(inv, m.CALL_COMPLETION, failure_note(cmd.result_completion_id, code, error))
            return
        if created is None:
            return  # created in another partition, which answers on the completion id
        self._wait_for_outcome(inv, child_id, cmd.result_completion_id, m.CALL_COMPLETION)  # type: ignore[arg-type]

    def _wait_for_outcome(self, inv: Invocation | str, target_id: str, cid: int, type_id: int) -> None:
        """Answer `inv` (here, or the id of another partition's) on `cid` with the target's outcome, now if it
        is completed, else when it completes."""
        caller_id = inv.id if isinstance(inv, Invocation) else inv
        if self.remote(target_id):
            self.outbox.send_to_owner(target_id, {"kind": "attach", "target": target_id,  # type: ignore[union-attr]
                                                  "caller": caller_id, "cid": cid, "type": type_id, "wait": True})
            return
        target = self.table.get(target_id)
        if target is None or target.status == COMPLETED:
            exists, outcome = self.outcomes.peek(target_id) if target is None else (True, target.outcome)
            if outcome is not None:
                self._answer(inv, type_id, outcome_note(cid, outcome))
                return
            if not exists:
                self._answer(inv, type_id, failure_note(cid, 404, f"invocation {target_id} not found"))
                return
        self._waiters.setdefault(target_id, []).append((caller_id, cid, type_id))
        self.table.write(AddWaiter(target_id, caller_id, cid, type_id))

    def send(self, inv: Invocation, cmd: pb.OneWayCallCommandMessage) -> None:
        """A one-way call: create the callee (maybe delayed) and tell the caller its id."""
        headers = [(h.key, h.value) for h in cmd.headers]
        delay = max(0, cmd.invoke_time - self.table.now_ms()) if cmd.invoke_time else 0
        child_id, _, error = self._child(inv, cmd.service_name, cmd.handler_name, cmd.parameter, headers, cmd.key,
                                         cmd.idempotency_key if cmd.HasField("idempotency_key") else None, delay,
                                         *_flow_fields(cmd), invoke_time=cmd.invoke_time)
        if error is not None and child_id is None:
            log.warning("invocation %s: send to %s/%s dropped: %s", inv.id, cmd.service_name, cmd.handler_name,
                        error)
        id_note = note(cmd.invocation_id_notification_idx)
        id_note.invocation_id = child_id or ""
        self.lifecycle.notify_running(inv, m.CALL_INVOCATION_ID_COMPLETION, id_note)

    def attach(self, inv: Invocation, cmd: Any, type_id: int, wait: bool) -> None:
        """Attach to (wait) or peek at (not wait) another invocation's outcome."""
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
                self.lifecycle.notify_running(inv, type_id, failure_note(cid, 400, f"malformed invocation id: {e}"))
                return
            self._wait_for_outcome(inv, target, cid, type_id)
            return
        if self.remote(target):
            self.outbox.send_to_owner(target, {"kind": "attach", "target": target, "caller": inv.id,  # type: ignore[union-attr]
                                               "cid": cid, "type": type_id, "wait": False})
            return
        _, outcome = self.outcomes.peek(target)
        n = outcome_note(cid, outcome) if outcome is not None else note(cid)
        if outcome is None:
            n.void.SetInParent()
        self.lifecycle.notify_running(inv, type_id, n)

    # ---- signals and awakeables ----

    def signal(self, inv: Invocation, cmd: pb.SendSignalCommandMessage) -> None:
        """Send a signal (the cancel signal cancels the target) to another invocation."""
        target = cmd.target_invocation_id
        if cmd.WhichOneof("signal_id") == "idx" and cmd.idx == CANCEL_SIGNAL:
            if self.remote(target):  # ctx.cancel_invocation, or a handler passing its cancellation on
                self.outbox.send_to_owner(target, {"kind": "cancel", "target": target})  # type: ignore[union-attr]
            else:
                self.cancel(target)
            return
        if cmd.WhichOneof("signal_id") == "idx" and cmd.idx < FIRST_AWAKEABLE_SIGNAL:
            # Built-in signals other than cancel are the server's to send, never a handler's.
            log.warning("invocation %s sent built-in signal %d to %s: refused, nothing delivered", inv.id, cmd.idx,
                        target)
            return
        if cmd.WhichOneof("signal_id") == "name":
            n = pb.NotificationMessage(signal_name=cmd.name)
        else:
            n = pb.NotificationMessage(signal_id=cmd.idx)
        which = cmd.WhichOneof("result")
        if which == "value":
            n.value.CopyFrom(cmd.value)
        elif which == "failure":
            n.failure.CopyFrom(cmd.failure)
        else:
            n.void.SetInParent()
        self.notify(target, m.SIGNAL_NOTIFICATION, n)

    def complete_awakeable(self, awakeable_id: str, value: bytes | None, failure: pb.Failure | None) -> bool:
        """Resolve (value) or reject (failure) an awakeable; False: no such invocation.

        Raises AwakeableIdRefused (a ValueError saying why) for a malformed id or one of a built-in signal,
        having changed nothing."""
        target, idx = user_awakeable(awakeable_id)
        n = pb.NotificationMessage(signal_id=idx)
        if failure is not None:
            n.failure.CopyFrom(failure)
        else:
            n.value.content = value or b""
        return self.notify(target, m.SIGNAL_NOTIFICATION, n)

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

    def promise(self, inv: Invocation, type_id: int, cmd: Any) -> None:
        """Get (wait for), peek at or complete a promise of the invocation's workflow."""
        svc, key, name = inv.service, inv.key, cmd.key
        cid = cmd.result_completion_id
        current = self._promise_outcome(svc, key, name)
        notify_running = self.lifecycle.notify_running
        if type_id == m.GET_PROMISE:
            if current is not None:
                notify_running(inv, m.GET_PROMISE_COMPLETION, outcome_note(cid, current))
            else:
                target = f"promise:{svc}/{key}/{name}"
                self._waiters.setdefault(target, []).append((inv.id, cid, m.GET_PROMISE_COMPLETION))
                self.table.write(AddWaiter(target, inv.id, cid, m.GET_PROMISE_COMPLETION))
            return
        if type_id == m.PEEK_PROMISE:
            n = outcome_note(cid, current) if current is not None else note(cid)
            if current is None:
                n.void.SetInParent()
            notify_running(inv, m.PEEK_PROMISE_COMPLETION, n)
            return
        if current is not None:
            notify_running(inv, m.COMPLETE_PROMISE_COMPLETION,
                           failure_note(cid, 409, f"promise '{name}' was already completed"))
            return
        if cmd.WhichOneof("completion") == "completion_failure":
            outcome = Outcome(failure_code=cmd.completion_failure.code,
                              failure_message=cmd.completion_failure.message)
        else:
            outcome = Outcome(value=cmd.completion_value.content)
        self._promises[(svc, key, name)] = outcome
        self.table.write(AddPromise(svc, key, name, outcome.value, outcome.failure_code, outcome.failure_message))
        self.table.after_commit(lambda: self._promises.pop((svc, key, name), None))
        done = note(cid)
        done.void.SetInParent()
        notify_running(inv, m.COMPLETE_PROMISE_COMPLETION, done)
        target = f"promise:{svc}/{key}/{name}"
        for waiter, wcid, wtype in self._take_waiters(target, True):
            self.lifecycle.notify(waiter, wtype, outcome_note(wcid, outcome))
        self.table.write(DropWaiters(target))
