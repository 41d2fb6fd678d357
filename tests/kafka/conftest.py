"""Fixtures for the Kafka tests: one real broker for the session, topics, a producer, and a recording `deliver`.

The broker's jars come from `scripts/install-kafka.sh` (run by `scripts/test.sh`); without them every test
that needs the broker fails, naming the script (they are never skipped).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from durably.server.ingest import KafkaCluster, KafkaRecord, RecordRefused, Subscription
from durably.server.ingest.subscriptions import KafkaSource, ServiceSink, new_subscription_id
from tests.kafka.broker import ROOT, BrokerNotInstalled, KafkaBroker, check_installed

_topic_seq = itertools.count()


@pytest.fixture(scope="package")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A single-node KRaft broker, started once for the Kafka tests (tests that kill it start it again) and
    stopped after them, so its JVM does not weigh on the rest of the suite."""
    try:
        check_installed()
    except BrokerNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    broker = KafkaBroker(Path(tmp_path_factory.mktemp("kafka-broker")))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def broker(kafka_broker: KafkaBroker) -> KafkaBroker:
    """The session broker, running (restarted if an earlier test left it down)."""
    if not kafka_broker.running:
        kafka_broker.start()
    return kafka_broker


@pytest.fixture
def cluster(broker: KafkaBroker) -> KafkaCluster:
    return KafkaCluster("test", (broker.bootstrap,))


def create_topic(broker: KafkaBroker, partitions: int) -> str:
    """A new topic with `partitions` partitions (names are unique per session)."""
    from confluent_kafka.admin import NewTopic

    name = f"t{os.getpid()}-{next(_topic_seq)}"
    futures = broker.admin().create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                                  operation_timeout=30)
    futures[name].result(60)
    return name


def produce(broker: KafkaBroker, topic: str, records: list[tuple[int, bytes | None, bytes, list | None]]) -> None:
    """Produce `(partition, key, value, headers)` records, in order, and wait until all are acknowledged."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    errors: list[object] = []
    for partition, key, value, headers in records:
        producer.produce(topic, value=value, key=key, partition=partition, headers=headers,
                         on_delivery=lambda err, _msg: errors.append(err) if err else None)
        producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0 and not errors, f"produce failed: {remaining} unsent, errors {errors}"


def committed_offsets(broker: KafkaBroker, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (next offset to read) by partition; partitions without one are left out.

    Read through a consumer of the group that never joins it: librdkafka 2.16's admin client can crash the
    process parsing an OffsetFetch error (it reaches for a consumer group it does not have), which the
    group coordinator answers while it loads just after a broker restart. Until the coordinator is ready the
    answer is empty; callers poll it with `wait_until`.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False,
                       "log_level": 0})
    try:
        result = reader.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    except KafkaException:
        return {}
    finally:
        reader.close()
    return {tp.partition: tp.offset for tp in result if tp.error is None and tp.offset >= 0}


def subscription(topic: str, *, cluster: str = "test", **options: str) -> Subscription:
    """A subscription of `topic` reading from the start (a fresh consumer group named by its id)."""
    sub_id = new_subscription_id()
    opts = {"auto.offset.reset": "earliest", "group.id": sub_id, **options}
    return Subscription(sub_id, KafkaSource(cluster, topic), ServiceSink("Sink", "handle"), opts)


def spawn_consumer(broker: KafkaBroker, sub: Subscription, out: Path, *flags: str) -> subprocess.Popen[bytes]:
    """Run `sub`'s consumer in a process of its own (`tests.kafka.consumer_process`), recording into `out`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    with (out.parent / f"{out.name}.log").open("ab") as log:  # the processes' logs, for failure reports
        return subprocess.Popen([sys.executable, "-m", "tests.kafka.consumer_process", broker.bootstrap,
                                 json.dumps(sub.to_json()), str(out), *flags], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)


def process_log(out: Path, lines: int = 60) -> str:
    """The last lines the consumer processes recording into `out` logged."""
    path = out.parent / f"{out.name}.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def recorded(out: Path) -> list[tuple[int, int, str, str]]:
    """What a consumer process recorded: `(partition, offset, key, value)` in delivery order."""
    if not out.exists():
        return []
    rows = []
    for line in out.read_text().splitlines():
        fields = line.split(" ")
        if len(fields) == 4:  # a line cut short by kill -9 is not a delivery that returned
            rows.append((int(fields[0]), int(fields[1]), fields[2], fields[3]))
    return rows


async def wait_until(check: Callable[[], bool], what: str, within: float = 60.0) -> None:
    """Poll `check` on the event loop (deliveries run meanwhile) until it holds, failing after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)  # a poll interval, not a synchronisation: the condition is re-checked


class Recorder:
    """A fake `deliver`: records each call; can refuse records, fail them, or hold them until released."""

    def __init__(self) -> None:
        self.calls: list[KafkaRecord] = []
        self.done: list[KafkaRecord] = []
        self.refuse: set[tuple[int, int]] = set()
        self.failures: dict[tuple[int, int], int] = {}
        self.hold: Callable[[KafkaRecord], bool] = lambda _r: False
        self.gate = asyncio.Event()
        self.started: set[tuple[int, int]] = set()

    async def __call__(self, record: KafkaRecord) -> None:
        self.calls.append(record)
        where = (record.partition, record.offset)
        self.started.add(where)
        if where in self.refuse:
            raise RecordRefused("refused by the test")
        if self.failures.get(where, 0) > 0:
            self.failures[where] -= 1
            raise RuntimeError("transient failure injected by the test")
        if self.hold(record):
            await self.gate.wait()
        self.done.append(record)

    def offsets(self) -> dict[int, list[int]]:
        """Offsets that completed, by partition, in completion order."""
        out: dict[int, list[int]] = defaultdict(list)
        for r in self.done:
            out[r.partition].append(r.offset)
        return dict(out)

    def count(self) -> int:
        return len(self.done)


from tests.kafka.serving import kafka_serve  # noqa: E402, F401  (the fixture, for every Kafka test)
