"""Kafka subscriptions: consumers that turn records of a Kafka topic into invocations of a handler.

- `subscriptions`: the subscription model in Restate's JSON shapes, its validation, ids, and the configured
  Kafka clusters.
- `records`: a consumed record (`KafkaRecord`, its dedup identity) and the invocation it becomes.
- `consumer`: one consumer per subscription, delivering records in partition order and committing offsets
  only after each record's invocation is recorded.
- `kafka_client`: the Kafka client library (an optional extra), its thread and its log lines.
- `stats`: each consumer's counters, state and lag, for `/metrics` and the UI.
- `manager`: the running consumers of all subscriptions, started and stopped as subscriptions come and go.

Nothing here imports the Kafka client until a consumer starts: without the `durably[kafka]` extra the model
still loads, and starting a consumer raises `KafkaUnavailable` naming the extra.

Wiring it into a server:

    clusters = parse_clusters(["local=127.0.0.1:9092"])              # --kafka-cluster, env, TOML
    sub, target = new_subscription(body, clusters, lookup)          # POST /subscriptions; 400 on SubscriptionError
    store(sub.to_json())                                            # and Subscription.from_json() at startup
    manager = IngestManager(clusters, lambda s: invocation_deliver(s, lookup, submit))
    manager.start(sub)                                              # await manager.sync(stored) at startup
    await manager.stop(sub.id)                                      # DELETE /subscriptions/{id}
    await manager.close()                                           # shutdown
    manager.stats()                                                 # /metrics, the UI: ConsumerStats per id

`lookup(service, handler)` answers what a handler is (`SinkTarget`) or None; `submit(invocation)` creates
the invocation and returns only once it is durably recorded, and a second submit of a record with the same
dedup identity (`KafkaInvocation.idempotency_key`, or per partition the highest offset recorded) must not
create a second invocation.
"""

from durably.server.ingest.consumer import (
    KAFKA_EXTRA_HINT,
    ConsumerOptions,
    Deliver,
    KafkaUnavailable,
    SubscriptionConsumer,
    kafka_available,
)
from durably.server.ingest.manager import IngestManager
from durably.server.ingest.records import (
    KafkaInvocation,
    KafkaRecord,
    RecordRefused,
    SinkUnavailable,
    invocation_deliver,
    invocation_for,
    restate_headers,
)
from durably.server.ingest.stats import ConsumerState, ConsumerStats
from durably.server.ingest.subscriptions import (
    HandlerLookup,
    KafkaCluster,
    KafkaSource,
    ServiceSink,
    SinkTarget,
    Subscription,
    SubscriptionError,
    filter_subscriptions,
    new_subscription,
    parse_clusters,
    parse_subscription_id,
)

__all__ = [
    "KAFKA_EXTRA_HINT",
    "ConsumerOptions",
    "ConsumerState",
    "ConsumerStats",
    "Deliver",
    "HandlerLookup",
    "IngestManager",
    "KafkaCluster",
    "KafkaInvocation",
    "KafkaRecord",
    "KafkaSource",
    "KafkaUnavailable",
    "RecordRefused",
    "ServiceSink",
    "SinkTarget",
    "SinkUnavailable",
    "Subscription",
    "SubscriptionConsumer",
    "SubscriptionError",
    "filter_subscriptions",
    "invocation_deliver",
    "invocation_for",
    "kafka_available",
    "new_subscription",
    "parse_clusters",
    "parse_subscription_id",
    "restate_headers",
]
