"""Crash recovery of a real `durably serve` process: SIGKILL, SIGTERM, idempotency and bad input.

The handler under test is `Crashy/run` (tests/system/apps/crashy.py). The test and the handler talk only through
files: the handler logs each step's side effect to `effects.log` and each attempt's deterministic values to
`values.log`; the test releases the blocking step by creating `gate`. No sleeps: every wait polls a condition.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import httpx
import pytest

from .conftest import ServerFactory, ServerProcess, wait_until

pytestmark = pytest.mark.system

SERVICE = "Crashy"
HANDLER = "run"
STEPS = 5
WAIT_S = 15.0
EXIT_TIMEOUT_S = 6.0


def effects(work: Path) -> list[tuple[int, int]]:
    """(step, pid) for every line of effects.log, in order."""
    path = work / "effects.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        word, step, pid = line.split()
        assert word == "step", line
        out.append((int(step), int(pid)))
    return out


def attempt_values(work: Path) -> list[dict]:
    path = work / "values.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for_step(server: ServerProcess, work: Path, step: int, pid: int) -> None:
    """Wait until process `pid` has started `step` (its effect line is on disk)."""
    wait_until(lambda: (step, pid) in effects(work), WAIT_S, f"step {step} to start in pid {pid}",
               lambda: f"\neffects: {effects(work)}\n{server.log()}")


def request_body(work: Path, block_at: int = -1, async_steps: bool = False) -> dict:
    return {"dir": str(work), "steps": STEPS, "block_at": block_at, "async_steps": async_steps}


def send(server: ServerProcess, body: dict, key: str) -> str:
    """POST .../send with an idempotency key; returns the invocation id."""
    with server.client() as c:
        r = c.post(f"/{SERVICE}/{HANDLER}/send", json=body, headers={"idempotency-key": key})
    assert r.status_code == 202, r.text
    payload = r.json()
    assert payload["status"] == "Accepted", payload
    return payload["invocationId"]


def attach_by_key(server: ServerProcess, key: str) -> httpx.Response:
    with server.client() as c:
        return c.get(f"/restate/invocation/{SERVICE}/{HANDLER}/{key}/attach")


def assert_full_result(result: dict, inv_id: str, work: Path) -> None:
    assert result["values"] == [f"value-{i}" for i in range(STEPS)]
    assert result["invocation"] == inv_id
    for attempt in attempt_values(work):
        assert (attempt["uuid"], attempt["random"], attempt["time"]) == (
            result["uuid"], result["random"], result["time"]), attempt


def assert_step_history(work: Path, block_at: int, first_pid: int, second_pid: int) -> None:
    """Steps before the blocked one ran once (first process), it ran in both, later ones once (second)."""
    history = effects(work)
    expected = ([(i, first_pid) for i in range(block_at)] + [(block_at, first_pid), (block_at, second_pid)]
                + [(i, second_pid) for i in range(block_at + 1, STEPS)])
    counts = Counter(step for step, _ in history)
    for i in range(block_at):
        assert counts[i] == 1, f"step {i} was committed before the crash but ran {counts[i]} times: {history}"
    assert counts[block_at] == 2, f"step {block_at} (in flight at the crash) ran {counts[block_at]} times: {history}"
    assert history == expected


def assert_same_values_across_attempts(work: Path, pids: list[int]) -> None:
    attempts = attempt_values(work)
    assert [a["pid"] for a in attempts] == pids, attempts
    first = attempts[0]
    for a in attempts[1:]:
        assert (a["uuid"], a["random"], a["time"]) == (first["uuid"], first["random"], first["time"]), attempts


@pytest.mark.parametrize("block_at", [0, 2, STEPS - 1])
def test_sigkill_mid_handler_resumes_without_rerunning_committed_steps(
        durably_serve: ServerFactory, tmp_path: Path, block_at: int) -> None:
    work = tmp_path / "work"
    work.mkdir()
    key = f"sigkill-{block_at}"
    first = durably_serve.start()
    inv_id = send(first, request_body(work, block_at), key)
    wait_for_step(first, work, block_at, first.pid)

    first.kill()
    (work / "gate").touch()
    second = durably_serve.start()

    # The invocation resumes on start, before anybody asks for it.
    wait_for_step(second, work, STEPS - 1, second.pid)
    r = attach_by_key(second, key)
    assert r.status_code == 200, r.text
    assert r.headers["x-restate-id"] == inv_id
    assert_full_result(r.json(), inv_id, work)
    assert_step_history(work, block_at, first.pid, second.pid)
    assert_same_values_across_attempts(work, [first.pid, second.pid])

    # Attaching by invocation id gives the same answer.
    with second.client() as c:
        r2 = c.get(f"/restate/invocation/{inv_id}/attach")
        out = c.get(f"/restate/invocation/{inv_id}/output")
    assert r2.status_code == 200 and r2.content == r.content
    assert out.status_code == 200 and out.content == r.content
    assert second.terminate(EXIT_TIMEOUT_S) == 0, second.log()


def test_same_idempotency_key_after_completion_returns_stored_result(
        durably_serve: ServerFactory, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    key = "done-once"
    body = request_body(work)
    server = durably_serve.start()
    with server.client() as c:
        first = c.post(f"/{SERVICE}/{HANDLER}", json=body, headers={"idempotency-key": key})
        assert first.status_code == 200, first.text
        inv_id = first.headers["x-restate-id"]
        assert_full_result(first.json(), inv_id, work)
        history = effects(work)
        assert history == [(i, server.pid) for i in range(STEPS)]
        assert len(attempt_values(work)) == 1

        again = c.post(f"/{SERVICE}/{HANDLER}", json=body, headers={"idempotency-key": key})
        assert again.status_code == 200, again.text
        assert again.headers["x-restate-id"] == inv_id
        assert again.content == first.content

        resend = c.post(f"/{SERVICE}/{HANDLER}/send", json=body, headers={"idempotency-key": key})
        assert resend.status_code == 202, resend.text
        assert resend.json() == {"invocationId": inv_id, "status": "PreviouslyAccepted"}

        # A different key is a different invocation (and the only thing here that runs steps again).
        other = c.post(f"/{SERVICE}/{HANDLER}", json=body, headers={"idempotency-key": key + "-other"})
        assert other.status_code == 200, other.text
        assert other.headers["x-restate-id"] != inv_id
    assert effects(work) == history + [(i, server.pid) for i in range(STEPS)]
    history = effects(work)
    assert len(attempt_values(work)) == 2

    # The stored result survives a restart too.
    assert server.terminate(EXIT_TIMEOUT_S) == 0, server.log()
    restarted = durably_serve.start()
    with restarted.client() as c:
        after = c.post(f"/{SERVICE}/{HANDLER}", json=body, headers={"idempotency-key": key})
        attached = c.get(f"/restate/invocation/{SERVICE}/{HANDLER}/{key}/attach")
    assert after.status_code == 200, after.text
    assert after.headers["x-restate-id"] == inv_id
    assert after.content == first.content
    assert attached.status_code == 200 and attached.content == first.content
    assert effects(work) == history
    assert len(attempt_values(work)) == 2


@pytest.mark.parametrize("closure", ["async", "sync"])
def test_sigterm_while_blocked_exits_cleanly_and_resumes(
        durably_serve: ServerFactory, tmp_path: Path, closure: str) -> None:
    """SIGTERM twice with a handler blocked inside a step: exit 0 promptly, and the invocation resumes on restart.

    (One SIGTERM waits up to --shutdown-grace for the step: tests/faults/test_graceful_stop.py; the second
    stops at once.) "sync": the step closure is a plain function (runs on a worker thread); "async": a coroutine.
    """
    work = tmp_path / "work"
    work.mkdir()
    key = f"sigterm-{closure}"
    block_at = 1
    first = durably_serve.start()
    inv_id = send(first, request_body(work, block_at, async_steps=closure == "async"), key)
    wait_for_step(first, work, block_at, first.pid)

    first.proc.send_signal(signal.SIGTERM)
    # Signals sent together are delivered as one: the second goes once the first is being handled.
    wait_until(lambda: "stopping: new requests are refused" in first.log(), WAIT_S, "the graceful stop to begin")
    code = first.terminate(EXIT_TIMEOUT_S)
    assert code is not None, (
        f"durably serve did not exit within {EXIT_TIMEOUT_S}s of SIGTERM while a {closure} ctx.run closure "
        "was blocked")
    assert code == 0, first.log()
    assert "shutting down" in first.log()

    (work / "gate").touch()
    second = durably_serve.start()
    wait_for_step(second, work, STEPS - 1, second.pid)
    r = attach_by_key(second, key)
    assert r.status_code == 200, r.text
    assert r.headers["x-restate-id"] == inv_id
    assert_full_result(r.json(), inv_id, work)
    assert_step_history(work, block_at, first.pid, second.pid)
    assert_same_values_across_attempts(work, [first.pid, second.pid])


def _chunks(total: int, size: int = 1024 * 1024):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


def test_bad_requests_get_json_errors_and_do_not_hurt_the_server(
        durably_serve: ServerFactory, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    server = durably_serve.start()
    too_big = 33 * 1024 * 1024  # the CLI has no body-limit option; the default limit is 32 MiB
    cases: list[tuple[str, int, str, str, dict]] = [
        ("malformed JSON", 400, "POST", f"/{SERVICE}/{HANDLER}",
         {"content": b'{"dir": ', "headers": {"content-type": "application/json"}}),
        ("malformed JSON on send", 400, "POST", f"/{SERVICE}/{HANDLER}/send",
         {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        ("unknown service", 404, "POST", "/NoSuchService/run", {"json": {}}),
        ("unknown handler", 404, "POST", f"/{SERVICE}/nope", {"json": {}}),
        ("body over the limit", 413, "POST", f"/{SERVICE}/{HANDLER}", {"content": b"x" * too_big}),
        ("chunked body over the limit", 413, "POST", f"/{SERVICE}/{HANDLER}", {"content": _chunks(too_big)}),
        ("malformed invocation id", 400, "GET", "/restate/invocation/garbage/attach", {}),
        ("malformed inv_ id", 400, "GET", "/restate/invocation/inv_123/output", {}),
        ("unknown idempotency key", 404, "GET", f"/restate/invocation/{SERVICE}/{HANDLER}/no-such-key/attach", {}),
        ("empty idempotency key", 400, "POST", f"/{SERVICE}/{HANDLER}",
         {"json": request_body(work), "headers": {"idempotency-key": ""}}),
        ("wrong method", 405, "PUT", f"/{SERVICE}/{HANDLER}", {"json": {}}),
        ("unknown restate path", 404, "GET", "/restate/nothing", {}),
    ]
    failures = []
    with server.client() as c:
        for name, status, method, path, kwargs in cases:
            r = c.request(method, path, **kwargs)
            try:
                payload = r.json()
            except ValueError:
                payload = None
            ok = (r.status_code == status and isinstance(payload, dict) and payload.get("code") == status
                  and isinstance(payload.get("message"), str) and payload["message"])
            if not ok:
                failures.append(f"{name}: {method} {path} -> {r.status_code} {r.text[:200]!r} (expected {status})")
        assert not failures, "\n".join(failures)
        assert server.proc is not None and server.proc.poll() is None, server.log()
        assert effects(work) == []  # nothing bad reached the handler

        health = c.get("/restate/health")
        assert health.status_code == 200
        ok = c.post(f"/{SERVICE}/{HANDLER}", json=request_body(work))
    assert ok.status_code == 200, ok.text
    assert_full_result(ok.json(), ok.headers["x-restate-id"], work)
    assert server.terminate(EXIT_TIMEOUT_S) == 0, server.log()
    assert "Traceback" not in server.log(), server.log()
