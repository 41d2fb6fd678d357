"""What an operator sees of `durably serve --partitions 2`: one server in the UI's invocation list and overview,
in `/metrics`, in describe and in the log; and a kill that ends a call tree across both partitions."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from durably.protocol.ids import InvocationId

from .conftest import REPO_ROOT, ServerFactory, wait_until
from .test_partitions import PMAP, admin, get, keys_owned_by, post, start

pytestmark = pytest.mark.system


def _ids_on(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)"', html)


def test_the_ui_list_and_overview_show_every_partition(durably_serve: ServerFactory) -> None:
    server = start(durably_serve)
    ids: dict[str, int] = {}
    for partition in (0, 1):
        for key in keys_owned_by(partition, 26):
            r = post(server, f"/Counter/{key}/add", 1)
            ids[r.headers["x-restate-id"]] = partition
    assert set(ids.values()) == {0, 1}
    page = admin(server, "GET", "/ui/invocations")
    assert page.status_code == 200
    listed = _ids_on(page.text)
    assert len(listed) == 50 and {PMAP.owner(i) for i in listed} == {0, 1}, "the list shows one partition only"
    # The next page (the page's own "older" link): the rest, in both partitions' order, none twice.
    older = re.search(r'<a id="older" href="([^"]+)"', page.text)
    assert older is not None
    rest = _ids_on(admin(server, "GET", older.group(1).replace("&amp;", "&")).text)
    assert len(rest) == 2 and set(listed + rest) == set(ids)
    listed += rest
    described = [admin(server, "GET", f"/invocations/{i}").json()["created_at"] for i in listed]
    assert described == sorted(described, reverse=True), "newest first across partitions"
    # The same filters as one process: a key of partition 1, a service, the live-refresh fragment.
    key1 = keys_owned_by(1, 1)[0]
    only = _ids_on(admin(server, "GET", f"/ui/invocations?service=Counter&key={key1}").text)
    assert len(only) == 1 and PMAP.owner(only[0]) == 1
    assert _ids_on(admin(server, "GET", "/ui/invocations?service=Signup").text) == []
    assert _ids_on(admin(server, "GET", "/ui/invocations?fragment=rows&status=completed").text) == listed[:50]
    assert admin(server, "GET", "/ui/invocations?before=zz").status_code == 400
    # The overview adds up both partitions' counters (sampled every 10 s).
    started = re.compile(r'data-series="started" data-total="([0-9.]+)"')

    def total() -> bool:
        m = started.search(admin(server, "GET", "/ui/overview").text)
        return m is not None and float(m.group(1)) == len(ids)

    wait_until(total, 45, f"the overview to count {len(ids)} started invocations")


def _samples(text: str, name: str) -> dict[str, float]:
    """partition -> value of one metric in the supervisor's merged /metrics."""
    out: dict[str, float] = {}
    for m in re.finditer(rf'^{name}\{{partition="(\d)"[^}}]*\}} (\S+)$', text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def test_metrics_count_the_messages_between_partitions(durably_serve: ServerFactory) -> None:
    server = start(durably_serve)
    crossed = 0
    for key in keys_owned_by(0, 3) + keys_owned_by(1, 3):
        r = post(server, "/Caller/add_to", key)
        assert r.json()["value"] == 1
        crossed += PMAP.owner(r.headers["x-restate-id"]) != PMAP.owner(InvocationId.for_keyed("", key))
    text = ""

    def settled() -> bool:
        nonlocal text
        text = admin(server, "GET", "/metrics").text
        delivered = _samples(text, "durably_partition_outbox_delivered_total")
        applied = _samples(text, "durably_partition_inbox_applied_total")
        pending = _samples(text, "durably_partition_outbox_pending")
        return (set(delivered) == set(applied) == set(pending) == {"0", "1"} and sum(pending.values()) == 0
                and sum(delivered.values()) == sum(applied.values()) > 0)

    wait_until(settled, 20, "every cross-partition message delivered and applied", lambda: "\n" + text[-3000:])
    # A call that crossed is two messages (the call there, its result back); one that stayed is none.
    assert sum(_samples(text, "durably_partition_inbox_applied_total").values()) == 2 * crossed
    for family, kind in (("durably_partition_outbox_pending", "gauge"),
                         ("durably_partition_outbox_delivered_total", "counter"),
                         ("durably_partition_inbox_applied_total", "counter")):
        assert text.count(f"# TYPE {family} {kind}\n") == 1


def _cli(server: object, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "durably.cli.main", *args, "--admin",
                           f"http://127.0.0.1:{server.admin_port}"],  # type: ignore[attr-defined]
                          capture_output=True, text=True, timeout=60, env=env, cwd=REPO_ROOT)


