"""The SQLite store's schema: created, migrated forward on start, refused if newer than this durably."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from durably.server.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore


def test_fresh_store_has_the_current_schema(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    assert store.query("SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert store.query("SELECT count(*) FROM deployments") == [(0,)]
    store.close()


def test_an_older_store_is_migrated_on_start(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "durably.sqlite3", isolation_level=None)
    conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);" + MIGRATIONS[0]
                       + "INSERT INTO meta VALUES ('schema_version', '1');")
    conn.execute("INSERT INTO state VALUES ('S', 'k', x'61', x'31')")
    conn.close()
    store = SQLiteStore(tmp_path)
    assert store.query("SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert store.query("SELECT count(*) FROM deployments") == [(0,)]
    assert store.load_state("S", "k") == {b"a": b"1"}  # data kept
    store.close()


def test_a_newer_store_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    SQLiteStore(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "durably.sqlite3", isolation_level=None)
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(RuntimeError, match="newer durably"):
        SQLiteStore(tmp_path)


def test_a_damaged_file_met_by_a_commit_is_raised_as_corruption_and_reported(tmp_path: Path) -> None:
    from durably.server.store.base import Batch
    from durably.server.store.errors import StoreCorrupt

    store = SQLiteStore(tmp_path)
    told: list[str] = []
    store.on_corrupt = told.append
    writer = store._writer  # the commit's connection: its statements fail as on a damaged page

    class DamagedCursor:
        def execute(self, sql: str, *args: object) -> None:
            if sql != "BEGIN":
                raise sqlite3.DatabaseError("database disk image is malformed")

        executemany = execute

    writer.cursor = lambda *args: DamagedCursor()  # type: ignore[method-assign]
    batch = Batch()
    batch.journal.append((1, 0, 0x0400, b"x", 0))
    with pytest.raises(StoreCorrupt, match="malformed"):
        store.commit(batch)
    assert store.corruption is not None and told == [store.corruption]
    del writer.cursor
    store.close()
