"""Crash loop: SIGKILL `durably serve` again and again under load; count what was lost and what ran twice.

Run from the repository root:

    .venv/bin/python bench/crash_loop.py                    # 300 invocations, 10 kills
    .venv/bin/python bench/crash_loop.py --invocations 1000 --kills 30 --step-ms 20
    .venv/bin/python bench/crash_loop.py --signal term      # graceful stops instead: no step runs again
    .venv/bin/python bench/crash_loop.py --partitions 2     # SIGKILL one partition process or the whole group

Serves `bench/crash_loop_app.py:app` (five journaled steps per invocation, each a sync closure that sleeps
--step-ms and records its start and end in a log file, then a call to one of 16 `Tally` objects that appends
the invocation's key to its state) with `--synchronous full` on fixed free ports and a
fresh data directory. --clients workers each send one invocation with an idempotency key
(`POST /CrashLoop/run/send`, retried until 202), wait for its result (`GET /restate/invocation/CrashLoop/run/
{key}/attach`, retried across restarts), then take the next. Meanwhile the server is SIGKILLed --kills times,
each 0.3-1.0 s after it became healthy again, and restarted on the same data directory. With --partitions N
(N > 1) each kill is, at random, of the whole process group (then restarted) or of one partition process
(the supervisor restarts it); --kill-scope fixes one of the two.

Printed:
  acknowledged       invocations whose send was answered 202 (the server had committed them)
  completed          acknowledged invocations whose result came back
  lost               acknowledged but never completed (must be 0)
  committed re-run   executions of a step that began after the run whose result the journal kept had
                     finished: a committed step ran again (must be 0)
  in-flight re-run   executions cut off by a kill before their result was committed, run again (allowed:
                     at-least-once for side effects)
  calls applied      acknowledged invocations whose call to their tally was applied exactly once (the rest:
                     applied twice or never, must be none)
  restart            time from starting the process to its first 200 from /restate/health, per restart

The exit status is 1 if anything was lost or a committed step ran again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crash_loop_app import TALLIES  # bench/ is not a package: found through sys.path
from procs import Proc, free_port, serve_cmd

ROOT = Path(__file__).resolve().parents[1]
APP = "bench/crash_loop_app.py:app"
STEPS = 5
RETRY_S = 0.05
HEALTH_POLL_S = 0.01


@dataclass
class Server:
    data_dir: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    partitions: int = 1
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, limit_s: float = 60.0) -> float:
        """Start on the same ports and data directory; seconds until health answers 200."""
        extra = ("--partitions", str(self.partitions)) if self.partitions > 1 else ()
        self.proc = Proc("durably serve", serve_cmd(APP, self.port, self.admin_port, self.data_dir, *extra), ROOT,
                         self.log_path)
        self.proc.start()
        # Polled from a thread: the clients' tasks keep retrying on the loop meanwhile, as they do against a crash.
        return await asyncio.to_thread(self.proc.wait_healthy, f"{self.url}/restate/health", limit_s, HEALTH_POLL_S)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def partition_pids(self) -> list[int]:
        """The supervisor's children: the partition processes (empty with one partition)."""
        assert self.proc is not None
        pid = self.proc.pid
        try:
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    async def kill_partition(self, rng: random.Random) -> int | None:
        """SIGKILL one partition process; its supervisor restarts it. Returns the pid killed (None: none ran)."""
        pids = self.partition_pids()
        if not pids:
            return None
        victim = rng.choice(pids)
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return victim

    async def terminate(self) -> None:
        """SIGTERM (a graceful stop: running steps finish) and wait for the exit."""
        assert self.proc is not None and self.proc.popen is not None
        self.proc.popen.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.proc.popen.wait)


@dataclass
class Run:
    acknowledged: set[str] = field(default_factory=set)
    results: dict[str, list[str]] = field(default_factory=dict)
    not_found: set[str] = field(default_factory=set)
    restarts: list[float] = field(default_factory=list)
    kills_during_work: int = 0
    partition_kills: int = 0
    work_done: bool = False


async def invocation(server: Server, client: httpx.AsyncClient, run: Run, work: Path, key: str, step_ms: int,
                     deadline: float) -> None:
    body = {"dir": str(work), "key": key, "step_ms": step_ms}
    while key not in run.acknowledged:
        try:
            r = await client.post(f"{server.url}/CrashLoop/run/send", json=body, headers={"idempotency-key": key})
            if r.status_code == 202:
                run.acknowledged.add(key)
                break
        except httpx.HTTPError:
            pass  # the server is down (killed): retry with the same key
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(RETRY_S)
    while time.monotonic() < deadline:
        try:
            r = await client.get(f"{server.url}/restate/invocation/CrashLoop/run/{key}/attach")
            if r.status_code == 200:
                run.results[key] = r.json()
                return
            if r.status_code == 404:
                run.not_found.add(key)  # acknowledged, and now unknown: lost
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(RETRY_S)


async def killer(server: Server, run: Run, kills: int, rng: random.Random, graceful: bool, scope: str) -> None:
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(0.3, 1.0))
        if not run.work_done:
            run.kills_during_work += 1
        one = server.partitions > 1 and not graceful and (scope == "partition" or
                                                          (scope == "mixed" and rng.random() < 0.5))
        if one and await server.kill_partition(rng) is not None:
            run.partition_kills += 1
            continue
        if graceful:
            await server.terminate()
        else:
            server.kill()
        run.restarts.append(await server.start())


