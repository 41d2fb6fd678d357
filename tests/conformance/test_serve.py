"""The conformance services under a real `durably serve --always-replay` process, over real HTTP.

Covers what only a process shows: KillRuntime (SIGKILL) and StopRuntime (SIGTERM) keep the state, the
server-wide retry policy from Restate's environment variables, and kill over the admin API.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = Path(__file__).resolve().parent / "services.py"

pytestmark = pytest.mark.system


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _poll(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Serve:
    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir, self.log = data_dir, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.ingress = self.admin = ""

    def start(self) -> Serve:
        port, admin = _free_port(), _free_port()
        self.ingress, self.admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
        env = dict(os.environ, RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS="1",
                   RESTATE_DEFAULT_RETRY_POLICY__ON_MAX_ATTEMPTS="kill",
                   RESTATE_DEFAULT_RETRY_POLICY__INITIAL_INTERVAL="1ms")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "durably.cli.main", "serve", f"{SERVICES}:app", "--always-replay",
                 "--port", str(port), "--admin-port", str(admin), "--data-dir", str(self.data_dir),
                 "--concurrency-limit", "conformance=4"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _poll(lambda: httpx.get(f"{self.ingress}/restate/health", timeout=2).status_code == 200
              and httpx.get(f"{self.admin}/health", timeout=2).status_code == 200, "durably serve to start")
        return self

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return httpx.post(f"{self.ingress}{path}", json=body, timeout=20,
                          headers={"idempotency-key": str(uuid.uuid4())})

    def stop(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=20)

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    server = Serve(tmp_path / "data", tmp_path / "serve.log")
    try:
        yield server
    finally:
        server.ensure_dead()


def test_kill_and_stop_runtime_keep_state_and_serve_applies_restates_retry_env(serve: Serve) -> None:
    try:
        serve.start()
        assert serve.post("/Counter/my-key/add", 1).json() == {"oldValue": 0, "newValue": 1}
        # RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS=1 + kill: the journal mismatch of the replayed attempt
        # ends the invocation at once (570) instead of retrying.
        assert serve.post("/Counter/eitherSleepOrCall/add", 1).status_code == 200
        mismatch = serve.post("/NonDeterministic/eitherSleepOrCall/eitherSleepOrCall")
        assert mismatch.status_code == 570, mismatch.text
        assert mismatch.json()["source"] == "invocation"

        serve.stop(signal.SIGKILL)  # KillRuntime
        serve.start()
        assert serve.post("/Counter/my-key/add", 2).json() == {"oldValue": 1, "newValue": 3}

        serve.stop(signal.SIGTERM)  # StopRuntime
        serve.start()
        assert serve.post("/Counter/my-key/add", 3).json() == {"oldValue": 3, "newValue": 6}

        # KillInvocation over the admin API of the real process.
        key = str(uuid.uuid4())
        sent = httpx.post(f"{serve.ingress}/KillTestRunner/{key}/startCallTree/send", timeout=20)
        inv = sent.json()["invocationId"]
        _poll(lambda: serve.post(f"/AwakeableHolder/{key}/hasAwakeable").json() is True, "the awakeable")
        assert serve.post(f"/AwakeableHolder/{key}/unlock", "cancel").status_code == 200
        _poll(lambda: httpx.patch(f"{serve.admin}/invocations/{inv}/kill", timeout=5).status_code == 200, "kill")
        assert serve.post(f"/KillTestSingleton/{key}/isUnlocked").status_code == 200
        rules = httpx.get(f"{serve.admin}/rules", timeout=5).json()
        assert rules["rules"] == [{"pattern": "conformance", "concurrency": 4}]
        # Restate's `restate rules set|list|delete`, as `durably rules`.
        cli = [sys.executable, "-m", "durably.cli.main", "rules"]
        subprocess.run([*cli, "set", "checkout/*", "--concurrency", "5", "--admin", serve.admin], check=True,
                       cwd=ROOT, capture_output=True, timeout=30)
        listed = subprocess.run([*cli, "list", "--json", "--admin", serve.admin], check=True, cwd=ROOT,
                                capture_output=True, timeout=30)
        assert json.loads(listed.stdout)["rules"] == [{"pattern": "checkout/*", "concurrency": 5},
                                                      {"pattern": "conformance", "concurrency": 4}]
        gone = subprocess.run([*cli, "delete", "nope", "--admin", serve.admin], cwd=ROOT, capture_output=True,
                              timeout=30)
        assert gone.returncode != 0 and b"no rule" in gone.stderr
    except BaseException:
        print(serve.log.read_text(errors="replace"))
        raise
