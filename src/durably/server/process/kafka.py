"""Kafka subscriptions in a running server: the engine side of `durably.server.ingest`.

`KafkaSubscriptions` is what the admin API (`POST/GET/DELETE /subscriptions`), `/metrics` and the UI talk
to. It keeps the subscriptions in the store (they come back after a restart), runs one consumer per
subscription through the `IngestManager`, and turns each record into an invocation of the sink:

- `submit` creates the invocation with the record's dedup identity `(subscription, topic, partition,
  offset)` as its idempotency key, so the id is derived from it and a record delivered again after a crash
  finds the first invocation instead of starting a second; it returns only once the invocation is committed
  (`engine.barrier()`), and only then does the consumer commit the record's offset to Kafka.
- `begin` is the same, split in two (the consumer pipelines each partition with it): the invocation is
  created at once and the returned awaitable resolves once it is committed. The consumer creates one
  partition's invocations in offset order without waiting for each commit, so they share group commits; an
  object's invocations of one key queue in that order in the key's inbox, so each key's records run in order.
  The consumer commits an offset only once it and every record before it are committed here.
- With `--partitions N` the subscriptions live in partition 0 (the admin API's `/subscriptions` goes there), which
  runs the consumers; a record whose invocation another partition owns (the owner of its key, or of its
  idempotency key for a plain service) is written to partition 0's outbox and created there once (crossing/);
  `begin`'s awaitable resolves once the owner has committed it, so the offset is committed only then (a
  partition that is down holds its records' offsets back, as a slow store does in one process).
  Per-key order holds: one key's records go to one owner, in offset order, through one ordered outbox queue.
- A keyless record to an object or workflow sink is refused (`RecordRefused`): logged, counted, and its
  offset committed, so it never wedges the partition.

The runtime starts it after the engine (`start`: the stored subscriptions' consumers) and closes it first at
shutdown (`close`: in-flight records finish, handled offsets are committed), before the engine drains.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

from durably.server.ingest import (
    KAFKA_EXTRA_HINT,
    ConsumerOptions,
    ConsumerStats,
    IngestManager,
    KafkaCluster,
    KafkaInvocation,
    SinkTarget,
    SinkUnavailable,
    Subscription,
    SubscriptionError,
    filter_subscriptions,
    invocation_deliver,
    kafka_available,
    new_subscription,
)
from durably.server.store.ops import DropSubscription, SaveSubscription

if TYPE_CHECKING:
    from durably.server.engine.engine import Engine

__all__ = ["KafkaExtraMissing", "KafkaSubscriptions"]

log = logging.getLogger("durably.ingest")


class KafkaExtraMissing(RuntimeError):
    """A subscription was asked for, but the Kafka client (the `durably[kafka]` extra) is not installed."""


class KafkaSubscriptions:
    """A server's Kafka subscriptions: stored, consumed, and turned into invocations of their sinks."""

    def __init__(self, engine: Engine, clusters: Mapping[str, KafkaCluster],
                 options: ConsumerOptions | None = None) -> None:
        self.engine = engine
        self.clusters = dict(clusters)
        self._subs: dict[str, Subscription] = {}
        self._manager = IngestManager(self.clusters, self._deliver_for, options)
        self._started = False
        # Invocations created per subscription (a re-delivered record that found its invocation is not one).
        self.created: dict[str, int] = defaultdict(int)
        self.deduplicated: dict[str, int] = defaultdict(int)

    # ---- the engine side ----------------------------------------------------------------------------

    def lookup(self, service: str, handler: str) -> SinkTarget | None:
        """What a sink handler is (its service's kind), or None if no registered service has it."""
        h = self.engine.handler(service, handler)
        if h is None:
            return None
        return SinkTarget(h.service.kind, h.kind)

    async def submit(self, subscription_id: str, invocation: KafkaInvocation) -> None:
        """Create the record's invocation and return once it is committed (then its offset may be).

        The idempotency key is the record's dedup identity: a second submit of the same record attaches to
        the first invocation (running, or completed and still retained) instead of creating another.
        """
        await self.begin(subscription_id, invocation)

    def begin(self, subscription_id: str, invocation: KafkaInvocation) -> Awaitable[None]:
        """Create the record's invocation now; the result resolves once it is committed (see `submit`)."""
        handler = self.engine.handler(invocation.service, invocation.handler)
        if handler is None:
            raise SinkUnavailable(f"service://{invocation.service}/{invocation.handler} is not a registered "
                                  "handler")
        headers = list(invocation.headers.items())
        landed = self.engine.invoke_at_owner(handler, invocation.input, headers, invocation.key or "",
                                             invocation.idempotency_key)
        if landed is not None:
            return self._landed(subscription_id, landed)
        _inv, _inv_id, created = self.engine.invoke(handler, invocation.input, headers, invocation.key or "",
                                                    invocation.idempotency_key)
        return self._recorded(subscription_id, created)

    async def _recorded(self, subscription_id: str, created: bool) -> None:
        await self.engine.barrier()
        if created:
            self.created[subscription_id] += 1
        else:
            self.deduplicated[subscription_id] += 1

    async def _landed(self, subscription_id: str, landed: Awaitable[None]) -> None:
        # Another partition owns it: in our outbox once the barrier returns, then created there (its idempotency
        # key dedups a record consumed twice); the offset may be committed once the owner has committed it.
        await self.engine.barrier()
        await landed
        self.created[subscription_id] += 1

    def _deliver_for(self, subscription: Subscription) -> Any:
        def create(invocation: KafkaInvocation) -> Awaitable[None]:
            return self.begin(subscription.id, invocation)

        return invocation_deliver(subscription, self.lookup, create=create)

    # ---- lifecycle ----------------------------------------------------------------------------------

    async def start(self, consume: bool = True) -> None:
        """Load the stored subscriptions and start their consumers (with the Kafka extra installed).

        `consume=False` (a draining server: no new invocations) loads them to be listed, runs no consumer.
        """
        for data in self.engine.store.load_subscriptions():
            try:
                sub = Subscription.from_json(data)
            except SubscriptionError as e:
                log.error("stored Kafka subscription %r cannot be loaded: %s", data.get("id"), e.message)
                continue
            self._subs[sub.id] = sub
        self._started = consume
        if not self._subs or not consume:
            return
        if not kafka_available():
            log.error("%d Kafka subscription(s) are stored but not consumed: %s", len(self._subs),
                      KAFKA_EXTRA_HINT)
            return
        await self._manager.sync(self._subs.values())
        log.info("Kafka subscriptions: %d consumer(s) started", len(self._subs))

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Stop every consumer: in-flight records finish, handled offsets are committed."""
        await self._manager.close(drain_timeout)

    # ---- the admin API ------------------------------------------------------------------------------

    def list(self, sink: str | None = None, source: str | None = None) -> list[Subscription]:
        """The subscriptions, oldest first, filtered by exact sink and source URIs."""
        return filter_subscriptions(self._subs.values(), sink=sink, source=source)

    def get(self, subscription_id: str) -> Subscription | None:
        return self._subs.get(subscription_id)

    async def create(self, body: object) -> Subscription:
        """Validate, store (committed before this returns) and start a subscription.

        Raises `SubscriptionError` (400: which part is wrong) or `KafkaExtraMissing`.
        """
        if not kafka_available():
            raise KafkaExtraMissing(f"Kafka subscriptions need the Kafka client: {KAFKA_EXTRA_HINT}")
        sub, _target = new_subscription(body, self.clusters, self.lookup)
        self.engine.table.write(SaveSubscription(sub.id, sub.to_json(), self.engine.now_ms()))
        await self.engine.barrier()
        self._subs[sub.id] = sub
        if self._started:
            self._manager.start(sub)
        log.info("Kafka subscription %s created: %s -> %s", sub.id, sub.source.uri, sub.sink.uri)
        return sub

    async def delete(self, subscription_id: str) -> bool:
        """Stop the subscription's consumer and forget it; False if there is no such subscription."""
        sub = self._subs.pop(subscription_id, None)
        if sub is None:
            return False
        await self._manager.stop(subscription_id)
        self.engine.table.write(DropSubscription(subscription_id))
        await self.engine.barrier()
        log.info("Kafka subscription %s deleted", subscription_id)
        return True

    # ---- observing ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, ConsumerStats]:
        """Each subscription's consumer stats (a subscription whose consumer does not run shows as stopped)."""
        running = self._manager.stats()
        return {sid: running.get(sid) or ConsumerStats(sid, state="stopped") for sid in self._subs}
