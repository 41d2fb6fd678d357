"""The HTTP ingress: Restate's paths, status codes and error bodies; bad input never hurts the server."""

from __future__ import annotations

import asyncio

import pytest

import durably
from durably import TerminalError
from durably.protocol.ids import InvocationId


def make_app() -> tuple[durably.App, asyncio.Event]:
    svc = durably.Service("Greeter")
    gate = asyncio.Event()

    @svc.handler()
    async def greet(ctx: durably.Context, name: str) -> str:
        return await ctx.run_typed("hello", lambda: f"Hello {name}!")

    @svc.handler()
    async def noarg(ctx: durably.Context) -> str:
        return "no input"

    @svc.handler()
    async def wait(ctx: durably.Context) -> str:
        await ctx.run_typed("gate", gate.wait)
        return "opened"

    @svc.handler()
    async def fail(ctx: durably.Context, code: int) -> str:
        raise TerminalError("failed on purpose", code, {"why": "test"})

    @svc.handler(ingress_private=True)
    async def internal(ctx: durably.Context) -> str:
        return "secret"

    return durably.app(services=[svc]), gate


@pytest.fixture
async def client(runtime):
    app, gate = make_app()
    async with runtime(app) as rt, rt.http(body_limit=1024) as http:
        http.gate = gate  # type: ignore[attr-defined]
        http.rt = rt  # type: ignore[attr-defined]
        yield http


async def test_call_returns_output_and_invocation_id(client) -> None:
    resp = await client.post("/Greeter/greet", json="Ada")
    assert resp.status_code == 200
    assert resp.json() == "Hello Ada!"
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["x-restate-id"].startswith("inv_1")


async def test_get_without_body_on_no_input_handler(client) -> None:
    resp = await client.get("/Greeter/noarg")
    assert (resp.status_code, resp.json()) == (200, "no input")
    resp = await client.post("/Greeter/noarg", json="unexpected")
    assert resp.status_code == 400


async def test_terminal_error_maps_to_status_and_body(client) -> None:
    resp = await client.post("/Greeter/fail", json=418)
    assert resp.status_code == 418
    assert resp.json() == {"code": 418, "message": "failed on purpose", "metadata": {"why": "test"},
                           "source": "invocation"}
    assert resp.headers["x-restate-error-source"] == "invocation"
    resp = await client.post("/Greeter/fail", json=777)  # not an HTTP status: 500, code kept in the body
    assert resp.status_code == 500
    assert resp.json()["code"] == 777


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/Nope/greet", b'"x"', 404),
        ("POST", "/Greeter/nope", b'"x"', 404),
        ("POST", "/Greeter/greet", b"{not json", 400),
        ("POST", "/Greeter/greet", b"x" * 2048, 413),
        ("POST", "/Greeter/internal", b"", 400),
        ("POST", "/Greeter/greet?delay=10s", b'"x"', 400),
        ("POST", "/Greeter/greet/send?delay=10years", b'"x"', 400),
        ("POST", "/Greeter/greet/send?delay=P1Y", b'"x"', 400),
        ("GET", "/restate/invocation/inv_123/output", b"", 400),
        ("GET", "/restate/invocation/not-an-id/attach", b"", 400),
        ("GET", f"/restate/invocation/{InvocationId(1, 2)}/output", b"", 404),
        ("DELETE", "/Greeter/greet", b"", 405),
        ("POST", "/", b"", 404),
    ],
)
async def test_bad_requests_get_json_errors_and_server_keeps_serving(client, method, path, body, status) -> None:
    resp = await client.request(method, path, content=body, headers={"content-type": "application/json"})
    assert resp.status_code == status
    payload = resp.json()
    assert payload["code"] == status
    assert isinstance(payload["message"], str) and payload["message"]
    assert resp.headers["x-restate-error-source"] == "ingress"
    assert payload["source"] == "ingress"  # Restate puts it in the body too
    ok = await client.post("/Greeter/greet", json="still here")
    assert ok.json() == "Hello still here!"


async def test_bad_requests_write_nothing(client) -> None:
    await client.post("/Greeter/greet", content=b"{not json")
    await client.post("/Greeter/greet", content=b"x" * 2048)
    await client.rt.engine.flushed()
    assert client.rt.store.list_invocations() == []


async def test_send_returns_202_and_idempotency_key_dedups(client) -> None:
    first = await client.post("/Greeter/greet/send", json="Bo", headers={"idempotency-key": "k1"})
    assert first.status_code == 202
    body = first.json()
    assert body["status"] == "Accepted"
    assert body["invocationId"].startswith("inv_1")
    again = await client.post("/Greeter/greet/send", json="Bo", headers={"idempotency-key": "k1"})
    assert again.json() == {"invocationId": body["invocationId"], "status": "PreviouslyAccepted"}
    call = await client.post("/Greeter/greet", json="Bo", headers={"idempotency-key": "k1"})
    assert call.json() == "Hello Bo!"
    assert call.headers["x-restate-id"] == body["invocationId"]
    by_key = await client.get("/restate/invocation/Greeter/greet/k1/attach")
    assert by_key.json() == "Hello Bo!"
    by_id = await client.get(f"/restate/invocation/{body['invocationId']}/output")
    assert by_id.json() == "Hello Bo!"
    other = await client.post("/Greeter/greet", json="Cy", headers={"idempotency-key": "k2"})
    assert other.headers["x-restate-id"] != body["invocationId"]


async def test_output_is_470_while_running_and_attach_waits(client) -> None:
    sent = await client.post("/Greeter/wait/send")
    inv = sent.json()["invocationId"]
    pending = await client.get(f"/restate/invocation/{inv}/output")
    assert pending.status_code == 470
    assert pending.json()["code"] == 470
    attach = asyncio.create_task(client.get(f"/restate/invocation/{inv}/attach"))
    await client.rt.engine.flushed()
    assert not attach.done()
    client.gate.set()
    resp = await attach
    assert (resp.status_code, resp.json()) == (200, "opened")


async def test_health(client) -> None:
    resp = await client.get("/restate/health")
    assert resp.status_code == 200
