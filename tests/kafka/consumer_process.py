"""A subscription consumer in a process of its own, for tests that `kill -9` it (a crashed Durably).

    python -m tests.kafka.consumer_process BOOTSTRAP SUBSCRIPTION_JSON OUT_FILE [--hold-from N] [--work S]

Each delivered record is appended to OUT_FILE as "<partition> <offset> <key> <value>" (flushed before
`deliver` returns: the file is this process's durable record). `--hold-from N`: deliveries of offsets at or
above N never return, so the process is stuck mid-consumption until it is killed. `--work S`: each delivery
takes S seconds, so a kill lands while records are flowing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import TextIO

from durably.server.ingest import ConsumerOptions, KafkaCluster, KafkaRecord, Subscription, SubscriptionConsumer


async def main(args: argparse.Namespace, out: TextIO) -> None:
    sub = Subscription.from_json(json.loads(args.subscription))
    never = asyncio.Event()

    async def deliver(record: KafkaRecord) -> None:
        if args.hold_from is not None and record.offset >= args.hold_from:
            await never.wait()
        if args.work:
            await asyncio.sleep(args.work)  # the handler's work: lets a kill land mid-stream
        key = (record.key or b"-").decode()
        out.write(f"{record.partition} {record.offset} {key} {(record.value or b'-').decode()}\n")
        out.flush()

    consumer = SubscriptionConsumer(sub, KafkaCluster(sub.source.cluster, (args.bootstrap,)), deliver,
                                    ConsumerOptions(commit_interval=0.05))
    consumer.start()
    await never.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("subscription")
    parser.add_argument("out")
    parser.add_argument("--hold-from", type=int)
    parser.add_argument("--work", type=float, default=0.0)
    ns = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    with open(ns.out, "a") as out_file:
        asyncio.run(main(ns, out_file))
