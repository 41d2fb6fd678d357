"""The journal state machine under the Context (the "VM").

One VM serves one attempt of one invocation. It is fed the Start message and the recorded journal, then:

- replays: every syscall pops the next recorded command and checks that the handler asked for the same
  thing (journal mismatch, code 570, otherwise);
- processes: once the recorded commands are used up, every syscall emits a new command;
- collects notifications (recorded ones first, then those the runtime sends) and resolves handles.

It never does I/O. The caller drains `output` and delivers notifications with `notify`. Completion ids and
signal ids are allocated exactly as Restate's SDKs allocate them, so journals are interchangeable.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from google.protobuf.message import Message

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.sdk.errors import JOURNAL_MISMATCH, PROTOCOL_VIOLATION, VMError

CANCEL_SIGNAL = 1
FIRST_AWAKEABLE_SIGNAL = 17
# Handles of signals live above every completion id so one int space serves both.
SIGNAL_HANDLE_BASE = 1 << 32
# Named signals (restate-sdk's ctx.signal(name)) get handles above the numbered ones, one per name, in the
# order the attempt first meets the name; the name itself is what the journal and the runtime use.
NAMED_SIGNAL_HANDLE_BASE = 1 << 48


def signal_handle(signal_id: int) -> int:
    """The handle the VM uses for a signal id."""
    return SIGNAL_HANDLE_BASE + signal_id


_CANCEL_HANDLE = signal_handle(CANCEL_SIGNAL)


def _entry_name(type_id: int, msg: Message) -> str:
    return getattr(msg, "name", "") if type_id != m.SEND_SIGNAL else msg.entry_name  # type: ignore[attr-defined]


def _describe(type_id: int, msg: Message, index: int) -> str:
    name = _entry_name(type_id, msg)
    text = f"'{m.type_name(type_id)}' (index '{index}'"
    if name:
        text += f", name '{name}'"
    return text + ")"


def _fields(msg: Message) -> str:
    parts = []
    for fd, value in msg.ListFields():
        if fd.name == "name":
            continue
        shown = value if not isinstance(value, bytes) else value[:64]
        parts.append(f"{fd.name}={shown!r}".replace("\n", " "))
    return ", ".join(parts) or "no fields"


class VM:
    """The state machine of one attempt. See the module docstring."""

    def __init__(self, start: pb.StartMessage, known: list[tuple[int, Message]]) -> None:
        if not known or known[0][0] != m.INPUT:
            raise VMError(PROTOCOL_VIOLATION, "the journal must start with the input command")
        self.start = start
        self._named: dict[str, int] = {}
        self._proposed: dict[int, pb.ProposeRunCompletionMessage] = {}
        self._commands: deque[tuple[int, Message]] = deque()
        # Notifications become visible one at a time, in journal order, and only when an await cannot be
        # satisfied by what is visible already. Live and on replay the same awaits then see the same
        # notifications, which is what makes select/wait_completed deterministic.
        self._pending: deque[tuple[int, int, int, Message]] = deque()  # (handle, arrival, type, message)
        self._known: set[int] = set()
        # Visible: handle -> (arrival order, type id, notification)
        self._notifications: dict[int, tuple[int, int, Message]] = {}
        self._arrivals = 0
        self._input: pb.InputCommandMessage = known[0][1]  # type: ignore[assignment]
        for type_id, msg in known[1:]:
            if m.is_notification(type_id):
                self._add_notification(type_id, msg)
            else:
                self._commands.append((type_id, msg))
        self.command_index = 0  # index of the last command consumed or written; Input is 0
        self._next_completion = 1
        self._next_signal = FIRST_AWAKEABLE_SIGNAL
        # Invocation-id handles of the calls made so far: a cancellation is passed on to them.
        self.call_id_handles: list[int] = []
        self.cancel_consumed = False
        self.output: list[tuple[int, Message]] = []
        self.input_closed = False
        self.closed = False
        self.state: dict[bytes, bytes | None] = {e.key: e.value for e in start.state_map}
        self.partial_state = start.partial_state
        self.commands_written = 0

    def named_signal_handle(self, name: str) -> int:
        """The handle of the named signal `name` in this attempt."""
        handle = self._named.get(name)
        if handle is None:
            handle = self._named[name] = NAMED_SIGNAL_HANDLE_BASE + len(self._named)
        return handle

    def signal_name(self, handle: int) -> str | None:
        """The name of a named-signal handle (None for other handles)."""
        if handle < NAMED_SIGNAL_HANDLE_BASE:
            return None
        return next((n for n, h in self._named.items() if h == handle), None)

    # ---- status ----

    @property
    def replaying(self) -> bool:
        """True while recorded commands remain to be consumed."""
        return bool(self._commands)

    def input(self) -> pb.InputCommandMessage:
        """The invocation's input command."""
        return self._input

    # ---- notifications ----

    def _add_notification(self, type_id: int, msg: Message) -> None:
        which = msg.WhichOneof("id")  # type: ignore[attr-defined]
        if which == "completion_id":
            handle = msg.completion_id  # type: ignore[attr-defined]
        elif which == "signal_id":
            handle = signal_handle(msg.signal_id)  # type: ignore[attr-defined]
        elif which == "signal_name":
            handle = self.named_signal_handle(msg.signal_name)  # type: ignore[attr-defined]
        else:
            return  # a notification without an id: nothing can await it
        if handle in self._known:
            return  # a duplicate delivery; the first one counts
        self._arrivals += 1
        self._known.add(handle)
        self._pending.append((handle, self._arrivals, type_id, msg))

    def notify(self, type_id: int, msg: Message) -> None:
        """Deliver a notification from the runtime (it becomes visible when an await needs it)."""
        self._add_notification(type_id, msg)

    def notify_input_closed(self) -> None:
        """The runtime will send nothing more in this attempt; awaiting anything missing suspends."""
        self.input_closed = True

    def reveal_next(self) -> int | None:
        """Make the next notification visible; returns its handle, or None if none is waiting."""
        if not self._pending:
            return None
        handle, arrival, type_id, msg = self._pending.popleft()
        self._notifications[handle] = (arrival, type_id, msg)
        return handle

    def has_notification(self, handle: int) -> bool:
        """Whether a notification for the handle was received, visible or not yet."""
        return handle in self._known or handle in self._notifications

    def is_completed(self, handle: int) -> bool:
        """Whether the notification for a handle is visible."""
        return handle in self._notifications

    def cancel_pending(self) -> bool:
        """Whether a cancellation is visible and the handler has not been told yet."""
        return not self.cancel_consumed and _CANCEL_HANDLE in self._notifications

    def arrival(self, handle: int) -> int:
        """The order in which a handle's notification arrived (journal order; smaller is earlier)."""
        return self._notifications[handle][0]

    def result(self, handle: int) -> Message:
        """The notification that completed a handle."""
        return self._notifications[handle][2]

    # ---- commands ----

    def _emit(self, type_id: int, msg: Message, compare: str = "all") -> None:
        if self.closed:
            raise VMError(PROTOCOL_VIOLATION, "the attempt is already closed")
        self.command_index += 1
        if self._commands:
            rec_type, rec = self._commands.popleft()
            self._check(rec_type, rec, type_id, msg, compare)
            return
        self.output.append((type_id, msg))
        self.commands_written += 1

    def _check(self, rec_type: int, rec: Message, type_id: int, msg: Message, compare: str) -> None:
        idx = self.command_index
        same = rec_type == type_id
        if same:
            if compare == "name":
                same = rec.name == msg.name  # type: ignore[attr-defined]
            elif compare == "oneway":
                a, b = type(rec)(), type(msg)()
                a.CopyFrom(rec)
                b.CopyFrom(msg)
                a.ClearField("invoke_time")
                b.ClearField("invoke_time")
                same = a == b
            else:
                same = rec == msg
        if not same:
            text = (
                "Found a mismatch between the code paths taken during the previous execution and the "
                "current execution. The handler must take the same steps in the same order on every "
                "attempt (wrap non-deterministic code in ctx.run). - The previous execution ran and "
                f"recorded the following: {_describe(rec_type, rec, idx)} with {_fields(rec)} - The "
                f"current execution attempts to perform the following: {_describe(type_id, msg, idx)} "
                f"with {_fields(msg)}"
            )
            # Like Restate's VM, the error relates to the command the handler attempts (its type and name).
            raise VMError(JOURNAL_MISMATCH, text, idx, type_id, _entry_name(type_id, msg) or None)

    def _completion(self) -> int:
        cid = self._next_completion
        self._next_completion += 1
        return cid

    def sys_run(self, name: str) -> int:
        """Journal a run step; returns its handle (completed already if it was recorded)."""
        cid = self._completion()
        self._emit(m.RUN, pb.RunCommandMessage(result_completion_id=cid, name=name))
        return cid

    def propose_run_completion(self, handle: int, value: bytes | None = None,
                               failure: pb.Failure | None = None) -> None:
        """Hand the outcome of a run closure to the runtime, which journals it as a notification."""
        msg = pb.ProposeRunCompletionMessage(result_completion_id=handle)
        if failure is not None:
            msg.failure.CopyFrom(failure)
        else:
            msg.value = value or b""
        self._proposed[handle] = msg
        self.output.append((m.PROPOSE_RUN_COMPLETION, msg))

    def run_completion_acked(self, handle: int) -> pb.NotificationMessage | None:
        """Protocol v7: the runtime acknowledged a proposed run result; the notification it stands for
        (built from the proposal this VM keeps), or None if nothing was proposed for the handle."""
        proposal = self._proposed.pop(handle, None)
        if proposal is None:
            return None
        note = pb.NotificationMessage(completion_id=handle)
        if proposal.WhichOneof("result") == "failure":
            note.failure.CopyFrom(proposal.failure)
        else:
            note.value.content = proposal.value
        return note

    def sys_sleep(self, wake_up_time_ms: int, name: str = "") -> int:
        """Journal a durable timer."""
        cid = self._completion()
        self._emit(m.SLEEP, pb.SleepCommandMessage(wake_up_time=wake_up_time_ms, result_completion_id=cid,
                                                   name=name), compare="name")
        return cid

    def sys_get_state(self, key: bytes, name: str = "") -> int:
        """Read a state value, eagerly from the Start state map when it is known, else lazily."""
        cid = self._completion()
        if self._commands and self._commands[0][0] in (m.GET_EAGER_STATE, m.GET_LAZY_STATE):
            rec_type, rec = self._commands[0]
            if rec.key != key:  # type: ignore[attr-defined]
                self._emit(m.GET_LAZY_STATE, pb.GetLazyStateCommandMessage(key=key, result_completion_id=cid))
            if rec_type == m.GET_EAGER_STATE:
                self._commands.popleft()
                self.command_index += 1
                self._synthesize_state(cid, rec)
                return cid
            self._emit(m.GET_LAZY_STATE, pb.GetLazyStateCommandMessage(key=key, result_completion_id=cid,
                                                                        name=name))
            return cid
        if key in self.state or not self.partial_state:
            value = self.state.get(key)
            cmd = pb.GetEagerStateCommandMessage(key=key, name=name)
            if value is None:
                cmd.void.SetInParent()
            else:
                cmd.value.content = value
            self._emit(m.GET_EAGER_STATE, cmd)
            self._synthesize_state(cid, cmd)
            return cid
        self._emit(m.GET_LAZY_STATE, pb.GetLazyStateCommandMessage(key=key, result_completion_id=cid,
                                                                    name=name))
        return cid

    def _synthesize_state(self, cid: int, cmd: Message) -> None:
        note = pb.NotificationMessage(completion_id=cid)
        if cmd.WhichOneof("result") == "value":  # type: ignore[attr-defined]
            note.value.CopyFrom(cmd.value)  # type: ignore[attr-defined]
        else:
            note.void.SetInParent()
        self._notifications[cid] = (0, m.GET_LAZY_STATE_COMPLETION, note)

    def sys_state_keys(self, name: str = "") -> int:
        """List state keys, eagerly when the full state is known."""
        cid = self._completion()
        if self._commands and self._commands[0][0] == m.GET_EAGER_STATE_KEYS:
            _, rec = self._commands.popleft()
            self.command_index += 1
            note = pb.NotificationMessage(completion_id=cid)
            note.state_keys.CopyFrom(rec.value)  # type: ignore[attr-defined]
            self._notifications[cid] = (0, m.GET_LAZY_STATE_KEYS_COMPLETION, note)
            return cid
        if not self.partial_state and not self._commands:
            keys = sorted(k for k, v in self.state.items() if v is not None)
            cmd = pb.GetEagerStateKeysCommandMessage(name=name)
            cmd.value.keys.extend(keys)
            self._emit(m.GET_EAGER_STATE_KEYS, cmd)
            note = pb.NotificationMessage(completion_id=cid)
            note.state_keys.keys.extend(keys)
            self._notifications[cid] = (0, m.GET_LAZY_STATE_KEYS_COMPLETION, note)
            return cid
        self._emit(m.GET_LAZY_STATE_KEYS, pb.GetLazyStateKeysCommandMessage(result_completion_id=cid,
                                                                             name=name))
        return cid

    def sys_set_state(self, key: bytes, value: bytes, name: str = "") -> None:
        """Write a state value."""
        cmd = pb.SetStateCommandMessage(key=key, name=name)
        cmd.value.content = value
        self._emit(m.SET_STATE, cmd)
        self.state[key] = value

    def sys_clear_state(self, key: bytes, name: str = "") -> None:
        """Delete a state value."""
        self._emit(m.CLEAR_STATE, pb.ClearStateCommandMessage(key=key, name=name))
        self.state[key] = None

    def sys_clear_all_state(self, name: str = "") -> None:
        """Delete all state of the key."""
        self._emit(m.CLEAR_ALL_STATE, pb.ClearAllStateCommandMessage(name=name))
        self.state = {}
        self.partial_state = False

    def sys_call(self, cmd: pb.CallCommandMessage) -> tuple[int, int]:
        """Journal a call; returns (invocation-id handle, result handle)."""
        cmd.invocation_id_notification_idx = self._completion()
        cmd.result_completion_id = self._completion()
        self._emit(m.CALL, cmd)
        self.call_id_handles.append(cmd.invocation_id_notification_idx)
        return cmd.invocation_id_notification_idx, cmd.result_completion_id

    def sys_send(self, cmd: pb.OneWayCallCommandMessage) -> int:
        """Journal a one-way call; returns the invocation-id handle."""
        cmd.invocation_id_notification_idx = self._completion()
        self._emit(m.ONE_WAY_CALL, cmd, compare="oneway")
        return cmd.invocation_id_notification_idx

    def sys_awakeable(self) -> int:
        """Allocate a signal id for an awakeable; no command is journaled."""
        sid = self._next_signal
        self._next_signal += 1
        return sid

    def sys_complete_awakeable(self, cmd: pb.CompleteAwakeableCommandMessage) -> None:
        """Resolve or reject someone's awakeable."""
        self._emit(m.COMPLETE_AWAKEABLE, cmd)

    def sys_signal(self, name: str) -> int:
        """Await the named signal `name` on this invocation; no command is journaled, only its notification."""
        if not name:
            raise VMError(PROTOCOL_VIOLATION, "a signal name must not be empty")
        return self.named_signal_handle(name)

    def sys_send_signal(self, cmd: pb.SendSignalCommandMessage) -> None:
        """Send a signal (cancellation is signal 1) to another invocation."""
        self._emit(m.SEND_SIGNAL, cmd)

    def sys_completable(self, type_id: int, cmd: Message) -> int:
        """Journal a command answered by one notification (promises, attach, get output)."""
        cid = self._completion()
        cmd.result_completion_id = cid  # type: ignore[attr-defined]
        self._emit(type_id, cmd)
        return cid

    def sys_output(self, value: bytes | None = None, failure: pb.Failure | None = None) -> None:
        """Journal the handler's result."""
        cmd = pb.OutputCommandMessage()
        if failure is not None:
            cmd.failure.CopyFrom(failure)
        else:
            cmd.value.content = value or b""
        self._emit(m.OUTPUT, cmd)

    # ---- endings ----

    def sys_end(self) -> None:
        """End the attempt after the output was written."""
        self.output.append((m.END, pb.EndMessage()))
        self.closed = True

    def sys_suspend(self, handles: list[int]) -> None:
        """End the attempt waiting for any of these handles (and for cancellation)."""
        msg = pb.SuspensionMessage()
        completions = sorted(h for h in handles if h < SIGNAL_HANDLE_BASE)
        signals = {h - SIGNAL_HANDLE_BASE for h in handles if SIGNAL_HANDLE_BASE <= h < NAMED_SIGNAL_HANDLE_BASE}
        names = sorted({n for h in handles if (n := self.signal_name(h)) is not None})
        msg.waiting_named_signals.extend(names)
        if not self.cancel_consumed:
            signals.add(CANCEL_SIGNAL)  # a cancellation wakes the invocation, until it has been delivered
        msg.waiting_completions.extend(completions)
        msg.waiting_signals.extend(sorted(signals))
        self.output.append((m.SUSPENSION, msg))
        self.closed = True

    def sys_error(self, code: int, message: str, stacktrace: str = "", next_retry_delay_ms: int | None = None,
                  related: tuple[int, int, str] | None = None) -> None:
        """End the attempt with a retryable failure."""
        msg = pb.ErrorMessage(code=code, message=message, stacktrace=stacktrace)
        if next_retry_delay_ms is not None:
            msg.next_retry_delay = next_retry_delay_ms
        if related is not None:
            msg.related_command_index, msg.related_command_type, msg.related_command_name = related
        self.output.append((m.ERROR, msg))
        self.closed = True

    def take_output(self) -> list[tuple[int, Message]]:
        """Drain the messages written since the last call."""
        out, self.output = self.output, []
        return out


def failure(code: int, message: str, metadata: dict[str, str] | None = None) -> pb.Failure:
    """Build a protocol Failure."""
    f = pb.Failure(code=code, message=message)
    for k, v in (metadata or {}).items():
        f.metadata.add(key=k, value=v)
    return f


def notification_value(msg: Any) -> Any:
    """The result a notification carries: bytes, None (void), a Failure, an invocation id or state keys."""
    which = msg.WhichOneof("result")
    if which == "value":
        return msg.value.content
    if which == "failure":
        return msg.failure
    if which == "invocation_id":
        return msg.invocation_id
    if which == "state_keys":
        return list(msg.state_keys.keys)
    return None
