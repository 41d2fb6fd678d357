"""One CLI for both runtimes: `durably deployments ...` and `durably invocations ...` against the real Restate
server's admin API (its invocations come from its SQL endpoint, shown in Durably's shape)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from durably.cli.main import main

from .apps import AWAKEABLES
from .conftest import Deployment, RestateServer, wait_until

pytestmark = pytest.mark.interop


@pytest.fixture
def fresh_restate(tmp_path: Path) -> Iterator[RestateServer]:
    base = tmp_path / "restate"
    base.mkdir()
    server = RestateServer(base, {})
    yield server
    server.stop()


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_deployments_and_invocations_commands_work_on_a_restate_server(
        fresh_restate: RestateServer, durably_deployment: Deployment) -> None:
    admin = ["--admin", fresh_restate.admin]
    code, out = cli("deployments", "register", durably_deployment.url, *admin)
    assert code == 0, out
    match = re.search(r"registered (dp_\w+) at", out)
    assert match, out
    dep_id = match.group(1)
    assert "InteropCounter (virtualobject)" in out

    code, out = cli("deployments", "list", *admin)
    assert code == 0 and dep_id in out and "InteropCounter" in out, out

    key = f"k-{uuid.uuid4().hex[:8]}"
    r = httpx.post(f"{fresh_restate.ingress}/InteropCounter/{key}/add", json=5, timeout=30)
    assert (r.status_code, r.json()) == (200, 5), r.text
    done_id = r.headers["x-restate-id"]

    code, out = cli("invocations", "list", "--service", "InteropCounter", "--key", key, *admin)
    assert code == 0, out
    assert done_id in out and f"InteropCounter/{key}/add" in out and "completed" in out, out

    code, out = cli("invocations", "describe", done_id, *admin)
    assert code == 0, out
    assert "completed (succeeded)" in out and "Command: Input" in out and "Command: Output" in out, out

    # An invocation holding its key: listed as invoked or suspended, then cancelled with the same command.
    r = httpx.post(f"{fresh_restate.ingress}/InteropCounter/{key}/hold/send", timeout=30)
    assert r.status_code == 202, r.text
    held = r.json()["invocationId"]
    wait_until(lambda: key in AWAKEABLES, 30, "the hold handler to publish its awakeable")
    code, out = cli("invocations", "list", "--json", "--key", key, *admin)
    assert code == 0, out
    assert re.search(rf'"id": "{held}",\s*"target": "InteropCounter/{key}/hold",\s*"status": "(invoked|suspended)"',
                     out), out
    code, out = cli("invocations", "cancel", held, *admin)
    assert (code, out.strip()) == (0, f"cancelled {held}")

    def cancelled() -> bool:
        c, o = cli("invocations", "describe", held, *admin)
        return c == 0 and "completed (failed)" in o

    wait_until(cancelled, 30, "the cancelled invocation to complete")
    code, out = cli("invocations", "describe", "inv_1doesnotexist0000000000000000000", *admin)
    assert code != 0

    # Restate removes a deployment only when forced; the CLI says so.
    code, out = cli("deployments", "remove", dep_id, *admin)
    assert code == 1 and "--force" in out, out
    code, out = cli("deployments", "remove", dep_id, "--force", *admin)
    assert (code, out.strip()) == (0, f"removed {dep_id}")
    code, out = cli("deployments", "list", *admin)
    assert code == 0 and dep_id not in out, out
