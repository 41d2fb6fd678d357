"""`state_preload` (restate-sdk 1.3) and the eager-state bound: what an invocation starts with, what is read lazily.

A preloaded read is one journal command; a lazy one is a command plus a "get state completion" notification.
The admin API's journal shows which it was.
"""

from __future__ import annotations

import httpx
import pytest
from test_admin import admin

import durably
from durably.sdk.endpoint import manifest
from durably.server.process.limits import DEFAULT_EAGER_STATE_LIMIT
from durably.server.remote.deployments import Deployment, services_from_manifest

BOTH = ("Cannot set both the 'state_preload' option and the deprecated 'enable_lazy_state' option at the same "
        "time. Use only 'state_preload'.")


def make_object(name: str, **options: object) -> durably.VirtualObject:
    obj = durably.VirtualObject(name, **options)  # type: ignore[arg-type]

    @obj.handler()
    async def fill(ctx: durably.ObjectContext, n: int) -> None:
        for i in range(n):
            ctx.set(f"k{i:07d}", i)

    @obj.handler()
    async def read(ctx: durably.ObjectContext, names: list[str]) -> list:
        return [await ctx.get(name) for name in names]

    @obj.handler(state_preload=False)
    async def read_lazily(ctx: durably.ObjectContext, names: list[str]) -> list:
        return [await ctx.get(name) for name in names]

    return obj


LISTED = make_object("Listed", state_preload=["k0000001"])
ALL = make_object("All")
LAZY = make_object("Lazy", state_preload=False)
OLD_LAZY = make_object("OldLazy", enable_lazy_state=True)
APP = durably.app(services=[LISTED, ALL, LAZY, OLD_LAZY])


async def lazy_reads(client: httpx.AsyncClient, inv: str) -> list[str]:
    """The state names an invocation read lazily, as its journal shows them (a read answered by a completion)."""
    body = (await client.get(f"/invocations/{inv}")).json()
    # These handlers only read state: the n-th read takes completion id n, eager or lazy.
    reads = [e["key"] for e in body["journal"] if e["type"] == "get state"]
    return [reads[e["completion_id"] - 1] for e in body["journal"] if e["type"] == "get state completion"]


async def run_read(rt, client: httpx.AsyncClient, target: str, names: list[str]) -> tuple[list, list[str]]:
    inv = await rt.send(target, names)
    result = await rt.attach(inv, target)
    return result, await lazy_reads(client, inv)


def test_state_preload_and_its_deprecated_alias_cannot_both_be_set() -> None:
    with pytest.raises(ValueError) as e:
        durably.VirtualObject("X", state_preload=True, enable_lazy_state=False)
    assert str(e.value) == BOTH
    with pytest.raises(ValueError) as e:
        durably.Workflow("W", state_preload=["a"], enable_lazy_state=True)
    assert str(e.value) == BOTH
    obj = durably.VirtualObject("Y")
    with pytest.raises(ValueError) as e:
        @obj.handler(state_preload=False, enable_lazy_state=True)
        async def h(ctx: durably.ObjectContext) -> None: ...
    assert str(e.value) == BOTH
    with pytest.raises(ValueError, match="list of state names"):
        durably.VirtualObject("Z", state_preload="a")  # type: ignore[arg-type]


