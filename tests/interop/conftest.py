"""A real Restate server (npm @restatedev/restate-server) driving Durably apps served as `durably endpoint` does.

`scripts/test.sh` installs the server into `.interop/`. Each server runs on free ports in a temporary base
dir; one in the default bidirectional mode, one with a zero inactivity timeout, which forces
request/response mode and a suspension at every await (Restate's "always replay").
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from durably.hosting.endpoint_server import EndpointOptions, serve_app
from durably.sdk.service import App

ROOT = Path(__file__).resolve().parents[2]
RESTATE = ROOT / ".interop" / "node_modules" / ".bin" / "restate-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Deployment:
    """An App served with `durably endpoint`'s settings (HTTP/2 cleartext) on a thread of this process."""

    def __init__(self, app: App, max_requests: int | None = None) -> None:
        self.max_requests = max_requests
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._stop = asyncio.Event()
        if self.max_requests is None:
            # `durably endpoint`'s settings, in this process so tests can look at the handlers' side effects.
            opts = EndpointOptions(host="127.0.0.1", port=self.port, log_level="warning")
            self._loop.run_until_complete(serve_app(self._app, opts, shutdown_trigger=self._stop.wait))
            return
        # A hand-configured hypercorn that sends GOAWAY after `max_requests` (what `durably endpoint` avoids).
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.loglevel = "WARNING"
        config.keep_alive_max_requests = self.max_requests
        self._loop.run_until_complete(serve(self._app, config, shutdown_trigger=self._stop.wait))  # type: ignore[arg-type]

    def start(self) -> None:
        self._thread.start()
        wait_until(lambda: httpx.get(f"{self.url}/health").status_code == 200, 15, "hypercorn")

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class RestateServer:
    """A restate-server process on free ports."""

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        if not RESTATE.exists():
            pytest.fail(f"{RESTATE} is missing: run `bash scripts/test.sh`, which installs the Restate server")
        self.ingress = f"http://127.0.0.1:{free_port()}"
        self.admin = f"http://127.0.0.1:{free_port()}"
        node = free_port()
        full_env = dict(os.environ)
        full_env.update({
            "RESTATE_INGRESS__BIND_ADDRESS": self.ingress.removeprefix("http://"),
            "RESTATE_ADMIN__BIND_ADDRESS": self.admin.removeprefix("http://"),
            "RESTATE_BIND_ADDRESS": f"127.0.0.1:{node}",
            "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{node}/",
            "RESTATE_LISTEN_MODE": "tcp",
            "RESTATE_DEFAULT_RETRY_POLICY__INITIAL_INTERVAL": "50ms",
            "RESTATE_DEFAULT_RETRY_POLICY__MAX_INTERVAL": "200ms",
            **env,
        })
        self.log = base / "restate.log"
        self._log = self.log.open("wb")
        self.proc = subprocess.Popen([str(RESTATE), "--base-dir", str(base), "--no-logo"], env=full_env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: httpx.get(f"{self.admin}/health").status_code == 200
                       and httpx.get(f"{self.ingress}/restate/health").status_code == 200, 60, "restate-server")
        except AssertionError:
            self.stop()
            raise AssertionError("restate-server did not start:\n" + self.log.read_text()[-3000:]) from None

    def register(self, uri: str) -> dict:
        resp = httpx.post(f"{self.admin}/deployments", json={"uri": uri, "force": True}, timeout=30)
        assert resp.status_code in (200, 201), resp.text
        return resp.json()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def durably_deployment() -> Iterator[Deployment]:
    from .apps import app

    dep = Deployment(app)
    dep.start()
    yield dep
    dep.stop()


@pytest.fixture(scope="session", params=["bidi", "always-replay"])
def restate(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            durably_deployment: Deployment) -> Iterator[RestateServer]:
    env = {"RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT": "0s"} if request.param == "always-replay" else {}
    base = tmp_path_factory.mktemp(f"restate-{request.param}")
    server = RestateServer(base, env)
    try:
        server.register(durably_deployment.url)
        yield server
    finally:
        server.stop()
        if os.environ.get("DURABLY_KEEP_RESTATE_LOGS") is None:
            shutil.rmtree(base, ignore_errors=True)


SDK_VENV = ROOT / ".interop" / "sdk-venv"
# Every restate-sdk version the interop tests drive, and the venv `scripts/install-peers.sh` puts it in.
SDK_VENVS = {"1.2.0": SDK_VENV, "1.3.0": ROOT / ".interop" / "sdk13-venv"}


class SdkDeployment:
    """restate-sdk services (tests/interop/restate_sdk_app.py) served by hypercorn in their own venv."""

    def __init__(self, base: Path, env: dict[str, str] | None = None, version: str = "1.2.0") -> None:
        self.version = version
        hypercorn = SDK_VENVS[version] / "bin" / "hypercorn"
        if not hypercorn.exists():
            pytest.fail(f"{hypercorn} is missing: run `bash scripts/test.sh`, which installs restate-sdk there")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.effects = base / "effects.log"
        self.effects.touch()
        self.log = (base / "hypercorn.log").open("wb")
        env = dict(os.environ, RESTATE_APP_EFFECTS=str(self.effects), **(env or {}))
        self.proc = subprocess.Popen([str(hypercorn), "--bind", f"127.0.0.1:{self.port}", "restate_sdk_app:app"],
                                     cwd=Path(__file__).parent, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: httpx.get(f"{self.url}/health").status_code == 200, 30, "the restate-sdk deployment")

    def count(self, line: str) -> int:
        return sum(1 for x in self.effects.read_text().splitlines() if x.strip() == line)

    def lines(self) -> list[str]:
        return self.effects.read_text().splitlines()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="session", params=sorted(SDK_VENVS))
def sdk_deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkDeployment]:
    """The restate-sdk app served by each restate-sdk version in turn (the tests that use it run for both)."""
    dep = SdkDeployment(tmp_path_factory.mktemp(f"restate-sdk-{request.param}"), version=request.param)
    yield dep
    dep.stop()
