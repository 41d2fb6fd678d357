"""The limit on one journal entry.

Every journal entry is held in memory while its invocation runs, written in one SQLite row and sent in
one frame to a remote deployment, so one entry may not grow without bound. A `ctx.run` result over the
limit fails the step with a terminal error (the handler sees TerminalError at its await, as for any failed
step); any other command over it fails the attempt, which is retried per the invocation's policy.
"""

from __future__ import annotations

from google.protobuf.message import Message

from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb

DEFAULT_ENTRY_LIMIT = 32 * 1024 * 1024
# The code of the step failure; 500 like any TerminalError that names no code of its own.
ENTRY_TOO_LARGE_CODE = 500


def size_text(n: int) -> str:
    """A byte count for people: `200.0 MiB (209715200 bytes)`."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


def run_result_too_large(msg: pb.ProposeRunCompletionMessage, name: str, limit: int) -> str | None:
    """Why a proposed run result may not be journaled, or None if it fits."""
    if msg.WhichOneof("result") != "value" or len(msg.value) <= limit:
        return None
    what = f"run '{name}'" if name else "a run"
    return (f"the result of {what} is {size_text(len(msg.value))}, over the journal entry limit of "
            f"{size_text(limit)}: return a smaller value (e.g. store the data elsewhere and journal a "
            "reference), or raise the limit with --journal-entry-limit")


def command_too_large(type_id: int, msg: Message, limit: int) -> str | None:
    """Why a command may not be journaled, or None if it fits."""
    size = msg.ByteSize()
    if size <= limit:
        return None
    return (f"the {m.type_name(type_id)} command is {size_text(size)}, over the journal entry limit of "
            f"{size_text(limit)} (raise it with --journal-entry-limit)")
