"""Handlers exercised through a real Restate server (Durably as a Restate deployment)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from counter_app import counter_object

import durably
from durably import RunOptions, TerminalError

# Side effects are counted per process (the deployment runs in this test process).
EFFECTS: Counter[str] = Counter()
AWAKEABLES: dict[str, str] = {}

greeter = durably.Service("InteropGreeter")


@greeter.handler()
async def greet(ctx: durably.Context, name: str) -> dict:
    hello = await ctx.run_typed("hello", lambda: f"Hello {name}!")
    return {"hello": hello, "uuid": str(ctx.uuid()), "random": ctx.random().random(), "time": await ctx.time(),
            "id": ctx.request().id}


@greeter.handler()
async def flaky(ctx: durably.Context, key: str) -> str:
    def fails_twice() -> str:
        EFFECTS[key] += 1
        if EFFECTS[key] < 3:
            raise ConnectionError(f"attempt {EFFECTS[key]} failed")
        return f"ok after {EFFECTS[key]}"

    return await ctx.run_typed("flaky", fails_twice, RunOptions(initial_retry_interval=timedelta(milliseconds=10)))


@greeter.handler()
async def exhausted(ctx: durably.Context, key: str) -> str:
    def always() -> None:
        EFFECTS[key] += 1
        raise ValueError("boom")

    try:
        await ctx.run_typed("write", always, RunOptions(max_attempts=3,
                                                        initial_retry_interval=timedelta(milliseconds=10)))
    except TerminalError as e:
        await ctx.run_typed("compensate", lambda: EFFECTS.update([key + "-compensated"]))
        return f"caught {e.message}"
    return "unreachable"


@greeter.handler()
async def nap(ctx: durably.Context, ms: int) -> str:
    await ctx.sleep(timedelta(milliseconds=ms))
    return "rested"


@greeter.handler()
async def terminal(ctx: durably.Context) -> None:
    raise TerminalError("not allowed", 403)


@greeter.handler()
async def wait_cancel(ctx: durably.Context, key: str) -> str:
    try:
        await ctx.sleep(timedelta(hours=1))
    except TerminalError:
        await ctx.run_typed("undo", lambda: EFFECTS.update([key + "-undo"]))
        raise
    return "slept"


@greeter.handler()
async def first_of(ctx: durably.Context) -> list:
    return await durably.select(never=ctx.sleep(timedelta(days=1)), soon=ctx.sleep(timedelta(milliseconds=100)))


counter = counter_object("InteropCounter", AWAKEABLES)


@counter.handler()
async def call_other(ctx: durably.ObjectContext, other: str) -> int:
    return await ctx.object_call(counter.handlers["add"].fn, other, 10)


signup = durably.Workflow("InteropSignup")


@signup.main()
async def run(ctx: durably.WorkflowContext, email: str) -> str:
    link = await ctx.promise("link", type_hint=str).value()
    return f"{email}:{link}"


@signup.handler()
async def click(ctx: durably.WorkflowSharedContext, link: str) -> None:
    await ctx.promise("link").resolve(link)


signals = durably.Service("InteropSignals")


@signals.handler()
async def wait(ctx: durably.Context) -> list:
    """A named signal raced against a long sleep."""
    return await durably.select(sig=ctx.signal("go", type_hint=str), timeout=ctx.sleep(timedelta(hours=1)))


@signals.handler()
async def wait_caught(ctx: durably.Context) -> str:
    try:
        return await ctx.signal("go", type_hint=str)
    except TerminalError as e:
        return f"rejected {e.status_code} {e.message}"


@signals.handler()
async def resolve(ctx: durably.Context, req: dict) -> None:
    ctx.resolve_signal(req["id"], "go", req["value"])


@signals.handler()
async def reject(ctx: durably.Context, req: dict) -> None:
    ctx.reject_signal(req["id"], "go", req["message"], 451)


@signals.handler()
async def scoped(ctx: durably.Context) -> list:
    """Calls whoami within scope tenant1, limit key a."""
    return await ctx.scope("tenant1").service_call(whoami, limit_key="a")


@signals.handler()
async def whoami(ctx: durably.Context) -> list:
    return [ctx.request().scope, ctx.request().limit_key]


app = durably.app(services=[greeter, counter, signup, signals])
