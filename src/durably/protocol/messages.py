"""Message type ids of the service protocol and the protobuf classes that carry them.

The frame header carries the type id; the payload is the protobuf encoding of the class below. Every
notification shares one payload shape (`NotificationMessage`), so the type id is what tells a sleep
completion from a run completion.
"""

from __future__ import annotations

from google.protobuf.message import Message

from durably.protocol import protocol_pb2 as pb

# Control messages.
START = 0x0000
SUSPENSION = 0x0001
ERROR = 0x0002
END = 0x0003
COMMAND_ACK = 0x0004
PROPOSE_RUN_COMPLETION = 0x0005
AWAITING_ON = 0x0006
PROPOSE_RUN_COMPLETION_ACK = 0x0007

# Commands.
INPUT = 0x0400
OUTPUT = 0x0401
GET_LAZY_STATE = 0x0402
SET_STATE = 0x0403
CLEAR_STATE = 0x0404
CLEAR_ALL_STATE = 0x0405
GET_LAZY_STATE_KEYS = 0x0406
GET_EAGER_STATE = 0x0407
GET_EAGER_STATE_KEYS = 0x0408
GET_PROMISE = 0x0409
PEEK_PROMISE = 0x040A
COMPLETE_PROMISE = 0x040B
SLEEP = 0x040C
CALL = 0x040D
ONE_WAY_CALL = 0x040E
SEND_SIGNAL = 0x0410
RUN = 0x0411
ATTACH_INVOCATION = 0x0412
GET_INVOCATION_OUTPUT = 0x0413
COMPLETE_AWAKEABLE = 0x0414

# Notifications: a command's type id with the high bit set, plus two without a command.
GET_LAZY_STATE_COMPLETION = 0x8002
GET_LAZY_STATE_KEYS_COMPLETION = 0x8006
GET_PROMISE_COMPLETION = 0x8009
PEEK_PROMISE_COMPLETION = 0x800A
COMPLETE_PROMISE_COMPLETION = 0x800B
SLEEP_COMPLETION = 0x800C
CALL_COMPLETION = 0x800D
CALL_INVOCATION_ID_COMPLETION = 0x800E
RUN_COMPLETION = 0x8011
ATTACH_INVOCATION_COMPLETION = 0x8012
GET_INVOCATION_OUTPUT_COMPLETION = 0x8013
SIGNAL_NOTIFICATION = 0xFBFF

CLASSES: dict[int, type[Message]] = {
    START: pb.StartMessage,
    SUSPENSION: pb.SuspensionMessage,
    ERROR: pb.ErrorMessage,
    END: pb.EndMessage,
    COMMAND_ACK: pb.CommandAckMessage,
    PROPOSE_RUN_COMPLETION: pb.ProposeRunCompletionMessage,
    AWAITING_ON: pb.AwaitingOnMessage,
    PROPOSE_RUN_COMPLETION_ACK: pb.ProposeRunCompletionAckMessage,
    INPUT: pb.InputCommandMessage,
    OUTPUT: pb.OutputCommandMessage,
    GET_LAZY_STATE: pb.GetLazyStateCommandMessage,
    SET_STATE: pb.SetStateCommandMessage,
    CLEAR_STATE: pb.ClearStateCommandMessage,
    CLEAR_ALL_STATE: pb.ClearAllStateCommandMessage,
    GET_LAZY_STATE_KEYS: pb.GetLazyStateKeysCommandMessage,
    GET_EAGER_STATE: pb.GetEagerStateCommandMessage,
    GET_EAGER_STATE_KEYS: pb.GetEagerStateKeysCommandMessage,
    GET_PROMISE: pb.GetPromiseCommandMessage,
    PEEK_PROMISE: pb.PeekPromiseCommandMessage,
    COMPLETE_PROMISE: pb.CompletePromiseCommandMessage,
    SLEEP: pb.SleepCommandMessage,
    CALL: pb.CallCommandMessage,
    ONE_WAY_CALL: pb.OneWayCallCommandMessage,
    SEND_SIGNAL: pb.SendSignalCommandMessage,
    RUN: pb.RunCommandMessage,
    ATTACH_INVOCATION: pb.AttachInvocationCommandMessage,
    GET_INVOCATION_OUTPUT: pb.GetInvocationOutputCommandMessage,
    COMPLETE_AWAKEABLE: pb.CompleteAwakeableCommandMessage,
}

