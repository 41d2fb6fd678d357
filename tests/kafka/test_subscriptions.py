"""The subscription model: Restate's request/response shapes, validation errors that name the wrong part,
cluster configuration, ids, and how a record becomes an invocation (no broker needed)."""

from __future__ import annotations

import base64
import re

import pytest

from durably.server.ingest import (
    KafkaCluster,
    KafkaInvocation,
    KafkaRecord,
    RecordRefused,
    SinkTarget,
    SinkUnavailable,
    Subscription,
    SubscriptionError,
    filter_subscriptions,
    invocation_deliver,
    invocation_for,
    new_subscription,
    parse_clusters,
    parse_subscription_id,
    restate_headers,
)
from durably.server.ingest.subscriptions import ServiceSink, new_subscription_id, parse_sink, parse_source

CLUSTERS = {"my-cluster": KafkaCluster("my-cluster", ("127.0.0.1:9092",))}
HANDLERS = {("Counter", "add"): SinkTarget("object", "exclusive"), ("Greeter", "greet"): SinkTarget("service")}


def lookup(service: str, handler: str) -> SinkTarget | None:
    return HANDLERS.get((service, handler))


def create(body: object) -> Subscription:
    return new_subscription(body, CLUSTERS, lookup)[0]


def error(body: object) -> SubscriptionError:
    with pytest.raises(SubscriptionError) as info:
        create(body)
    return info.value


def test_create_answers_restate_shape_with_group_per_subscription() -> None:
    sub, target = new_subscription({"source": "kafka://my-cluster/orders", "sink": "service://Counter/add",
                                    "options": {"auto.offset.reset": "earliest"}}, CLUSTERS, lookup)
    body = sub.to_json()
    assert set(body) == {"id", "source", "sink", "options"}
    assert re.fullmatch(r"sub_1[0-9a-zA-Z]{22}", body["id"])
    assert body["source"] == "kafka://my-cluster/orders" and body["sink"] == "service://Counter/add"
    assert body["options"] == {"auto.offset.reset": "earliest", "group.id": sub.id, "client.id": "durably"}
    assert target.keyed and sub.group_id == sub.id
    # Stored and loaded back: the same subscription, the same consumer group.
    assert Subscription.from_json(body) == sub


def test_options_keep_an_explicit_group_and_cluster_group() -> None:
    assert create({"source": "kafka://my-cluster/t", "sink": "service://Greeter/greet",
                   "options": {"group.id": "mine"}}).group_id == "mine"
    clusters = {"c": KafkaCluster("c", ("h:1",), {"group.id": "shared", "client.id": "app"})}
    sub, _ = new_subscription({"source": "kafka://c/t", "sink": "service://Greeter/greet"}, clusters, lookup)
    assert "group.id" not in sub.options and "client.id" not in sub.options
    assert sub.consumer_config(clusters["c"])["group.id"] == "shared"
    assert sub.consumer_config(clusters["c"])["client.id"] == "app"


def test_consumer_config_layers_cluster_then_options() -> None:
    cluster = KafkaCluster("c", ("a:1", "b:2"), {"security.protocol": "SASL_SSL", "sasl.username": "u",
                                                 "sasl.password": "p", "auto.offset.reset": "latest"})
    sub, _ = new_subscription({"source": "kafka://c/t", "sink": "service://Greeter/greet",
                               "options": {"auto.offset.reset": "earliest"}}, {"c": cluster}, lookup)
    config = sub.consumer_config(cluster)
    assert config["bootstrap.servers"] == "a:1,b:2"
    assert config["security.protocol"] == "SASL_SSL" and config["sasl.password"] == "p"
    assert config["auto.offset.reset"] == "earliest" and config["group.id"] == sub.id
    assert cluster.describe()["properties"]["sasl.password"] == "***"
    assert cluster.describe()["properties"]["sasl.username"] == "u"


