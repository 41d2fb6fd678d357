"""Drive the conformance services over HTTP: Durably's ingress and admin API in process, or a real
`durably serve --partitions 2` process group (the `partitions-2` modes)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
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

    rt: TestRuntime | None  # None: a served process group (see `Served`)
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


ROOT = Path(__file__).resolve().parents[2]
SERVICES = Path(__file__).resolve().parent / "services.py"
# RETRIES, as Restate's environment variables (what `durably serve` reads, like restate-server).
RETRY_ENV = {"RESTATE_DEFAULT_RETRY_POLICY__INITIAL_INTERVAL": "5ms",
             "RESTATE_DEFAULT_RETRY_POLICY__MAX_INTERVAL": "20ms",
             "RESTATE_DEFAULT_RETRY_POLICY__EXPONENTIATION_FACTOR": "1.0",
             "RESTATE_DEFAULT_RETRY_POLICY__ON_MAX_ATTEMPTS": "kill"}
ONE_ATTEMPT_ENV = {**RETRY_ENV, "RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A real `durably serve` of the conformance services (with `--partitions N`), over real HTTP."""

    def __init__(self, data_dir: Path, log: Path, partitions: int, replay: bool, env: dict[str, str]) -> None:
        self.data_dir, self.log, self.partitions, self.replay, self.env = data_dir, log, partitions, replay, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.ingress = self.admin = ""

    def start(self) -> Served:
        """Start the process (group) and return once the ingress and the admin API answer."""
        port, admin = _free_port(), _free_port()
        self.ingress, self.admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
        args = [sys.executable, "-m", "durably.cli.main", "serve", f"{SERVICES}:app", "--port", str(port),
                "--admin-port", str(admin), "--data-dir", str(self.data_dir), "--partitions", str(self.partitions)]
        if self.replay:
            args.append("--always-replay")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **self.env}, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"durably serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if (httpx.get(f"{self.ingress}/restate/health", timeout=2).status_code == 200
                        and httpx.get(f"{self.admin}/health", timeout=2).status_code == 200):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"durably serve did not start:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the process (SIGKILL: the whole group dies as in a crash) and wait for it to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError(f"durably serve did not stop on {sig}:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def suite(self) -> Suite:
        """Clients on this process's ingress and admin API (close them with `async with`)."""
        return Suite(None, httpx.AsyncClient(base_url=self.ingress, timeout=WAIT),
                     httpx.AsyncClient(base_url=self.admin, timeout=WAIT), self.replay)


class ServedPool:
    """One served process group per mode and retry setting, shared by the tests of a session."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._servers: dict[tuple[bool, str], Served] = {}

    def get(self, replay: bool, policy: str = "retries") -> Served:
        key = (replay, policy)
        if key not in self._servers:
            name = f"p2-{'replay' if replay else 'default'}-{policy}"
            env = ONE_ATTEMPT_ENV if policy == "one-attempt" else RETRY_ENV
            self._servers[key] = Served(self.base / name, self.base / f"{name}.log", 2, replay, env).start()
        return self._servers[key]

    def close(self) -> None:
        for served in self._servers.values():
            served.stop(signal.SIGTERM)


@pytest.fixture(scope="session")
def served_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedPool]:
    pool = ServedPool(tmp_path_factory.mktemp("served"))
    try:
        yield pool
    finally:
        pool.close()


SERVED = pytest.mark.system
MODES = ["default", "always-replay", pytest.param("partitions-2", marks=SERVED),
         pytest.param("partitions-2-always-replay", marks=SERVED)]


@pytest.fixture(params=MODES)
async def suite(request: pytest.FixtureRequest) -> AsyncIterator[Suite]:
    """The suite's two modes, Restate's default and its always-suspending mode (replay at every await), each
    in process and against a real `durably serve --partitions 2` (calls between partitions included)."""
    mode: str = request.param
    replay = mode.endswith("always-replay")
    if mode.startswith("partitions-2"):
        served: Served = request.getfixturevalue("served_pool").get(replay)
        suite = served.suite()
        async with suite.ingress, suite.admin:
            try:
                yield suite
            except BaseException:
                print(served.output()[-20000:])
                raise
        return
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


@contextlib.asynccontextmanager
async def one_attempt(suite: Suite, request: pytest.FixtureRequest) -> AsyncIterator[Suite]:
    """The suite's setting for a scenario that must not retry: one attempt, then kill."""
    if suite.rt is not None:
        options = suite.rt.options
        options.default_retry_policy = dataclasses.replace(options.default_retry_policy, max_attempts=1,
                                                           on_max_attempts="kill")
        yield suite
        return
    served: Served = request.getfixturevalue("served_pool").get(suite.always_replay, "one-attempt")
    other = served.suite()
    async with other.ingress, other.admin:
        yield other


def suite_of(rt: TestRuntime, replay: bool) -> Suite:
    ingress, admin = _clients(rt)
    return Suite(rt, ingress, admin, replay)
