"""The running consumers of a server's subscriptions: start one when a subscription is created (or loaded at
startup), stop it when the subscription is deleted, stop them all at shutdown.

    manager = IngestManager(clusters, deliver_for)
    await manager.sync(stored_subscriptions)     # at startup
    manager.start(sub)                           # after POST /subscriptions stored it
    await manager.stop(sub.id)                   # after DELETE /subscriptions/{id}
    await manager.close()                        # at shutdown
    manager.stats()                              # for /metrics and the UI

`deliver_for(subscription)` returns the `deliver` callback of that subscription's consumer (see
`consumer.SubscriptionConsumer` for its contract).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from durably.server.ingest.consumer import ConsumerOptions, Deliver, SubscriptionConsumer
from durably.server.ingest.stats import ConsumerStats
from durably.server.ingest.subscriptions import KafkaCluster, Subscription

__all__ = ["IngestManager"]

log = logging.getLogger("durably.ingest")


class IngestManager:
    """One `SubscriptionConsumer` per subscription, keyed by subscription id."""

    def __init__(self, clusters: Mapping[str, KafkaCluster], deliver_for: Callable[[Subscription], Deliver],
                 options: ConsumerOptions | None = None) -> None:
        self.clusters = dict(clusters)
        self._deliver_for = deliver_for
        self._options = options
        self._consumers: dict[str, SubscriptionConsumer] = {}
        # Subscriptions that cannot run (their cluster is no longer configured): kept to be shown, not run.
        self._idle: dict[str, ConsumerStats] = {}

    def start(self, subscription: Subscription) -> None:
        """Start consuming for `subscription` (nothing if it already runs). Needs the `durably[kafka]` extra."""
        if subscription.id in self._consumers:
            return
        cluster = self.clusters.get(subscription.source.cluster)
        if cluster is None:
            stats = ConsumerStats(subscription.id, state="stopped")
            stats.last_error = (f"Kafka cluster {subscription.source.cluster!r} is not configured (configured: "
                                f"{', '.join(sorted(self.clusters)) or 'none'})")
            self._idle[subscription.id] = stats
            log.error("Kafka subscription %s not started: %s", subscription.id, stats.last_error)
            return
        consumer = SubscriptionConsumer(subscription, cluster, self._deliver_for(subscription), self._options)
        consumer.start()
        self._idle.pop(subscription.id, None)
        self._consumers[subscription.id] = consumer

    async def stop(self, subscription_id: str, drain_timeout: float = 5.0) -> None:
        """Stop the subscription's consumer (see `SubscriptionConsumer.stop`); nothing if it does not run."""
        self._idle.pop(subscription_id, None)
        consumer = self._consumers.pop(subscription_id, None)
        if consumer is not None:
            await consumer.stop(drain_timeout)

    async def sync(self, subscriptions: Iterable[Subscription], drain_timeout: float = 5.0) -> None:
        """Make the running consumers exactly `subscriptions`: start the missing, stop the others."""
        wanted = {s.id: s for s in subscriptions}
        gone = [sid for sid in list(self._consumers) + list(self._idle) if sid not in wanted]
        await asyncio.gather(*(self.stop(sid, drain_timeout) for sid in gone))
        for sub in wanted.values():
            self.start(sub)

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Stop every consumer (concurrently)."""
        await asyncio.gather(*(self.stop(sid, drain_timeout) for sid in list(self._consumers) + list(self._idle)))

    def consumer(self, subscription_id: str) -> SubscriptionConsumer | None:
        return self._consumers.get(subscription_id)

    def stats(self) -> dict[str, ConsumerStats]:
        """Every subscription's consumer stats, running or not, by subscription id."""
        out = {sid: c.stats for sid, c in self._consumers.items()}
        out.update(self._idle)
        return out
