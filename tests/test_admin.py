"""The admin API in process: services, invocation listing and description, and the operator actions."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from counter_app import counter_object

import durably
from durably import TerminalError
from durably.protocol.ids import InvocationId
from durably.server.http.admin import Admin
from durably.testing import TestRuntime

T = TypeVar("T")

effects: Counter[str] = Counter()
awakeables: dict[str, str] = {}

greeter = durably.Service("Greeter", description="Says hello.")


@greeter.handler()
async def greet(ctx: durably.Context, name: str) -> str:
    """Greets after one journaled step."""
    shout = await ctx.run_typed("shout", lambda: name.upper())
    return f"hello {shout}"


@greeter.handler()
async def refuse(ctx: durably.Context, name: str) -> str:
    raise TerminalError(f"no greeting for {name}", 422)


counter = counter_object("Counter", awakeables)


saga = durably.Service("Saga")


@saga.handler()
async def trip(ctx: durably.Context) -> str:
    await ctx.run_typed("book", lambda: effects.update(["book"]))
    try:
        await ctx.sleep(timedelta(hours=1))
    except TerminalError:
        await ctx.run_typed("undo", lambda: effects.update(["undo"]))
        raise
    return "done"


signup = durably.Workflow("Signup")


@signup.main()
async def run(ctx: durably.WorkflowContext, email: str) -> str:
    return await ctx.promise("link", type_hint=str).value()


@signup.handler()
async def click(ctx: durably.WorkflowSharedContext, link: str) -> None:
    await ctx.promise("link").resolve(link)


APP = durably.app(services=[greeter, counter, saga, signup])

SLEEP = 0x040C  # journal type id of a sleep command


@pytest.fixture(autouse=True)
def _reset() -> None:
    effects.clear()
    awakeables.clear()


@asynccontextmanager
async def admin(rt: TestRuntime) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client over the admin app of this runtime, in process."""
    assert rt.engine is not None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine)),
                                 base_url="http://admin") as client:
        yield client


async def poll(rt: TestRuntime, check: Callable[[], Awaitable[T]], what: str) -> T:
    """Run `check` until it returns something truthy, letting the runtime settle in between."""
    for _ in range(2000):
        result = await check()
        if result:
            return result
        await rt.settle()
    raise AssertionError(f"timed out waiting for {what}")


async def describe(client: httpx.AsyncClient, inv: str) -> dict[str, Any]:
    resp = await client.get(f"/invocations/{inv}")
    assert resp.status_code == 200, resp.text
    return resp.json()


