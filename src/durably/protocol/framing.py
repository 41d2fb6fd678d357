"""Framing: every message is an 8-byte big-endian header followed by its protobuf payload.

Header layout: bits 63..48 type id, bit 47 the REQUESTED_ACK flag, bits 31..0 payload length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.message import Message

from durably.protocol.messages import TYPE_OF, decode

ACK_FLAG = 0x8000_0000_0000
HEADER_SIZE = 8
DEFAULT_MESSAGE_SIZE_LIMIT = 32 * 1024 * 1024


class FramingError(ValueError):
    """The byte stream does not hold well-formed protocol frames."""


@dataclass(slots=True)
class Frame:
    """One decoded frame: its type id, whether an ack was requested, and the parsed message."""

    type_id: int
    message: Message
    ack: bool = False


def frame_header(type_id: int, length: int, ack: bool = False) -> bytes:
    """The 8-byte header of a frame whose payload has `length` bytes."""
    return ((type_id << 48) | (ACK_FLAG if ack else 0) | length).to_bytes(8, "big")


def encode_frame(type_id: int, payload: bytes, ack: bool = False) -> bytes:
    """Frame an already-encoded payload."""
    return frame_header(type_id, len(payload), ack) + payload


def encode_message(message: Message, ack: bool = False) -> bytes:
    """Encode and frame a protocol message whose type id follows from its class."""
    return encode_frame(TYPE_OF[type(message)], message.SerializeToString(), ack)


class FrameDecoder:
    """Incremental decoder: feed it chunks as they arrive, iterate over the complete frames."""

    def __init__(self, size_limit: int = DEFAULT_MESSAGE_SIZE_LIMIT) -> None:
        self._buf = bytearray()
        self._size_limit = size_limit

    def feed(self, chunk: bytes) -> Iterator[Frame]:
        """Add bytes and yield every frame that is now complete."""
        if self._buf:
            self._buf += chunk
            data = memoryview(self._buf)
        else:
            # Nothing held back: frames are parsed straight from the chunk (a 100 KB step result is copied
            # once, into its message, not into a buffer and out again); only an incomplete tail is kept.
            data = memoryview(chunk)
        pos, end = 0, len(data)
        try:
            while end - pos >= HEADER_SIZE:
                header = int.from_bytes(data[pos:pos + HEADER_SIZE], "big")
                length = header & 0xFFFF_FFFF
                if length > self._size_limit:
                    raise FramingError(f"message of {length} bytes exceeds the limit of {self._size_limit}")
                if end - pos - HEADER_SIZE < length:
                    break
                type_id = header >> 48
                start = pos + HEADER_SIZE
                pos = start + length
                yield Frame(type_id, decode(type_id, data[start:pos]), bool(header & ACK_FLAG))
        finally:
            data.release()
            if self._buf:
                del self._buf[:pos]  # only when no view of the buffer is alive: bytearray refuses to resize
            elif pos < end:
                self._buf += chunk[pos:] if pos else chunk

    @property
    def pending(self) -> int:
        """Bytes held back because they do not yet form a whole frame."""
        return len(self._buf)
