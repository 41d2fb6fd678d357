"""Makes the schema-6 store next to this file (`v6.sql`, a SQL dump of its database): run once with durably at
schema 6 (main before v7). The test rebuilds a data directory from the dump.

    PYTHONPATH=/path/to/durably-at-v6/src .venv/bin/python tests/store_v6/make.py

It runs the app in `v6_app.py` on a SQLite data directory: a completed echo, a counter key with state, an
invocation suspended on an awakeable, and one suspended while it holds its key's lock; then it stops the engine
(a clean close folds the WAL into the database), dumps the database as SQL text and writes the awakeable ids to
`ids.json`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from v6_app import app, published  # noqa: E402

from durably.server.store.schema import SCHEMA_VERSION  # noqa: E402
from durably.testing import TestRuntime  # noqa: E402


async def main() -> None:
    assert SCHEMA_VERSION == 6, f"run with durably at schema 6 (this one is at {SCHEMA_VERSION})"
    data = Path(tempfile.mkdtemp()) / "data"
    rt = TestRuntime(app, "sqlite", data_dir=data, always_replay=True)
    await rt.start()
    ids = {"echo": await rt.send("Keep/echo", "hello")}
    await rt.call("Park/k1/add", 5)
    ids["wait"] = await rt.send("Keep/wait", "w1")
    ids["hold"] = await rt.send("Park/k2/hold")
    await rt.settle()
    await rt.attach(ids["echo"])
    await rt.stop()
    conn = sqlite3.connect(data / "durably.sqlite3")
    (HERE / "v6.sql").write_text("\n".join(conn.iterdump()) + "\n")
    conn.close()
    shutil.rmtree(data.parent)
    (HERE / "ids.json").write_text(json.dumps({"invocations": ids, "awakeables": published}, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
