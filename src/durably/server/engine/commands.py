"""The commands of a running attempt: what a handler writes, journaled and acted on in order.

Every message an attempt hands over comes here (`on_attempt_messages`): commands are checked against the
entry size limit, journaled, and acted on (state, sleeps, calls, promises...); run completions are
journaled and delivered back; End, Suspension and Error end the attempt through the lifecycle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.sdk.service import Handler
from durably.server.engine.calls import Calls, OutcomeWaiters, note
from durably.server.engine.clock import Clock
from durably.server.engine.interfaces import AttemptLifecycle, EngineOptions, InvocationTable, RunningAttempt
from durably.server.engine.invocation import Invocation, Outcome
from durably.server.engine.keys import KeyTable, StateView
from durably.server.engine.timers import TimerService
from durably.server.process.limits import (
    ENTRY_TOO_LARGE_CODE,
    EagerStateLimit,
    command_too_large,
    run_result_too_large,
)
from durably.server.store.base import Store
from durably.server.store.ops import ClearAllState, ClearState, SetState

log = logging.getLogger("durably.engine")

_STATE_COMMANDS = (m.GET_LAZY_STATE, m.GET_LAZY_STATE_KEYS, m.SET_STATE, m.CLEAR_STATE, m.CLEAR_ALL_STATE,
                   m.GET_EAGER_STATE, m.GET_EAGER_STATE_KEYS)
_STATE_WRITES = (m.SET_STATE, m.CLEAR_STATE, m.CLEAR_ALL_STATE)
_PROMISE_COMMANDS = (m.GET_PROMISE, m.PEEK_PROMISE, m.COMPLETE_PROMISE)


def state_view(keys: KeyTable, store: Store, inv: Invocation, handler: Handler) -> StateView:
    """The state an attempt of `handler` reads (an exclusive handler's through the busy key's view)."""
    if not handler.is_shared:
        return keys.state(inv.service, inv.key, store)
    return keys.read_view(inv.service, inv.key, store)


def start_state(view: StateView, preload: bool | list[str], limit: EagerStateLimit) -> tuple[dict[bytes, bytes], bool]:
    """The state map a Start message carries, and whether it is partial (the rest is read lazily).

    `preload` is the handler's `state_preload`: all (within `limit`), none, or the names listed.
    """
    if preload is False:
        return {}, True
    if preload is True:
        state, complete = view.prefix(limit.entries, limit.bytes)
        return state, not complete
    out: dict[bytes, bytes] = {}
    for name in dict.fromkeys(n.encode() for n in preload):
        value = view.get(name)
        if value is not None:
            out[name] = value
    return out, True


class Commands:
    """Implements `AttemptSink`: processes what running attempts write."""

    def __init__(self, table: InvocationTable, lifecycle: AttemptLifecycle, calls: Calls, keys: KeyTable,
                 store: Store, timers: TimerService, clock: Clock, options: EngineOptions,
                 outcomes: OutcomeWaiters) -> None:
        self.table = table
        self.lifecycle = lifecycle
        self.calls = calls
        self.keys = keys
        self.store = store
        self.timers = timers
        self.clock = clock
        self.options = options
        self.outcomes = outcomes

    def on_attempt_messages(self, inv: Invocation, attempt: RunningAttempt | None,
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
                    self.lifecycle.abort(inv)
                    self.lifecycle.fail(inv, pb.ErrorMessage(code=571, message=error))
                    return
            elif type_id == m.PROPOSE_RUN_COMPLETION:
                self._run_completed(inv, msg)  # type: ignore[arg-type]
            elif type_id == m.END:
                self._end(inv)
            elif type_id == m.SUSPENSION:
                self.lifecycle.suspend(inv, msg)  # type: ignore[arg-type]
            elif type_id == m.ERROR:
                self.lifecycle.fail(inv, msg)  # type: ignore[arg-type]
                bug = attempt.code_bug  # only the in-process attempt can tell
                if bug is not None:
                    self._tell_waiters_of_bug(inv, bug)
            else:
                log.warning("ignoring unexpected message %s from %s", m.type_name(type_id), inv.id)

    def _command(self, inv: Invocation, attempt: RunningAttempt, type_id: int, msg: Any) -> str | None:
        handler = attempt.handler
        if type_id in _STATE_COMMANDS:
            if handler.service.kind == "service" or (handler.is_shared and type_id in _STATE_WRITES):
                return self._apply_state(inv, handler, type_id, msg)
            self.table.append(inv, type_id, msg)
            return self._apply_state(inv, handler, type_id, msg)
        if type_id in _PROMISE_COMMANDS and handler.service.kind != "workflow":
            return f"{inv.service}/{inv.handler} is not a workflow handler: promises belong to workflows"
        self.table.append(inv, type_id, msg)
        if type_id == m.OUTPUT:
            inv.output_command = msg
        elif type_id == m.SLEEP:
            self.timers.add(inv.id, "sleep", msg.result_completion_id, msg.wake_up_time)
        elif type_id == m.CALL:
            self.calls.call(inv, msg)
        elif type_id == m.ONE_WAY_CALL:
            self.calls.send(inv, msg)
        elif type_id == m.COMPLETE_AWAKEABLE:
            result = msg.value.content if msg.WhichOneof("result") == "value" else None
            fail = msg.failure if msg.WhichOneof("result") == "failure" else None
            try:
                self.calls.complete_awakeable(msg.awakeable_id, result, fail)
            except ValueError as e:  # malformed, or a built-in signal's id: nothing was delivered
                log.warning("invocation %s: refused to complete an awakeable: %s", inv.id, e)
        elif type_id == m.SEND_SIGNAL:
            self.calls.signal(inv, msg)
        elif type_id in _PROMISE_COMMANDS:
            self.calls.promise(inv, type_id, msg)
        elif type_id == m.ATTACH_INVOCATION:
            self.calls.attach(inv, msg, m.ATTACH_INVOCATION_COMPLETION, wait=True)
        elif type_id == m.GET_INVOCATION_OUTPUT:
            self.calls.attach(inv, msg, m.GET_INVOCATION_OUTPUT_COMPLETION, wait=False)
        return None

    # ---- state ----

    def _apply_state(self, inv: Invocation, handler: Handler, type_id: int, msg: Any) -> str | None:
        """Apply a state command; returns an error message if the handler may not do it."""
        if handler.service.kind == "service":
            return f"{inv.service}/{inv.handler} is a service handler: it has no state"
        if handler.is_shared and type_id in _STATE_WRITES:
            return f"{inv.service}/{inv.handler} is a shared handler: it may read state but not write it"
        svc, key = inv.service, inv.key
        if type_id == m.GET_LAZY_STATE:
            value = state_view(self.keys, self.store, inv, handler).get(msg.key)
            n = note(msg.result_completion_id)
            if value is None:
                n.void.SetInParent()
            else:
                n.value.content = value
            self.lifecycle.notify_running(inv, m.GET_LAZY_STATE_COMPLETION, n)
            return None
        if type_id == m.GET_LAZY_STATE_KEYS:
            n = note(msg.result_completion_id)
            n.state_keys.keys.extend(state_view(self.keys, self.store, inv, handler).names())
            self.lifecycle.notify_running(inv, m.GET_LAZY_STATE_KEYS_COMPLETION, n)
            return None
        if type_id not in _STATE_WRITES:
            return None  # eager reads carry their result; nothing to do
        state = self.keys.state(svc, key, self.store)
        if type_id == m.SET_STATE:
            state.set(msg.key, msg.value.content)
            self.table.write(SetState(svc, key, msg.key, msg.value.content))
        elif type_id == m.CLEAR_STATE:
            state.clear(msg.key)
            self.table.write(ClearState(svc, key, msg.key))
        else:
            state.clear_all()
            self.table.write(ClearAllState(svc, key))
        return None

    # ---- runs and the end ----

    def _run_completed(self, inv: Invocation, msg: pb.ProposeRunCompletionMessage) -> None:
        n = note(msg.result_completion_id)
        too_large = run_result_too_large(msg, lambda: self._run_name(inv, msg.result_completion_id),
                                         self.options.journal_entry_limit)
        if too_large is not None:
            log.warning("invocation %s: %s", inv.id, too_large)
            n.failure.code = ENTRY_TOO_LARGE_CODE
            n.failure.message = too_large
        elif msg.WhichOneof("result") == "failure":
            n.failure.CopyFrom(msg.failure)
        else:
            n.value.content = msg.value
        self.lifecycle.notify_running(inv, m.RUN_COMPLETION, n)

    @staticmethod
    def _run_name(inv: Invocation, cid: int) -> str:
        for type_id, cmd in reversed(inv.journal or ()):
            if type_id == m.RUN and cmd.result_completion_id == cid:  # type: ignore[attr-defined]
                return cmd.name  # type: ignore[attr-defined,no-any-return]
        return ""

    def _end(self, inv: Invocation) -> None:
        out = inv.output_command
        if out is None:
            self.lifecycle.fail(inv, pb.ErrorMessage(code=571, message="End without an output command"))
            return
        if out.WhichOneof("result") == "failure":  # type: ignore[attr-defined]
            f = out.failure  # type: ignore[attr-defined]
            outcome = Outcome(failure_code=f.code, failure_message=f.message,
                              failure_metadata={x.key: x.value for x in f.metadata} or None)
        else:
            outcome = Outcome(value=out.value.content)  # type: ignore[attr-defined]
        self.lifecycle.complete(inv, outcome)

    def _tell_waiters_of_bug(self, inv: Invocation, message: str) -> None:
        """Answer whoever waits on the invocation over HTTP with the bug now (500); it keeps retrying.

        Callers inside the runtime (other invocations' calls) keep waiting for the real outcome: what they
        see must come from the journal.
        """
        outcome = Outcome(failure_code=500, failure_message=message)
        resolve: Callable[[str, Outcome], None] = self.outcomes.resolve
        self.table.after_commit(lambda: resolve(inv.id, outcome))
