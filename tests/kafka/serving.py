"""Helpers for the Kafka tests that run `durably serve` with an app of `tests/kafka/apps/`: start it with the
broker as a Kafka cluster, subscribe over the admin API exactly as Restate's READMEs do, call the ingress,
run the CLI, and wait on conditions."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.kafka.broker import KafkaBroker
from tests.system.conftest import ServerProcess

T = TypeVar("T")

APPS = Path(__file__).resolve().parent / "apps"
CLUSTER = "local"


def app_ref(module: str) -> str:
    return f"{APPS / f'{module}.py'}:app"


class KafkaServer:
    """`durably serve <app> --kafka-cluster local=<broker>`, with the calls a test makes to it."""

    def __init__(self, broker: KafkaBroker, module: str, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.proc = ServerProcess(app_ref(module), tmp / "data", tmp / "server.log")
        self.proc.extra_args = ["--kafka-cluster", f"{CLUSTER}={broker.bootstrap}"]

    def start(self) -> KafkaServer:
        self.proc.start()
        return self

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.proc.admin_port}", timeout=30)

    def subscribe(self, topic: str, sink: str, **options: str) -> dict[str, Any]:
        """`POST /subscriptions` as in Restate's READMEs: a `kafka://<cluster>/<topic>` source and a
        `service://<Service>/<handler>` sink, reading the topic from its start."""
        with self.admin() as a:
            r = a.post("/subscriptions", json={"source": f"kafka://{CLUSTER}/{topic}", "sink": sink,
                                               "options": {"auto.offset.reset": "earliest", **options}})
        assert r.status_code == 201, r.text
        return r.json()

    def call(self, path: str, body: object = None, expect: int = 200) -> Any:
        """POST to the ingress (`/<Service>/<key>/<handler>` or `/<Service>/<handler>`) and return the JSON."""
        with self.proc.client() as c:
            r = c.post(path, json=body)
        assert r.status_code == expect, f"{path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, DURABLY_ADMIN_URL=f"http://127.0.0.1:{self.proc.admin_port}")
        return subprocess.run([sys.executable, "-m", "durably.cli.main", *args], capture_output=True, text=True,
                              env=env, timeout=60)

    def log(self) -> str:
        return self.proc.log()


@pytest.fixture
def kafka_serve(broker: KafkaBroker, tmp_path: Path) -> Iterator[Callable[[str], KafkaServer]]:
    """Start `durably serve` with an app of `tests/kafka/apps/` (by module name); stopped after the test."""
    servers: list[KafkaServer] = []

    def start(module: str) -> KafkaServer:
        server = KafkaServer(broker, module, tmp_path / f"{module}-{len(servers)}")
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.proc.ensure_dead()


def eventually(check: Callable[[], T | None], what: str, within: float = 90.0) -> T:
    """Call `check` until it returns something truthy (and return that), failing after `within` seconds."""
    deadline = time.monotonic() + within
    last: object = None
    while True:
        try:
            result = check()
        except AssertionError as exc:  # a check may assert on an intermediate state: keep its message
            result, last = None, exc
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f}s waiting for {what}" + (f" (last: {last})" if last else ""))
        time.sleep(0.05)  # a poll interval; the condition is what is waited on


def producer(broker: KafkaBroker) -> Any:
    """A real `confluent_kafka.Producer` on the broker, as an example app's producer would use."""
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 5})


def flush(prod: Any) -> None:
    assert prod.flush(60) == 0, "records left unsent"
