"""The admin API's `/subscriptions` without a broker: what a server without the Kafka client, or without the
cluster a request names, answers (the broker-backed behaviour is in tests/kafka/)."""

from __future__ import annotations

import httpx

import durably
from durably.server.http.admin import Admin
from durably.server.ingest import KafkaCluster
from durably.server.process import kafka as kafka_wiring
from durably.server.process.kafka import KafkaSubscriptions

counter = durably.VirtualObject("Counter")


@counter.handler()
async def add(ctx: durably.ObjectContext, delta: int) -> int:
    return delta


APP = durably.app(services=[counter])
BODY = {"source": "kafka://local/orders", "sink": "service://Counter/add"}


def _admin(rt, clusters) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    subs = KafkaSubscriptions(rt.engine, clusters)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine, subscriptions=subs)),
                             base_url="http://admin")


async def test_without_the_kafka_extra_creating_names_the_extra(runtime, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(kafka_wiring, "kafka_available", lambda: False)
    async with runtime(APP) as rt, _admin(rt, {"local": KafkaCluster("local", ("127.0.0.1:1",))}) as admin:
        r = await admin.post("/subscriptions", json=BODY)
        assert r.status_code == 400
        assert "durably[kafka]" in r.json()["message"]
        assert (await admin.get("/subscriptions")).json() == {"subscriptions": []}


async def test_an_embedding_without_clusters_says_how_to_configure_one(runtime) -> None:  # type: ignore[no-untyped-def]
    async with runtime(APP) as rt:
        admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine)), base_url="http://admin")
        async with admin:
            r = await admin.post("/v2/subscriptions", json=BODY)
            assert r.status_code == 400
            assert r.json()["message"].startswith("bad subscription source: unknown Kafka cluster 'local'")
            assert "--kafka-cluster" in r.json()["message"]
            assert (await admin.put("/subscriptions")).status_code == 405


async def test_a_record_submitted_again_finds_its_first_invocation(runtime) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from durably.server.ingest import KafkaInvocation

    record = KafkaInvocation(service="Counter", handler="add", key="k", input=b"5",
                             headers={"kafka.offset": "7"}, idempotency_key="kafka/sub_1x/orders/0/7")
    async with runtime(APP) as rt:
        subs = KafkaSubscriptions(rt.engine, {})
        await subs.submit("sub_1x", record)
        await subs.submit("sub_1x", record)  # after a crash, the record is read again
        await subs.submit("sub_1x", replace(record, headers={"kafka.offset": "8"},
                                            idempotency_key="kafka/sub_1x/orders/0/8"))
        assert subs.created == {"sub_1x": 2} and subs.deduplicated == {"sub_1x": 1}
        rows = [r for r in rt.store.list_invocations(limit=10) if r[1] == "Counter"]
        assert len(rows) == 2


async def test_a_draining_server_lists_stored_subscriptions_but_consumes_nothing(runtime) -> None:  # type: ignore[no-untyped-def]
    from durably.server.store.ops import SaveSubscription

    stored = {"id": "sub_11ebUK57ZEQZwTfYwxbc2jL", "source": "kafka://local/orders", "sink": "service://Counter/add",
              "options": {"group.id": "sub_11ebUK57ZEQZwTfYwxbc2jL"}}
    async with runtime(APP) as rt:
        rt.engine.table.write(SaveSubscription(stored["id"], stored, 1))
        await rt.engine.barrier()
        subs = KafkaSubscriptions(rt.engine, {"local": KafkaCluster("local", ("127.0.0.1:1",))})
        await subs.start(consume=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine, subscriptions=subs)),
                                     base_url="http://admin") as admin:
            assert (await admin.get("/subscriptions")).json() == {"subscriptions": [stored]}
            assert (await admin.get(f"/subscriptions/{stored['id']}")).json() == stored
        assert subs.stats()[stored["id"]].state == "stopped"
        await subs.close()
