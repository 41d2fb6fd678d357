"""Restate's three Kafka example flows, written for Durably: event transactions, event enrichment and food
ordering. Each runs its own app (`tests/kafka/apps/`) under `durably serve`, a real Kafka producer publishes
the events, the subscription is made with `POST /subscriptions` as the examples' READMEs do, and the test
checks what a user sees through the ingress."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from typing import Any

import pytest

from tests.kafka.broker import KafkaBroker
from tests.kafka.conftest import create_topic
from tests.kafka.serving import eventually, flush, producer

pytestmark = pytest.mark.kafka


def publish(broker: KafkaBroker, topic: str, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Publish JSON events keyed by `key`, letting the producer's partitioner place them (by key), as an
    application's producer does."""
    prod = producer(broker)
    for key, value in events:
        prod.produce(topic, key=key.encode(), value=json.dumps(value).encode())
        prod.poll(0)
    flush(prod)


def test_event_transactions_keep_a_per_user_ledger(broker: KafkaBroker, kafka_serve: Any) -> None:
    topic = create_topic(broker, 3)
    server = kafka_serve("transactions_app")
    sub = server.subscribe(topic, "service://Account/process")
    assert (sub["source"], sub["sink"]) == (f"kafka://local/{topic}", "service://Account/process")
    rng = random.Random(7)
    users = ["alice", "bob", "carol", "dave"]
    events: list[tuple[str, dict[str, Any]]] = []
    for i in range(80):
        user = rng.choice(users)
        amount = rng.choice([-300, -120, -40, 25, 60, 200])
        events.append((user, {"id": f"tx-{i}", "amount": amount, "merchant": f"m{i % 5}"}))
    events.append(("bob", {"id": "tx-big", "amount": -5000, "merchant": "jeweller"}))  # beyond the credit limit
    events.append((events[0][0], dict(events[0][1])))  # the producer re-sends the first transaction
    publish(broker, topic, events)

    # What the ledgers must say: each user's transactions in produced order, declines not applied.
    expected: dict[str, list[dict[str, Any]]] = defaultdict(list)
    balances: dict[str, int] = defaultdict(int)
    for user, tx in events:
        if any(e["id"] == tx["id"] for e in expected[user]):
            continue  # the re-sent transaction
        declined = tx["amount"] < 0 and balances[user] + tx["amount"] < -1000
        if not declined:
            balances[user] += tx["amount"]
        expected[user].append({"id": tx["id"], "amount": tx["amount"], "merchant": tx["merchant"],
                               "status": "declined" if declined else "accepted"})

    def ledgers() -> dict[str, list[dict[str, Any]]] | None:
        got = {u: server.call(f"/Account/{u}/ledger") for u in expected}
        return got if all(len(got[u]) == len(expected[u]) for u in expected) else None

    got = eventually(ledgers, "every user's ledger to hold all their transactions")
    for user in expected:
        entries = got[user]
        assert [{k: e[k] for k in ("id", "amount", "merchant", "status")} for e in entries] == expected[user], user
        # One user's records are on one partition, applied in offset order.
        assert len({e["partition"] for e in entries}) == 1
        offsets = [e["offset"] for e in entries]
        assert offsets == sorted(offsets)
        assert server.call(f"/Account/{user}/balance") == balances[user]
    assert {"id": "tx-big", "amount": -5000, "merchant": "jeweller", "status": "declined"} in [
        {k: e[k] for k in ("id", "amount", "merchant", "status")} for e in got["bob"]]


