"""Drive the conformance services over HTTP (Durably's ingress and admin API, in process)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from durably import InvocationRetryPolicy
from durably.hosting.loader import load_app
from durably.server.http.admin import Admin
from durably.testing import TestRuntime

from . import services

# Run the scenarios against another app written to the same contracts (e.g. Restate's own test services
# with the import changed): DURABLY_CONFORMANCE_APP=path/to/testservices.py:app
app = load_app(os.environ["DURABLY_CONFORMANCE_APP"]) if os.environ.get("DURABLY_CONFORMANCE_APP") else services.app

T = TypeVar("T")

# Restate's suite runs with fast, unlimited retries that end in kill (UserErrors sets exactly this).
RETRIES = InvocationRetryPolicy(initial_interval=timedelta(milliseconds=5), max_interval=timedelta(milliseconds=20),
                                exponentiation_factor=1.0, on_max_attempts="kill")
WAIT = 15.0


@dataclass
class Suite:
    """One runtime with an ingress and an admin client, as the suite's tests see Restate."""

    rt: TestRuntime
    ingress: httpx.AsyncClient
    admin: httpx.AsyncClient
    always_replay: bool

    async def call(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        """POST to the ingress, with an idempotency key like the suite's `idempotentCallOptions`."""
        headers = {"idempotency-key": str(uuid.uuid4()), **kw.pop("headers", {})}
        if body is None:
            return await asyncio.wait_for(self.ingress.post(path, headers=headers, **kw), WAIT)
        return await asyncio.wait_for(self.ingress.post(path, json=body, headers=headers, **kw), WAIT)

    async def ok(self, path: str, body: Any = None, **kw: Any) -> Any:
        """POST and expect 200; returns the decoded JSON body."""
        resp = await self.call(path, body, **kw)
        assert resp.status_code == 200, f"{path}: {resp.status_code} {resp.text}"
        return resp.json() if resp.content else None

    async def send(self, path: str, body: Any = None) -> str:
        """POST .../send; returns the invocation id."""
        resp = await self.call(path.rstrip("/") + "/send", body)
        assert resp.status_code == 202, resp.text
        return resp.json()["invocationId"]

    async def attach(self, inv_id: str) -> httpx.Response:
        return await asyncio.wait_for(self.ingress.get(f"/restate/invocation/{inv_id}/attach"), WAIT)


async def until(check: Callable[[], Awaitable[T]], what: str) -> T:
    """Poll `check` until it returns something truthy without raising (awaitility's untilAsserted)."""
    deadline = asyncio.get_running_loop().time() + WAIT
    last: BaseException | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            value = await check()
            if value:
                return value
        except (AssertionError, httpx.HTTPError) as e:
            last = e
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def _clients(rt: TestRuntime) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt._engine())), base_url="http://admin")
    return rt.http(), admin


@pytest.fixture(params=["default", "always-replay"])
async def suite(request: pytest.FixtureRequest) -> AsyncIterator[Suite]:
    """The suite's two modes: Restate's default and its always-suspending mode (replay at every await)."""
    replay = request.param == "always-replay"
    async with TestRuntime(app, always_replay=replay, retry_policy=RETRIES) as rt:
        ingress, admin = _clients(rt)
        async with ingress, admin:
            yield Suite(rt, ingress, admin, replay)


@pytest.fixture(params=["default", "always-replay"])
def durable_suite(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], TestRuntime]:
    """A factory of runtimes on one SQLite data directory, for the restart scenarios."""
    replay = request.param == "always-replay"

    def make() -> TestRuntime:
        return TestRuntime(app, "sqlite", data_dir=tmp_path / "data", always_replay=replay, retry_policy=RETRIES)

    return make


def suite_of(rt: TestRuntime, replay: bool) -> Suite:
    ingress, admin = _clients(rt)
    return Suite(rt, ingress, admin, replay)
