"""restate-sdk 1.2.0's module layout and helpers (issue 12, items 7-10): `from restate.X import Y` becomes
`from durably.X import Y`, the names are Durably's own classes, and the client and harness work."""

from __future__ import annotations

import asyncio
import importlib
import logging
from datetime import timedelta

import httpx
import pytest

import durably
from durably import TerminalError

# Public names of restate-sdk 1.2.0's modules (read from the installed package), minus its private helpers.
RESTATE_MODULES = {
    "exceptions": ["RetryableError", "SdkInternalBaseException", "SdkInternalException", "SuspendedException",
                   "TerminalError", "is_internal_exception"],
    "serde": ["BytesSerde", "DefaultSerde", "JsonSerde", "MsgspecJsonSerde", "PydanticJsonSerde", "Serde",
              "is_pydantic"],
    "context": ["AttemptFinishedEvent", "Context", "DurablePromise", "KeyValueStore", "ObjectContext",
                "ObjectSharedContext", "Request",
                "RestateDurableCallFuture", "RestateDurableFuture", "RestateDurableSleepFuture", "RunOptions",
                "SendHandle", "WorkflowContext", "WorkflowSharedContext", "HandlerType", "RunAction"],
    "service": ["Service"],
    "object": ["VirtualObject"],
    "workflow": ["Workflow"],
    "client": ["Client", "HttpError", "RestateClient", "RestateClientSendHandle", "RestateScopedClient",
               "ScopedClient", "create_client"],
    "client_types": ["HttpError", "RestateClient", "RestateClientSendHandle", "RestateScopedClient"],
    "harness": ["HarnessEnvironment", "RestateTestHarness", "create_test_harness", "test_harness"],
    "logging": ["RestateLoggingFilter", "getLogger"],
    "retry_policy": ["InvocationRetryPolicy"],
    "asyncio": ["as_completed", "gather", "select", "wait_completed"],
    "endpoint": ["Endpoint", "app"],
}
RESTATE_TOP_LEVEL = [
    "Context", "DurablePromise", "HarnessEnvironment", "HttpError", "InvocationRetryPolicy", "ObjectContext",
    "ObjectSharedContext", "RestateClient", "RestateClientSendHandle", "RestateDurableCallFuture",
    "RestateDurableFuture", "RestateDurableSleepFuture", "RestateLoggingFilter", "RunOptions",
    "SdkInternalBaseException", "SendHandle", "Service", "TerminalError", "VirtualObject", "Workflow",
    "WorkflowContext", "WorkflowSharedContext", "app", "as_completed", "create_client", "create_test_harness",
    "gather", "getLogger", "is_internal_exception", "logging", "select", "test_harness", "wait_completed",
]


@pytest.mark.parametrize("module", sorted(RESTATE_MODULES))
def test_every_restate_module_has_its_names(module: str) -> None:
    mod = importlib.import_module(f"durably.{module}")
    missing = [n for n in RESTATE_MODULES[module] if not hasattr(mod, n)]
    assert missing == []


def test_top_level_names() -> None:
    assert [n for n in RESTATE_TOP_LEVEL if not hasattr(durably, n)] == []


def test_names_are_durablys_own_classes() -> None:
    from durably.context import RestateDurableCallFuture, RestateDurableFuture, RestateDurableSleepFuture
    from durably.exceptions import SdkInternalBaseException
    from durably.exceptions import TerminalError as TE
    from durably.serde import DefaultSerde

    assert TE is TerminalError and SdkInternalBaseException is durably.SdkInternalBaseException
    assert RestateDurableFuture is durably.DurableFuture and durably.RestateDurableFuture is RestateDurableFuture
    assert issubclass(RestateDurableCallFuture, RestateDurableFuture)
    assert issubclass(RestateDurableSleepFuture, RestateDurableFuture)
    assert DefaultSerde is durably.DefaultSerde
    assert durably.clients.http.AdminClient is not None  # the CLI's clients are still there


svc = durably.Service("Shape")
log = durably.getLogger("tests.shape")


@svc.handler()
async def echo(ctx: durably.Context, name: str) -> str:
    return f"echo {name}"


@svc.handler()
async def futures(ctx: durably.Context) -> list[bool]:
    call = ctx.service_call(echo, "x")
    sleep = ctx.sleep(timedelta(milliseconds=1))
    run = ctx.run_typed("r", lambda: 1)
    kinds = [isinstance(call, durably.RestateDurableCallFuture), isinstance(sleep, durably.RestateDurableSleepFuture),
             isinstance(run, durably.RestateDurableFuture)]
    await call
    await sleep
    await run
    return kinds


@svc.handler()
async def logs(ctx: durably.Context) -> str:
    log.info("before the steps")
    for i in range(3):
        await ctx.run_typed(f"step {i}", lambda: None)
        log.info("after step %d", i)
    return "logged"


@svc.handler()
async def fails(ctx: durably.Context) -> str:
    raise TerminalError("no luck", 418)


