"""Issue 20: a loop-stall warning blames the user's frame, never the program that runs the loop (it said
`durably:6 in <module>()`, the console script, when no user code was on the stack)."""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

from durably.server.observe import loop_stalls

OWN_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(loop_stalls.__file__))), "store", "x.py")


def _load(source: str, filename: str) -> dict[str, Any]:
    ns: dict[str, Any] = {"describe": loop_stalls.describe}
    exec(compile(source, filename, "exec"), ns)
    return ns


# Stands for Durably's own code blocking the loop (e.g. a store read), and for a user's handler.
OWN = _load("import sys\ndef blocking_read():\n    return describe(sys._getframe())\n"
            "def callback(fut, fn):\n    fut.set_result(fn())\n", OWN_FILE)
USER = _load("def handler(work):\n    return work()\n", "/home/me/project/app.py")


async def _in_a_loop_callback(fn: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[dict[str, Any]] = loop.create_future()
    loop.call_soon(OWN["callback"], done, fn)  # no frame of this test file on the stack
    return await done


async def test_a_stall_in_durablys_own_code_says_so_instead_of_blaming_the_launcher() -> None:
    got = await _in_a_loop_callback(OWN["blocking_read"])
    assert got["text"] == "in Durably's own code at x.py:3 in blocking_read()", got
    assert "<module>" not in got["text"]


async def test_a_stall_under_a_users_frame_blames_that_frame() -> None:
    got = await _in_a_loop_callback(functools.partial(USER["handler"], OWN["blocking_read"]))
    assert got["code"] == "app.py:2 in handler()", got
    assert got["text"] == "at app.py:2 in handler()", got
