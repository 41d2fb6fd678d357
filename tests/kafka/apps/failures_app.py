"""The app of the handler-failure tests: a Kafka-fed object whose records can fail, retryably or for good.

`Ledger/apply` (virtual object) takes `{"n": int, "until": path?, "terminal": bool?}`:

- with `until`, it raises a retryable error as long as no file exists at that path (the test creates it to
  "fix" the handler), before touching state, so the key's invocation keeps being retried;
- with `terminal`, it fails with a `TerminalError` (no retry);
- otherwise it appends `n` to the key's `applied` list.
"""

from __future__ import annotations

import os

import durably

ledger = durably.VirtualObject("Ledger")


@ledger.handler()
async def apply(ctx: durably.ObjectContext, entry: dict) -> int:
    until = entry.get("until")
    if until and not os.path.exists(until):  # noqa: ASYNC240 (a stat of a local flag file)
        raise RuntimeError(f"downstream not ready for entry {entry['n']}")
    if entry.get("terminal"):
        raise durably.TerminalError(f"entry {entry['n']} rejected: malformed amount", status_code=422)
    applied = await ctx.get("applied") or []
    applied.append(entry["n"])
    ctx.set("applied", applied)
    return len(applied)


@ledger.handler(kind="shared")
async def applied(ctx: durably.ObjectSharedContext) -> list[int]:
    return await ctx.get("applied") or []


app = durably.app(services=[ledger])
