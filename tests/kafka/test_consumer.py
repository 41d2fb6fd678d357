"""A subscription's consumer against a real broker: order per partition, commit after deliver, refused and
failing records, rebalances, and a broker killed with -9 mid-consumption."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from durably.server.ingest import ConsumerOptions, KafkaCluster, KafkaRecord, SubscriptionConsumer, restate_headers
from tests.kafka.broker import KafkaBroker
from tests.kafka.conftest import (
    Recorder,
    committed_offsets,
    create_topic,
    produce,
    recorded,
    spawn_consumer,
    subscription,
    wait_until,
)

pytestmark = pytest.mark.kafka

FAST = ConsumerOptions(commit_interval=0.05, retry_initial=0.01, retry_max=0.1, close_timeout=10.0)


def keyed_records(partitions: int, per_partition: int) -> list[tuple[int, bytes | None, bytes, list | None]]:
    """Round-robin over partitions so partitions interleave; value `p:i`, key `k<i % 3>`."""
    out = []
    for i in range(per_partition):
        for p in range(partitions):
            out.append((p, f"k{i % 3}".encode(), f"{p}:{i}".encode(), [("trace", f"t{i}".encode())]))
    return out


async def test_each_record_once_in_partition_order(broker: KafkaBroker, cluster: KafkaCluster) -> None:
    topic = create_topic(broker, 4)
    produce(broker, topic, keyed_records(4, 50))
    sub = subscription(topic)
    rec = Recorder()
    consumer = SubscriptionConsumer(sub, cluster, rec, FAST)
    consumer.start()
    try:
        await wait_until(lambda: rec.count() >= 200, "200 deliveries")
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 4) == dict.fromkeys(range(4), 50),
                         "offsets 50 committed on every partition")
    finally:
        await consumer.stop()
    assert rec.offsets() == {p: list(range(50)) for p in range(4)}
    assert len(rec.calls) == 200
    # Values arrive in produce order within each partition.
    for p in range(4):
        assert [r.value for r in rec.done if r.partition == p] == [f"{p}:{i}".encode() for i in range(50)]
    first = next(r for r in rec.done if r.partition == 2 and r.offset == 4)
    assert first.key == b"k1" and first.headers == (("trace", b"t4"),) and first.timestamp_ms is not None
    assert first.dedup_key == (sub.id, topic, 2, 4)
    assert first.idempotency_key == f"kafka/{sub.id}/{topic}/2/4"
    headers = restate_headers(first)
    assert headers["kafka.offset"] == "4" and headers["kafka.partition"] == "2" and headers["kafka.topic"] == topic
    assert headers["kafka.key"] == base64.urlsafe_b64encode(b"k1").decode()
    assert headers["kafka.timestamp"] == str(first.timestamp_ms)
    assert headers["restate.subscription.id"] == sub.id and headers["trace"] == "t4"
    assert consumer.stats.records_consumed == 200 and consumer.stats.deliveries == 200
    assert consumer.stats.state == "stopped"


async def test_offset_committed_only_after_deliver_returned(broker: KafkaBroker, cluster: KafkaCluster) -> None:
    topic = create_topic(broker, 1)
    produce(broker, topic, [(0, b"k", f"v{i}".encode(), None) for i in range(3)])
    sub = subscription(topic)
    rec = Recorder()
    rec.hold = lambda r: r.offset == 1
    consumer = SubscriptionConsumer(sub, cluster, rec, FAST)
    consumer.start()
    try:
        await wait_until(lambda: (0, 1) in rec.started, "offset 1 delivery started")
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 1) == {0: 1},
                         "offset 0 committed")
        assert [r.offset for r in rec.done] == [0]
    finally:
        # Offset 1 is still being delivered: stopping abandons it, and must not commit it.
        await consumer.stop(drain_timeout=0)
    assert committed_offsets(broker, sub.group_id, topic, 1) == {0: 1}

    again = Recorder()
    consumer = SubscriptionConsumer(sub, cluster, again, FAST)
    consumer.start()
    try:
        await wait_until(lambda: again.count() >= 2, "offsets 1 and 2 delivered again")
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 1) == {0: 3}, "offset 3 committed")
    finally:
        await consumer.stop()
    assert [r.offset for r in again.done] == [1, 2]


async def test_stop_waits_for_an_in_flight_delivery(broker: KafkaBroker, cluster: KafkaCluster) -> None:
    topic = create_topic(broker, 1)
    produce(broker, topic, [(0, None, b"v", None)])
    sub = subscription(topic)
    rec = Recorder()
    rec.hold = lambda r: True
    consumer = SubscriptionConsumer(sub, cluster, rec, FAST)
    consumer.start()
    await wait_until(lambda: (0, 0) in rec.started, "delivery started")
    stopping = asyncio.create_task(consumer.stop(drain_timeout=30))
    await wait_until(lambda: consumer.stats.state == "stopping", "stop under way")
    assert not stopping.done()  # it waits for the delivery
    rec.gate.set()
    await stopping
    assert [r.offset for r in rec.done] == [0]
    assert committed_offsets(broker, sub.group_id, topic, 1) == {0: 1}


async def test_refused_record_is_skipped(broker: KafkaBroker, cluster: KafkaCluster) -> None:
    topic = create_topic(broker, 1)
    produce(broker, topic, [(0, None, f"v{i}".encode(), None) for i in range(3)])
    sub = subscription(topic)
    rec = Recorder()
    rec.refuse = {(0, 1)}
    consumer = SubscriptionConsumer(sub, cluster, rec, FAST)
    consumer.start()
    try:
        await wait_until(lambda: rec.count() >= 2, "offsets 0 and 2 delivered")
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 1) == {0: 3},
                         "the refused record counted as handled")
    finally:
        await consumer.stop()
    assert [r.offset for r in rec.done] == [0, 2]
    assert [r.offset for r in rec.calls] == [0, 1, 2]  # refused once, never retried
    assert consumer.stats.refused == 1 and consumer.stats.errors >= 1


async def test_failing_delivery_retries_without_blocking_other_partitions(broker: KafkaBroker,
                                                                          cluster: KafkaCluster) -> None:
    topic = create_topic(broker, 2)
    produce(broker, topic, keyed_records(2, 5))
    sub = subscription(topic)
    rec = Recorder()
    rec.failures = {(0, 0): 3}
    rec.hold = lambda r: r.partition == 0 and r.offset == 0
    consumer = SubscriptionConsumer(sub, cluster, rec, FAST)
    consumer.start()
    try:
        await wait_until(lambda: rec.offsets().get(1) == list(range(5)), "partition 1 done")
        assert 0 not in rec.offsets()  # partition 0 is still on its first record
        await wait_until(lambda: consumer.stats.delivery_errors == 3, "three failed attempts")
        rec.gate.set()
        await wait_until(lambda: rec.offsets().get(0) == list(range(5)), "partition 0 done, in order")
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 2) == {0: 5, 1: 5}, "commits")
    finally:
        await consumer.stop()
    assert [r.offset for r in rec.calls if r.partition == 0][:4] == [0, 0, 0, 0]


async def test_rebalance_does_not_commit_abandoned_deliveries(broker: KafkaBroker, cluster: KafkaCluster) -> None:
    topic = create_topic(broker, 4)
    produce(broker, topic, keyed_records(4, 10))
    sub = subscription(topic)
    first = Recorder()
    first.hold = lambda r: r.offset == 5  # every partition stops at offset 5, in flight
    a = SubscriptionConsumer(sub, cluster, first, ConsumerOptions(commit_interval=0.05, revoke_timeout=0.5))
    a.start()
    second = Recorder()
    b = SubscriptionConsumer(sub, cluster, second, FAST)
    try:
        await wait_until(lambda: len(first.started) == 4 * 6, "offsets 0-5 started on every partition")
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 4) == dict.fromkeys(range(4), 5),
                         "offsets 0-4 committed")
        b.start()  # joining the group revokes partitions from `a` while offset 5 is in flight on each
        await wait_until(lambda: len(b.stats.assigned) >= 1, "the second consumer gets partitions", 90)
        first.hold = lambda r: False
        first.gate.set()
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 4) == dict.fromkeys(range(4), 10),
                         "every partition committed to the end", 90)
    finally:
        await b.stop()
        await a.stop()
    done = first.done + second.done
    for p in range(4):
        offsets = sorted({r.offset for r in done if r.partition == p})
        assert offsets == list(range(10)), f"partition {p}: {offsets}"
    # Each consumer saw each partition in order; a record may be delivered twice only from the in-flight
    # point of a revoked partition on (the engine dedups it by its idempotency key).
    for rec in (first, second):
        for p, offsets in rec.offsets().items():
            assert offsets == sorted(offsets), (p, offsets)
    moved = [p for p in range(4) if p in second.offsets()]
    assert moved, "the rebalance moved no partition"
    for p in moved:
        assert min(second.offsets()[p]) == 5, "a moved partition restarts at the abandoned, uncommitted record"


async def test_broker_killed_mid_consumption(broker: KafkaBroker, cluster: KafkaCluster) -> None:
    topic = create_topic(broker, 4)
    produce(broker, topic, keyed_records(4, 25))
    sub = subscription(topic)
    rec = Recorder()
    rec.hold = lambda r: r.offset >= 10
    consumer = SubscriptionConsumer(sub, cluster, rec, FAST)
    consumer.start()
    try:
        await wait_until(lambda: rec.count() >= 40, "offsets 0-9 on every partition")
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 4) == dict.fromkeys(range(4), 10),
                         "offsets 0-9 committed")
        broker.kill9()
        await wait_until(lambda: consumer.stats.state == "broker-unavailable", "the consumer notices", 60)
        rec.gate.set()  # deliveries go on while the broker is down; their commits must wait for it
        await wait_until(lambda: rec.count() >= 100, "every record delivered while the broker is down")
        assert consumer.running
        broker.restart()
        produce(broker, topic, [(p, b"late", b"late", None) for p in range(4)])
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 4) == dict.fromkeys(range(4), 26),
                         "commits after the broker came back", 120)
    finally:
        await consumer.stop()
    for p in range(4):
        offsets = rec.offsets()[p]
        assert sorted(set(offsets)) == list(range(26)), (p, offsets)
        # Re-deliveries (records handled but not committed before the broker died) start again in order.
        firsts = list(dict.fromkeys(offsets))
        assert firsts == sorted(firsts), (p, offsets)
    assert consumer.stats.broker_errors >= 1


async def test_a_slow_partition_pauses_its_fetching_and_loses_nothing(broker: KafkaBroker,
                                                                       cluster: KafkaCluster) -> None:
    topic = create_topic(broker, 1)
    produce(broker, topic, [(0, None, f"v{i}".encode(), None) for i in range(60)])
    sub = subscription(topic)
    rec = Recorder()
    rec.hold = lambda r: r.offset == 0
    consumer = SubscriptionConsumer(sub, cluster, rec, ConsumerOptions(max_buffered=5, commit_interval=0.05))
    consumer.start()
    try:
        await wait_until(lambda: (topic, 0) in consumer.stats.paused, "fetching paused at 5 buffered records")
        rec.gate.set()
        await wait_until(lambda: rec.count() >= 60, "every record delivered after resuming")
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 1) == {0: 60}, "all committed")
    finally:
        await consumer.stop()
    assert [r.offset for r in rec.done] == list(range(60))


async def test_a_cancellation_raised_by_deliver_is_retried(broker: KafkaBroker, cluster: KafkaCluster) -> None:
    topic = create_topic(broker, 1)
    produce(broker, topic, [(0, None, b"v", None)])
    sub = subscription(topic)
    attempts: list[int] = []

    async def deliver(record: object) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise asyncio.CancelledError  # e.g. an engine call cancelled under the deliver
    consumer = SubscriptionConsumer(sub, cluster, deliver, FAST)
    consumer.start()
    try:
        await wait_until(lambda: consumer.stats.deliveries == 1, "delivered on the second attempt")
    finally:
        await consumer.stop()
    assert len(attempts) == 2 and consumer.stats.delivery_errors == 1


async def test_consumer_process_killed_mid_consumption(broker: KafkaBroker, tmp_path: Path) -> None:
    topic = create_topic(broker, 4)
    produce(broker, topic, keyed_records(4, 30))
    # A short session: the dead process's partitions go to the next one within seconds.
    sub = subscription(topic, **{"session.timeout.ms": "6000"})
    first_out, second_out = tmp_path / "first", tmp_path / "second"
    first = spawn_consumer(broker, sub, first_out, "--hold-from", "20")
    try:
        await wait_until(lambda: len(recorded(first_out)) == 80, "offsets 0-19 delivered on every partition")
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 4) == dict.fromkeys(range(4), 20),
                         "offsets 0-19 committed; offset 20 is in flight everywhere")
    finally:
        first.kill()  # SIGKILL: no revoke, no commit, no leaving the group
        first.wait(10)
    second = spawn_consumer(broker, sub, second_out)
    try:
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 4) == dict.fromkeys(range(4), 30),
                         "the next process committed every partition", 90)
    finally:
        second.kill()
        second.wait(10)
    for p in range(4):
        assert [r[1] for r in recorded(first_out) if r[0] == p] == list(range(20))
        # The record in flight at the crash (never committed) is delivered again, and nothing before it.
        assert [r[1] for r in recorded(second_out) if r[0] == p] == list(range(20, 30))


async def test_consumer_started_while_the_broker_is_down(broker: KafkaBroker, cluster: KafkaCluster) -> None:
    topic = create_topic(broker, 2)
    produce(broker, topic, keyed_records(2, 5))
    broker.stop()
    sub = subscription(topic)
    rec = Recorder()
    consumer = SubscriptionConsumer(sub, cluster, rec, FAST)
    consumer.start()
    try:
        await wait_until(lambda: consumer.stats.state == "broker-unavailable", "the consumer reports the broker down")
        assert consumer.running and rec.count() == 0
        broker.start()
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 2) == {0: 5, 1: 5},
                         "consumed once the broker is up", 90)
    finally:
        await consumer.stop()
    assert rec.offsets() == {0: list(range(5)), 1: list(range(5))}


class Staged:
    """A fake `StagedDeliver`: `begin` records the order of creation; each record's durability is a future the
    test resolves (or fails) when it likes."""

    def __init__(self) -> None:
        self.begun: list[int] = []
        self.durable: dict[int, asyncio.Future[None]] = {}
        self.fail_begin: dict[int, int] = {}

    def begin(self, record: KafkaRecord) -> asyncio.Future[None]:
        if self.fail_begin.get(record.offset, 0) > 0:
            self.fail_begin[record.offset] -= 1
            raise RuntimeError("creation failed (injected)")
        self.begun.append(record.offset)
        fut = self.durable.get(record.offset)
        if fut is None or fut.done():  # begun again after a failure: a fresh durability
            fut = self.durable[record.offset] = asyncio.get_running_loop().create_future()
        return fut

    async def __call__(self, record: KafkaRecord) -> None:
        await self.begin(record)

    def settle(self, *offsets: int) -> None:
        for off in offsets:
            self.durable[off].set_result(None)


async def test_a_partition_is_pipelined_and_commits_only_a_durable_prefix(broker: KafkaBroker,
                                                                          cluster: KafkaCluster) -> None:
    topic = create_topic(broker, 1)
    produce(broker, topic, [(0, f"k{i % 3}".encode(), f"v{i}".encode(), None) for i in range(6)])
    sub = subscription(topic)
    staged = Staged()
    consumer = SubscriptionConsumer(sub, cluster, staged, ConsumerOptions(commit_interval=0.05, begin_batch=1))
    consumer.start()
    try:
        # Every record is created, in offset order, while none of them is durable yet.
        await wait_until(lambda: staged.begun == list(range(6)), "all six created without waiting for commits")
        staged.settle(0, 2, 3)
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 1) == {0: 1},
                         "offset 0 committed (1 is not durable, so 2 and 3 wait)")
        staged.settle(1)
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 1) == {0: 4}, "0-3 committed")
        assert consumer.stats.deliveries == 4
    finally:
        await consumer.stop(drain_timeout=0)
    # 4 and 5 never became durable: not committed, so the group's next consumer reads them again.
    assert committed_offsets(broker, sub.group_id, topic, 1) == {0: 4}


async def test_pipelined_failures_retry_in_order(broker: KafkaBroker, cluster: KafkaCluster) -> None:
    topic = create_topic(broker, 1)
    produce(broker, topic, [(0, b"k", f"v{i}".encode(), None) for i in range(6)])
    sub = subscription(topic)
    staged = Staged()
    staged.fail_begin = {2: 2}  # offset 2 cannot be created twice: nothing after it may be created meanwhile
    consumer = SubscriptionConsumer(sub, cluster, staged, FAST)
    consumer.start()
    try:
        await wait_until(lambda: consumer.stats.delivery_errors == 2 and staged.begun[-1:] == [5],
                         "offset 2 created on its third attempt, then the rest")
        assert staged.begun == list(range(6))
        # The batch's durability fails: every record of it is begun again, in order, after a backoff.
        staged.durable[0].set_exception(RuntimeError("commit failed (injected)"))
        await wait_until(lambda: len(staged.begun) >= 12, "the failed records begun again")
        assert staged.begun[6:] == list(range(6))
        for off in range(6):
            if not staged.durable[off].done():
                staged.settle(off)
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, 1) == {0: 6}, "all committed")
    finally:
        await consumer.stop()
    assert consumer.stats.delivery_errors == 3
