"""Unit tests for the journal state machine (durably.sdk.vm.VM).

Style: a recorded journal goes in (Start + known entries), syscalls are made, and the messages the VM writes
(`take_output`), its replay flag, the handles it resolves and the errors it raises are checked.

Notifications (recorded in the journal or delivered with `notify`) are queued in arrival order and stay hidden
(`is_completed` False, `result` KeyError) until `reveal_next` makes the next one visible; `has_notification`
is True as soon as one was received. Eagerly read state is visible at once.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf.message import Message

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.protocol.framing import encode_message
from durably.sdk.errors import VMError
from durably.sdk.vm import VM, failure, notification_value, signal_handle

Entry = tuple[int, Message]


# ---- journal builders ----------------------------------------------------------------------------------


def start(state: dict[bytes, bytes] | None = None, partial: bool = False, known: int = 1,
          key: str = "") -> pb.StartMessage:
    msg = pb.StartMessage(id=bytes(24), debug_id="inv_1test", known_entries=known, partial_state=partial,
                          key=key)
    for k, v in (state or {}).items():
        msg.state_map.add(key=k, value=v)
    return msg


def input_cmd(value: bytes = b'"bob"') -> Entry:
    return m.INPUT, pb.InputCommandMessage(value=pb.Value(content=value))


def run_cmd(cid: int, name: str) -> Entry:
    return m.RUN, pb.RunCommandMessage(result_completion_id=cid, name=name)


def run_done(cid: int, value: bytes) -> Entry:
    return m.RUN_COMPLETION, pb.NotificationMessage(completion_id=cid, value=pb.Value(content=value))


def sleep_cmd(cid: int, wake_up_time: int = 1_000, name: str = "") -> Entry:
    return m.SLEEP, pb.SleepCommandMessage(wake_up_time=wake_up_time, result_completion_id=cid, name=name)


def sleep_done(cid: int) -> Entry:
    return m.SLEEP_COMPLETION, pb.NotificationMessage(completion_id=cid, void=pb.Void())


def set_state_cmd(key: bytes, value: bytes) -> Entry:
    return m.SET_STATE, pb.SetStateCommandMessage(key=key, value=pb.Value(content=value))


def one_way(invoke_time: int = 0, handler: str = "greet", parameter: bytes = b"1") -> pb.OneWayCallCommandMessage:
    return pb.OneWayCallCommandMessage(service_name="Greeter", handler_name=handler, parameter=parameter,
                                       invoke_time=invoke_time, key="k")


def call(parameter: bytes = b"1") -> pb.CallCommandMessage:
    return pb.CallCommandMessage(service_name="Greeter", handler_name="greet", parameter=parameter, key="k")


def new_vm(*recorded: Entry, state: dict[bytes, bytes] | None = None, partial: bool = False) -> VM:
    """A VM over [Input, *recorded]."""
    known = [input_cmd(), *recorded]
    return VM(start(state, partial, known=len(known)), known)


def types(out: list[Entry]) -> list[int]:
    return [t for t, _ in out]


def mismatch(vm_call: Callable[..., object], *args: object) -> VMError:
    with pytest.raises(VMError) as info:
        vm_call(*args)
    assert info.value.code == 570
    return info.value


def reveal(vm: VM, handle: int) -> Message:
    """Check that the handle's notification was received but is hidden, reveal it (it must be next in the
    queue) and return it."""
    assert vm.has_notification(handle)
    assert not vm.is_completed(handle)
    with pytest.raises(KeyError):
        vm.result(handle)
    assert vm.reveal_next() == handle
    assert vm.is_completed(handle)
    return vm.result(handle)


# ---- construction ----------------------------------------------------------------------------------------


def test_input_is_entry_zero_and_a_fresh_vm_is_processing() -> None:
    vm = new_vm()
    assert vm.input().value.content == b'"bob"'
    assert not vm.replaying
    assert vm.take_output() == []


@pytest.mark.parametrize("known", [
    [],
    [run_cmd(1, "step")],
    [run_cmd(1, "step"), input_cmd()],
    [run_done(1, b"x"), input_cmd()],
])
def test_journal_not_starting_with_input_is_a_protocol_violation(known: list[Entry]) -> None:
    with pytest.raises(VMError) as info:
        VM(start(known=len(known)), known)
    assert info.value.code == 571
    assert "input" in info.value.message


# ---- fresh processing: commands and id allocation --------------------------------------------------------


def test_fresh_run_gets_completion_id_1_and_writes_run_command() -> None:
    vm = new_vm()
    handle = vm.sys_run("step")
    assert handle == 1
    assert not vm.is_completed(handle)
    [(type_id, cmd)] = vm.take_output()
    assert type_id == m.RUN
    assert cmd == pb.RunCommandMessage(result_completion_id=1, name="step")
    assert vm.take_output() == []  # drained


def test_propose_run_completion_carries_the_value_and_does_not_resolve_the_handle() -> None:
    vm = new_vm()
    handle = vm.sys_run("step")
    vm.propose_run_completion(handle, b'"hello bob"')
    out = vm.take_output()
    assert types(out) == [m.RUN, m.PROPOSE_RUN_COMPLETION]
    proposal = out[1][1]
    assert proposal.result_completion_id == 1
    assert proposal.WhichOneof("result") == "value"
    assert proposal.value == b'"hello bob"'
    # The runtime journals the proposal; only its notification completes the run.
    assert not vm.is_completed(handle)
    assert not vm.has_notification(handle)
    vm.notify(*run_done(1, b'"hello bob"'))
    # Received, but hidden until an await reveals it.
    assert vm.has_notification(handle)
    assert not vm.is_completed(handle)
    assert vm.reveal_next() == handle
    assert vm.is_completed(handle)
    assert notification_value(vm.result(handle)) == b'"hello bob"'


def test_propose_run_completion_with_a_terminal_failure() -> None:
    vm = new_vm()
    handle = vm.sys_run("step")
    vm.propose_run_completion(handle, failure=failure(422, "nope", {"why": "bad"}))
    proposal = vm.take_output()[1][1]
    assert proposal.WhichOneof("result") == "failure"
    assert proposal.failure.code == 422
    assert proposal.failure.message == "nope"
    assert [(e.key, e.value) for e in proposal.failure.metadata] == [("why", "bad")]


def test_completion_ids_are_allocated_in_syscall_order() -> None:
    vm = new_vm()
    assert vm.sys_run("a") == 1
    assert vm.sys_sleep(5_000, "nap") == 2
    assert vm.sys_call(call()) == (3, 4)  # invocation id first, then the result
    assert vm.sys_send(one_way()) == 5
    assert vm.sys_run("b") == 6
    out = vm.take_output()
    assert types(out) == [m.RUN, m.SLEEP, m.CALL, m.ONE_WAY_CALL, m.RUN]
    assert out[1][1] == pb.SleepCommandMessage(wake_up_time=5_000, result_completion_id=2, name="nap")
    assert out[2][1].invocation_id_notification_idx == 3
    assert out[2][1].result_completion_id == 4
    assert out[2][1].service_name == "Greeter"
    assert out[3][1].invocation_id_notification_idx == 5
    assert out[4][1].result_completion_id == 6


def test_commands_without_a_result_consume_no_completion_id() -> None:
    vm = new_vm()
    vm.sys_set_state(b"a", b"1")
    vm.sys_clear_state(b"a")
    vm.sys_clear_all_state()
    vm.sys_complete_awakeable(pb.CompleteAwakeableCommandMessage(awakeable_id="sign_1x",
                                                                 value=pb.Value(content=b"v")))
    vm.sys_send_signal(pb.SendSignalCommandMessage(target_invocation_id="inv_1x", idx=1, void=pb.Void()))
    assert vm.sys_run("first") == 1
    assert types(vm.take_output()) == [m.SET_STATE, m.CLEAR_STATE, m.CLEAR_ALL_STATE, m.COMPLETE_AWAKEABLE,
                                       m.SEND_SIGNAL, m.RUN]


def test_awakeable_signal_ids_start_at_17_and_write_nothing() -> None:
    vm = new_vm()
    assert vm.sys_awakeable() == 17
    assert vm.sys_awakeable() == 18
    assert vm.take_output() == []
    assert vm.sys_sleep(1_000) == 1  # signal ids and completion ids are separate counters


def test_completable_command_gets_the_next_completion_id() -> None:
    vm = new_vm()
    vm.sys_run("a")
    handle = vm.sys_completable(m.GET_PROMISE, pb.GetPromiseCommandMessage(key="p"))
    assert handle == 2
    [_, (type_id, cmd)] = vm.take_output()
    assert type_id == m.GET_PROMISE
    assert cmd == pb.GetPromiseCommandMessage(key="p", result_completion_id=2)


# ---- replay ----------------------------------------------------------------------------------------------


def test_replayed_run_writes_nothing_and_its_recorded_result_is_revealed_on_demand() -> None:
    vm = new_vm(run_cmd(1, "step"), run_done(1, b'"hello bob"'))
    assert vm.replaying
    assert vm.has_notification(1)  # queued from the journal before the command is even replayed
    handle = vm.sys_run("step")
    assert handle == 1
    assert vm.take_output() == []
    assert not vm.replaying
    assert not vm.is_completed(handle)  # recorded, but not visible until revealed
    assert vm.has_notification(handle)
    assert vm.reveal_next() == handle
    assert vm.is_completed(handle)
    assert notification_value(vm.result(handle)) == b'"hello bob"'
    assert vm.reveal_next() is None


def test_replaying_flips_exactly_when_the_last_recorded_command_is_consumed() -> None:
    vm = new_vm(run_cmd(1, "a"), run_done(1, b"1"), sleep_cmd(2), sleep_done(2), run_cmd(3, "b"))
    assert vm.replaying
    vm.sys_run("a")
    assert vm.replaying
    vm.sys_sleep(9_999)
    assert vm.replaying
    handle = vm.sys_run("b")
    assert not vm.replaying
    assert not vm.is_completed(handle)  # recorded without its notification: still pending
    assert not vm.has_notification(handle)
    assert vm.take_output() == []
    # From here on every syscall is written.
    vm.sys_set_state(b"k", b"v")
    assert vm.sys_sleep(2_000) == 4
    out = vm.take_output()
    assert types(out) == [m.SET_STATE, m.SLEEP]
    assert out[1][1].result_completion_id == 4


def test_recorded_notifications_are_not_commands_to_replay() -> None:
    # Notifications do not count as commands to replay.
    vm = new_vm(sleep_cmd(1), sleep_done(1))
    vm.sys_sleep(1_000)
    assert not vm.replaying
    assert reveal(vm, 1).WhichOneof("result") == "void"


def test_replayed_call_resolves_both_handles_from_recorded_notifications() -> None:
    recorded = call()
    recorded.invocation_id_notification_idx, recorded.result_completion_id = 1, 2
    vm = new_vm((m.CALL, recorded),
                (m.CALL_INVOCATION_ID_COMPLETION, pb.NotificationMessage(completion_id=1, invocation_id="inv_1c")),
                (m.CALL_COMPLETION, pb.NotificationMessage(completion_id=2, value=pb.Value(content=b"r"))))
    id_handle, result_handle = vm.sys_call(call())
    assert vm.take_output() == []
    # Revealed one at a time, in journal order.
    assert notification_value(reveal(vm, id_handle)) == "inv_1c"
    assert not vm.is_completed(result_handle)
    assert notification_value(reveal(vm, result_handle)) == b"r"


def test_replayed_call_with_a_different_parameter_is_a_mismatch() -> None:
    recorded = call(parameter=b"1")
    recorded.invocation_id_notification_idx, recorded.result_completion_id = 1, 2
    vm = new_vm((m.CALL, recorded))
    err = mismatch(vm.sys_call, call(parameter=b"2"))
    assert err.related_index == 1


def test_replayed_terminal_failure_of_a_run() -> None:
    fail = pb.NotificationMessage(completion_id=1, failure=pb.Failure(code=422, message="nope"))
    vm = new_vm(run_cmd(1, "step"), (m.RUN_COMPLETION, fail))
    handle = vm.sys_run("step")
    result = notification_value(reveal(vm, handle))
    assert isinstance(result, pb.Failure)
    assert (result.code, result.message) == (422, "nope")


# ---- reference §2.12 worked examples ---------------------------------------------------------------------


def test_worked_example_set_state_and_run_replayed_then_processing() -> None:
    known = [input_cmd(), set_state_cmd(b"c", b"3"), run_cmd(1, "myrun"), run_done(1, b'"done"')]
    vm = VM(start(known=4, key="k1"), known)
    vm.sys_set_state(b"c", b"3")
    assert vm.replaying
    handle = vm.sys_run("myrun")
    assert not vm.replaying
    assert vm.take_output() == []
    assert notification_value(reveal(vm, handle)) == b'"done"'
    # The replayed SetState is visible to later eager reads (full state, partial_state=0).
    got = vm.sys_get_state(b"c")
    assert got == 2
    assert vm.is_completed(got)  # eager: visible at once, nothing to reveal
    assert vm.reveal_next() is None
    vm.sys_output(b'"done"')
    vm.sys_end()
    out = vm.take_output()
    assert types(out) == [m.GET_EAGER_STATE, m.OUTPUT, m.END]
    assert out[0][1].value.content == b"3"
    assert out[1][1].value.content == b'"done"'
    assert vm.closed


def test_worked_example_fresh_run_suspends_then_next_attempt_replays() -> None:
    vm = new_vm()
    handle = vm.sys_run("step")
    vm.propose_run_completion(handle, b'"hello bob"')
    vm.sys_suspend([handle])
    wire = [encode_message(msg) for _, msg in vm.take_output()]
    assert wire == [
        bytes.fromhex("0411000000000008") + b"\x58\x01\x62\x04step",
        bytes.fromhex("000500000000000f") + b'\x08\x01\x72\x0b"hello bob"',
        bytes.fromhex("0001000000000006") + b"\x0a\x01\x01\x12\x01\x01",
    ]

    known = [input_cmd(), run_cmd(1, "step"), run_done(1, b'"hello bob"')]
    vm = VM(start(known=3), known)
    handle = vm.sys_run("step")
    assert notification_value(reveal(vm, handle)) == b'"hello bob"'
    vm.sys_output(b'"Hello bob"')
    vm.sys_end()
    assert types(vm.take_output()) == [m.OUTPUT, m.END]


# ---- journal mismatch ------------------------------------------------------------------------------------


def test_run_with_a_different_name_is_a_mismatch_naming_both_entries() -> None:
    vm = new_vm(run_cmd(1, "a"))
    err = mismatch(vm.sys_run, "b")
    assert "'run' (index '1', name 'a')" in err.message
    assert "'run' (index '1', name 'b')" in err.message
    assert err.message.index("name 'a'") < err.message.index("name 'b'")  # recorded first, then attempted
    assert err.related_index == 1
    assert (err.related_type, err.related_name) == (m.RUN, "b")  # related to the attempted command
    assert vm.take_output() == []


def test_set_state_recorded_but_clear_state_attempted() -> None:
    vm = new_vm(set_state_cmd(b"k", b"v"))
    err = mismatch(vm.sys_clear_state, b"k")
    assert "'set state' (index '1'" in err.message
    assert "'clear state'" in err.message
    # Reference §2.10 (observed): related_command_index=1, related_command_type=0x0404 (the attempted command).
    assert err.related_index == 1
    assert err.related_type == m.CLEAR_STATE


def test_different_command_type_is_a_mismatch() -> None:
    vm = new_vm(run_cmd(1, "step"))
    err = mismatch(vm.sys_sleep, 1_000)
    assert "'run' (index '1', name 'step')" in err.message
    assert "'sleep' (index '1')" in err.message


def test_mismatch_reports_the_index_of_the_diverging_command() -> None:
    vm = new_vm(set_state_cmd(b"a", b"1"), run_cmd(1, "x"), run_done(1, b"1"), run_cmd(2, "y"))
    vm.sys_set_state(b"a", b"1")
    vm.sys_run("x")
    err = mismatch(vm.sys_run, "z")
    assert err.related_index == 3
    assert "(index '3', name 'y')" in err.message


def test_send_signal_mismatch_names_the_entry_not_the_signal() -> None:
    recorded = pb.SendSignalCommandMessage(target_invocation_id="inv_1a", idx=1, void=pb.Void(), entry_name="stop")
    vm = new_vm((m.SEND_SIGNAL, recorded))
    attempted = pb.SendSignalCommandMessage(target_invocation_id="inv_1b", idx=1, void=pb.Void(), entry_name="halt")
    err = mismatch(vm.sys_send_signal, attempted)
    assert "'send signal' (index '1', name 'stop')" in err.message
    assert "'send signal' (index '1', name 'halt')" in err.message
    assert (err.related_type, err.related_name) == (m.SEND_SIGNAL, "halt")


def test_set_state_with_a_different_value_is_a_mismatch() -> None:
    vm = new_vm(set_state_cmd(b"k", b"old"))
    err = mismatch(vm.sys_set_state, b"k", b"new")
    assert "'set state' (index '1')" in err.message


def test_run_recorded_with_another_completion_id_is_a_mismatch() -> None:
    # A sleep was removed before the run: the run now gets id 1 where id 2 was recorded.
    vm = new_vm(run_cmd(2, "step"))
    mismatch(vm.sys_run, "step")


def test_output_with_a_different_value_is_a_mismatch() -> None:
    vm = new_vm((m.OUTPUT, pb.OutputCommandMessage(value=pb.Value(content=b"1"))))
    mismatch(vm.sys_output, b"2")


# ---- per-command comparison rules ------------------------------------------------------------------------


def test_sleep_replay_ignores_wake_up_time() -> None:
    vm = new_vm(sleep_cmd(1, wake_up_time=1_000, name="nap"))
    assert vm.sys_sleep(987_654_321, "nap") == 1
    assert vm.take_output() == []
    assert not vm.replaying


def test_sleep_replay_with_a_different_name_is_a_mismatch() -> None:
    vm = new_vm(sleep_cmd(1, name="nap"))
    err = mismatch(vm.sys_sleep, 1_000, "doze")
    assert "name 'nap'" in err.message
    assert "name 'doze'" in err.message


def test_one_way_call_replay_ignores_invoke_time() -> None:
    recorded = one_way(invoke_time=1_000)
    recorded.invocation_id_notification_idx = 1
    vm = new_vm((m.ONE_WAY_CALL, recorded))
    assert vm.sys_send(one_way(invoke_time=2_000)) == 1
    assert vm.take_output() == []
    assert not vm.replaying


@pytest.mark.parametrize("attempted", [
    one_way(invoke_time=1_000, handler="other"),
    one_way(invoke_time=1_000, parameter=b"2"),
    pb.OneWayCallCommandMessage(service_name="Greeter", handler_name="greet", parameter=b"1", invoke_time=1_000),
])
def test_one_way_call_replay_compares_everything_else(attempted: pb.OneWayCallCommandMessage) -> None:
    recorded = one_way(invoke_time=1_000)
    recorded.invocation_id_notification_idx = 1
    vm = new_vm((m.ONE_WAY_CALL, recorded))
    mismatch(vm.sys_send, attempted)


# ---- eager / lazy state ----------------------------------------------------------------------------------


def test_known_key_is_read_eagerly_and_resolved_at_once() -> None:
    vm = new_vm(state={b"a": b"1"}, partial=False)
    handle = vm.sys_get_state(b"a")
    assert handle == 1
    [(type_id, cmd)] = vm.take_output()
    assert type_id == m.GET_EAGER_STATE
    assert cmd.key == b"a"
    assert cmd.WhichOneof("result") == "value"
    assert cmd.value.content == b"1"
    assert vm.is_completed(handle)
    assert notification_value(vm.result(handle)) == b"1"


def test_missing_key_with_full_state_is_an_eager_void() -> None:
    vm = new_vm(state={b"a": b"1"}, partial=False)
    handle = vm.sys_get_state(b"missing")
    [(type_id, cmd)] = vm.take_output()
    assert type_id == m.GET_EAGER_STATE
    assert cmd.WhichOneof("result") == "void"
    assert vm.is_completed(handle)
    assert notification_value(vm.result(handle)) is None


def test_missing_key_with_partial_state_is_read_lazily() -> None:
    vm = new_vm(state={b"a": b"1"}, partial=True)
    handle = vm.sys_get_state(b"b")
    assert handle == 1
    [(type_id, cmd)] = vm.take_output()
    assert type_id == m.GET_LAZY_STATE
    assert cmd == pb.GetLazyStateCommandMessage(key=b"b", result_completion_id=1)
    assert not vm.is_completed(handle)
    assert not vm.has_notification(handle)
    vm.notify(m.GET_LAZY_STATE_COMPLETION, pb.NotificationMessage(completion_id=1, value=pb.Value(content=b"2")))
    assert notification_value(reveal(vm, handle)) == b"2"


def test_known_key_with_partial_state_is_still_read_eagerly() -> None:
    vm = new_vm(state={b"a": b"1"}, partial=True)
    vm.sys_get_state(b"a")
    assert types(vm.take_output()) == [m.GET_EAGER_STATE]


def test_an_eager_get_still_consumes_a_completion_id() -> None:
    vm = new_vm(state={b"a": b"1"})
    assert vm.sys_get_state(b"a") == 1
    assert vm.sys_run("next") == 2


def test_replay_takes_the_recorded_eager_value_not_the_current_state() -> None:
    recorded = pb.GetEagerStateCommandMessage(key=b"a", value=pb.Value(content=b"old"))
    vm = new_vm((m.GET_EAGER_STATE, recorded), state={b"a": b"new"})
    handle = vm.sys_get_state(b"a")
    assert vm.take_output() == []
    assert not vm.replaying
    assert notification_value(vm.result(handle)) == b"old"
    assert vm.sys_run("next") == 2  # the replayed eager get consumed id 1


def test_replay_accepts_a_recorded_lazy_get_even_with_full_state() -> None:
    lazy = pb.GetLazyStateCommandMessage(key=b"a", result_completion_id=1)
    done = pb.NotificationMessage(completion_id=1, value=pb.Value(content=b"lazy"))
    vm = new_vm((m.GET_LAZY_STATE, lazy), (m.GET_LAZY_STATE_COMPLETION, done), state={b"a": b"eager"})
    handle = vm.sys_get_state(b"a")
    assert vm.take_output() == []
    assert notification_value(reveal(vm, handle)) == b"lazy"


@pytest.mark.parametrize("recorded", [
    (m.GET_EAGER_STATE, pb.GetEagerStateCommandMessage(key=b"a", void=pb.Void())),
    (m.GET_LAZY_STATE, pb.GetLazyStateCommandMessage(key=b"a", result_completion_id=1)),
])
def test_replayed_get_of_another_key_is_a_mismatch(recorded: Entry) -> None:
    vm = new_vm(recorded)
    err = mismatch(vm.sys_get_state, b"b")
    assert err.related_index == 1


def test_set_clear_and_clear_all_update_what_later_gets_see() -> None:
    vm = new_vm(state={b"a": b"1", b"b": b"2"}, partial=True)
    vm.sys_set_state(b"a", b"10")
    vm.sys_clear_state(b"b")
    vm.sys_set_state(b"new", b"n")
    h_a, h_b, h_new = vm.sys_get_state(b"a"), vm.sys_get_state(b"b"), vm.sys_get_state(b"new")
    assert notification_value(vm.result(h_a)) == b"10"
    assert notification_value(vm.result(h_b)) is None  # cleared: known absent, no lazy read
    assert notification_value(vm.result(h_new)) == b"n"
    h_unknown = vm.sys_get_state(b"unknown")
    assert not vm.is_completed(h_unknown)  # partial state: still lazy

    vm.sys_clear_all_state()
    h_a2, h_unknown2 = vm.sys_get_state(b"a"), vm.sys_get_state(b"unknown")
    assert notification_value(vm.result(h_a2)) is None
    assert notification_value(vm.result(h_unknown2)) is None  # clear-all makes the state complete
    out = vm.take_output()
    assert types(out) == [m.SET_STATE, m.CLEAR_STATE, m.SET_STATE, m.GET_EAGER_STATE, m.GET_EAGER_STATE,
                          m.GET_EAGER_STATE, m.GET_LAZY_STATE, m.CLEAR_ALL_STATE, m.GET_EAGER_STATE,
                          m.GET_EAGER_STATE]
    assert out[0][1] == pb.SetStateCommandMessage(key=b"a", value=pb.Value(content=b"10"))
    assert out[1][1] == pb.ClearStateCommandMessage(key=b"b")


def test_state_keys_are_eager_with_full_state() -> None:
    vm = new_vm(state={b"b": b"2", b"a": b"1"})
    vm.sys_clear_state(b"b")
    vm.sys_set_state(b"c", b"3")
    handle = vm.sys_state_keys()
    out = vm.take_output()
    assert out[-1][0] == m.GET_EAGER_STATE_KEYS
    assert list(out[-1][1].value.keys) == [b"a", b"c"]
    assert notification_value(vm.result(handle)) == [b"a", b"c"]


def test_state_keys_are_lazy_with_partial_state() -> None:
    vm = new_vm(state={b"a": b"1"}, partial=True)
    handle = vm.sys_state_keys()
    [(type_id, cmd)] = vm.take_output()
    assert type_id == m.GET_LAZY_STATE_KEYS
    assert cmd.result_completion_id == handle == 1
    assert not vm.is_completed(handle)


def test_replayed_eager_state_keys_come_from_the_journal() -> None:
    recorded = pb.GetEagerStateKeysCommandMessage(value=pb.StateKeys(keys=[b"x"]))
    vm = new_vm((m.GET_EAGER_STATE_KEYS, recorded), state={b"y": b"1"})
    handle = vm.sys_state_keys()
    assert vm.take_output() == []
    assert notification_value(vm.result(handle)) == [b"x"]


# ---- endings ---------------------------------------------------------------------------------------------


def test_output_then_end() -> None:
    vm = new_vm()
    vm.sys_output(b'"Hello bob"')
    vm.sys_end()
    out = vm.take_output()
    assert types(out) == [m.OUTPUT, m.END]
    assert out[0][1].WhichOneof("result") == "value"
    assert out[0][1].value.content == b'"Hello bob"'
    assert vm.closed


def test_terminal_failure_output() -> None:
    vm = new_vm()
    vm.sys_output(failure=failure(422, "nope"))
    vm.sys_end()
    out = vm.take_output()
    assert out[0][1].WhichOneof("result") == "failure"
    assert (out[0][1].failure.code, out[0][1].failure.message) == (422, "nope")


def test_suspension_lists_completions_and_signals_including_cancel() -> None:
    vm = new_vm()
    vm.sys_suspend([3, signal_handle(17)])
    [(type_id, msg)] = vm.take_output()
    assert type_id == m.SUSPENSION
    assert list(msg.waiting_completions) == [3]
    assert list(msg.waiting_signals) == [1, 17]
    assert vm.closed


def test_suspension_without_handles_still_waits_for_cancel() -> None:
    vm = new_vm()
    vm.sys_suspend([])
    [(_, msg)] = vm.take_output()
    assert list(msg.waiting_completions) == []
    assert list(msg.waiting_signals) == [1]


def test_error_carries_code_message_delay_and_related_command() -> None:
    vm = new_vm()
    vm.sys_error(500, "RuntimeError('x')", "Traceback...", next_retry_delay_ms=2_500,
                 related=(1, m.RUN, "step"))
    [(type_id, msg)] = vm.take_output()
    assert type_id == m.ERROR
    assert (msg.code, msg.message, msg.stacktrace) == (500, "RuntimeError('x')", "Traceback...")
    assert msg.next_retry_delay == 2_500
    assert msg.related_command_index == 1
    assert msg.related_command_type == 0x0411
    assert msg.related_command_name == "step"
    assert vm.closed


def test_error_without_delay_or_related_command_leaves_them_unset() -> None:
    vm = new_vm()
    vm.sys_error(570, "mismatch")
    [(_, msg)] = vm.take_output()
    assert not msg.HasField("next_retry_delay")
    assert not msg.HasField("related_command_index")
    assert not msg.HasField("related_command_type")


@pytest.mark.parametrize("close", [
    lambda vm: vm.sys_end(),
    lambda vm: vm.sys_suspend([1]),
    lambda vm: vm.sys_error(500, "boom"),
])
def test_no_command_can_be_written_after_the_attempt_closed(close: Callable[[VM], None]) -> None:
    vm = new_vm()
    close(vm)
    vm.take_output()
    with pytest.raises(VMError) as info:
        vm.sys_run("late")
    assert info.value.code == 571
    with pytest.raises(VMError):
        vm.sys_set_state(b"k", b"v")
    assert vm.take_output() == []


# ---- notifications ---------------------------------------------------------------------------------------


def test_live_notifications_resolve_handles() -> None:
    vm = new_vm()
    sleep = vm.sys_sleep(1_000)
    id_handle, result_handle = vm.sys_call(call())
    assert not any(vm.is_completed(h) for h in (sleep, id_handle, result_handle))
    vm.notify(m.CALL_INVOCATION_ID_COMPLETION, pb.NotificationMessage(completion_id=id_handle, invocation_id="inv_1"))
    assert vm.has_notification(id_handle)
    assert not vm.is_completed(id_handle)
    assert vm.reveal_next() == id_handle
    assert vm.is_completed(id_handle)
    assert not vm.is_completed(result_handle)
    assert not vm.has_notification(result_handle)
    vm.notify(*sleep_done(sleep))
    assert vm.has_notification(sleep)
    assert not vm.is_completed(sleep)
    assert vm.reveal_next() == sleep
    assert vm.is_completed(sleep)
    assert vm.result(sleep).WhichOneof("result") == "void"
    assert notification_value(vm.result(id_handle)) == "inv_1"
    assert vm.reveal_next() is None


def test_signal_notifications_resolve_signal_handles_not_completion_handles() -> None:
    vm = new_vm()
    sid = vm.sys_awakeable()
    vm.notify(m.SIGNAL_NOTIFICATION, pb.NotificationMessage(signal_id=sid, value=pb.Value(content=b"yes")))
    assert vm.has_notification(signal_handle(sid))
    assert not vm.has_notification(sid)  # completion 17 is a different handle
    assert notification_value(reveal(vm, signal_handle(sid))) == b"yes"
    assert not vm.is_completed(sid)


def test_arrival_follows_journal_order_then_live_order() -> None:
    vm = new_vm(sleep_cmd(1), sleep_cmd(2), sleep_cmd(3), sleep_done(3), sleep_done(1))
    a, b, c = vm.sys_sleep(1_000), vm.sys_sleep(1_000), vm.sys_sleep(1_000)
    assert vm.has_notification(a) and vm.has_notification(c) and not vm.has_notification(b)
    assert not any(vm.is_completed(h) for h in (a, b, c))
    cancel = signal_handle(1)
    vm.notify(m.SIGNAL_NOTIFICATION, pb.NotificationMessage(signal_id=1, void=pb.Void()))
    vm.notify(*sleep_done(b))
    with pytest.raises(KeyError):
        vm.arrival(a)  # hidden notifications have no visible arrival yet
    revealed = [vm.reveal_next() for _ in range(4)]
    assert revealed == [c, a, cancel, b]
    assert vm.reveal_next() is None
    assert sorted([a, b, c, cancel], key=vm.arrival) == [c, a, cancel, b]


def test_a_repeated_notification_does_not_replace_the_first() -> None:
    vm = new_vm()
    handle = vm.sys_run("step")
    vm.notify(*run_done(handle, b"first"))
    vm.notify(*run_done(handle, b"second"))  # while the first is still queued
    assert vm.reveal_next() == handle
    assert vm.reveal_next() is None  # the duplicate was not queued
    first_arrival = vm.arrival(handle)
    vm.notify(*run_done(handle, b"third"))  # after the first was revealed
    assert vm.reveal_next() is None
    assert notification_value(vm.result(handle)) == b"first"
    assert vm.arrival(handle) == first_arrival


def test_notification_may_arrive_before_its_command_is_replayed() -> None:
    # Recorded notifications are queued at start, so a handle has its notification the moment it is allocated
    # (and even before); it becomes visible when revealed, in journal order.
    vm = new_vm(run_cmd(1, "a"), run_cmd(2, "b"), run_done(2, b"B"), run_done(1, b"A"))
    assert vm.has_notification(1) and vm.has_notification(2)
    a = vm.sys_run("a")
    assert not vm.is_completed(a) and not vm.is_completed(2)
    assert vm.reveal_next() == 2  # revealable before its command is replayed
    assert vm.is_completed(2) and not vm.is_completed(a)
    b = vm.sys_run("b")
    assert b == 2
    assert notification_value(reveal(vm, a)) == b"A"
    assert notification_value(vm.result(b)) == b"B"
    assert vm.arrival(b) < vm.arrival(a)


# ---- revealing notifications one at a time ---------------------------------------------------------------


def select_first(vm: VM, handles: list[int]) -> int:
    """What an await on any of the handles does: reveal notifications one at a time until one of them is
    visible, then pick the visible one that arrived first."""
    while not any(vm.is_completed(h) for h in handles):
        assert vm.reveal_next() is not None, "nothing left to reveal"
    return min((h for h in handles if vm.is_completed(h)), key=vm.arrival)


def test_reveal_order_is_arrival_order_with_recorded_notifications_before_live_ones() -> None:
    vm = new_vm(sleep_cmd(1), sleep_cmd(2), sleep_cmd(3), sleep_cmd(4), sleep_done(3), sleep_done(1))
    # Live notifications delivered before anything was revealed still queue behind the recorded ones.
    vm.notify(*sleep_done(4))
    vm.notify(m.SIGNAL_NOTIFICATION, pb.NotificationMessage(signal_id=17, value=pb.Value(content=b"s")))
    vm.notify(*sleep_done(2))
    assert all(vm.has_notification(h) for h in (1, 2, 3, 4, signal_handle(17)))
    assert not any(vm.is_completed(h) for h in (1, 2, 3, 4, signal_handle(17)))
    assert [vm.reveal_next() for _ in range(5)] == [3, 1, 4, signal_handle(17), 2]
    assert vm.reveal_next() is None
    arrivals = [vm.arrival(h) for h in (3, 1, 4, signal_handle(17), 2)]
    assert arrivals == sorted(arrivals)
    assert len(set(arrivals)) == 5


def test_each_reveal_makes_exactly_one_notification_visible() -> None:
    vm = new_vm()
    a, b = vm.sys_sleep(1_000), vm.sys_sleep(2_000)
    vm.notify(*sleep_done(b))
    vm.notify(*sleep_done(a))
    assert vm.reveal_next() == b
    assert vm.is_completed(b)
    assert not vm.is_completed(a)  # still queued
    assert vm.has_notification(a)
    with pytest.raises(KeyError):
        vm.result(a)
    with pytest.raises(KeyError):
        vm.arrival(a)
    assert vm.reveal_next() == a
    assert vm.is_completed(a)
    assert vm.arrival(b) < vm.arrival(a)


def test_reveal_next_returns_none_when_nothing_is_queued() -> None:
    vm = new_vm()
    assert vm.reveal_next() is None
    handle = vm.sys_run("step")
    assert vm.reveal_next() is None
    assert not vm.is_completed(handle)
    assert not vm.has_notification(handle)
    vm.notify(*run_done(handle, b"x"))
    assert vm.reveal_next() == handle
    assert vm.reveal_next() is None
    assert vm.reveal_next() is None  # and stays None
    assert vm.is_completed(handle)


def test_a_notification_for_an_unknown_handle_is_not_visible_and_has_no_result() -> None:
    vm = new_vm()
    assert not vm.has_notification(1)
    assert not vm.is_completed(1)
    with pytest.raises(KeyError):
        vm.result(1)
    with pytest.raises(KeyError):
        vm.arrival(1)


def test_duplicate_notifications_are_ignored_first_wins() -> None:
    # A duplicate in the journal and a live duplicate of a recorded notification.
    vm = new_vm(run_cmd(1, "a"), run_cmd(2, "b"), run_done(1, b"A1"), run_done(1, b"A2"), run_done(2, b"B"))
    vm.notify(*run_done(2, b"B-live"))
    vm.notify(*run_done(1, b"A-live"))
    a, b = vm.sys_run("a"), vm.sys_run("b")
    assert [vm.reveal_next(), vm.reveal_next(), vm.reveal_next()] == [a, b, None]
    assert notification_value(vm.result(a)) == b"A1"
    assert notification_value(vm.result(b)) == b"B"
    assert vm.arrival(a) < vm.arrival(b)
    # Duplicates of a signal are ignored too.
    sid = vm.sys_awakeable()
    vm.notify(m.SIGNAL_NOTIFICATION, pb.NotificationMessage(signal_id=sid, value=pb.Value(content=b"one")))
    vm.notify(m.SIGNAL_NOTIFICATION, pb.NotificationMessage(signal_id=sid, value=pb.Value(content=b"two")))
    assert vm.reveal_next() == signal_handle(sid)
    assert vm.reveal_next() is None
    assert notification_value(vm.result(signal_handle(sid))) == b"one"


def test_named_signals_are_awaited_by_name_in_arrival_order() -> None:
    vm = new_vm((m.SIGNAL_NOTIFICATION, pb.NotificationMessage(signal_name="recorded", void=pb.Void())))
    vm.notify(m.SIGNAL_NOTIFICATION, pb.NotificationMessage(signal_name="live", value=pb.Value(content=b"x")))
    recorded, live = vm.sys_signal("recorded"), vm.sys_signal("live")
    assert vm.sys_signal("live") == live  # one handle per name
    assert vm.reveal_next() == recorded
    assert vm.reveal_next() == live
    assert (vm.arrival(recorded), vm.arrival(live)) == (1, 2)
    assert notification_value(vm.result(live)) == b"x"
    # No command is journaled for awaiting a signal.
    assert vm.take_output() == []


def test_suspension_lists_named_signals() -> None:
    vm = new_vm()
    approve = vm.sys_signal("approve")
    sleep = vm.sys_sleep(1_000)
    vm.sys_suspend([approve, sleep])
    out = vm.take_output()
    msg = out[-1][1]
    assert list(msg.waiting_named_signals) == ["approve"]
    assert list(msg.waiting_completions) == [sleep]


def test_eager_state_is_visible_at_once_and_does_not_enter_the_queue() -> None:
    vm = new_vm(state={b"a": b"1"})
    sleep = vm.sys_sleep(1_000)
    vm.notify(*sleep_done(sleep))  # queued, not visible
    got = vm.sys_get_state(b"a")
    keys = vm.sys_state_keys()
    for handle in (got, keys):
        assert vm.has_notification(handle)
        assert vm.is_completed(handle)
    assert notification_value(vm.result(got)) == b"1"
    assert notification_value(vm.result(keys)) == [b"a"]
    assert not vm.is_completed(sleep)
    assert vm.reveal_next() == sleep  # the only thing queued
    assert vm.reveal_next() is None


def test_replayed_eager_state_is_visible_at_once() -> None:
    eager = pb.GetEagerStateCommandMessage(key=b"a", value=pb.Value(content=b"old"))
    eager_keys = pb.GetEagerStateKeysCommandMessage(value=pb.StateKeys(keys=[b"a"]))
    vm = new_vm((m.GET_EAGER_STATE, eager), (m.GET_EAGER_STATE_KEYS, eager_keys), state={b"a": b"new"})
    got, keys = vm.sys_get_state(b"a"), vm.sys_state_keys()
    assert vm.is_completed(got) and vm.is_completed(keys)
    assert vm.has_notification(got) and vm.has_notification(keys)
    assert notification_value(vm.result(got)) == b"old"
    assert notification_value(vm.result(keys)) == [b"a"]
    assert vm.reveal_next() is None


def test_select_on_replay_picks_what_arrived_first_live() -> None:
    # Live: two sleeps, the second one fires first; a select over both picks it.
    live = new_vm()
    s1, s2 = live.sys_sleep(1_000), live.sys_sleep(500)
    live.notify(*sleep_done(s2))
    assert select_first(live, [s1, s2]) == s2
    assert not live.is_completed(s1)
    live.notify(*sleep_done(s1))  # arrives later; the runtime journals it after the first

    # Replay of that journal: [Input, Sleep(1), Sleep(2), SleepCompletion(2), SleepCompletion(1)].
    vm = new_vm(sleep_cmd(1), sleep_cmd(2), sleep_done(2), sleep_done(1))
    r1, r2 = vm.sys_sleep(1_000), vm.sys_sleep(500)
    assert (r1, r2) == (s1, s2)
    assert vm.has_notification(r1) and vm.has_notification(r2)  # both recorded...
    assert not vm.is_completed(r1) and not vm.is_completed(r2)  # ...but neither visible yet
    assert vm.reveal_next() == r2  # revealing one at a time gives 2 first
    assert vm.is_completed(r2)
    assert not vm.is_completed(r1)  # hidden, although recorded: the select sees what it saw live
    # So a select over both picks 2 on replay, as it did live.
    assert select_first(vm, [r1, r2]) == r2
    assert not vm.is_completed(r1)
    # A later await on 1 reveals it.
    assert select_first(vm, [r1]) == r1
    assert notification_value(vm.result(r1)) is None
    assert vm.reveal_next() is None


def test_wait_completed_sees_the_same_set_live_and_on_replay() -> None:
    # Live: three runs; 3 and then 1 complete before the handler awaits any of them.
    live = new_vm()
    h1, h2, h3 = live.sys_run("a"), live.sys_run("b"), live.sys_run("c")
    live.notify(*run_done(h3, b"C"))
    assert select_first(live, [h1, h2, h3]) == h3
    live_done = {h for h in (h1, h2, h3) if live.is_completed(h)}
    live.notify(*run_done(h1, b"A"))
    live.notify(*run_done(h2, b"B"))

    # Replay: every result is in the journal, yet the await sees only what it saw live.
    vm = new_vm(run_cmd(1, "a"), run_cmd(2, "b"), run_cmd(3, "c"), run_done(3, b"C"), run_done(1, b"A"),
                run_done(2, b"B"))
    handles = [vm.sys_run("a"), vm.sys_run("b"), vm.sys_run("c")]
    assert select_first(vm, handles) == h3
    assert {h for h in handles if vm.is_completed(h)} == live_done == {h3}
    # The next awaits reveal the rest in the order they arrived.
    assert select_first(vm, [h1, h2]) == h1
    assert not vm.is_completed(h2)
    assert select_first(vm, [h2]) == h2