@pytest.mark.parametrize(("body", "field", "says"), [
    ({"source": "kafka:/my-cluster/t", "sink": "service://Counter/add"}, "source", "malformed URI"),
    ({"source": "kafka://my-cluster", "sink": "service://Counter/add"}, "source", "malformed URI"),
    ({"source": "kafka://my-cluster/a/b", "sink": "service://Counter/add"}, "source", "malformed URI"),
    ({"source": "kafka://my-cluster/bad topic", "sink": "service://Counter/add"}, "source", "malformed URI"),
    ({"source": "kafka://my-cluster/t?x=1", "sink": "service://Counter/add"}, "source", "malformed URI"),
    ({"source": "http://my-cluster/t", "sink": "service://Counter/add"}, "source", "malformed URI"),
    ({"source": "kafka://other/t", "sink": "service://Counter/add"}, "source", "unknown Kafka cluster 'other'"),
    ({"source": "kafka://my-cluster/t", "sink": "service://Counter"}, "sink", "malformed URI"),
    ({"source": "kafka://my-cluster/t", "sink": "svc://Counter/add"}, "sink", "malformed URI"),
    ({"source": "kafka://my-cluster/t", "sink": "service://Counter/nope"}, "sink", "not a registered handler"),
    ({"source": "kafka://my-cluster/t", "sink": "service://Nope/add"}, "sink", "not a registered handler"),
    ({"source": "kafka://my-cluster/t"}, "sink", "missing"),
    ({"sink": "service://Counter/add"}, "source", "missing"),
    ({"source": 3, "sink": "service://Counter/add"}, "source", "expected a URI"),
    ({"source": "kafka://my-cluster/t", "sink": "service://Counter/add", "options": []}, "options", "object"),
    ({"source": "kafka://my-cluster/t", "sink": "service://Counter/add", "options": {"a": 1}}, "options",
     "string"),
    ({"source": "kafka://my-cluster/t", "sink": "service://Counter/add",
      "options": {"auto.offset.reset": "start"}}, "options", "auto.offset.reset"),
    ({"source": "kafka://my-cluster/t", "sink": "service://Counter/add",
      "options": {"bootstrap.servers": "evil:1"}}, "options", "cannot be set"),
    ({"source": "kafka://my-cluster/t", "sink": "service://Counter/add",
      "options": {"plugin.library.paths": "/tmp/x.so"}}, "options", "cannot be set"),
    (["kafka://my-cluster/t"], "body", "JSON object"),
])
def test_errors_name_the_wrong_part(body: object, field: str, says: str) -> None:
    err = error(body)
    assert err.field == field
    assert says in str(err)
    assert str(err).startswith(f"{field}: ")


def test_unknown_cluster_lists_the_configured_ones() -> None:
    err = error({"source": "kafka://nope/t", "sink": "service://Counter/add"})
    assert "my-cluster" in err.message and "--kafka-cluster" in err.message


def test_auto_commit_options_are_ignored() -> None:
    sub = create({"source": "kafka://my-cluster/t", "sink": "service://Counter/add",
                  "options": {"enable.auto.commit": "true", "session.timeout.ms": "6000"}})
    assert "enable.auto.commit" not in sub.options and sub.options["session.timeout.ms"] == "6000"


def test_cluster_flag_and_table_forms() -> None:
    cluster = KafkaCluster.parse("local=127.0.0.1:9092, broker2:9093")
    assert cluster.name == "local" and cluster.bootstrap_servers == ("127.0.0.1:9092", "broker2:9093")
    assert cluster.client_config() == {"bootstrap.servers": "127.0.0.1:9092,broker2:9093"}
    table = KafkaCluster.from_config("prod", {"brokers": ["SASL_SSL://k1:9094"], "sasl.mechanism": "PLAIN",
                                              "socket.keepalive.enable": True, "fetch.wait.max.ms": 50})
    assert table.properties == {"sasl.mechanism": "PLAIN", "socket.keepalive.enable": "true",
                                "fetch.wait.max.ms": "50"}
    clusters = parse_clusters(["a=h:1", "b=h:2,h:3"], {"b": {"security.protocol": "SSL"}})
    assert sorted(clusters) == ["a", "b"] and clusters["b"].properties == {"security.protocol": "SSL"}
    for bad in ("nohosts", "=h:1", "a=", "a=h:1:2", "bad name=h:1"):
        with pytest.raises(SubscriptionError) as info:
            KafkaCluster.parse(bad)
        assert info.value.field == "cluster"
    with pytest.raises(SubscriptionError, match="twice"):
        parse_clusters(["a=h:1", "a=h:2"])
    with pytest.raises(SubscriptionError, match="unconfigured"):
        parse_clusters(["a=h:1"], {"b": {"x": "y"}})


def test_subscription_ids() -> None:
    ids = {new_subscription_id() for _ in range(200)}
    assert len(ids) == 200
    for sub_id in ids:
        assert parse_subscription_id(sub_id) == sub_id and len(sub_id) == 27
    for bad in ("sub_", "sub_2" + "a" * 22, "dp_1" + "a" * 22, "sub_1" + "a" * 21, "sub_1" + "-" * 22, None,
                "sub_1" + "Z" * 22):
        with pytest.raises(SubscriptionError) as info:
            parse_subscription_id(bad)
        assert info.value.field == "id"


def test_filter_like_restate() -> None:
    a = create({"source": "kafka://my-cluster/a", "sink": "service://Counter/add"})
    b = create({"source": "kafka://my-cluster/b", "sink": "service://Greeter/greet"})
    assert filter_subscriptions([a, b], sink="service://Greeter/greet") == [b]
    assert filter_subscriptions([a, b], source="kafka://my-cluster/a") == [a]
    assert filter_subscriptions([a, b]) == [a, b]
    assert filter_subscriptions([a, b], sink="service://Counter/add", source="kafka://my-cluster/b") == []


