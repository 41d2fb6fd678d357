"""Tests for durably.protocol.framing: 8-byte big-endian header (type u16, ack bit 47, u32 length) + payload."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.protocol.framing import (
    ACK_FLAG,
    HEADER_SIZE,
    FrameDecoder,
    FramingError,
    encode_frame,
    encode_message,
)


def decode_all(data: bytes, decoder: FrameDecoder | None = None) -> list:
    return list((decoder or FrameDecoder()).feed(data))


def header(type_id: int, length: int, ack: bool = False) -> bytes:
    return ((type_id << 48) | (ACK_FLAG if ack else 0) | length).to_bytes(8, "big")


ROUND_TRIP = [
    pb.StartMessage(id=bytes(range(24)), debug_id="inv_1x", known_entries=3, partial_state=True, key="k1",
                    state_map=[pb.StartMessage.StateEntry(key=b"a", value=b"1")], random_seed=7),
    pb.InputCommandMessage(headers=[pb.Header(key="h", value="v")], value=pb.Value(content=b'"bob"')),
    pb.RunCommandMessage(result_completion_id=1, name="step"),
    pb.ProposeRunCompletionMessage(result_completion_id=2, failure=pb.Failure(code=422, message="nope")),
    pb.SleepCommandMessage(wake_up_time=1_700_000_000_000, result_completion_id=3, name="nap"),
    pb.CallCommandMessage(service_name="S", handler_name="h", parameter=b"\x00\xff", key="k",
                          idempotency_key="idem", invocation_id_notification_idx=4, result_completion_id=5),
    pb.SuspensionMessage(waiting_completions=[4, 2], waiting_signals=[1]),
    pb.ErrorMessage(code=500, message="boom", next_retry_delay=2_500, related_command_index=1),
    pb.EndMessage(),
]


@pytest.mark.parametrize("msg", ROUND_TRIP, ids=lambda msg: type(msg).__name__)
def test_encode_then_decode_round_trips(msg: Message) -> None:
    data = encode_message(msg)
    assert len(data) == HEADER_SIZE + msg.ByteSize()
    [frame] = decode_all(data)
    assert frame.type_id == m.TYPE_OF[type(msg)]
    assert type(frame.message) is type(msg)
    assert frame.message == msg
    assert frame.ack is False


def test_notifications_decode_by_type_id_into_the_shared_shape() -> None:
    note = pb.NotificationMessage(completion_id=1, value=pb.Value(content=b'"done"'))
    frames = decode_all(encode_frame(m.RUN_COMPLETION, note.SerializeToString())
                        + encode_frame(m.SIGNAL_NOTIFICATION, pb.NotificationMessage(signal_id=17).SerializeToString()))
    assert [f.type_id for f in frames] == [m.RUN_COMPLETION, m.SIGNAL_NOTIFICATION]
    assert frames[0].message == note
    assert frames[1].message.signal_id == 17


def test_reference_run_command_bytes() -> None:
    # Reference §2.12: RunCommand 0x0411 {11: 1, 12: "step"}.
    data = encode_message(pb.RunCommandMessage(result_completion_id=1, name="step"))
    payload = b"\x58\x01\x62\x04step"
    assert data[:8] == bytes([0x04, 0x11, 0, 0, 0, 0, 0, len(payload)])
    assert data[8:] == payload


def test_reference_propose_run_completion_and_suspension_bytes() -> None:
    propose = encode_message(pb.ProposeRunCompletionMessage(result_completion_id=1, value=b'"hello bob"'))
    assert propose == bytes.fromhex("000500000000000f") + b'\x08\x01\x72\x0b"hello bob"'
    suspension = encode_message(pb.SuspensionMessage(waiting_completions=[1], waiting_signals=[1]))
    assert suspension == bytes.fromhex("0001000000000006") + b"\x0a\x01\x01\x12\x01\x01"
    assert encode_message(pb.EndMessage()) == bytes.fromhex("0003000000000000")


def test_ack_flag_is_bit_47() -> None:
    msg = pb.ProposeRunCompletionMessage(result_completion_id=1, value=b"x")
    plain, acked = encode_message(msg), encode_message(msg, ack=True)
    assert plain[:8] == bytes.fromhex("0005000000000005")
    assert acked[:8] == bytes.fromhex("0005800000000005")  # V7 flags 0x8000
    assert plain[8:] == acked[8:]
    [frame] = decode_all(acked)
    assert frame.ack is True
    assert frame.type_id == m.PROPOSE_RUN_COMPLETION
    assert frame.message == msg


def test_several_frames_in_one_chunk() -> None:
    msgs = ROUND_TRIP[1:5]
    frames = decode_all(b"".join(encode_message(x) for x in msgs))
    assert [f.message for f in frames] == msgs


def test_stream_split_into_one_byte_chunks() -> None:
    msgs = [*ROUND_TRIP, pb.RunCommandMessage(result_completion_id=9, name="last")]
    data = b"".join(encode_message(x, ack=i % 2 == 1) for i, x in enumerate(msgs))
    decoder = FrameDecoder()
    frames = []
    for i in range(len(data)):
        frames.extend(decoder.feed(data[i : i + 1]))
    assert [f.message for f in frames] == msgs
    assert [f.ack for f in frames] == [i % 2 == 1 for i in range(len(msgs))]
    assert decoder.pending == 0


def test_partial_frame_is_held_back_until_complete() -> None:
    data = encode_message(pb.RunCommandMessage(result_completion_id=1, name="step"))
    decoder = FrameDecoder()
    assert list(decoder.feed(data[:5])) == []  # not even a whole header
    assert list(decoder.feed(data[5:-1])) == []  # header, but not the whole payload
    assert decoder.pending == len(data) - 1
    [frame] = decoder.feed(data[-1:])
    assert frame.message.name == "step"
    assert decoder.pending == 0


def test_oversized_length_is_rejected_as_soon_as_the_header_is_read() -> None:
    decoder = FrameDecoder(size_limit=16)
    with pytest.raises(FramingError, match="17 bytes exceeds the limit of 16"):
        list(decoder.feed(header(m.RUN, 17)))  # no payload needed to refuse it


def test_length_at_the_limit_is_accepted() -> None:
    payload = pb.RunCommandMessage(result_completion_id=1, name="x" * 10).SerializeToString()
    decoder = FrameDecoder(size_limit=len(payload))
    [frame] = decoder.feed(encode_frame(m.RUN, payload))
    assert frame.message.name == "x" * 10


def test_default_limit_rejects_a_huge_declared_length() -> None:
    with pytest.raises(FramingError):
        list(FrameDecoder().feed(header(m.RUN, 0xFFFF_FFFF)))


def test_framing_error_is_a_value_error() -> None:
    assert issubclass(FramingError, ValueError)


def test_garbage_payload_is_a_value_error() -> None:
    garbage = b"\xff\xff\xff\xff"
    with pytest.raises(ValueError, match="malformed payload for message type 0x0411"):
        list(FrameDecoder().feed(encode_frame(m.RUN, garbage)))


@pytest.mark.parametrize("type_id", [0x0100, 0x03FF, 0x0008])
def test_unknown_control_type_is_a_value_error(type_id: int) -> None:
    with pytest.raises(ValueError, match=f"unknown message type 0x{type_id:04X}"):
        list(FrameDecoder().feed(encode_frame(type_id, b"")))


def test_reserved_header_bits_do_not_change_type_or_length() -> None:
    payload = pb.RunCommandMessage(result_completion_id=1, name="step").SerializeToString()
    raw = ((m.RUN << 48) | (0x1234 << 32) | len(payload)).to_bytes(8, "big") + payload
    [frame] = decode_all(raw)
    assert frame.type_id == m.RUN
    assert frame.ack is False
    assert frame.message.name == "step"


@pytest.mark.parametrize("cuts", [(), (3,), (8,), (9, 50_000), (102_410,), (102_420, 102_430), (60_000, 160_000)])
def test_large_frames_cut_anywhere_decode_whole(cuts: tuple[int, ...]) -> None:
    """Frames are parsed straight from a chunk when nothing is held back and from the buffer when something is:
    a 100 KB proposal, a small frame and another 100 KB one decode the same wherever the chunks end."""
    big = [pb.ProposeRunCompletionMessage(result_completion_id=i, value=bytes([i]) * 102_400) for i in (1, 3)]
    small = pb.RunCommandMessage(result_completion_id=2, name="step")
    data = encode_message(big[0], ack=True) + encode_message(small) + encode_message(big[1])
    decoder = FrameDecoder()
    frames = []
    for lo, hi in zip((0, *cuts), (*cuts, len(data)), strict=True):
        frames.extend(decoder.feed(data[lo:hi]))
    assert [f.message for f in frames] == [big[0], small, big[1]]
    assert [f.ack for f in frames] == [True, False, False]
    assert decoder.pending == 0


def test_a_good_frame_before_garbage_in_the_same_chunk_is_delivered_first() -> None:
    decoder = FrameDecoder()
    data = encode_message(pb.EndMessage()) + header(m.RUN, 3) + b"\xff\xff\xff" + header(m.END, 0)[:4]
    got = []
    with pytest.raises(ValueError):
        for frame in decoder.feed(data):
            got.append(frame.type_id)
    assert got == [m.END]
