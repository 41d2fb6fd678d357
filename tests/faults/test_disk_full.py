"""A full disk is named, reported by health, and survived: the server recovers by itself once space is back.

The data directory is on a small tmpfs mounted for the test (needs root, as in CI); a filler file takes the
remaining space.
"""

from __future__ import annotations

import concurrent.futures
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from system.conftest import wait_until

from durably.server.partitions.map import PartitionMap

from .conftest import ServeFactory

PARTITIONS = (1, 2)  # each test also runs against durably serve --partitions 2

pytestmark = pytest.mark.system

TMPFS_SIZE = "6m"
PAD = 60_000  # bytes per step result: a few calls fill what is left


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root (CI runs the suite as root)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (an unprivileged container?): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> None:
    """Write zeros until the file system says it is full."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                if len(chunk) == 1:
                    return
                chunk = chunk[: len(chunk) // 2]


def health(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)


def keys_in_every_partition(partitions: int, per_partition: int) -> list[str]:
    """Idempotency keys of `Stepper/run` calls, `per_partition` owned by each partition: with --partitions 2
    every partition writes (and so finds the disk full), whatever the hash of the keys."""
    pmap = PartitionMap(partitions, 0)
    chosen: dict[int, list[str]] = {i: [] for i in range(partitions)}
    i = 0
    while any(len(v) < per_partition for v in chosen.values()):
        key = f"during-{i}"
        owner = pmap.owner(pmap.id_for("Stepper", "run", workflow=False, keyed=False, idempotency_key=key))
        if len(chosen[owner]) < per_partition:
            chosen[owner].append(key)
        i += 1
    return [k for v in chosen.values() for k in v]


def test_disk_full_is_named_and_recovered_from(serve: ServeFactory, small_disk: Path, work: Path,
                                               partitions: int) -> None:
    proc = serve(data_dir=small_disk / "data").wait_serving()

    def call(key: str) -> httpx.Response:
        return httpx.post(f"{proc.url}/Stepper/run", json={"dir": str(work), "steps": 2, "pad": PAD},
                          headers={"idempotency-key": key}, timeout=60)

    assert call("before").status_code == 200
    fill(small_disk / "filler")

    # Calls made now cannot commit: each either waits (nothing is acknowledged) until the store is back, or,
    # once the server knows, is refused with the cause before anything is journaled.
    pool = concurrent.futures.ThreadPoolExecutor(4)
    pending = {key: pool.submit(call, key) for key in keys_in_every_partition(partitions, 4 // partitions)}
    ingress_health = f"{proc.url}/restate/health"
    admin_health = f"{proc.admin_url}/health"
    r = wait_until(lambda: (h := health(ingress_health)).status_code == 503 and h, 30,
                   "ingress health to report the full disk", lambda: f"\n{proc.log()}")
    assert "disk full" in r.json()["message"], r.text
    r = health(admin_health)
    assert r.status_code == 503 and "disk full" in r.json()["message"], r.text
    refused = call("refused")
    assert refused.status_code == 503, refused.text
    assert "disk full" in refused.json()["message"], refused.text
    assert "cannot rollback" not in proc.log()
    assert not any(f.done() and f.result().status_code == 200 for f in pending.values())

    (small_disk / "filler").unlink()
    # The admin health is the whole server's: every partition's store is back.
    wait_until(lambda: health(ingress_health).status_code == 200 and health(admin_health).status_code == 200, 30,
               "the store to recover", lambda: f"\n{proc.log()}")
    for key, fut in pending.items():
        r = fut.result(timeout=60)
        if r.status_code == 503:
            assert "disk full" in r.json()["message"], r.text
            r = call(key)  # the client's retry, with the same idempotency key
        assert r.status_code == 200, (key, r.text)
        assert r.json() == ["value-0" + "x" * 9, "value-1" + "x" * 9]
    pool.shutdown()
    assert call("after").status_code == 200
    log = proc.log()
    assert "the store cannot commit (disk full" in log and "the store recovered after" in log, log
    assert proc.proc.poll() is None


def remount(mnt: Path, mode: str) -> None:
    # Only possible with no file open for writing (Linux refuses "busy"), so not under a running server.
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mnt)], check=True)


def test_a_read_only_data_dir_refuses_to_start_in_one_line(serve: ServeFactory, small_disk: Path) -> None:
    first = serve(data_dir=small_disk / "data").wait_serving()
    first.signal(15)
    assert first.wait_exit() == 0
    remount(small_disk, "ro")
    try:
        proc = serve(data_dir=small_disk / "data")
        code = proc.wait_exit()
    finally:
        remount(small_disk, "rw")
    out = proc.log().strip()
    assert code != 0 and "Traceback" not in out, out
    assert len(out.splitlines()) == 1 and "Read-only file system" in out, out
