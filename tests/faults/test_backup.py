"""`durably backup` copies a data directory while it is served; serving the copy restores it."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from durably.server.store.backup import backup

from .conftest import REPO_ROOT, ServeFactory

pytestmark = pytest.mark.system

BODY_PAD = 2000


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "durably.cli.main", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)


def call(url: str, work: Path, key: str) -> httpx.Response:
    return httpx.post(f"{url}/Stepper/run", json={"dir": str(work), "steps": 2, "pad": BODY_PAD},
                      headers={"idempotency-key": key}, timeout=30)


def test_backup_while_serving_then_serve_the_copy(serve: ServeFactory, work: Path, tmp_path: Path) -> None:
    live = serve().wait_serving()
    # Committed before the backup: in the copy, whatever the checkpoints did (much of it is still in the WAL).
    for i in range(20):
        assert call(live.url, work, f"before-{i}").status_code == 200
    stop = threading.Event()
    failures: list[str] = []

    def keep_writing() -> None:  # the server commits all through the backup
        n = 0
        while not stop.is_set():
            r = call(live.url, work, f"during-{n}")
            if r.status_code != 200:
                failures.append(r.text)
            n += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        out = tmp_path / "copy"
        result = run_cli("backup", "--data-dir", str(live.data_dir), str(out))
    finally:
        stop.set()
        writer.join()
    assert result.returncode == 0, result.stderr
    assert "backed up" in result.stdout and "durably serve APP --data-dir" in result.stdout
    assert failures == []
    assert live.proc.poll() is None  # the live server never noticed
    assert sorted(p.name for p in out.iterdir()) == ["durably.id", "durably.sqlite3"]

    # The restore: a server on the copy has everything acknowledged before the backup began.
    live.signal(15)
    assert live.wait_exit() == 0
    restored = serve(data_dir=out).wait_serving()
    with restored.client() as c:
        for i in range(20):
            r = c.get(f"/restate/invocation/Stepper/run/before-{i}/output")
            assert r.status_code == 200, r.text
            assert r.json() == ["value-0" + "x" * 9, "value-1" + "x" * 9]
    assert call(restored.url, work, "after").status_code == 200


def test_backup_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "something").write_text("x")
    result = run_cli("backup", "--data-dir", str(tmp_path / "data"), str(out))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "nothing to back up" in result.stderr or "not an empty directory" in result.stderr


def test_a_backup_copied_over_a_crashed_directory_restores_it(serve: ServeFactory, work: Path,
                                                              tmp_path: Path) -> None:
    live = serve().wait_serving()
    assert call(live.url, work, "kept").status_code == 200
    out = tmp_path / "copy"
    backup(live.data_dir, out)  # in-process: the command itself is covered above
    assert call(live.url, work, "after-backup").status_code == 200
    live.kill()
    for old in live.data_dir.glob("durably.sqlite3*"):
        old.unlink()
    (live.data_dir / "durably.sqlite3").write_bytes((out / "durably.sqlite3").read_bytes())
    restored = serve().wait_serving()
    with restored.client() as c:
        assert c.get("/restate/invocation/Stepper/run/kept/output").status_code == 200
        assert c.get("/restate/invocation/Stepper/run/after-backup/output").status_code == 404  # after the copy


def test_backup_of_a_crashed_directory_leaves_it_servable(serve: ServeFactory, work: Path, tmp_path: Path) -> None:
    live = serve().wait_serving()
    assert call(live.url, work, "kept").status_code == 200
    live.kill()  # its commits are in the WAL; the backup's connection checkpoints them and removes it
    out = tmp_path / "copy"
    backup(live.data_dir, out)
    for data in (live.data_dir, out):
        proc = serve(data_dir=data).wait_serving()
        with proc.client() as c:
            assert c.get("/restate/invocation/Stepper/run/kept/output").status_code == 200
        proc.signal(15)
        assert proc.wait_exit() == 0
