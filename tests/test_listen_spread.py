"""The partitions' shared ingress port deals connections out by the client's source port.

Without a program the kernel picks a socket of a SO_REUSEPORT group by a hash of the addresses, at random: 32
connections of one client were seen split 8/24 (and 32/0) between two partitions, and the busier one held the
whole server back. With `spread_by_source_port` a client whose ports come in sequence gets its connections dealt
out in turn, and a socket missing from the group (a partition restarting) costs no connection.
"""

from __future__ import annotations

import random
import socket
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from durably.server.process.listeners import listen_tcp

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_ATTACH_REUSEPORT_CBPF is Linux's")


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def group(host: str, n: int) -> Iterator[list[socket.socket]]:
    port = free_port(host)
    with ExitStack() as stack:
        socks = [stack.enter_context(listen_tcp(host, port, shared=True, spread=n)) for _ in range(n)]
        for s in socks:
            s.setblocking(False)
        yield socks


def connect_from(host: str, port: int, source_ports: range, stack: ExitStack) -> None:
    """Connect from exactly these source ports (a client whose ports come in sequence)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for p in source_ports:
        c = stack.enter_context(socket.socket(family))
        c.bind((host, p))
        c.connect((host, port))


def connect_in_sequence(host: str, port: int, count: int, stack: ExitStack) -> None:
    for _ in range(20):  # another process may hold one of the ports picked: pick another run of them
        base = random.randrange(20000, 30000, 2)
        try:
            connect_from(host, port, range(base, base + count), stack)
            return
        except OSError:
            continue
    pytest.fail("no run of free source ports found")


def accepted(sock: socket.socket) -> int:
    n = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("n", [2, 3])
def test_connections_from_ports_in_sequence_are_dealt_out_evenly(host: str, n: int) -> None:
    if ":" in host and not socket.has_ipv6:
        pytest.skip("no IPv6")
    with group(host, n) as socks, ExitStack() as clients:
        connect_in_sequence(host, socks[0].getsockname()[1], 24 * n, clients)
        assert [accepted(s) for s in socks] == [24] * n


def test_a_socket_missing_from_the_group_costs_no_connection() -> None:
    with group("127.0.0.1", 2) as socks, ExitStack() as clients:
        port = socks[0].getsockname()[1]
        socks[1].close()  # a partition restarting: its socket left the group
        connect_in_sequence("127.0.0.1", port, 16, clients)
        assert accepted(socks[0]) == 16
