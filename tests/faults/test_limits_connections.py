"""Connections and headers of a real `durably serve` (issue 10, items 8 and 10).

Slow and idle clients must not hold connections forever, a connection cap must say so in the log and
answer 503 rather than drop requests, the header block is bounded (431), and the process raises its soft
open-file limit. Everything talks to the server over loopback sockets in bounded loops.
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from system.conftest import ServerProcess, wait_until

APP = f"{Path(__file__).resolve().parent / 'limits_app.py'}:app"
REQUEST_HEAD = b"POST /Limits/size HTTP/1.1\r\nHost: localhost\r\n"

pytestmark = pytest.mark.system


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    servers: list[ServerProcess] = []

    def start(*args: str, preexec_fn: Callable[[], None] | None = None) -> ServerProcess:
        server = ServerProcess(APP, tmp_path / f"data{len(servers)}", tmp_path / f"server-{len(servers)}.log")
        server.extra_args = list(args)
        server.preexec_fn = preexec_fn
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for s in servers:
            s.ensure_dead()


@contextmanager
def sockets(port: int, n: int, first: bytes = b"") -> Iterator[list[socket.socket]]:
    """n connected sockets (each sent `first`), closed at the end."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if first:
                s.sendall(first)
            s.setblocking(False)
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


def drain_until_closed(socks: list[socket.socket], timeout: float, trickle: bytes = b"",
                       every: float = 0.2) -> dict[socket.socket, bytes]:
    """Read every socket until the server closes it; meanwhile send `trickle` on each every `every` s.

    Returns what each socket received. Fails if some socket is still open after `timeout` seconds.
    """
    received = {s: b"" for s in socks}
    open_ = set(socks)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    next_trickle = time.monotonic()
    while open_ and time.monotonic() < deadline:
        if trickle and time.monotonic() >= next_trickle:
            for s in list(open_):
                try:
                    s.send(trickle)
                except OSError:
                    pass  # the server closed it; the read below sees that
            next_trickle = time.monotonic() + every
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if data:
                received[s] += data
            else:
                open_.discard(s)
                sel.unregister(s)
    sel.close()
    assert not open_, f"{len(open_)} of {len(socks)} connections still open after {timeout} s"
    return received


def still_open(s: socket.socket) -> bool:
    """Whether the server has neither sent anything on this (non-blocking) socket nor closed it."""
    try:
        return s.recv(1, socket.MSG_PEEK) is None  # pragma: no cover - recv never returns None
    except BlockingIOError:
        return True
    except OSError:
        return False


def body_of(response: bytes) -> dict[str, object]:
    _, _, body = response.partition(b"\r\n\r\n")
    return json.loads(body)