def test_parsers_without_checks() -> None:
    assert parse_source("kafka://x/y.z-1_2").topic == "y.z-1_2"
    assert parse_sink("service://S/h") == (ServiceSink("S", "h"), None)


def record(key: bytes | None, value: bytes | None = b'{"n": 1}', headers: tuple = ()) -> KafkaRecord:
    return KafkaRecord("sub_1" + "a" * 22, "orders", 3, 17, 1_700_000_000_123, key, value, headers)


def test_record_becomes_an_invocation() -> None:
    rec = record(b"user-1", headers=(("traceparent", b"00-abc"), ("bin", b"\xff"), ("kafka.offset", b"9"),
                                     ("none", None)))
    inv = invocation_for(rec, ServiceSink("Counter", "add"), SinkTarget("object", "exclusive"))
    assert (inv.service, inv.handler, inv.key, inv.input) == ("Counter", "add", "user-1", b'{"n": 1}')
    assert inv.idempotency_key == f"kafka/{rec.subscription_id}/orders/3/17"
    assert inv.headers == {
        "traceparent": "00-abc",
        "kafka.offset": "17",  # a record header cannot forge the metadata
        "kafka.topic": "orders",
        "kafka.partition": "3",
        "kafka.timestamp": "1700000000123",
        "restate.subscription.id": rec.subscription_id,
        "kafka.key": base64.urlsafe_b64encode(b"user-1").decode(),
    }
    service = invocation_for(record(None, None), ServiceSink("Greeter", "greet"), SinkTarget("service"))
    assert service.key is None and service.input == b"" and "kafka.key" not in service.headers


def test_keyless_or_binary_key_to_keyed_sink_is_refused() -> None:
    with pytest.raises(RecordRefused, match="no key"):
        invocation_for(record(None), ServiceSink("Counter", "add"), SinkTarget("object", "exclusive"))
    with pytest.raises(RecordRefused, match="UTF-8"):
        invocation_for(record(b"\xff\xfe"), ServiceSink("Counter", "add"), SinkTarget("workflow", "workflow"))
    # An empty key is a key.
    assert invocation_for(record(b""), ServiceSink("Counter", "add"), SinkTarget("object")).key == ""


def test_no_timestamp_no_header_and_repr_hides_values() -> None:
    rec = KafkaRecord("sub_1" + "a" * 22, "t", 0, 1, None, b"k", b"secret")
    assert "kafka.timestamp" not in restate_headers(rec)
    assert "secret" not in repr(rec)


async def test_invocation_deliver_looks_the_sink_up_per_record() -> None:
    sub = create({"source": "kafka://my-cluster/t", "sink": "service://Counter/add"})
    submitted: list[KafkaInvocation] = []

    async def submit(inv: KafkaInvocation) -> None:
        submitted.append(inv)

    handlers = dict(HANDLERS)
    deliver = invocation_deliver(sub, lambda s, h: handlers.get((s, h)), submit)
    rec = KafkaRecord(sub.id, "t", 0, 5, None, b"k", b"1")
    await deliver(rec)
    assert submitted[0].key == "k" and submitted[0].idempotency_key == f"kafka/{sub.id}/t/0/5"
    with pytest.raises(RecordRefused):
        await deliver(KafkaRecord(sub.id, "t", 0, 6, None, None, b"1"))
    del handlers[("Counter", "add")]
    with pytest.raises(SinkUnavailable):  # retried by the consumer, not skipped
        await deliver(rec)
    assert len(submitted) == 1


def test_unknown_fields_are_ignored_and_shape_errors_are_422_as_on_restate() -> None:
    # restate-server 1.7.12 ignores fields it does not know (measured), and answers 422 to JSON that does not
    # deserialize into a request, 400 to a request it cannot accept.
    sub = create({"source": "kafka://my-cluster/t", "sink": "service://Counter/add", "extra": 1})
    assert sub.to_json()["source"] == "kafka://my-cluster/t"
    assert error(["x"]).status == 422
    assert error({"sink": "service://Counter/add"}).status == 422
    assert error({"source": "kafka:/my-cluster", "sink": "service://Counter/add"}).status == 422
    assert error({"source": "kafka://my-cluster/t", "sink": "service://Counter/add", "options": {"a": 1}}).status == 422
    assert error({"source": "kafka://nowhere/t", "sink": "service://Counter/add"}).status == 400
    assert error({"source": "http://my-cluster/t", "sink": "service://Counter/add"}).status == 400
    assert error({"source": "kafka://my-cluster/t", "sink": "service://Nope/add"}).status == 400