def analyse(work: Path, results: dict[str, list[str]]) -> tuple[int, int, list[str]]:
    """(committed steps re-run, in-flight steps re-run, problems) from the step log and the kept tokens."""
    events: dict[tuple[str, int], list[tuple[str, str]]] = defaultdict(list)
    for line in (work / "steps.log").read_text().splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue  # a line cut by the kill (cannot happen with one write per line, but be safe)
        kind, key, i, extra = parts
        events[(key, int(i))].append((kind, extra))
    committed_reruns = inflight_reruns = 0
    problems = []
    for key, tokens in results.items():
        for i, token in enumerate(tokens):
            seq = events[(key, i)]
            kept = next((n for n, (kind, extra) in enumerate(seq) if kind == "done" and extra == token), None)
            if kept is None:
                problems.append(f"{key} step {i}: the kept result {token} was never produced")
                continue
            before = sum(1 for kind, _ in seq[:kept] if kind == "start")
            after = sum(1 for kind, _ in seq[kept:] if kind == "start")
            committed_reruns += after
            inflight_reruns += before - 1
    return committed_reruns, inflight_reruns, problems


async def tallies(server: Server, client: httpx.AsyncClient, deadline: float) -> dict[str, int]:
    """How many times each invocation key was appended, over all the tallies (read through the ingress)."""
    counts: dict[str, int] = defaultdict(int)
    for t in range(TALLIES):
        while True:
            try:
                r = await client.post(f"{server.url}/Tally/tally-{t}/keys", json=None)
                if r.status_code == 200:
                    for key in r.json():
                        counts[key] += 1
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"tally-{t} could not be read")
            await asyncio.sleep(RETRY_S)
    return counts


async def main_async(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="durably-crash-loop-"))
    work = tmp / "work"
    work.mkdir()
    server = Server(tmp / "data", tmp / "server.log", partitions=args.partitions)
    run = Run()
    rng = random.Random(args.seed)
    limits = httpx.Limits(max_connections=args.clients + 4)
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits) as client:
            first = await server.start()
            started = time.perf_counter()
            deadline = time.monotonic() + args.timeout
            keys = [f"inv-{n}" for n in range(args.invocations)]
            queue: asyncio.Queue[str] = asyncio.Queue()
            for k in keys:
                queue.put_nowait(k)

            async def worker() -> None:
                while not queue.empty():
                    key = queue.get_nowait()
                    await invocation(server, client, run, work, key, args.step_ms, deadline)

            kill_task = asyncio.create_task(killer(server, run, args.kills, rng, args.signal == "term",
                                                   args.kill_scope))
            await asyncio.gather(*(worker() for _ in range(args.clients)))
            run.work_done = True
            elapsed = time.perf_counter() - started
            await kill_task
            applied = await tallies(server, client, time.monotonic() + 60)
        committed, inflight, problems = analyse(work, run.results)
    finally:
        if server.proc is not None:
            server.proc.stop()
    lost = len(run.acknowledged - set(run.results))
    complete = sum(1 for v in run.results.values() if len(v) == STEPS)
    once = sum(1 for k in run.acknowledged if applied.get(k) == 1)
    twice = sorted(k for k, n in applied.items() if n > 1)
    stray = sorted(set(applied) - run.acknowledged)
    where = f", {args.partitions} partitions ({run.partition_kills} kills of one)" if args.partitions > 1 else ""
    print(f"crash loop: {args.invocations} invocations of {STEPS} steps ({args.step_ms} ms each) and a call, "
          f"{args.clients} clients, {args.kills} SIG{args.signal.upper()}s ({run.kills_during_work} while invocations "
          f"were running){where}, {elapsed:.1f} s")
    print(f"  acknowledged        {len(run.acknowledged)}")
    print(f"  completed           {complete}")
    print(f"  lost                {lost}" + (f"  (404 after acknowledgement: {len(run.not_found)})"
                                             if run.not_found else ""))
    print(f"  committed re-run    {committed}")
    print(f"  in-flight re-run    {inflight}")
    print(f"  calls applied       {once} once" + (f"; twice: {', '.join(twice[:5])}" if twice else "")
          + (f"; unacknowledged: {', '.join(stray[:5])}" if stray else ""))
    if run.restarts:
        times = ", ".join(f"{t:.2f}" for t in run.restarts)
        print(f"  restart (s)         first start {first:.2f}; restarts {times}")
        print(f"                      median {statistics.median(run.restarts):.2f}, max {max(run.restarts):.2f}")
    for p in problems:
        print(f"  problem: {p}")
    ok = (lost == 0 and committed == 0 and not problems and complete == len(run.acknowledged) == args.invocations
          and once == complete and not twice and not stray)
    print("  verdict             " + ("OK" if ok else "FAILED"))
    if ok and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"  files kept in {tmp}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invocations", type=int, default=300)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (one invocation each)")
    parser.add_argument("--step-ms", type=int, default=100, help="how long each step's closure works")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up on invocations after this many s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--signal", choices=["kill", "term"], default="kill",
                        help="kill: SIGKILL (a crash); term: SIGTERM (a graceful stop)")
    parser.add_argument("--partitions", type=int, default=1, help="durably serve --partitions N")
    parser.add_argument("--kill-scope", choices=["mixed", "group", "partition"], default="mixed",
                        help="with --partitions N > 1: SIGKILL the whole group, one partition process, or either")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
