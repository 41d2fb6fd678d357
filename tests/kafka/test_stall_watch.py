"""A partition stuck in the Kafka client is noticed and the client recreated.

Seen once in a full test run: the broker was killed just after a rebalance gave a consumer its partitions, and
once the broker was back that client never fetched them again: no error, no record, the lag never fell, and
the subscription stood still until the process restarted. The consumer now watches each assigned partition in
the client's statistics: not paused, records on the broker past what it received, the broker up, and nothing
received for `stall_timeout` is a stall, and the client is recreated (it reads on from the committed offsets).
"""

from __future__ import annotations

from durably.server.ingest import ConsumerOptions, KafkaCluster, Subscription, SubscriptionConsumer
from durably.server.ingest.consumer import _Partition
from tests.kafka.conftest import Recorder, subscription


def consumer_with(part: _Partition, sub: Subscription | None = None) -> SubscriptionConsumer:
    c = SubscriptionConsumer(sub or subscription("t"), KafkaCluster("test", ("h:1",)), Recorder(),
                             ConsumerOptions(stall_timeout=60.0))
    c.stats.state = "running"
    c._parts[part.tp] = part
    return c


async def test_a_partition_that_receives_nothing_with_records_waiting_gets_the_client_recreated() -> None:
    part = _Partition("t", 3)
    part.last_routed = part.seen_routed = 99
    c = consumer_with(part)
    c._watch_stall(part, hi=200, committed=100, fetch_state="offset-wait", now=1000.0)
    c._watch_stall(part, hi=200, committed=100, fetch_state="offset-wait", now=1059.0)
    assert c._fatal is None
    c._watch_stall(part, hi=200, committed=100, fetch_state="offset-wait", now=1060.0)
    assert c._fatal == ("partition t/3 received nothing for 60 s with 100 records waiting on the broker (fetch "
                        "state offset-wait)")


async def test_what_is_not_a_stall() -> None:
    # Records arriving, a paused partition (its buffer is full), nothing waiting, a broker that is down.
    for case in ("moving", "paused", "caught up", "broker down"):
        part = _Partition("t", 0)
        part.last_routed = part.seen_routed = 99
        c = consumer_with(part)
        hi = 200
        for now in range(0, 600, 10):
            if case == "moving":
                part.last_routed += 1
            elif case == "paused":
                part.paused = True
            elif case == "caught up":
                hi = part.last_routed + 1
            else:
                c.stats.state = "broker-unavailable"
            c._watch_stall(part, hi=hi, committed=100, fetch_state="active", now=float(now))
        assert c._fatal is None, case


async def test_a_partition_the_client_never_fetches_gets_the_client_recreated() -> None:
    """Seen once more in a full test run, after a broker restart that came with a rebalance: the new assignment
    was never fetched, so the client's statistics knew no high watermark for it (-1) and the check above could
    not see records waiting. A partition that stays out of the `active` fetch state, its high watermark unknown,
    for `stall_timeout` while the broker is up, is as stuck."""
    part = _Partition("t", 5)
    c = consumer_with(part)
    c._watch_stall(part, hi=-1, committed=40, fetch_state="offset-query", now=1000.0)
    c._watch_stall(part, hi=-1, committed=40, fetch_state="offset-query", now=1059.0)
    assert c._fatal is None
    c._watch_stall(part, hi=-1, committed=40, fetch_state="offset-query", now=1060.0)
    assert c._fatal == ("partition t/5 received nothing for 60 s and the client never fetched it (high watermark "
                        "unknown, fetch state offset-query)")


async def test_an_idle_partition_the_client_fetches_is_not_a_stall() -> None:
    # Fetching (active) with no high watermark yet, or a broker that is down while the client cannot fetch.
    for fetch_state, state in (("active", "running"), ("offset-query", "broker-unavailable")):
        part = _Partition("t", 1)
        c = consumer_with(part)
        c.stats.state = state
        for now in range(0, 600, 10):
            c._watch_stall(part, hi=-1, committed=-1001, fetch_state=fetch_state, now=float(now))
        assert c._fatal is None, (fetch_state, state)
