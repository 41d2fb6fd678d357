"""Kafka subscription metrics at `/metrics`: records consumed, invocations created, lag per partition, errors.

Read at scrape time from each consumer's `ConsumerStats` and the server's `KafkaSubscriptions` counters;
labelled by subscription id (and topic and partition for lag and committed offsets).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from durably.server.process.kafka import KafkaSubscriptions

__all__ = ["KafkaCollector"]

_STATES = ("starting", "running", "broker-unavailable", "stopping", "stopped")


class KafkaCollector(Collector):
    """The Kafka metric families of one server's subscriptions (none while there are no subscriptions)."""

    def __init__(self, subscriptions: KafkaSubscriptions) -> None:
        self.subscriptions = subscriptions

    def collect(self) -> Iterator[Metric]:
        """Every durably_kafka_* metric, built now."""
        stats = self.subscriptions.stats()
        if not stats:
            return
        sub = ["subscription"]
        consumed = CounterMetricFamily("durably_kafka_records_consumed", "Kafka records read by a subscription's "
                                       "consumer (a record read again after a crash or rebalance counts again).",
                                       labels=sub)
        created = CounterMetricFamily("durably_kafka_invocations_created", "Invocations created from Kafka "
                                      "records (a re-delivered record finds its invocation and is not counted).",
                                      labels=sub)
        deduped = CounterMetricFamily("durably_kafka_records_deduplicated", "Re-delivered Kafka records that found "
                                      "the invocation they had already created.", labels=sub)
        errors = CounterMetricFamily("durably_kafka_errors", "Kafka subscription errors by kind: refused records "
                                     "(e.g. keyless to a keyed handler), failed deliveries (retried), broker and "
                                     "commit errors.", labels=["subscription", "kind"])
        state = GaugeMetricFamily("durably_kafka_consumer_state", "1 for the consumer's current state.",
                                  labels=["subscription", "state"])
        lag = GaugeMetricFamily("durably_kafka_consumer_lag", "Records in a partition not yet handled: the high "
                                "watermark minus the committed offset.", labels=["subscription", "topic", "partition"])
        committed = GaugeMetricFamily("durably_kafka_committed_offset", "The next offset committed to Kafka.",
                                      labels=["subscription", "topic", "partition"])
        for sid, st in sorted(stats.items()):
            consumed.add_metric([sid], st.records_consumed)
            created.add_metric([sid], self.subscriptions.created.get(sid, 0))
            deduped.add_metric([sid], self.subscriptions.deduplicated.get(sid, 0))
            for kind, n in (("refused", st.refused), ("delivery", st.delivery_errors), ("broker", st.broker_errors),
                            ("commit", st.commit_errors)):
                errors.add_metric([sid, kind], n)
            for s in _STATES:
                state.add_metric([sid, s], 1 if st.state == s else 0)
            for (topic, partition), n in sorted(st.lag.items()):
                lag.add_metric([sid, topic, str(partition)], n)
            for (topic, partition), n in sorted(st.committed.items()):
                committed.add_metric([sid, topic, str(partition)], n)
        yield from (consumed, created, deduped, errors, state, lag, committed)
