"""When Durably is a deployment behind restate-server, Restate does the consuming: a Durably app is the sink of
a Restate subscription on the same broker (restate-server configured with that broker as a Kafka cluster), and
each record lands once, in per-key order, in the object's state, with Restate's Kafka headers."""

from __future__ import annotations

import json
import time
from pathlib import Path

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
