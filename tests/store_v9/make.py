"""Makes the schema-9 stores next to this file (`p0.sql`, `p1.sql`: SQL dumps of the databases of two partitions):
run once with durably at schema 9 (main before schema 10). The test rebuilds the data directories from the dumps.

    PYTHONPATH=/path/to/durably-at-v9/src .venv/bin/python tests/store_v9/make.py

It runs the app in `v9_app.py` on two partitions, each on its SQLite data directory: chats with an agent key in
each partition (its history one state value over a page, its turns a small one), a workflow whose promise was
resolved with a value over a page and one whose promise was rejected, and a call to an agent key of partition 1
made while partition 1 was down (the call's message stays in partition 0's outbox). Then it stops the engines (a
clean close folds the WAL into the database), dumps each database as SQL text and writes the keys and ids to
`made.json`.
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

from v9_app import PARTITIONS, Link, app, key_in  # noqa: E402

from durably.server.engine.engine import Engine, EngineOptions  # noqa: E402
from durably.server.partitions.map import PartitionMap  # noqa: E402
from durably.server.store.schema import SCHEMA_VERSION  # noqa: E402
from durably.server.store.sqlite import SQLiteStore  # noqa: E402

TEXT = 800  # characters per chat line: two make a history of 1.6 KB, more than a page's cell holds


async def invoke(engine: Engine, target: str, arg: object, key: str = "") -> str:
    service, handler = target.split("/")
    h = engine.handler(service, handler)
    assert h is not None
    _, inv_id, _ = engine.invoke(h, json.dumps(arg).encode(), [], key=key)
    return inv_id


async def result(engine: Engine, inv_id: str) -> object:
    outcome = await asyncio.wait_for(engine.wait_outcome(inv_id), 10)
    assert outcome is not None
    if outcome.failure_code is not None:
        return [outcome.failure_code, outcome.failure_message]
    return json.loads(outcome.value) if outcome.value else None


async def main() -> None:
    assert SCHEMA_VERSION == 9, f"run with durably at schema 9 (this one is at {SCHEMA_VERSION})"
    root = Path(tempfile.mkdtemp())
    link = Link()
    engines = {}
    for i in range(PARTITIONS):
        engine = Engine(app, SQLiteStore(root / f"p{i}"), EngineOptions(partitions=PartitionMap(PARTITIONS, i)))
        await engine.start()
        engine.attach_peers(link)
        engines[i] = link.engines[i] = engine
    made: dict[str, object] = {"agents": [key_in(0, "agent"), key_in(1, "agent")],
                               "flows": [key_in(0, "flow"), key_in(1, "flow")], "text": TEXT}
    for i, key in enumerate(made["agents"]):  # type: ignore[arg-type]
        for line in "ab":
            assert await result(engines[i], await invoke(engines[i], "Agent/chat", line * TEXT, key)) == \
                "ab".index(line) + 1
    approved, declined = made["flows"]  # type: ignore[misc]
    run0 = await invoke(engines[0], "Flow/run", None, approved)
    assert await result(engines[0], await invoke(engines[0], "Flow/approve", "y" * 2 * TEXT, approved)) == "ok"
    assert await result(engines[0], run0) == "approved: " + "y" * 2 * TEXT
    run1 = await invoke(engines[1], "Flow/run", None, declined)
    assert await result(engines[1], await invoke(engines[1], "Flow/decline", "over budget", declined)) == "ok"
    assert await result(engines[1], run1) == [409, "over budget"]
    link.down.add(1)
    callee = key_in(1, "callee")
    ask = await invoke(engines[0], "Caller/ask", {"key": callee, "text": "q" * 2 * TEXT})
    for _ in range(1000):
        if engines[0].store.query("SELECT count(*) FROM outbox") == [(1,)]:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the call never reached the outbox")
    made.update(callee=callee, ask=ask)
    for i in range(PARTITIONS):
        await engines[i].stop()
        conn = sqlite3.connect(root / f"p{i}" / "durably.sqlite3")
        (HERE / f"p{i}.sql").write_text("\n".join(conn.iterdump()) + "\n")
        conn.close()
    shutil.rmtree(root)
    (HERE / "made.json").write_text(json.dumps(made, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
