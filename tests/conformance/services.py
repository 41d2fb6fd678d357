"""Services written to the contracts of Restate's SDK conformance suite (restatedev/e2e `sdk-tests`).

Service and handler names and JSON shapes follow the suite's contracts so its scenarios can drive them
over HTTP; the code is Durably's own. Counters of executions live in module dicts keyed by object key,
since the suite observes them through return values.
"""

from __future__ import annotations

import os
from collections import Counter as _Counter
from datetime import timedelta
from typing import Any

import durably
from durably import RunOptions, TerminalError

# ---- Counter ----

counter = durably.VirtualObject("Counter")
COUNTER_KEY = "counter"


@counter.handler()
async def reset(ctx: durably.ObjectContext) -> None:
    ctx.clear(COUNTER_KEY)


@counter.handler()
async def get(ctx: durably.ObjectContext) -> int:
    return await ctx.get(COUNTER_KEY, type_hint=int) or 0


@counter.handler()
async def add(ctx: durably.ObjectContext, addend: int) -> dict:
    old = await ctx.get(COUNTER_KEY, type_hint=int) or 0
    ctx.set(COUNTER_KEY, old + addend)
    return {"oldValue": old, "newValue": old + addend}


@counter.handler(name="addThenFail")
async def add_then_fail(ctx: durably.ObjectContext, addend: int) -> None:
    old = await ctx.get(COUNTER_KEY, type_hint=int) or 0
    ctx.set(COUNTER_KEY, old + addend)
    raise TerminalError(ctx.key())


# ---- Proxy ----

proxy = durably.Service("Proxy")


def _proxy_call(ctx: durably.Context, req: dict) -> Any:
    return ctx.generic_call(req["serviceName"], req["handlerName"], bytes(req["message"]),
                            req.get("virtualObjectKey"), idempotency_key=req.get("idempotencyKey"),
                            scope=req.get("scope"), limit_key=req.get("limitKey"))


def _proxy_send(ctx: durably.Context, req: dict) -> Any:
    delay = req.get("delayMillis")
    return ctx.generic_send(req["serviceName"], req["handlerName"], bytes(req["message"]),
                            req.get("virtualObjectKey"),
                            send_delay=timedelta(milliseconds=delay) if delay is not None else None,
                            idempotency_key=req.get("idempotencyKey"), scope=req.get("scope"),
                            limit_key=req.get("limitKey"))


@proxy.handler()
async def call(ctx: durably.Context, req: dict) -> list[int]:
    return list(await _proxy_call(ctx, req))


@proxy.handler(name="oneWayCall")
async def one_way_call(ctx: durably.Context, req: dict) -> str:
    return await _proxy_send(ctx, req).invocation_id()


@proxy.handler(name="manyCalls")
async def many_calls(ctx: durably.Context, requests: list[dict]) -> None:
    pending = []
    for item in requests:
        if item["oneWayCall"]:
            _proxy_send(ctx, item["proxyRequest"])
        else:
            fut = _proxy_call(ctx, item["proxyRequest"])
            if item["awaitAtTheEnd"]:
                pending.append(fut)
    for fut in pending:
        await fut


# ---- TestUtilsService ----

utils = durably.Service("TestUtilsService")


@utils.handler()
async def echo(ctx: durably.Context, text: str) -> str:
    return text


@utils.handler(name="uppercaseEcho")
async def uppercase_echo(ctx: durably.Context, text: str) -> str:
    return text.upper()


@utils.handler(name="echoHeaders")
async def echo_headers(ctx: durably.Context) -> dict:
    return ctx.request().headers


@utils.handler(name="rawEcho", accept="*/*", content_type="application/octet-stream",
               input_serde=durably.BytesSerde(), output_serde=durably.BytesSerde())
async def raw_echo(ctx: durably.Context, data: bytes) -> bytes:
    return data


