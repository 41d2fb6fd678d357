"""`durably backup`: a consistent copy of a data directory, taken while a server may be writing to it.

Copying `durably.sqlite3` alone is not a backup: recent commits live in `durably.sqlite3-wal` until a
checkpoint moves them, and a copy made mid-commit can be torn. SQLite's online backup API reads one
snapshot (the database with its WAL) under a read transaction, so writers keep going meanwhile.
The copy is a complete data directory (database plus its `durably.id`): start a server on it to restore.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from durably.server.store.datadir import (
    ID_FILE,
    DataDirError,
    DataDirInUse,
    DataDirLock,
    read_database_id,
    write_database_id,
)

DB_FILE = "durably.sqlite3"


@dataclass
class BackupResult:
    """What a backup wrote."""

    path: Path
    database_id: str
    invocations: int
    size_bytes: int


def _source(data_dir: Path) -> tuple[sqlite3.Connection, DataDirLock | None]:
    """A connection to read the snapshot from, and the directory's lock if no server holds it."""
    db = data_dir / DB_FILE
    if not db.exists():
        raise DataDirError(f"--data-dir {data_dir} has no {DB_FILE}: nothing to back up")
    try:
        lock: DataDirLock | None = DataDirLock.acquire(data_dir)
    except DataDirInUse:
        lock = None  # a server is running: read alongside it
    if lock is not None and lock.unclean_pid and not db.with_name(DB_FILE + "-wal").exists() \
            and read_database_id(data_dir) is not None:
        lock.release(clean=False)
        raise DataDirError(f"--data-dir {data_dir}: {DB_FILE}-wal is missing after pid {lock.unclean_pid} stopped "
                           "uncleanly; recent commits were in it, so a backup now would silently lack them")
    # Read-only, so closing it never checkpoints or removes the WAL behind a server's back.
    uri = f"file:{db}?mode=ro" if lock is None else f"file:{db}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as e:
        if lock is not None:
            lock.release(clean=False)
        raise DataDirError(f"--data-dir {data_dir}: {DB_FILE} cannot be read ({e})") from None
    return conn, lock


def backup(data_dir: Path, out: Path) -> BackupResult:
    """Copy the data directory's database into the new directory `out`; raises DataDirError with why not."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataDirError(f"{out} already exists and is not an empty directory; pick a new path for the backup")
    recorded = read_database_id(data_dir)
    src, lock = _source(data_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        target = out / (DB_FILE + ".partial")
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            dst.execute("PRAGMA synchronous=FULL")
            src.backup(dst)  # all pages in one step: one read transaction, one consistent snapshot
            # A self-contained file: no WAL expected beside it, so it may replace a crashed directory's database.
            dst.execute("PRAGMA journal_mode=DELETE")
            row = dst.execute("SELECT value FROM meta WHERE key = 'database_id'").fetchone()
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            invocations = dst.execute("SELECT count(*) FROM invocations").fetchone()[0]
        finally:
            dst.close()
    except sqlite3.Error as e:
        raise DataDirError(f"backup of {data_dir} failed: {e}") from None
    finally:
        if lock is not None:
            lock.mark_clean()  # our connection is the last: closing it checkpoints and removes the WAL
        src.close()
        if lock is not None:
            lock.release(clean=True)
    if check != "ok":
        raise DataDirError(f"backup of {data_dir} failed its integrity check: {check}")
    database_id = row[0] if row else None
    if database_id is None or (recorded is not None and recorded != database_id):
        raise DataDirError(f"--data-dir {data_dir} does not hold a durably database with an id; nothing backed up")
    with open(target, "rb") as f:
        os.fsync(f.fileno())
    final = out / DB_FILE
    os.replace(target, final)
    # The same id as the source: a server started on the copy (the restore) accepts it as this database.
    write_database_id(out, database_id)
    assert (out / ID_FILE).exists()
    return BackupResult(out, database_id, invocations, final.stat().st_size)
