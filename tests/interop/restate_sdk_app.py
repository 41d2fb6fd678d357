"""Services written with the real restate-sdk (1.2.0 and 1.3.0), run on Durably in the interop tests.

Served by hypercorn from its own virtual environment (`.interop/sdk-venv` for 1.2.0, `.interop/sdk13-venv`
for 1.3.0); side effects go to the file named by RESTATE_APP_EFFECTS so the tests can count them. Services
that need 1.3.0 (`state_preload`) are added only there.
"""

import importlib.metadata
import os
from datetime import timedelta

import restate
from restate import RunOptions, TerminalError

EFFECTS = os.environ.get("RESTATE_APP_EFFECTS", "/dev/null")


def effect(line: str) -> None:
    with open(EFFECTS, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def count(line: str) -> int:
    try:
        with open(EFFECTS) as f:
            return sum(1 for x in f if x.strip() == line)
    except FileNotFoundError:
        return 0


greeter = restate.Service("SdkGreeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> dict:
    hello = await ctx.run_typed("hello", lambda: f"Hello {name}!")
    return {"hello": hello, "uuid": str(ctx.uuid()), "random": ctx.random().random(), "time": await ctx.time()}


@greeter.handler()
async def flaky(ctx: restate.Context, key: str) -> str:
    def fails_twice() -> str:
        effect(key)
        n = count(key)
        if n < 3:
            raise ConnectionError(f"attempt {n} failed")
        return f"ok after {n}"

    return await ctx.run_typed("flaky", fails_twice, RunOptions(initial_retry_interval=timedelta(milliseconds=10)))


@greeter.handler()
async def exhausted(ctx: restate.Context, key: str) -> str:
    def always() -> None:
        effect(key)
        raise ValueError("boom")

    try:
        opts = RunOptions(max_attempts=3, initial_retry_interval=timedelta(milliseconds=10))
        await ctx.run_typed("write", always, opts)
    except TerminalError as e:
        await ctx.run_typed("compensate", lambda: effect(key + "-compensated"))
        return f"caught {e.message}"
    return "unreachable"


@greeter.handler()
async def keep(ctx: restate.Context, text: str) -> str:
    """One step whose result is the (large) input: it travels in Start, in the proposal and in the output."""

    async def same() -> str:
        return text

    return await ctx.run_typed("keep", same)


@greeter.handler()
async def nap(ctx: restate.Context, ms: int) -> str:
    await ctx.sleep(timedelta(milliseconds=ms))
    return "rested"


@greeter.handler()
async def steps(ctx: restate.Context, spec: dict) -> list:
    out = []
    for i in range(spec["n"]):
        def step(i: int = i) -> str:
            effect(f"{spec['key']} step {i}")
            if i == spec.get("block_at"):
                gate = spec["gate"]
                while not os.path.exists(gate):
                    import time
                    time.sleep(0.01)
            return f"v{i}"
        out.append(await ctx.run_typed(f"step {i}", step))
    return out


@greeter.handler()
async def wait_cancel(ctx: restate.Context, key: str) -> str:
    try:
        await ctx.sleep(timedelta(hours=1))
    except TerminalError:
        await ctx.run_typed("undo", lambda: effect(key + "-undo"))
        raise
    return "slept"


@greeter.handler()
async def await_awakeable(ctx: restate.Context, key: str) -> str:
    aw_id, fut = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", lambda: effect(f"{key} {aw_id}"))
    return await fut


counter = restate.VirtualObject("SdkCounter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("value") or 0) + delta
    ctx.set("value", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("value") or 0


signup = restate.Workflow("SdkSignup")


@signup.main()
async def run(ctx: restate.WorkflowContext, email: str) -> str:
    link = await ctx.promise("link", type_hint=str).value()
    return f"{email}:{link}"


@signup.handler()
async def click(ctx: restate.WorkflowSharedContext, link: str) -> None:
    await ctx.promise("link").resolve(link)




@greeter.handler()
async def call_durably(ctx: restate.Context, n: int) -> int:
    """Calls a handler of the embedded Durably app that drives this deployment."""
    raw = await ctx.generic_call("DurablyLocal", "double", str(n).encode())
    return int(raw) + 1


signals = restate.Service("SdkSignals")


@signals.handler()
async def wait(ctx: restate.Context) -> list:
    """A named signal raced against a long sleep."""
    match await restate.select(sig=ctx.signal("go", type_hint=str), timeout=ctx.sleep(timedelta(hours=1))):
        case ["sig", value]:
            return ["sig", value]
        case _:
            return ["timeout", None]


@signals.handler()
async def wait_caught(ctx: restate.Context) -> str:
    try:
        return await ctx.signal("go", type_hint=str)
    except TerminalError as e:
        return f"rejected {e.status_code} {e.message}"


@signals.handler()
async def whoami(ctx: restate.Context) -> list:
    """The scope and limit key the invocation was started with."""
    req = ctx.request()
    return [req.scope, req.limit_key, sorted(k for k in req.headers if k.startswith("x-restate-"))]


@signals.handler()
async def scoped_call(ctx: restate.Context) -> list:
    return await ctx.scope("tenant1").service_call(whoami, arg=None, limit_key="a")


@signals.handler()
async def resolve(ctx: restate.Context, req: dict) -> None:
    ctx.resolve_signal(req["id"], "go", req["value"])


@signals.handler()
async def reject(ctx: restate.Context, req: dict) -> None:
    ctx.reject_signal(req["id"], "go", req["message"], 451)


kill_runner = restate.VirtualObject("SdkKillRunner")
kill_singleton = restate.VirtualObject("SdkKillSingleton")


@kill_runner.handler(name="startCallTree")
async def start_call_tree(ctx: restate.ObjectContext) -> None:
    await ctx.object_call(recursive_call, key=ctx.key(), arg=None)


@kill_singleton.handler(name="recursiveCall")
async def recursive_call(ctx: restate.ObjectContext) -> None:
    """Publishes an awakeable, waits for it, then calls itself on its own key: deadlocked on its lock."""
    aw_id, fut = ctx.awakeable()
    await ctx.run_typed("publish", lambda: effect(f"{ctx.key()} {aw_id}"))
    await fut
    await ctx.object_call(recursive_call, key=ctx.key(), arg=None)


@kill_singleton.handler(name="isUnlocked")
async def is_unlocked(ctx: restate.ObjectContext) -> str:
    return "unlocked"


# Calls to keyed handlers without a key (ctx.service_call on an object or workflow handler), as
# restatedev/ai-examples do: Restate runs them on the empty key "".
keyless = restate.VirtualObject("SdkKeyless")


@keyless.handler()
async def keyless_add(ctx: restate.ObjectContext, n: int) -> dict:
    count = (await ctx.get("count") or 0) + n
    await ctx.sleep(timedelta(milliseconds=1))  # the key's lock alone keeps read-sleep-write whole
    ctx.set("count", count)
    return {"key": ctx.key(), "count": count}


@keyless.handler(kind="shared")
async def keyless_peek(ctx: restate.ObjectSharedContext) -> dict:
    return {"key": ctx.key(), "count": await ctx.get("count")}


keyless_flow = restate.Workflow("SdkKeylessFlow")


@keyless_flow.main()
async def keyless_run(ctx: restate.WorkflowContext, x: str) -> dict:
    ctx.set("seen", x)
    return {"key": ctx.key(), "x": x}


@greeter.handler()
async def call_keyless_add(ctx: restate.Context, n: int) -> dict:
    return await ctx.service_call(keyless_add, n)


@greeter.handler()
async def send_keyless_add(ctx: restate.Context, n: int) -> str:
    return await ctx.service_send(keyless_add, n).invocation_id()


@greeter.handler()
async def call_keyless_run(ctx: restate.Context, x: str) -> dict:
    return await ctx.service_call(keyless_run, x)


@greeter.handler()
async def send_keyless_run(ctx: restate.Context, x: str) -> str:
    return await ctx.service_send(keyless_run, x).invocation_id()


SDK_VERSION = tuple(int(x) for x in importlib.metadata.version("restate-sdk").split(".")[:2])
services = [greeter, counter, signup, signals, kill_runner, kill_singleton, keyless, keyless_flow]

if SDK_VERSION >= (1, 3):
    # restate-sdk 1.3: only "a" comes with the invocation's start; the rest is read on demand. The manifest says
    # so in discovery v5's eagerStateKeysWhitelist (and the SDK answers 500 to an older discovery version).
    preload = restate.VirtualObject("SdkPreload", state_preload=["a"])

    @preload.handler()
    async def fill(ctx: restate.ObjectContext, n: int) -> None:
        for name in ("a", "b", "c")[:n]:
            ctx.set(name, name.upper())

    @preload.handler()
    async def read(ctx: restate.ObjectContext) -> list:
        return [await ctx.get("a"), await ctx.get("b"), await ctx.get("c"), sorted(await ctx.state_keys())]

    @preload.handler(state_preload=False)
    async def read_lazily(ctx: restate.ObjectContext) -> list:
        return [await ctx.get("a"), await ctx.get("b")]

    services.append(preload)

# RESTATE_APP_IDENTITY_KEYS (space-separated publickeyv1_... keys): only requests signed by them are accepted.
app = restate.app(services=services, identity_keys=os.environ.get("RESTATE_APP_IDENTITY_KEYS", "").split() or None)
