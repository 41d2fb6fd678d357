"""Even out the ingress's keep-alive connections over the partitions of `durably serve --partitions N`.

The partitions share the ingress port (SO_REUSEPORT), and the kernel deals each new connection to one of them by
the client's source port (server/process/listeners.py). Kernels that step ephemeral ports by small random amounts
(6.18 on the benchmark machine) make that deal only as even as chance: 32 connections from one load generator
were seen split 16/16 one run and 22/10 the next. Connections are long-lived (keep-alive), so the partition dealt
the most stays the bottleneck of the whole server for as long as the client keeps them.

So each partition publishes how many ingress connections it holds, in a small file shared by all of them
(`sockets/connections` in the data directory: one signed 64-bit slot per partition, mapped into memory, each
written by its own partition only; the supervisor writes -1 into the slot of a partition that died). A
partition holding more than its share (more than ceil(total / N)) answers the next request on one of its
connections with `connection: close`: the answer is whole, the client opens a new connection for its next
request, and the kernel deals that one again. At most one connection every `CLOSE_EVERY_S` per partition, and
none while a partition is down (its slot is -1): its connections have nowhere better to go. One connection moves
with each close only by chance (the kernel may deal it back), so it takes a few closes to even out; once even,
nothing is closed.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from pathlib import Path

from durably.server.partitions.layout import socket_dir

# Between two closes by one partition: the new connection has time to be counted where it lands.
CLOSE_EVERY_S = 0.02
_SLOT = struct.Struct("=q")
DOWN = -1


def shares_path(root: Path) -> Path:
    """The shared file of connection counts of the partitioned data directory `root`."""
    return socket_dir(root) / "connections"


def create_shares(root: Path, count: int) -> None:
    """Write the file with every partition down (the supervisor, before it starts them)."""
    path = shares_path(root)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, _SLOT.pack(DOWN) * count)
    finally:
        os.close(fd)


def mark_down(root: Path, index: int) -> None:
    """Partition `index` died: the others stop sending connections its way until it counts again."""
    try:
        fd = os.open(shares_path(root), os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        os.pwrite(fd, _SLOT.pack(DOWN), index * _SLOT.size)
    finally:
        os.close(fd)


def open_shares(root: Path, index: int, count: int) -> ConnectionShares | None:
    """Partition `index`'s shares, or None where no supervisor made the file (a partition run on its own)."""
    try:
        return ConnectionShares(root, index, count)
    except (FileNotFoundError, ValueError):  # ValueError: a file shorter than the count (another count's)
        return None


class ConnectionShares:
    """Partition `index`'s view of the shared counts: it writes its own slot and reads them all."""

    def __init__(self, root: Path, index: int, count: int) -> None:
        self.index = index
        self.count = count
        self._offset = index * _SLOT.size
        self._all = struct.Struct(f"={count}q")
        fd = os.open(shares_path(root), os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, count * _SLOT.size)
        finally:
            os.close(fd)
        self._last_close = 0.0
        self.publish(0)

    def publish(self, connections: int) -> None:
        """This partition now holds `connections` ingress connections."""
        _SLOT.pack_into(self._map, self._offset, connections)

    def should_close(self, connections: int) -> bool:
        """Whether to close the connection whose request just arrived, this partition holding `connections`."""
        now = time.monotonic()
        if now - self._last_close < CLOSE_EVERY_S:
            return False
        counts = self._all.unpack_from(self._map, 0)
        total = 0
        for i, n in enumerate(counts):
            if n < 0:
                return False
            total += connections if i == self.index else n
        if connections * self.count <= total + self.count - 1:  # connections <= ceil(total / count)
            return False
        self._last_close = now
        return True
