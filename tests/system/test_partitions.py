"""`durably serve --partitions 2` as a user sees it: one server, two partition processes behind the same ports.

Handlers of tests/system/apps/partitioned.py answer with their process id, and the supervisor's log names
each partition's pid, so a test sees which partition answered. Every request opens a new connection, so the
kernel spreads them over both partitions' sockets (SO_REUSEPORT) and forwarding is exercised.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from durably.protocol.ids import InvocationId
from durably.server.partitions.map import PartitionMap

from .conftest import REPO_ROOT, ServerFactory, ServerProcess, wait_until

PMAP = PartitionMap(2, 0)
_SERVING = re.compile(r"partition (\d+) of (\d+) \(pid (\d+)\) is serving")


def start(durably_serve: ServerFactory, data_dir: Path | None = None) -> ServerProcess:
    server = durably_serve.new("partitioned", data_dir)
    server.extra_args = ["--partitions", "2"]
    return server.start()


def pids(server: ServerProcess) -> dict[int, int]:
    """The latest pid of each partition, from the log."""
    out: dict[int, int] = {}
    for m in _SERVING.finditer(server.log()):
        out[int(m.group(1))] = int(m.group(3))
    return out


def post(server: ServerProcess, path: str, body: object = None, headers: dict[str, str] | None = None,
         ) -> httpx.Response:
    # A fresh connection per request: the kernel picks a partition per connection.
    with server.client() as c:
        return c.post(path, content=json.dumps(body).encode() if body is not None else b"",
                      headers={"content-type": "application/json", **(headers or {})})


def get(server: ServerProcess, path: str) -> httpx.Response:
    with server.client() as c:
        return c.get(path)


def admin(server: ServerProcess, method: str, path: str) -> httpx.Response:
    return httpx.request(method, f"http://127.0.0.1:{server.admin_port}{path}", timeout=15)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not serving
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def keys_owned_by(partition: int, n: int, prefix: str = "k") -> list[str]:
    out, i = [], 0
    while len(out) < n:
        key = f"{prefix}{i}"
        if PMAP.owner(InvocationId.for_keyed("", key)) == partition:
            out.append(key)
        i += 1
    return out


def test_keyed_calls_run_in_the_partition_that_owns_the_key(durably_serve: ServerFactory) -> None:
    server = start(durably_serve)
    owner_pid = pids(server)
    assert sorted(owner_pid) == [0, 1]
    for partition in (0, 1):
        for key in keys_owned_by(partition, 3):
            for expected in (1, 2, 3, 4):
                r = post(server, f"/Counter/{key}/add", 1)
                assert r.status_code == 200, r.text
                assert r.json() == {"value": expected, "pid": owner_pid[partition]}
            assert get(server, f"/Counter/{key}/get").json() == 4


def test_plain_calls_run_where_they_land_with_ids_of_that_partition(durably_serve: ServerFactory) -> None:
    server = start(durably_serve)
    by_pid = {pid: index for index, pid in pids(server).items()}
    seen = set()
    for _ in range(40):
        r = post(server, "/Plain/pid")
        assert r.status_code == 200, r.text
        ran_in = by_pid[r.json()]
        assert PMAP.owner(r.headers["x-restate-id"]) == ran_in  # minted in the range of where it ran
        seen.add(ran_in)
        if seen == {0, 1}:
            break
    assert seen == {0, 1}, "40 new connections all landed on one partition"


def test_idempotent_repeats_find_the_first_invocation_at_its_owner(durably_serve: ServerFactory) -> None:
    server = start(durably_serve)
    owner_pid = pids(server)
    for n in range(4):
        key = f"order-{n}"
        expected_id = PMAP.id_for("Plain", "pid", workflow=False, keyed=False, idempotency_key=key)
        answers = [post(server, "/Plain/pid", headers={"idempotency-key": key}) for _ in range(4)]
        assert {a.status_code for a in answers} == {200}
        assert {a.headers["x-restate-id"] for a in answers} == {str(expected_id)}
        assert {a.json() for a in answers} == {owner_pid[PMAP.owner(expected_id)]}


def test_workflow_submit_signal_and_attach_reach_the_workflow_s_partition(durably_serve: ServerFactory) -> None:
    server = start(durably_serve)
    owner_pid = pids(server)
    for partition in (0, 1):
        key = keys_owned_by(partition, 1, prefix="user-")[0]
        r = post(server, f"/Signup/{key}/run/send", f"{key}@example.com")
        assert r.status_code == 202, r.text
        assert r.json()["invocationId"] == str(InvocationId.for_workflow("Signup", key))
        again = post(server, f"/Signup/{key}/run/send", f"{key}@example.com")
        assert again.status_code == 202 and again.json()["status"] == "PreviouslyAccepted"
        r = post(server, f"/Signup/{key}/confirm", "c0de")
        assert r.status_code == 200 and r.json() == owner_pid[partition]
        r = get(server, f"/restate/workflow/Signup/{key}/attach")
        assert r.status_code == 200, r.text
        assert r.json() == {"email": f"{key}@example.com", "code": "c0de", "pid": owner_pid[partition]}
        assert get(server, f"/restate/workflow/Signup/{key}/output").json()["code"] == "c0de"


def test_awakeables_are_resolved_at_their_invocation_s_partition(durably_serve: ServerFactory,
                                                                 tmp_path: Path) -> None:
    server = start(durably_serve)
    owner_pid = pids(server)
    invocations = []
    for i in range(6):
        path = tmp_path / f"awakeable-{i}"
        r = post(server, "/Plain/wait/send", str(path))
        assert r.status_code == 202, r.text
        invocations.append((r.json()["invocationId"], path))
    for inv_id, path in invocations:
        awakeable_id = wait_until(lambda path=path: path.exists() and path.read_text(), 20, "the awakeable id")
        r = post(server, f"/restate/awakeables/{awakeable_id}/resolve", "yes")
        assert r.status_code == 202, r.text
        done = get(server, f"/restate/invocation/{inv_id}/attach")
        assert done.status_code == 200, done.text
        assert done.json() == f"yes in {owner_pid[PMAP.owner(inv_id)]}"
    assert {PMAP.owner(i) for i, _ in invocations} <= {0, 1}


def test_admin_api_sees_one_server(durably_serve: ServerFactory) -> None:
    server = start(durably_serve)
    ids = set()
    for partition in (0, 1):
        for key in keys_owned_by(partition, 3):
            r = post(server, f"/Counter/{key}/add", 1)
            ids.add(r.headers["x-restate-id"])
    assert {PMAP.owner(i) for i in ids} == {0, 1}
    listed = admin(server, "GET", "/invocations?limit=100").json()["invocations"]
    assert ids <= {row["id"] for row in listed}
    # Paging through both partitions, two at a time: every invocation once, newest first.
    paged, cursor = [], None
    for _ in range(20):
        r = admin(server, "GET", "/invocations?limit=2" + (f"&before={cursor}" if cursor else "")).json()
        paged.extend(row["id"] for row in r["invocations"])
        cursor = r.get("next_cursor")
        if cursor is None:
            break
    assert sorted(paged) == sorted(row["id"] for row in listed) and len(paged) == len(set(paged))
    for inv_id in ids:
        d = admin(server, "GET", f"/invocations/{inv_id}")
        assert d.status_code == 200 and d.json()["id"] == inv_id and d.json()["status"] == "completed"
    assert admin(server, "GET", "/invocations/inv_1notanid").status_code == 400
    assert admin(server, "GET", "/health").status_code == 200
    metrics = admin(server, "GET", "/metrics").text
    assert 'partition="0"' in metrics and 'partition="1"' in metrics
    families = [line.split()[2] for line in metrics.splitlines() if line.startswith("# TYPE")]
    assert len(families) == len(set(families)), "a metric family is declared twice"
    key = keys_owned_by(1, 1)[0]
    state = admin(server, "GET", f"/services/Counter/state/{key}")
    assert state.status_code == 200, state.text
    new_state = {"object_key": key, "new_state": {"value": list(b"42")}}
    r = httpx.post(f"http://127.0.0.1:{server.admin_port}/services/Counter/state", json=new_state, timeout=15)
    assert r.status_code == 202, r.text
    assert get(server, f"/Counter/{key}/get").json() == 42  # written in the partition that owns the key
    services = admin(server, "GET", "/services").json()
    assert {s["name"] for s in services["services"]} >= {"Counter", "Plain", "Signup"}


def test_a_killed_partition_is_restarted_and_its_invocations_finish(durably_serve: ServerFactory) -> None:
    server = start(durably_serve)
    before = pids(server)
    sent = []
    for n in range(12):
        key = f"slow-{n}"
        inv_id = PMAP.id_for("Plain", "slow", workflow=False, keyed=False, idempotency_key=key)
        if PMAP.owner(inv_id) != 1:
            continue
        r = post(server, "/Plain/slow/send", 40, headers={"idempotency-key": key})
        assert r.status_code == 202, r.text
        sent.append(r.json()["invocationId"])
    assert sent
    os.kill(before[1], signal.SIGKILL)
    wait_until(lambda: "partition 1 (pid" in server.log() and "stopped unexpectedly" in server.log(), 20,
               "the supervisor to see partition 1 die")
    wait_until(lambda: pids(server).get(1) not in (None, before[1]), 30, "partition 1 to serve again")
    assert alive(before[0]) and pids(server)[0] == before[0], "partition 0 was not touched"
    for inv_id in sent:
        r = get(server, f"/restate/invocation/{inv_id}/attach")
        assert r.status_code == 200, r.text
        assert r.json() == sum(range(40))


def test_sigterm_drains_every_partition_and_exits_0(durably_serve: ServerFactory) -> None:
    server = start(durably_serve)
    children = pids(server)
    assert post(server, "/Plain/pid").status_code == 200
    assert server.terminate(timeout=40) == 0
    assert not any(alive(pid) for pid in children.values())
    assert server.log().count("drained in") >= 2
    # A partition's exit is clean: no interpreter abort on the way out (a thread reading its stdin pipe did that).
    assert "Fatal Python error" not in server.log()


def _raw_post_from(server: ServerProcess, source_port: int, path: str) -> tuple[int, bytes]:
    """POST over a connection from exactly `source_port` (the port decides the partition that accepts it)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15,
                                  source_address=("127.0.0.1", source_port)) as c:
        c.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: 0\r\n"
                  "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_connections_from_ports_in_sequence_reach_every_partition(durably_serve: ServerFactory) -> None:
    # A client's connections are dealt out by source port, not hashed: two from neighbouring ports land on the
    # two partitions (a run of connections from one client is spread evenly; tests/test_listen_spread.py).
    server = start(durably_serve)
    children = pids(server)
    for _ in range(20):
        base = random.randrange(20000, 30000, 4)
        try:
            answers = [_raw_post_from(server, base + offset, "/Plain/pid") for offset in (0, 2)]
        except OSError:  # a port of the run is taken: another run
            continue
        assert [status for status, _ in answers] == [200, 200]
        assert {int(body) for _, body in answers} == set(children.values())
        return
    raise AssertionError("no free pair of source ports found")


