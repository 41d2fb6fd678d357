"""Schema 10: state, promises and the outbox are rowid tables. Data directories written at schema 9 (two partitions
with state, promises and an undelivered message, made by `store_v9/make.py`) are migrated on open and served; and
every statement the store runs on these tables does what it did at schema 9."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from durably.server.engine.engine import Engine, EngineOptions
from durably.server.partitions.map import PartitionMap
from durably.server.store.base import Batch
from durably.server.store.ops import (
    AckOutbox,
    AddOutbox,
    AddPromise,
    ClearAllState,
    ClearState,
    DropPromises,
    SetState,
    StoreOp,
)
from durably.server.store.schema import MIGRATIONS, SCHEMA_VERSION
from durably.server.store.sqlite import SQLiteStore

V9 = Path(__file__).resolve().parent / "store_v9"
TABLES = ("state", "promises", "outbox")


def _load_v9_app() -> Any:
    # Under a name of its own and without touching sys.path: other tests import modules called `app`.
    spec = importlib.util.spec_from_file_location("durably_tests_store_v9_app", V9 / "v9_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


v9 = _load_v9_app()


def v9_data_directory(data: Path, partition: int) -> None:
    """Partition `partition`'s schema-9 data directory `store_v9/make.py` made, rebuilt from its SQL dump."""
    data.mkdir(parents=True)
    conn = sqlite3.connect(data / "durably.sqlite3")
    try:
        conn.executescript((V9 / f"p{partition}.sql").read_text())
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("9",)
        database_id = conn.execute("SELECT value FROM meta WHERE key = 'database_id'").fetchone()[0]
    finally:
        conn.close()
    (data / "durably.id").write_text(json.dumps({"database_id": database_id, "note": "durably.sqlite3 in this "
                                                 "directory must hold the same id; see `durably backup`"}))


def table_sql(store: SQLiteStore) -> dict[str, str]:
    return dict(store.query("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN "
                            "('state', 'promises', 'outbox')"))


async def until(cond: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 10.0
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def call(engine: Engine, target: str, arg: Any, key: str = "") -> Any:
    service, handler = target.split("/")
    h = engine.handler(service, handler)
    assert h is not None
    _, inv_id, _ = engine.invoke(h, json.dumps(arg).encode(), [], key=key)
    return await result(engine, inv_id)


async def result(engine: Engine, inv_id: str) -> Any:
    outcome = await asyncio.wait_for(engine.wait_outcome(inv_id), 10)
    assert outcome is not None, inv_id
    if outcome.failure_code is not None:
        return [outcome.failure_code, outcome.failure_message]
    return json.loads(outcome.value) if outcome.value else None


async def test_schema_9_data_directories_are_migrated_and_served(tmp_path: Path) -> None:
    made = json.loads((V9 / "made.json").read_text())
    text = made["text"]
    (agent0, agent1), (approved, declined) = made["agents"], made["flows"]
    history = ["a" * text, "b" * text]
    stores = []
    for i in range(v9.PARTITIONS):
        v9_data_directory(tmp_path / f"p{i}", i)
        store = SQLiteStore(tmp_path / f"p{i}")
        stores.append(store)
        assert store.query("SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
        assert SCHEMA_VERSION == 10
        # Rowid tables now, each with its primary key (a unique index).
        assert sorted(table_sql(store)) == sorted(TABLES)
        assert not [name for name, sql in table_sql(store).items() if "WITHOUT ROWID" in sql.upper()]
        assert sorted(r[0] for r in store.query("SELECT tbl_name FROM sqlite_master WHERE type = 'index' AND "
                                                "name LIKE 'sqlite_autoindex_%'") if r[0] in TABLES) == \
            sorted(TABLES)
    s0, s1 = stores
    # Everything written at schema 9 is there, through the store's reads.
    for store, key in ((s0, agent0), (s1, agent1)):
        state = store.load_state("Agent", key)
        assert sorted(state) == [b"history", b"turns"] and state[b"turns"] == b"2"
        assert json.loads(state[b"history"]) == history
        assert json.loads(store.state_value("Agent", key, b"history") or b"") == history
        assert store.state_names("Agent", key) == [b"history", b"turns"]
        assert store.state_page("Agent", key, b"history", 10, 1 << 20) == [(b"turns", b"2")]
        assert store.state_keys("Agent", "", 10) == [key]
    value, code, message = s0.load_promise("Flow", approved, "approval") or (None, None, None)
    assert (json.loads(value), code, message) == ("y" * 2 * text, None, None)
    assert s1.load_promise("Flow", declined, "approval") == (None, 409, "over budget")
    links = s0.load_links()
    assert [(dest, seq) for dest, seq, _ in links.outbox] == [(1, 1)] and links.last_seq == 1
    assert json.loads(links.outbox[0][2])["kind"] == "invoke"
    assert s1.load_links().outbox == []

    link = v9.Link()
    engines: dict[int, Engine] = {}
    try:
        for i, store in enumerate(stores):
            engines[i] = link.engines[i] = Engine(v9.app, store,
                                                  EngineOptions(partitions=PartitionMap(v9.PARTITIONS, i)))
            await engines[i].start()
            engines[i].attach_peers(link)
        e0, e1 = engines[0], engines[1]
        # The call left in partition 0's outbox at schema 9 is delivered and answered, then acknowledged.
        assert await result(e0, made["ask"]) == 1
        await until(lambda: s0.load_links().outbox == [], "the call acknowledged")
        assert json.loads(s1.state_value("Agent", made["callee"], b"history") or b"") == ["q" * 2 * text]
        # State: read by the handlers, set again (a value of an existing name), cleared.
        assert await call(e0, "Agent/history", None, agent0) == [2, ["a" * text, "b" * text]]
        assert await call(e0, "Agent/chat", "c" * text, agent0) == 3
        assert await call(e0, "Agent/history", None, agent0) == [3, ["a" * text, "b" * text, "c" * text]]
        assert s0.state_names("Agent", agent0) == [b"history", b"turns"]
        assert await call(e1, "Agent/forget", None, agent1) == "forgotten"
        assert s1.load_state("Agent", agent1) == {}
        assert await call(e1, "Agent/history", None, agent1) == [None, None]
        # Promises: read by the workflows' shared handlers; completed once only.
        assert await call(e0, "Flow/peek", None, approved) == "resolved: " + "y" * 2 * text
        assert await call(e1, "Flow/peek", None, declined) == "rejected: 409 over budget"
        assert await call(e0, "Flow/approve", "again", approved) == [409, "promise 'approval' was already completed"]
        assert await call(e0, "Flow/peek", None, approved) == "resolved: " + "y" * 2 * text
        # A new message goes on from the sequence the migrated outbox had.
        assert await call(e0, "Caller/ask", {"key": made["callee"], "text": "r"}) == 2
        assert s0.load_links().last_seq >= 2
    finally:
        for engine in engines.values():
            await engine.stop()
        for store in stores[len(engines):]:
            store.close()


# ---- the statements: the same outcome as at schema 9 ----

# What main ran on these tables at schema 9 (the same statements but SetState's, which was INSERT OR REPLACE).
SCHEMA_9_SQL = {
    SetState: "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)",
    ClearState: "DELETE FROM state WHERE service = ? AND key = ? AND name = ?",
    ClearAllState: "DELETE FROM state WHERE service = ? AND key = ?",
    AddPromise: "INSERT INTO promises VALUES (?, ?, ?, ?, ?, ?)",
    DropPromises: "DELETE FROM promises WHERE service = ? AND key = ?",
    AddOutbox: "INSERT INTO outbox VALUES (?, ?, ?)",
}


def schema_9_apply(conn: sqlite3.Connection, op: StoreOp) -> None:
    if isinstance(op, AckOutbox):
        conn.execute("DELETE FROM outbox WHERE dest = ? AND seq <= ?", op)
        conn.execute("INSERT OR REPLACE INTO outbox_acked VALUES (?, ?)", op)
    else:
        conn.execute(SCHEMA_9_SQL[type(op)], op)


def contents(conn_or_store: Any) -> dict[str, list[tuple[Any, ...]]]:
    q = conn_or_store.execute if isinstance(conn_or_store, sqlite3.Connection) else conn_or_store.query
    return {"state": list(q("SELECT service, key, name, value FROM state ORDER BY service, key, name")),
            "promises": list(q("SELECT * FROM promises ORDER BY service, key, name")),
            "outbox": list(q("SELECT * FROM outbox ORDER BY dest, seq")),
            "outbox_acked": list(q("SELECT * FROM outbox_acked ORDER BY dest"))}


def ops_sequence() -> list[list[StoreOp]]:
    """Batches that set, overwrite (larger, smaller), clear one, clear all, complete promises, send and
    acknowledge messages, over keys that share prefixes; values from a few bytes to 20 KB."""
    big = b"v" * 20_000
    batches: list[list[StoreOp]] = []
    for k in ("a", "ab", "b"):
        batches.append([SetState("S", k, n, big if n == b"history" else n * 3) for n in (b"history", b"n", b"z")])
        batches.append([SetState("T", k, b"n", b"other service")])
    batches += [
        [SetState("S", "a", b"n", big), SetState("S", "a", b"history", b"short")],  # overwrite: larger, smaller
        [SetState("S", "a", b"n", b"1"), SetState("S", "a", b"n", b"2")],  # twice in one batch: the last wins
        [ClearState("S", "ab", b"history"), ClearState("S", "ab", b"missing")],
        [ClearAllState("S", "b"), SetState("S", "b", b"n", b"after clear")],  # "clear all, then set each"
        [ClearAllState("S", "nobody")],
        [AddPromise("W", k, p, big if p == "big" else b"1", None, None) for k in ("a", "ab") for p in ("big", "p")],
        [AddPromise("W", "b", "p", None, 500, "rejected")],
        [DropPromises("W", "a")],
        [AddOutbox(d, seq, big if seq % 3 == 0 else b"{}") for seq, d in enumerate((1, 2, 1, 2, 1, 1, 2), 1)],
        [AckOutbox(1, 3)],
        [AckOutbox(2, 7), AddOutbox(2, 8, b"{}")],
        [AckOutbox(1, 1)],  # an older ack: nothing left to delete, the acked seq goes back as before
    ]
    return batches


def test_every_statement_on_these_tables_leaves_what_schema_9_left(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "v9.sqlite3", isolation_level=None)
    old.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);" + "".join(MIGRATIONS[:9]))
    store = SQLiteStore(tmp_path / "v10")
    try:
        for batch in ops_sequence():
            old.execute("BEGIN")
            for op in batch:
                schema_9_apply(old, op)
            old.execute("COMMIT")
            store.commit(Batch(ops=list(batch)))
            assert contents(store) == contents(old)
        # A promise completed twice, a message sent twice: refused by the primary key, as before.
        for op in (AddPromise("W", "ab", "p", b"2", None, None), AddOutbox(2, 8, b"{}")):
            with pytest.raises(sqlite3.IntegrityError):
                schema_9_apply(old, op)
            with pytest.raises(sqlite3.IntegrityError):
                store.commit(Batch(ops=[op]))
        assert contents(store) == contents(old)
        # The reads, against what the rows say.
        assert store.load_state("S", "a") == {b"history": b"short", b"n": b"2", b"z": b"zzz"}
        assert store.state_names("S", "ab") == [b"n", b"z"]
        assert store.state_page("S", "a", None, 2, 1 << 20) == [(b"history", b"short"), (b"n", b"2")]
        assert store.state_page("S", "a", b"history", 10, 1) == [(b"n", b"2")]
        assert store.state_keys("S", "", 10) == ["a", "ab", "b"]
        assert store.state_keys("S", "a", 1) == ["ab"]
        assert store.load_promise("W", "ab", "big") == (b"v" * 20_000, None, None)
        assert store.load_promise("W", "a", "p") is None
        assert store.load_promise("W", "b", "p") == (None, 500, "rejected")
        links = store.load_links()
        assert [(d, s) for d, s, _ in links.outbox] == [(1, 5), (1, 6), (2, 8)] and links.last_seq == 8
    finally:
        old.close()
        store.close()
