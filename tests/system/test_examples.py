"""The bundled examples, served for real: the trip-booking saga (examples/saga.py) and the approval workflow
(examples/approval.py), started as `durably serve examples.<name>:app` from the repository root.

The examples make their effects visible through files named by environment variables (`SAGA_LOG`,
`APPROVAL_LOG`, and the test hook `SAGA_HOLD_UNDO`), which the server processes inherit from this test.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import httpx
import pytest

from .conftest import ServerFactory, ServerProcess, wait_until

pytestmark = pytest.mark.system

WAIT_S = 15.0
HOTEL_STATUS = 409  # what the stand-in hotel answers when it is full
TRIP = {"flight": "LH1", "car": "Mini", "hotel": "Ritz"}


def start_example(factory: ServerFactory, ref: str) -> ServerProcess:
    """Start `durably serve <ref>` (a module:app reference, resolved from the repo root) over the test's data."""
    n = len(factory.servers)
    server = ServerProcess(ref, factory.tmp_path / "data", factory.tmp_path / f"server-{n}.log")
    factory.servers.append(server)  # so the fixture kills it and shows its log on failure
    return server.start()


# ---- the saga --------------------------------------------------------------------------------------------


def saga_lines(log: Path, trip_id: str) -> list[tuple[str, str, str, int]]:
    """(verb, kind, reservation-or-item, pid) for each line the stand-in systems logged for `trip_id`."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        words = line.split()
        if words[0] != trip_id:
            continue
        pid = int(words[-1].removeprefix("pid="))
        verb, kind = words[1], words[2]
        out.append((verb, kind, words[-2], pid))
    return out


@pytest.fixture
def saga_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "saga.log"
    monkeypatch.setenv("SAGA_LOG", str(log))
    monkeypatch.delenv("SAGA_HOLD_UNDO", raising=False)
    return log


def test_saga_compensates_in_reverse_order(durably_serve: ServerFactory, saga_log: Path) -> None:
    server = start_example(durably_serve, "examples.saga:app")
    with server.client() as c:
        ok = c.post("/TripBooking/book", json={**TRIP, "trip_id": "ok"})
        failed = c.post("/TripBooking/book", json={**TRIP, "trip_id": "bad", "hotel_fails": True})
    assert ok.status_code == 200, ok.text
    booked = ok.json()
    assert booked["trip_id"] == "ok"
    assert [(v, k, r) for v, k, r, _ in saga_lines(saga_log, "ok")] == [
        ("booked", "flight", booked["flight"]), ("booked", "car", booked["car"]), ("booked", "hotel", booked["hotel"])]

    assert failed.status_code == HOTEL_STATUS, failed.text
    assert failed.json() == {"code": HOTEL_STATUS, "message": "hotel 'Ritz' is fully booked", "source": "invocation"}
    lines = saga_lines(saga_log, "bad")
    assert {pid for *_, pid in lines} == {server.pid}
    flight, car = lines[0][2], lines[1][2]
    assert [(v, k, r) for v, k, r, _ in lines] == [
        ("booked", "flight", flight), ("booked", "car", car), ("refused", "hotel", "Ritz"),
        ("cancelling", "car", car), ("cancelled", "car", car),
        ("cancelling", "flight", flight), ("cancelled", "flight", flight)]


@pytest.mark.parametrize("held", ["car", "flight"])
def test_saga_survives_sigkill_during_compensation(
        durably_serve: ServerFactory, saga_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        held: str) -> None:
    """Kill the server while one cancellation is in flight; after the restart, each runs to the end once.

    The cancellations run car first, then flight. `held` is the one blocked on the gate at the kill: it is
    the only one that may run twice (it had started, but its result was not journaled).
    """
    gate = tmp_path / "gate"
    monkeypatch.setenv("SAGA_HOLD_UNDO", f"{held}:{gate}")
    key = f"trip-{held}"
    first = start_example(durably_serve, "examples.saga:app")
    with first.client() as c:
        r = c.post("/TripBooking/book/send", json={**TRIP, "trip_id": key, "hotel_fails": True},
                   headers={"idempotency-key": key})
    assert r.status_code == 202, r.text
    inv_id = r.json()["invocationId"]

    def cancelling_in(pid: int) -> bool:
        return ("cancelling", held) in [(v, k) for v, k, _, p in saga_lines(saga_log, key) if p == pid]

    wait_until(lambda: cancelling_in(first.pid), WAIT_S, f"the {held} cancellation to start",
               lambda: f"\n{saga_lines(saga_log, key)}\n{first.log()}")
    first.kill()

    second = start_example(durably_serve, "examples.saga:app")
    # The invocation resumes on its own and runs the interrupted cancellation again (it blocks again).
    wait_until(lambda: cancelling_in(second.pid), WAIT_S, f"the {held} cancellation to run again",
               lambda: f"\n{saga_lines(saga_log, key)}\n{second.log()}")
    gate.touch()
    with second.client(timeout=WAIT_S) as c:
        attached = c.get(f"/restate/invocation/TripBooking/book/{key}/attach")
    assert attached.status_code == HOTEL_STATUS, attached.text
    assert attached.headers["x-restate-id"] == inv_id
    assert attached.json() == {"code": HOTEL_STATUS, "message": "hotel 'Ritz' is fully booked",
                             "source": "invocation"}

    lines = saga_lines(saga_log, key)
    flight, car = lines[0][2], lines[1][2]
    p1, p2 = first.pid, second.pid
    bookings = [("booked", "flight", flight, p1), ("booked", "car", car, p1), ("refused", "hotel", "Ritz", p1)]
    if held == "car":
        # Killed in the first cancellation: it runs again, then the flight's runs once, all after the restart.
        undo = [("cancelling", "car", car, p1),
                ("cancelling", "car", car, p2), ("cancelled", "car", car, p2),
                ("cancelling", "flight", flight, p2), ("cancelled", "flight", flight, p2)]
    else:
        # Killed in the second: the car's was journaled before the kill and does not run again.
        undo = [("cancelling", "car", car, p1), ("cancelled", "car", car, p1),
                ("cancelling", "flight", flight, p1),
                ("cancelling", "flight", flight, p2), ("cancelled", "flight", flight, p2)]
    assert lines == bookings + undo
    finished = Counter(k for v, k, _, _ in lines if v == "cancelled")
    assert finished == {"car": 1, "flight": 1}


# ---- the approval workflow -------------------------------------------------------------------------------

LINK = re.compile(r"^approval needed for (\S+) \((.*)\): curl -X POST \S+/restate/awakeables/(\S+)/resolve "
                  r"--json 'true'$")


def awakeable_of(log: Path, key: str) -> str | None:
    """The awakeable id in the approval link the workflow `key` sent, if it sent one yet."""
    if not log.exists():
        return None
    for line in log.read_text().splitlines():
        match = LINK.match(line)
        if match and match.group(1) == key:
            return match.group(3)
    return None


def test_approval_flow(durably_serve: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "approval.log"
    monkeypatch.setenv("APPROVAL_LOG", str(log))
    server = start_example(durably_serve, "examples.approval:app")

    def start(c: httpx.Client, key: str, request: dict) -> str:
        r = c.post(f"/Approval/{key}/run/send", json=request)
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "Accepted"
        found = wait_until(lambda: awakeable_of(log, key), WAIT_S, f"the approval link for {key}",
                           lambda: f"\n{log.read_text() if log.exists() else ''}\n{server.log()}")
        assert isinstance(found, str)
        return found

    with server.client(timeout=WAIT_S) as c:
        approve = start(c, "yes", {"title": "Dinner", "amount": 420})
        deny = start(c, "no", {"title": "Yacht"})
        refuse = start(c, "why", {"title": "Jet"})
        c.post("/Approval/late/run/send", json={"title": "Nap", "timeout_seconds": 0.5})

        assert c.post("/Approval/yes/status").json() == "waiting for approval"
        assert c.get("/restate/workflow/Approval/yes/output").status_code == 470
        assert c.post(f"/restate/awakeables/{approve}/resolve", json=True).status_code == 202
        assert c.post(f"/restate/awakeables/{deny}/resolve", json=False).status_code == 202
        assert c.post(f"/restate/awakeables/{refuse}/reject", content=b"too expensive").status_code == 202

        results = {key: c.get(f"/restate/workflow/Approval/{key}/attach") for key in ("yes", "no", "why", "late")}
        for r in results.values():
            assert r.status_code == 200, r.text
        assert results["yes"].json() == {"key": "yes", "title": "Dinner", "decision": "approved"}
        assert results["no"].json() == {"key": "no", "title": "Yacht", "decision": "rejected"}
        assert results["why"].json() == {"key": "why", "title": "Jet", "decision": "rejected",
                                         "reason": "too expensive"}
        assert results["late"].json() == {"key": "late", "title": "Nap", "decision": "expired"}
        assert c.get("/restate/workflow/Approval/yes/output").content == results["yes"].content
        assert c.post("/Approval/yes/status").json() == "approved"
        assert c.post("/Approval/no/status").json() == "rejected"
        # A workflow key runs once: the same key again is refused, and the link is spent.
        again = c.post("/Approval/yes/run", json={"title": "Dinner"})
        assert again.status_code == 409, again.text
        assert c.post(f"/restate/awakeables/{approve}/resolve", json=True).status_code == 404
    # One approval link per workflow, the expired one included.
    assert len(log.read_text().splitlines()) == 4
