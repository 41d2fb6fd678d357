"""A corrupted database page is never served silently: refused at start, and health 503 when found later.

The damage is the one an operator meets after a bad disk or a stray write: 4 KB of random bytes in the middle
of `durably.sqlite3`.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
import threading
from pathlib import Path

import httpx
import pytest
from system.conftest import wait_until

from durably.server.engine.engine import EngineStopped
from durably.server.http.admin import Admin
from durably.server.store import SQLiteStore
from durably.server.store import sqlite as sqlite_store
from durably.testing import TestRuntime

from .conftest import ServeFactory

pytestmark = pytest.mark.system

INVOCATIONS = 200


def stepper_app():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))
    from stepper import app

    return app


def fill(data_dir: Path, work: Path) -> None:
    """A few MB of committed invocations (journals of 5 steps with 2 KB values)."""

    async def run() -> None:
        async with TestRuntime(stepper_app(), SQLiteStore(data_dir)) as rt:
            for start in range(0, INVOCATIONS, 50):
                await asyncio.gather(*[
                    rt.call("Stepper/run", {"dir": str(work), "steps": 5, "pad": 2000}, idempotency_key=f"k{i}")
                    for i in range(start, start + 50)])

    asyncio.run(run())


def journal_page_offset(db: Path) -> int:
    """Where the journal's b-tree leaf page nearest the middle of the file starts (so a read will meet it)."""
    conn = sqlite3.connect(db)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = [p for (p,) in conn.execute("SELECT pageno FROM dbstat WHERE name = 'journal' AND pagetype = 'leaf'")]
    finally:
        conn.close()
    middle = db.stat().st_size // 2 // page_size
    return (min(pages, key=lambda p: abs(p - middle)) - 1) * page_size


def corrupt(db: Path, offset: int | None = None, seed: int = 20) -> None:
    """Write 4 KB of random bytes at `offset` (the middle of the file), and check SQLite agrees it is damaged."""
    with open(db, "r+b") as f:
        f.seek(db.stat().st_size // 2 if offset is None else offset)
        f.write(random.Random(seed).randbytes(4096))
    conn = sqlite3.connect(db)
    try:
        findings = conn.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as e:  # so damaged that the check itself stops
        findings = [(str(e),)]
    finally:
        conn.close()
    assert findings != [("ok",)]


def refusal(proc) -> str:  # type: ignore[no-untyped-def]
    code = proc.wait_exit()
    out = proc.log()
    assert code != 0, out
    assert "Traceback" not in out, out
    return out.strip().splitlines()[-1]


def test_a_corrupt_database_is_refused_at_start_in_one_line(serve: ServeFactory, work: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    fill(data, work)
    db = data / "durably.sqlite3"
    corrupt(db)
    line = refusal(serve(data_dir=data))
    assert f"--data-dir {data}: durably.sqlite3 is corrupt" in line, line
    assert "durably backup" in line and "restore" in line, line


def test_corruption_found_while_serving_turns_health_503_and_refuses_writes(
        serve: ServeFactory, work: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    fill(data, work)
    proc = serve(data_dir=data).wait_serving()
    with httpx.Client(base_url=proc.admin_url, timeout=15) as admin, proc.client() as ingress:
        assert ingress.get("/restate/health").status_code == 200
        ids = [inv["id"] for inv in admin.get("/invocations", params={"limit": INVOCATIONS}).json()["invocations"]]
        assert len(ids) == INVOCATIONS
        db = data / "durably.sqlite3"
        corrupt(db, journal_page_offset(db))
        # A commit changes the WAL, so the server's readers drop their page caches and go to the file: as
        # after a restart, or once the damaged pages fall out of the cache.
        r = ingress.post("/Stepper/run", json={"dir": str(work), "steps": 1}, headers={"idempotency-key": "w"})
        assert r.status_code in (200, 503), r.text
        # Reading every journal reaches the damaged pages; the read that does answers 503, not 500.
        statuses = [admin.get(f"/invocations/{inv_id}").status_code for inv_id in ids]
        assert 503 in statuses and 500 not in statuses, statuses
        for client, path in ((ingress, "/restate/health"), (admin, "/health")):
            r = client.get(path)
            assert r.status_code == 503, r.text
            message = r.json()["message"]
            assert "corrupt" in message and "durably backup" in message and "restore" in message, message
        # Nothing more is written to a damaged database.
        r = ingress.post("/Stepper/run", json={"dir": str(work), "steps": 1}, headers={"idempotency-key": "new"})
        assert r.status_code == 503 and "corrupt" in r.json()["message"], r.text
    wait_until(lambda: "corrupt" in proc.log() and "durably backup" in proc.log(), 10, "the log to name it")
    assert proc.proc.poll() is None  # still serving health and reads


@pytest.mark.parametrize("damaged", [False, True])
def test_a_large_database_is_checked_in_the_background_while_health_says_so(
        tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch, damaged: bool) -> None:
    data = tmp_path / "data"
    fill(data, work)
    db = data / "durably.sqlite3"
    if damaged:
        corrupt(db, journal_page_offset(db))
    # Every database counts as large here, and the check waits for the test (a slow disk, on demand).
    monkeypatch.setattr(sqlite_store, "SYNC_CHECK_MAX_BYTES", 0)
    release = threading.Event()

    def slow_check(conn: sqlite3.Connection) -> str | None:
        assert release.wait(30)
        return real_check(conn)

    real_check = sqlite_store.quick_check
    monkeypatch.setattr(sqlite_store, "quick_check", slow_check)

    async def run() -> None:
        store = SQLiteStore(data)  # starts: a large database does not hold the start up
        async with TestRuntime(stepper_app(), store) as rt:
            assert rt.engine is not None
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine)),
                                         base_url="http://admin") as admin:
                r = await admin.get("/health")
                assert r.status_code == 503 and "checking durably.sqlite3" in r.json()["message"], r.text
                release.set()

                async def settled() -> httpx.Response:
                    while True:
                        r = await admin.get("/health")
                        if "checking" not in r.text:
                            return r
                        await asyncio.sleep(0.01)  # polling the store's background thread

                r = await asyncio.wait_for(settled(), 30)
                if damaged:
                    assert r.status_code == 503, r.text
                    message = r.json()["message"]
                    assert "corrupt" in message and "durably backup" in message, message
                    with pytest.raises(EngineStopped, match="corrupt"):
                        await rt.call("Stepper/run", {"dir": str(work), "steps": 1})
                else:
                    assert r.status_code == 200, r.text
                    assert await rt.call("Stepper/run", {"dir": str(work), "steps": 1}) == ["value-0"]

    asyncio.run(run())
