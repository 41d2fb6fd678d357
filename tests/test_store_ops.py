"""Typed batch operations: each one is written by the store, in order, and read back through typed reads."""

from __future__ import annotations

from pathlib import Path

from durably.server.store import MemoryStore, SQLiteStore
from durably.server.store.base import Batch
from durably.server.store.ops import (
    AddPromise,
    AddWaiter,
    ClearAllState,
    ClearState,
    DeploymentRecord,
    DropDeployment,
    DropPromises,
    DropSubscription,
    DropWaiters,
    SaveConcurrencyRules,
    SaveDeployment,
    SaveSubscription,
    SetState,
)


def test_state_ops_apply_in_order() -> None:
    store = MemoryStore()
    store.commit(Batch(ops=[SetState("S", "k", b"a", b"1"), SetState("S", "k", b"b", b"2"),
                            ClearState("S", "k", b"a")]))
    assert store.load_state("S", "k") == {b"b": b"2"}
    # A replacement: clear everything, then set each entry.
    store.commit(Batch(ops=[ClearAllState("S", "k"), SetState("S", "k", b"c", b"3")]))
    assert store.load_state("S", "k") == {b"c": b"3"}
    store.close()


def test_promises_waiters_deployments_and_rules_round_trip() -> None:
    store = MemoryStore()
    rec = DeploymentRecord(id="dp_1", uri="http://x:9080", use_http_11=True, headers={"a": "b"},
                           protocol_mode="REQUEST_RESPONSE", protocol_version=5, manifest={"services": []},
                           created_at=7)
    store.commit(Batch(ops=[AddPromise("W", "k", "p", None, 409, "no"), AddWaiter("t", "inv_1", 3, 0x800D),
                            SaveDeployment(rec), SaveConcurrencyRules({"Svc": 2, "Other": None})]))
    assert store.load_promise("W", "k", "p") == (None, 409, "no")
    assert store.load_waiters() == [("t", "inv_1", 3, 0x800D)]
    assert store.load_deployments() == [rec]
    assert store.load_concurrency_rules() == {"Svc": 2, "Other": None}
    store.commit(Batch(ops=[DropPromises("W", "k"), DropWaiters("t"), DropDeployment("dp_1")]))
    assert store.load_promise("W", "k", "p") is None
    assert store.load_waiters() == []
    assert store.load_deployments() == []
    store.close()


def test_subscriptions_are_stored_and_come_back_after_reopening(tmp_path: Path) -> None:
    body = {"id": "sub_1abc", "source": "kafka://local/orders", "sink": "service://Orders/process",
            "options": {"group.id": "sub_1abc", "auto.offset.reset": "earliest"}}
    other = dict(body, id="sub_1def", source="kafka://local/other")
    store = SQLiteStore(tmp_path)
    store.commit(Batch(ops=[SaveSubscription("sub_1abc", body, 1), SaveSubscription("sub_1def", other, 2)]))
    store.close()
    store = SQLiteStore(tmp_path)
    assert store.load_subscriptions() == [body, other]
    store.commit(Batch(ops=[DropSubscription("sub_1abc")]))
    store.close()
    store = SQLiteStore(tmp_path)
    assert store.load_subscriptions() == [other]
    store.close()
