"""Time survives crashes: durable sleeps, delayed sends and waiting workflows across a SIGKILL of `durably serve`.

The handlers are in tests/system/apps/timing.py. These tests involve real time (a few seconds each), so the
bounds are generous but meaningful: never early, and late by no more than the restart took plus a second.
Waiting until a wall-clock instant to check that something has *not* happened yet is the behaviour under
test; everything else polls a condition with a deadline.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from .conftest import ServerFactory, ServerProcess, wait_until

pytestmark = pytest.mark.system

APP = "timing"
SLEEP_S = 3.0
DELAY_S = 2.0
SLACK_S = 1.0  # allowed lateness beyond the restart time: scheduling, polling, a loaded CI machine
WAIT_S = 15.0


def runs(work: Path) -> list[tuple[str, float, int]]:
    """(tag, wall time, pid) for every line of runs.log, in order."""
    path = work / "runs.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        *tag, at, pid = line.split()
        out.append((" ".join(tag), float(at), int(pid)))
    return out


def start_timed(factory: ServerFactory) -> tuple[ServerProcess, float]:
    """Start a server over the test's data dir; also return how long that took (Popen to healthy)."""
    t0 = time.monotonic()
    server = factory.start(APP)
    return server, time.monotonic() - t0


def wait_until_instant(at: float) -> None:
    """Let wall-clock time reach `at` (the test checks what has happened by then)."""
    remaining = at - time.time()
    if remaining > 0:
        time.sleep(remaining)


