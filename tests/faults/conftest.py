"""Fault tests: real `durably serve` processes (tests/faults/apps/stepper.py) under storage and process faults.

`serve` starts processes with any extra options and data directory; whatever is left is killed at teardown
and the logs are shown when a test fails. A module that sets `PARTITIONS = (1, 2)` runs each of its tests
against `durably serve` and against `durably serve --partitions 2` (a supervisor and two partition processes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from system.conftest import free_port, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = f"{Path(__file__).resolve().parent / 'apps' / 'stepper.py'}:app"
SERVING_LINE = "durably is serving"
START_TIMEOUT_S = 20.0

_PROCS_KEY = pytest.StashKey[list["Serve"]]()


class Serve:
    """One `durably serve` process of the stepper app."""

    def __init__(self, data_dir: Path, log_path: Path, extra: tuple[str, ...]) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra = extra
        self.port = free_port()
        self.admin_port = free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "durably.cli.main", "serve", APP, "--port", str(self.port), "--admin-port",
                 str(self.admin_port), "--data-dir", str(data_dir), *extra],
                cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, timeout: float = 15.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def wait_serving(self) -> Serve:
        """Return once the process serves (its log says so), fail if it exits first."""
        state = wait_until(lambda: "serving" if SERVING_LINE in self.log() else
                           ("exited" if self.proc.poll() is not None else None),
                           START_TIMEOUT_S, "durably serve to start", lambda: f"\n{self.log()}")
        if state == "exited":
            pytest.fail(f"durably serve exited with {self.proc.returncode} during startup:\n{self.log()}")
        return self

    def wait_exit(self, timeout: float = START_TIMEOUT_S) -> int:
        """The exit code, waiting up to `timeout` seconds (stacks go to the log if it hangs)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(timeout=10)
            pytest.fail(f"durably serve did not exit within {timeout}s:\n{self.log()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def pids(self) -> set[int]:
        """The pids that run handlers: the process, and with partitions its partition processes (as of now)."""
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return {pid, *(int(c) for c in children)}

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


class ServeFactory:
    def __init__(self, tmp_path: Path, procs: list[Serve], partitions: int = 1) -> None:
        self.tmp_path = tmp_path
        self.procs = procs
        self.partitions = partitions

    def __call__(self, *extra: str, data_dir: Path | None = None) -> Serve:
        """Start `durably serve` (not waiting for it) over `data_dir` (default `tmp_path/data`)."""
        if self.partitions > 1:
            extra = ("--partitions", str(self.partitions), *extra)
        proc = Serve(data_dir or self.tmp_path / "data", self.tmp_path / f"serve-{len(self.procs)}.log", extra)
        self.procs.append(proc)
        return proc


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    counts = getattr(metafunc.module, "PARTITIONS", None)
    if counts and "partitions" in metafunc.fixturenames:
        metafunc.parametrize("partitions", counts, ids=[f"partitions-{n}" for n in counts])


@pytest.fixture
def partitions() -> int:
    """How many partitions `serve` starts (1 unless the module asks for more with PARTITIONS)."""
    return 1


@pytest.fixture
def serve(request: pytest.FixtureRequest, tmp_path: Path, partitions: int) -> Iterator[ServeFactory]:
    procs: list[Serve] = []
    request.node.stash[_PROCS_KEY] = procs
    try:
        yield ServeFactory(tmp_path, procs, partitions)
    finally:
        for p in procs:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(timeout=10)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The directory the stepper app and the test share (effects.log, gate)."""
    d = tmp_path / "work"
    d.mkdir()
    return d


def effects(work: Path) -> list[tuple[int, int]]:
    """(step, pid) for each step execution, in order."""
    path = work / "effects.log"
    if not path.exists():
        return []
    return [(int(step), int(pid)) for _, step, pid in (line.split() for line in path.read_text().splitlines())]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    procs = item.stash.get(_PROCS_KEY, None)
    if report.failed and procs and report.when in ("setup", "call"):
        for i, p in enumerate(procs):
            report.sections.append((f"durably serve log #{i}", p.log()))
    return report