TYPE_OF: dict[type[Message], int] = {cls: t for t, cls in CLASSES.items()}

# Names used in journal-mismatch messages and in the admin API, as Restate spells them.
NAMES: dict[int, str] = {
    INPUT: "input",
    OUTPUT: "output",
    GET_LAZY_STATE: "get state",
    SET_STATE: "set state",
    CLEAR_STATE: "clear state",
    CLEAR_ALL_STATE: "clear all state",
    GET_LAZY_STATE_KEYS: "get state keys",
    GET_EAGER_STATE: "get state",
    GET_EAGER_STATE_KEYS: "get state keys",
    GET_PROMISE: "get promise",
    PEEK_PROMISE: "peek promise",
    COMPLETE_PROMISE: "complete promise",
    SLEEP: "sleep",
    CALL: "call",
    ONE_WAY_CALL: "one way call",
    SEND_SIGNAL: "send signal",
    RUN: "run",
    ATTACH_INVOCATION: "attach invocation",
    GET_INVOCATION_OUTPUT: "get invocation output",
    COMPLETE_AWAKEABLE: "complete awakeable",
    GET_LAZY_STATE_COMPLETION: "get state completion",
    GET_LAZY_STATE_KEYS_COMPLETION: "get state keys completion",
    GET_PROMISE_COMPLETION: "get promise completion",
    PEEK_PROMISE_COMPLETION: "peek promise completion",
    COMPLETE_PROMISE_COMPLETION: "complete promise completion",
    SLEEP_COMPLETION: "sleep completion",
    CALL_COMPLETION: "call completion",
    CALL_INVOCATION_ID_COMPLETION: "call invocation id",
    RUN_COMPLETION: "run completion",
    ATTACH_INVOCATION_COMPLETION: "attach invocation completion",
    GET_INVOCATION_OUTPUT_COMPLETION: "get invocation output completion",
    SIGNAL_NOTIFICATION: "signal",
}


def is_command(type_id: int) -> bool:
    """Whether a type id is a journal command (0x0400-0x7FFF)."""
    return 0x0400 <= type_id < 0x8000


def is_notification(type_id: int) -> bool:
    """Whether a type id is a notification (0x8000-0xFBFF)."""
    return 0x8000 <= type_id <= 0xFBFF


def is_custom_entry(type_id: int) -> bool:
    """Whether a type id is an opaque custom entry (0xFC00-0xFFFF), persisted and replayed as is."""
    return type_id >= 0xFC00


def message_class(type_id: int) -> type[Message]:
    """The protobuf class for a type id; every notification shares `NotificationMessage`."""
    cls = CLASSES.get(type_id)
    if cls is not None:
        return cls
    if is_notification(type_id):
        return pb.NotificationMessage
    raise ValueError(f"unknown message type 0x{type_id:04X}")


def decode(type_id: int, payload: bytes) -> Message:
    """Parse a payload of the given type; raises ValueError on malformed bytes or unknown types."""
    msg = message_class(type_id)()
    try:
        msg.ParseFromString(payload)
    except Exception as e:  # protobuf raises DecodeError, a plain Exception subclass
        raise ValueError(f"malformed payload for message type 0x{type_id:04X}: {e}") from None
    return msg


def type_name(type_id: int) -> str:
    """A readable name for a type id."""
    return NAMES.get(type_id) or f"0x{type_id:04X}"
