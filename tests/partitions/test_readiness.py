"""The shared ingress port says healthy only once every partition serves.

The first partition up answers on the shared port while the others still start; a client (a load balancer, a
benchmark) that took its health for the whole server's would open its connections to that partition alone and
keep them. So a partition's `/restate/health` answers 503 until the supervisor tells it (on its stdin pipe) that
every partition serves, and the supervisor logs "durably is serving" only after each partition confirmed it knows.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import httpx

import durably
from durably.server.http.ingress import Ingress
from durably.server.partitions.child import GROUP_SERVING, watch_parent
from durably.server.partitions.internal import InternalApp
from durably.server.partitions.layout import PartitionRole
from durably.testing import TestRuntime

APP = durably.app(services=[durably.Service("Nothing")])


def test_a_partition_is_not_ready_until_told_that_every_partition_serves(tmp_path: Path) -> None:
    role = PartitionRole(tmp_path, 1, 3)
    assert role.readiness() == "partition 1 of 3 is up; waiting for the other partitions to start"
    role.group_serving.set()
    assert role.readiness() is None


def test_the_supervisor_s_line_on_the_pipe_sets_it_even_split_over_reads(tmp_path: Path) -> None:
    r, w = os.pipe()
    group = threading.Event()
    ended = threading.Event()
    watcher = threading.Thread(target=lambda: (watch_parent(r, group), ended.set()), daemon=True)
    # The watcher signals its own process when the pipe ends (the supervisor went): keep that signal away.

    old = signal.signal(signal.SIGTERM, lambda *_: ended.set())
    try:
        watcher.start()
        os.write(w, GROUP_SERVING[:3])
        assert not group.wait(0.2)
        os.write(w, GROUP_SERVING[3:])
        assert group.wait(10)
        os.close(w)
        assert ended.wait(10)
        watcher.join(10)
    finally:
        signal.signal(signal.SIGTERM, old)
        os.close(r)


async def test_ingress_health_answers_503_in_restate_s_shape_until_then(tmp_path: Path) -> None:
    role = PartitionRole(tmp_path, 0, 2)
    async with TestRuntime(APP) as rt:
        ingress = Ingress(rt.engine)
        ingress.readiness = role.readiness
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ingress), base_url="http://t") as c:
            r = await c.get("/restate/health")
            assert r.status_code == 503
            assert r.json()["message"] == "partition 0 of 2 is up; waiting for the other partitions to start"
            internal = InternalApp(rt.engine, ingress, None, 0, role.group_serving.is_set)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=internal), base_url="http://t") as ic:
                h = await ic.get("/__durably/health")
                assert h.status_code == 200 and h.json()["group"] is False  # serving, not yet told
                role.group_serving.set()
                assert (await ic.get("/__durably/health")).json()["group"] is True
            assert (await c.get("/restate/health")).status_code == 200
