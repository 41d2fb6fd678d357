"""Issue 20: one `PUT /limits/rules` with 20,000 rules froze every listener for minutes, because every rule of a
batch re-serialised the whole rule table. A batch now costs in proportion to its size (one store operation per
batch, carrying only the batch's rules), and there is a cap per request (413) and in total (422)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

import durably
from durably.server.engine.flow_control import MAX_RULES_PER_REQUEST, MAX_RULES_TOTAL, ConcurrencyLimiter
from durably.server.http.admin import Admin
from durably.server.store.ops import SaveConcurrencyRules
from durably.testing import TestRuntime

svc = durably.Service("S")


@svc.handler()
async def noop(ctx: durably.Context) -> str:
    return "ok"


APP = durably.app([svc])


def rules(n: int, prefix: str = "t", limit: int = 3) -> list[dict[str, Any]]:
    return [{"pattern": f"{prefix}{i}/*", "limits": {"concurrency": limit}} for i in range(n)]


class Writes:
    """The rule writes the store commits: one list of patterns per SaveConcurrencyRules operation."""

    def __init__(self, rt: TestRuntime) -> None:
        self.ops: list[SaveConcurrencyRules] = []
        store = rt.store
        assert store is not None
        inner = store.commit

        def commit(batch: Any) -> None:
            self.ops.extend(op for op in batch.ops if isinstance(op, SaveConcurrencyRules))
            inner(batch)

        store.commit = commit  # type: ignore[method-assign]

    def rows(self) -> list[int]:
        return [len(op.changes) + len(op.forget) for op in self.ops]


def admin_client(rt: TestRuntime) -> httpx.AsyncClient:
    assert rt.engine is not None
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine)), base_url="http://admin",
                             timeout=60)


async def test_a_batch_is_one_write_of_its_own_rules(tmp_path: Path) -> None:
    async with TestRuntime(APP, "sqlite", data_dir=tmp_path / "d") as rt:
        writes = Writes(rt)
        async with admin_client(rt) as admin:
            first = await admin.put("/limits/rules", json=rules(MAX_RULES_PER_REQUEST))
            assert first.status_code == 200, first.text
            assert len(first.json()) == MAX_RULES_PER_REQUEST
            assert writes.rows() == [MAX_RULES_PER_REQUEST]
            # The next batch writes its own rules only, not the table again.
            second = await admin.put("/limits/rules", json=rules(10, prefix="u"))
            assert second.status_code == 200
            assert writes.rows() == [MAX_RULES_PER_REQUEST, 10]
            one = await admin.put("/rules", json={"pattern": "v", "concurrency": 2})
            assert one.status_code == 200
            assert writes.rows()[-1] == 1
            gone = await admin.post("/limits/rules/bulk-delete", json=[{"pattern": "u1/*"}, {"pattern": "u2/*"}])
            assert gone.json() == ["u1/*", "u2/*"]
            assert writes.rows()[-1] == 2
        assert rt.engine is not None
        assert len(rt.engine.limiter.rules()) == MAX_RULES_PER_REQUEST + 10 + 1 - 2
        await rt.restart()
        # The rules are durable, deletes included.
        assert rt.engine is not None
        kept = rt.engine.limiter.rules()
        assert len(kept) == MAX_RULES_PER_REQUEST + 9 and "u1/*" not in kept and kept["v"] == 2


async def test_too_many_rules_in_one_request_is_413_and_changes_nothing(tmp_path: Path) -> None:
    async with TestRuntime(APP, "sqlite", data_dir=tmp_path / "d") as rt, admin_client(rt) as admin:
        r = await admin.put("/limits/rules", json=rules(MAX_RULES_PER_REQUEST + 1))
        assert r.status_code == 413, r.text
        message = r.json()["message"]
        assert str(MAX_RULES_PER_REQUEST) in message and "rules" in message
        assert rt.engine is not None and rt.engine.limiter.rules() == {}
        d = await admin.post("/limits/rules/bulk-delete", json=[{"pattern": "x"}] * (MAX_RULES_PER_REQUEST + 1))
        assert d.status_code == 413
        # The probe of the issue: 20,000 rules (about 900 KB, under the body limit), refused whole, no write.
        writes = Writes(rt)
        probe = await admin.put("/limits/rules", json=rules(20_000))
        assert probe.status_code == 413 and "20000 rules in one request" in probe.json()["message"]
        assert writes.ops == [] and rt.engine.limiter.rules() == {}


async def test_more_rules_than_the_total_cap_is_422(tmp_path: Path) -> None:
    async with TestRuntime(APP, "memory") as rt, admin_client(rt) as admin:
        for b in range(MAX_RULES_TOTAL // MAX_RULES_PER_REQUEST):
            r = await admin.put("/limits/rules", json=rules(MAX_RULES_PER_REQUEST, prefix=f"b{b}-"))
            assert r.status_code == 200, r.text
        # Changing existing rules is fine at the cap; a new one is not.
        same = await admin.put("/limits/rules", json=rules(5, prefix="b0-", limit=9))
        assert same.status_code == 200
        over = await admin.put("/limits/rules", json=rules(2, prefix="new"))
        assert over.status_code == 422, over.text
        assert str(MAX_RULES_TOTAL) in over.json()["message"]
        single = await admin.put("/rules", json={"pattern": "new", "concurrency": 1})
        assert single.status_code == 422
        assert rt.engine is not None and len(rt.engine.limiter.rules()) == MAX_RULES_TOTAL


async def test_the_loop_serves_others_while_a_full_batch_applies(tmp_path: Path) -> None:
    async with TestRuntime(APP, "sqlite", data_dir=tmp_path / "d") as rt, admin_client(rt) as admin:
        put = asyncio.create_task(admin.put("/limits/rules", json=rules(MAX_RULES_PER_REQUEST)))
        health = await admin.get("/health")
        assert health.status_code == 200
        assert (await put).status_code == 200


def test_limit_lookup_picks_the_most_specific_rule_among_many() -> None:
    """Admission looks a budget's limit up by the patterns that could match it (at most 8), the most specific
    winning, whatever the size of the rule book."""
    limiter = ConcurrencyLimiter({f"s{i}/*": 1 for i in range(5000)} | {"*": 7, "s1/*": 2, "*/k": 4, "s1/k": 3,
                                                                         "*/*/z": 6, "s1/*/z": 5})
    assert limiter.limit_of(("zz",)) == 7
    assert limiter.limit_of(("s1", "k")) == 3
    assert limiter.limit_of(("s2", "k")) == 1  # an exact scope beats an exact key
    assert limiter.limit_of(("zz", "k")) == 4
    assert limiter.limit_of(("s1", "j")) == 2
    assert limiter.limit_of(("s9", "j")) == 1
    assert limiter.limit_of(("zz", "j")) is None
    assert limiter.limit_of(("s1", "j", "z")) == 5
    assert limiter.limit_of(("s2", "j", "z")) == 6
    assert limiter.limit_of(("s1", "j", "x")) is None


def test_rules_of_an_older_data_dir_are_migrated(tmp_path: Path) -> None:
    """Schema 3 kept the rules as one JSON meta row; schema 4 moves them to a row each."""
    import json
    import sqlite3

    from durably.server.store.sqlite import MIGRATIONS, SQLiteStore

    conn = sqlite3.connect(tmp_path / "durably.sqlite3", isolation_level=None)
    conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);" + "".join(MIGRATIONS[:3])
                       + "INSERT INTO meta VALUES ('schema_version', '3');")
    conn.execute("INSERT INTO meta VALUES ('concurrency_rules', ?)", (json.dumps({"t/*": 4, "gone": None}),))
    conn.close()
    store = SQLiteStore(tmp_path)
    assert store.load_concurrency_rules() == {"t/*": 4, "gone": None}
    assert store.query("SELECT count(*) FROM meta WHERE key = 'concurrency_rules'") == [(0,)]
    store.close()
