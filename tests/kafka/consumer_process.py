"""A subscription consumer in a process of its own, for tests that `kill -9` it (a crashed Durably).

    python -m tests.kafka.consumer_process <bootstrap> <subscription json> <out file> [hold_from]

Each delivered record is appended to the out file as "<partition> <offset>" (flushed before `deliver`
returns: the file is this process's durable record). With `hold_from`, deliveries of offsets at or above it
never return, so the process is stuck mid-consumption until it is killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TextIO

from durably.server.ingest import ConsumerOptions, KafkaCluster, KafkaRecord, Subscription, SubscriptionConsumer


async def main(bootstrap: str, sub_json: str, out: TextIO, hold_from: int | None) -> None:
    sub = Subscription.from_json(json.loads(sub_json))
    never = asyncio.Event()

    async def deliver(record: KafkaRecord) -> None:
        if hold_from is not None and record.offset >= hold_from:
            await never.wait()
        out.write(f"{record.partition} {record.offset}\n")
        out.flush()

    consumer = SubscriptionConsumer(sub, KafkaCluster(sub.source.cluster, (bootstrap,)), deliver,
                                    ConsumerOptions(commit_interval=0.05))
    consumer.start()
    await never.wait()


if __name__ == "__main__":
    args = sys.argv[1:]
    with open(args[2], "a") as out_file:
        asyncio.run(main(args[0], args[1], out_file, int(args[3]) if len(args) > 3 else None))
