"""A call or send to a keyed handler without a key targets the empty key, as Restate does.

Restate 1.7.12 (checked with restate-sdk 1.2.0): `ctx.service_call(obj_handler)` is a Call with key "",
which runs the object on key "" (`ctx.key()` is "", state lands under key ""), exclusively like any key;
a workflow's main handler likewise runs once on key "", a second call fails with 409 "the workflow method
was already invoked" and a second send answers the first run's invocation id. `POST /Obj//handler` is the
same key "" over HTTP.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import durably
from durably import TerminalError

tally = durably.VirtualObject("Tally")


@tally.handler()
async def add(ctx: durably.ObjectContext, n: int) -> dict:
    count = (await ctx.get("count") or 0) + n
    await ctx.sleep(timedelta(milliseconds=1))  # only the key's lock keeps read-sleep-write whole
    ctx.set("count", count)
    return {"key": ctx.key(), "count": count}


@tally.handler(kind="shared")
async def peek(ctx: durably.ObjectSharedContext) -> dict:
    return {"key": ctx.key(), "count": await ctx.get("count")}


flow = durably.Workflow("Flow")


@flow.main()
async def run(ctx: durably.WorkflowContext, x: str) -> dict:
    ctx.set("seen", x)
    return {"key": ctx.key(), "x": x}


@flow.handler()
async def look(ctx: durably.WorkflowSharedContext) -> dict:
    return {"key": ctx.key(), "seen": await ctx.get("seen")}


caller = durably.Service("KeylessCaller")


@caller.handler()
async def call_add(ctx: durably.Context, n: int) -> dict:
    return await ctx.service_call(add, n)


@caller.handler()
async def send_add(ctx: durably.Context, n: int) -> str:
    return await ctx.service_send(add, n).invocation_id()


@caller.handler()
async def call_run(ctx: durably.Context, x: str) -> dict:
    return await ctx.service_call(run, x)


@caller.handler()
async def send_run(ctx: durably.Context, x: str) -> str:
    return await ctx.service_send(run, x).invocation_id()


@caller.handler()
async def call_look(ctx: durably.Context) -> dict:
    return await ctx.service_call(look)


APP = durably.app(services=[tally, flow, caller])


async def test_keyless_calls_to_an_object_run_on_the_empty_key_one_at_a_time(runtime) -> None:
    async with runtime(APP) as rt:
        results = await asyncio.gather(*(rt.call("KeylessCaller/call_add", 1) for _ in range(20)))
        assert sorted(r["count"] for r in results) == list(range(1, 21))
        assert {r["key"] for r in results} == {""}
        sent = await rt.call("KeylessCaller/send_add", 100)
        assert (await rt.attach(sent, "Tally//add")) == {"key": "", "count": 120}
        # The same object as an explicit empty key, and as `/Tally//...` over HTTP.
        assert await rt.call("Tally//peek") == {"key": "", "count": 120}
        assert await rt.call("Tally/other/peek") == {"key": "other", "count": None}


async def test_keyless_calls_to_a_workflow_run_it_once_on_the_empty_key(runtime) -> None:
    async with runtime(APP) as rt:
        assert await rt.call("KeylessCaller/call_run", "a") == {"key": "", "x": "a"}
        with pytest.raises(TerminalError) as info:
            await rt.call("KeylessCaller/call_run", "b")
        assert (info.value.status_code, info.value.message) == (409, "the workflow method was already invoked")
        first = await rt.call("KeylessCaller/send_run", "c")
        assert await rt.attach(first, "Flow//run") == {"key": "", "x": "a"}
        assert await rt.call("KeylessCaller/call_look") == {"key": "", "seen": "a"}


async def test_ingress_empty_key_segment_is_the_empty_key(runtime) -> None:
    async with runtime(APP) as rt, rt.http() as http:
        assert (await http.post("/Tally//add", json=5)).json() == {"key": "", "count": 5}
        assert (await rt.call("KeylessCaller/call_add", 1)) == {"key": "", "count": 6}
        sent = await http.post("/Tally//add/send", json=1)
        assert sent.status_code == 202
        assert await rt.attach(sent.json()["invocationId"], "Tally//add") == {"key": "", "count": 7}
        assert (await http.post("/Flow//run", json="d")).json() == {"key": "", "x": "d"}
        again = await http.post("/Flow//run", json="e")
        assert again.status_code == 409
        assert again.json()["message"] == "the workflow method was already invoked"
        assert (await http.post("/Flow//look")).json() == {"key": "", "seen": "d"}
        out = await http.get("/restate/workflow/Flow//output")
        assert (out.status_code, out.json()) == (200, {"key": "", "x": "d"})
        assert (await http.post("/Tally/add", json=1)).status_code == 400
