"""The SQLite schema of the embedded store: its tables, as the migrations that build them one version at a time.

A data directory records its schema version in the `meta` table; `SQLiteStore` runs the migrations it lacks, each
in one transaction with its version bump, when it opens the directory. A newer version than this code knows is
refused. The SQL is plain so an operator can read it (and query the tables with `sqlite3`).
"""

SCHEMA_VERSION = 10

# Each entry migrates the schema from version i to i + 1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE invocations (
        id TEXT PRIMARY KEY,            -- inv_1...
        service TEXT NOT NULL,
        handler TEXT NOT NULL,
        key TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,           -- scheduled, inboxed, invoked, suspended, backing-off, paused, completed
        idempotency_key TEXT,
        created_at INTEGER NOT NULL,    -- ms since the epoch, like every time column here
        modified_at INTEGER NOT NULL,
        execution_time INTEGER,         -- when a delayed send may start
        attempts INTEGER NOT NULL DEFAULT 0,
        retry_count INTEGER NOT NULL DEFAULT 0,  -- failed attempts since the last journal append
        last_entry_at INTEGER,
        next_retry_at INTEGER,
        last_error TEXT,                -- JSON {"code", "message"} of the last failed attempt
        journal_length INTEGER NOT NULL DEFAULT 0,  -- as of the last status change
        waiting TEXT,                   -- JSON list of completion/signal handles a suspension waits for
        output BLOB,
        failure_code INTEGER,
        failure_message TEXT,
        failure_metadata TEXT,          -- JSON object
        completed_at INTEGER,
        retention_until INTEGER,
        inbox_seq INTEGER,              -- arrival order of an inboxed exclusive call
        seq INTEGER NOT NULL UNIQUE     -- creation order; the journal is keyed by it
    ) WITHOUT ROWID;
    CREATE INDEX invocations_status ON invocations(status, created_at);
    CREATE INDEX invocations_retention ON invocations(retention_until) WHERE status = 'completed';
    CREATE INDEX invocations_inbox ON invocations(inbox_seq) WHERE status = 'inboxed';
    -- Keyed by the invocation's creation sequence, not its random id, so the entries of invocations
    -- running at the same time sit together at the end of the tree and a commit touches few pages.
    CREATE TABLE journal (
        invocation_seq INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        type INTEGER NOT NULL,          -- protocol message type id (0x0411 run, 0x8011 run completion, ...)
        entry BLOB NOT NULL,            -- the protobuf-encoded command or notification
        appended_at INTEGER NOT NULL,
        PRIMARY KEY (invocation_seq, idx)
    ) WITHOUT ROWID;
    CREATE TABLE timers (
        invocation_id TEXT NOT NULL,
        kind TEXT NOT NULL,             -- sleep (a ctx.sleep) or start (a delayed send)
        completion_id INTEGER NOT NULL, -- the sleep's completion id; 0 for start
        fire_at INTEGER NOT NULL,       -- ms since the epoch
        PRIMARY KEY (invocation_id, kind, completion_id)
    ) WITHOUT ROWID;
    CREATE INDEX timers_fire_at ON timers(fire_at);
    CREATE TABLE state (
        service TEXT NOT NULL,
        key TEXT NOT NULL,
        name BLOB NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (service, key, name)
    ) WITHOUT ROWID;
    CREATE TABLE promises (
        service TEXT NOT NULL,
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        value BLOB,                     -- set when resolved
        failure_code INTEGER,           -- set when rejected
        failure_message TEXT,
        PRIMARY KEY (service, key, name)
    ) WITHOUT ROWID;
    CREATE TABLE waiters (
        target TEXT NOT NULL,           -- an invocation id, or 'promise:<service>/<key>/<name>'
        invocation_id TEXT NOT NULL,    -- who waits
        completion_id INTEGER NOT NULL, -- the completion id to answer on
        type INTEGER NOT NULL,          -- the notification type to answer with (0x800D call, 0x8012 attach, ...)
        PRIMARY KEY (target, invocation_id, completion_id)
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE deployments (
        id TEXT PRIMARY KEY,            -- dp_...
        uri TEXT NOT NULL,
        use_http_11 INTEGER NOT NULL,
        headers TEXT NOT NULL,          -- JSON object of additional headers
        protocol_mode TEXT NOT NULL,    -- BIDI_STREAM or REQUEST_RESPONSE
        protocol_version INTEGER NOT NULL,
        manifest TEXT NOT NULL,         -- the discovery manifest, JSON
        created_at INTEGER NOT NULL
    );
    """,
    """
    -- Who called (or sent to) an invocation: the web UI links a callee to its caller.
    CREATE TABLE calls (
        callee TEXT PRIMARY KEY,        -- the invocation called
        caller TEXT NOT NULL            -- the invocation whose Call or OneWayCall created it
    ) WITHOUT ROWID;
    -- Listing pages newest first, by service or over everything, without a scan (the UI and GET /invocations).
    CREATE INDEX invocations_created ON invocations(created_at);
    CREATE INDEX invocations_service ON invocations(service, created_at);
    CREATE INDEX invocations_key ON invocations(service, key, created_at) WHERE key != '';
    """,
    """
    -- The concurrency rules changed over the admin API, one row each (they were one JSON meta row, rewritten
    -- whole on every change: quadratic in a batch).
    CREATE TABLE concurrency_rules (
        pattern TEXT PRIMARY KEY,
        concurrency INTEGER             -- NULL: deleted
    ) WITHOUT ROWID;
    INSERT INTO concurrency_rules
        SELECT key, value FROM json_each((SELECT value FROM meta WHERE key = 'concurrency_rules'));
    DELETE FROM meta WHERE key = 'concurrency_rules';
    """,
    """
    -- The attempt history the UI's timeline draws: one row per attempt, inserted when it starts and
    -- updated when it ends. An attempt whose ended_at stays NULL while a later one exists was cut off by a
    -- crash or kill of the server.
    CREATE TABLE attempts (
        invocation_seq INTEGER NOT NULL,
        started_at INTEGER NOT NULL,    -- ms since the epoch
        attempt INTEGER NOT NULL,       -- the attempt number (1 after a restart by the operator)
        ended_at INTEGER,
        outcome TEXT,                   -- completed, suspended, failed, aborted
        error TEXT,                     -- JSON {"code", "message"} of a failed attempt
        PRIMARY KEY (invocation_seq, started_at, attempt)
    ) WITHOUT ROWID;
    """,
    """
    -- Kafka subscriptions (POST /subscriptions): each consumer is started again from here at startup.
    CREATE TABLE subscriptions (
        id TEXT PRIMARY KEY,            -- sub_1...
        subscription TEXT NOT NULL,     -- JSON {"id", "source", "sink", "options"}, Restate's shape
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    """
    -- Fewer pages per commit (issue 21). The invocations table is keyed by its creation sequence (the rowid), so
    -- new rows are appended at the end of the tree and the rows of invocations running at the same time share
    -- pages, where the random id put every insert and every status change on a page of its own. The id keeps a
    -- unique index, written once. Listings page in creation order (the rowid, free) instead of by an index on
    -- created_at; indexes on (service), (service, key) and (status) carry the rowid, so they are in creation
    -- order within each value too. Only what a query needs is indexed, and only the rows it needs:
    --   invocations_id         load by id; the journal, attempts and the UI find an invocation's seq through it
    --   invocations_open       unfinished rows by status (recovery, listings by status, /metrics); a completed
    --                          row leaves it, so a short invocation written completed never enters it
    --   invocations_retention  completed rows by retention (purge; counting completed rows once)
    --   invocations_service    listing by service
    --   invocations_key        listing by service and key (keyed rows only)
    --   invocations_held       unfinished keyed rows: the key locks recovery rebuilds, without reading every row
    -- Dropped: the seq UNIQUE index (the rowid now), (status, created_at) for completed rows, (created_at) and the
    -- inbox index no query used. Columns that never change come first and the output, the only large one, last.
    CREATE TABLE invocations_v7 (
        seq INTEGER PRIMARY KEY,        -- creation order; the journal and attempts are keyed by it
        id TEXT NOT NULL,               -- inv_1...
        service TEXT NOT NULL,
        handler TEXT NOT NULL,
        key TEXT NOT NULL DEFAULT '',
        idempotency_key TEXT,
        created_at INTEGER NOT NULL,    -- ms since the epoch, like every time column here
        status TEXT NOT NULL,           -- scheduled, inboxed, invoked, suspended, backing-off, paused, completed
        modified_at INTEGER NOT NULL,
        execution_time INTEGER,         -- when a delayed send may start
        attempts INTEGER NOT NULL DEFAULT 0,
        retry_count INTEGER NOT NULL DEFAULT 0,  -- failed attempts since the last journal append
        last_entry_at INTEGER,
        next_retry_at INTEGER,
        last_error TEXT,                -- JSON {"code", "message"} of the last failed attempt
        journal_length INTEGER NOT NULL DEFAULT 0,  -- as of the last status change
        waiting TEXT,                   -- JSON list of completion/signal handles a suspension waits for
        failure_code INTEGER,
        failure_message TEXT,
        failure_metadata TEXT,          -- JSON object
        completed_at INTEGER,
        retention_until INTEGER,
        inbox_seq INTEGER,              -- arrival order of an inboxed exclusive call
        output BLOB
    );
    INSERT INTO invocations_v7 (seq, id, service, handler, key, idempotency_key, created_at, status, modified_at,
                                execution_time, attempts, retry_count, last_entry_at, next_retry_at, last_error,
                                journal_length, waiting, failure_code, failure_message, failure_metadata,
                                completed_at, retention_until, inbox_seq, output)
        SELECT seq, id, service, handler, key, idempotency_key, created_at, status, modified_at, execution_time,
               attempts, retry_count, last_entry_at, next_retry_at, last_error, journal_length, waiting,
               failure_code, failure_message, failure_metadata, completed_at, retention_until, inbox_seq, output
        FROM invocations ORDER BY seq;
    DROP TABLE invocations;
    ALTER TABLE invocations_v7 RENAME TO invocations;
    CREATE UNIQUE INDEX invocations_id ON invocations(id);
    CREATE INDEX invocations_open ON invocations(status) WHERE status != 'completed';
    CREATE INDEX invocations_retention ON invocations(retention_until) WHERE status = 'completed';
    CREATE INDEX invocations_service ON invocations(service);
    CREATE INDEX invocations_key ON invocations(service, key) WHERE key != '';
    CREATE INDEX invocations_held ON invocations(service, key) WHERE key != '' AND status != 'completed';
    """,
    """
    -- Across partitions (durably serve --partitions N; server/engine/crossing/). Each row of outbox is a
    -- message for partition dest, committed with the journal entry (or completion) it comes from and deleted
    -- once dest acknowledged it; outbox_acked keeps the last acknowledged seq per destination, so the sequence
    -- goes on after a restart with an empty outbox; inbox_applied keeps, per source partition, the seq of the
    -- last message applied here, committed with its effect (a re-delivered one is acknowledged, not applied).
    CREATE TABLE outbox (
        dest INTEGER NOT NULL,          -- the partition it goes to
        seq INTEGER NOT NULL,           -- this partition's message sequence (increasing over all destinations)
        message BLOB NOT NULL,          -- JSON, see server/engine/crossing/outbox.py
        PRIMARY KEY (dest, seq)
    ) WITHOUT ROWID;
    CREATE TABLE outbox_acked (
        dest INTEGER PRIMARY KEY,
        seq INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE inbox_applied (
        source INTEGER PRIMARY KEY,     -- the partition that sent
        seq INTEGER NOT NULL            -- the last of its messages applied here
    ) WITHOUT ROWID;
    """,
    """
    -- The journal becomes a rowid table (issue 21). SQLite compares the records of a WITHOUT ROWID table whole:
    -- an entry too large for its page (over about 1 KB, e.g. a 100 KB step result) is read back from its
    -- overflow pages for every comparison that meets it, and such entries sit in the tree's interior pages too.
    -- Once a data dir held many large entries, every journal insert of any size copied hundreds of KB on the
    -- writer thread to find its place (small appends measured 7-9 times slower, and the writer became the
    -- bottleneck of a fan-out of sleeps run after a 100 KB workload). Now rows are placed by their rowid (an
    -- integer, appended) and the primary key is a separate index of small records (seq, idx, rowid).
    CREATE TABLE journal_v9 (
        invocation_seq INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        type INTEGER NOT NULL,          -- protocol message type id (0x0411 run, 0x8011 run completion, ...)
        entry BLOB NOT NULL,            -- the protobuf-encoded command or notification
        appended_at INTEGER NOT NULL,
        PRIMARY KEY (invocation_seq, idx)
    );
    INSERT INTO journal_v9 (invocation_seq, idx, type, entry, appended_at)
        SELECT invocation_seq, idx, type, entry, appended_at FROM journal ORDER BY invocation_seq, idx;
    DROP TABLE journal;
    ALTER TABLE journal_v9 RENAME TO journal;
    """,
    """
    -- State, promises and the outbox become rowid tables too, for the reason the journal did in schema 9: their
    -- values can be large (an agent's chat history kept as one state value of 100 KB, a 100 KB promise value, a
    -- message carrying 100 KB of call parameters to a partition that is down), and in a WITHOUT ROWID table every
    -- insert, lookup and delete of any key read such rows back whole from their overflow pages while descending
    -- the tree (50 small state writes and reads after a restart read 38 MB with 200 values of 100 KB stored, 0.4 MB
    -- with none; now 1.0 MB and 0.6 MB: tests/test_store_large_values.py). Now rows are placed by their rowid and
    -- each primary key is a separate unique index of small records (the key columns and the rowid): same columns,
    -- same key, same order of a key's rows. Rows are copied in key order.
    CREATE TABLE state_v10 (
        service TEXT NOT NULL,
        key TEXT NOT NULL,
        name BLOB NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (service, key, name)
    );
    INSERT INTO state_v10 (service, key, name, value)
        SELECT service, key, name, value FROM state ORDER BY service, key, name;
    DROP TABLE state;
    ALTER TABLE state_v10 RENAME TO state;
    CREATE TABLE promises_v10 (
        service TEXT NOT NULL,
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        value BLOB,                     -- set when resolved
        failure_code INTEGER,           -- set when rejected
        failure_message TEXT,
        PRIMARY KEY (service, key, name)
    );
    INSERT INTO promises_v10 (service, key, name, value, failure_code, failure_message)
        SELECT service, key, name, value, failure_code, failure_message FROM promises ORDER BY service, key, name;
    DROP TABLE promises;
    ALTER TABLE promises_v10 RENAME TO promises;
    CREATE TABLE outbox_v10 (
        dest INTEGER NOT NULL,          -- the partition it goes to
        seq INTEGER NOT NULL,           -- this partition's message sequence (increasing over all destinations)
        message BLOB NOT NULL,          -- JSON, see server/engine/crossing/outbox.py
        PRIMARY KEY (dest, seq)
    );
    INSERT INTO outbox_v10 (dest, seq, message) SELECT dest, seq, message FROM outbox ORDER BY dest, seq;
    DROP TABLE outbox;
    ALTER TABLE outbox_v10 RENAME TO outbox;
    """,
]
