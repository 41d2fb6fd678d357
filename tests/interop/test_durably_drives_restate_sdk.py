"""Durably drives services written with the real restate-sdk: register the deployment, call them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from test_admin import admin

import durably
from durably.server.engine.calltree import ActionResult
from durably.server.engine.invocation import INBOXED
from durably.server.store.base import COL
from durably.testing import TestRuntime

from .conftest import SdkDeployment

pytestmark = pytest.mark.interop

local = durably.Service("DurablyLocal")


@local.handler()
async def double(ctx: durably.Context, n: int) -> int:
    return await ctx.run_typed("double", lambda: n * 2)


@local.handler()
async def call_remote(ctx: durably.Context, key: str) -> int:
    raw = await ctx.generic_call("SdkCounter", "add", b"3", key=key)
    return int(raw)


APP = durably.app(services=[local])


@pytest.fixture(params=["h2-bidi", "h2-always-replay", "http1.1"])
async def rt(request: pytest.FixtureRequest, sdk_deployment: SdkDeployment, tmp_path) -> AsyncIterator[TestRuntime]:
    async with TestRuntime(APP, "sqlite", data_dir=tmp_path / "data",
                           always_replay=request.param == "h2-always-replay") as runtime:
        dep, created = await runtime.engine.register_deployment(sdk_deployment.url,
                                                                use_http_11=request.param == "http1.1")
        assert created
        assert dep.bidi == (request.param != "http1.1")
        yield runtime


async def test_services_are_registered_with_their_kinds(rt: TestRuntime) -> None:
    services = rt.engine.services
    assert services["SdkGreeter"].kind == "service"
    assert services["SdkCounter"].kind == "object"
    assert services["SdkCounter"].handlers["get"].kind == "shared"
    assert services["SdkSignup"].handlers["run"].kind == "workflow"


async def test_greeter_run_uuid_random_time(rt: TestRuntime) -> None:
    async with rt.http() as http:
        resp = await http.post("/SdkGreeter/greet", json="Ada")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["hello"] == "Hello Ada!"
    uuid.UUID(body["uuid"])
    assert body["time"] > 1.7e9


async def test_run_fails_twice_then_succeeds_and_exhaustion_is_caught(rt: TestRuntime,
                                                                     sdk_deployment: SdkDeployment) -> None:
    key = f"f-{uuid.uuid4()}"
    async with rt.http() as http:
        assert (await http.post("/SdkGreeter/flaky", json=key)).json() == "ok after 3"
        ex = f"x-{uuid.uuid4()}"
        assert (await http.post("/SdkGreeter/exhausted", json=ex)).json() == "caught ValueError('boom')"
    assert sdk_deployment.count(key) == 3
    assert sdk_deployment.count(ex) == 3
    assert sdk_deployment.count(ex + "-compensated") == 1


async def test_sleep_counter_and_workflow(rt: TestRuntime) -> None:
    key = f"c-{uuid.uuid4()}"
    async with rt.http() as http:
        assert (await http.post("/SdkGreeter/nap", json=20)).json() == "rested"
        results = await asyncio.gather(*(http.post(f"/SdkCounter/{key}/add", json=1) for _ in range(10)))
        assert sorted(r.json() for r in results) == list(range(1, 11))
        assert (await http.post(f"/SdkCounter/{key}/get")).json() == 10
        sent = await http.post(f"/SdkSignup/{key}/run/send", json="a@b")
        assert sent.status_code == 202
        assert (await http.post(f"/SdkSignup/{key}/click", json="L")).status_code == 200
        assert (await http.get(f"/restate/workflow/SdkSignup/{key}/attach")).json() == "a@b:L"


async def test_awakeable_and_cancellation(rt: TestRuntime, sdk_deployment: SdkDeployment) -> None:
    key = f"a-{uuid.uuid4()}"
    async with rt.http() as http:
        sent = await http.post("/SdkGreeter/await_awakeable/send", json=key)
        inv = sent.json()["invocationId"]
        for _ in range(3000):
            lines = [x for x in sdk_deployment.lines() if x.startswith(key + " ")]
            if lines:
                break
            await rt.settle()
        aw_id = lines[0].split(" ", 1)[1]
        assert (await http.post(f"/restate/awakeables/{aw_id}/resolve", json="yes")).status_code == 202
        assert (await http.get(f"/restate/invocation/{inv}/attach")).json() == "yes"
        cx = f"cx-{uuid.uuid4()}"
        sent = await http.post("/SdkGreeter/wait_cancel/send", json=cx)
        inv = sent.json()["invocationId"]
        for _ in range(3000):
            await rt.engine.flushed()
            if any(t == 0x040C for t, _ in rt.store.load_journal(inv)):
                break
            await rt.settle()
        assert rt.engine.cancel(inv) is ActionResult.ACCEPTED
        resp = await http.get(f"/restate/invocation/{inv}/attach")
    assert resp.status_code == 409
    assert sdk_deployment.count(cx + "-undo") == 1


async def test_embedded_and_remote_call_each_other(rt: TestRuntime) -> None:
    key = f"m-{uuid.uuid4()}"
    async with rt.http() as http:
        assert (await http.post("/DurablyLocal/call_remote", json=key)).json() == 3
        assert (await http.post("/SdkGreeter/call_durably", json=20)).json() == 41


@pytest.mark.parametrize("handler", ["wait", "wait_caught"])
async def test_named_signals_across_invocations(rt: TestRuntime, handler: str) -> None:
    async with rt.http() as http:
        sent = await http.post(f"/SdkSignals/{handler}/send")
        assert sent.status_code == 202, sent.text
        inv = sent.json()["invocationId"]
        if handler == "wait":
            ok = await http.post("/SdkSignals/resolve", json={"id": inv, "value": "now"})
            expected: object = ["sig", "now"]
        else:
            ok = await http.post("/SdkSignals/reject", json={"id": inv, "message": "nope"})
            expected = "rejected 451 nope"
        assert ok.status_code == 200, ok.text
        attached = await asyncio.wait_for(http.get(f"/restate/invocation/{inv}/attach"), 30)
    assert (attached.status_code, attached.json()) == (200, expected)


async def test_kill_reaches_the_remote_call_tree(rt: TestRuntime, sdk_deployment: SdkDeployment) -> None:
    key = f"k-{uuid.uuid4()}"
    async with rt.http() as http:
        sent = await http.post(f"/SdkKillRunner/{key}/startCallTree/send")
        root = sent.json()["invocationId"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30  # the deployment is another process: poll by the clock, not by steps
        lines: list[str] = []
        while not lines and loop.time() < deadline:
            lines = [x for x in sdk_deployment.lines() if x.startswith(key + " ")]
            await rt.settle()
            await asyncio.sleep(0.01)
        assert lines, "the deployment never published its awakeable"
        aw_id = lines[0].split(" ", 1)[1]
        assert (await http.post(f"/restate/awakeables/{aw_id}/resolve", json="go")).status_code == 202
        # Wait until the self-call is queued behind its own caller's lock: the tree is deadlocked.
        def deadlocked() -> bool:
            return any(r[COL["key"]] == key and r[COL["status"]] == INBOXED for r in rt.store.list_invocations())

        deadline = loop.time() + 30
        while loop.time() < deadline:
            await rt.engine.flushed()
            if deadlocked():
                break
            await rt.settle()
            await asyncio.sleep(0.01)
        assert deadlocked()
        assert rt.engine.kill(root) is ActionResult.DONE
        answer = await asyncio.wait_for(http.get(f"/restate/invocation/{root}/attach"), 30)
        assert (answer.status_code, answer.json()["message"]) == (409, "killed")
        unlocked = await asyncio.wait_for(http.post(f"/SdkKillSingleton/{key}/isUnlocked"), 30)
    assert (unlocked.status_code, unlocked.json()) == (200, "unlocked")


async def test_scopes_and_limit_keys_reach_restate_sdk_handlers(rt: TestRuntime) -> None:
    # Durably speaks protocol v7 with the deployment, so scope and limit key travel in Start (not as
    # request headers), and restate-sdk's ctx.scope() calls are accepted.
    dep = next(iter(rt.engine.deployments.values()))
    assert dep.protocol_version == 7
    rt.engine.set_concurrency_rule("tenant1", 1)
    async with rt.http() as http:
        scoped = await http.post("/restate/scope/tenant1/call/SdkSignals/whoami?limit-key=a/b")
        plain = await http.post("/SdkSignals/whoami")
        inner = await asyncio.wait_for(http.post("/SdkSignals/scoped_call"), 30)
    assert (scoped.status_code, scoped.json()) == (200, ["tenant1", "a/b", ["x-restate-ingress-path"]])
    assert (plain.status_code, plain.json()) == (200, [None, None, ["x-restate-ingress-path"]])
    assert (inner.status_code, inner.json()) == (200, ["tenant1", "a", []])


async def test_keyless_calls_from_sdk_handlers_run_on_the_empty_key(rt: TestRuntime) -> None:
    """restate-sdk's `ctx.service_call` on an object or workflow handler: Restate runs it on key ""."""
    async with rt.http() as http:
        calls = await asyncio.gather(*(http.post("/SdkGreeter/call_keyless_add", json=1) for _ in range(5)))
        assert sorted(r.json()["count"] for r in calls) == [1, 2, 3, 4, 5]
        assert {r.json()["key"] for r in calls} == {""}
        sent = (await http.post("/SdkGreeter/send_keyless_add", json=10)).json()
        assert await rt.attach(sent) == b'{"key": "", "count": 15}'
        assert (await http.post("/SdkKeyless//keyless_peek")).json() == {"key": "", "count": 15}
        assert (await http.post("/SdkGreeter/call_keyless_run", json="a")).json() == {"key": "", "x": "a"}
        again = await http.post("/SdkGreeter/call_keyless_run", json="b")
        assert again.status_code == 409, again.text  # Restate 1.7.12 answers the same
        assert again.json()["message"] == "the workflow method was already invoked"
        first = (await http.post("/SdkGreeter/send_keyless_run", json="c")).json()
        assert await rt.attach(first) == b'{"key": "", "x": "a"}'