finished: list[bool] = []
watchers: set[asyncio.Task[None]] = set()


@svc.handler()
async def cleanup(ctx: durably.Context) -> bool:
    event = ctx.request().attempt_finished_event
    assert isinstance(event, durably.context.AttemptFinishedEvent)

    async def release() -> None:
        await event.wait()
        finished.append(event.is_set())

    watchers.add(asyncio.get_running_loop().create_task(release()))
    await ctx.run_typed("work", lambda: None)
    return event.is_set()


counter = durably.VirtualObject("ShapeCounter")


@counter.handler()
async def add(ctx: durably.ObjectContext, n: int) -> int:
    total = (await ctx.get("total", type_hint=int) or 0) + n
    ctx.set("total", total)
    return total


signup = durably.Workflow("ShapeSignup")


@signup.main()
async def run(ctx: durably.WorkflowContext, email: str) -> str:
    return f"welcome {email}"


app = durably.app(services=[svc, counter, signup])


async def test_futures_are_restate_sdk_instances(runtime) -> None:
    async with runtime(app) as rt:
        assert await rt.call("Shape/futures") == [True, True, True]


async def test_get_logger_is_silent_while_replaying(runtime, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tests.shape")
    async with runtime(app) as rt:
        assert await rt.call("Shape/logs") == "logged"
    lines = [r.getMessage() for r in caplog.records if r.name == "tests.shape"]
    # In always-replay mode the handler runs 4 times from the top; each line still appears once.
    assert lines == ["before the steps", "after step 0", "after step 1", "after step 2"]


async def test_attempt_finished_event_is_set_when_the_attempt_ends(runtime) -> None:
    finished.clear()
    async with runtime(app) as rt:
        assert await rt.call("Shape/cleanup") is False  # not over while the handler runs
        for _ in range(100):
            if finished:
                break
            await asyncio.sleep(0)
    assert finished and all(finished)


async def test_create_test_harness_and_typed_client() -> None:
    async with durably.create_test_harness(app) as env:
        client = env.client
        assert await client.service_call(echo, "Ada") == "echo Ada"
        assert await client.object_call(add, "c1", 2) == 2
        assert await client.object_call(add, "c1", 3, idempotency_key="once") == 5
        assert await client.object_call(add, "c1", 3, idempotency_key="once") == 5  # same key, same invocation
        handle = await client.object_send(add, "c1", 10)
        assert handle.invocation_id.startswith("inv_") and handle.status_code == 202
        assert await client.attach(handle, add) == 15
        assert await client.attach_idempotent(add, "once", key="c1") == 5
        assert await client.workflow_call(run, "a@b.c", "a@b.c") == "welcome a@b.c"
        assert await client.workflow_attach(run, "a@b.c") == "welcome a@b.c"
        raw = await client.generic_call("Shape", "echo", b'"raw"')
        assert raw == b'"echo raw"'
        with pytest.raises(durably.HttpError) as e:
            await client.service_call(fails, None)
        assert e.value.status_code == 418 and "no luck" in (e.value.body or "")
        with pytest.raises(durably.HttpError) as e:
            await client.generic_call("ShapeCounter", "add", b'"not a number"', key="c1")
        assert e.value.status_code == 400
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{env.admin_api_url}/services")).status_code == 200
    # stopped: nothing listens any more
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{env.ingress_url}/restate/health")


async def test_harness_options() -> None:
    async with durably.create_test_harness(app, always_replay=True, disable_retries=True) as env:
        assert await env.client.service_call(futures, None) == [True, True, True]


def test_sync_harness() -> None:
    with durably.test_harness(app) as h, h.ingress_client() as http:
        assert http.post("/Shape/echo", json="sync").json() == "echo sync"


def test_endpoint_builder() -> None:
    from durably.endpoint import Endpoint

    built = Endpoint().bind(svc, counter).app()
    assert isinstance(built, durably.App) and list(built.services) == ["Shape", "ShapeCounter"]
    with pytest.raises(ValueError, match="already exists"):
        Endpoint().bind(svc, svc)
    with pytest.raises(ValueError, match="base58"):
        Endpoint().identity_key("publickeyv1_0x")
    from durably.protocol.request_identity import generate_private_key

    key = generate_private_key()[1]
    assert Endpoint().bind(svc).identity_key(key).app().identity_keys == [key]


def test_app_takes_restate_sdks_arguments() -> None:
    svc = durably.Service("ShapeApp")

    @svc.handler()
    async def ping(ctx: durably.Context) -> str:
        return "pong"

    assert "ShapeApp" in durably.app(services=[svc], protocol="bidi", identity_keys=None).services
    with pytest.raises(ValueError, match="base58"):
        durably.app(services=[svc], identity_keys=["publickeyv1_0x"])
    with pytest.raises(ValueError, match="protocol"):
        durably.app(services=[svc], protocol="carrier-pigeon")  # type: ignore[arg-type]
