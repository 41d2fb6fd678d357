"""Scopes, limit keys and Restate 1.7's hierarchical concurrency limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

import durably
from durably import TerminalError
from durably.server.engine.flow_control import ConcurrencyLimiter, FlowControlError, check_scope, parse_rules
from durably.server.engine.invocation import INBOXED
from durably.server.http.admin import Admin
from durably.server.store.base import COL

# ---- the rule book ----


def test_most_specific_rule_wins_per_level() -> None:
    lim = ConcurrencyLimiter({"*": 100, "checkout": 50, "checkout/*": 5, "*/premium": 7, "checkout/premium": 9,
                              "checkout/*/*": 2})
    assert lim.limit_of(("other",)) == 100
    assert lim.limit_of(("checkout",)) == 50
    assert lim.limit_of(("checkout", "premium")) == 9
    assert lim.limit_of(("checkout", "basic")) == 5
    assert lim.limit_of(("shop", "premium")) == 7
    assert lim.limit_of(("shop", "basic")) is None
    assert lim.limit_of(("checkout", "basic", "u1")) == 2


def test_an_invocation_counts_against_every_level_and_waits_in_order() -> None:
    lim = ConcurrencyLimiter({"t": 2, "t/*": 1})
    assert lim.admit("a1", "t", "a")
    assert not lim.admit("a2", "t", "a")  # L1 'a' is full
    assert lim.admit("b1", "t", "b")  # scope has room for one more
    assert not lim.admit("c1", "t", "c")  # scope full (2)
    assert lim.release("a1") == ["a2"]  # a2 first: it waited longest
    assert lim.release("b1") == ["c1"]
    assert [u["level"] for u in lim.usage()] == ["t", "t/a", "t/c"]


def test_a_star_rule_is_a_budget_per_scope_not_a_global_pool() -> None:
    lim = ConcurrencyLimiter({"*": 1})
    assert lim.admit("x", "s1", None)
    assert lim.admit("y", "s2", None)
    assert not lim.admit("z", "s1", None)


@pytest.mark.parametrize(("scope", "limit_key"), [
    ("", None), ("a" * 37, None), ("bad scope", None), (None, "k"), ("s", "a/b/c"), ("s", "a//b"), ("s", "ä")])
def test_malformed_scopes_and_limit_keys_are_refused(scope, limit_key) -> None:
    with pytest.raises(FlowControlError):
        check_scope(scope, limit_key)


def test_rules_from_flags() -> None:
    assert parse_rules(["*=100", "checkout/*=5"]) == {"*": 100, "checkout/*": 5}
    for bad in ("checkout", "x=0", "a/b/c/d=1", "x=many"):
        with pytest.raises(FlowControlError):
            parse_rules([bad])


# ---- the runtime ----

awakeables: dict[str, str] = {}
work = durably.Service("Work")


@work.handler()
async def slow(ctx: durably.Context, name: str) -> dict:
    """Runs until the test resolves its awakeable; reports the scope it ran in."""
    aw_id, fut = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", lambda: awakeables.__setitem__(name, aw_id))
    await fut
    req = ctx.request()
    return {"name": name, "scope": req.scope, "limit_key": req.limit_key,
            "leaked": sorted(k for k in req.headers if k.startswith("x-restate-"))}


@work.handler()
async def whoami(ctx: durably.Context) -> list:
    req = ctx.request()
    return [req.scope, req.limit_key]


fan = durably.Service("Fan")


@fan.handler()
async def fan_out(ctx: durably.Context, jobs: list[list[str]]) -> list[str]:
    """Sends each [name, limit key] to Work/slow within scope 't'."""
    ids = []
    for name, limit_key in jobs:
        handle = ctx.scope("t").service_send(slow, name, limit_key=limit_key or None)
        ids.append(await handle.invocation_id())
    return ids


@fan.handler()
async def generic(ctx: durably.Context) -> list:
    raw = await ctx.generic_call("Work", "whoami", b"", scope="g", limit_key="l1/l2")
    return json.loads(raw)


@fan.handler()
async def bad_scope(ctx: durably.Context) -> str:
    try:
        await ctx.scope("no spaces").service_call(whoami)
    except TerminalError as e:
        return f"{e.status_code}: {e.message}"
    return "accepted"


APP = durably.app(services=[work, fan])


async def until(cond: Callable[[], object], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 10.0
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def status(rt, inv: str) -> str:
    row = rt.engine.live_row(inv) or rt.store.load_invocation(inv)
    return row[COL["status"]]


async def resolve(http: httpx.AsyncClient, name: str) -> None:
    assert (await http.post(f"/restate/awakeables/{awakeables[name]}/resolve", json="ok")).status_code == 202


async def test_limit_key_levels_cap_what_runs_at_once(runtime) -> None:
    awakeables.clear()
    async with runtime(APP, concurrency_rules={"t": 2, "t/*": 1}) as rt, rt.http() as http:
        a1, a2, b1, c1 = await rt.call("Fan/fan_out", [["a1", "a"], ["a2", "a"], ["b1", "b"], ["c1", "c"]])
        await until(lambda: {"a1", "b1"} <= set(awakeables), "a1 and b1 to run")
        await rt.settle()
        assert "a2" not in awakeables and "c1" not in awakeables
        assert (status(rt, a2), status(rt, c1)) == (INBOXED, INBOXED)
        await resolve(http, "a1")
        assert (await rt.attach(a1, "Work/slow"))["limit_key"] == "a"
        await until(lambda: "a2" in awakeables, "a2 to run after a1")
        assert "c1" not in awakeables  # the scope is still full (a2, b1)
        await resolve(http, "b1")
        await until(lambda: "c1" in awakeables, "c1 to run after b1")
        await resolve(http, "a2")
        await resolve(http, "c1")
        out = await rt.attach(c1, "Work/slow")
        assert out == {"name": "c1", "scope": "t", "limit_key": "c", "leaked": []}
        assert (await rt.attach(b1, "Work/slow"))["scope"] == "t"


async def test_a_rule_raised_over_the_admin_api_lets_queued_invocations_start(runtime) -> None:
    awakeables.clear()
    async with runtime(APP, concurrency_rules={"t": 1}) as rt, rt.http() as http:
        admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine)), base_url="http://admin")
        async with admin:
            _, second = await rt.call("Fan/fan_out", [["r1", ""], ["r2", ""]])
            await until(lambda: "r1" in awakeables, "r1 to run")
            await rt.settle()
            assert status(rt, second) == INBOXED
            listed = (await admin.get("/rules")).json()
            assert listed["rules"] == [{"pattern": "t", "concurrency": 1}]
            assert listed["usage"] == [{"level": "t", "used": 1, "limit": 1}]
            assert (await admin.put("/rules", json={"pattern": "t", "concurrency": 2})).status_code == 200
            await until(lambda: "r2" in awakeables, "r2 to start once the limit is raised")
            assert (await admin.put("/rules", json={"pattern": "a/b/c/d", "concurrency": 2})).status_code == 400
            assert (await admin.delete("/rules", params={"pattern": "t"})).status_code == 200
            assert (await admin.delete("/rules", params={"pattern": "t"})).status_code == 404
            await resolve(http, "r1")
            await resolve(http, "r2")
            assert (await rt.attach(second, "Work/slow"))["name"] == "r2"


async def test_generic_call_carries_scope_and_limit_key(runtime) -> None:
    async with runtime(APP) as rt:
        assert await rt.call("Fan/generic") == ["g", "l1/l2"]


async def test_a_malformed_scope_fails_the_call_with_400(runtime) -> None:
    async with runtime(APP) as rt:
        answer = await rt.call("Fan/bad_scope")
        assert answer.startswith("400: invalid scope 'no spaces'")


async def test_scoped_ingress_paths(runtime) -> None:
    async with runtime(APP) as rt, rt.http() as http:
        resp = await http.post("/restate/scope/s1/call/Work/whoami?limit-key=k1/k2")
        assert (resp.status_code, resp.json()) == (200, ["s1", "k1/k2"])
        resp = await http.post("/restate/scope/s1/call/Work/whoami", headers={"x-restate-limit-key": "k9"})
        assert resp.json() == ["s1", "k9"]
        resp = await http.post("/restate/call/Work/whoami")
        assert resp.json() == [None, None]
        sent = await http.post("/restate/scope/s2/send/Work/whoami")
        assert sent.status_code == 202
        assert await rt.attach(sent.json()["invocationId"], "Work/whoami") == ["s2", None]
        refused = await http.post("/restate/call/Work/whoami?limit-key=k1")
        assert (refused.status_code, refused.json()["source"]) == (400, "ingress")
        assert "needs a scope" in refused.json()["message"]
        assert (await http.post("/restate/scope/bad%20scope/call/Work/whoami")).status_code == 400


async def test_scope_is_part_of_an_idempotent_requests_identity(runtime) -> None:
    async with runtime(APP) as rt, rt.http() as http:
        one = await http.post("/restate/scope/s1/send/Work/whoami", headers={"idempotency-key": "k"})
        again = await http.post("/restate/scope/s1/send/Work/whoami", headers={"idempotency-key": "k"})
        other = await http.post("/restate/scope/s2/send/Work/whoami", headers={"idempotency-key": "k"})
        assert one.json()["invocationId"] == again.json()["invocationId"] != other.json()["invocationId"]
        assert again.json()["status"] == "PreviouslyAccepted"


async def test_queued_invocations_survive_a_restart_still_limited(tmp_path) -> None:
    from durably.testing import TestRuntime

    awakeables.clear()
    rt = TestRuntime(APP, "sqlite", data_dir=tmp_path / "d", concurrency_rules={"t": 1})
    async with rt:
        first, second = await rt.call("Fan/fan_out", [["s1", ""], ["s2", ""]])
        await until(lambda: "s1" in awakeables, "s1 to run")
        await rt.restart()
        await rt.settle()
        assert status(rt, second) == INBOXED
        async with rt.http() as http:
            await until(lambda: "s1" in awakeables, "s1 to publish again")
            await resolve(http, "s1")
            await until(lambda: "s2" in awakeables, "s2 to run after s1")
            await resolve(http, "s2")
        assert (await rt.attach(second, "Work/slow"))["name"] == "s2"
        assert (await rt.attach(first, "Work/slow"))["name"] == "s1"


async def test_rules_changed_over_the_admin_api_survive_a_restart_and_flags_win(tmp_path) -> None:
    from durably.testing import TestRuntime

    rt = TestRuntime(APP, "sqlite", data_dir=tmp_path / "d", concurrency_rules={"t": 1})
    async with rt:
        rt.engine.set_concurrency_rule("t", 5)
        rt.engine.set_concurrency_rule("u/*", 2)
        rt.engine.set_concurrency_rule("gone", 3)
        assert rt.engine.set_concurrency_rule("gone", None)
        assert not rt.engine.set_concurrency_rule("never", None)
        await rt.engine.barrier()
        assert rt.engine.limiter.rules() == {"t": 5, "u/*": 2}
        await rt.restart()
        # The flag names "t": its value applies at start; the other changes came back from the store.
        assert rt.engine.limiter.rules() == {"t": 1, "u/*": 2}


async def test_restates_rule_book_api(runtime) -> None:
    # The shapes restate-server 1.7.12 answers with (its /openapi: upsert_rules, bulk_delete_rules).
    async with runtime(APP) as rt:
        admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine)), base_url="http://admin")
        async with admin:
            put = await admin.put("/limits/rules", json=[{"pattern": "t/*", "limits": {"concurrency": 3}},
                                                         {"pattern": "p", "limits": {"concurrency": 1},
                                                          "disabled": True, "description": "parked"}])
            assert put.status_code == 200
            first, parked = put.json()
            assert {k: first[k] for k in ("pattern", "limits", "disabled", "version")} == {
                "pattern": "t/*", "limits": {"concurrency": 3}, "disabled": False, "version": 1}
            assert isinstance(first["last_modified_millis_since_epoch"], int)
            assert (parked["disabled"], parked["description"]) == (True, "parked")
            assert rt.engine.limiter.rules() == {"t/*": 3}  # a parked rule constrains nothing
            again = await admin.put("/limits/rules", json=[{"pattern": "t/*", "limits": {"concurrency": 4}}])
            assert again.json()[0]["version"] == 2 and rt.engine.limiter.rules() == {"t/*": 4}
            bad = await admin.put("/limits/rules", json=[{"pattern": "ok", "limits": {"concurrency": 1}},
                                                         {"pattern": "a/b/c/d", "limits": {"concurrency": 1}}])
            assert bad.status_code == 422 and "a/b/c/d" in bad.json()["message"]
            assert "ok" not in rt.engine.limiter.rules()  # the batch applies whole or not at all
            deleted = await admin.post("/limits/rules/bulk-delete", json=[{"pattern": "t/*"}, {"pattern": "nope"}])
            assert (deleted.status_code, deleted.json()) == (200, ["t/*"])
            assert rt.engine.limiter.rules() == {}
