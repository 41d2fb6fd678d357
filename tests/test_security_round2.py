"""Issue 20, round 2 of hardening: forged awakeable ids, DNS rebinding, credentials a handler must not see, the
UI's session, flash and headers, and admin input that used to answer 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from types import SimpleNamespace

import httpx
import pytest

import durably
from durably.protocol import protocol_pb2 as pb
from durably.protocol.ids import InvocationId, awakeable_id
from durably.server.engine.invocation import COMPLETED
from durably.server.http.admin import Admin
from durably.server.http.host_check import allowed_host_list
from durably.server.http.ingress import Ingress
from durably.server.process.listeners import host_checked
from durably.server.store.base import COL
from durably.testing import TestRuntime

published: dict[str, str] = {}
seen_headers: dict[str, dict[str, str]] = {}

svc = durably.Service("Sec")


@svc.handler()
async def wait_awakeable(ctx: durably.Context, tag: str) -> str:
    aw_id, aw = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", lambda: published.__setitem__(tag, aw_id))
    return await aw


@svc.handler()
async def resolve_other(ctx: durably.Context, req: dict) -> str:
    ctx.resolve_awakeable(req["id"], req.get("value", "x"))
    return "sent"


@svc.handler()
async def raw_signal(ctx: durably.Context, req: dict) -> str:
    """What a hand-made deployment could send: a signal by index (a built-in one, say)."""
    cmd = pb.SendSignalCommandMessage(target_invocation_id=req["target"], idx=req["idx"])
    cmd.void.SetInParent()
    ctx._vm_call(ctx._attempt.vm.sys_send_signal, cmd)
    return "sent"


@svc.handler()
async def cancel_other(ctx: durably.Context, target: str) -> str:
    ctx.cancel_invocation(target)
    return "cancelled"


@svc.handler()
async def headers(ctx: durably.Context, tag: str) -> dict[str, str]:
    seen_headers[tag] = dict(ctx.request().headers)
    return {k: v for k, v in ctx.request().headers.items() if k in ("authorization", "cookie")}


APP = durably.app(services=[svc])


async def until(cond: Callable[[], object], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 10.0
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def forged(inv: str, idx: int, prefix: str = "sign_1") -> str:
    return prefix + awakeable_id(InvocationId.parse(inv).to_bytes(), idx)[len("sign_1"):]


def status_of(rt: TestRuntime, inv: str) -> str | None:
    live = rt.engine.table.get(inv) if rt.engine is not None else None
    if live is not None:
        return live.status
    row = rt.store.load_invocation(inv)
    return None if row is None else row[COL["status"]]


@pytest.fixture
async def ingress_rt():
    async with TestRuntime(APP) as rt:
        assert rt.engine is not None
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=Ingress(rt.engine)),
                                     base_url="http://127.0.0.1:8080") as client:
            yield rt, client


# ---------------------------------------------------------------------------------------------- SEVERE 1


@pytest.mark.parametrize("path", ["awakeables", "a"])
@pytest.mark.parametrize("prefix", ["sign_1", "prom_1"])
@pytest.mark.parametrize("action", ["resolve", "reject"])
async def test_a_forged_cancel_signal_id_is_refused_and_cancels_nothing(ingress_rt, path: str, prefix: str,
                                                                        action: str) -> None:
    rt, client = ingress_rt
    inv = await rt.send("Sec/wait_awakeable", f"t-{path}-{prefix}-{action}")
    await until(lambda: f"t-{path}-{prefix}-{action}" in published, "the awakeable")
    for idx in (0, 1, 2, 16):
        resp = await client.post(f"/restate/{path}/{forged(inv, idx, prefix)}/{action}", json="x")
        assert resp.status_code == 400, resp.text
        body = resp.json()
        assert body["code"] == 400 and "built-in" in body["message"], body
        assert resp.headers["x-restate-error-source"] == "ingress"
    await rt.settle()
    assert status_of(rt, inv) != COMPLETED
    # The real awakeable id still works, with either prefix (a legacy id's index is read the same way).
    real = published[f"t-{path}-{prefix}-{action}"]
    real = prefix + real[len("sign_1"):]
    resp = await client.post(f"/restate/{path}/{real}/resolve", json="done")
    assert resp.status_code == 202, resp.text
    assert await rt.attach(inv, "Sec/wait_awakeable") == "done"


async def test_a_handler_cannot_cancel_through_resolve_awakeable(ingress_rt, caplog) -> None:
    rt, _ = ingress_rt
    inv = await rt.send("Sec/wait_awakeable", "handler")
    await until(lambda: "handler" in published, "the awakeable")
    assert await rt.call("Sec/resolve_other", {"id": forged(inv, 1)}) == "sent"
    await rt.settle()
    assert status_of(rt, inv) != COMPLETED
    assert "built-in" in caplog.text
    assert await rt.call("Sec/resolve_other", {"id": published["handler"], "value": "ok"}) == "sent"
    assert await rt.attach(inv, "Sec/wait_awakeable") == "ok"


async def test_built_in_signal_indexes_other_than_cancel_are_refused(ingress_rt, caplog) -> None:
    rt, _ = ingress_rt
    inv = await rt.send("Sec/wait_awakeable", "raw")
    await until(lambda: "raw" in published, "the awakeable")
    for idx in (0, 2, 16):
        assert await rt.call("Sec/raw_signal", {"target": inv, "idx": idx}) == "sent"
    await rt.settle()
    assert status_of(rt, inv) != COMPLETED
    assert "built-in signal" in caplog.text
    # ctx.cancel_invocation (the cancel signal, index 1) keeps working.
    assert await rt.call("Sec/cancel_other", inv) == "cancelled"
    with pytest.raises(durably.TerminalError) as e:
        await rt.attach(inv, "Sec/wait_awakeable")
    assert e.value.status_code == 409


# ---------------------------------------------------------------------------------------------- SEVERE 3


def _cfg(host: str, admin_host: str = "127.0.0.1", allowed: tuple[str, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(host=host, admin_host=admin_host, allowed_hosts=allowed)


async def _status(app, host: str, path: str = "/restate/invocation/inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz/output"
                  ) -> int:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
        return (await c.get(path, headers={"host": host})).status_code


async def test_the_host_check_follows_the_bind_address() -> None:
    async with TestRuntime(APP) as rt:
        assert rt.engine is not None
        ingress, admin = Ingress(rt.engine), Admin(rt.engine)
        # Loopback binds: loopback names and addresses only, any port; the health path is never checked.
        loop_in, loop_admin = host_checked(ingress, admin, _cfg("::1"))
        for host in ("localhost", "LOCALHOST:1", "127.0.0.1", "127.0.0.2:80", "[::1]:8080", "[::1]"):
            assert await _status(loop_in, host) == 404, host
        for host in ("evil.example", "evil.example:8080", "localhost.evil.example", "127.0.0.1.nip.io",
                     "localhost:x", "10.0.0.1"):
            assert await _status(loop_in, host) == 421, host
        assert await _status(loop_admin, "evil.example:9070", "/services") == 421
        assert await _status(loop_admin, "evil.example:9070", "/health") == 200
        assert await _status(loop_in, "evil.example", "/restate/health") == 200
        # Another interface keeps today's behaviour, unless names are given: then they are checked there too.
        open_in, _ = host_checked(ingress, admin, _cfg("0.0.0.0"))
        assert await _status(open_in, "anything.example") == 404
        named_in, _ = host_checked(ingress, admin, _cfg("10.1.2.3", allowed=allowed_host_list(["api.example"])))
        assert await _status(named_in, "api.example:8080") == 404
        assert await _status(named_in, "10.1.2.3:8080") == 404
        assert await _status(named_in, "localhost") == 404
        assert await _status(named_in, "other.example") == 421
        star_in, _ = host_checked(ingress, admin, _cfg("127.0.0.1", allowed=allowed_host_list(["*"])))
        assert await _status(star_in, "other.example") == 404


def test_allowed_host_values_are_checked() -> None:
    assert allowed_host_list(["a.example, B.example:81", "[::2]:9"]) == ("a.example", "b.example:81", "[::2]:9")
    with pytest.raises(ValueError, match="--allowed-host"):
        allowed_host_list(["a.example:port"])
