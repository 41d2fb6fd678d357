"""Kafka subscriptions through `durably serve`, as a user runs them: the server started with
`--kafka-cluster`, subscriptions made over the admin API with plain HTTP, records produced to a real broker,
and what each record did read back from the sink object's state over the ingress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from durably.server.ingest.subscriptions import new_subscription_id
from tests.kafka.broker import KafkaBroker
from tests.kafka.conftest import create_topic, produce
from tests.system.conftest import ServerProcess

pytestmark = pytest.mark.kafka

APP = f"{Path(__file__).resolve().parent / 'serve_app.py'}:app"


def _wait(check, what: str, within: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def serve(broker: KafkaBroker, tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(APP, tmp_path / "data", tmp_path / "server.log")
    server.extra_args = ["--kafka-cluster", f"local={broker.bootstrap}"]
    try:
        yield server
    finally:
        server.ensure_dead()


def admin(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.admin_port}", timeout=30)


def subscribe(server: ServerProcess, topic: str, sink: str = "service://Tally/add",
              **options: str) -> dict[str, object]:
    with admin(server) as a:
        r = a.post("/subscriptions", json={"source": f"kafka://local/{topic}", "sink": sink,
                                           "options": {"auto.offset.reset": "earliest", **options}})
    assert r.status_code == 201, r.text
    return r.json()


def seen(server: ServerProcess, key: str) -> list[int]:
    with server.client() as c:
        r = c.post(f"/Tally/{key}/get", json=None)
    assert r.status_code == 200, r.text
    return r.json()


def keyed_records(partitions: int, keys: int, count: int) -> tuple[list, dict[str, list[int]]]:
    """`count` records over `keys` keys; key k always goes to partition k % partitions, its values count up."""
    expected: dict[str, list[int]] = defaultdict(list)
    records = []
    for i in range(count):
        k = i % keys
        key = f"k{k}"
        value = len(expected[key])
        expected[key].append(value)
        records.append((k % partitions, key.encode(), json.dumps(value).encode(), [("x-trace", b"t1")]))
    return records, expected


def all_landed(server: ServerProcess, expected: dict[str, list[int]]) -> bool:
    return all(len(seen(server, key)) >= len(values) for key, values in expected.items())


def test_records_land_once_in_key_order_with_restate_headers(broker: KafkaBroker, serve: ServerProcess) -> None:
    topic = create_topic(broker, 4)
    serve.start()
    sub = subscribe(serve, topic)
    assert str(sub["id"]).startswith("sub_1")
    assert sub["source"] == f"kafka://local/{topic}" and sub["sink"] == "service://Tally/add"
    assert sub["options"]["group.id"] == sub["id"]  # type: ignore[index]
    records, expected = keyed_records(4, 12, 240)
    produce(broker, topic, records)
    _wait(lambda: all_landed(serve, expected), "every record to land")
    for key, values in expected.items():
        assert seen(serve, key) == values, key
    with serve.client() as c:
        headers = c.post("/Tally/k1/headers", json=None).json()
    assert headers["kafka.topic"] == topic and headers["kafka.partition"] == "1"
    assert headers["restate.subscription.id"] == sub["id"] and headers["x-trace"] == "t1"
    assert headers["kafka.key"] == "azE=" and "kafka.offset" in headers and "kafka.timestamp" in headers
    with admin(serve) as a:
        metrics = a.get("/metrics").text
    assert f'durably_kafka_invocations_created_total{{subscription="{sub["id"]}"}} 240.0' in metrics
    assert f'durably_kafka_records_consumed_total{{subscription="{sub["id"]}"}}' in metrics
    assert "durably_kafka_consumer_lag{" in metrics


def test_subscription_api_shapes_and_errors(broker: KafkaBroker, serve: ServerProcess) -> None:
    serve.start()
    with admin(serve) as a:
        r = a.post("/subscriptions", json={"source": "kafka://nowhere/t", "sink": "service://Tally/add"})
        assert r.status_code == 400 and "unknown Kafka cluster 'nowhere'" in r.json()["message"]
        r = a.post("/subscriptions", json={"source": "kafka://local/t", "sink": "service://Nope/add"})
        assert r.status_code == 400 and "not a registered handler" in r.json()["message"]
        r = a.post("/subscriptions", json={"source": "kafka:/local", "sink": "service://Tally/add"})
        assert r.status_code == 422 and "malformed URI" in r.json()["message"]  # restate-server's status
        r = a.post("/subscriptions", content=b"{not json")
        assert r.status_code == 400
        missing = new_subscription_id()
        r = a.get(f"/subscriptions/{missing}")
        assert r.status_code == 404 and r.json()["message"] == f"subscription {missing} not found"
        assert a.delete(f"/subscriptions/{missing}").status_code == 404
        r = a.get("/subscriptions/nope")
        assert r.status_code == 400
        assert a.get("/subscriptions").json() == {"subscriptions": []}
        assert a.get("/health").status_code == 200


def test_created_listed_deleted_and_recreated_across_a_restart(broker: KafkaBroker, serve: ServerProcess) -> None:
    t1, t2 = create_topic(broker, 1), create_topic(broker, 1)
    serve.start()
    s1, s2 = subscribe(serve, t1), subscribe(serve, t2)
    with admin(serve) as a:
        listed = a.get("/subscriptions").json()["subscriptions"]
        assert [s["id"] for s in listed] == [s1["id"], s2["id"]]
        assert a.get("/subscriptions", params={"source": f"kafka://local/{t2}"}).json() == {"subscriptions": [s2]}
        assert a.get("/subscriptions", params={"sink": "service://Tally/add"}).json()["subscriptions"] == listed
        assert a.get(f"/subscriptions/{s1['id']}").json() == s1
    assert serve.terminate(30) == 0
    serve.start()
    with admin(serve) as a:
        assert a.get("/subscriptions").json()["subscriptions"] == [s1, s2]
        assert a.delete(f"/subscriptions/{s1['id']}").status_code == 202
        assert a.get(f"/subscriptions/{s1['id']}").status_code == 404
    serve.kill()
    serve.start()
    with admin(serve) as a:
        assert a.get("/subscriptions").json()["subscriptions"] == [s2]
    # Consumed after the restart: the stored subscription's consumer runs again.
    produce(broker, t2, [(0, b"after", b"7", None)])
    _wait(lambda: seen(serve, "after") == [7], "the record produced after the restart")
    s3 = subscribe(serve, t1)
    assert s3["id"] != s1["id"]
    with admin(serve) as a:
        assert [s["id"] for s in a.get("/subscriptions").json()["subscriptions"]] == [s2["id"], s3["id"]]


def test_kill_9_of_durably_twice_and_of_the_broker_loses_and_duplicates_nothing(broker: KafkaBroker,
                                                                                serve: ServerProcess) -> None:
    topic = create_topic(broker, 8)
    records, expected = keyed_records(8, 40, 1000)
    serve.start()
    sub = subscribe(serve, topic, **{"session.timeout.ms": "6000"})
    produce(broker, topic, records)
    for _ in range(2):
        _wait(lambda: sum(len(seen(serve, k)) for k in ("k0", "k1", "k2", "k3")) >= 8, "consumption to start")
        serve.kill()
        serve.start()
    # Then the broker dies too: a logged, retried state; the server stays healthy and serves HTTP meanwhile.
    broker.kill9()
    with admin(serve) as a:
        down = f'durably_kafka_consumer_state{{state="broker-unavailable",subscription="{sub["id"]}"}} 1.0'
        _wait(lambda: down in a.get("/metrics").text, "the consumer to see the broker down")
        assert a.get("/health").status_code == 200
    assert seen(serve, "k0")  # the ingress still answers
    assert "the client keeps retrying" in serve.log()
    broker.start()
    _wait(lambda: all_landed(serve, expected), "every record to land after two kill -9 of durably and one of the "
          "broker", within=180)
    for key, values in expected.items():
        assert seen(serve, key) == values, key
    with admin(serve) as a:
        assert a.get(f"/subscriptions/{sub['id']}").status_code == 200


def test_terminal_failure_and_keyless_record_do_not_stall_the_partition(broker: KafkaBroker,
                                                                         serve: ServerProcess) -> None:
    topic = create_topic(broker, 1)
    serve.start()
    subscribe(serve, topic)
    produce(broker, topic, [(0, b"a", b"1", None), (0, b"a", b"-1", None), (0, None, b"5", None),
                            (0, b"a", b"2", None)])
    _wait(lambda: seen(serve, "a") == [1, -1, 2], "the records after the failing one and the keyless one")
    # The terminal failure is an ordinary failed invocation: listed and described like any other.
    with admin(serve) as a:
        listed = a.get("/invocations", params={"service": "Tally"}).text
    assert "negative value -1" in listed
    _wait(lambda: "has no key, but service://Tally/add is a keyed handler" in serve.log(),
          "the keyless record's logged error")


def durably_cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DURABLY_ADMIN_URL=f"http://127.0.0.1:{server.admin_port}")
    return subprocess.run([sys.executable, "-m", "durably.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_cli_create_list_delete_and_the_ui_shows_consumer_lag(broker: KafkaBroker, serve: ServerProcess) -> None:
    topic = create_topic(broker, 2)
    serve.start()
    out = durably_cli(serve, "subscriptions", "create", f"kafka://local/{topic}", "service://Tally/add",
                      "-o", "auto.offset.reset=earliest")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("created sub_1") and f"kafka://local/{topic} -> service://Tally/add" in out.stdout
    sub_id = out.stdout.split()[1].rstrip(":")
    listed = durably_cli(serve, "subscriptions", "list")
    assert listed.returncode == 0 and sub_id in listed.stdout and "auto.offset.reset=earliest" in listed.stdout
    bad = durably_cli(serve, "subscriptions", "create", f"kafka://elsewhere/{topic}", "service://Tally/add")
    assert bad.returncode != 0 and "unknown Kafka cluster 'elsewhere'" in bad.stderr
    produce(broker, topic, [(0, b"u", b"1", None), (1, b"v", b"2", None)])
    _wait(lambda: seen(serve, "u") == [1] and seen(serve, "v") == [2], "both records")

    def ui_lag_is_zero() -> str | None:
        with admin(serve) as a:
            page = a.get("/ui/services").text
        return page if f"{topic}/0: 0" in page and f"{topic}/1: 0" in page else None

    page = _wait(ui_lag_is_zero, "the UI to show each partition's lag caught up")
    assert f'id="sub-{sub_id}"' in page and "running" in page
    deleted = durably_cli(serve, "subscriptions", "delete", sub_id)
    assert deleted.returncode == 0 and deleted.stdout.strip() == f"deleted {sub_id}"
    assert durably_cli(serve, "subscriptions", "list").stdout.strip() == "no subscriptions"


def test_statuses_match_restate_server(broker: KafkaBroker, serve: ServerProcess) -> None:
    """What restate-server 1.7.12 answers (measured against it on the same broker): a body that is JSON but not
    a subscription request (a wrong type, a missing field, a string that is no URI) is 422; a URI that parses but
    names an unknown scheme, cluster or handler is 400; unknown fields and `"options": null` are accepted;
    `Location` is relative; DELETE answers 202 with no body, and 404 once the subscription is gone."""
    topic = create_topic(broker, 1)
    serve.start()
    ok = {"source": f"kafka://local/{topic}", "sink": "service://Tally/add"}
    with admin(serve) as a:
        for body, why in ((["x"], "a JSON object"), ({"sink": ok["sink"]}, "source"),
                          ({"source": ok["source"]}, "sink"), ({**ok, "source": 5}, "source"),
                          ({**ok, "source": "kafka:/local"}, "malformed URI"),
                          ({**ok, "sink": "service:/Tally"}, "malformed URI"),
                          ({**ok, "source": "kafka://local/bad topic"}, "malformed URI"),
                          ({**ok, "options": {"a": 1}}, "option 'a'"), ({**ok, "options": ["a"]}, "options")):
            r = a.post("/subscriptions", json=body)
            assert r.status_code == 422 and why in r.json()["message"], (body, r.status_code, r.text)
        for body, why in (({**ok, "source": "foo://local/t"}, "kafka://"), ({**ok, "sink": "svc://Tally/add"},
                          "service://"), ({**ok, "sink": "service://Tally"}, "service://")):
            r = a.post("/subscriptions", json=body)
            assert r.status_code == 400 and why in r.json()["message"], (body, r.status_code, r.text)
        r = a.post("/subscriptions", content=b"", headers={"content-type": "application/json"})
        assert r.status_code == 400
        r = a.post("/subscriptions", json={**ok, "extra": 1, "options": None})
        assert r.status_code == 201, r.text
        sub = r.json()
        assert r.headers["location"] == f"subscriptions/{sub['id']}"
        assert sub == {"id": sub["id"], "source": ok["source"], "sink": ok["sink"],
                       "options": {"group.id": sub["id"], "client.id": "durably"}}
        r = a.delete(f"/subscriptions/{sub['id']}")
        assert (r.status_code, r.content) == (202, b"")
        r = a.delete(f"/subscriptions/{sub['id']}")
        assert r.status_code == 404 and sub["id"] in r.json()["message"]
        assert a.put("/subscriptions").status_code == 405
        assert a.patch(f"/subscriptions/{sub['id']}").status_code == 405