@utils.handler(name="sleepConcurrently")
async def sleep_concurrently(ctx: durably.Context, millis: list[int]) -> None:
    await durably.gather(*(ctx.sleep(timedelta(milliseconds=ms)) for ms in millis))


@utils.handler(name="countExecutedSideEffects")
async def count_executed_side_effects(ctx: durably.Context, increments: int) -> int:
    executed = 0

    def effect() -> None:
        nonlocal executed
        executed += 1

    for _ in range(increments):
        await ctx.run_typed("count", effect)
    return executed


@utils.handler(name="cancelInvocation")
async def cancel_invocation(ctx: durably.Context, invocation_id: str) -> None:
    ctx.cancel_invocation(invocation_id)


@utils.handler(name="resolveSignal")
async def resolve_signal(ctx: durably.Context, req: dict) -> None:
    ctx.resolve_signal(req["invocationId"], req["signalName"], req["value"])


@utils.handler(name="rejectSignal")
async def reject_signal(ctx: durably.Context, req: dict) -> None:
    ctx.reject_signal(req["invocationId"], req["signalName"], req["reason"])


# ---- AwakeableHolder ----

holder = durably.VirtualObject("AwakeableHolder")


@holder.handler()
async def hold(ctx: durably.ObjectContext, awakeable_id: str) -> None:
    ctx.set("id", awakeable_id)


@holder.handler(name="hasAwakeable")
async def has_awakeable(ctx: durably.ObjectContext) -> bool:
    return await ctx.get("id", type_hint=str) is not None


@holder.handler()
async def unlock(ctx: durably.ObjectContext, payload: str) -> None:
    awakeable_id = await ctx.get("id", type_hint=str)
    if awakeable_id is None:
        raise TerminalError("No awakeable is registered")
    ctx.resolve_awakeable(awakeable_id, payload)


# ---- CancelTest ----

cancel_runner = durably.VirtualObject("CancelTestRunner")
cancel_blocking = durably.VirtualObject("CancelTestBlockingService")


@cancel_runner.handler(name="startTest")
async def start_test(ctx: durably.ObjectContext, operation: str) -> None:
    try:
        await ctx.object_call(block, key=ctx.key(), arg=operation)
    except TerminalError as e:
        if e.status_code != 409:
            raise
        ctx.set("state", True)


@cancel_runner.handler(name="verifyTest")
async def verify_test(ctx: durably.ObjectContext) -> bool:
    return bool(await ctx.get("state", type_hint=bool))


@cancel_blocking.handler()
async def block(ctx: durably.ObjectContext, operation: str) -> None:
    awakeable_id, fut = ctx.awakeable(type_hint=str)
    await ctx.object_call(hold, key=ctx.key(), arg=awakeable_id)
    await fut
    if operation == "CALL":
        await ctx.object_call(block, key=ctx.key(), arg=operation)
    elif operation == "SLEEP":
        await ctx.sleep(timedelta(days=1024))
    elif operation == "AWAKEABLE":
        _, never = ctx.awakeable()
        await never


@cancel_blocking.handler(name="isUnlocked")
async def cancel_is_unlocked(ctx: durably.ObjectContext) -> None:
    return None


# ---- KillTest ----

kill_runner = durably.VirtualObject("KillTestRunner")
kill_singleton = durably.VirtualObject("KillTestSingleton")


@kill_runner.handler(name="startCallTree")
async def start_call_tree(ctx: durably.ObjectContext) -> None:
    await ctx.object_call(recursive_call, key=ctx.key(), arg=None)


@kill_singleton.handler(name="recursiveCall")
async def recursive_call(ctx: durably.ObjectContext) -> None:
    awakeable_id, fut = ctx.awakeable()
    ctx.object_send(hold, key=ctx.key(), arg=awakeable_id)
    await fut
    await ctx.object_call(recursive_call, key=ctx.key(), arg=None)


@kill_singleton.handler(name="isUnlocked")
async def kill_is_unlocked(ctx: durably.ObjectContext) -> None:
    return None


# ---- Failing ----

