"""`durably serve --drain`: a server being retired finishes what is in its store and refuses new invocations."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ServerFactory
from .test_crash_recovery import HANDLER, SERVICE, STEPS, effects, request_body, send, wait_for_step

pytestmark = pytest.mark.system


def test_draining_server_finishes_existing_invocations_and_refuses_new_ones(
        durably_serve: ServerFactory, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    first = durably_serve.start()
    inv_id = send(first, request_body(work, block_at=1), "in-flight")
    wait_for_step(first, work, 1, first.pid)
    first.kill()

    draining = durably_serve.new()
    draining.extra_args = ["--drain"]
    draining.start()
    assert "draining" in draining.log()
    with draining.client() as c:
        refused = c.post(f"/{SERVICE}/{HANDLER}", json=request_body(work))
        refused_send = c.post(f"/{SERVICE}/{HANDLER}/send", json=request_body(work), headers={"idempotency-key": "new"})
        (work / "gate").touch()
        done = c.get(f"/restate/invocation/{SERVICE}/{HANDLER}/in-flight/attach")
    assert refused.status_code == 503 and "draining" in refused.json()["message"], refused.text
    assert refused_send.status_code == 503
    assert done.status_code == 200, done.text
    assert done.headers["x-restate-id"] == inv_id
    assert done.json()["values"] == [f"value-{i}" for i in range(STEPS)]
    assert [step for step, _ in effects(work)].count(0) == 1  # the refused calls ran nothing
