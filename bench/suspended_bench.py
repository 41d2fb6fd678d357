"""Suspended invocations: the server's memory with very many of them, and a restart with them (issue 21, Memory).

    .venv/bin/python bench/suspended_bench.py                       # 50,000 through HTTP, then 1,000,000 in all
    .venv/bin/python bench/suspended_bench.py --http 5000 --total 100000
    .venv/bin/python bench/suspended_bench.py --http 1000 --total 200000 --src /path/to/main/src   # before

Target: 1,000,000 suspended invocations in under 300 MiB RSS, and a restart with them in under 5 s.

1. Through HTTP: `durably serve bench/compare/durably_app.py:app` on a fresh data directory; `--http` sends of
   `POST /Park/wait/send` (a handler that sleeps an hour; it suspends after 1 s of inactivity), 32 at a time.
   Once /metrics counts them all suspended, it prints the server's RSS, stops it (SIGTERM), starts it again and
   prints the restart time and the RSS after it.
2. In bulk, to `--total`: one of those invocations, as the engine wrote it (its row, journal entries, attempt
   history and durable timer), is copied through the store's typed writes (`SQLiteStore.commit` of a `Batch`)
   with a new id and sequence number and times moved forward per copy, nothing else changed; so the store
   holds exactly what the engine writes for `--total` suspended invocations. Then the server starts on it
   twice, as above.

A restart is timed from the start of the process until the ingress answers and a new invocation
(`POST /Bench/echo`) completes. RSS is VmRSS of the server process (after a new invocation, and after it has
been idle `--settle` seconds); peak is its VmHWM (what recovery needed at most).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
# `--src TREE` measures another checkout's durably (e.g. main, for a before/after): read before it is imported.
SRC = Path(sys.argv[sys.argv.index("--src") + 1]).resolve() if "--src" in sys.argv[:-1] else REPO / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(REPO / "bench"))

from procs import Proc, free_port, request, serve_cmd, wait_until  # noqa: E402 (bench/ is not a package)

from durably.protocol.ids import InvocationId  # noqa: E402
from durably.server.store.base import COL, Batch  # noqa: E402
from durably.server.store.ops import EndAttempt, StartAttempt  # noqa: E402
from durably.server.store.sqlite import SQLiteStore  # noqa: E402

APP = "bench/compare/durably_app.py:app"


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """VmRSS (or VmHWM, the peak) of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def metric(admin: str, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(f"{admin}/metrics", timeout=30) as r:
        text = r.read().decode()
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


class Server:
    """`durably serve` of the bench app on one data directory; started and stopped again and again."""

    def __init__(self, data: Path, log: Path) -> None:
        self.port, self.admin_port = free_port(), free_port()
        # This checkout's durably (or --src's), whichever one the environment has installed.
        self.proc = Proc("durably", serve_cmd(APP, self.port, self.admin_port, data, synchronous=None), REPO, log,
                         env={"PYTHONPATH": str(SRC)})
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> float:
        """Start; seconds from the start of the process until a new invocation completed."""
        self.proc.start()

        def echo() -> bool:
            return request("POST", f"{self.url}/Bench/echo", "up", timeout=5)[0] == 200

        wait_until(echo, 300, "the ingress to answer", self.proc, interval=0.02)
        return time.monotonic() - self.proc.started_at

    def stop(self) -> None:
        self.proc.stop(timeout=120)


def restart_report(server: Server, label: str, settle: float) -> tuple[float, float]:
    took = server.start()
    rss = rss_mib(server.proc.pid)
    time.sleep(settle)
    idle = rss_mib(server.proc.pid)
    suspended = metric(server.admin, "durably_invocations", '{status="suspended"}')
    in_memory = metric(server.admin, "durably_invocations_in_memory")
    print(f"  {label}: serving in {took:.2f} s; RSS {rss:.1f} MiB (peak {rss_mib(server.proc.pid, 'VmHWM'):.1f}), "
          f"after {settle:g} s idle {idle:.1f} MiB; "
          f"{suspended:,.0f} suspended in the store, {in_memory:.0f} invocations in memory", flush=True)
    return took, max(rss, idle)


async def send_all(url: str, n: int, conns: int) -> tuple[float, int]:
    """POST /Park/wait/send n times, `conns` at a time; returns (seconds it took, connection errors retried).
    A send whose connection broke is sent again (it may have been accepted: the store then holds one more)."""
    started = time.perf_counter()
    todo = iter(range(n))
    retried = 0
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=conns)) as client:

        async def worker() -> None:
            nonlocal retried
            for _ in todo:
                for _attempt in range(5):
                    try:
                        r = await client.post(f"{url}/Park/wait/send")
                        break
                    except httpx.TransportError:
                        retried += 1
                else:
                    raise RuntimeError("a send failed 5 times")
                if r.status_code not in (200, 202):
                    raise RuntimeError(f"send answered {r.status_code}: {r.text}")

        await asyncio.gather(*(worker() for _ in range(conns)))
    return time.perf_counter() - started, retried


