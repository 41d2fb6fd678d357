"""Counters and state of one subscription's consumer, for `/metrics`, the UI and `describe`.

The consumer only updates plain numbers here (from its event loop); exporting them (Prometheus counters and
gauges labelled by subscription, topic and partition) is the metrics layer's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ConsumerState", "ConsumerStats"]

# starting: creating the client / joining the group; running: consuming; broker-unavailable: the client
# reports every broker down (it keeps retrying); stopping: `stop()` is draining; stopped: it finished.
ConsumerState = Literal["starting", "running", "broker-unavailable", "stopping", "stopped"]


@dataclass
class ConsumerStats:
    """What a subscription's consumer has done so far (counters only grow)."""

    subscription_id: str
    state: ConsumerState = "starting"
    records_consumed: int = 0
    deliveries: int = 0
    refused: int = 0
    delivery_errors: int = 0
    broker_errors: int = 0
    commits: int = 0
    commit_errors: int = 0
    restarts: int = 0
    last_error: str | None = None
    # (topic, partition) -> the high watermark minus the committed offset, for assigned partitions whose
    # high watermark the client has seen. Cleared for a partition when it is revoked.
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    # (topic, partition) -> the next offset committed to Kafka (last handled offset + 1).
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    assigned: set[tuple[str, int]] = field(default_factory=set)
    # Assigned partitions whose fetching is paused because their buffered records reached the limit.
    paused: set[tuple[str, int]] = field(default_factory=set)

    @property
    def errors(self) -> int:
        """All errors: refused records, failed deliveries, broker and commit errors."""
        return self.refused + self.delivery_errors + self.broker_errors + self.commit_errors

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())

    def to_json(self) -> dict[str, object]:
        """A JSON view for the admin API and the UI."""
        return {
            "subscription_id": self.subscription_id,
            "state": self.state,
            "records_consumed": self.records_consumed,
            "deliveries": self.deliveries,
            "refused": self.refused,
            "delivery_errors": self.delivery_errors,
            "broker_errors": self.broker_errors,
            "commits": self.commits,
            "commit_errors": self.commit_errors,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "lag": self.total_lag,
            "partitions": [
                {"topic": t, "partition": p, "lag": self.lag.get((t, p)), "committed": self.committed.get((t, p)),
                 "paused": (t, p) in self.paused}
                for t, p in sorted(self.assigned)
            ],
        }
