"""Issue 22's crash scenario at the consumer's level: 1,000 keyed records over 8 partitions; the consumer
process is killed with -9 twice mid-consumption, then the broker is, and everything comes back by itself.

The consumer processes record each delivery in a file (their "store"). Deduplicating those by
`(partition, offset)` keeping each partition's high-water offset, as the engine is meant to do with a record's
dedup key, must leave every record exactly once, in offset order per partition and so in produce order per
key. What the consumer guarantees without dedup: nothing is skipped, and a re-delivery only ever resumes at
a committed offset.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from durably.server.ingest import Subscription
from tests.kafka.broker import KafkaBroker
from tests.kafka.conftest import (
    committed_offsets,
    create_topic,
    process_log,
    produce,
    recorded,
    spawn_consumer,
    subscription,
    wait_until,
)

pytestmark = pytest.mark.kafka

PARTITIONS = 8
KEYS = 40
RECORDS = 1000


def kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(10)


async def test_thousand_records_survive_two_consumer_crashes_and_a_broker_crash(broker: KafkaBroker,
                                                                                 tmp_path: Path) -> None:
    topic = create_topic(broker, PARTITIONS)
    # Key k goes to partition k % 8; its values count up, so per-key order is checkable from the values.
    per_key = defaultdict(int)
    records = []
    for i in range(RECORDS):
        key = i % KEYS
        records.append((key % PARTITIONS, f"k{key}".encode(), f"{per_key[key]}".encode(), None))
        per_key[key] += 1
    produce(broker, topic, records)
    # A short session: a killed process's partitions go to the next one within seconds.
    sub = subscription(topic, **{"session.timeout.ms": "6000"})
    out = tmp_path / "store"
    everything = dict.fromkeys(range(PARTITIONS), RECORDS // PARTITIONS)

    proc = spawn_consumer(broker, sub, out, "--work", "0.01")
    try:
        await _crash_three_times(broker, sub, out, topic, everything, proc)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- consumer processes ---\n{process_log(out)}\n--- broker ---\n"
                             f"{broker.log_tail(20)}") from None
    _check(recorded(out))


async def _crash_three_times(broker: KafkaBroker, sub: Subscription, out: Path, topic: str,
                             everything: dict[int, int], proc: subprocess.Popen[bytes]) -> None:
    try:
        await wait_until(lambda: len(recorded(out)) >= 250, "a quarter delivered", 120)
        kill9(proc)
        proc = spawn_consumer(broker, sub, out, "--work", "0.01")
        await wait_until(lambda: len(recorded(out)) >= 550, "more than half delivered", 120)
        kill9(proc)
        proc = spawn_consumer(broker, sub, out, "--work", "0.01")
        await wait_until(lambda: len(recorded(out)) >= 800, "most delivered", 120)
        broker.kill9()
        broker.restart()
        await wait_until(lambda: committed_offsets(broker, sub.group_id, topic, PARTITIONS) == everything,
                         "every partition committed to its end", 180)
    finally:
        kill9(proc)


def _check(rows: list[tuple[int, int, str, str]]) -> None:
    high: dict[int, int] = defaultdict(lambda: -1)
    kept: dict[int, list[int]] = defaultdict(list)
    values: dict[str, list[int]] = defaultdict(list)
    for partition, offset, key, value in rows:
        # A re-delivery never skips: it resumes at or below the highest offset this partition reached.
        assert offset <= high[partition] + 1, f"partition {partition} skipped to {offset} after {high[partition]}"
        if offset > high[partition]:  # the engine's dedup by (subscription, topic, partition, offset)
            high[partition] = offset
            kept[partition].append(offset)
            values[key].append(int(value))
    for p in range(PARTITIONS):
        assert kept[p] == list(range(RECORDS // PARTITIONS)), f"partition {p}"
    assert sum(len(v) for v in values.values()) == RECORDS
    for key, seq in values.items():
        assert seq == list(range(len(seq))), f"{key} out of order: {seq}"
    assert len(rows) >= RECORDS  # re-deliveries happened or not; none was lost
