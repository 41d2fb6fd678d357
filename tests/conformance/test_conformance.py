"""The scenarios of Restate's SDK conformance suite, driven over HTTP, in default and always-replay mode.

Each test follows one scenario class of restatedev/e2e `sdk-tests` (State, CallOrdering, Cancellation,
Combinators with signals, Ingress, KillInvocation, KillRuntime, StopRuntime, NonDeterminismErrors,
RunFlush, RunRetry, ServiceToServiceCommunication, Sleep, SleepWithFailures, UserErrors, WorkflowAPI)
against the services in `services.py`, written to that suite's contracts.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

import pytest

from durably.server.engine.invocation import SUSPENDED
from durably.server.store.base import COL

from .conftest import SERVED, Suite, app, one_attempt, suite_of, until

# ---- State ----


async def test_state_add(suite: Suite) -> None:
    key = str(uuid.uuid4())
    assert await suite.ok(f"/Counter/{key}/add", 1) == {"oldValue": 0, "newValue": 1}
    assert await suite.ok(f"/Counter/{key}/add", 2) == {"oldValue": 1, "newValue": 3}


async def test_state_proxy_one_way_add(suite: Suite) -> None:
    key = str(uuid.uuid4())
    for _ in range(3):
        await suite.ok("/Proxy/oneWayCall", {"serviceName": "Counter", "virtualObjectKey": key, "handlerName": "add",
                                             "message": list(json.dumps(1).encode())})

    async def three() -> bool:
        return await suite.ok(f"/Counter/{key}/get") == 3

    await until(three, "the counter to reach 3")


async def test_state_list_state_and_clear_all(suite: Suite) -> None:
    name = str(uuid.uuid4())
    await suite.ok(f"/MapObject/{name}/set", {"key": "my-key-0", "value": "my-value-0"})
    await suite.ok(f"/MapObject/{name}/set", {"key": "my-key-1", "value": "my-value-1"})
    await suite.ok(f"/MapObject/{name}1/set", {"key": "my-key-2", "value": "my-value-2"})
    cleared = await suite.ok(f"/MapObject/{name}/clearAll")
    assert sorted(e["key"] for e in cleared) == ["my-key-0", "my-key-1"]
    assert await suite.ok(f"/MapObject/{name}/get", "my-key-0") == ""
    assert await suite.ok(f"/MapObject/{name}/get", "my-key-1") == ""
    assert await suite.ok(f"/MapObject/{name}1/get", "my-key-2") == "my-value-2"


# ---- CallOrdering ----


@pytest.mark.parametrize("ordering", [(True, False, False), (False, True, False), (True, True, False)])
async def test_call_ordering(suite: Suite, ordering: tuple[bool, ...]) -> None:
    name = str(uuid.uuid4())
    requests = []
    for index, background in enumerate(ordering):
        req = {"serviceName": "ListObject", "virtualObjectKey": name, "handlerName": "append",
               "message": list(json.dumps(str(index)).encode())}
        requests.append({"proxyRequest": req, "oneWayCall": background, "awaitAtTheEnd": not background})
    await suite.ok("/Proxy/manyCalls", requests)
    assert await suite.ok(f"/ListObject/{name}/clear") == ["0", "1", "2"]


# ---- Cancellation ----


async def _blocked(suite: Suite, key: str, operation: str, from_context: bool) -> str:
    if from_context:
        inv = await suite.ok("/Proxy/oneWayCall", {"serviceName": "CancelTestRunner", "virtualObjectKey": key,
                                                   "handlerName": "startTest",
                                                   "message": list(json.dumps(operation).encode())})
    else:
        inv = await suite.send(f"/CancelTestRunner/{key}/startTest", operation)

    async def registered() -> bool:
        return await suite.ok(f"/AwakeableHolder/{key}/hasAwakeable")

    await until(registered, "the awakeable to be registered")
    await suite.ok(f"/AwakeableHolder/{key}/unlock", "cancel")
    return inv


@pytest.mark.parametrize("operation", ["CALL", "SLEEP", "AWAKEABLE"])
@pytest.mark.parametrize("source", ["admin", "context"])
async def test_cancellation(suite: Suite, operation: str, source: str) -> None:
    key = str(uuid.uuid4())
    inv = await _blocked(suite, key, operation, source == "context")

    async def cancelled() -> bool:
        if source == "admin":
            resp = await suite.admin.patch(f"/invocations/{inv}/cancel")
            assert resp.status_code in (200, 202, 404, 409), resp.text
        else:
            await suite.ok("/TestUtilsService/cancelInvocation", inv)
        return await asyncio.wait_for(suite.ok(f"/CancelTestRunner/{key}/verifyTest"), 1)

    await until(cancelled, "verifyTest to see the cancellation")
    await suite.ok(f"/CancelTestBlockingService/{key}/isUnlocked")


# ---- KillInvocation ----


async def test_kill_invocation(suite: Suite) -> None:
    key = str(uuid.uuid4())
    inv = await suite.send(f"/KillTestRunner/{key}/startCallTree")

    async def registered() -> bool:
        return await suite.ok(f"/AwakeableHolder/{key}/hasAwakeable")

    await until(registered, "the awakeable to be registered")
    await suite.ok(f"/AwakeableHolder/{key}/unlock", "cancel")

    async def killed() -> bool:
        resp = await suite.admin.patch(f"/invocations/{inv}/kill")
        return resp.status_code == 200

    await until(killed, "the kill to be accepted")
    await suite.ok(f"/KillTestSingleton/{key}/isUnlocked")
    answer = await suite.attach(inv)
    assert (answer.status_code, answer.json()["message"]) == (409, "killed")


# ---- Combinators (with signals) ----


async def test_combinators_awakeable_or_timeout_using_await_any(suite: Suite) -> None:
    body = {"commands": [{"type": "awaitAny", "commands": [{"type": "createAwakeable", "awakeableKey": "awk1"},
                                                           {"type": "sleep", "timeoutMillis": 100}]}]}
    assert await suite.ok(f"/VirtualObjectCommandInterpreter/{uuid.uuid4()}/interpretCommands", body) == "sleep"


async def test_combinators_awakeable_or_timeout_command(suite: Suite) -> None:
    body = {"commands": [{"type": "awaitAwakeableOrTimeout", "awakeableKey": "should-timeout-awk",
                          "timeoutMillis": 100}]}
    resp = await suite.call(f"/VirtualObjectCommandInterpreter/{uuid.uuid4()}/interpretCommands", body)
    assert resp.status_code == 500 and "await-timeout" in resp.json()["message"]


async def test_combinators_first_successful_completed_awakeable(suite: Suite) -> None:
    key = str(uuid.uuid4())
    base = f"/VirtualObjectCommandInterpreter/{key}"
    commands = []
    for i in range(3):
        commands += [{"type": "createAwakeable", "awakeableKey": f"awk{i}"},
                     {"type": "runThrowTerminalException", "reason": f"run{i}"}]
    result = asyncio.create_task(suite.call(f"{base}/interpretCommands",
                                            {"commands": [{"type": "awaitAnySuccessful", "commands": commands}]}))

    async def created() -> bool:
        return await suite.ok(f"{base}/hasAwakeable", "awk2")

    await until(created, "awakeable awk2")
    assert await suite.ok(f"{base}/hasAwakeable", "awk0") and await suite.ok(f"{base}/hasAwakeable", "awk1")
    await suite.ok(f"{base}/rejectAwakeable", {"awakeableKey": "awk2", "reason": "fail"})
    await suite.ok(f"{base}/resolveAwakeable", {"awakeableKey": "awk1", "value": "awk1-result"})
    resp = await asyncio.wait_for(result, 15)
    assert (resp.status_code, resp.json()) == (200, "awk1-result")


@pytest.mark.parametrize("outcome", ["resolve", "reject"])
async def test_signals_await_one(suite: Suite, outcome: str) -> None:
    body = {"commands": [{"type": "awaitOne", "command": {"type": "createSignal", "signalName": "mysignal"}}]}
    inv = await suite.send(f"/VirtualObjectCommandInterpreter/{uuid.uuid4()}/interpretCommands", body)
    if outcome == "resolve":
        await suite.ok("/TestUtilsService/resolveSignal",
                       {"invocationId": inv, "signalName": "mysignal", "value": "hello"})
        answer = await suite.attach(inv)
        assert (answer.status_code, answer.json()) == (200, "hello")
    else:
        await suite.ok("/TestUtilsService/rejectSignal", {"invocationId": inv, "signalName": "mysignal",
                                                          "reason": "boom"})
        answer = await suite.attach(inv)
        assert answer.status_code == 500 and "boom" in answer.json()["message"]


async def test_signal_against_sleep_in_await_any(suite: Suite) -> None:
    body = {"commands": [{"type": "awaitAny", "commands": [{"type": "createSignal", "signalName": "s"},
                                                           {"type": "sleep", "timeoutMillis": 3_600_000}]}]}
    inv = await suite.send(f"/VirtualObjectCommandInterpreter/{uuid.uuid4()}/interpretCommands", body)
    await suite.ok("/TestUtilsService/resolveSignal", {"invocationId": inv, "signalName": "s", "value": "won"})
    answer = await suite.attach(inv)
    assert (answer.status_code, answer.json()) == (200, "won")


# ---- Ingress ----


async def test_ingress_headers_pass_through(suite: Suite) -> None:
    headers = await suite.ok("/TestUtilsService/echoHeaders", headers={"x-my-custom-header": "x-my-custom-value"})
    assert headers["x-my-custom-header"] == "x-my-custom-value"


async def test_ingress_raw_handler(suite: Suite) -> None:
    data = os.urandom(100)
    resp = await suite.call("/TestUtilsService/rawEcho", content=data,
                            headers={"content-type": "application/octet-stream"})
    assert (resp.status_code, resp.content) == (200, data)


# ---- KillRuntime and StopRuntime ----


@pytest.mark.parametrize("how", ["kill", "stop"])
async def test_runtime_restart_retains_the_state(durable_suite, how: str) -> None:
    rt = durable_suite()
    async with rt:
        suite = suite_of(rt, rt.options.always_replay)
        async with suite.ingress, suite.admin:
            assert await suite.ok("/Counter/my-key/add", 1) == {"oldValue": 0, "newValue": 1}
        if how == "kill":
            await rt.restart()  # the engine goes away as a crash would; the same store comes back
            suite = suite_of(rt, rt.options.always_replay)
            async with suite.ingress, suite.admin:
                assert await suite.ok("/Counter/my-key/add", 2) == {"oldValue": 1, "newValue": 3}
    if how == "stop":
        async with durable_suite() as again:
            suite = suite_of(again, again.options.always_replay)
            async with suite.ingress, suite.admin:
                assert await suite.ok("/Counter/my-key/add", 2) == {"oldValue": 1, "newValue": 3}


# ---- NonDeterminismErrors (always-suspending only, as in the suite) ----


@pytest.mark.parametrize("suite", ["always-replay", pytest.param("partitions-2-always-replay", marks=SERVED)],
                         indirect=True)
@pytest.mark.parametrize("handler", ["eitherSleepOrCall", "callDifferentMethod",
                                     "backgroundInvokeWithDifferentTargets", "setDifferentKey"])
async def test_non_determinism_is_caught(suite: Suite, handler: str, request: pytest.FixtureRequest) -> None:
    assert suite.always_replay
    async with one_attempt(suite, request) as suite:
        await suite.ok(f"/Counter/{handler}/add", 1)
        resp = await suite.call(f"/NonDeterministic/{handler}/{handler}")
        assert resp.status_code == 570, resp.text
        assert "mismatch" in resp.json()["message"]

        async def unchanged() -> bool:
            return await suite.ok(f"/Counter/{handler}/get") == 1

        await until(unchanged, "the counter to read 1")
        if suite.rt is not None:
            await suite.rt.settle()
        assert await suite.ok(f"/Counter/{handler}/get") == 1  # the increment after the mismatch never ran


# ---- RunFlush ----


async def test_run_flush_waits_for_acknowledgements(suite: Suite) -> None:
    executed = await suite.ok("/TestUtilsService/countExecutedSideEffects", 3)
    # Always-suspending: every run's result comes back from the journal in a new attempt, so the closure
    # counter of the last attempt saw no execution (the suite's expectation); otherwise all three ran here.
    assert executed == (0 if suite.always_replay else 3)


# ---- RunRetry ----


async def test_run_is_retried_until_it_succeeds(suite: Suite) -> None:
    assert await suite.ok(f"/Failing/{uuid.uuid4()}/sideEffectSucceedsAfterGivenAttempts", 3) >= 3


@pytest.mark.parametrize("attempts", [1, 3])
async def test_run_is_retried_until_it_exhausts_its_attempts(suite: Suite, attempts: int) -> None:
    assert await suite.ok(f"/Failing/{uuid.uuid4()}/sideEffectFailsAfterGivenAttempts", attempts) >= attempts


# ---- ServiceToServiceCommunication ----


async def test_s2s_regular_call(suite: Suite) -> None:
    out = await suite.ok("/Proxy/call", {"serviceName": "TestUtilsService", "handlerName": "uppercaseEcho",
                                         "message": list(json.dumps("ping").encode())})
    assert bytes(out) == json.dumps("PING").encode()


@pytest.mark.parametrize("mode", ["oneWayCall", "call"])
async def test_s2s_with_idempotency_key(suite: Suite, mode: str) -> None:
    key, idem = str(uuid.uuid4()), str(uuid.uuid4())
    req = {"serviceName": "Counter", "virtualObjectKey": key, "handlerName": "add",
           "message": list(json.dumps(1).encode()), "idempotencyKey": idem}
    for _ in range(2):  # the second one is deduplicated
        out = await suite.ok(f"/Proxy/{mode}", req)
        if mode == "call":
            assert json.loads(bytes(out)) == {"oldValue": 0, "newValue": 1}

    async def one() -> bool:
        return await suite.ok(f"/Counter/{key}/get") == 1

    await until(one, "the counter to read 1")
    output = await suite.ingress.get(f"/restate/invocation/Counter/{key}/add/{idem}/output")
    assert (output.status_code, output.json()) == (200, {"oldValue": 0, "newValue": 1})


async def test_s2s_one_way_call_with_delay(suite: Suite) -> None:
    key = str(uuid.uuid4())
    started = time.monotonic()
    for _ in range(3):
        await suite.ok("/Proxy/oneWayCall", {"serviceName": "Counter", "virtualObjectKey": key, "handlerName": "add",
                                             "message": list(json.dumps(1).encode()), "delayMillis": 200})

    async def three() -> bool:
        return await suite.ok(f"/Counter/{key}/get") == 3

    await until(three, "the delayed adds")
    assert time.monotonic() - started >= 0.2


# ---- Sleep and SleepWithFailures ----


async def test_sleep(suite: Suite) -> None:
    started = time.monotonic()
    body = {"commands": [{"type": "awaitOne", "command": {"type": "sleep", "timeoutMillis": 10}}]}
    assert await suite.ok(f"/VirtualObjectCommandInterpreter/{uuid.uuid4()}/interpretCommands", body) == "sleep"
    assert time.monotonic() - started >= 0.01


async def test_many_sleeps(suite: Suite) -> None:
    started = time.monotonic()

    async def one(i: int) -> int:
        sleeps = [{"type": "sleep", "timeoutMillis": 10 + (i * 7 + j * 3) % 40} for j in range(20)]
        body = {"commands": [{"type": "awaitAllCompleted", "commands": sleeps}]}
        resp = await suite.call(f"/VirtualObjectCommandInterpreter/{uuid.uuid4()}/interpretCommands", body)
        return resp.status_code

    # The suite asks only that every invocation completes (the result string is the service's choice).
    assert await asyncio.gather(*(one(i) for i in range(10))) == [200] * 10
    assert time.monotonic() - started >= 0.049  # the longest sleep of each is at least 49 ms


async def test_sleep_survives_a_runtime_restart(durable_suite) -> None:
    rt = durable_suite()
    async with rt:
        suite = suite_of(rt, rt.options.always_replay)
        started = time.monotonic()
        async with suite.ingress, suite.admin:
            inv = await suite.send("/TestUtilsService/sleepConcurrently", [300])

        def sleeping() -> bool:
            row = rt.engine.live_row(inv) or rt.store.load_invocation(inv)
            return row is not None and (row[COL["status"]] == SUSPENDED or row[COL["journal_length"]] > 1)

        await until(_async(sleeping), "the sleep to be journaled")
        await rt.restart()
        suite = suite_of(rt, rt.options.always_replay)
        async with suite.ingress, suite.admin:
            answer = await suite.attach(inv)
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - started >= 0.3


def _async(fn):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return fn()

    return check


# ---- UserErrors ----

METADATA = {"key1": "value1", "key2": "value2"}


@pytest.mark.parametrize("handler", ["terminallyFailingCall", "callTerminallyFailingCall",
                                     "terminallyFailingSideEffect"])
async def test_user_errors_propagate_with_metadata(suite: Suite, handler: str) -> None:
    for _ in range(3):  # several times: the endpoint stays stable after a failure
        resp = await suite.call(f"/Failing/{uuid.uuid4()}/{handler}", {"errorMessage": "my error",
                                                                      "metadata": METADATA})
        assert resp.status_code >= 400
        body = resp.json()
        assert "my error" in body["message"]
        assert body["metadata"].items() >= METADATA.items()


async def test_set_state_then_fail_persists_the_set(suite: Suite) -> None:
    key = f"my-failure-counter-{uuid.uuid4()}"
    resp = await suite.call(f"/Counter/{key}/addThenFail", 1)
    assert resp.status_code == 500 and key in resp.json()["message"]
    assert await suite.ok(f"/Counter/{key}/get") == 1


async def test_invocations_are_retried_until_they_succeed(suite: Suite) -> None:
    assert await suite.ok(f"/Failing/{uuid.uuid4()}/failingCallWithEventualSuccess") == 4


# ---- WorkflowAPI ----


async def test_workflow_set_and_resolve_durable_promise(suite: Suite) -> None:
    wf = str(uuid.uuid4())
    first = await suite.ingress.post(f"/BlockAndWaitWorkflow/{wf}/run/send", json="Francesco")
    assert (first.status_code, first.json()["status"]) == (202, "Accepted")

    async def state_set() -> bool:
        return bool(await suite.ok(f"/BlockAndWaitWorkflow/{wf}/getState"))

    await until(state_set, "the workflow state")
    await suite.ok(f"/BlockAndWaitWorkflow/{wf}/unblock", "Till")
    attached = await asyncio.wait_for(suite.ingress.get(f"/restate/workflow/BlockAndWaitWorkflow/{wf}/attach"), 15)
    assert (attached.status_code, attached.json()) == (200, "Till")
    output = await suite.ingress.get(f"/restate/workflow/BlockAndWaitWorkflow/{wf}/output")
    assert (output.status_code, output.json()) == (200, "Till")
    again = await suite.ingress.post(f"/BlockAndWaitWorkflow/{wf}/run/send", json="Francesco")
    assert again.json()["status"] == "PreviouslyAccepted"
    assert again.json()["invocationId"] == first.json()["invocationId"]


def test_services_cover_the_suites_contracts() -> None:
    assert set(app.services) >= {
        "Counter", "Proxy", "TestUtilsService", "AwakeableHolder", "CancelTestRunner", "CancelTestBlockingService",
        "KillTestRunner", "KillTestSingleton", "Failing", "NonDeterministic", "ListObject", "MapObject",
        "BlockAndWaitWorkflow", "VirtualObjectCommandInterpreter"}
