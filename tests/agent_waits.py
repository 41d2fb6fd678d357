"""Waiting on agent runs in the in-process runtime: tools run on step threads, so settling is not enough."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from durably.testing import TestRuntime


async def wait_for(rt: TestRuntime, ready: Callable[[], bool], what: str) -> None:
    """Poll `ready` while the runtime works, up to 30 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not ready():
        if loop.time() > deadline:
            raise AssertionError(f"no {what} within 30 s")
        await rt.settle()
        await asyncio.sleep(0.005)  # let a step thread have the CPU, then look again
    await rt.settle()


async def wait_awakeable(rt: TestRuntime, awakeables: dict[str, str], key: str) -> str:
    """The awakeable id a tool published under `key`."""
    await wait_for(rt, lambda: key in awakeables, f"awakeable for {key!r}")
    return awakeables[key]


def has_sleep_timer(rt: TestRuntime, inv: str) -> bool:
    """Whether the invocation's durable timer is committed (advancing the clock before would skip it)."""
    assert rt.store is not None
    return any(row[1] == inv and row[2] == "sleep" for row in rt.store.load_timers(2**62))
