"""Issue 20, round 2 of hardening: forged awakeable ids, DNS rebinding, credentials a handler must not see, the
UI's session, flash and headers, and admin input that used to answer 500."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from types import SimpleNamespace

import httpx
import pytest

import durably
from durably.protocol import protocol_pb2 as pb
from durably.protocol.ids import InvocationId, awakeable_id
from durably.server.engine.flow_control import MAX_CONCURRENCY_LIMIT, FlowControlError, parse_rules
from durably.server.engine.invocation import COMPLETED
from durably.server.http.admin import Admin
from durably.server.http.host_check import allowed_host_list
from durably.server.http.ingress import Ingress
from durably.server.http.sessions import SESSION_SECONDS, SIGN_IN_BURST, SIGN_IN_REFILL_S
from durably.server.process.listeners import guarded, host_checked
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


obj = durably.VirtualObject("SecObj")


@obj.handler()
async def put(ctx: durably.ObjectContext, value: int) -> int:
    ctx.set("v", value)
    return value


APP = durably.app(services=[svc, obj])


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


# ---------------------------------------------------------------------------------------------- NOTABLE 6

INGRESS_TOKEN = "ingress-tok-7c1d9e2f"
ADMIN_TOKEN = "admin-tok-4b8a6f0e"


@pytest.fixture
async def guarded_apps():
    cfg = SimpleNamespace(ingress_token=INGRESS_TOKEN, admin_token=ADMIN_TOKEN)
    async with TestRuntime(APP) as rt:
        assert rt.engine is not None
        ingress, admin = guarded(Ingress(rt.engine), Admin(rt.engine), cfg)
        yield rt, ingress, admin


def client(app, base: str = "http://127.0.0.1:9070", addr: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(addr, 40000)), base_url=base)


async def test_the_ui_cookie_is_an_expiring_session_not_the_token(guarded_apps) -> None:
    _, ingress, admin = guarded_apps
    async with client(admin) as a:
        ok = await a.post("/ui/login", data={"token": ADMIN_TOKEN})
        assert ok.status_code == 303
        cookies = ok.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("durably_ui_session="))
        assert ADMIN_TOKEN not in " ".join(cookies)
        flags = [f.strip() for f in session.split(";")]
        assert {"HttpOnly", "SameSite=Strict", "Path=/", f"Max-Age={SESSION_SECONDS}"} <= set(flags), flags
        assert "Secure" not in flags
        # The older cookie, which held the token itself, is cleared and no longer signs anyone in.
        assert any(c.startswith("durably_admin_token=;") and "Max-Age=0" in c for c in cookies)
        value = session.split(";", 1)[0]
        assert (await a.get("/services", headers={"cookie": value})).status_code == 200
        assert (await a.get("/services", headers={"cookie": f"durably_admin_token={ADMIN_TOKEN}"})).status_code == 401
        assert (await a.get("/services", headers={"cookie": value[:-2] + "xx"})).status_code == 401
        # It expires.
        admin.sessions.now = lambda: time.time() + SESSION_SECONDS + 1
        assert (await a.get("/services", headers={"cookie": value})).status_code == 401
        assert (await a.get("/ui/invocations", headers={"cookie": value})).headers["location"] == "/ui/login"
    async with client(admin, "https://127.0.0.1:9070") as tls:
        ok = await tls.post("/ui/login", data={"token": ADMIN_TOKEN})
        session = next(c for c in ok.headers.get_list("set-cookie") if c.startswith("durably_ui_session="))
        assert "Secure" in [f.strip() for f in session.split(";")]
    # Only the admin listener takes it.
    async with client(ingress, "http://127.0.0.1:8080") as i:
        assert (await i.post("/Sec/headers", json="x", headers={"cookie": value})).status_code == 401


async def test_the_ingress_passes_on_none_of_durablys_credentials(guarded_apps) -> None:
    _, ingress, admin = guarded_apps
    async with client(admin) as a:
        session = (await a.post("/ui/login", data={"token": ADMIN_TOKEN})).headers["set-cookie"].split(";", 1)[0]
    cookie = f"theirs=1; {session}; durably_admin_token={ADMIN_TOKEN}; durably_ui_flash=z; other=2"
    async with client(ingress, "http://127.0.0.1:8080") as i:
        resp = await i.post("/Sec/headers", json="tok", headers={"authorization": f"Bearer {INGRESS_TOKEN}",
                                                                 "cookie": cookie})
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"cookie": "theirs=1; other=2"}
        resp = await i.post("/Sec/headers", json="only", headers={"authorization": f"Bearer {INGRESS_TOKEN}",
                                                                  "cookie": session})
        assert resp.json() == {}
    seen = json.dumps(seen_headers)
    assert INGRESS_TOKEN not in seen and ADMIN_TOKEN not in seen and session.split("=", 1)[1] not in seen


async def test_without_an_ingress_token_the_callers_own_authorization_reaches_the_handler(ingress_rt) -> None:
    _, c = ingress_rt
    resp = await c.post("/Sec/headers", json="own", headers={"authorization": "Bearer the-callers-own"})
    assert resp.json() == {"authorization": "Bearer the-callers-own"}
    # The UI's cookies are dropped whether or not the ingress has a token (browsers send them to every port).
    resp = await c.post("/Sec/headers", json="own", headers={"cookie": "durably_ui_session=1.abc.def; mine=1"})
    assert resp.json() == {"cookie": "mine=1"}


async def test_sign_in_attempts_are_throttled_per_client(guarded_apps) -> None:
    _, _, admin = guarded_apps
    async with client(admin, addr="10.0.0.7") as a, client(admin, addr="10.0.0.8") as b:
        for _ in range(SIGN_IN_BURST):
            assert (await a.post("/ui/login", data={"token": "guess"})).status_code == 401
        refused = await a.post("/ui/login", data={"token": ADMIN_TOKEN})
        assert refused.status_code == 429 and "set-cookie" not in refused.headers
        assert 1 <= int(refused.headers["retry-after"]) <= SIGN_IN_REFILL_S
        assert (await b.post("/ui/login", data={"token": ADMIN_TOKEN})).status_code == 303
        # Time refills the bucket (one attempt per SIGN_IN_REFILL_S).
        start = time.monotonic()
        admin.throttle.now = lambda: start + SIGN_IN_REFILL_S + 1
        assert (await a.post("/ui/login", data={"token": ADMIN_TOKEN})).status_code == 303


# ---------------------------------------------------------------------------------------------- MINOR: UI


async def test_ui_pages_forbid_framing_and_set_a_policy(guarded_apps) -> None:
    _, _, admin = guarded_apps
    async with client(admin) as a:
        login = await a.get("/ui/login")
        session = (await a.post("/ui/login", data={"token": ADMIN_TOKEN})).headers["set-cookie"].split(";", 1)[0]
        pages = [login] + [await a.get(p, headers={"cookie": session})
                           for p in ("/ui/invocations", "/ui/services", "/ui/state", "/ui/nowhere")]
        for resp in pages:
            assert resp.headers["x-frame-options"] == "DENY", resp.url
            csp = resp.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "form-action 'self'" in csp


async def test_a_link_cannot_set_the_flash_text(ingress_rt) -> None:
    rt, _ = ingress_rt
    inv = await rt.send("Sec/wait_awakeable", "flash")
    await until(lambda: "flash" in published, "the awakeable")
    async with client(Admin(rt.engine)) as a:
        lure = "Your session expired: paste your admin token at evil.example"
        for path in (f"/ui/services?msg={lure}", f"/ui/services?err={lure}", f"/ui/invocations/{inv}?err={lure}",
                     f"/ui/state?msg={lure}"):
            page = await a.get(path)
            assert page.status_code == 200 and "evil.example" not in page.text, path
        done = await a.post(f"/ui/invocations/{inv}/pause")
        assert done.status_code == 303
        flash = done.headers["set-cookie"]
        assert flash.startswith("durably_ui_flash=") and "HttpOnly" in flash and "Max-Age=" in flash
        shown = await a.get(done.headers["location"], headers={"cookie": flash.split(";", 1)[0]})
        assert '<div class="flash" role="status">paused</div>' in shown.text
        assert "durably_ui_flash=;" in shown.headers["set-cookie"]  # once
        # The same cookie does not vouch for other words.
        other = await a.get(f"/ui/invocations/{inv}?msg={lure}", headers={"cookie": flash.split(";", 1)[0]})
        assert "evil.example" not in other.text
        assert '<div class="flash"' not in (await a.get(done.headers["location"])).text


# ---------------------------------------------------------------------------------------------- MINOR: admin input

DEEP = b"[" * 20_000 + b"]" * 20_000  # far past the recursion limit, under every body limit
DEEP_OBJECT = b'{"object_key": "k", "new_state": ' + b'{"a":' * 10_000 + b"1" + b"}" * 10_000 + b"}"


async def test_deeply_nested_json_is_a_400_everywhere_on_the_admin_api() -> None:
    async with TestRuntime(APP) as rt:
        assert rt.engine is not None
        async with client(Admin(rt.engine)) as a:
            for method, path in (("POST", "/services/SecObj/state"), ("POST", "/deployments"), ("PUT", "/rules")):
                for body in (DEEP, DEEP_OBJECT):
                    resp = await a.request(method, path, content=body, headers={"content-type": "application/json"})
                    assert resp.status_code == 400, (path, resp.status_code, resp.text[:200])
                    assert resp.json()["code"] == 400 and "nested" in resp.json()["message"]
            resp = await a.put("/limits/rules", content=DEEP, headers={"content-type": "application/json"})
            assert resp.status_code == 422 and "nested" in resp.json()["message"]
            form = await a.post("/ui/state", data={"service": "SecObj", "key": "k", "state": DEEP.decode()})
            assert form.status_code == 400 and "nested" in form.text
            # The server still serves, and nothing changed.
            assert (await a.get("/services/SecObj/state/k")).json()["state"] == {}
            assert await rt.call("SecObj/k/put", 3) == 3


async def test_an_absurd_concurrency_limit_is_refused() -> None:
    async with TestRuntime(APP) as rt:
        assert rt.engine is not None
        async with client(Admin(rt.engine)) as a:
            for limit in (10**30, MAX_CONCURRENCY_LIMIT + 1):
                resp = await a.put("/rules", json={"pattern": "*", "concurrency": limit})
                assert resp.status_code == 400 and str(MAX_CONCURRENCY_LIMIT) in resp.json()["message"], resp.text
                resp = await a.put("/limits/rules", json=[{"pattern": "*", "limits": {"concurrency": limit}}])
                assert resp.status_code == 422 and str(MAX_CONCURRENCY_LIMIT) in resp.json()["message"], resp.text
            assert (await a.get("/rules")).json()["rules"] == []
            ok = await a.put("/rules", json={"pattern": "*", "concurrency": MAX_CONCURRENCY_LIMIT})
            assert ok.status_code == 200
    with pytest.raises(FlowControlError, match=str(MAX_CONCURRENCY_LIMIT)):
        parse_rules([f"*={10**30}"])
