"""The embedded store: one SQLite file in WAL mode, fsync on every commit unless told otherwise."""

from __future__ import annotations

import itertools
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from durably.server.store.base import INVOCATION_COLUMNS, Batch, Store
from durably.server.store.corruption import WatchedConnection, quick_check
from durably.server.store.datadir import (
    DataDirError,
    DataDirLock,
    missing_message,
    new_database_id,
    read_database_id,
    write_database_id,
)
from durably.server.store.errors import RESTORE_ADVICE, StoreCorrupt, classify
from durably.server.store.listing import SELECT_INVOCATIONS as _SELECT
from durably.server.store.listing import invocation_page, status_term
from durably.server.store.ops import (
    AckOutbox,
    AddCall,
    AddOutbox,
    AddPromise,
    AddWaiter,
    AttemptRecord,
    ClearAllState,
    ClearState,
    DeploymentRecord,
    DropDeployment,
    DropPromises,
    DropSubscription,
    DropWaiters,
    EndAttempt,
    LinkRecords,
    MarkApplied,
    SaveConcurrencyRules,
    SaveDeployment,
    SaveSubscription,
    SetState,
    StartAttempt,
)
from durably.server.store.schema import MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    from collections.abc import Sequence

    from durably.server.store.invocation_query import InvocationFilter

_memory_ids = itertools.count()


# What an invocation is (its target, when it was made, its sequence) never changes after the insert. Leaving
# those columns out of the update matters: SQLite rewrites the entries of every index on a column named in
# SET, changed or not, and the listing indexes are on exactly these columns. The conflict is found on the
# rowid (seq), so an update never looks at the index on the random id.
_IMMUTABLE = frozenset({"id", "service", "handler", "key", "idempotency_key", "created_at", "seq"})
_UPSERT = (
    f"INSERT INTO invocations ({', '.join(INVOCATION_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in INVOCATION_COLUMNS)}) ON CONFLICT(seq) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in INVOCATION_COLUMNS if c not in _IMMUTABLE)
)



def _deployment_params(op: SaveDeployment) -> tuple[Any, ...]:
    d = op.deployment
    return (d.id, d.uri, int(d.use_http_11), json.dumps(d.headers), d.protocol_mode, d.protocol_version,
            json.dumps(d.manifest), d.created_at)


