"""When Durably is a deployment behind restate-server, Restate does the consuming: a Durably app is the sink of
a Restate subscription on the same broker (restate-server configured with that broker as a Kafka cluster), and
each record lands once, in per-key order, in the object's state, with Restate's Kafka headers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.interop.conftest import Deployment, RestateServer
from tests.kafka.broker import KafkaBroker
from tests.kafka.conftest import create_topic, produce
from tests.kafka.serve_app import app

pytestmark = [pytest.mark.kafka, pytest.mark.interop]


def test_durably_app_is_the_sink_of_a_restate_subscription(broker: KafkaBroker, tmp_path: Path) -> None:
    config = tmp_path / "restate.toml"
    config.write_text(f'[[ingress.kafka-clusters]]\nname = "local"\nbrokers = ["{broker.bootstrap}"]\n')
    dep = Deployment(app)
    dep.start()
    (tmp_path / "restate").mkdir()
    server = RestateServer(tmp_path / "restate", {"RESTATE_CONFIG": str(config)})
    try:
        server.register(dep.url)
        topic = create_topic(broker, 2)
        r = httpx.post(f"{server.admin}/subscriptions", timeout=30, json={
            "source": f"kafka://local/{topic}", "sink": "service://Tally/add",
            "options": {"auto.offset.reset": "earliest"}})
        assert r.status_code == 201, r.text
        expected = {"a": list(range(10)), "b": list(range(10))}
        produce(broker, topic, [(0 if key == "a" else 1, key.encode(), json.dumps(v).encode(), None)
                                for v in range(10) for key in ("a", "b")])

        def state(key: str) -> list[int]:
            resp = httpx.post(f"{server.ingress}/Tally/{key}/get", json=None, timeout=30)
            return resp.json() if resp.status_code == 200 else []

        deadline = time.monotonic() + 90
        while any(len(state(k)) < len(v) for k, v in expected.items()):
            assert time.monotonic() < deadline, f"records did not land: {state('a')} {state('b')}"
            time.sleep(0.1)
        assert state("a") == expected["a"] and state("b") == expected["b"]
        headers = httpx.post(f"{server.ingress}/Tally/b/headers", json=None, timeout=30).json()
        assert headers["kafka.topic"] == topic and headers["kafka.partition"] == "1"
        assert headers["kafka.key"] == "Yg==" and "kafka.offset" in headers
    finally:
        server.stop()
        dep.stop()


def test_durably_consumer_matches_restate_headers_group_and_offset_reset(broker: KafkaBroker, tmp_path: Path,
                                                                          kafka_serve: Any) -> None:
    """The same topic consumed by restate-server 1.7.12 and by `durably serve`, each through a subscription
    created with no options: both name the consumer group by the subscription id, both start at the end of the
    topic (`auto.offset.reset` left to the client: `latest`), and a record's handler sees the same Kafka
    metadata headers, names and values, on both."""
    config = tmp_path / "restate.toml"
    config.write_text(f'[[ingress.kafka-clusters]]\nname = "local"\nbrokers = ["{broker.bootstrap}"]\n')
    dep = Deployment(app)
    dep.start()
    (tmp_path / "restate").mkdir()
    restate = RestateServer(tmp_path / "restate", {"RESTATE_CONFIG": str(config)})
    durably = kafka_serve("../serve_app")
    try:
        restate.register(dep.url)
        topic = create_topic(broker, 1)
        produce(broker, topic, [(0, b"early", b"0", None)])  # before either subscription exists
        body = {"source": f"kafka://local/{topic}", "sink": "service://Tally/add"}
        r = httpx.post(f"{restate.admin}/subscriptions", json=body, timeout=30)
        assert r.status_code == 201, r.text
        restate_sub = r.json()
        with durably.admin() as a:
            r = a.post("/subscriptions", json=body)
        assert r.status_code == 201, r.text
        durably_sub = r.json()
        for sub in (restate_sub, durably_sub):
            assert sub["options"]["group.id"] == sub["id"] and "auto.offset.reset" not in sub["options"]

        def seen(base: str, key: str) -> list[int]:
            resp = httpx.post(f"{base}/Tally/{key}/get", json=None, timeout=30)
            return resp.json() if resp.status_code == 200 else []

        # Until each consumer has its starting offset, a record may fall before it: produce probes until both
        # have seen one, then the record whose headers are compared.
        n = 0
        while not (seen(restate.ingress, "probe") and seen(durably.proc.url, "probe")):
            assert n < 120, "the consumers never saw a record produced after they started"
            produce(broker, topic, [(0, b"probe", str(n).encode(), None)])
            n += 1
            time.sleep(0.5)
        groups = {g.group_id for g in broker.admin().list_consumer_groups().result(30).valid}
        assert {restate_sub["id"], durably_sub["id"]} <= groups
        produce(broker, topic, [(0, b"b", b"7", [("x-trace", b"t9")])])
        deadline = time.monotonic() + 60
        while not (seen(restate.ingress, "b") and seen(durably.proc.url, "b")):
            assert time.monotonic() < deadline, "the compared record did not land on both"
            time.sleep(0.2)
        assert seen(restate.ingress, "early") == [] and seen(durably.proc.url, "early") == []
        on_restate = httpx.post(f"{restate.ingress}/Tally/b/headers", json=None, timeout=30).json()
        on_durably = httpx.post(f"{durably.proc.url}/Tally/b/headers", json=None, timeout=30).json()
        assert on_restate.pop("restate.subscription.id") == restate_sub["id"]
        assert on_durably.pop("restate.subscription.id") == durably_sub["id"]
        # Restate 1.7.12 passes no record headers; Durably also passes the record's UTF-8 headers (README).
        assert on_durably.pop("x-trace") == "t9" and "x-trace" not in on_restate
        assert on_durably == on_restate
        assert set(on_restate) == {"kafka.key", "kafka.offset", "kafka.partition", "kafka.timestamp", "kafka.topic"}
    finally:
        restate.stop()
        dep.stop()