async def test_state_preload_of_a_restate_sdk_13_deployment(rt: TestRuntime, sdk_deployment: SdkDeployment) -> None:
    """restate-sdk 1.3's `state_preload=["a"]` registers (discovery v5) and its Start carries only "a"."""
    if sdk_deployment.version < "1.3":
        pytest.skip("state_preload is new in restate-sdk 1.3")
    svc = rt.engine.services["SdkPreload"]
    assert svc.handlers["read"].preload() == ["a"]
    assert svc.handlers["read_lazily"].preload() is False
    key = uuid.uuid4().hex
    async with rt.http() as http:
        assert (await http.post(f"/SdkPreload/{key}/fill", json=3)).status_code == 200
        resp = await http.post(f"/SdkPreload/{key}/read", json=None)
        assert resp.status_code == 200, resp.text
        assert resp.json() == ["A", "B", "C", ["a", "b", "c"]]
        async with admin(rt) as client:
            journal = (await client.get(f"/invocations/{resp.headers['x-restate-id']}")).json()["journal"]
        # "a" came with the start (an eager read, no completion); "b" and "c" were asked for, as were the names.
        reads = [e["key"] for e in journal if e["type"] == "get state"]
        assert reads == ["a", "b", "c"]
        completed = [e["completion_id"] for e in journal if e["type"] == "get state completion"]
        assert len(completed) == 2 and any(e["type"] == "get state keys completion" for e in journal)
        resp = await http.post(f"/SdkPreload/{key}/read_lazily", json=None)
        assert resp.json() == ["A", "B"]


