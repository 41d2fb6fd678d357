"""Handler failures of Kafka-fed invocations, seen as a user sees them: a retried invocation holds back only
its own key, never the partition's other keys nor its offsets; a terminal failure does not stall the
partition and shows in `durably invocations describe` and on the UI's invocation page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.kafka.broker import KafkaBroker
from tests.kafka.conftest import committed_offsets, create_topic
from tests.kafka.serving import KafkaServer, eventually, flush, producer

pytestmark = pytest.mark.kafka


def produce_entries(broker: KafkaBroker, topic: str, entries: list[tuple[str, dict[str, Any]]]) -> None:
    prod = producer(broker)
    for key, entry in entries:
        prod.produce(topic, key=key.encode(), value=json.dumps(entry).encode(), partition=0)
    flush(prod)


def invocations_of(server: KafkaServer, key: str) -> list[dict[str, Any]]:
    with server.admin() as a:
        r = a.get("/invocations", params={"service": "Ledger", "key": key})
    assert r.status_code == 200, r.text
    return r.json()["invocations"]


def test_a_retried_invocation_holds_back_only_its_own_key(broker: KafkaBroker, kafka_serve: Any,
                                                            tmp_path: Path) -> None:
    topic = create_topic(broker, 1)
    server = kafka_serve("failures_app")
    sub = server.subscribe(topic, "service://Ledger/apply")
    fixed = tmp_path / "downstream-ready"
    # All on one Kafka partition: A's first record fails (retryably) until `fixed` exists.
    produce_entries(broker, topic, [("A", {"n": 0, "until": str(fixed)}), ("B", {"n": 0}), ("C", {"n": 0}),
                                    ("A", {"n": 1}), ("B", {"n": 1}), ("C", {"n": 1})])
    eventually(lambda: server.call("/Ledger/B/applied") == [0, 1] and server.call("/Ledger/C/applied") == [0, 1],
               "B's and C's records, behind A's failing one on the same partition")
    # A's first invocation keeps being retried; its second waits behind it in A's queue.
    first = eventually(lambda: next((i for i in invocations_of(server, "A") if i.get("retry_count", 0) >= 2), None),
                       "A's first record to be retried")
    assert first["status"] in ("backing-off", "running", "invoked")
    assert "downstream not ready for entry 0" in json.dumps(first["last_error"])
    assert first["idempotency_key"] == f"kafka/{sub['id']}/{topic}/0/0"
    assert server.call("/Ledger/A/applied") == []
    # Every record became an invocation, so the partition's offsets are all committed despite A.
    eventually(lambda: committed_offsets(broker, sub["id"], topic, 1) == {0: 6},
               "all six offsets committed while A retries")
    fixed.touch()
    eventually(lambda: server.call("/Ledger/A/applied") == [0, 1], "A's records, in order, once the handler is fixed")
    assert server.call("/Ledger/B/applied") == [0, 1] and server.call("/Ledger/C/applied") == [0, 1]


def test_a_terminal_failure_does_not_stall_the_partition_and_is_shown(broker: KafkaBroker,
                                                                      kafka_serve: Any) -> None:
    topic = create_topic(broker, 1)
    server = kafka_serve("failures_app")
    sub = server.subscribe(topic, "service://Ledger/apply")
    produce_entries(broker, topic, [("T", {"n": 0}), ("T", {"n": 1, "terminal": True}), ("T", {"n": 2}),
                                    ("U", {"n": 0})])
    eventually(lambda: server.call("/Ledger/T/applied") == [0, 2] and server.call("/Ledger/U/applied") == [0],
               "the records after the terminally failing one, of its key and another")
    eventually(lambda: committed_offsets(broker, sub["id"], topic, 1) == {0: 4}, "every offset committed")
    failed = [i for i in invocations_of(server, "T") if "failure_code" in i]
    assert len(failed) == 1
    inv = failed[0]
    assert (inv["status"], inv["failure_code"]) == ("completed", 422)
    assert inv["failure_message"] == "entry 1 rejected: malformed amount"

    out = server.cli("invocations", "describe", inv["id"])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.split(":", 1)[0] == "status" and line.split(":", 1)[1].strip() == "completed (failed)"
               for line in lines), out.stdout
    assert any(line.startswith("failure:") and line.split(":", 1)[1].strip() ==
               "422 entry 1 rejected: malformed amount" for line in lines), out.stdout
    assert any(line.startswith("idempotency key:") and line.endswith(f"kafka/{sub['id']}/{topic}/0/1")
               for line in lines), out.stdout
    assert "Ledger/T/apply" in out.stdout

    with server.admin() as a:
        page = a.get(f"/ui/invocations/{inv['id']}")
        listing = a.get("/ui/invocations", params={"service": "Ledger"})
    assert page.status_code == 200
    assert "entry 1 rejected: malformed amount" in page.text and "422" in page.text
    assert inv["id"] in listing.text