def test_event_enrichment_tracks_registered_packages(broker: KafkaBroker, kafka_serve: Any) -> None:
    topic = create_topic(broker, 2)
    server = kafka_serve("enrichment_app")
    server.call("/PackageTracker/pkg-1/register", {"destination": "Ghent", "sender": "Ann"})
    server.call("/PackageTracker/pkg-2/register", {"destination": "Lyon", "sender": "Bo"})
    sub = server.subscribe(topic, "service://PackageTracker/update_location")
    route1 = ["Berlin", "Cologne", "Brussels", "Ghent"]
    route2 = ["Milan", "Turin", "Grenoble"]
    events: list[tuple[str, dict[str, Any]]] = []
    for i in range(4):
        events.append(("pkg-1", {"timestamp": f"2026-12-06T0{i}:00Z", "location": route1[i]}))
        if i < 3:
            events.append(("pkg-2", {"timestamp": f"2026-12-06T0{i}:30Z", "location": route2[i]}))
    events.append(("pkg-404", {"timestamp": "2026-12-06T05:00Z", "location": "Oslo"}))  # never registered
    events.append(("pkg-2", {"timestamp": "2026-12-06T06:00Z", "location": "Lyon"}))
    publish(broker, topic, events)

    info = eventually(lambda: (lambda i: i if i["last_location"] == "Lyon" else None)(
        server.call("/PackageTracker/pkg-2/get_package_info")), "pkg-2's last event, after the unregistered one")
    assert info == {"package": "pkg-2", "destination": "Lyon", "sender": "Bo", "last_location": "Lyon",
                    "delivered_at": "2026-12-06T06:00Z",
                    "updates": [{"at": f"2026-12-06T0{i}:30Z", "location": route2[i]} for i in range(3)]
                    + [{"at": "2026-12-06T06:00Z", "location": "Lyon"}]}
    info1 = eventually(lambda: (lambda i: i if len(i["updates"]) == 4 else None)(
        server.call("/PackageTracker/pkg-1/get_package_info")), "pkg-1's four events")
    assert [u["location"] for u in info1["updates"]] == route1
    assert info1["delivered_at"] == "2026-12-06T03:00Z" and info1["sender"] == "Ann"
    # The event nobody could enrich failed for good, as an invocation the operator can find; nothing was made up.
    with server.proc.client() as c:
        r = c.post("/PackageTracker/pkg-404/get_package_info", json=None)
    assert r.status_code == 404 and "pkg-404 is not registered" in r.text
    with server.admin() as a:
        failed = a.get("/invocations", params={"service": "PackageTracker", "handler": "update_location",
                                               "key": "pkg-404"}).json()["invocations"]
    assert [(i["status"], i["failure_code"]) for i in failed] == [("completed", 404)]
    assert failed[0]["idempotency_key"].startswith(f"kafka/{sub['id']}/{topic}/")


def test_food_ordering_workflows_driven_by_kafka_orders(broker: KafkaBroker, kafka_serve: Any) -> None:
    topic = create_topic(broker, 2)
    server = kafka_serve("food_app")
    server.subscribe(topic, "service://Order/run")
    orders = {"o-1": {"restaurant": "pizzeria", "items": ["margherita"], "total": 18, "delivery_seconds": 0.3},
              "o-2": {"restaurant": "pizzeria", "items": ["calzone", "tiramisu"], "total": 31,
                      "delivery_seconds": 0.3},
              "o-3": {"restaurant": "sushi-bar", "items": ["omakase"], "total": 400, "delivery_seconds": 0.3}}
    # The ordering platform publishes o-1 twice (its own retry): the workflow runs once per order id.
    publish(broker, topic, [(k, v) for k, v in orders.items()] + [("o-1", orders["o-1"])])

    def status(order_id: str) -> dict[str, Any]:
        return server.call(f"/Order/{order_id}/status")

    assert eventually(lambda: status("o-3")["status"] == "REJECTED" and status("o-3"),
                      "the over-limit order to be declined") == {"status": "REJECTED", "reason": "payment declined"}
    callbacks = {}
    for oid in ("o-1", "o-2"):
        st = eventually(lambda oid=oid: (lambda s: s if s["status"] == "IN_PREPARATION" else None)(status(oid)),
                        f"{oid} to reach the restaurant")
        callbacks[oid] = st["restaurant_callback"]
    # The restaurant's point-of-sale system says the food is ready, over the ingress.
    with server.proc.client() as c:
        for oid, meal in (("o-1", "pizza"), ("o-2", "calzone")):
            r = c.post(f"/restate/awakeables/{callbacks[oid]}/resolve", json={"meal": meal})
            assert r.status_code in (200, 202), r.text
    done = {oid: eventually(lambda oid=oid: (lambda s: s if s["status"] == "DELIVERED" else None)(status(oid)),
                            f"{oid} to be delivered") for oid in ("o-1", "o-2")}
    assert done["o-1"]["meal"] == "pizza" and done["o-2"]["meal"] == "calzone"
    assert {done["o-1"]["driver"], done["o-2"]["driver"]} <= {"driver-1", "driver-2"}
    with server.proc.client() as c:
        result = c.get("/restate/workflow/Order/o-1/attach", timeout=30)
    assert result.status_code == 200 and result.json() == {"order": "o-1", "status": "DELIVERED",
                                                          "driver": done["o-1"]["driver"]}
    eventually(lambda: server.call("/Drivers/pizzeria/busy") == {}, "both drivers freed")
    # One run per order, though o-1 was published twice.
    with server.admin() as a:
        runs = a.get("/invocations", params={"service": "Order", "handler": "run"}).json()["invocations"]
    assert sorted(i["key"] for i in runs) == ["o-1", "o-2", "o-3"]
