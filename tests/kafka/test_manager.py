"""The consumers of a server's subscriptions, started and stopped as subscriptions come and go; and what
happens without the Kafka extra or the broker's jars."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from durably.server.ingest import (
    KAFKA_EXTRA_HINT,
    ConsumerOptions,
    IngestManager,
    KafkaCluster,
    KafkaUnavailable,
    Subscription,
    SubscriptionConsumer,
    kafka_available,
)
from tests.kafka import broker as broker_module
from tests.kafka.broker import BrokerNotInstalled, KafkaBroker
from tests.kafka.conftest import Recorder, committed_offsets, create_topic, produce, subscription, wait_until

FAST = ConsumerOptions(commit_interval=0.05, retry_initial=0.01, retry_max=0.1)


@pytest.mark.kafka
async def test_manager_runs_each_subscription_in_its_own_group(broker: KafkaBroker, cluster: KafkaCluster) -> None:
    topic = create_topic(broker, 2)
    produce(broker, topic, [(i % 2, None, f"v{i}".encode(), None) for i in range(20)])
    recorders: dict[str, Recorder] = {}

    def deliver_for(sub: Subscription) -> Recorder:
        return recorders.setdefault(sub.id, Recorder())

    orphan = subscription(topic, cluster="gone")
    a, b = subscription(topic), subscription(topic)
    manager = IngestManager({"test": cluster}, deliver_for, FAST)
    try:
        await manager.sync([a, b, orphan])
        assert manager.stats()[orphan.id].state == "stopped"
        assert "'gone' is not configured" in (manager.stats()[orphan.id].last_error or "")
        await wait_until(lambda: all(r.count() >= 20 for r in recorders.values()) and len(recorders) == 2,
                         "both subscriptions read every record")
        await wait_until(lambda: committed_offsets(broker, a.group_id, topic, 2) == {0: 10, 1: 10}, "a commits")
        await manager.sync([a])  # b and the orphan deleted
        assert set(manager.stats()) == {a.id}
        assert manager.consumer(b.id) is None
        produce(broker, topic, [(0, None, b"more", None)])
        await wait_until(lambda: recorders[a.id].count() == 21, "a reads on")
        assert recorders[b.id].count() == 20
        stats = manager.stats()[a.id].to_json()
        assert stats["records_consumed"] == 21 and stats["deliveries"] == 21
        await wait_until(lambda: manager.stats()[a.id].total_lag == 0
                         and len(manager.stats()[a.id].lag) == 2, "lag known and zero")
    finally:
        await manager.close()
    assert manager.stats() == {}


async def test_without_the_extra_starting_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # what an uninstalled package looks like
    assert not kafka_available()
    consumer = SubscriptionConsumer(subscription("t"), KafkaCluster("test", ("h:1",)), Recorder())
    with pytest.raises(KafkaUnavailable) as info:
        consumer.start()
    assert str(info.value) == KAFKA_EXTRA_HINT and "durably[kafka]" in KAFKA_EXTRA_HINT


def test_missing_broker_jars_fail_naming_the_install_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(broker_module, "KAFKA_LIB", tmp_path / "lib")
    with pytest.raises(BrokerNotInstalled, match=r"scripts/install-kafka\.sh"):
        KafkaBroker(tmp_path / "broker")
