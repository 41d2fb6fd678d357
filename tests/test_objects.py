"""Virtual objects, workflows, service-to-service calls, awakeables and cancellation."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from counter_app import counter_object

import durably
from durably import TerminalError
from durably.server.engine.calltree import ActionResult
from durably.server.engine.invocation import COMPLETED, INBOXED, PAUSED
from durably.server.store.base import COL
from durably.testing import TestRuntime

effects: Counter[str] = Counter()
awakeables: dict[str, str] = {}


counter = counter_object("Counter", awakeables)


@counter.handler()
async def fail_after_set(ctx: durably.ObjectContext) -> None:
    ctx.set("value", 99)
    raise TerminalError("after set", 400)


@counter.handler(kind="shared")
async def shared_write(ctx: durably.ObjectSharedContext) -> None:
    ctx.set("value", 1)  # type: ignore[attr-defined]


@counter.handler()
async def keys_and_clear(ctx: durably.ObjectContext) -> list:
    ctx.set("a", 1)
    ctx.set("b", 2)
    before = await ctx.state_keys()
    ctx.clear("a")
    middle = await ctx.state_keys()
    ctx.clear_all()
    return [before, middle, await ctx.state_keys(), await ctx.get("b")]


lists = durably.VirtualObject("List")


@lists.handler()
async def append(ctx: durably.ObjectContext, item: str) -> list:
    items = await ctx.get("items") or []
    items.append(item)
    ctx.set("items", items)
    return items


@lists.handler(kind="shared")
async def items(ctx: durably.ObjectSharedContext) -> list:
    return await ctx.get("items") or []


orchestrator = durably.Service("Orchestrator")


@orchestrator.handler()
async def ordered(ctx: durably.Context, key: str) -> list:
    ctx.object_send(append, key, "one")
    await ctx.object_call(append, key, "two")
    ctx.object_send(append, key, "three")
    return ["sent"]


@orchestrator.handler()
async def call_with_id(ctx: durably.Context) -> list:
    fut = ctx.object_call(counter.handlers["add"].fn, "calls", 5)
    inv_id = await fut.invocation_id()
    value = await fut
    again = await ctx.attach_invocation(inv_id, type_hint=int)
    raw = await ctx.generic_call("Counter", "get", b"", key="calls")
    return [inv_id.startswith("inv_1"), value, again, raw.decode()]


@orchestrator.handler()
async def call_unknown(ctx: durably.Context) -> str:
    try:
        await ctx.generic_call("Nope", "x", b"")
    except TerminalError as e:
        return f"{e.status_code} {e.message}"
    return "unreachable"


@orchestrator.handler()
async def resolve_other(ctx: durably.Context, aw_id: str) -> None:
    ctx.resolve_awakeable(aw_id, "from a handler")


@orchestrator.handler()
async def state_in_service(ctx: durably.Context) -> str:
    try:
        await ctx.get("x")  # type: ignore[attr-defined]
    except TerminalError as e:
        return e.message
    return "unreachable"


saga = durably.Service("Saga")


@saga.handler()
async def trip(ctx: durably.Context) -> str:
    await ctx.run_typed("book", lambda: effects.update(["book"]))
    try:
        await ctx.sleep(timedelta(hours=1))
        await ctx.run_typed("confirm", lambda: effects.update(["confirm"]))
    except TerminalError:
        await ctx.run_typed("undo", lambda: effects.update(["undo"]))
        raise
    return "done"


@saga.handler()
async def slow_undo(ctx: durably.Context) -> str:
    try:
        await ctx.sleep(timedelta(hours=1))
    except TerminalError:
        # The compensation itself waits; the delivered cancellation must not wake it again and again.
        await ctx.sleep(timedelta(milliseconds=1))
        await ctx.run_typed("undo", lambda: effects.update(["undo"]))
        raise
    return "done"


@saga.handler()
async def parent(ctx: durably.Context) -> str:
    await ctx.service_call(trip)
    return "parent done"


signup = durably.Workflow("Signup")


@signup.main()
async def run(ctx: durably.WorkflowContext, email: str) -> str:
    ctx.set("stage", "waiting")
    link = await ctx.promise("link", type_hint=str).value()
    ctx.set("stage", "verified")
    return f"{email} verified with {link}"


@signup.handler()
async def click(ctx: durably.WorkflowSharedContext, link: str) -> str:
    await ctx.promise("link").resolve(link)
    return "ok"


@signup.handler()
async def stage(ctx: durably.WorkflowSharedContext) -> str | None:
    return await ctx.get("stage")


@signup.handler()
async def peek(ctx: durably.WorkflowSharedContext) -> str | None:
    return await ctx.promise("link", type_hint=str).peek()


@signup.handler()
async def click_twice(ctx: durably.WorkflowSharedContext) -> str:
    await ctx.promise("other").resolve("first")
    try:
        await ctx.promise("other").resolve("second")
    except TerminalError as e:
        return f"{e.status_code}"
    return "unreachable"


APP = durably.app(services=[counter, lists, orchestrator, saga, signup])


@pytest.fixture(autouse=True)
def _reset() -> None:
    effects.clear()
    awakeables.clear()


async def wait_status(rt: TestRuntime, inv: str, status: str) -> None:
    for _ in range(2000):
        row = rt.store.load_invocation(inv)
        if row is not None and row[COL["status"]] == status:
            return
        await rt.settle()
    raise AssertionError(f"{inv} never reached {status}: {rt.store.load_invocation(inv)}")


async def wait_journaled(rt: TestRuntime, inv: str, type_id: int) -> None:
    """Wait until the invocation journaled a command of this type (it is then blocked on it)."""
    for _ in range(2000):
        await rt.engine.flushed()
        if any(t == type_id for t, _ in rt.store.load_journal(inv)):
            await rt.settle()
            return
        await rt.settle()
    raise AssertionError(f"{inv} never journaled 0x{type_id:04X}")


async def wait_awakeable(rt: TestRuntime, key: str) -> str:
    for _ in range(2000):
        if key in awakeables:
            return awakeables[key]
        await rt.settle()
    raise AssertionError("no awakeable published")


async def test_concurrent_adds_on_one_key_are_serialized(runtime) -> None:
    async with runtime(APP) as rt:
        results = await asyncio.gather(*(rt.call("Counter/c1/add", 1) for _ in range(50)))
        assert sorted(results) == list(range(1, 51))
        assert await rt.call("Counter/c1/get") == 50


async def test_other_keys_and_shared_handlers_are_not_blocked(runtime) -> None:
    async with runtime(APP) as rt, rt.http() as http:
        await rt.call("Counter/busy/add", 7)
        holder = await rt.send("Counter/busy/hold")
        aw_id = await wait_awakeable(rt, "busy")
        queued = await rt.send("Counter/busy/add", 1)
        await wait_status(rt, queued, INBOXED)
        assert await rt.call("Counter/other/add", 3) == 3
        assert await rt.call("Counter/busy/get") == 7  # shared: answers while the exclusive one waits
        resp = await http.post(f"/restate/awakeables/{aw_id}/resolve", json="released")
        assert resp.status_code == 202
        assert await rt.attach(holder, "Counter/busy/hold") == "released"
        assert await rt.attach(queued, "Counter/busy/add") == 8


async def test_state_written_before_terminal_error_is_kept(runtime) -> None:
    async with runtime(APP) as rt:
        with pytest.raises(TerminalError):
            await rt.call("Counter/t/fail_after_set")
        assert await rt.call("Counter/t/get") == 99


async def test_state_keys_clear_and_clear_all(runtime) -> None:
    async with runtime(APP) as rt:
        assert await rt.call("Counter/k/keys_and_clear") == [["a", "b"], ["b"], [], None]


async def test_state_rules_are_enforced(runtime) -> None:
    async with runtime(APP) as rt:
        with pytest.raises(TerminalError) as info:
            await rt.call("Counter/s/shared_write")
        assert "shared handlers read state but never write it" in info.value.message
        assert "a service has no state" in await rt.call("Orchestrator/state_in_service")


async def test_sends_and_calls_arrive_in_program_order(runtime) -> None:
    async with runtime(APP) as rt:
        await rt.call("Orchestrator/ordered", "l1")
        await rt.settle()
        for _ in range(100):
            got = await rt.call("List/l1/items")
            if len(got) == 3:
                break
            await rt.settle()
        assert got == ["one", "two", "three"]


async def test_call_future_invocation_id_attach_and_generic_call(runtime) -> None:
    async with runtime(APP) as rt:
        assert await rt.call("Orchestrator/call_with_id") == [True, 5, 5, "5"]
        assert await rt.call("Orchestrator/call_unknown") == "404 handler 'Nope/x' not found"


async def test_awakeable_resolved_by_handler_and_rejected_over_http(runtime) -> None:
    async with runtime(APP) as rt, rt.http() as http:
        first = await rt.send("Counter/aw1/hold")
        aw_id = await wait_awakeable(rt, "aw1")
        assert aw_id.startswith("sign_1")
        await rt.call("Orchestrator/resolve_other", aw_id)
        assert await rt.attach(first, "Counter/aw1/hold") == "from a handler"
        second = await rt.send("Counter/aw2/hold")
        aw2 = await wait_awakeable(rt, "aw2")
        resp = await http.post(f"/restate/awakeables/{aw2}/reject", content=b"denied")
        assert resp.status_code == 202
        with pytest.raises(TerminalError) as info:
            await rt.attach(second)
        assert info.value.message == "denied"
        bad = await http.post("/restate/awakeables/sign_1nope/resolve", content=b"1")
        assert bad.status_code == 400
        gone = await http.post(f"/restate/awakeables/{aw_id}/resolve", content=b"1")
        assert gone.status_code == 404


async def test_workflow_runs_once_and_completes_through_its_promise(runtime) -> None:
    async with runtime(APP) as rt, rt.http() as http:
        sent = await http.post("/Signup/ada/run/send", json="ada@example.com")
        assert sent.status_code == 202
        inv = sent.json()["invocationId"]
        again = await http.post("/Signup/ada/run/send", json="ada@example.com")
        assert again.json() == {"invocationId": inv, "status": "PreviouslyAccepted"}
        dup = await http.post("/Signup/ada/run", json="ada@example.com")
        assert dup.status_code == 409
        assert dup.json()["message"] == "the workflow method was already invoked"
        idem = await http.post("/Signup/ada/run", json="x", headers={"idempotency-key": "k"})
        assert idem.status_code == 400
        await wait_journaled(rt, inv, 0x0409)
        assert (await http.get("/restate/workflow/Signup/ada/output")).status_code == 470
        assert (await http.post("/Signup/ada/stage")).json() == "waiting"
        assert (await http.post("/Signup/ada/peek")).content == b""  # None is an empty body
        assert (await http.post("/Signup/ada/click", json="https://x/1")).json() == "ok"
        attach = await http.get("/restate/workflow/Signup/ada/attach")
        assert attach.json() == "ada@example.com verified with https://x/1"
        output = await http.get("/restate/workflow/Signup/ada/output")
        assert output.json() == attach.json()
        assert (await http.post("/Signup/ada/stage")).json() == "verified"
        assert (await http.post("/Signup/ada/peek")).json() == "https://x/1"
        assert (await http.post("/Signup/ada/click_twice")).json() == "409"
        assert (await http.get("/restate/workflow/Signup/nobody/attach")).status_code == 404


async def test_workflow_survives_restart_while_waiting_on_its_promise(runtime) -> None:
    async with runtime(APP) as rt:
        inv = await rt.send("Signup/bo/run", "bo@example.com")
        await wait_journaled(rt, inv, 0x0409)
        await rt.restart()
        assert await rt.call("Signup/bo/click", "link-2") == "ok"
        assert await rt.attach(inv, "Signup/bo/run") == "bo@example.com verified with link-2"


async def test_cancel_runs_compensation_and_answers_409(runtime) -> None:
    async with runtime(APP) as rt:
        inv = await rt.send("Saga/trip")
        await wait_journaled(rt, inv, 0x040C)
        assert rt.engine.cancel(inv) is ActionResult.ACCEPTED
        with pytest.raises(TerminalError) as info:
            await rt.attach(inv)
        assert info.value.status_code == 409
        assert effects == Counter({"book": 1, "undo": 1})
        assert rt.engine.cancel(inv) is ActionResult.CONFLICT


async def test_cancelled_handler_may_wait_during_its_compensation(runtime) -> None:
    async with runtime(APP) as rt:
        inv = await rt.send("Saga/slow_undo")
        await wait_journaled(rt, inv, 0x040C)
        assert rt.engine.cancel(inv) is ActionResult.ACCEPTED
        with pytest.raises(TerminalError) as info:
            await asyncio.wait_for(rt.attach(inv), 10)
        assert info.value.status_code == 409
        assert effects["undo"] == 1


async def test_cancel_propagates_down_the_call_tree(runtime) -> None:
    async with runtime(APP) as rt:
        parent_inv = await rt.send("Saga/parent")
        for _ in range(2000):
            rows = [r for r in rt.store.list_invocations() if r[COL["handler"]] == "trip"]
            if rows:
                break
            await rt.settle()
        child = rows[0][COL["id"]]
        await wait_journaled(rt, child, 0x040C)
        assert rt.engine.cancel(parent_inv) is ActionResult.ACCEPTED
        with pytest.raises(TerminalError) as info:
            await rt.attach(parent_inv)
        assert info.value.status_code == 409
        with pytest.raises(TerminalError):
            await rt.attach(child)
        assert effects["undo"] == 1


async def test_kill_runs_no_user_code_and_frees_the_key(runtime) -> None:
    async with runtime(APP) as rt:
        holder = await rt.send("Counter/kk/hold")
        await wait_awakeable(rt, "kk")
        queued = await rt.send("Counter/kk/add", 2)
        await wait_status(rt, queued, INBOXED)
        assert rt.engine.kill(holder) is ActionResult.DONE
        with pytest.raises(TerminalError) as info:
            await rt.attach(holder)
        assert (info.value.status_code, info.value.message) == (409, "killed")
        assert await rt.attach(queued, "Counter/kk/add") == 2
        assert await rt.call("Counter/kk/add", 1) == 3
        assert rt.engine.kill(holder) is ActionResult.CONFLICT


async def test_pause_resume_and_purge(runtime) -> None:
    async with runtime(APP) as rt:
        inv = await rt.send("Saga/trip")
        await wait_journaled(rt, inv, 0x040C)
        assert rt.engine.pause(inv) is ActionResult.ACCEPTED
        await wait_status(rt, inv, PAUSED)
        assert rt.engine.pause(inv) is ActionResult.ALREADY
        assert rt.engine.purge(inv) is ActionResult.CONFLICT
        assert rt.engine.resume(inv) is ActionResult.ACCEPTED
        await rt.settle()
        assert rt.engine.kill(inv) is ActionResult.DONE
        await wait_status(rt, inv, COMPLETED)
        assert rt.engine.purge(inv) is ActionResult.DONE
        await rt.engine.flushed()
        assert rt.store.load_invocation(inv) is None
        assert rt.store.load_journal(inv) == []
        assert rt.engine.purge(inv) is ActionResult.NOT_FOUND


async def test_no_lost_updates_when_a_key_goes_idle_between_calls(runtime) -> None:
    """Clients that wait for each answer let the key go idle between calls; no update may be lost."""
    async with runtime(APP) as rt:

        async def client() -> list[int]:
            return [await rt.call("Counter/idle/add", 1) for _ in range(25)]

        results = await asyncio.gather(*(client() for _ in range(8)))
        seen = [v for r in results for v in r]
        assert sorted(seen) == list(range(1, 201))
        assert await rt.call("Counter/idle/get") == 200
