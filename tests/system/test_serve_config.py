"""A real `durably serve` configured by a TOML file and the environment, logging JSON lines: the ports and data
directory come from the file, the log format from the environment, and each invocation's lifecycle shows up
as JSON records with its id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import APPS, REPO_ROOT, free_port, wait_until

pytestmark = pytest.mark.system


def test_serve_from_a_config_file_with_json_logs(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    cfg = tmp_path / "durably.toml"
    cfg.write_text(f'app = "{APPS / "objects.py"}:app"\nport = {port}\nadmin_port = {admin_port}\n'
                   f'data_dir = "{tmp_path / "data"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_")}
    env.update(DURABLY_CONFIG=str(cfg), DURABLY_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "durably.cli.main", "serve"], cwd=REPO_ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def records() -> list[dict]:
            return [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]

        wait_until(lambda: any("durably is serving" in r["message"] for r in records()) or proc.poll() is not None,
                   20, "durably serve to start", lambda: log_path.read_text())
        assert proc.poll() is None, log_path.read_text()
        resp = httpx.post(f"http://127.0.0.1:{port}/Counter/cfg/add", json=3, timeout=10)
        assert resp.json() == 3
        inv = resp.headers["x-restate-id"]
        assert (tmp_path / "data" / "durably.sqlite3").exists()
        assert httpx.get(f"http://127.0.0.1:{admin_port}/health", timeout=5).status_code == 200
        events = lambda: [r["event"] for r in records() if r.get("invocation_id") == inv]  # noqa: E731
        wait_until(lambda: "completed" in events(), 10, "the completion line")
        assert events() == ["started", "completed"]
        done = next(r for r in records() if r.get("event") == "completed")
        assert done["level"] == "info" and done["service"] == "Counter" and done["duration_ms"] >= 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)