def bulk_copy(data: Path, template_id: str, total: int, batch_size: int) -> tuple[int, float]:
    """Copy the template invocation until the store holds `total` suspended ones; returns (copies, seconds)."""
    store = SQLiteStore(data, "OFF")
    try:
        row = store.load_invocation(template_id)
        assert row is not None and row[COL["status"]] == "suspended", row
        journal = store.journal_rows(template_id)
        attempts = store.attempt_history(template_id)
        timers = [t for t in store.load_timers(2**62) if t[1] == template_id]
        have = store.count_by_status(["suspended"]).get("suspended", 0)
        seq = store.max_seq()
        print(f"  template {template_id}: {len(journal)} journal entries, {len(attempts)} attempts, "
              f"{len(timers)} timer(s); the store holds {have:,} suspended; copying {total - have:,} more", flush=True)
        started = time.perf_counter()
        copies = 0
        while have + copies < total:
            batch = Batch()
            for _ in range(min(batch_size, total - have - copies)):
                seq += 1
                copies += 1
                shift = copies  # 1 ms later per copy: distinct, increasing creation times like real traffic
                new_id = str(InvocationId.random())
                new = list(row)
                new[COL["id"]], new[COL["seq"]] = new_id, seq
                for col in ("created_at", "modified_at", "last_entry_at"):
                    if new[COL[col]] is not None:
                        new[COL[col]] += shift
                batch.invocations[new_id] = tuple(new)
                batch.journal.extend((seq, idx, type_id, raw, at + shift) for idx, type_id, raw, at in journal)
                for a in attempts:
                    batch.ops.append(StartAttempt(seq, a.started_at + shift, a.attempt))
                    if a.ended_at is not None:
                        batch.ops.append(EndAttempt(a.ended_at + shift, a.outcome or "", a.error, seq,
                                                    a.started_at + shift))
                batch.timers_add.extend((fire_at + shift, new_id, kind, cid) for fire_at, _, kind, cid in timers)
            store.commit(batch)
        return copies, time.perf_counter() - started
    finally:
        store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--http", type=int, default=50_000, help="suspended invocations made through HTTP")
    ap.add_argument("--total", type=int, default=1_000_000, help="suspended invocations in all (bulk copies)")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--batch", type=int, default=20_000, help="copies per bulk commit")
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--data", type=Path, default=None, help="keep the data directory here (default: temporary)")
    ap.add_argument("--src", type=Path, default=None, help="the durably source tree to serve (default: this one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="durably-suspended-") as tmp_s:
        tmp = Path(tmp_s)
        data = args.data or tmp / "data"
        server = Server(data, tmp / "server.log")
        print(f"1. {args.http:,} suspended invocations through HTTP (POST /Park/wait/send, {args.conns} at a time)")
        server.start()
        took, retried = asyncio.run(send_all(server.url, args.http, args.conns))
        if retried:
            print(f"  {retried} sends retried after a broken connection")
        wait_until(lambda: metric(server.admin, "durably_invocations", '{status="suspended"}') >= args.http, 600,
                   "every invocation to suspend", server.proc, interval=0.5)
        time.sleep(args.settle)
        made_rss = rss_mib(server.proc.pid)
        print(f"  sent in {took:.1f} s ({args.http / took:,.0f}/s); all suspended: RSS {made_rss:.1f} MiB, "
              f"{metric(server.admin, 'durably_invocations_in_memory'):.0f} invocations in memory", flush=True)
        with httpx.Client(timeout=60) as c:
            listed = c.get(f"{server.admin}/invocations", params={"status": "suspended", "limit": 1}).json()
        template = listed["invocations"][0]["id"]
        server.stop()
        http_restart, http_rss = restart_report(server, f"restart with {args.http:,}", args.settle)
        server.stop()
        print(f"2. {args.total:,} suspended invocations (bulk copies of {template}, as the engine wrote it)")
        copies, took = bulk_copy(data, template, args.total, args.batch)
        print(f"  copied {copies:,} in {took:.1f} s", flush=True)
        _, first_rss = restart_report(server, f"first start with {args.total:,}", args.settle)
        server.stop()
        again, again_rss = restart_report(server, f"restart with {args.total:,}", args.settle)
        server.stop()
        rss = max(first_rss, again_rss)
        print(f"{args.total:,} suspended: RSS {rss:.0f} MiB (target < 300), restart {again:.2f} s (target < 5); "
              f"{args.http:,} through HTTP: RSS {made_rss:.0f} MiB while made, {http_rss:.0f} MiB and "
              f"{http_restart:.2f} s after a restart")
    return 0


if __name__ == "__main__":
    sys.exit(main())
