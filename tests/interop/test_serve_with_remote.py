"""`durably serve` with a restate-sdk deployment registered through the CLI, killed mid-handler, restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import ROOT, SdkDeployment, free_port, wait_until

pytestmark = [pytest.mark.interop, pytest.mark.system]


class Serve:
    def __init__(self, data: Path, log: Path) -> None:
        self.data, self.log_path = data, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.port, self.admin = free_port(), free_port()
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "durably.cli.main", "serve", "examples/greeter.py", "--port", str(self.port),
             "--admin-port", str(self.admin), "--data-dir", str(self.data)],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: httpx.get(f"{self.ingress}/restate/health").status_code == 200, 30, "durably serve")

    @property
    def ingress(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, DURABLY_ADMIN_URL=f"http://127.0.0.1:{self.admin}", DURABLY_INGRESS_URL=self.ingress)
        return subprocess.run([sys.executable, "-m", "durably.cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)

    def kill(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)
        self.log.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    s = Serve(tmp_path / "data", tmp_path / "serve.log")
    s.start()
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.kill(signal.SIGKILL)


def test_sigkill_mid_remote_handler_then_finish_after_restart(serve: Serve, sdk_deployment: SdkDeployment,
                                                               tmp_path: Path) -> None:
    out = serve.cli("deployments", "register", sdk_deployment.url)
    assert out.returncode == 0, out.stderr
    assert "SdkGreeter (service)" in out.stdout
    key, gate = f"k-{uuid.uuid4()}", tmp_path / "gate"
    spec = {"n": 5, "key": key, "block_at": 2, "gate": str(gate)}
    sent = httpx.post(f"{serve.ingress}/SdkGreeter/steps/send", json=spec, headers={"idempotency-key": key})
    assert sent.status_code == 202
    wait_until(lambda: sdk_deployment.count(f"{key} step 2") == 1, 30, "step 2 to start")
    serve.kill(signal.SIGKILL)
    gate.touch()
    serve.start()  # the registration and the invocation come back from the data directory
    listed = serve.cli("deployments", "list")
    assert sdk_deployment.url in listed.stdout
    result = httpx.get(f"{serve.ingress}/restate/invocation/SdkGreeter/steps/{key}/attach", timeout=60)
    assert result.json() == ["v0", "v1", "v2", "v3", "v4"]
    counts = [sdk_deployment.count(f"{key} step {i}") for i in range(5)]
    assert counts == [1, 1, 2, 1, 1]  # committed steps never ran again; the one in flight ran twice
    dep_id = json.loads(serve.cli("deployments", "list", "--json").stdout)["deployments"][0]["id"]
    assert dep_id in listed.stdout
    assert serve.cli("deployments", "remove", dep_id).returncode == 0
    gone = httpx.post(f"{serve.ingress}/SdkGreeter/greet", json="x")
    assert gone.status_code == 404