failing = durably.VirtualObject("Failing")
ATTEMPTS: _Counter[str] = _Counter()


def _terminal(req: dict) -> TerminalError:
    return TerminalError(req["errorMessage"], 500, req.get("metadata"))


@failing.handler(name="terminallyFailingCall")
async def terminally_failing_call(ctx: durably.ObjectContext, req: dict) -> None:
    raise _terminal(req)


@failing.handler(name="callTerminallyFailingCall")
async def call_terminally_failing_call(ctx: durably.ObjectContext, req: dict) -> str:
    await ctx.object_call(terminally_failing_call, key=str(ctx.uuid()), arg=req)
    raise RuntimeError("unreachable: the call above fails terminally")


@failing.handler(name="failingCallWithEventualSuccess")
async def failing_call_with_eventual_success(ctx: durably.ObjectContext) -> int:
    ATTEMPTS[ctx.key()] += 1
    if ATTEMPTS[ctx.key()] >= 4:
        return ATTEMPTS[ctx.key()]
    raise ValueError(f"Failed at attempt: {ATTEMPTS[ctx.key()]}")


@failing.handler(name="terminallyFailingSideEffect")
async def terminally_failing_side_effect(ctx: durably.ObjectContext, req: dict) -> None:
    def effect() -> None:
        raise _terminal(req)

    await ctx.run_typed("sideEffect", effect)
    raise RuntimeError("unreachable: the run above fails terminally")


@failing.handler(name="sideEffectSucceedsAfterGivenAttempts")
async def side_effect_succeeds_after(ctx: durably.ObjectContext, minimum_attempts: int) -> int:
    key = "succeeds-" + ctx.key()

    def effect() -> int:
        ATTEMPTS[key] += 1
        if ATTEMPTS[key] < minimum_attempts:
            raise ConnectionError(f"attempt {ATTEMPTS[key]} failed")
        return ATTEMPTS[key]

    return await ctx.run_typed("sideEffect", effect,
                               RunOptions(initial_retry_interval=timedelta(milliseconds=1)))


@failing.handler(name="sideEffectFailsAfterGivenAttempts")
async def side_effect_fails_after(ctx: durably.ObjectContext, max_retry_count: int) -> int:
    key = "fails-" + ctx.key()

    def effect() -> None:
        ATTEMPTS[key] += 1
        raise ConnectionError(f"attempt {ATTEMPTS[key]} failed")

    try:
        await ctx.run_typed("sideEffect", effect, RunOptions(max_attempts=max_retry_count,
                                                              initial_retry_interval=timedelta(milliseconds=1)))
    except TerminalError:
        return ATTEMPTS[key]
    raise RuntimeError("unreachable: the run always fails")


# ---- NonDeterministic ----

nondet = durably.VirtualObject("NonDeterministic")
INVOKE_COUNTS: _Counter[str] = _Counter()


def _left(ctx: durably.ObjectContext) -> bool:
    """Alternates between attempts: the bug the scenario wants caught."""
    INVOKE_COUNTS[ctx.key()] += 1
    return INVOKE_COUNTS[ctx.key()] % 2 == 1


def _increment(ctx: durably.ObjectContext) -> None:
    ctx.object_send(add, key=ctx.key(), arg=1)


@nondet.handler(name="setDifferentKey")
async def set_different_key(ctx: durably.ObjectContext) -> None:
    ctx.set("a" if _left(ctx) else "b", "my-state")
    await ctx.sleep(timedelta(milliseconds=100))
    _increment(ctx)


@nondet.handler(name="backgroundInvokeWithDifferentTargets")
async def background_invoke_with_different_targets(ctx: durably.ObjectContext) -> None:
    if _left(ctx):
        ctx.object_send(get, key="abc", arg=None)
    else:
        ctx.object_send(reset, key="abc", arg=None)
    await ctx.sleep(timedelta(milliseconds=100))
    _increment(ctx)


