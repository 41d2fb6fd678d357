"""Waiting on several durable futures at once, deterministically.

Use these instead of `asyncio.gather`/`asyncio.wait` on ctx futures: notifications become visible in the
order they were journaled, so a replay picks the same winner as the first execution did.

```python
match await durably.select(result=ctx.run_typed("llm", call_llm), timeout=ctx.sleep(timedelta(seconds=30))):
    case ["result", answer]: ...
    case ["timeout", _]: ...
```
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from durably.sdk.context import DurableFuture, context_of, waiting_attempt
from durably.sdk.errors import TerminalError


def _attempt_of(futures: tuple[DurableFuture[Any], ...]) -> Any:
    if not futures:
        raise TerminalError("a combinator needs at least one future")
    ctx = None
    for f in futures:
        if not isinstance(f, DurableFuture):
            raise TerminalError(
                f"durably combinators take futures from the context (ctx.run, ctx.sleep, calls, awakeables), "
                f"not {type(f).__name__}")
        if ctx is None:
            ctx = context_of(f)
        elif context_of(f) is not ctx:
            raise TerminalError("all futures of a combinator must come from the same context")
    return waiting_attempt(futures[0], "wait on durable futures")


async def wait_completed(*futures: DurableFuture[Any]) -> tuple[list[DurableFuture[Any]], list[DurableFuture[Any]]]:
    """Wait until at least one future is completed; returns (completed, not completed)."""
    attempt = _attempt_of(futures)
    if not any(f.is_completed() for f in futures):
        await attempt.wait_for([f.handle for f in futures])
    done = sorted((f for f in futures if f.is_completed()), key=lambda f: attempt.vm.arrival(f.handle))
    return done, [f for f in futures if not f.is_completed()]


async def gather(*futures: DurableFuture[Any]) -> list[DurableFuture[Any]]:
    """Wait until every future is completed; returns the futures (await each for its value or error)."""
    attempt = _attempt_of(futures)
    if not all(f.is_completed() for f in futures):
        await attempt.wait_for([f.handle for f in futures], all_of=True)
    return list(futures)


async def as_completed(*futures: DurableFuture[Any]) -> AsyncIterator[DurableFuture[Any]]:
    """Yield the futures in the order they complete."""
    remaining = list(futures)
    while remaining:
        done, remaining = await wait_completed(*remaining)
        for f in done:
            yield f


async def select(**futures: DurableFuture[Any]) -> list[Any]:
    """Wait for the first future to complete; returns `[name, value]` (raises if that future failed)."""
    if not futures:
        raise TerminalError("select needs at least one future")
    done, _ = await wait_completed(*futures.values())
    winner = done[0]
    name = next(n for n, f in futures.items() if f is winner)
    return [name, await winner]
