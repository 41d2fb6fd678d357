"""`--ingress-token` and `--admin-token`: every path but health needs `Authorization: Bearer <token>`."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import httpx
import pytest

import durably
from durably.server.http.admin import Admin
from durably.server.http.ingress import Ingress
from durably.server.process.listeners import guarded
from durably.testing import TestRuntime

INGRESS_TOKEN = "ingress-s3cret-token"
ADMIN_TOKEN = "admin-s3cret-token"
INV = "inv_1gdJBtdVEcM942bjcDmb1c1khoaJe11Hbz"

greeter = durably.Service("Greeter")


@greeter.handler()
async def greet(ctx: durably.Context, name: str) -> str:
    return f"hello {name}"


INGRESS_PATHS = [
    ("POST", "/Greeter/greet"), ("POST", "/Greeter/greet/send"), ("GET", "/Greeter/greet"),
    ("POST", "/Nope/greet"), ("GET", f"/restate/invocation/{INV}/attach"),
    ("GET", f"/restate/invocation/{INV}/output"), ("GET", "/restate/invocation/Greeter/greet/k/output"),
    ("GET", "/restate/workflow/W/k/attach"), ("POST", "/restate/awakeables/sign_1x/resolve"),
    ("POST", "/restate/awakeables/sign_1x/reject"), ("GET", "/restate/unknown"), ("GET", "/"),
]
ADMIN_PATHS = [
    ("GET", "/services"), ("GET", "/services/Greeter"), ("GET", "/invocations"), ("GET", f"/invocations/{INV}"),
    *[("PATCH", f"/invocations/{INV}/{a}") for a in ("cancel", "kill", "pause", "resume", "purge")],
    ("DELETE", f"/invocations/{INV}"), ("POST", "/deployments"), ("GET", "/deployments"),
    ("GET", "/deployments/dp_x"), ("DELETE", "/deployments/dp_x"), ("GET", "/v2/services"), ("GET", "/nowhere"),
]


@pytest.fixture
async def clients():
    cfg = SimpleNamespace(ingress_token=INGRESS_TOKEN, admin_token=ADMIN_TOKEN)
    async with TestRuntime(durably.app(services=[greeter])) as rt:
        assert rt.engine is not None
        ingress, admin = guarded(Ingress(rt.engine), Admin(rt.engine), cfg)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ingress), base_url="http://in") as i, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=admin), base_url="http://admin") as a:
            yield i, a


def _bad_credentials(token: str) -> list[dict[str, str]]:
    return [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {token}"},
            {"authorization": f"Bearer {token}x"}, {"authorization": f"Bearer {token[:-1]}"},
            {"authorization": "Bearer "}, {"x-token": token}]


@pytest.mark.parametrize(("method", "path"), INGRESS_PATHS)
async def test_every_ingress_path_needs_the_token(clients, method: str, path: str, caplog) -> None:
    ingress, _ = clients
    caplog.set_level(logging.DEBUG)
    for headers in _bad_credentials(INGRESS_TOKEN):
        resp = await ingress.request(method, path, json="Ada", headers=headers)
        assert resp.status_code == 401, (headers, resp.text)
        assert resp.json()["code"] == 401
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert INGRESS_TOKEN not in resp.text
    resp = await ingress.request(method, path, json="Ada", headers={"authorization": f"bearer {INGRESS_TOKEN}"})
    assert resp.status_code != 401
    assert INGRESS_TOKEN not in caplog.text


@pytest.mark.parametrize(("method", "path"), ADMIN_PATHS)
async def test_every_admin_path_needs_the_token(clients, method: str, path: str, caplog) -> None:
    _, admin = clients
    caplog.set_level(logging.DEBUG)
    for headers in [*_bad_credentials(ADMIN_TOKEN), {"authorization": f"Bearer {INGRESS_TOKEN}"}]:
        resp = await admin.request(method, path, headers=headers)
        assert resp.status_code == 401, (headers, resp.text)
        assert resp.headers["x-restate-error-source"] == "admin"
    resp = await admin.request(method, path, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert resp.status_code != 401
    assert ADMIN_TOKEN not in caplog.text


async def test_health_stays_open_and_the_token_works(clients) -> None:
    ingress, admin = clients
    assert (await ingress.get("/restate/health")).status_code == 200
    assert (await admin.get("/health")).status_code == 200
    assert (await admin.get("/v2/health")).status_code == 200
    resp = await ingress.post("/Greeter/greet", json="Ada", headers={"authorization": f"Bearer {INGRESS_TOKEN}"})
    assert (resp.status_code, resp.json()) == (200, "hello Ada")


async def test_the_ui_signs_in_with_the_admin_token_once(clients) -> None:
    """A browser cannot send the header: the UI's sign-in form turns the token into a strict cookie."""
    ingress, admin = clients
    resp = await admin.get("/ui/invocations")
    assert (resp.status_code, resp.headers["location"]) == (303, "/ui/login")
    assert (await admin.get("/ui/login")).status_code == 200
    wrong = await admin.post("/ui/login", data={"token": "guess"})
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers
    cross = await admin.post("/ui/login", data={"token": ADMIN_TOKEN}, headers={"origin": "http://evil.example"})
    assert (cross.status_code, "set-cookie" in cross.headers) == (403, False)
    ok = await admin.post("/ui/login", data={"token": ADMIN_TOKEN})
    assert (ok.status_code, ok.headers["location"]) == (303, "/ui")
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    signed_in = {"cookie": cookie.split(";", 1)[0]}
    assert (await admin.get("/ui/invocations", headers=signed_in)).status_code == 200
    assert (await admin.get("/services", headers=signed_in)).status_code == 200
    forged = {"cookie": "durably_admin_token=admin-s3cret-tokex"}
    assert (await admin.get("/services", headers=forged)).status_code == 401
    # The ingress has no sign-in: its token is for programs, and a cookie does not stand for it.
    resp = await ingress.post("/Greeter/greet", json="Ada", headers={"cookie": f"durably_admin_token={INGRESS_TOKEN}"})
    assert resp.status_code == 401
