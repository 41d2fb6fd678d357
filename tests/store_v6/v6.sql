BEGIN TRANSACTION;
CREATE TABLE attempts (
        invocation_seq INTEGER NOT NULL,
        started_at INTEGER NOT NULL,    -- ms since the epoch
        attempt INTEGER NOT NULL,       -- the attempt number (1 after a restart by the operator)
        ended_at INTEGER,
        outcome TEXT,                   -- completed, suspended, failed, aborted
        error TEXT,                     -- JSON {"code", "message"} of a failed attempt
        PRIMARY KEY (invocation_seq, started_at, attempt)
    ) WITHOUT ROWID;
INSERT INTO "attempts" VALUES(1,1796551293911,1,1796551293911,'completed',NULL);
INSERT INTO "attempts" VALUES(2,1796551293916,1,1796551293916,'completed',NULL);
INSERT INTO "attempts" VALUES(3,1796551293926,1,1796551293933,'suspended',NULL);
INSERT INTO "attempts" VALUES(3,1796551293937,2,1796551293937,'suspended',NULL);
INSERT INTO "attempts" VALUES(4,1796551293931,1,1796551293934,'suspended',NULL);
INSERT INTO "attempts" VALUES(4,1796551293943,2,1796551293943,'suspended',NULL);
CREATE TABLE calls (
        callee TEXT PRIMARY KEY,        -- the invocation called
        caller TEXT NOT NULL            -- the invocation whose Call or OneWayCall created it
    ) WITHOUT ROWID;
CREATE TABLE concurrency_rules (
        pattern TEXT PRIMARY KEY,
        concurrency INTEGER             -- NULL: deleted
    ) WITHOUT ROWID;
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
INSERT INTO "invocations" VALUES('inv_16eUfvikvW3n0BeneNilDcwBAXdTrpf3wZ','Park','hold','k2','suspended',NULL,1796551293931,1796551293943,NULL,2,0,1796551293933,NULL,NULL,3,'[4294967297, 4294967313]',NULL,NULL,NULL,NULL,NULL,NULL,NULL,4);
INSERT INTO "invocations" VALUES('inv_16gBZbCLxBAd2AtzLgLfr9r8Mppk79zgQh','Keep','wait','','suspended',NULL,1796551293926,1796551293937,NULL,2,0,1796551293933,NULL,NULL,3,'[4294967297, 4294967313]',NULL,NULL,NULL,NULL,NULL,NULL,NULL,3);
INSERT INTO "invocations" VALUES('inv_1bGZIu9UkeZI3wEqktHkbKm8WYugG0VCXD','Park','add','k1','completed',NULL,1796551293916,1796551293916,NULL,1,0,1796551293916,NULL,NULL,4,NULL,X'35',NULL,NULL,NULL,1796551293916,1796637693916,NULL,2);
INSERT INTO "invocations" VALUES('inv_1hO0nKPW6xGB1c75nMSsfGeHh8YqU3pYtz','Keep','echo','','completed',NULL,1796551293911,1796551293911,NULL,1,0,1796551293911,NULL,NULL,2,NULL,X'2268656C6C6F22',NULL,NULL,NULL,1796551293911,1796637693911,NULL,1);
CREATE TABLE journal (
        invocation_seq INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        type INTEGER NOT NULL,          -- protocol message type id (0x0411 run, 0x8011 run completion, ...)
        entry BLOB NOT NULL,            -- the protobuf-encoded command or notification
        appended_at INTEGER NOT NULL,
        PRIMARY KEY (invocation_seq, idx)
    ) WITHOUT ROWID;
INSERT INTO "journal" VALUES(1,0,1024,X'72090A072268656C6C6F22',1796551293911);
INSERT INTO "journal" VALUES(1,1,1025,X'72090A072268656C6C6F22',1796551293911);
INSERT INTO "journal" VALUES(2,0,1024,X'72030A0135',1796551293916);
INSERT INTO "journal" VALUES(2,1,1031,X'0A0576616C75656A00',1796551293916);
INSERT INTO "journal" VALUES(2,2,1027,X'0A0576616C75651A030A0135',1796551293916);
INSERT INTO "journal" VALUES(2,3,1025,X'72030A0135',1796551293916);
INSERT INTO "journal" VALUES(3,0,1024,X'72060A0422773122',1796551293926);
INSERT INTO "journal" VALUES(3,1,1041,X'580162077075626C697368',1796551293926);
INSERT INTO "journal" VALUES(3,2,32785,X'08012A00',1796551293933);
INSERT INTO "journal" VALUES(4,0,1024,X'7200',1796551293931);
INSERT INTO "journal" VALUES(4,1,1041,X'580162077075626C697368',1796551293933);
INSERT INTO "journal" VALUES(4,2,32785,X'08012A00',1796551293933);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "meta" VALUES('schema_version','6');
INSERT INTO "meta" VALUES('database_id','6ab6dc4cc5c04dffa4690c63645337de');
CREATE TABLE promises (
        service TEXT NOT NULL,
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        value BLOB,                     -- set when resolved
        failure_code INTEGER,           -- set when rejected
        failure_message TEXT,
        PRIMARY KEY (service, key, name)
    ) WITHOUT ROWID;
CREATE TABLE state (
        service TEXT NOT NULL,
        key TEXT NOT NULL,
        name BLOB NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (service, key, name)
    ) WITHOUT ROWID;
INSERT INTO "state" VALUES('Park','k1',X'76616C7565',X'35');
CREATE TABLE subscriptions (
        id TEXT PRIMARY KEY,            -- sub_1...
        subscription TEXT NOT NULL,     -- JSON {"id", "source", "sink", "options"}, Restate's shape
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
CREATE TABLE timers (
        invocation_id TEXT NOT NULL,
        kind TEXT NOT NULL,             -- sleep (a ctx.sleep) or start (a delayed send)
        completion_id INTEGER NOT NULL, -- the sleep's completion id; 0 for start
        fire_at INTEGER NOT NULL,       -- ms since the epoch
        PRIMARY KEY (invocation_id, kind, completion_id)
    ) WITHOUT ROWID;
CREATE TABLE waiters (
        target TEXT NOT NULL,           -- an invocation id, or 'promise:<service>/<key>/<name>'
        invocation_id TEXT NOT NULL,    -- who waits
        completion_id INTEGER NOT NULL, -- the completion id to answer on
        type INTEGER NOT NULL,          -- the notification type to answer with (0x800D call, 0x8012 attach, ...)
        PRIMARY KEY (target, invocation_id, completion_id)
    ) WITHOUT ROWID;
CREATE INDEX invocations_status ON invocations(status, created_at);
CREATE INDEX invocations_retention ON invocations(retention_until) WHERE status = 'completed';
CREATE INDEX invocations_inbox ON invocations(inbox_seq) WHERE status = 'inboxed';
CREATE INDEX timers_fire_at ON timers(fire_at);
CREATE INDEX invocations_created ON invocations(created_at);
CREATE INDEX invocations_service ON invocations(service, created_at);
CREATE INDEX invocations_key ON invocations(service, key, created_at) WHERE key != '';
COMMIT;
