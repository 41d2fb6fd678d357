"""`state_preload=[...]` against the real restate-server 1.7.12, which asks for endpoint manifests up to v4:
Durably's endpoint refuses the list form there exactly as restate-sdk 1.3.0 does (500 naming
eagerStateKeysWhitelist, so the registration fails), while True/False register and run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import durably

from .conftest import Deployment, RestateServer, SdkDeployment

pytestmark = pytest.mark.interop

listed = durably.VirtualObject("DurablyPreload", state_preload=["a"])


@listed.handler()
async def put(ctx: durably.ObjectContext) -> None:
    ctx.set("a", 1)


lazy = durably.VirtualObject("DurablyLazy", state_preload=False)


@lazy.handler()
async def add(ctx: durably.ObjectContext, n: int) -> int:
    total = (await ctx.get("total") or 0) + n
    ctx.set("total", total)
    return total


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestateServer]:
    srv = RestateServer(tmp_path_factory.mktemp("restate-preload"), {})
    try:
        yield srv
    finally:
        srv.stop()


def register(server: RestateServer, uri: str) -> httpx.Response:
    return httpx.post(f"{server.admin}/deployments", json={"uri": uri, "force": True}, timeout=30)


def test_the_list_form_is_refused_to_an_older_discovery_like_restate_sdk(server: RestateServer,
                                                                          tmp_path: Path) -> None:
    ours = Deployment(durably.app(services=[listed]))
    ours.start()
    theirs = SdkDeployment(tmp_path, version="1.3.0")
    try:
        answers = [register(server, ours.url), register(server, theirs.url)]
    finally:
        ours.stop()
        theirs.stop()
    for resp in answers:
        assert resp.status_code == 500, resp.text
        assert "500" in resp.json()["message"]
        assert "eagerStateKeysWhitelist is only supported in discovery protocol version 5" in resp.json()["message"]


def test_lazy_state_registers_and_runs(server: RestateServer) -> None:
    ours = Deployment(durably.app(services=[lazy]))
    ours.start()
    try:
        assert register(server, ours.url).status_code in (200, 201)
        for n, expected in ((2, 2), (3, 5)):
            resp = httpx.post(f"{server.ingress}/DurablyLazy/k/add", json=n, timeout=30)
            assert resp.status_code == 200, resp.text
            assert resp.json() == expected
        svc = httpx.get(f"{server.admin}/services/DurablyLazy").json()
        assert svc["enable_lazy_state"] is True
    finally:
        ours.stop()
