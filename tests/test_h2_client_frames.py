"""The remote invoker's HTTP/2 client (server/remote/h2client.py): what it changes in how frames are handled
stays invisible: a DATA frame's repr reads exactly as hyperframe writes it."""

from __future__ import annotations

import hyperframe.frame

from durably.server.remote.h2client import data_frame_body_repr


def hyperframe_repr_body(frame: hyperframe.frame.DataFrame) -> str:
    """What hyperframe itself shows for a frame's body: its generic repr of the serialized body."""
    return hyperframe.frame.Frame._body_repr(frame)


def test_a_data_frames_repr_is_hyperframes_own_text() -> None:
    frames = []
    for size in (0, 1, 9, 10, 11, 100, 100 * 1024):
        frames.append(hyperframe.frame.DataFrame(1, bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)))
        for pad in (0, 3, 20):
            padded = hyperframe.frame.DataFrame(3, b"\xab" * size, flags=["PADDED"])
            padded.pad_length = pad
            frames.append(padded)
    frames.append(hyperframe.frame.DataFrame(5, memoryview(b"0123456789abcdef")))
    for frame in frames:
        assert data_frame_body_repr(frame) == hyperframe_repr_body(frame), (len(frame.data), frame.flags)
        assert repr(frame).endswith(": " + hyperframe_repr_body(frame))
