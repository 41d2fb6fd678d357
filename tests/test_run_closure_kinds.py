"""Where a `ctx.run` closure runs: async ones on the event loop, sync ones on a step thread.

The check is on the hot path (every step) and takes a shortcut for plain functions and lambdas; whatever
form the closure has, it must land where the docs say, and its result must come back the same.
"""

from __future__ import annotations

import functools
import threading

import durably
from durably.testing import TestRuntime

svc = durably.Service("Kinds")


def where() -> str:
    return "loop" if threading.current_thread() is threading.main_thread() else "thread"


async def async_where() -> str:
    return where()


class AsyncCallable:
    async def __call__(self) -> str:
        return where()


class SyncCallable:
    def __call__(self) -> str:
        return where()


async def async_with_arg(suffix: str) -> str:
    return where() + suffix


@svc.handler()
async def kinds(ctx: durably.Context) -> list[str]:
    return [
        await ctx.run_typed("def async", async_where),
        await ctx.run_typed("def sync", where),
        await ctx.run_typed("lambda", lambda: where()),
        await ctx.run_typed("async callable object", AsyncCallable()),
        await ctx.run_typed("sync callable object", SyncCallable()),
        await ctx.run_typed("partial of async", functools.partial(async_with_arg, "!")),
        await ctx.run_typed("async method", Holder().method),
        await ctx.run_typed("async with args", async_with_arg, None, "?"),
    ]


class Holder:
    async def method(self) -> str:
        return where()


APP = durably.app(services=[svc])


async def test_each_kind_of_closure_runs_where_it_should() -> None:
    async with TestRuntime(APP) as rt:
        out = await rt.call("Kinds/kinds")
    assert out == ["loop", "thread", "thread", "loop", "thread", "loop!", "loop", "loop?"]
