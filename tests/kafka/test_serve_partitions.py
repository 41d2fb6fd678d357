"""Kafka subscriptions through `durably serve --partitions 2`: partition 0 consumes, each record's invocation is
created at the partition that owns its key; keyed records land exactly once, in per-key order."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from durably.protocol.ids import InvocationId
from tests.kafka.broker import KafkaBroker
from tests.kafka.conftest import committed_offsets, create_topic, produce
from tests.kafka.test_serve_subscriptions import APP, _wait, admin, all_landed, keyed_records, seen, subscribe
from tests.system.conftest import ServerProcess
from tests.system.test_partitions import PMAP, keys_owned_by, pids

pytestmark = pytest.mark.kafka


@pytest.fixture
def serve2(broker: KafkaBroker, tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(APP, tmp_path / "data", tmp_path / "server.log")
    server.extra_args = ["--kafka-cluster", f"local={broker.bootstrap}", "--partitions", "2"]
    try:
        yield server
    finally:
        server.ensure_dead()


def test_keyed_records_land_once_in_key_order_at_their_owners(broker: KafkaBroker, serve2: ServerProcess) -> None:
    topic = create_topic(broker, 4)
    serve2.start()
    sub = subscribe(serve2, topic)
    records, expected = keyed_records(4, 12, 240)
    pmap = PMAP
    assert {pmap.owner(InvocationId.for_keyed("", key)) for key in expected} == {0, 1}
    produce(broker, topic, records)
    _wait(lambda: all_landed(serve2, expected), "every record to land")
    for key, values in expected.items():
        assert seen(serve2, key) == values, key  # once each, in the order produced
    with admin(serve2) as a:
        listed = a.get("/invocations?service=Tally&handler=add&limit=1000").json()["invocations"]
        metrics = a.get("/metrics").text
    assert len(listed) == 240
    for row in listed:  # each record's invocation lives at the owner of its key
        assert pmap.owner(row["id"]) == pmap.owner(InvocationId.for_keyed("", row["target"].split("/")[1]))
    assert f'durably_kafka_records_consumed_total{{partition="0",subscription="{sub["id"]}"}}' in metrics


def test_an_offset_is_committed_only_once_the_owner_has_the_invocation(broker: KafkaBroker,
                                                                       serve2: ServerProcess) -> None:
    topic = create_topic(broker, 1)
    serve2.start()
    sub = str(subscribe(serve2, topic)["id"])
    k0, k1 = keys_owned_by(0, 1, "a")[0], keys_owned_by(1, 1, "b")[0]
    produce(broker, topic, [(0, k0.encode(), b"0", None)])
    _wait(lambda: committed_offsets(broker, sub, topic, 1).get(0) == 1, "offset 0 committed")
    stopped = pids(serve2)[1]
    os.kill(stopped, signal.SIGSTOP)  # partition 1 takes nothing (its socket accepts, never answers)
    try:
        produce(broker, topic, [(0, k1.encode(), b"0", None), (0, k0.encode(), b"1", None)])
        later = PMAP.id_for("Tally", "add", workflow=False, keyed=True, key=k0,
                            idempotency_key=f"kafka/{sub}/{topic}/0/2")
        with admin(serve2) as a:
            _wait(lambda: a.get(f"/invocations/{later}").json().get("status") == "completed",
                  "the record after the held one to run in partition 0")
        # Offset 1 is for partition 1, which has not recorded it: the commit stays before it. The consumer
        # commits every 0.2 s; watched for ten times that (a commit that must not happen has no event to wait on).
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert committed_offsets(broker, sub, topic, 1).get(0) == 1
    finally:
        os.kill(stopped, signal.SIGCONT)
    _wait(lambda: committed_offsets(broker, sub, topic, 1).get(0) == 3, "every offset committed")
    assert seen(serve2, k1) == [0] and seen(serve2, k0) == [0, 1]
