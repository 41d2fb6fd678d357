"""SIGTERM drains: running steps finish and are journaled, waiting handlers suspend, callers get 503, exit 0."""

from __future__ import annotations

import concurrent.futures
import re
import signal
import time
from pathlib import Path

import httpx
import pytest
from system.conftest import wait_until

from .conftest import Serve, ServeFactory, effects

PARTITIONS = (1, 2)  # each test also runs against durably serve --partitions 2

pytestmark = pytest.mark.system

STEPS = 3


def start_blocked(proc: Serve, work: Path, pool: concurrent.futures.Executor,
                  async_steps: bool = False) -> concurrent.futures.Future:
    """A caller waiting on `Stepper/run` (key "a") whose step 1 blocks on the gate; returns once it blocks."""
    fut = pool.submit(httpx.post, f"{proc.url}/Stepper/run", headers={"idempotency-key": "a"}, timeout=60,
                      json={"dir": str(work), "steps": STEPS, "block_at": 1, "async_steps": async_steps})
    pids = proc.pids()
    wait_until(lambda: any((1, pid) in effects(work) for pid in pids), 20, "step 1 to start",
               lambda: f"\n{proc.log()}")
    return fut


def runs(work: Path, first: set[int], again: set[int]) -> list[tuple[int, str]]:
    """(step, "first" or "again"): which server ran each step execution, in order."""
    return [(step, "first" if pid in first else "again" if pid in again else f"pid {pid}")
            for step, pid in effects(work)]


def drained(log: str) -> tuple[int, int]:
    """(suspended or finished, running) over every drain line (one per partition process)."""
    found = re.findall(r"(\d+) of (\d+) running invocations suspended or finished", log)
    return sum(int(a) for a, _ in found), sum(int(b) for _, b in found)


def finish_after_restart(serve: ServeFactory, work: Path, data: Path) -> Serve:
    (work / "gate").touch()
    again = serve(data_dir=data).wait_serving()
    r = httpx.get(f"{again.url}/restate/invocation/Stepper/run/a/attach", timeout=60)
    assert r.status_code == 200, r.text
    assert r.json() == [f"value-{i}" for i in range(STEPS)]
    return again


def serving(pid: int) -> bool:
    """The process runs (not gone, not a zombie waiting to be reaped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.parametrize("closure", ["sync", "async"])
def test_sigterm_lets_the_running_step_finish_and_suspends_the_rest(serve: ServeFactory, work: Path,
                                                                    closure: str, partitions: int) -> None:
    proc = serve().wait_serving()
    first = proc.pids()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        caller = start_blocked(proc, work, pool, async_steps=closure == "async")
        r = httpx.post(f"{proc.url}/Stepper/await_awakeable/send", json={"dir": str(work)},
                       headers={"idempotency-key": "w"}, timeout=10)
        assert r.status_code == 202, r.text
        wait_until(lambda: (work / "awakeable").exists(), 20, "the awakeable to be published")
        proc.signal(signal.SIGTERM)
        # Stopping: health says so and new work is refused, while the step still runs.
        health = wait_until(lambda: (h := httpx.get(f"{proc.url}/restate/health", timeout=5)).status_code == 503
                            and h, 20, "health to say the server is stopping")
        assert "stopping" in health.json()["message"]
        refused = httpx.post(f"{proc.url}/Stepper/run", json={"dir": str(work), "steps": 1}, timeout=10)
        assert refused.status_code == 503 and "stopping" in refused.json()["message"], refused.text
        assert proc.proc.poll() is None
        # Every partition keeps the shared port answering "stopping" until all have drained: the one with
        # nothing to drain does not leave (its queued connections would be reset).
        # Watched over a second (the idle partition's drain takes milliseconds): nobody leaves early.
        watch_until = time.monotonic() + 1.0
        while time.monotonic() < watch_until:
            assert all(serving(pid) for pid in first), (first, partitions)
            h = httpx.get(f"{proc.url}/restate/health", timeout=5)
            assert h.status_code == 503 and "stopping" in h.json()["message"], h.text
        (work / "gate").touch()  # the running step may finish now
        assert proc.wait_exit() == 0
        answer = caller.result(timeout=30)
    assert answer.status_code == 503 and "stopping" in answer.json()["message"], answer.text
    log = proc.log()
    assert "drained in" in log and drained(log) == (2, 2), log
    assert runs(work, first, set()) == [(0, "first"), (1, "first")]

    again = finish_after_restart(serve, work, proc.data_dir)
    # Step 1 finished before the exit and was journaled: it did not run again.
    assert runs(work, first, again.pids()) == [(0, "first"), (1, "first"), (2, "again")]
    awakeable = (work / "awakeable").read_text()
    r = httpx.post(f"{again.url}/restate/awakeables/{awakeable}/resolve", json="hello", timeout=10)
    assert r.status_code in (200, 202), r.text
    r = httpx.get(f"{again.url}/restate/invocation/Stepper/await_awakeable/w/attach", timeout=30)
    assert r.json() == "hello"


@pytest.mark.parametrize("how", ["second signal", "grace"])
def test_a_second_signal_or_the_grace_running_out_stops_at_once(serve: ServeFactory, work: Path, how: str) -> None:
    proc = serve(*(["--shutdown-grace", "0.5"] if how == "grace" else [])).wait_serving()
    first = proc.pids()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        caller = start_blocked(proc, work, pool)
        proc.signal(signal.SIGTERM)
        if how == "second signal":
            wait_until(lambda: "stopping: new requests are refused" in proc.log(), 20, "the drain to begin")
            proc.signal(signal.SIGINT)
        assert proc.wait_exit() == 0
        answer = caller.result(timeout=30)
    assert answer.status_code == 503, answer.text
    expected = "a second signal" if how == "second signal" else "the grace period of 0.5 s ran out"
    assert f"stopping at once ({expected}): 1 invocations aborted mid-step" in proc.log(), proc.log()
    again = finish_after_restart(serve, work, proc.data_dir)
    # Only the step that was running when it stopped runs again; the committed one does not.
    assert runs(work, first, again.pids()) == [(0, "first"), (1, "first"), (1, "again"), (2, "again")]
