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