@nondet.handler(name="callDifferentMethod")
async def call_different_method(ctx: durably.ObjectContext) -> None:
    if _left(ctx):
        await ctx.object_call(get, key="abc", arg=None)
    else:
        await ctx.object_call(reset, key="abc", arg=None)
    await ctx.sleep(timedelta(milliseconds=100))
    _increment(ctx)


@nondet.handler(name="eitherSleepOrCall")
async def either_sleep_or_call(ctx: durably.ObjectContext) -> None:
    if _left(ctx):
        await ctx.sleep(timedelta(milliseconds=100))
    else:
        await ctx.object_call(get, key="abc", arg=None)
    await ctx.sleep(timedelta(milliseconds=100))
    _increment(ctx)


# ---- ListObject, MapObject ----

list_object = durably.VirtualObject("ListObject")


@list_object.handler(name="append")
async def list_append(ctx: durably.ObjectContext, value: str) -> None:
    ctx.set("list", (await ctx.get("list", type_hint=list) or []) + [value])


@list_object.handler(name="get")
async def list_get(ctx: durably.ObjectContext) -> list[str]:
    return await ctx.get("list", type_hint=list) or []


@list_object.handler(name="clear")
async def list_clear(ctx: durably.ObjectContext) -> list[str]:
    items = await ctx.get("list", type_hint=list) or []
    ctx.clear("list")
    return items


map_object = durably.VirtualObject("MapObject")


@map_object.handler(name="set")
async def map_set(ctx: durably.ObjectContext, entry: dict) -> None:
    ctx.set(entry["key"], entry["value"])


@map_object.handler(name="get")
async def map_get(ctx: durably.ObjectContext, key: str) -> str:
    return await ctx.get(key, type_hint=str) or ""


@map_object.handler(name="clearAll")
async def map_clear_all(ctx: durably.ObjectContext) -> list[dict]:
    entries = []
    for key in await ctx.state_keys():
        entries.append({"key": key, "value": await ctx.get(key, type_hint=str)})
        ctx.clear(key)
    return entries


# ---- BlockAndWaitWorkflow ----

block_and_wait = durably.Workflow("BlockAndWaitWorkflow")


@block_and_wait.main()
async def run(ctx: durably.WorkflowContext, text: str) -> str:
    ctx.set("my-state", text)
    output = await ctx.promise("durable-promise", type_hint=str).value()
    if await ctx.promise("durable-promise", type_hint=str).peek() is None:
        raise TerminalError("Durable promise should be completed")
    return output


@block_and_wait.handler()
async def unblock(ctx: durably.WorkflowSharedContext, output: str) -> None:
    await ctx.promise("durable-promise", type_hint=str).resolve(output)


@block_and_wait.handler(name="getState")
async def get_state(ctx: durably.WorkflowSharedContext) -> str | None:
    return await ctx.get("my-state", type_hint=str)


# ---- VirtualObjectCommandInterpreter ----

interpreter = durably.VirtualObject("VirtualObjectCommandInterpreter")


@interpreter.handler(name="getResults", kind="shared")
async def get_results(ctx: durably.ObjectSharedContext) -> list[str]:
    return await ctx.get("results", type_hint=list) or []


@interpreter.handler(name="hasAwakeable", kind="shared")
async def interpreter_has_awakeable(ctx: durably.ObjectSharedContext, awakeable_key: str) -> bool:
    return bool(await ctx.get("awk-" + awakeable_key, type_hint=str))


@interpreter.handler(name="resolveAwakeable", kind="shared")
async def interpreter_resolve(ctx: durably.ObjectSharedContext, req: dict) -> None:
    awakeable_id = await ctx.get("awk-" + req["awakeableKey"], type_hint=str)
    if not awakeable_id:
        raise TerminalError("No awakeable is registered")
    ctx.resolve_awakeable(awakeable_id, req["value"])


