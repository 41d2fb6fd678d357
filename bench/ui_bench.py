"""Web UI and admin list latency with a big store: 1,000,000 completed invocations by default.

    .venv/bin/python bench/ui_bench.py                 # fill 1,000,000 rows (about a minute), then measure
    .venv/bin/python bench/ui_bench.py --rows 100000 --requests 100

It writes the rows straight into a fresh SQLite store (schema of this durably, each invocation with an input
and an output journal entry; Bench/echo and Bench/steps10 and Counter/{key}/add, 1 in 50 failed), starts
`durably serve bench/compare/durably_app.py:app` on it, and times sequential HTTP GETs against the admin
listener: the UI's list (first page, filtered pages, a page deep in the past through its cursor), one
invocation's page, the page of an invocation with a 20,002-entry journal (its timeline draws 150 bars and
aggregates the rest), and the admin API's `GET /invocations`. Prints p50/p99 per request kind; the target is
under 50 ms per page.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from durably.protocol import messages as m  # noqa: E402
from durably.protocol import protocol_pb2 as pb  # noqa: E402
from durably.protocol.ids import InvocationId  # noqa: E402
from durably.server.store.base import INVOCATION_COLUMNS  # noqa: E402
from durably.server.store.sqlite import SQLiteStore  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from procs import Proc, free_port, serve_cmd  # noqa: E402 (bench/ is not a package)

TARGET_MS = 50.0
DAY_MS = 86_400_000


def fill(data_dir: Path, rows: int) -> tuple[list[str], int, int]:
    """Write `rows` completed invocations spread over the last `rows` seconds; returns sample ids and the range."""
    SQLiteStore(data_dir, "OFF").close()  # the schema of this durably; the rows go in through a connection of our own
    conn = sqlite3.connect(data_dir / "durably.sqlite3", isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    rng = random.Random(7)
    inp = pb.InputCommandMessage()
    inp.value.content = b'"hello"'
    out_ok = pb.OutputCommandMessage()
    out_ok.value.content = b'"hello"'
    out_fail = pb.OutputCommandMessage()
    out_fail.failure.code = 500
    out_fail.failure.message = "boom"
    inp_raw, ok_raw, fail_raw = inp.SerializeToString(), out_ok.SerializeToString(), out_fail.SerializeToString()
    now = int(time.time() * 1000)
    start = now - rows * 1000
    placeholders = ", ".join("?" for _ in INVOCATION_COLUMNS)
    sample: list[str] = []
    chunk = 20_000
    t0 = time.perf_counter()
    for base in range(0, rows, chunk):
        inv_rows, journal = [], []
        for i in range(base, min(rows, base + chunk)):
            seq = i + 1
            created = start + i * 1000
            inv_id = str(InvocationId.random())
            kind = i % 3
            service, handler, key = (("Bench", "echo", ""), ("Bench", "steps10", ""),
                                     ("Counter", "add", f"k{rng.randrange(1000)}"))[kind]
            failed = i % 50 == 0
            inv_rows.append((inv_id, service, handler, key, "completed", None, created, created + 3, None, 1, 0,
                             created + 3, None, None, 2, None, None if failed else b'"hello"',
                             500 if failed else None, "boom" if failed else None, None, created + 3,
                             created + DAY_MS, None, seq))
            journal.append((seq, 0, m.INPUT, inp_raw, created))
            journal.append((seq, 1, m.OUTPUT, fail_raw if failed else ok_raw, created + 3))
            if i % (rows // 20 or 1) == 0:
                sample.append(inv_id)
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO invocations ({', '.join(INVOCATION_COLUMNS)}) VALUES ({placeholders})",
                         inv_rows)
        conn.executemany("INSERT INTO journal VALUES (?, ?, ?, ?, ?)", journal)
        conn.execute("COMMIT")
    sample.append(_long_journal(conn, rows + 1, now - 60_000))
    conn.execute("ANALYZE")
    conn.close()
    print(f"filled {rows:,} completed invocations in {time.perf_counter() - t0:.1f} s")
    return sample, start, now


LONG_STEPS = 10_000


def _long_journal(conn: sqlite3.Connection, seq: int, created: int) -> str:
    """One completed Bench/steps10 invocation with LONG_STEPS run steps (2 entries each): 20,002 entries."""
    inv_id = str(InvocationId.random())
    inp = pb.InputCommandMessage()
    inp.value.content = b'"long"'
    out = pb.OutputCommandMessage()
    out.value.content = b'"done"'
    journal = [(seq, 0, m.INPUT, inp.SerializeToString(), created)]
    for i in range(LONG_STEPS):
        run = pb.RunCommandMessage(result_completion_id=i + 1, name=f"step {i}")
        note = pb.NotificationMessage(completion_id=i + 1, value=pb.Value(content=str(i).encode()))
        journal.append((seq, 1 + 2 * i, m.RUN, run.SerializeToString(), created + 2 * i))
        journal.append((seq, 2 + 2 * i, m.RUN_COMPLETION, note.SerializeToString(), created + 2 * i + 1))
    done = created + 2 * LONG_STEPS + 1
    journal.append((seq, len(journal), m.OUTPUT, out.SerializeToString(), done))
    row = (inv_id, "Bench", "steps10", "", "completed", None, created, done, None, 1, 0, done, None, None,
           len(journal), None, b'"done"', None, None, None, done, done + DAY_MS, None, seq)
    conn.execute("BEGIN")
    conn.execute(f"INSERT INTO invocations ({', '.join(INVOCATION_COLUMNS)}) VALUES "
                 f"({', '.join('?' for _ in INVOCATION_COLUMNS)})", row)
    conn.executemany("INSERT INTO journal VALUES (?, ?, ?, ?, ?)", journal)
    conn.execute("COMMIT")
    return inv_id


def get_ms(url: str) -> float:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as resp:
        resp.read()
        assert resp.status == 200, (url, resp.status)
    return (time.perf_counter() - t) * 1000


def oldest_cursor(url: str) -> str:
    """Follow 'older' links a few times to get a cursor deep in the list."""
    with urllib.request.urlopen(url, timeout=60) as resp:
        text = resp.read().decode()
    marker = 'id="older" href="'
    at = text.find(marker)
    return text[at + len(marker):text.find('"', at + len(marker))].replace("&amp;", "&")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200, help="requests per kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="durably-ui-bench-") as tmp:
        workdir = Path(tmp)
        sample, start, now = fill(workdir / "data", args.rows)
        port, admin_port = free_port(), free_port()
        # This checkout's durably (the schema it filled), whichever one the environment has installed.
        proc = Proc("durably", serve_cmd("bench/compare/durably_app.py:app", port, admin_port, workdir / "data",
                                         synchronous=None), REPO, workdir / "server.log",
                    env={"PYTHONPATH": str(REPO / "src")})
        proc.start()
        try:
            admin = f"http://127.0.0.1:{admin_port}"
            try:
                proc.wait_healthy(f"{admin}/health", 60, interval=0.1)
            except RuntimeError as e:
                raise SystemExit(f"server did not start: {e}") from None
            mid = start + (now - start) // 2
            since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((mid - 3_600_000) / 1000))
            until = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mid / 1000))
            deep = oldest_cursor(f"{admin}/ui/invocations?until={until}")
            kinds = {
                "UI list, first page": "/ui/invocations",
                "UI list, live refresh (rows only)": "/ui/invocations?fragment=rows",
                "UI list, status=completed": "/ui/invocations?status=completed",
                "UI list, service=Counter": "/ui/invocations?service=Counter",
                "UI list, service+key": "/ui/invocations?service=Counter&key=k42",
                "UI list, time range (mid-store)": f"/ui/invocations?since={since}&until={until}",
                "UI list, next page deep in the past": deep,
                "UI invocation page": f"/ui/invocations/{sample[len(sample) // 2]}",
                "UI timeline (SVG), 20,002-entry journal": f"/ui/invocations/{sample[-1]}?fragment=timeline",
                "UI invocation page, 20,002-entry journal": f"/ui/invocations/{sample[-1]}",
                "admin GET /invocations?limit=50": "/invocations?limit=50",
                "admin GET /invocations?service=Bench&limit=50": "/invocations?service=Bench&limit=50",
                "admin GET /metrics (Prometheus scrape)": "/metrics",
            }
            print(f"{'request':48} {'p50 ms':>8} {'p99 ms':>8}  target < {TARGET_MS:g} ms")
            missed = 0
            for label, path in kinds.items():
                get_ms(admin + path)  # warm
                times = sorted(get_ms(admin + path) for _ in range(args.requests))
                p50 = statistics.median(times)
                p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
                flag = "" if p99 < TARGET_MS else "  MISSED"
                missed += bool(flag)
                print(f"{label:48} {p50:8.2f} {p99:8.2f}{flag}")
            print(f"{args.rows:,} rows; {args.requests} sequential requests per kind; "
                  f"{'all under target' if not missed else f'{missed} kinds over target'}")
        finally:
            proc.stop()


if __name__ == "__main__":
    main()
