"""The admin state API: read a key's state with its version, replace it (Restate's request), version check."""

from __future__ import annotations

import base64
import hashlib
import json

import httpx
from counter_app import counter_object
from test_admin import admin, poll

import durably
from durably.server.engine.object_state import state_version

awakeables: dict[str, str] = {}
counter = counter_object("Counter", awakeables)
greeter = durably.Service("Greeter")


@greeter.handler()
async def greet(ctx: durably.Context, name: str) -> str:
    return f"hello {name}"


APP = durably.app(services=[counter, greeter])


def as_bytes(value: object) -> list[int]:
    return list(json.dumps(value).encode())


async def get_state(client: httpx.AsyncClient, key: str) -> dict:
    resp = await client.get(f"/services/Counter/state/{key}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_version_is_restates_hash_of_the_sorted_entries() -> None:
    h = hashlib.sha256()
    for i, (k, v) in enumerate([(b"a", b"1"), (b"b", b"2")]):
        h.update(i.to_bytes(8, "big") + b"\x01" + k + b"\x02" + v + b"\x03")
    expected = base64.urlsafe_b64encode(h.digest()).decode()
    assert state_version({b"b": b"2", b"a": b"1"}) == expected
    assert state_version({}) != state_version({b"a": b"1"})


async def test_get_shows_state_written_by_a_handler(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        assert await rt.call("Counter/alice/add", 5) == 5
        body = await get_state(client, "alice")
        assert body["service"] == "Counter" and body["object_key"] == "alice"
        assert body["state"] == {"value": 5}
        assert body["version"] == state_version({b"value": b"5"})
        empty = await get_state(client, "nobody")
        assert empty["state"] == {} and empty["version"] == state_version({})


async def test_replace_then_the_handler_sees_it(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        await rt.call("Counter/bob/add", 1)
        resp = await client.post("/services/Counter/state", json={"object_key": "bob",
                                                                  "new_state": {"value": as_bytes(41)}})
        assert resp.status_code == 202, resp.text
        assert (await get_state(client, "bob"))["state"] == {"value": 41}
        assert await rt.call("Counter/bob/add", 1) == 42


async def test_version_check_refuses_a_stale_edit(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        await rt.call("Counter/carol/add", 1)
        read = await get_state(client, "carol")
        await rt.call("Counter/carol/add", 1)  # the object changes the state after the read
        resp = await client.post("/services/Counter/state", json={
            "object_key": "carol", "new_state": {"value": as_bytes(100)}, "version": read["version"]})
        assert resp.status_code == 409
        assert "changed since version" in resp.json()["message"]
        assert (await get_state(client, "carol"))["state"] == {"value": 2}
        fresh = await get_state(client, "carol")
        resp = await client.post("/services/Counter/state", json={
            "object_key": "carol", "new_state": {"value": as_bytes(100)}, "version": fresh["version"]})
        assert resp.status_code == 202
        assert await rt.call("Counter/carol/get") == 100


async def test_empty_state_clears_the_key(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        await rt.call("Counter/dave/add", 3)
        resp = await client.post("/services/Counter/state", json={"object_key": "dave", "new_state": {}})
        assert resp.status_code == 202
        assert (await get_state(client, "dave"))["state"] == {}
        assert await rt.call("Counter/dave/add", 1) == 1


async def test_a_key_held_by_a_running_invocation_is_refused(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        held = await rt.send("Counter/erin/hold")
        await poll(rt, lambda: _get(awakeables, "erin"), "the awakeable")
        resp = await client.post("/services/Counter/state", json={"object_key": "erin", "new_state": {}})
        assert resp.status_code == 409
        assert held in resp.json()["message"]
        assert (await client.patch(f"/invocations/{held}/kill")).status_code == 200
        resp = await client.post("/services/Counter/state", json={"object_key": "erin",
                                                                  "new_state": {"value": as_bytes(7)}})
        assert resp.status_code == 202
        assert await rt.call("Counter/erin/get") == 7


async def _get(d: dict[str, str], key: str) -> str | None:
    return d.get(key)


async def test_bad_requests(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        for body, fragment in [({"new_state": {}}, "object_key"),
                               ({"object_key": "k", "new_state": {"v": "text"}}, "array of bytes"),
                               ({"object_key": "k", "new_state": {"v": [300]}}, "array of bytes"),
                               ([], "JSON object")]:
            resp = await client.post("/services/Counter/state", json=body)
            assert resp.status_code == 400, body
            assert fragment in resp.json()["message"]
        resp = await client.post("/services/Counter/state", content=b"{nope")
        assert resp.status_code == 400
        resp = await client.post("/services/Greeter/state", json={"object_key": "k", "new_state": {}})
        assert resp.status_code == 400 and "only virtual objects and workflows" in resp.json()["message"]
        assert (await client.get("/services/Greeter/state/k")).status_code == 400
        assert (await client.get("/services/Nope/state/k")).status_code == 404
        resp = await client.post("/services/Nope/state", json={"object_key": "k", "new_state": {"v": [1]}})
        assert resp.status_code == 404
        # Clearing the state of a service that is gone is allowed, as in Restate.
        resp = await client.post("/services/Nope/state", json={"object_key": "k", "new_state": {}})
        assert resp.status_code == 202
        assert (await client.delete("/services/Counter/state")).status_code == 405


async def test_state_reads_are_paged_with_a_cursor(runtime) -> None:
    names = {f"n{i:04d}": i for i in range(25)}
    async with runtime(APP) as rt, admin(rt) as client:
        resp = await client.post("/services/Counter/state", json={
            "object_key": "many", "new_state": {k: as_bytes(v) for k, v in names.items()}})
        assert resp.status_code == 202, resp.text
        seen: dict = {}
        cursor = None
        pages = 0
        while True:
            url = "/services/Counter/state/many?limit=10" + (f"&after={cursor}" if cursor else "")
            body = (await client.get(url)).json()
            pages += 1
            assert len(body["state"]) <= 10 and not set(body["state"]) & set(seen)
            assert "version" not in body  # a version covers the whole state; a page is not all of it
            seen.update(body["state"])
            cursor = body.get("next_cursor")
            if cursor is None:
                break
        assert pages == 3 and seen == names
        # Without a limit the default page holds all of a small state, with its version.
        whole = await get_state(client, "many")
        assert whole["state"] == names and whole["version"] and "next_cursor" not in whole
        for bad in ("limit=0", "limit=abc", "limit=1001", "after=%25%25%25"):
            resp = await client.get(f"/services/Counter/state/many?{bad}")
            assert resp.status_code == 400, bad
            assert resp.json()["message"]


async def test_the_default_page_is_bounded(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        resp = await client.post("/services/Counter/state", json={
            "object_key": "huge", "new_state": {f"n{i:05d}": as_bytes(i) for i in range(2500)}})
        assert resp.status_code == 202, resp.text
        body = await get_state(client, "huge")
        assert len(body["state"]) == 1000 and body["next_cursor"] and "version" not in body
        assert min(body["state"]) == "n00000" and max(body["state"]) == "n00999"
