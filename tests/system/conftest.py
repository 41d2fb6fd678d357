"""Fixtures for system tests: real `durably serve` processes on free ports, with their logs kept for failures."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
POLL_S = 0.01
START_TIMEOUT_S = 20.0
SERVING_LINE = "durably is serving"

_SERVERS_KEY = pytest.StashKey[list["ServerProcess"]]()


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float, what: str,
               on_timeout: Callable[[], str] | None = None) -> object:
    """Poll `condition` every few ms until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            extra = on_timeout() if on_timeout is not None else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(POLL_S)


class ServerProcess:
    """One `durably serve` subprocess. Every start picks fresh ports; the data dir is what persists."""

    def __init__(self, app_ref: str, data_dir: Path, log_path: Path) -> None:
        self.app_ref = app_ref
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.admin_port = 0
        # More `durably serve` options (e.g. limits), appended to the command line.
        self.extra_args: list[str] = []
        # Run in the child before it starts (e.g. to lower its resource limits).
        self.preexec_fn: Callable[[], None] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 15.0) -> httpx.Client:
        """An HTTP client for the ingress (close it, or use it in a `with`)."""
        return httpx.Client(base_url=self.url, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> ServerProcess:
        """Start the process and return once it serves (its own log says so and health answers)."""
        for _ in range(3):
            if self._start_once():
                return self
        pytest.fail(f"durably serve failed to start 3 times:\n{self.log()}")

    def _start_once(self) -> bool:
        self.port, self.admin_port = free_port(), free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
        with open(self.log_path, "ab") as log:
            log.write(f"=== starting on port {self.port} (admin {self.admin_port})\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "durably.cli.main", "serve", self.app_ref, "--port", str(self.port),
                 "--admin-port", str(self.admin_port), "--data-dir", str(self.data_dir), *self.extra_args],
                cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                preexec_fn=self.preexec_fn)
        proc = self.proc

        def serving_or_exited() -> str | None:
            if SERVING_LINE in self.log_from(offset):
                return "serving"
            if proc.poll() is not None:
                return "exited"
            return None

        state = wait_until(serving_or_exited, START_TIMEOUT_S, "durably serve to start",
                           lambda: f"\n{self.log()}")
        if state == "exited":
            if "address already in use" in self.log_from(offset):
                return False  # someone took the port between our probe and the bind: try other ports
            pytest.fail(f"durably serve exited with {proc.returncode} during startup:\n{self.log()}")
        # The serving line comes from our process, so this health check cannot reach somebody else's server.
        r = httpx.get(f"{self.url}/restate/health", timeout=5)
        assert r.status_code == 200, r.text
        return True

    def log_from(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float) -> int | None:
        """SIGTERM and wait up to `timeout` seconds; the exit code, or None if it did not exit in time.

        A process that hangs gets SIGABRT, so faulthandler writes every thread's stack to its log.
        """
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.ensure_dead()
            return None

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class ServerFactory:
    """Makes `ServerProcess`es for one test; the fixture kills whatever is left."""

    def __init__(self, tmp_path: Path, servers: list[ServerProcess]) -> None:
        self.tmp_path = tmp_path
        self.servers = servers

    def new(self, app: str = "crashy", data_dir: Path | None = None) -> ServerProcess:
        """A server for `tests/system/apps/<app>.py`, not started yet."""
        n = len(self.servers)
        server = ServerProcess(f"{APPS / (app + '.py')}:app", data_dir or self.tmp_path / "data",
                               self.tmp_path / f"server-{n}.log")
        self.servers.append(server)
        return server

    def start(self, app: str = "crashy", data_dir: Path | None = None) -> ServerProcess:
        """A started server (a fresh process on fresh ports, over `data_dir`, default `tmp_path/data`)."""
        return self.new(app, data_dir).start()


@pytest.fixture
def durably_serve(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerFactory]:
    """Start real `durably serve` processes; all are killed at teardown, and their logs shown on failure."""
    servers: list[ServerProcess] = []
    request.node.stash[_SERVERS_KEY] = servers
    try:
        yield ServerFactory(tmp_path, servers)
    finally:
        for s in servers:
            s.ensure_dead()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    servers = item.stash.get(_SERVERS_KEY, None)
    if report.failed and servers and report.when in ("setup", "call"):
        for i, s in enumerate(servers):
            report.sections.append((f"durably serve log #{i} ({s.log_path.name})", s.log()))
    return report
