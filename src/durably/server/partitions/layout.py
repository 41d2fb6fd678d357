"""The data directory of a partitioned server: its fixed partition count and one store directory per partition.

    durably-data/                      --partitions 1 (the default): the store's files directly here
      durably.sqlite3, durably.id, durably.lock

    durably-data/                      --partitions N > 1
      partitions.json                  {"partitions": N}, written once when the directory is created
      durably.lock                     held by the supervisor (one server per directory)
      partition-0/ ... partition-N-1/  each a whole single-partition store (its own lock, id and SQLite file)
      sockets/                         the partitions' internal unix sockets (not reachable from the network)

An invocation lives in the partition that owns its partition key (server/partitions/map.py), so the count
cannot change under existing data: a start with another count, or a directory of the other layout, is refused
before anything is served, with a message that says what the directory holds and what to do.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from durably.server.store.datadir import DataDirError

PARTITIONS_FILE = "partitions.json"
_SINGLE_MARKERS = ("durably.sqlite3", "durably.id")


def partition_dir(data_dir: Path, index: int) -> Path:
    """Where partition `index` keeps its store."""
    return data_dir / f"partition-{index}"


def socket_dir(data_dir: Path) -> Path:
    """Where the partitions' internal unix sockets live."""
    return data_dir / "sockets"


def socket_path(data_dir: Path, index: int) -> Path:
    """Partition `index`'s internal listener (forwarded requests, peer deliveries, the admin fan-out)."""
    return socket_dir(data_dir) / f"p{index}.sock"


_SUN_PATH_MAX = 100  # sockaddr_un holds 108 bytes; a deep data directory does not fit
_dir_fds: dict[Path, int] = {}


def reachable_path(path: Path) -> str:
    """The name to bind or connect `path` by: itself, or when too long for a unix socket address, the same file
    through /proc/self/fd/ of its directory (opened once and kept open for the process's life)."""
    text = str(path)
    if len(text.encode()) <= _SUN_PATH_MAX or not os.path.isdir("/proc/self/fd"):
        return text
    parent = path.parent.resolve()
    fd = _dir_fds.get(parent)
    if fd is None:
        fd = _dir_fds[parent] = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{path.name}"


def _how_to_change(data_dir: Path, have: int) -> str:
    return (f"the partition count is fixed when a data directory is created. Start with --partitions {have} to "
            f"serve it, or start the new count on a new --data-dir (to move over: `durably serve --drain "
            f"--partitions {have} --data-dir {data_dir}` finishes what it holds while callers go to the new one; "
            f"`durably backup` keeps a copy)")


def recorded_partitions(data_dir: Path) -> int | None:
    """The partition count a data directory was created with: N from partitions.json, 1 for a directory of the
    single-partition layout, None for a new (missing or empty of data) directory."""
    path = data_dir / PARTITIONS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 1 if any((data_dir / m).exists() for m in _SINGLE_MARKERS) else None
    except OSError as e:
        raise DataDirError(f"--data-dir {data_dir}: cannot read {path}: {e.strerror}") from None
    try:
        count = json.loads(text)["partitions"]
        if not isinstance(count, int) or count < 1:
            raise ValueError(count)
    except (ValueError, KeyError, TypeError):
        raise DataDirError(f"--data-dir {data_dir}: {path} is damaged (expected {{\"partitions\": N}}); it records "
                           "how many partitions the directory was created with, restore it from a backup") from None
    return count


def check_partitions(data_dir: Path, wanted: int) -> None:
    """Refuse (DataDirError) a data directory created with another partition count than `wanted`; create the
    partitioned layout's record for a new directory. Called before any store is opened."""
    have = recorded_partitions(data_dir)
    if have is None:
        if wanted > 1:
            _write_record(data_dir, wanted)
        return
    if have == wanted:
        return
    layout = "the single-partition layout (no partitions.json)" if have == 1 else f"{have} partitions"
    raise DataDirError(f"--data-dir {data_dir} was created with {layout}, not the {wanted} asked for by "
                       f"--partitions; {_how_to_change(data_dir, have)}")


def _write_record(data_dir: Path, count: int) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / (PARTITIONS_FILE + ".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps({"partitions": count}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, data_dir / PARTITIONS_FILE)  # atomic: a crash leaves no half-written record
        dir_fd = os.open(data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise DataDirError(f"--data-dir {data_dir} cannot be created: {e.strerror}") from None


@dataclass(frozen=True)
class PartitionRole:
    """What a partition process is: partition `index` of `count` over the data directory `root`."""

    root: Path
    index: int
    count: int
    # Set once the supervisor said every partition serves (on this process's stdin).
    group_serving: threading.Event = field(default_factory=threading.Event, compare=False)

    def readiness(self) -> str | None:
        """Why the shared ingress port should not get traffic yet (the other partitions still start), or None.

        The first partition up answers on the shared port while the others start: a client that took its health
        for the server's would open its connections to that partition alone, and keep them."""
        if self.group_serving.is_set():
            return None
        return f"partition {self.index} of {self.count} is up; waiting for the other partitions to start"

    @property
    def store_dir(self) -> Path:
        """This partition's store."""
        return partition_dir(self.root, self.index)

    @property
    def socket(self) -> Path:
        """This partition's internal listener."""
        return socket_path(self.root, self.index)

    def drained_marker(self, index: int | None = None) -> Path:
        """The file a partition (this one unless `index`) writes once its graceful stop has drained."""
        return socket_path(self.root, self.index if index is None else index).with_suffix(".drained")

    async def hold_until_all_drained(self, limit_s: float, force: asyncio.Event) -> None:
        """Mark this partition drained, then keep its listeners until every partition is (or `limit_s` passes,
        or a second signal asks to stop at once).

        The ingress port is shared (SO_REUSEPORT): a partition that closed its listener while another still
        drains would reset the connections the kernel had queued for it, where one process answers 503
        "stopping" until it exits. Holding on until all are drained keeps that answer for the whole server.
        """
        self.drained_marker().touch()
        deadline = time.monotonic() + limit_s
        others = [self.drained_marker(i) for i in range(self.count) if i != self.index]
        while not all(m.exists() for m in others) and time.monotonic() < deadline and not force.is_set():
            try:
                await asyncio.wait_for(force.wait(), 0.02)
            except TimeoutError:
                pass

    def clear_drained(self) -> None:
        """Forget a drained mark left by this partition's previous run (it serves again)."""
        self.drained_marker().unlink(missing_ok=True)


def listen_unix(path: Path) -> socket.socket:
    """A listening unix socket at `path` (a stale one left by a killed process is replaced), in a directory
    only this user can enter."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(reachable_path(path))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock
