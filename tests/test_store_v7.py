"""Schema 7: a data directory written at schema 6 is migrated and served, and a restart reads only the
invocations it must (suspended ones stay in the store until something wakes them)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import durably
from durably.server.engine.invocation import COMPLETED, INBOXED, SUSPENDED
from durably.server.store.base import COL
from durably.server.store.invocation_query import InvocationFilter, cursor_of, parse_cursor
from durably.server.store.schema import SCHEMA_VERSION
from durably.server.store.sqlite import SQLiteStore
from durably.testing import TestRuntime

V6 = Path(__file__).resolve().parent / "store_v6"


def _load_v6_app() -> durably.App:
    # Under a name of its own and without touching sys.path: other tests import modules called `app`.
    spec = importlib.util.spec_from_file_location("durably_tests_store_v6_app", V6 / "v6_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


v6_app = _load_v6_app()


async def wait_for(check: Any, what: str, within: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        got = check()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def status_of(store: Any, inv_id: str) -> str | None:
    row = store.load_invocation(inv_id)
    return None if row is None else row[COL["status"]]


def v6_data_directory(data: Path) -> None:
    """The schema-6 data directory `store_v6/make.py` made, rebuilt from its SQL dump (`v6.sql`)."""
    data.mkdir(parents=True)
    conn = sqlite3.connect(data / "durably.sqlite3")
    try:
        conn.executescript((V6 / "v6.sql").read_text())
        database_id = conn.execute("SELECT value FROM meta WHERE key = 'database_id'").fetchone()[0]
    finally:
        conn.close()
    (data / "durably.id").write_text(json.dumps({"database_id": database_id, "note": "durably.sqlite3 in this "
                                                 "directory must hold the same id; see `durably backup`"}))


async def test_a_schema_6_data_directory_is_migrated_and_served(tmp_path: Path) -> None:
    data = tmp_path / "data"
    v6_data_directory(data)
    made = json.loads((V6 / "ids.json").read_text())
    ids, awakeables = made["invocations"], made["awakeables"]
    async with TestRuntime(v6_app, "sqlite", data_dir=data) as rt:
        store = rt.store
        assert isinstance(store, SQLiteStore)
        assert store.query("SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
        # Everything written at schema 6 is there: rows, journals, state, attempts.
        assert await rt.attach(ids["echo"], "Keep/echo") == "hello"
        assert store.load_state("Park", "k1") == {b"value": b"5"}
        assert status_of(store, ids["wait"]) == SUSPENDED
        assert [t for t, _ in store.load_journal(ids["wait"])][:1] == [0x0400]  # the input command first
        assert len(store.attempt_history(ids["echo"])) == 1
        rows = store.invocation_page(InvocationFilter(), 10)
        assert [r[COL["seq"]] for r in rows] == [4, 3, 2, 1]
        # The suspended `hold` still holds its key: a new call of that key waits behind it.
        add_id = await rt.send("Park/k2/add", 1)
        await rt.settle()
        assert status_of(store, add_id) == INBOXED
        # Resolving the awakeables made at schema 6 wakes their invocations, and the key passes on.
        assert rt.engine is not None
        assert rt.engine.complete_awakeable(awakeables["w1"], b'"up"', None)
        assert rt.engine.complete_awakeable(awakeables["hold:k2"], b'"go"', None)
        assert await rt.attach(ids["wait"], "Keep/wait") == "woke up"
        assert await rt.attach(ids["hold"], "Park/k2/hold") == "held go"
        assert await rt.attach(add_id, "Park/k2/add") == 1
        assert await rt.call("Park/k1/add", 2) == 7  # state kept across the migration
        assert await rt.call("Keep/echo", "new") == "new"


async def test_listing_pages_and_time_ranges_in_creation_order(tmp_path: Path) -> None:
    async with TestRuntime(v6_app, "sqlite", data_dir=tmp_path / "data", virtual_clock=True) as rt:
        made = []
        for i in range(30):
            made.append(await rt.send("Keep/echo", str(i)))
            await rt.advance(timedelta(milliseconds=10))
        await rt.settle()
        store = rt.store
        assert store is not None
        # Pages newest first, each strictly older than the cursor of the page before.
        seen: list[str] = []
        before = None
        while True:
            rows = store.invocation_page(InvocationFilter(status=COMPLETED), 7, before)
            if not rows:
                break
            seen += [r[COL["id"]] for r in rows]
            before = parse_cursor(cursor_of(rows[-1]))
        assert seen == made[::-1]
        # A time range: exactly the rows created inside it, whatever the page.
        created = {r[COL["id"]]: r[COL["created_at"]] for r in store.invocation_page(InvocationFilter(), 100)}
        since, until = created[made[10]], created[made[19]]
        rows = store.invocation_page(InvocationFilter(since_ms=since, until_ms=until), 100)
        assert [r[COL["id"]] for r in rows] == made[10:20][::-1]
        rows = store.invocation_page(InvocationFilter(since_ms=since, until_ms=until), 4,
                                     parse_cursor(cursor_of(rows[3])))
        assert [r[COL["id"]] for r in rows] == made[12:16][::-1]
        assert store.invocation_page(InvocationFilter(since_ms=created[made[-1]] + 1), 10) == []


waiting = durably.Service("Waiting")
published: dict[str, str] = {}


@waiting.handler()
async def park(ctx: durably.Context, name: str) -> str:
    aw_id, fut = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", lambda: published.__setitem__(name, aw_id))
    return "woke " + await fut


class CountingStore(SQLiteStore):
    """Counts the invocation rows recovery reads through `unfinished`."""

    unfinished_rows = 0

    def unfinished(self, statuses: Any = None, keyed: bool = False) -> list[tuple[Any, ...]]:
        rows = super().unfinished(statuses, keyed)
        self.unfinished_rows += len(rows)
        return rows


async def test_a_restart_does_not_read_suspended_invocations(tmp_path: Path) -> None:
    app = durably.app(services=[waiting])
    data = tmp_path / "data"
    async with TestRuntime(app, "sqlite", data_dir=data, always_replay=True) as rt:
        ids = [await rt.send("Waiting/park", f"n{i}") for i in range(200)]
        await rt.settle()
        assert rt.store is not None
        assert rt.store.count_by_status(["suspended"]) == {"suspended": 200}
    store = CountingStore(data)
    async with TestRuntime(app, store) as rt:
        assert rt.engine is not None
        # Nothing of the 200 suspended invocations was read, loaded into the table or locked.
        assert store.unfinished_rows == 0
        assert rt.engine.admission.recovered_rows == 0
        assert rt.engine.table.count() == 0
        assert len(rt.engine.keys) == 0
        # Each one is loaded when something wakes it: its awakeable, resolved after the restart.
        assert rt.engine.complete_awakeable(published["n7"], b'"seven"', None)
        assert await rt.attach(ids[7], "Waiting/park") == "woke seven"
        await wait_for(lambda: rt.engine is not None and rt.engine.table.count() == 0, "the table to empty")
        assert store.count_by_status(["suspended", "completed"]) == {"suspended": 199, "completed": 1}


@waiting.handler()
async def ask(ctx: durably.Context, name: str) -> str:
    """Calls `park` and waits for its answer (a waiter on the callee, kept in the store)."""
    return "asked: " + await ctx.service_call(park, name)


class WaiterCountingStore(CountingStore):
    """Also counts the waiters read."""

    waiter_rows = 0

    def load_waiters(self) -> list[tuple[str, str, int, int]]:
        rows = super().load_waiters()
        self.waiter_rows += len(rows)
        return rows


async def test_a_restart_does_not_read_the_waiters_of_suspended_callers(tmp_path: Path) -> None:
    app = durably.app(services=[waiting])
    data = tmp_path / "data"
    async with TestRuntime(app, "sqlite", data_dir=data, always_replay=True) as rt:
        callers = [await rt.send("Waiting/ask", f"a{i}") for i in range(50)]
        await rt.settle()
        assert rt.store is not None
        assert rt.store.count_by_status(["suspended"]) == {"suspended": 100}
        assert len(rt.store.load_waiters()) == 50
    store = WaiterCountingStore(data)
    async with TestRuntime(app, store) as rt:
        assert rt.engine is not None
        assert store.unfinished_rows == 0
        assert store.waiter_rows == 0
        # The callee woken after the restart answers its caller, whose waiter was only in the store.
        assert rt.engine.complete_awakeable(published["a3"], b'"three"', None)
        assert await rt.attach(callers[3], "Waiting/ask") == "asked: woke three"
        assert len(store.load_waiters()) == 49


def test_a_directory_made_while_7_was_a_placeholder_gets_7(tmp_path: Path) -> None:
    from durably.server.store.schema import MIGRATIONS

    conn = sqlite3.connect(tmp_path / "durably.sqlite3", isolation_level=None)
    conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);" + "".join(MIGRATIONS[:6])
                       + "".join(MIGRATIONS[7:]) + f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');")
    conn.execute("INSERT INTO invocations (id, service, handler, status, created_at, modified_at, seq) VALUES "
                 "('inv_1', 'S', 'h', 'suspended', 1, 1, 1)")
    conn.close()
    store = SQLiteStore(tmp_path)
    assert store.query("SELECT name FROM sqlite_master WHERE name = 'invocations_open'") == [("invocations_open",)]
    assert [r[COL["id"]] for r in store.unfinished(["suspended"])] == ["inv_1"]
    store.close()
