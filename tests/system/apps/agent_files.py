"""What the agent crash apps share: they talk to the test only through files in a work directory.

- `model_calls.log`: one line `<tool results it saw> <pid>` per request the scripted model answers.
- `effects.log`: one line per side effect of a tool (`record <pid>`).
- `slow-started.log`: the second tool started (`<pid>`); it then waits for the file `gate`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

GATE_POLL_S = 0.005
GATE_WAIT_S = 60.0


def append_line(path: Path, line: str) -> None:
    """Append one line and make it durable before returning (the test reads it after a SIGKILL)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def model_called(directory: str, seen: int) -> None:
    append_line(Path(directory) / "model_calls.log", f"{seen} {os.getpid()}")


def record(directory: str) -> str:
    """The first tool's side effect."""
    append_line(Path(directory) / "effects.log", f"record {os.getpid()}")
    return "recorded"


def slow(directory: str) -> str:
    """The second tool's step: says it started, then waits until the test opens the gate."""
    d = Path(directory)
    append_line(d / "slow-started.log", str(os.getpid()))
    deadline = time.monotonic() + GATE_WAIT_S
    # The app's own wait (not test synchronisation): the test creates the gate to release it.
    while not (d / "gate").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("gate never opened")
        time.sleep(GATE_POLL_S)
    return "done"