def test_slow_headers_trickled_bodies_and_idle_sockets_are_closed(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve("--header-timeout", "1", "--body-timeout", "1.5")
    client = httpx.Client(base_url=server.url, timeout=10)
    admin = httpx.Client(base_url=f"http://127.0.0.1:{server.admin_port}", timeout=10)
    with sockets(server.port, 100, REQUEST_HEAD) as slowloris, \
            sockets(server.port, 50, REQUEST_HEAD + b"Content-Length: 1000\r\n\r\n\"") as trickled, \
            sockets(server.port, 500) as idle:
        # They do not keep others out meanwhile.
        assert client.post("/Limits/ping").json() == "pong"
        started = time.monotonic()
        got = drain_until_closed(slowloris, 20, trickle=b"X-Slow: 1\r\n")
        assert all(r.startswith(b"HTTP/1.1 408 ") for r in got.values())
        assert body_of(next(iter(got.values())))["message"] == "request headers not received within 1 s"
        got = drain_until_closed(trickled, 20, trickle=b"x")
        assert all(r.startswith(b"HTTP/1.1 408 ") for r in got.values())
        assert body_of(next(iter(got.values()))) == {"code": 408,
                                                     "message": "request body not received within 1.5 s"}
        assert set(drain_until_closed(idle, 20).values()) == {b""}  # idle sockets: closed without a word
        assert time.monotonic() - started < 20
    assert client.post("/Limits/ping").json() == "pong"
    # Nothing was invoked with a partial body.
    listed = admin.get("/invocations", params={"handler": "size"}).json()["invocations"]
    assert listed == []
    assert "did not send its headers within 1 s" in server.log()
    assert "did not send its request body within 1.5 s" in server.log()


def test_the_connection_cap_answers_503_and_says_so_in_the_log(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve("--max-connections", "20", "--header-timeout", "60")
    admin = httpx.Client(base_url=f"http://127.0.0.1:{server.admin_port}", timeout=10)
    with sockets(server.port, 25) as idle, httpx.Client(base_url=server.url, timeout=10) as client:
        # The 5 past the cap are answered and closed at once (they cannot use up file descriptors) ...
        over = drain_until_closed(idle[20:], 10)
        assert all(r.startswith(b"HTTP/1.1 503 ") for r in over.values())
        assert body_of(next(iter(over.values())))["code"] == 503
        # ... the first ones stay open (idle[19] may be refused too if the server had not yet seen the
        # start-up health check's connection close) ...
        assert all(still_open(s) for s in idle[:19])
        # ... and a request on a new connection is refused the same way.
        resp = client.post("/Limits/ping")
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "1"
        assert resp.json()["code"] == 503 and "too many connections" in resp.json()["message"]
        assert admin.get("/health").status_code == 200  # the admin listener has its own cap
        wait_until(lambda: "over the cap of 20 (--max-connections)" in server.log(), 10, "the cap warning")

    def answered() -> bool:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            return c.post("/Limits/ping").status_code == 200

    wait_until(answered, 10, "requests to be served again once the idle connections closed")


def test_header_block_and_header_count_limits_answer_431(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve()
    client = httpx.Client(base_url=server.url, timeout=10)
    many = [(f"x-h{i}", "v") for i in range(99)]  # with host, content-length and the like: over 100
    assert client.post("/Limits/ping", headers=many[:90]).status_code == 200
    resp = client.post("/Limits/ping", headers=many + [("x-more", "v")] * 5)
    assert resp.status_code == 431
    assert resp.json()["code"] == 431 and "100 header fields" in resp.json()["message"]
    assert resp.headers["x-restate-error-source"] == "ingress"
    assert client.post("/Limits/ping", headers={"x-big": "a" * 60_000}).status_code == 200
    assert client.post("/Limits/ping", headers={"x-big": "a" * 70_000}).status_code == 431
    # A 4 MB header is refused after the first 64 KiB, not buffered (and the client reads the answer).
    with sockets(server.port, 1) as (s,):
        s.setblocking(True)
        s.sendall(REQUEST_HEAD + b"X-Huge: " + b"a" * 4_000_000 + b"\r\n\r\n")
        s.setblocking(False)
        got = drain_until_closed([s], 10)[s]
    assert got.startswith(b"HTTP/1.1 431 ")
    assert body_of(got)["code"] == 431

    small = serve("--max-headers", "12", "--max-header-bytes", "4KiB", "--max-body", "1KiB")
    client = httpx.Client(base_url=small.url, timeout=10)
    assert client.post("/Limits/size", json="x" * 2000).status_code == 413
    assert client.post("/Limits/ping", headers=[(f"x-h{i}", "v") for i in range(5)]).status_code == 200
    assert client.post("/Limits/ping", headers=[(f"x-h{i}", "v") for i in range(12)]).status_code == 431
    assert client.post("/Limits/ping", headers={"x-big": "a" * 5000}).status_code == 431


def test_the_soft_open_file_limit_is_raised_so_many_idle_sockets_do_not_lock_out_requests(
        serve) -> None:  # type: ignore[no-untyped-def]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard open-file limit ({hard}) leaves no room above the lowered soft limit")
    def ulimit_soft_256() -> None:  # in the server's process only, as `ulimit -Sn 256` would
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    server = serve("--header-timeout", "60", preexec_fn=ulimit_soft_256)
    limits = Path(f"/proc/{server.pid}/limits").read_text()
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    assert line.split()[3] == line.split()[4], line  # soft == hard
    with sockets(server.port, 300), sockets(server.admin_port, 300):
        assert httpx.post(f"{server.url}/Limits/ping", timeout=10).json() == "pong"
        assert httpx.get(f"http://127.0.0.1:{server.admin_port}/health", timeout=10).status_code == 200


def test_with_1024_open_files_1100_idle_sockets_get_answers_not_silence(serve) -> None:  # type: ignore[no-untyped-def]
    def ulimit_1024() -> None:  # in the server's process only, as `ulimit -n 1024` would
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    server = serve("--header-timeout", "60", preexec_fn=ulimit_1024)
    assert "does not fit the open-file limit of 1024 for 2 listeners: using 448" in server.log()
    admin = f"http://127.0.0.1:{server.admin_port}"
    with sockets(server.port, 1100) as idle:
        # Past the cap each connection is answered and closed, so the process soon has descriptors free
        # again (while they run out, libuv accepts and drops connections: that is what must not last).
        drain_until_closed(idle[460:], 20)

        def answered() -> httpx.Response | None:
            try:
                return httpx.post(f"{server.url}/Limits/ping", timeout=10)
            except httpx.TransportError:  # dropped (reset or closed unanswered) while descriptors ran out
                return None

        resp = wait_until(answered, 10, "an answer from the ingress while 1,100 sockets are open")
        assert isinstance(resp, httpx.Response)
        assert resp.status_code == 503 and "too many connections" in resp.json()["message"]
        assert httpx.get(f"{admin}/health", timeout=10).status_code == 200
    wait_until(lambda: httpx.post(f"{server.url}/Limits/ping", timeout=10).status_code == 200, 20,
               "the ingress to answer again")
