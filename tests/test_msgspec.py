"""msgspec Structs as parameter, return, run and state types, decoded and encoded like pydantic models."""

from __future__ import annotations

import json

import httpx
import msgspec
import pytest

import durably
from durably.serde import MsgspecJsonSerde


class Greeting(msgspec.Struct):
    name: str
    times: int = 1


class Reply(msgspec.Struct):
    message: str
    count: int


greeter = durably.Service("MsgGreeter")


@greeter.handler()
async def greet(ctx: durably.Context, req: Greeting) -> Reply:
    assert isinstance(req, Greeting), f"got {type(req).__name__}"
    reply = await ctx.run_typed("compose", lambda: Reply(message=f"Hello {req.name}!", count=req.times),
                                durably.RunOptions(type_hint=Reply))
    assert isinstance(reply, Reply)
    return reply


@greeter.handler()
async def relay(ctx: durably.Context, name: str) -> str:
    reply = await ctx.service_call(greet, Greeting(name=name, times=2))
    assert isinstance(reply, Reply)
    return f"{reply.message} x{reply.count}"


store = durably.VirtualObject("MsgStore")


@store.handler()
async def remember(ctx: durably.ObjectContext, req: Greeting) -> int:
    ctx.set("last", req)
    last = await ctx.get("last", type_hint=Greeting)
    assert isinstance(last, Greeting)
    return last.times


app = durably.app(services=[greeter, store])


@pytest.fixture
async def http(runtime):
    async with runtime(app) as rt, rt.http() as client:
        yield client


async def test_struct_in_and_out_over_http(http) -> None:
    resp = await http.post("/MsgGreeter/greet", json={"name": "Ada", "times": 3})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"message": "Hello Ada!", "count": 3}


async def test_struct_defaults_apply(http) -> None:
    resp = await http.post("/MsgGreeter/greet", json={"name": "Bo"})
    assert resp.json() == {"message": "Hello Bo!", "count": 1}


async def test_struct_passed_in_a_call(http) -> None:
    resp = await http.post("/MsgGreeter/relay", json="Cy")
    assert resp.status_code == 200, resp.text
    assert resp.json() == "Hello Cy! x2"


async def test_struct_as_state(http) -> None:
    resp = await http.post("/MsgStore/k/remember", json={"name": "Di", "times": 4})
    assert resp.json() == 4


async def test_bad_struct_input_is_400_with_msgspec_reason(http) -> None:
    resp = await http.post("/MsgGreeter/greet", json={"name": "Ed", "times": "many"})
    assert resp.status_code == 400
    message = resp.json()["message"]
    assert "MsgGreeter/greet" in message and "Expected `int`, got `str`" in message


async def test_discovery_has_the_struct_schema() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as client:
        resp = await client.get("/discover", headers={"accept": "application/vnd.restate.endpointmanifest.v3+json"})
    assert resp.status_code == 200, resp.text
    handlers = {h["name"]: h for h in resp.json()["services"][0]["handlers"]}
    schema = json.dumps(handlers["greet"]["input"]["jsonSchema"])
    assert "Greeting" in schema and "times" in schema


def test_msgspec_serde_round_trip() -> None:
    serde = MsgspecJsonSerde(Greeting)
    assert serde.deserialize(serde.serialize(Greeting(name="x"))) == Greeting(name="x")
    assert serde.serialize(None) == b"" and serde.deserialize(b"") is None
