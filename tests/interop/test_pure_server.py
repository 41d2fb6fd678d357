"""`durably serve` with no APP is a pure server, like restate-server: ingress, admin and remote deployments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import ROOT, SdkDeployment, free_port, wait_until

pytestmark = [pytest.mark.interop, pytest.mark.system]


def test_serve_without_an_app_drives_registered_deployments(sdk_deployment: SdkDeployment, tmp_path: Path) -> None:
    port, admin = free_port(), free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "durably.cli.main", "serve", "--port", str(port), "--admin-port",
                                 str(admin), "--data-dir", str(tmp_path / "data")],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        ingress, admin_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
        wait_until(lambda: proc.poll() is not None or httpx.get(f"{ingress}/restate/health").status_code == 200,
                   30, "durably serve")
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        assert httpx.get(f"{admin_url}/services").json()["services"] == []
        reg = httpx.post(f"{admin_url}/deployments", json={"uri": sdk_deployment.url}, timeout=30)
        assert reg.status_code == 201, reg.text
        resp = httpx.post(f"{ingress}/SdkGreeter/greet", json="Pure", timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["hello"] == "Hello Pure!"
        assert "no app of its own" in (tmp_path / "serve.log").read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