async def wait_status(rt: TestRuntime, client: httpx.AsyncClient, inv: str, *statuses: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body = await describe(client, inv)
        return body if body["status"] in statuses else None

    return await poll(rt, check, f"{inv} to reach {statuses}")


async def wait_sleeping(rt: TestRuntime, client: httpx.AsyncClient, inv: str) -> dict[str, Any]:
    """Wait until the invocation journaled its sleep (it is then blocked on the timer)."""
    async def check() -> dict[str, Any] | None:
        body = await describe(client, inv)
        return body if any(e["type"] == "sleep" for e in body["journal"]) else None

    body = await poll(rt, check, f"{inv} to sleep")
    await rt.settle()
    return body


async def wait_awakeable(rt: TestRuntime, key: str) -> str:
    async def check() -> str | None:
        return awakeables.get(key)

    return await poll(rt, check, f"the awakeable of {key}")


def unknown_id() -> str:
    return str(InvocationId.random())


def assert_error(resp: httpx.Response, status: int, *fragments: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == status
    assert isinstance(body["message"], str)
    for fragment in fragments:
        assert fragment in body["message"]
    assert resp.headers["x-restate-error-source"] == "admin"


async def test_health(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        resp = await client.get("/health")
        assert resp.status_code == 200
        assert resp.json() == {"status": "ok"}
        assert (await client.get("/v2/health")).status_code == 200


async def test_services_list_types_and_handler_kinds(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        resp = await client.get("/services")
        assert resp.status_code == 200
        services = {s["name"]: s for s in resp.json()["services"]}
        assert set(services) == {"Greeter", "Counter", "Saga", "Signup"}
        assert {name: s["ty"] for name, s in services.items()} == {
            "Greeter": "Service", "Counter": "VirtualObject", "Saga": "Service", "Signup": "Workflow"}  # Restate's
        assert services["Greeter"]["documentation"] == "Says hello."
        assert [h["name"] for h in services["Greeter"]["handlers"]] == ["greet", "refuse"]
        assert all("ty" not in h for h in services["Greeter"]["handlers"])  # plain services have no kinds
        assert {h["name"]: h["ty"] for h in services["Counter"]["handlers"]} == {
            "add": "Exclusive", "get": "Shared", "hold": "Exclusive"}
        assert {h["name"]: h["ty"] for h in services["Signup"]["handlers"]} == {
            "run": "Workflow", "click": "Shared"}
        handlers = {h["name"]: h for h in services["Counter"]["handlers"]}
        assert handlers["add"]["input_description"] == "application/json"
        assert handlers["get"]["input_description"] == "none"
        assert handlers["hold"]["documentation"] == "Holds the key's lock until someone resolves the awakeable."


async def test_service_by_name_and_unknown_service(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        resp = await client.get("/services/Counter")
        assert resp.status_code == 200
        assert resp.json()["name"] == "Counter"
        assert resp.json()["ty"] == "VirtualObject"
        assert_error(await client.get("/services/Nope"), 404, "Nope")
        assert (await client.get("/v3/services/Saga")).json()["ty"] == "Service"


async def test_list_is_newest_first_with_filters_and_limit(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        first = await rt.send("Greeter/greet", "a")
        await rt.attach(first)
        second = await rt.send("Counter/k1/add", 1)
        await rt.attach(second)
        third = await rt.send("Greeter/greet", "b")
        await rt.attach(third)
        sleeping = await rt.send("Saga/trip")
        status = (await wait_sleeping(rt, client, sleeping))["status"]
        assert status in ("invoked", "suspended")

        resp = await client.get("/invocations")
        assert resp.status_code == 200
        rows = resp.json()["invocations"]
        assert [r["id"] for r in rows] == [sleeping, third, second, first]
        assert [r["target"] for r in rows] == ["Saga/trip", "Greeter/greet", "Counter/k1/add", "Greeter/greet"]
        assert rows[1]["status"] == "completed"
        assert rows[1]["output"] == "hello B"
        assert rows[2]["key"] == "k1"

        by_service = (await client.get("/invocations", params={"service": "Greeter"})).json()["invocations"]
        assert [r["id"] for r in by_service] == [third, first]
        completed = (await client.get("/invocations", params={"status": "completed"})).json()["invocations"]
        assert [r["id"] for r in completed] == [third, second, first]
        running = (await client.get("/invocations", params={"status": status})).json()["invocations"]
        assert [r["id"] for r in running] == [sleeping]
        both = await client.get("/invocations", params={"status": "completed", "service": "Counter"})
        assert [r["id"] for r in both.json()["invocations"]] == [second]
        by_key = await client.get("/invocations", params={"service": "Counter", "key": "k1", "handler": "add"})
        assert [r["id"] for r in by_key.json()["invocations"]] == [second]
        none = await client.get("/invocations", params={"service": "Nope"})
        assert none.json() == {"invocations": []}

        limited = (await client.get("/invocations", params={"limit": "2"})).json()["invocations"]
        assert [r["id"] for r in limited] == [sleeping, third]
        assert_error(await client.get("/invocations", params={"limit": "many"}), 400, "limit")
        assert_error(await client.get("/invocations", params={"limit": "1.5"}), 400, "limit")
        await client.patch(f"/invocations/{sleeping}/kill")


async def test_describe_shows_target_status_attempts_and_journal(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Greeter/greet", "Ada")
        assert await rt.attach(inv, "Greeter/greet") == "hello ADA"
        body = await describe(client, inv)
        assert body["id"] == inv
        assert body["target"] == "Greeter/greet"
        assert (body["service"], body["handler"]) == ("Greeter", "greet")
        assert body["status"] == "completed"
        assert body["attempts"] >= 1
        assert body["output"] == "hello ADA"
        for field in ("created_at", "modified_at", "completed_at"):
            assert datetime.fromisoformat(body[field]).tzinfo is not None
        journal = body["journal"]
        assert body["journal_length"] == len(journal)
        assert [e["index"] for e in journal] == list(range(len(journal)))
        assert [e["type"] for e in journal] == ["input", "run", "run completion", "output"]
        assert journal[0]["value"] == "Ada"
        assert journal[1]["name"] == "shout"
        assert journal[2]["value"] == "ADA"
        assert journal[3]["value"] == "hello ADA"
        for entry in journal:
            assert datetime.fromisoformat(entry["appended_at"]).tzinfo is not None


async def test_describe_keyed_failed_and_sleeping_invocations(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        keyed = await rt.send("Counter/c7/add", 5)
        await rt.attach(keyed)
        body = await describe(client, keyed)
        assert (body["target"], body["key"], body["output"]) == ("Counter/c7/add", "c7", 5)
        assert "set state" in [e["type"] for e in body["journal"]]

        failed = await rt.send("Greeter/refuse", "Bo")
        with pytest.raises(TerminalError):
            await rt.attach(failed)
        body = await describe(client, failed)
        assert (body["status"], body["failure_code"], body["failure_message"]) == (
            "completed", 422, "no greeting for Bo")
        assert "output" not in body
        assert body["journal"][-1]["type"] == "output"
        assert body["journal"][-1]["failure"] == {"code": 422, "message": "no greeting for Bo"}

        sleeping = await rt.send("Saga/trip")
        await wait_sleeping(rt, client, sleeping)
        body = await describe(client, sleeping)
        assert body["status"] in ("invoked", "suspended")
        sleep = next(e for e in body["journal"] if e["type"] == "sleep")
        woke = datetime.fromisoformat(sleep["wake_up_time"]) - datetime.fromisoformat(sleep["appended_at"])
        assert timedelta(minutes=59) < woke <= timedelta(hours=1, seconds=1)
        if body["status"] == "suspended":
            # A suspended handler also waits for the cancellation signal (signal 1).
            assert f"completion {sleep['completion_id']}" in body["waiting"]
        await client.patch(f"/invocations/{sleeping}/kill")


async def test_malformed_ids_are_400(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        assert_error(await client.get("/invocations/nope"), 400, "malformed invocation id")
        for action in ("cancel", "kill", "pause", "resume", "purge"):
            assert_error(await client.patch(f"/invocations/inv_123/{action}"), 400, "malformed invocation id")
        assert_error(await client.delete("/invocations/x", params={"mode": "kill"}), 400, "malformed")


async def test_unknown_ids_are_404(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        inv = unknown_id()
        assert_error(await client.get(f"/invocations/{inv}"), 404, inv)
        for action in ("cancel", "kill", "pause", "resume", "purge"):
            assert_error(await client.patch(f"/invocations/{inv}/{action}"), 404, inv)
        for mode in ("cancel", "kill", "purge"):
            assert_error(await client.delete(f"/invocations/{inv}", params={"mode": mode}), 404, inv)


async def test_cancel_a_sleeping_invocation_runs_its_compensation(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Saga/trip")
        await wait_sleeping(rt, client, inv)
        resp = await client.patch(f"/invocations/{inv}/cancel")
        assert resp.status_code == 202
        with pytest.raises(TerminalError) as info:
            await asyncio.wait_for(rt.attach(inv), 10)
        assert info.value.status_code == 409
        assert effects == Counter({"book": 1, "undo": 1})
        body = await wait_status(rt, client, inv, "completed")
        assert body["failure_code"] == 409
        types = [e["type"] for e in body["journal"]]
        assert types[-1] == "output"
        assert "signal" in types  # the delivered cancellation is in the journal
        assert [e["name"] for e in body["journal"] if e["type"] == "run"] == ["book", "undo"]
        assert_error(await client.patch(f"/invocations/{inv}/cancel"), 409, "already completed")


async def test_kill_answers_the_waiting_caller_with_409_killed(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client, rt.http() as http:
        call = asyncio.create_task(http.post("/Counter/kk/hold"))
        await wait_awakeable(rt, "kk")
        rows = (await client.get("/invocations", params={"service": "Counter", "handler": "hold"})).json()
        inv = rows["invocations"][0]["id"]
        resp = await client.patch(f"/invocations/{inv}/kill")
        assert resp.status_code == 200
        answer = await asyncio.wait_for(call, 10)
        assert answer.status_code == 409
        assert answer.json() == {"code": 409, "message": "killed", "source": "invocation"}
        assert answer.headers["x-restate-id"] == inv
        body = await describe(client, inv)
        assert (body["status"], body["failure_code"], body["failure_message"]) == ("completed", 409, "killed")
        assert_error(await client.patch(f"/invocations/{inv}/kill"), 409, "already completed")
        assert await rt.call("Counter/kk/add", 1) == 1  # the key is free again


async def test_pause_and_resume(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Saga/trip")
        await wait_sleeping(rt, client, inv)
        assert_error(await client.patch(f"/invocations/{inv}/resume"), 409, "not paused")
        assert (await client.patch(f"/invocations/{inv}/pause")).status_code == 202
        await wait_status(rt, client, inv, "paused")
        assert (await client.patch(f"/invocations/{inv}/pause")).status_code == 200
        paused = (await client.get("/invocations", params={"status": "paused"})).json()["invocations"]
        assert [r["id"] for r in paused] == [inv]
        assert (await client.patch(f"/invocations/{inv}/resume")).status_code == 202
        await wait_sleeping(rt, client, inv)
        await wait_status(rt, client, inv, "invoked", "suspended")
        assert_error(await client.patch(f"/invocations/{inv}/resume"), 409, "not paused")
        assert effects["book"] == 1  # the resumed attempt replayed the step
        assert (await client.patch(f"/invocations/{inv}/kill")).status_code == 200
        await wait_status(rt, client, inv, "completed")
        assert_error(await client.patch(f"/invocations/{inv}/pause"), 409, "not running")
        assert_error(await client.patch(f"/invocations/{inv}/resume"), 409, "not paused")


async def test_purge_only_completed_invocations(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Saga/trip")
        await wait_sleeping(rt, client, inv)
        assert_error(await client.patch(f"/invocations/{inv}/purge"), 409, "not completed")
        assert (await client.patch(f"/invocations/{inv}/kill")).status_code == 200
        await wait_status(rt, client, inv, "completed")
        assert (await client.patch(f"/invocations/{inv}/purge")).status_code == 200
        assert_error(await client.get(f"/invocations/{inv}"), 404, inv)
        assert_error(await client.patch(f"/invocations/{inv}/purge"), 404, inv)
        listed = (await client.get("/invocations")).json()["invocations"]
        assert inv not in [r["id"] for r in listed]


async def test_delete_with_modes(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client, rt.http() as http:
        call = asyncio.create_task(http.post("/Counter/dk/hold"))
        await wait_awakeable(rt, "dk")
        inv = (await client.get("/invocations", params={"handler": "hold"})).json()["invocations"][0]["id"]
        assert_error(await client.delete(f"/invocations/{inv}", params={"mode": "explode"}), 400, "mode")
        resp = await client.delete(f"/invocations/{inv}", params={"mode": "kill"})
        assert resp.status_code == 202
        answer = await asyncio.wait_for(call, 10)
        assert (answer.status_code, answer.json()["message"]) == (409, "killed")
        await wait_status(rt, client, inv, "completed")
        assert (await client.delete(f"/invocations/{inv}", params={"mode": "purge"})).status_code == 202
        assert_error(await client.get(f"/invocations/{inv}"), 404)

        sleeping = await rt.send("Saga/trip")
        await wait_sleeping(rt, client, sleeping)
        assert (await client.delete(f"/invocations/{sleeping}")).status_code == 202  # cancel by default
        with pytest.raises(TerminalError):
            await asyncio.wait_for(rt.attach(sleeping), 10)
        assert effects["undo"] == 1


async def test_wrong_method_and_unknown_path(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        assert_error(await client.post("/invocations"), 405)
        assert_error(await client.get(f"/invocations/{unknown_id()}/cancel"), 405)
        assert_error(await client.get("/nothing/here"), 404)


async def test_cross_site_browser_requests_change_nothing(runtime) -> None:
    """A page on another site cannot make an operator's browser kill, purge or register through the API."""
    async with runtime(APP) as rt, admin(rt) as client, rt.http() as http:
        call = asyncio.create_task(http.post("/Counter/xs/hold"))
        await wait_awakeable(rt, "xs")
        rows = (await client.get("/invocations", params={"service": "Counter", "handler": "hold"})).json()
        inv = rows["invocations"][0]["id"]
        for headers in ({"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"}):
            assert_error(await client.patch(f"/invocations/{inv}/kill", headers=headers), 403, "cross-site")
            resp = await client.post("/deployments", content=b'{"uri": "http://127.0.0.1:1"}',
                                     headers={**headers, "content-type": "text/plain"})
            assert_error(resp, 403, "cross-site")
        assert (await describe(client, inv))["status"] != "completed"
        assert (await client.get("/deployments")).json()["deployments"] == []
        # Reading stays open to any page the browser allows; the same action from the CLI goes through.
        assert (await client.get("/services", headers={"origin": "http://evil.example"})).status_code == 200
        same_site = {"origin": "http://admin", "sec-fetch-site": "same-origin"}
        assert (await client.patch(f"/invocations/{inv}/kill", headers=same_site)).status_code == 200
        assert (await asyncio.wait_for(call, 10)).status_code == 409