def test_describe_and_the_log_name_the_partition(durably_serve: ServerFactory) -> None:
    server = start(durably_serve)
    for partition in (0, 1):
        key = keys_owned_by(partition, 1)[0]
        inv_id = post(server, f"/Counter/{key}/add", 1).headers["x-restate-id"]
        d = admin(server, "GET", f"/invocations/{inv_id}")
        assert d.status_code == 200 and d.json()["partition"] == partition
        out = _cli(server, "invocations", "describe", inv_id)
        assert out.returncode == 0, out.stderr
        assert re.search(rf"^partition\s*:?\s+{partition}$", out.stdout, re.M), out.stdout
        # Every line a partition writes says which one: its lifecycle line for this invocation, for instance.
        line = re.compile(rf"^\S+ \S+ INFO p{partition} durably\.invocations: invocation {inv_id} completed", re.M)
        wait_until(lambda line=line: line.search(server.log()), 10, f"p{partition}'s line for {inv_id}",
                   lambda: "\n" + server.log()[-2000:])
    assert re.search(r"^\S+ \S+ INFO p0 durably\.server: partition 0 of 2", server.log(), re.M)


def test_one_process_describe_has_no_partition(durably_serve: ServerFactory) -> None:
    server = durably_serve.start("partitioned")
    inv_id = post(server, f"/Counter/{keys_owned_by(1, 1)[0]}/add", 1).headers["x-restate-id"]
    d = admin(server, "GET", f"/invocations/{inv_id}")
    assert d.status_code == 200 and "partition" not in d.json()
    assert not re.search(r"INFO p\d ", server.log())


def test_kill_of_a_call_tree_across_partitions_kills_every_node_and_frees_the_key(
        durably_serve: ServerFactory, tmp_path: Path) -> None:
    server = start(durably_serve)
    key = keys_owned_by(1, 1, "held")[0]
    # The parent runs in partition 0: an idempotency key whose (deterministic) id partition 0 owns.
    idem = next(f"tree-{i}" for i in range(1000)
                if PMAP.owner(PMAP.id_for("Caller", "hold_at", workflow=False, keyed=False,
                                          idempotency_key=f"tree-{i}")) == 0)
    published = tmp_path / "awakeable"
    r = post(server, "/Caller/hold_at/send", {"key": key, "path": str(published)}, {"idempotency-key": idem})
    assert r.status_code in (200, 202), r.text
    parent = r.json()["invocationId"]
    assert PMAP.owner(parent) == 0
    wait_until(published.exists, 20, "the child in partition 1 to wait on its awakeable")
    children = admin(server, "GET", f"/invocations?service=Counter&key={key}").json()["invocations"]
    assert len(children) == 1 and children[0]["status"] != "completed"
    child = children[0]["id"]
    assert PMAP.owner(child) == 1
    out = _cli(server, "invocations", "kill", parent)
    assert out.returncode == 0 and f"killed {parent}" in out.stdout, out.stdout + out.stderr

    def ended_killed(inv_id: str) -> bool:
        d = admin(server, "GET", f"/invocations/{inv_id}").json()
        return d["status"] == "completed" and d.get("failure_message") == "killed"

    wait_until(lambda: ended_killed(parent), 10, "the parent killed")
    # The child in the other partition is killed asynchronously, by a message from partition 0.
    wait_until(lambda: ended_killed(child), 20, "the child in partition 1 killed",
               lambda: "\n" + json.dumps(admin(server, "GET", f"/invocations/{child}").json())[:2000])
    attached = get(server, f"/restate/invocation/{child}/attach")
    assert attached.status_code == 409 and attached.json()["message"] == "killed"
    # Its key is free: the next call on it runs at once.
    assert post(server, f"/Counter/{key}/add", 1).json()["value"] == 1