@interpreter.handler(name="rejectAwakeable", kind="shared")
async def interpreter_reject(ctx: durably.ObjectSharedContext, req: dict) -> None:
    awakeable_id = await ctx.get("awk-" + req["awakeableKey"], type_hint=str)
    if not awakeable_id:
        raise TerminalError("No awakeable is registered")
    ctx.reject_awakeable(awakeable_id, req["reason"])


_SLEEP = "sleep"  # what a completed sleep yields in the interpreter's results


def _awaitable(ctx: durably.ObjectContext, cmd: dict) -> tuple[Any, bool]:
    """(future, is_sleep) for an awaitable command."""
    kind = cmd["type"]
    if kind == "createAwakeable":
        awakeable_id, fut = ctx.awakeable(type_hint=str)
        ctx.set("awk-" + cmd["awakeableKey"], awakeable_id)
        return fut, False
    if kind == "sleep":
        return ctx.sleep(timedelta(milliseconds=cmd["timeoutMillis"])), True
    if kind == "runThrowTerminalException":
        reason = cmd["reason"]

        def fail() -> str:
            raise TerminalError(reason)

        return ctx.run_typed("run should fail command", fail), False
    if kind == "createSignal":
        return ctx.signal(cmd.get("signalName") or cmd["name"], type_hint=str), False
    raise TerminalError(f"unknown awaitable command {kind!r}", 400)


async def _result(fut: Any, is_sleep: bool) -> str:
    value = await fut
    return _SLEEP if is_sleep else value


@interpreter.handler(name="interpretCommands")
async def interpret_commands(ctx: durably.ObjectContext, req: dict) -> str:
    result = ""
    for cmd in req["commands"]:
        kind = cmd["type"]
        if kind == "awaitAwakeableOrTimeout":
            awakeable_id, fut = ctx.awakeable(type_hint=str)
            ctx.set("awk-" + cmd["awakeableKey"], awakeable_id)
            match await durably.select(awakeable=fut, timeout=ctx.sleep(timedelta(milliseconds=cmd["timeoutMillis"]))):
                case ["awakeable", value]:
                    result = value
                case _:
                    raise TerminalError("await-timeout", 500)
        elif kind in ("resolveAwakeable", "rejectAwakeable"):
            awakeable_id = await ctx.get("awk-" + cmd["awakeableKey"], type_hint=str)
            if not awakeable_id:
                raise TerminalError("No awakeable is registered")
            if kind == "resolveAwakeable":
                ctx.resolve_awakeable(awakeable_id, cmd["value"])
            else:
                ctx.reject_awakeable(awakeable_id, cmd["reason"])
            result = ""
        elif kind == "getEnvVariable":
            result = await ctx.run_typed("get_env", os.environ.get, None, cmd["envName"], "")
        elif kind == "awaitOne":
            result = await _result(*_awaitable(ctx, cmd["command"]))
        elif kind == "awaitAny":
            pairs = [_awaitable(ctx, c) for c in cmd["commands"]]
            done, _ = await durably.wait_completed(*(f for f, _ in pairs))
            result = await _result(done[0], next(s for f, s in pairs if f is done[0]))
        elif kind == "awaitAnySuccessful":
            pairs = [_awaitable(ctx, c) for c in cmd["commands"]]
            async for fut in durably.as_completed(*(f for f, _ in pairs)):
                try:
                    result = await _result(fut, next(s for f, s in pairs if f is fut))
                    break
                except TerminalError:
                    continue
        elif kind == "awaitAllCompleted":
            pairs = [_awaitable(ctx, c) for c in cmd["commands"]]
            await durably.gather(*(f for f, _ in pairs))
            result = ""
        else:
            raise TerminalError(f"unknown command {kind!r}", 400)
        results = await ctx.get("results", type_hint=list) or []
        ctx.set("results", [*results, result])
    return result


app = durably.app(services=[counter, proxy, utils, holder, cancel_runner, cancel_blocking, kill_runner,
                            kill_singleton, failing, nondet, list_object, map_object, block_and_wait, interpreter])