async def test_large_payloads_cross_hypercorns_small_windows_and_frames(rt: TestRuntime) -> None:
    """hypercorn keeps HTTP/2's 64 KiB windows and 16 KiB frames: inputs and step results of 100 KB and 1 MB,
    many at once, arrive whole in Start, in the step's proposal and in the answer."""
    texts = [(chr(ord("a") + i % 26) * (100 * 1024 if i % 4 else 1024 * 1024)) + f"#{i}" for i in range(24)]
    async with rt.http() as http:
        answers = await asyncio.gather(*(http.post("/SdkGreeter/keep", json=t, timeout=60) for t in texts))
    for text, resp in zip(texts, answers, strict=True):
        assert resp.status_code == 200, resp.text[:300]
        assert resp.json() == text


async def test_large_inputs_spread_over_connections_small_ones_share_one(rt: TestRuntime) -> None:
    """A deployment's connection window (64 KiB with hypercorn) is shared by the streams on it: concurrent
    invocations with 1 MB inputs go over several connections; small ones, and large ones one at a time, over
    one."""
    if not rt.engine.services["SdkGreeter"].deployment.bidi:
        pytest.skip("HTTP/1.1: one request per connection")
    pool = rt.engine.pool
    async with rt.http() as http:
        answers = await asyncio.gather(*(http.post("/SdkGreeter/nap", json=1, timeout=60) for _ in range(16)))
        assert [r.status_code for r in answers] == [200] * 16
        assert len(pool.connections()) == 1
        for i in range(3):  # one after another: the idle connection serves, whatever its window
            resp = await http.post("/SdkGreeter/keep", json=str(i) * 300 * 1024, timeout=60)
            assert resp.status_code == 200 and len(resp.json()) == 300 * 1024
        assert len(pool.connections()) == 1
        texts = [str(i) * 1024 * 1024 for i in range(10)]
        answers = await asyncio.gather(*(http.post("/SdkGreeter/keep", json=t, timeout=60) for t in texts))
        assert [r.status_code for r in answers] == [200] * 10
    assert pool.spread_connections >= len(pool.connections()) > 1