def test_the_ingress_health_answers_200_on_every_partition_once_serving(durably_serve: ServerFactory) -> None:
    server = start(durably_serve)  # returns once "durably is serving" is in the log
    for _ in range(20):
        base = random.randrange(20000, 30000, 4)
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=15,
                                          source_address=("127.0.0.1", base)) as a, \
                    socket.create_connection(("127.0.0.1", server.port), timeout=15,
                                             source_address=("127.0.0.1", base + 2)) as b:
                for c in (a, b):
                    c.sendall(f"GET /restate/health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
                statuses = [int(c.recv(65536).split()[1]) for c in (a, b)]
        except OSError:
            continue
        assert statuses == [200, 200]
        return
    raise AssertionError("no free pair of source ports found")


def test_partitions_do_not_outlive_a_killed_supervisor(durably_serve: ServerFactory) -> None:
    server = start(durably_serve)
    children = pids(server)
    server.kill()
    wait_until(lambda: not any(alive(pid) for pid in children.values()), 20, "the partitions to go")


def _serve_refused(data_dir: Path, partitions: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "durably.cli.main", "serve", "--partitions", str(partitions),
                           "--data-dir", str(data_dir), "--port", "0", "--admin-port", "0"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


def test_another_partition_count_is_refused(durably_serve: ServerFactory, tmp_path: Path) -> None:
    server = start(durably_serve, tmp_path / "two")
    assert server.terminate(timeout=40) == 0
    for wrong in (3, 1):
        refused = _serve_refused(tmp_path / "two", wrong)
        assert refused.returncode == 1, refused.stderr
        assert "was created with 2 partitions" in refused.stderr
        assert "fixed when a data directory is created" in refused.stderr
        assert "--partitions 2" in refused.stderr
    # A directory of the one-process layout is not read as a partitioned one either.
    single = durably_serve.new("partitioned", tmp_path / "one").start()
    assert single.terminate(timeout=40) == 0
    assert not (tmp_path / "one" / "partitions.json").exists()
    refused = _serve_refused(tmp_path / "one", 2)
    assert refused.returncode == 1
    assert "was created with the single-partition layout" in refused.stderr and "--partitions 1" in refused.stderr


def test_while_a_partition_cannot_come_back_its_requests_get_503_and_restarts_back_off(
        durably_serve: ServerFactory, tmp_path: Path) -> None:
    import fcntl

    server = start(durably_serve, tmp_path / "data")
    before = pids(server)
    key = keys_owned_by(1, 1)[0]
    assert post(server, f"/Counter/{key}/add", 5).json()["value"] == 5
    idem = next(f"k{i}" for i in range(1000) if PMAP.owner(PMAP.id_for(  # an invocation partition 1 owns
        "Plain", "slow", workflow=False, keyed=False, idempotency_key=f"k{i}")) == 1)
    r = post(server, "/Plain/slow/send", 10, headers={"idempotency-key": idem})
    assert r.status_code == 202, r.text
    inv_id = r.json()["invocationId"]
    # Partition 1 dies, and its store is held by someone else: it cannot come back until that lets go.
    os.kill(before[1], signal.SIGKILL)
    lock = os.open(tmp_path / "data" / "partition-1" / "durably.lock", os.O_RDWR)

    def locked() -> bool:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        wait_until(locked, 20, "the killed partition's lock to be free")
        wait_until(lambda: "(3 crashes in a row)" in server.log(), 30, "three failed restarts")
        delays = [float(d) for d in re.findall(r"partition 1 \(pid \d+\) stopped unexpectedly \([^)]*\); "
                                               r"restarting it in ([\d.]+) s", server.log())]
        assert delays[:3] == [0.25, 0.5, 1.0], delays
        # Requests partition 1 owns: refused in Restate's shape, from whichever partition they landed on.
        refused = post(server, f"/Counter/{key}/add", 1)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["code"] == 503
        assert "partition 1, which owns this request, is not serving" in refused.json()["message"]
        described = admin(server, "GET", f"/invocations/{inv_id}")
        assert described.status_code == 503 and "partition 1" in described.json()["message"]
        assert admin(server, "GET", "/health").status_code == 503
        assert post(server, "/Plain/pid").status_code == 200  # partition 0 serves its own meanwhile
    finally:
        os.close(lock)  # lets go: the next restart succeeds
    wait_until(lambda: pids(server).get(1) != before[1], 40, "partition 1 to serve again")
    assert get(server, f"/restate/invocation/{inv_id}/attach").json() == sum(range(10))
    assert post(server, f"/Counter/{key}/add", 1).json()["value"] == 6  # nothing lost
    assert admin(server, "GET", "/health").status_code == 200


def test_operator_actions_and_ui_pages_reach_the_owner(durably_serve: ServerFactory, tmp_path: Path) -> None:
    server = start(durably_serve)
    waiting: dict[int, tuple[str, Path]] = {}
    for i in range(12):
        r = post(server, "/Plain/wait/send", str(tmp_path / f"a{i}"))
        waiting.setdefault(PMAP.owner(r.json()["invocationId"]), (r.json()["invocationId"], tmp_path / f"a{i}"))
        if len(waiting) == 2:
            break
    assert sorted(waiting) == [0, 1], "12 new connections all landed on one partition"
    for partition, (inv_id, published) in waiting.items():
        wait_until(published.exists, 20, f"the invocation in partition {partition} to wait on its awakeable")
        page = admin(server, "GET", f"/ui/invocations/{inv_id}")
        assert page.status_code == 200 and inv_id in page.text
        assert admin(server, "PATCH", f"/invocations/{inv_id}/kill").status_code in (200, 202)
        done = get(server, f"/restate/invocation/{inv_id}/attach")
        assert done.status_code != 200 and done.json()["code"] >= 400
        assert admin(server, "GET", f"/invocations/{inv_id}").json()["status"] == "completed"
        assert admin(server, "PATCH", f"/invocations/{inv_id}/purge").status_code == 200
        assert admin(server, "GET", f"/invocations/{inv_id}").status_code == 404


def test_a_registered_deployment_serves_from_every_partition_and_is_removed_from_all(
        durably_serve: ServerFactory, tmp_path: Path) -> None:
    from .test_ui_browser import remote_deployment, stop_remote

    server = start(durably_serve)
    try:
        url = remote_deployment(tmp_path)
        r = httpx.post(f"http://127.0.0.1:{server.admin_port}/deployments", json={"uri": url}, timeout=30)
        assert r.status_code == 201, r.text
        dep_id = r.json()["id"]
        for i in range(10):  # new connections: both partitions answer
            assert post(server, "/FarGreeter/wave", f"n{i}").json() == f"hi n{i} from afar"
        for partition in (0, 1):  # and the owner of an idempotent request knows the service too
            idem = next(f"w{i}" for i in range(1000) if PMAP.owner(PMAP.id_for(
                "FarGreeter", "wave", workflow=False, keyed=False, idempotency_key=f"w{i}")) == partition)
            assert post(server, "/FarGreeter/wave", "x", {"idempotency-key": idem}).json() == "hi x from afar"
        assert admin(server, "DELETE", f"/deployments/{dep_id}").status_code == 202
        for _ in range(10):
            gone = post(server, "/FarGreeter/wave", "n")
            assert gone.status_code == 404, gone.text
    finally:
        stop_remote()


def _cpus_of(pid: int) -> str:
    """The CPUs a process may run on, in /proc's list form ("0-3,8")."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


def test_each_partition_keeps_to_its_own_cpus_also_after_a_restart(durably_serve: ServerFactory) -> None:
    from durably.server.partitions.cpus import describe, partition_cpus

    server = start(durably_serve)
    mine = os.sched_getaffinity(0)  # the server inherits the test's CPUs
    expected = {i: describe(partition_cpus(mine, i, 2)) for i in range(2)}
    children = pids(server)
    assert {i: _cpus_of(pid) for i, pid in children.items()} == expected
    for i in range(2):
        assert f"partition {i} keeps to CPUs {expected[i]}" in server.log()
    # The supervisor itself is not pinned, so a restarted partition starts from every CPU and pins itself again.
    assert _cpus_of(server.pid) == describe(mine)
    os.kill(children[1], signal.SIGKILL)
    wait_until(lambda: pids(server).get(1) not in (None, children[1]), 30, "partition 1 to serve again")
    assert _cpus_of(pids(server)[1]) == expected[1]
    assert post(server, "/Plain/pid").status_code == 200


def test_no_pin_partitions_leaves_the_partitions_on_every_cpu(durably_serve: ServerFactory) -> None:
    from durably.server.partitions.cpus import describe

    server = durably_serve.new("partitioned")
    server.extra_args = ["--partitions", "2", "--no-pin-partitions"]
    server.start()
    everything = describe(os.sched_getaffinity(0))
    assert [_cpus_of(pid) for pid in pids(server).values()] == [everything, everything]
    assert "keeps to CPUs" not in server.log()


class _KeepAlive:
    """One keep-alive HTTP/1.1 connection, optionally from a given source port."""

    def __init__(self, server: ServerProcess, source_port: int | None = None) -> None:
        self.server = server
        source = ("127.0.0.1", source_port) if source_port is not None else None
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=15, source_address=source)
        self.buf = b""

    def post(self, path: str) -> tuple[int, dict[str, str], bytes]:
        self.sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\n"
                          "Content-Length: 0\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection without an answer"
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers["content-length"])
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection in the middle of an answer"
            self.buf += chunk
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(lines[0].split()[1]), headers, body

    def close(self) -> None:
        self.sock.close()


def test_keep_alive_connections_piled_on_one_partition_are_evened_out(durably_serve: ServerFactory) -> None:
    # Source ports 4 apart are dealt to the same partition: 8 connections on one partition, none on the other.
    # The loaded partition answers some of them with `connection: close` (each answer whole), the client opens
    # new connections, which the kernel deals again, until each partition holds its share; then no more closes.
    server = start(durably_serve)
    children = set(pids(server).values())
    conns: list[_KeepAlive] = []
    for _ in range(20):
        base = random.randrange(20000, 30000, 4)
        try:
            conns = [_KeepAlive(server, base + 4 * k) for k in range(8)]
            break
        except OSError:  # a port of the run is taken: another run
            for c in conns:
                c.close()
            conns = []
    assert conns, "no free run of source ports found"
    owner: list[int] = []
    closes = 0
    for i, c in enumerate(conns):
        status, headers, body = c.post("/Plain/pid")
        assert status == 200, body
        owner.append(int(body))
        if headers.get("connection") == "close":
            closes += 1
            c.close()
            conns[i] = _KeepAlive(server)
    assert len(set(owner)) == 1, f"the premise: all 8 on one partition, got {owner}"

    def round_trip() -> int:
        shed = 0
        for i, c in enumerate(conns):
            status, headers, body = c.post("/Plain/pid")
            assert status == 200, body
            owner[i] = int(body)
            if headers.get("connection") == "close":
                shed += 1
                c.close()
                conns[i] = _KeepAlive(server)  # an ephemeral port: dealt by the kernel afresh
        return shed

    quiet_rounds = 0

    def balanced() -> bool:
        nonlocal closes, quiet_rounds
        shed = round_trip()
        closes += shed
        split = sorted(owner.count(pid) for pid in children)
        quiet_rounds = quiet_rounds + 1 if shed == 0 and split == [4, 4] else 0
        return quiet_rounds >= 3

    wait_until(balanced, 30, "the connections to be evened out over the partitions")
    assert closes >= 4  # at least the 4 over the loaded partition's share were sent away
    for c in conns:
        c.close()