def send(server: ServerProcess, path: str, body: object, **kwargs: object) -> dict:
    with server.client() as c:
        r = c.post(path, json=body, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 202, r.text
    return r.json()


def journal(server: ServerProcess, inv_id: str) -> list[dict]:
    """The invocation's journal, from the admin API."""
    r = httpx.get(f"http://127.0.0.1:{server.admin_port}/invocations/{inv_id}", timeout=5)
    assert r.status_code == 200, r.text
    return r.json().get("journal", [])


def parse_time(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def test_durable_sleep_survives_sigkill(durably_serve: ServerFactory) -> None:
    """A 3 s sleep with the server killed after 1 s ends 3 s after it began: not earlier, not restarted."""
    first = durably_serve.start(APP)
    started = time.time()
    inv_id = send(first, "/Timing/nap/send", {"seconds": SLEEP_S}, headers={"idempotency-key": "nap"})[
        "invocationId"]

    def sleep_entry() -> dict | None:
        return next((e for e in journal(first, inv_id) if e.get("type") == "sleep"), None)

    # The kill must hit a journaled sleep, or this would test something else.
    entry = wait_until(sleep_entry, WAIT_S, "the sleep to be journaled", lambda: f"\n{first.log()}")
    assert isinstance(entry, dict)
    wake_up = parse_time(entry["wake_up_time"])
    wait_until_instant(started + 1.0)
    killed = time.time()
    first.kill()

    second, restart_s = start_timed(durably_serve)
    restarted = time.time()
    with second.client(timeout=WAIT_S) as c:
        r = c.get(f"/restate/invocation/{inv_id}/attach")
    done = time.time()
    assert r.status_code == 200, r.text
    result = r.json()
    before, after = result["before"], result["after"]

    # Journaled times: `before` was taken by the first process (replayed, not re-taken), and the sleep
    # lasted its full length from there, without starting over at the restart.
    assert started - 0.05 <= before <= started + 1.0, (started, result)
    assert abs(wake_up - (before + SLEEP_S)) < 0.5, (wake_up, result)
    assert after >= before + SLEEP_S, result
    assert after <= before + SLEEP_S + restart_s + SLACK_S, (result, restart_s)
    if restarted < wake_up:
        # A sleep that started over at the restart (or at the kill) could not have ended yet.
        assert after < killed + SLEEP_S, ("the sleep started over after the restart", result, killed)
    # Wall clock, as the caller sees it.
    elapsed = done - started
    assert SLEEP_S <= elapsed <= SLEEP_S + restart_s + SLACK_S, (elapsed, restart_s)


def test_delayed_send_runs_on_time(durably_serve: ServerFactory, tmp_path: Path) -> None:
    """`/send?delay=2s`: not run at 1 s, run by 3 s, and the handler saw a time at least 2 s after the send."""
    work = tmp_path / "work"
    work.mkdir()
    server = durably_serve.start(APP)
    sent = time.time()
    reply = send(server, "/Timing/record/send?delay=2s", {"dir": str(work), "tag": "delayed"})
    assert reply["status"] == "Accepted", reply
    assert abs(parse_time(reply["executionTime"]) - (sent + DELAY_S)) < 0.5, (reply, sent)

    wait_until_instant(sent + 1.0)
    assert runs(work) == [], "the delayed send ran before its delay"
    wait_until(lambda: runs(work), sent + 3.0 - time.time(), "the delayed send to run",
               lambda: f"\n{server.log()}")
    [(tag, ran_at, pid)] = runs(work)
    assert (tag, pid) == ("delayed", server.pid)
    assert sent + DELAY_S <= ran_at <= sent + 3.0, ran_at - sent


def test_delayed_send_survives_sigkill(durably_serve: ServerFactory, tmp_path: Path) -> None:
    """A send delayed 2 s, server killed at 0.5 s and restarted: runs once, not before 2 s, soon after."""
    work = tmp_path / "work"
    work.mkdir()
    first = durably_serve.start(APP)
    sent = time.time()
    reply = send(first, "/Timing/record/send?delay=2s", {"dir": str(work), "tag": "delayed"},
                 headers={"idempotency-key": "delayed"})
    assert reply["status"] == "Accepted", reply
    wait_until_instant(sent + 0.5)
    killed = time.time()
    first.kill()

    second, restart_s = start_timed(durably_serve)
    restarted = time.time()
    if restarted < sent + DELAY_S - 0.1:
        # Restarted well before it is due: check it waits (the recorded time below checks it too).
        wait_until_instant(sent + DELAY_S - 0.1)
        assert runs(work) == [], "the delayed send ran early after the restart"
    deadline = sent + 3.0 + restart_s
    wait_until(lambda: runs(work), max(deadline - time.time(), 0.1), "the delayed send to run after the restart",
               lambda: f"\n{second.log()}")
    with second.client(timeout=WAIT_S) as c:
        r = c.get("/restate/invocation/Timing/record/delayed/attach")
    assert r.status_code == 200, r.text
    [(tag, ran_at, pid)] = runs(work)
    assert (tag, pid) == ("delayed", second.pid)
    assert r.json() == pytest.approx(ran_at, abs=1e-5)
    assert sent + DELAY_S <= ran_at <= deadline, (ran_at - sent, restart_s)
    if restarted < sent + DELAY_S:
        # A delay counted again from the restart (or the kill) would not have run yet.
        assert ran_at < killed + DELAY_S, ("the delay started over after the restart", ran_at - sent, killed - sent)


def test_workflow_waiting_on_promise_survives_sigkill(durably_serve: ServerFactory, tmp_path: Path) -> None:
    """A workflow killed while waiting on its promise completes when the promise is resolved after a restart."""
    work = tmp_path / "work"
    work.mkdir()
    key = "w1"
    first = durably_serve.start(APP)
    reply = send(first, f"/Waiter/{key}/run/send", {"dir": str(work)})
    assert reply["status"] == "Accepted", reply
    inv_id = reply["invocationId"]

    def stage(server: ServerProcess) -> str:
        with server.client() as c:
            r = c.post(f"/Waiter/{key}/stage")
        assert r.status_code == 200, r.text
        return r.json()

    wait_until(lambda: stage(first) == "waiting", WAIT_S, "the workflow to wait on its promise",
               lambda: f"\n{first.log()}")
    first.kill()

    second = durably_serve.start(APP)
    with second.client() as c:
        out = c.get(f"/restate/workflow/Waiter/{key}/output")
        assert out.status_code == 470, out.text  # still waiting: nothing resolved the promise
        assert stage(second) == "waiting"
        released = c.post(f"/Waiter/{key}/release", json="go!")
        assert released.status_code == 200, released.text
    with second.client(timeout=WAIT_S) as c:
        attached = c.get(f"/restate/workflow/Waiter/{key}/attach")
        out = c.get(f"/restate/workflow/Waiter/{key}/output")
    assert attached.status_code == 200, attached.text
    assert attached.headers["x-restate-id"] == inv_id
    [(tag, started, pid)] = runs(work)  # the step before the wait ran once, in the first process
    assert (tag, pid) == (f"started {key}", first.pid)
    assert attached.json() == {"key": key, "started": pytest.approx(started, abs=1e-5), "go": "go!"}
    assert out.status_code == 200 and out.content == attached.content
    assert stage(second) == "done"
