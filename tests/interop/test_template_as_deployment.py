"""The template-shaped script (tests/system/apps/template/__main__.py) run with `python __main__.py` and no
DURABLY_EMBEDDED is a plain deployment: the real Restate server registers it and drives its handler."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import RestateServer, free_port, wait_until

pytestmark = pytest.mark.interop

TEMPLATE = Path(__file__).resolve().parents[1] / "system" / "apps" / "template" / "__main__.py"


@pytest.fixture
def template_deployment(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLY_")}
    env["TEMPLATE_BIND"] = f"127.0.0.1:{port}"
    with open(tmp_path / "script.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(TEMPLATE)], cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/health").status_code == 200, 20, "the template script")
        yield url
    finally:
        proc.kill()
        proc.wait(10)
    assert not (tmp_path / "durably-data").exists()


def test_restate_drives_the_unchanged_template_script(tmp_path: Path, template_deployment: str) -> None:
    (tmp_path / "restate").mkdir()
    server = RestateServer(tmp_path / "restate", {})
    try:
        reg = server.register(template_deployment)
        assert [s["name"] for s in reg["services"]] == ["Steps"]
        work = tmp_path / "work"
        work.mkdir()
        r = httpx.post(f"{server.ingress}/Steps/run", json={"dir": str(work), "steps": 3}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json() == ["value-0", "value-1", "value-2"]
        assert len((work / "effects.log").read_text().splitlines()) == 3
    finally:
        server.stop()
