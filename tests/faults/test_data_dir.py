"""A data directory has one owner, and a database that vanished is never replaced by an empty one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from .conftest import ServeFactory, effects

pytestmark = pytest.mark.system


def one_step(serve_proc, work: Path, key: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    with serve_proc.client() as c:
        return c.post("/Stepper/run", json={"dir": str(work), "steps": 1}, headers={"idempotency-key": key})


def refusal(proc) -> str:  # type: ignore[no-untyped-def]
    """The last line of a refused start, checked to be a one-line message (no traceback)."""
    code = proc.wait_exit()
    out = proc.log()
    assert code != 0, out
    assert "Traceback" not in out, out
    return out.strip().splitlines()[-1]


def test_a_second_server_on_the_same_data_dir_is_refused_and_names_the_first(
        serve: ServeFactory, work: Path) -> None:
    first = serve().wait_serving()
    second = serve()
    line = refusal(second)
    assert f"pid {first.proc.pid}" in line and "in use" in line, line
    # The first one never noticed.
    assert one_step(first, work, "a").json() == ["value-0"]
    assert first.proc.poll() is None


def test_the_lock_goes_with_a_killed_server(serve: ServeFactory, work: Path) -> None:
    first = serve().wait_serving()
    assert one_step(first, work, "a").status_code == 200
    first.kill()
    again = serve().wait_serving()
    assert one_step(again, work, "a").json() == ["value-0"]  # the same invocation, from the store
    assert len(effects(work)) == 1


def _with_data(serve: ServeFactory, work: Path, clean_stop: bool = False) -> Path:
    proc = serve().wait_serving()
    assert one_step(proc, work, "a").status_code == 200
    if clean_stop:
        proc.signal(15)
        assert proc.wait_exit() == 0
    else:
        proc.kill()
    return proc.data_dir


@pytest.mark.parametrize("damage", ["deleted", "emptied", "wal-deleted"])
def test_a_vanished_database_is_refused_not_recreated(serve: ServeFactory, work: Path, damage: str) -> None:
    data = _with_data(serve, work)
    db = data / "durably.sqlite3"
    if damage == "deleted":
        db.unlink()
        for extra in data.glob("durably.sqlite3-*"):
            extra.unlink()
    elif damage == "emptied":
        db.write_bytes(b"")
    else:
        (data / "durably.sqlite3-wal").unlink()
    line = refusal(serve(data_dir=data))
    if damage == "wal-deleted":
        assert "durably.sqlite3-wal is missing" in line, line
    else:
        assert f"--data-dir {data} held a database that is now missing; refusing to start on an empty one" \
            in line, line
    if damage == "deleted":
        assert not db.exists()  # nothing was created in its place


def test_a_database_from_another_data_dir_is_refused(serve: ServeFactory, work: Path, tmp_path: Path) -> None:
    data = _with_data(serve, work, clean_stop=True)
    other = serve(data_dir=tmp_path / "other").wait_serving()
    other.signal(15)
    assert other.wait_exit() == 0
    (data / "durably.sqlite3").write_bytes((tmp_path / "other" / "durably.sqlite3").read_bytes())
    for extra in data.glob("durably.sqlite3-*"):
        extra.unlink()
    line = refusal(serve(data_dir=data))
    assert "from another data directory" in line, line


def test_a_corrupt_database_is_refused_in_one_line(serve: ServeFactory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "durably.sqlite3").write_bytes(b"this is not a database" * 500)
    line = refusal(serve(data_dir=data))
    assert "cannot be opened as a SQLite database" in line, line


def test_a_data_dir_from_before_ids_is_adopted(serve: ServeFactory, work: Path) -> None:
    data = _with_data(serve, work)
    (data / "durably.id").unlink()
    conn = sqlite3.connect(data / "durably.sqlite3")
    conn.execute("DELETE FROM meta WHERE key = 'database_id'")
    conn.commit()
    conn.close()
    proc = serve(data_dir=data).wait_serving()
    assert one_step(proc, work, "a").json() == ["value-0"]
    assert (data / "durably.id").exists()