async def test_a_listed_preload_reads_only_the_other_names_lazily(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        await rt.call("Listed/x/fill", 3)
        result, lazy = await run_read(rt, client, "Listed/x/read", ["k0000000", "k0000001", "k0000002", "nope"])
        assert result == [0, 1, 2, None]
        assert lazy == ["k0000000", "k0000002", "nope"]


async def test_preload_all_false_and_the_deprecated_alias(runtime) -> None:
    async with runtime(APP) as rt, admin(rt) as client:
        for svc in ("All", "Lazy", "OldLazy"):
            await rt.call(f"{svc}/x/fill", 2)
        assert await run_read(rt, client, "All/x/read", ["k0000000", "nope"]) == ([0, None], [])
        assert await run_read(rt, client, "Lazy/x/read", ["k0000000", "nope"]) == ([0, None], ["k0000000", "nope"])
        assert await run_read(rt, client, "OldLazy/x/read", ["k0000001"]) == ([1], ["k0000001"])
        # The handler's own setting wins over its service's.
        assert await run_read(rt, client, "All/x/read_lazily", ["k0000001"]) == ([1], ["k0000001"])


async def test_eager_state_is_bounded_and_the_rest_is_read_lazily(runtime) -> None:
    n = DEFAULT_EAGER_STATE_LIMIT.entries + 5
    last = f"k{n - 1:07d}"
    async with runtime(APP) as rt, admin(rt) as client:
        await rt.call("All/big/fill", n)
        result, lazy = await run_read(rt, client, "All/big/read", ["k0000000", last, "nope"])
        assert result == [0, n - 1, None]
        assert lazy == [last, "nope"]  # past the bound: read on demand; the first names came with the start


async def test_state_keys_and_writes_past_the_bound_are_seen(runtime) -> None:
    obj = durably.VirtualObject("Keys")

    @obj.handler()
    async def fill(ctx: durably.ObjectContext, n: int) -> None:
        for i in range(n):
            ctx.set(f"k{i:07d}", i)

    @obj.handler()
    async def change(ctx: durably.ObjectContext, n: int) -> list:
        ctx.clear("k0000000")
        ctx.set(f"k{n - 1:07d}", "changed")
        keys = await ctx.state_keys()
        return [len(keys), keys[0], await ctx.get(f"k{n - 1:07d}"), await ctx.get("k0000000")]

    n = DEFAULT_EAGER_STATE_LIMIT.entries + 3
    async with runtime(durably.app(services=[obj])) as rt:
        await rt.call("Keys/a/fill", n)
        assert await rt.call("Keys/a/change", n) == [n - 1, "k0000001", "changed", None]
        # The next invocation starts from what the previous one left, in and past the bound.
        assert await rt.call("Keys/a/change", n) == [n - 1, "k0000001", "changed", None]


def test_manifest_v5_carries_the_whitelist_and_older_versions_refuse_it() -> None:
    svc = manifest(APP, 5, "BIDI_STREAM")["services"]
    listed = next(s for s in svc if s["name"] == "Listed")
    assert listed["enableLazyState"] is True and listed["eagerStateKeysWhitelist"] == ["k0000001"]
    lazy = next(s for s in svc if s["name"] == "Lazy")
    assert lazy["enableLazyState"] is True and "eagerStateKeysWhitelist" not in lazy
    handler = next(h for h in lazy["handlers"] if h["name"] == "read_lazily")
    assert handler["enableLazyState"] is True
    with pytest.raises(ValueError, match="eagerStateKeysWhitelist is only supported in discovery protocol version 5"):
        manifest(APP, 4, "BIDI_STREAM")
    # Without the list form, an older manifest is fine.
    assert manifest(durably.app(services=[LAZY]), 4, "BIDI_STREAM")


async def test_discovery_negotiates_v5_and_answers_500_for_the_list_form_in_v4() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://app") as client:
        accept = ", ".join(f"application/vnd.restate.endpointmanifest.v{v}+json" for v in (5, 4))
        resp = await client.get("/discover", headers={"accept": accept})
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/vnd.restate.endpointmanifest.v5+json"
        assert any(s.get("eagerStateKeysWhitelist") == ["k0000001"] for s in resp.json()["services"])
        resp = await client.get("/discover", headers={"accept": "application/vnd.restate.endpointmanifest.v4+json"})
        assert resp.status_code == 500
        assert "eagerStateKeysWhitelist is only supported in discovery protocol version 5" in resp.text


def test_a_driven_deployments_whitelist_becomes_its_preload() -> None:
    dep = Deployment(id="dp_1", uri="http://x", use_http_11=False, additional_headers={}, protocol_mode="BIDI_STREAM",
                     protocol_version=6, manifest={}, created_at=0)
    services = services_from_manifest({"services": [{
        "name": "O", "ty": "VIRTUAL_OBJECT", "enableLazyState": True, "eagerStateKeysWhitelist": ["a"],
        "handlers": [{"name": "h", "ty": "EXCLUSIVE"},
                     {"name": "g", "ty": "SHARED", "enableLazyState": True, "eagerStateKeysWhitelist": ["b", "c"]},
                     {"name": "l", "ty": "EXCLUSIVE", "enableLazyState": True}]}]}, dep)
    handlers = services[0].handlers
    assert handlers["h"].preload() == ["a"]
    assert handlers["g"].preload() == ["b", "c"]
    assert handlers["l"].preload() is False