# How each typed batch operation is written: its statement, and how to get its parameters (None: the
# operation's own fields, in order).
_OPS: dict[type, tuple[str, Any]] = {
    # An upsert, not INSERT OR REPLACE: state is a rowid table (schema 10), where REPLACE deletes the row and
    # inserts it again under a new rowid, rewriting its primary-key index entry too; the update rewrites the row
    # only, in place (measured: 15% fewer bytes written and 26% fewer read per commit that overwrites values).
    SetState: ("INSERT INTO state VALUES (?, ?, ?, ?) ON CONFLICT(service, key, name) DO UPDATE SET "
               "value = excluded.value", None),
    ClearState: ("DELETE FROM state WHERE service = ? AND key = ? AND name = ?", None),
    ClearAllState: ("DELETE FROM state WHERE service = ? AND key = ?", None),
    AddPromise: ("INSERT INTO promises VALUES (?, ?, ?, ?, ?, ?)", None),
    DropPromises: ("DELETE FROM promises WHERE service = ? AND key = ?", None),
    AddWaiter: ("INSERT OR REPLACE INTO waiters VALUES (?, ?, ?, ?)", None),
    DropWaiters: ("DELETE FROM waiters WHERE target = ?", None),
    AddCall: ("INSERT OR IGNORE INTO calls VALUES (?, ?)", None),
    SaveDeployment: ("INSERT OR REPLACE INTO deployments VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _deployment_params),
    DropDeployment: ("DELETE FROM deployments WHERE id = ?", None),
    StartAttempt: ("INSERT OR REPLACE INTO attempts (invocation_seq, started_at, attempt) VALUES (?, ?, ?)", None),
    EndAttempt: ("UPDATE attempts SET ended_at = ?, outcome = ?, error = ? WHERE invocation_seq = ? AND "
                 "started_at = ?", None),
    SaveSubscription: ("INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?)",
                       lambda op: (op.id, json.dumps(op.subscription), op.created_at)),
    DropSubscription: ("DELETE FROM subscriptions WHERE id = ?", None),
    AddOutbox: ("INSERT INTO outbox VALUES (?, ?, ?)", None),
    MarkApplied: ("INSERT OR REPLACE INTO inbox_applied VALUES (?, ?)", None),
}
# Operations that write many rows: each of their statements with its rows.
_MANY_OPS: dict[type, tuple[tuple[str, Any], ...]] = {
    SaveConcurrencyRules: (("INSERT OR REPLACE INTO concurrency_rules VALUES (?, ?)", lambda op: op.changes.items()),
                           ("DELETE FROM concurrency_rules WHERE pattern = ?", lambda op: [(p,) for p in op.forget])),
    AckOutbox: (("DELETE FROM outbox WHERE dest = ? AND seq <= ?", lambda op: [op]),
                ("INSERT OR REPLACE INTO outbox_acked VALUES (?, ?)", lambda op: [op])),
}


def _in_wal_mode(path: Path) -> bool:
    """Whether the file's header says WAL mode. A database served by durably always is; a copy written by
    `durably backup` is not (it has no WAL to lose), so it may replace the database of a crashed directory."""
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return True
    return len(header) == 20 and header[18] == 2


log = logging.getLogger("durably.store")

# A start-up check that takes this long is logged (its time grows with the database).
SLOW_CHECK_S = 0.5
# A database (with its WAL) up to this size is checked before the server starts; a larger one in the background,
# health answering 503 meanwhile. quick_check reads every page: 2.3 GB took 1-2 s with the file in the page
# cache but 34-170 s from a cold, busy disk, too long to keep a restarted server down.
SYNC_CHECK_MAX_BYTES = 128 * 1024 * 1024


class SQLiteStore(Store):
    """Durable storage in `<data_dir>/durably.sqlite3`.

    Writes go through one connection owned by the writer thread; reads use a second connection on the
    event loop, which WAL lets proceed while a commit is in flight.
    """

    threaded = True

    def __init__(self, data_dir: str | Path | None, synchronous: str = "FULL") -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "OFF", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL, EXTRA or OFF")
        self._lock = threading.Lock()
        self._corrupt_lock = threading.Lock()
        # The connection of reads that run on worker threads (journal pages, previews), one at a time.
        self._side_lock = threading.Lock()
        self._side_conn: sqlite3.Connection | None = None
        # (COMMITs, seconds spent in them), written by the writer thread as one tuple.
        self.sync_stats: tuple[int, float] = (0, 0.0)
        self._writer_broken = False
        if data_dir is None:
            # A private in-memory database shared by the writer and reader connections.
            self.path = None
            self._uri = f"file:durably-memory-{next(_memory_ids)}?mode=memory&cache=shared"
            self._writer = self._watched(sqlite3.connect(self._uri, uri=True, isolation_level=None,
                                                         check_same_thread=False, factory=WatchedConnection))
            self._migrate()
            self._reader = self._watched(sqlite3.connect(self._uri, uri=True, isolation_level=None,
                                                         check_same_thread=False, factory=WatchedConnection))
            self._reader.execute("PRAGMA read_uncommitted=1")
            return
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / "durably.sqlite3"
        self._synchronous = synchronous.upper()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DataDirError(f"--data-dir {self.data_dir} cannot be created: {e.strerror}") from None
        # Before anything touches the database: a second server must not even open it.
        self._dir_lock: DataDirLock | None = DataDirLock.acquire(self.data_dir)
        try:
            self._open()
        except BaseException:
            writer = getattr(self, "_writer", None)
            if writer is not None:
                writer.close()
            self._dir_lock.release(clean=False)
            self._dir_lock = None
            raise

    def _open(self) -> None:
        recorded = read_database_id(self.data_dir)
        if recorded is not None:
            if not self.path.exists() or self.path.stat().st_size == 0:
                raise DataDirError(missing_message(self.data_dir))
            wal = self.path.with_name(self.path.name + "-wal")
            if self._dir_lock is not None and self._dir_lock.unclean_pid and not wal.exists() \
                    and _in_wal_mode(self.path):
                # After an unclean stop the commits since the last checkpoint live only in the WAL.
                raise DataDirError(
                    f"--data-dir {self.data_dir}: {wal.name} is missing after pid {self._dir_lock.unclean_pid} "
                    "stopped uncleanly; recent commits were in it. Put it back, or restore a backup made with "
                    "`durably backup`")
        try:
            self._writer = self._connect(check_same_thread=False)
            found = self._stored_database_id(self._writer)
            size = sum(p.stat().st_size for p in (self.path, self.path.with_name(self.path.name + "-wal"))
                       if p.exists())
            background = size > SYNC_CHECK_MAX_BYTES
            checked = time.perf_counter()
            damage = None if background else quick_check(self._writer)
        except (sqlite3.DatabaseError, StoreCorrupt) as e:
            why = f"it is corrupt ({e.finding})" if isinstance(e, StoreCorrupt) else f"({e})"
            raise DataDirError(f"--data-dir {self.data_dir}: {self.path.name} cannot be opened as a SQLite "
                               f"database, {why}; {RESTORE_ADVICE}") from None
        if damage is not None:
            raise DataDirError(f"--data-dir {self.data_dir}: {self.path.name} is corrupt (PRAGMA quick_check: "
                               f"{damage}); {RESTORE_ADVICE}")
        took = time.perf_counter() - checked
        if took >= SLOW_CHECK_S:
            log.info("checked %s for damage in %.1f s (PRAGMA quick_check)", self.path, took)
        if recorded is not None and found != recorded:
            if found is None:
                raise DataDirError(missing_message(self.data_dir))
            raise DataDirError(f"--data-dir {self.data_dir} held database {recorded}, but {self.path.name} is "
                               f"database {found} from another data directory; refusing to start on it")
        try:
            self._writer.execute(f"PRAGMA synchronous={self._synchronous}")
            self._migrate()
            if found is None:
                # A new database (or one from before ids existed): name it, inside and outside.
                found = new_database_id()
                self._writer.execute("INSERT OR REPLACE INTO meta VALUES ('database_id', ?)", (found,))
            if recorded is None:
                write_database_id(self.data_dir, found)
        except (sqlite3.Error, OSError) as e:
            raise DataDirError(f"--data-dir {self.data_dir} cannot be written: {classify(e)}") from None
        self.database_id = found
        self._reader = self._connect(check_same_thread=False)
        if background:
            self._start_background_check(size)

    def _start_background_check(self, size: int) -> None:
        self.checking = (f"the store is checking {self.path.name} ({size / (1 << 20):.0f} MiB) for damage (PRAGMA "
                         "quick_check, started with the server); health answers 503 until it is done")
        log.warning("%s is %.0f MiB: checking it for damage in the background (PRAGMA quick_check); health answers "
                    "503 until it is done", self.path, size / (1 << 20))
        threading.Thread(target=self._background_check, name="durably-check", daemon=True).start()

    def _background_check(self) -> None:
        assert self.path is not None
        started = time.perf_counter()
        damage: str | None = None
        finished = False
        try:
            conn = self._watched(sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True,
                                                 check_same_thread=False, factory=WatchedConnection))
            self._check_conn: sqlite3.Connection | None = conn
            try:
                damage = quick_check(conn)
                finished = True
            finally:
                self._check_conn = None
                conn.close()
        except StoreCorrupt:
            pass  # already reported through the watched connection
        except sqlite3.Error as e:  # interrupted by close(), or the file went away: nothing learnt
            log.warning("the background check of %s did not finish: %s", self.path, e)
        finally:
            self.checking = None
        if damage is not None:
            self._found_corrupt(StoreCorrupt(f"PRAGMA quick_check: {damage}"))
        elif finished and self.corruption is None:
            log.info("checked %s for damage in %.1f s: none found", self.path, time.perf_counter() - started)

    @staticmethod
    def _stored_database_id(conn: sqlite3.Connection) -> str | None:
        has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        if not has_meta:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'database_id'").fetchone()
        return row[0] if row else None

    def _watched(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        assert isinstance(conn, WatchedConnection)
        conn.on_corrupt = self._found_corrupt
        return conn

    def _found_corrupt(self, err: StoreCorrupt) -> None:
        # Any thread (the writer's too). Reported once: every later read of the damaged page fails the same way.
        with self._corrupt_lock:
            if self.corruption is not None:
                return
            self.corruption = str(err)
        log.critical("the database %s is corrupt: %s", self.path or "(in memory)", err)
        if self.on_corrupt is not None:
            self.on_corrupt(self.corruption)

    def _connect(self, check_same_thread: bool) -> sqlite3.Connection:
        conn = self._watched(sqlite3.connect(self.path, isolation_level=None,  # type: ignore[arg-type]
                                             check_same_thread=check_same_thread, factory=WatchedConnection))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _migrate(self) -> None:
        conn = self._writer
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise DataDirError(
                f"{self.path} was written by a newer durably (schema {version}, this one knows {SCHEMA_VERSION}); "
                "upgrade durably or use another --data-dir")
        if version > 7 and not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'invocations_open'").fetchone():
            # Made by a development build in which 7 was a reserved placeholder: apply 7 now.
            conn.executescript("BEGIN IMMEDIATE;" + MIGRATIONS[6] + "COMMIT;")
        for target in range(version, SCHEMA_VERSION):
            started = time.perf_counter()
            if version:  # an existing database: rewriting a large table takes a while, say so
                log.warning("migrating %s from schema %d to %d", self.path or "the store", target, target + 1)
            # One script per step so the DDL and the version bump commit together.
            conn.executescript(
                "BEGIN IMMEDIATE;" + MIGRATIONS[target]
                + f"INSERT OR REPLACE INTO meta VALUES ('schema_version', '{target + 1}'); COMMIT;"
            )
            if version:
                log.warning("migrated %s to schema %d in %.1f s", self.path or "the store", target + 1,
                            time.perf_counter() - started)

    def commit(self, batch: Batch) -> None:
        """Write the batch in one transaction."""
        with self._lock:
            if self._writer_broken:
                self._replace_writer()
            c = self._writer
            # One plain cursor for the whole transaction (it only writes, so no fetch needs watching): a
            # cursor per statement cost about 1 us each, several times per commit. A corrupt file is still
            # reported, below.
            cur = c.cursor()
            try:
                cur.execute("BEGIN")
                if batch.journal:
                    cur.executemany("INSERT INTO journal VALUES (?, ?, ?, ?, ?)", batch.journal)
                if batch.invocations:
                    cur.executemany(_UPSERT, batch.invocations.values())
                if batch.timers_add:
                    cur.executemany("INSERT OR REPLACE INTO timers (fire_at, invocation_id, kind, completion_id) "
                                    "VALUES (?, ?, ?, ?)", batch.timers_add)
                if batch.timers_del:
                    cur.executemany("DELETE FROM timers WHERE invocation_id = ? AND kind = ? AND completion_id = ?",
                                    batch.timers_del)
                for op in batch.ops:
                    many = _MANY_OPS.get(type(op))
                    if many is not None:
                        for sql, rows in many:
                            cur.executemany(sql, rows(op))
                        continue
                    sql, params = _OPS[type(op)]
                    cur.execute(sql, op if params is None else params(op))
                if batch.deleted:
                    ids = [(i,) for i in batch.deleted]
                    cur.executemany("DELETE FROM waiters WHERE invocation_id = ? OR target = ?",
                                    [(i, i) for i in batch.deleted])
                    cur.executemany("DELETE FROM timers WHERE invocation_id = ?", ids)
                    cur.executemany("DELETE FROM journal WHERE invocation_seq = "
                                    "(SELECT seq FROM invocations WHERE id = ?)", ids)
                    cur.executemany("DELETE FROM attempts WHERE invocation_seq = "
                                    "(SELECT seq FROM invocations WHERE id = ?)", ids)
                    cur.executemany("DELETE FROM invocations WHERE id = ?", ids)
                    cur.executemany("DELETE FROM calls WHERE callee = ?", ids)
                synced = time.perf_counter()
                cur.execute("COMMIT")
                # COMMIT is where SQLite writes the WAL frames and fsyncs: /metrics shows its time.
                self.sync_stats = (self.sync_stats[0] + 1, self.sync_stats[1] + time.perf_counter() - synced)
            except BaseException as e:
                # SQLite has already rolled back after some errors (disk full): a second ROLLBACK would
                # replace the real cause with "cannot rollback - no transaction is active".
                if c.in_transaction:
                    try:
                        c.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                # A transaction that would not roll back leaves the connection unusable: the next commit
                # starts on a fresh one (closing this one discards the transaction).
                self._writer_broken = c.in_transaction
                if isinstance(e, sqlite3.DatabaseError):
                    err = c.report(e)  # a damaged file: StoreCorrupt, told to the store's owner
                    if err is not e:
                        raise err from e
                raise

    def load_invocation(self, invocation_id: str) -> tuple[Any, ...] | None:
        """One row or None."""
        return self._reader.execute(_SELECT + " WHERE id = ?", (invocation_id,)).fetchone()

    def load_journal(self, invocation_id: str) -> list[tuple[int, bytes]]:
        """The journal, in order."""
        return self._reader.execute(
            "SELECT type, entry FROM journal WHERE invocation_seq = (SELECT seq FROM invocations WHERE id = ?) "
            "ORDER BY idx", (invocation_id,)
        ).fetchall()

    def unfinished(self, statuses: Sequence[str] | None = None, keyed: bool = False) -> list[tuple[Any, ...]]:
        """Rows not completed (of `statuses` only, if given; with a key only, if `keyed`), from the indexes of
        unfinished rows: completed ones are never read."""
        if keyed:
            sql, params = _SELECT + " WHERE key != '' AND status != 'completed'", ()
        else:
            sql, params = _SELECT + " WHERE status != 'completed'", ()
        if statuses is not None:
            sql += f" AND status IN ({', '.join('?' for _ in statuses)})"
            params = tuple(statuses)
        return self._reader.execute(sql, params).fetchall()

    def list_invocations(self, status: str | None = None, limit: int = 100) -> list[tuple[Any, ...]]:
        """Newest first."""
        if status is None:
            return self._reader.execute(_SELECT + " ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return self._reader.execute(
            _SELECT + f" WHERE {status_term(status)} ORDER BY seq DESC LIMIT ?", (status, limit)
        ).fetchall()

    def expired(self, now_ms: int, limit: int = 1000) -> list[str]:
        """Completed rows past retention."""
        rows = self._reader.execute(
            "SELECT id FROM invocations WHERE status = 'completed' AND retention_until <= ? LIMIT ?",
            (now_ms, limit),
        ).fetchall()
        return [r[0] for r in rows]

    def load_timers(self, until_ms: int) -> list[tuple[int, str, str, int]]:
        """Timers due by `until_ms`, earliest first."""
        return self._reader.execute(
            "SELECT fire_at, invocation_id, kind, completion_id FROM timers WHERE fire_at <= ? ORDER BY fire_at",
            (until_ms,),
        ).fetchall()

    def journal_rows(self, invocation_id: str, offset: int = 0,
                     limit: int | None = None) -> list[tuple[int, int, bytes, int]]:
        """The journal with positions and times: (index, type id, encoded entry, appended at ms)."""
        return self._reader.execute(
            "SELECT idx, type, entry, appended_at FROM journal WHERE invocation_seq = "
            "(SELECT seq FROM invocations WHERE id = ?) AND idx >= ? ORDER BY idx LIMIT ?",
            (invocation_id, offset, -1 if limit is None else limit)
        ).fetchall()

    def max_seq(self) -> int:
        """The highest invocation sequence number in use."""
        row = self._reader.execute("SELECT max(seq) FROM invocations").fetchone()
        return row[0] or 0

    def load_state(self, service: str, key: str) -> dict[bytes, bytes]:
        """All state of one key."""
        rows = self._reader.execute("SELECT name, value FROM state WHERE service = ? AND key = ?", (service, key))
        return {bytes(n): bytes(v) for n, v in rows}

    def state_value(self, service: str, key: str, name: bytes) -> bytes | None:
        """One state value, from the state table's primary key."""
        row = self._reader.execute("SELECT value FROM state WHERE service = ? AND key = ? AND name = ?",
                                   (service, key, name)).fetchone()
        return None if row is None else bytes(row[0])

    def state_names(self, service: str, key: str) -> list[bytes]:
        """Every state name of a key, in order, without the values."""
        rows = self._reader.execute("SELECT name FROM state WHERE service = ? AND key = ? ORDER BY name",
                                    (service, key))
        return [bytes(r[0]) for r in rows]

    def state_page(self, service: str, key: str, after: bytes | None, limit: int,
                   max_bytes: int) -> list[tuple[bytes, bytes]]:
        """A page of a key's state in name order; rows are fetched only until the page is full."""
        if after is None:
            cur = self._reader.execute("SELECT name, value FROM state WHERE service = ? AND key = ? ORDER BY name "
                                       "LIMIT ?", (service, key, limit))
        else:
            cur = self._reader.execute("SELECT name, value FROM state WHERE service = ? AND key = ? AND name > ? "
                                       "ORDER BY name LIMIT ?", (service, key, after, limit))
        out: list[tuple[bytes, bytes]] = []
        size = 0
        for name, value in cur:
            if out and size >= max_bytes:
                break
            out.append((bytes(name), bytes(value)))
            size += len(name) + len(value)
        cur.close()
        return out

    def load_promise(self, service: str, key: str, name: str) -> tuple[bytes | None, int | None, str | None] | None:
        """A completed promise, or None."""
        row = self._reader.execute(
            "SELECT value, failure_code, failure_message FROM promises WHERE service = ? AND key = ? AND name = ?",
            (service, key, name),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def load_waiters(self) -> list[tuple[str, str, int, int]]:
        """Every registered waiter."""
        return self._reader.execute("SELECT target, invocation_id, completion_id, type FROM waiters").fetchall()

    def waiters_of(self, target: str) -> list[tuple[str, int, int]]:
        """Who waits on one target, from the waiters table's primary key."""
        return self._reader.execute("SELECT invocation_id, completion_id, type FROM waiters WHERE target = ? "
                                    "ORDER BY invocation_id, completion_id", (target,)).fetchall()

    def load_deployments(self) -> list[DeploymentRecord]:
        """Every registered deployment, oldest first."""
        rows = self._reader.execute(
            "SELECT id, uri, use_http_11, headers, protocol_mode, protocol_version, manifest, created_at "
            "FROM deployments ORDER BY created_at").fetchall()
        return [DeploymentRecord(id=r[0], uri=r[1], use_http_11=bool(r[2]), headers=json.loads(r[3]),
                                 protocol_mode=r[4], protocol_version=r[5], manifest=json.loads(r[6]),
                                 created_at=r[7]) for r in rows]

    def load_concurrency_rules(self) -> dict[str, int | None]:
        """The concurrency rules changed over the admin API; {} if none."""
        return dict(self._reader.execute("SELECT pattern, concurrency FROM concurrency_rules").fetchall())

    def load_subscriptions(self) -> list[dict[str, Any]]:
        """Every Kafka subscription's JSON form, oldest first."""
        rows = self._reader.execute("SELECT subscription FROM subscriptions ORDER BY created_at, id").fetchall()
        return [json.loads(r[0]) for r in rows]

    def load_links(self) -> LinkRecords:
        """The messages for other partitions not yet acknowledged, the last seq used, the seqs applied here."""
        r = self._reader
        outbox = r.execute("SELECT dest, seq, message FROM outbox ORDER BY seq").fetchall()
        acked = r.execute("SELECT max(seq) FROM outbox_acked").fetchone()[0] or 0
        applied = dict(r.execute("SELECT source, seq FROM inbox_applied").fetchall())
        return LinkRecords(outbox, max([acked] + [row[1] for row in outbox]), applied)

    # ---- operator queries (admin API, UI, metrics) ----

    def invocation_page(self, flt: InvocationFilter, limit: int,
                        before: tuple[int, int] | None = None) -> list[tuple[Any, ...]]:
        """A page newest first, by keyset on the creation sequence (see listing.py)."""
        return invocation_page(self._reader, flt, limit, before)

    def count_journal(self, invocation_id: str) -> int:
        """Journal entries of one invocation (a range of the journal's primary key)."""
        return self._reader.execute("SELECT count(*) FROM journal WHERE invocation_seq = "
                                    "(SELECT seq FROM invocations WHERE id = ?)", (invocation_id,)).fetchone()[0]

    def caller_of(self, invocation_id: str) -> str | None:
        """The caller recorded in the calls table."""
        row = self._reader.execute("SELECT caller FROM calls WHERE callee = ?", (invocation_id,)).fetchone()
        return None if row is None else row[0]

    def state_keys(self, service: str, after: str, limit: int) -> list[str]:
        """Keys with state, from the state table's primary key."""
        rows = self._reader.execute("SELECT DISTINCT key FROM state WHERE service = ? AND key > ? ORDER BY key "
                                    "LIMIT ?", (service, after, limit))
        return [r[0] for r in rows]

    def count_by_status(self, statuses: Sequence[str]) -> dict[str, int]:
        """Counts from the index of unfinished rows; completed ones from the retention index."""
        open_ = [s for s in statuses if s != "completed"]
        out: dict[str, int] = {}
        if open_:
            rows = self._reader.execute(f"SELECT status, count(*) FROM invocations WHERE status != 'completed' AND "
                                        f"status IN ({', '.join('?' for _ in open_)}) GROUP BY status", tuple(open_))
            out.update(rows.fetchall())
        if "completed" in statuses:
            n = self._reader.execute("SELECT count(*) FROM invocations INDEXED BY invocations_retention "
                                     "WHERE status = 'completed'").fetchone()[0]
            if n:
                out["completed"] = n
        return out

    def count_timers(self) -> int:
        """Pending timers."""
        return self._reader.execute("SELECT count(*) FROM timers").fetchone()[0]

    # ---- reads for worker threads: the admin API and the UI read journals off the event loop ----

    def _side(self) -> sqlite3.Connection:
        if self._side_conn is None:
            if self.path is None:
                conn = sqlite3.connect(self._uri, uri=True, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA read_uncommitted=1")
            else:
                conn = self._connect(check_same_thread=False)
            self._side_conn = conn
        return self._side_conn

    def journal_sizes(self, invocation_id: str, offset: int = 0,
                      limit: int | None = None) -> list[tuple[int, int, int, int]]:
        """(index, type id, stored size, appended at ms) from `offset`; `length()` of a blob reads no blob."""
        with self._side_lock:
            return self._side().execute(
                "SELECT idx, type, length(entry), appended_at FROM journal WHERE invocation_seq = "
                "(SELECT seq FROM invocations WHERE id = ?) AND idx >= ? ORDER BY idx LIMIT ?",
                (invocation_id, offset, -1 if limit is None else limit)).fetchall()

    def journal_length(self, invocation_id: str) -> int:
        """Entries in the journal, counted in its primary key's index (small records, no entry is read); it
        runs on a worker thread all the same, like the other reads of a journal that may be long."""
        with self._side_lock:
            return self._side().execute("SELECT count(*) FROM journal WHERE invocation_seq = "
                                        "(SELECT seq FROM invocations WHERE id = ?)", (invocation_id,)).fetchone()[0]

    def journal_previews(self, invocation_id: str, first: int, last: int,
                         cap: int) -> list[tuple[int, int, bytes, int, int]]:
        """Entries `first`..`last` with each encoded entry cut to `cap` bytes."""
        with self._side_lock:
            return self._side().execute(
                "SELECT idx, type, CASE WHEN length(entry) > ?1 THEN substr(entry, 1, ?1) ELSE entry END, "
                "appended_at, length(entry) FROM journal WHERE invocation_seq = "
                "(SELECT seq FROM invocations WHERE id = ?2) AND idx BETWEEN ?3 AND ?4 ORDER BY idx",
                (cap, invocation_id, first, last)).fetchall()

    def invocation_preview(self, invocation_id: str, cap: int) -> tuple[tuple[Any, ...], int] | None:
        """One row with its output cut to `cap` bytes, and the output's stored size."""
        cols = ["CASE WHEN length(output) > ?1 THEN substr(output, 1, ?1) ELSE output END" if c == "output" else c
                for c in INVOCATION_COLUMNS]
        with self._side_lock:
            row = self._side().execute(f"SELECT {', '.join(cols)}, length(output) FROM invocations WHERE id = ?2",
                                       (cap, invocation_id)).fetchone()
        if row is None:
            return None
        return row[:-1], row[-1] or 0

    def journal_entry(self, invocation_id: str, index: int) -> tuple[int, int, bytes, int] | None:
        """One whole entry."""
        with self._side_lock:
            return self._side().execute(
                "SELECT idx, type, entry, appended_at FROM journal WHERE invocation_seq = "
                "(SELECT seq FROM invocations WHERE id = ?) AND idx = ?", (invocation_id, index)).fetchone()

    def attempt_history(self, invocation_id: str, limit: int = 10_000) -> list[AttemptRecord]:
        """The attempts, first first."""
        with self._side_lock:
            rows = self._side().execute(
                "SELECT started_at, attempt, ended_at, outcome, error FROM attempts WHERE invocation_seq = "
                "(SELECT seq FROM invocations WHERE id = ?) ORDER BY started_at, attempt LIMIT ?",
                (invocation_id, limit)).fetchall()
        return [AttemptRecord(*r) for r in rows]

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Raw read-only SQL on this SQLite database, for tests and diagnostics; not part of `Store`."""
        return self._reader.execute(sql, params).fetchall()

    def reopen_writer(self) -> None:
        """Replace the writing connection (after an I/O error SQLite may keep refusing on the old one)."""
        if self.path is None:
            return
        with self._lock:
            self._replace_writer()

    def _replace_writer(self) -> None:
        try:
            self._writer.close()
        except sqlite3.Error:
            pass
        self._writer_broken = True  # until the new connection is open
        self._writer = self._connect(check_same_thread=False)
        self._writer.execute(f"PRAGMA synchronous={self._synchronous}")
        self._writer_broken = False

    def close(self) -> None:
        """Close both connections and give up the data directory."""
        check = getattr(self, "_check_conn", None)
        if check is not None:
            check.interrupt()  # a background check still running stops here; it is no reason to wait
        with self._lock:
            self._writer.close()
        with self._side_lock:
            if self._side_conn is not None:
                self._side_conn.close()
                self._side_conn = None
        lock = getattr(self, "_dir_lock", None)
        if lock is not None:
            # Before the last connection closes: SQLite then checkpoints and removes the WAL, and a kill
            # between the two must not look like a WAL lost after a crash.
            lock.mark_clean()
        self._reader.close()
        if lock is not None:
            self._dir_lock = None
            lock.release(clean=True)
