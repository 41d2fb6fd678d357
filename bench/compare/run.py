"""Durably side by side with Restate and DBOS: the same workloads on each system, on this machine, in one run.

Run it through the entry command, which installs the peers first (see docs/benchmarks.md):

    bash bench/compare.sh            # the full run that docs/benchmarks.md is made from (about 30 minutes)
    bash bench/compare.sh --quick    # a developer's loop: one short run of each, under 2 minutes

or directly, once installed:

    .venv/bin/python bench/compare/run.py [--quick] [--systems durably,restate] [--only steps10,echo]
                                          [--out docs/benchmarks.json] [--no-report]

Systems (each started on free ports with its own fresh data directory under .bench/work):
    durably      `durably serve bench/compare/durably_app.py:app --synchronous full` (embedded handlers, SQLite)
    durably-sdk  `durably serve` driving bench/compare/restate_app.py (restate-sdk under hypercorn) over HTTP/2
    restate      restate-server (npm @restatedev/restate-server) driving that same restate-sdk deployment
    dbos         bench/compare/dbos_app.py: DBOS on SQLite, in-process, behind uvicorn

Workloads: throughput and latency measured by wrk (one thread, closed loop) at 1 and 32 connections, with every
system up and their runs interleaved (one loaded at a time, after the machine went quiet);
recovery after SIGKILL with many invocations in flight; replay cost against journal length; resident
memory per suspended invocation. Each throughput figure is the median of --runs runs. Results go to a JSON
file, from which bench/compare/report.py writes docs/benchmarks.md and the chart.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from http_bench import LUA_TEMPLATE, busy_cores, run_wrk  # noqa: E402 (bench/ is not a package)
from procs import Proc, free_port, healthy, request, serve_cmd, wait_until  # noqa: E402
from report import write_report  # noqa: E402
from workloads import LABELS, OTHER, SYSTEM_KEYS, THROUGHPUT, Workload  # noqa: E402

REPO = HERE.parent.parent
WORK = REPO / ".bench" / "work"
SDK_VENV = REPO / ".interop" / "sdk-venv"
DBOS_VENV = REPO / ".bench" / "dbos-venv"
RESTATE_PKG = REPO / ".interop" / "node_modules" / "@restatedev" / "restate-server"
# The npm wrapper (node) spawns this native binary; run it directly so that no node process sits in between
# (a SIGKILL must hit the server itself).
RESTATE_BIN = REPO / ".interop" / "node_modules" / "@restatedev" / "restate-server-linux-x64" / "bin" / "restate-server"
POLL_S = 0.02  # how often a wait checks again: the recovery and replay figures are timed by these waits


# ------------------------------------------------------------------------------------------------ wrk scripts


KEYED_LUA = """
request = function()
  return wrk.format(nil, string.format("{path}", math.random(1, {keys})))
end
"""


def lua_for(w: Workload) -> str:
    text = LUA_TEMPLATE.format(body=json.dumps(json.dumps(w.body)))
    if w.keys:
        text += KEYED_LUA.format(path=w.path, keys=w.keys)
    return text


# ------------------------------------------------------------------------------------------------ HTTP


def submit_many(url: str, count: int, body: Any, concurrency: int = 32) -> None:
    """POST `count` requests (expecting 202) through `concurrency` client threads."""

    def one(_: int) -> None:
        status, out = request("POST", url, body)
        if status != 202:
            raise RuntimeError(f"POST {url}: {status} {out}")

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))


# ------------------------------------------------------------------------------------------------ processes


def tree_rss_kib(root: int) -> int:
    """VmRSS of a process and all its descendants, in KiB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            m = re.search(r"^VmRSS:\s+(\d+)\s+kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
        except OSError:
            m = None
        total += int(m.group(1)) if m else 0
        todo.extend(children.get(pid, []))
    return total


# ------------------------------------------------------------------------------------------------ systems


class System:
    """One system under test: its processes, its ingress, and how to read invocation status from its store."""

    key = ""
    supports_keyed = True

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / self.key
        self.procs: list[Proc] = []
        self.ingress = ""

    @property
    def label(self) -> str:
        return LABELS[self.key]

    def fresh(self) -> None:
        """Forget all data: the next start() begins empty, on new ports."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.procs = []
        self.configure()

    def configure(self) -> None:
        raise NotImplementedError

    def start(self, env: dict[str, str] | None = None) -> None:
        """Start every process (with `env` added to the handlers' environment) and wait until all serve."""
        raise NotImplementedError

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()

    def kill(self) -> None:
        for p in self.procs:
            p.kill()

    def rss_kib(self) -> int:
        return sum(tree_rss_kib(p.pid) for p in self.procs if p.alive())

    def count(self, handler: str, status: str) -> int:
        """How many invocations of `handler` are in `status` ("completed" or "suspended"), from the store."""
        raise NotImplementedError

    def workflow_status(self, service: str, key: str) -> str | None:
        raise NotImplementedError

    def check_alive(self) -> None:
        for p in self.procs:
            p.check_alive()

    def wait_healthy(self, url: str, what: str, timeout: float = 60.0) -> None:
        def ok() -> bool:
            self.check_alive()
            return request("GET", url, timeout=2)[0] == 200

        wait_until(ok, timeout, what, interval=POLL_S)


def hypercorn_proc(workdir: Path, port: int) -> Proc:
    return Proc("hypercorn (restate-sdk)", [str(SDK_VENV / "bin" / "hypercorn"), "--config", "hypercorn.toml",
                                            "--bind", f"127.0.0.1:{port}", "restate_app:app"], HERE,
                workdir / "hypercorn.log")


class DurablyStore:
    """Reads a Durably data directory's SQLite files directly (read-only; WAL readers never block the writer).
    With `--partitions N` each partition has its own file under the data directory: the figures add up."""

    data: Path

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for db in sorted(self.data.rglob("durably.sqlite3")):
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                rows.extend(conn.execute(sql, params).fetchall())
            finally:
                conn.close()
        return rows

    def count(self, handler: str, status: str) -> int:
        return sum(int(r[0]) for r in self._query("SELECT count(*) FROM invocations WHERE handler = ? AND status = ?",
                                                  (handler, status)))

    def workflow_status(self, service: str, key: str) -> str | None:
        rows = self._query("SELECT status FROM invocations WHERE service = ? AND key = ? AND handler = 'run'",
                           (service, key))
        return rows[0][0] if rows else None


class Durably(DurablyStore, System):
    key = "durably"
    extra: tuple[str, ...] = ()

    def configure(self) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.data = self.dir / "data"
        self.ingress = f"http://127.0.0.1:{self.port}"
        self.procs = [Proc("durably", serve_cmd("bench/compare/durably_app.py:app", self.port, self.admin_port,
                                                 self.data, *self.extra), REPO, self.dir / "durably.log")]

    def start(self, env: dict[str, str] | None = None) -> None:
        self.procs[0].start(env)
        self.wait_healthy(f"{self.ingress}/restate/health", "durably serve")


class DurablyPartitioned(Durably):
    """`durably serve --partitions 2`: two engine processes behind one port."""

    key = "durably-p2"
    extra = ("--partitions", "2")


class DurablySdk(DurablyStore, System):
    key = "durably-sdk"

    def configure(self) -> None:
        self.port, self.admin_port, self.sdk_port = free_port(), free_port(), free_port()
        self.data = self.dir / "data"
        self.ingress = f"http://127.0.0.1:{self.port}"
        self.sdk = hypercorn_proc(self.dir, self.sdk_port)
        self.durably = Proc("durably", serve_cmd("bench/compare/durably_app.py:no_services", self.port,
                                                 self.admin_port, self.data), REPO, self.dir / "durably.log")
        self.procs = [self.sdk, self.durably]
        self.registered = False

    def start(self, env: dict[str, str] | None = None) -> None:
        self.sdk.start(env)
        self.durably.start()
        self.wait_healthy(f"http://127.0.0.1:{self.sdk_port}/health", "the restate-sdk deployment")
        self.wait_healthy(f"{self.ingress}/restate/health", "durably serve")
        if not self.registered:
            status, out = request("POST", f"http://127.0.0.1:{self.admin_port}/deployments",
                                  {"uri": f"http://127.0.0.1:{self.sdk_port}", "force": True})
            if status not in (200, 201):
                raise RuntimeError(f"registering the deployment with durably: {status} {out}")
            self.registered = True


class Restate(System):
    key = "restate"

    def configure(self) -> None:
        self.port, self.admin_port, self.node_port, self.sdk_port = free_port(), free_port(), free_port(), free_port()
        self.ingress = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        env = {
            "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{self.port}",
            "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{self.admin_port}",
            "RESTATE_BIND_ADDRESS": f"127.0.0.1:{self.node_port}",
            "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{self.node_port}/",
            "RESTATE_LISTEN_MODE": "tcp",
        }
        self.sdk = hypercorn_proc(self.dir, self.sdk_port)
        self.server = Proc("restate-server", [str(RESTATE_BIN), "--base-dir", str(self.dir / "base"), "--no-logo"],
                           self.dir, self.dir / "restate.log", env)
        self.procs = [self.sdk, self.server]
        self.registered = False

    def start(self, env: dict[str, str] | None = None) -> None:
        self.sdk.start(env)
        self.server.start()
        self.wait_healthy(f"http://127.0.0.1:{self.sdk_port}/health", "the restate-sdk deployment")
        self.wait_healthy(f"{self.admin}/health", "restate-server (admin)")
        self.wait_healthy(f"{self.ingress}/restate/health", "restate-server (ingress)")
        if not self.registered:
            status, out = request("POST", f"{self.admin}/deployments",
                                  {"uri": f"http://127.0.0.1:{self.sdk_port}", "force": True})
            if status not in (200, 201):
                raise RuntimeError(f"registering the deployment with restate-server: {status} {out}")
            self.registered = True

    def sql(self, query: str) -> list[dict[str, Any]]:
        status, out = request("POST", f"{self.admin}/query", {"query": query}, {"Accept": "application/json"},
                              timeout=10)
        if status != 200 or not isinstance(out, dict):
            raise OSError(f"restate /query answered {status}: {out}")
        return list(out.get("rows", []))

    def count(self, handler: str, status: str) -> int:
        rows = self.sql("SELECT count(*) AS n FROM sys_invocation "
                        f"WHERE target_handler_name = '{handler}' AND status = '{status}'")
        return int(rows[0]["n"]) if rows else 0

    def workflow_status(self, service: str, key: str) -> str | None:
        rows = self.sql("SELECT status FROM sys_invocation WHERE target_handler_name = 'run' "
                        f"AND target_service_name = '{service}' AND target_service_key = '{key}'")
        return rows[0]["status"] if rows else None


DBOS_STATUS = {"completed": "SUCCESS", "suspended": "PENDING"}
DBOS_NAMES = {"run": "replay_run"}


class Dbos(System):
    key = "dbos"
    supports_keyed = False

    def configure(self) -> None:
        self.port = free_port()
        self.db = self.dir / "dbos.sqlite"
        self.ingress = f"http://127.0.0.1:{self.port}"
        self.procs = [self.app_proc("dbos", self.port, {})]

    def app_proc(self, name: str, port: int, env: dict[str, str]) -> Proc:
        cmd = [str(DBOS_VENV / "bin" / "uvicorn"), "dbos_app:app", "--host", "127.0.0.1", "--port", str(port),
               "--no-access-log", "--log-level", "warning"]
        return Proc(name, cmd, HERE, self.dir / f"{name}.log", {"BENCH_DBOS_DB": str(self.db), **env})

    def start(self, env: dict[str, str] | None = None) -> None:
        self.procs[0].start(env)
        self.wait_healthy(f"{self.ingress}/health", "the DBOS app (uvicorn)")

    def count(self, handler: str, status: str) -> int:
        status_code, out = request("GET", f"{self.ingress}/bench/count?name={DBOS_NAMES.get(handler, handler)}"
                                   f"&status={DBOS_STATUS[status]}", timeout=10)
        if status_code != 200:
            raise OSError(f"DBOS count answered {status_code}: {out}")
        return int(out["count"])


SYSTEM_CLASSES: dict[str, type[System]] = {"durably": Durably, "durably-p2": DurablyPartitioned,
                                           "durably-sdk": DurablySdk, "restate": Restate, "dbos": Dbos}


# ------------------------------------------------------------------------------------------------ measuring


def check(system: System, w: Workload) -> None:
    """One request before measuring: 200 with the expected answer (a fresh registration may take a moment)."""
    path = w.path % 1 if w.keys else w.path
    last: tuple[int, Any] = (0, None)

    def ok() -> bool:
        nonlocal last
        last = request("POST", system.ingress + path, w.body, timeout=30)
        if last[0] != 200:
            return False
        return last[1] == w.expect if w.expect is not None else isinstance(last[1], int) and last[1] > 0

    try:
        wait_until(ok, 30, f"{system.label} {path}", interval=0.2)
    except RuntimeError:
        raise RuntimeError(f"{system.label} {path}: last answer {str(last)[:300]}, expected {w.expect!r}") from None


def settle(limit: float = 0.2, most_s: float = 15.0) -> float:
    """Wait until the machine is quiet (under `limit` CPUs busy over a quarter second), at most `most_s`; the seconds
    waited. Every system stays up while the others are measured, so one system's work after a run (RocksDB
    compactions, WAL checkpoints) must not fall into the next system's run."""
    started = time.monotonic()
    while time.monotonic() - started < most_s:
        busy = busy_cores(0.25)
        if busy is None or busy < limit:
            break
    return time.monotonic() - started


def steal_s() -> float:
    """CPU seconds the hypervisor gave to others while this VM wanted them, so far (0 on bare metal)."""
    try:
        return int(Path("/proc/stat").read_text().split("\n", 1)[0].split()[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def one_run(wrk: str, system: System, w: Workload, conns: int, lua: Path, duration: float) -> dict[str, Any]:
    url = system.ingress + ("/" if w.keys else w.path)
    stolen, t0 = steal_s(), time.monotonic()
    stats, _text = run_wrk(wrk, url, lua, conns, 1, duration)
    stolen = (steal_s() - stolen) / (time.monotonic() - t0)
    errors = int(stats["connect"] + stats["read"] + stats["write"] + stats["timeout"])
    return {"req_per_s": stats["requests"] / (stats["duration_us"] / 1e6), "p50_ms": stats["p50_us"] / 1000,
            "p99_ms": stats["p99_us"] / 1000, "requests": int(stats["requests"]), "non_2xx": int(stats["non2xx"]),
            "errors": errors, "steal_cpus": round(stolen, 3)}


def measure_throughput(wrk: str, systems: list[System], w: Workload, conns: int, lua: Path, runs: int,
                       duration: float, warmup: float) -> list[dict[str, Any]]:
    """The figures of every system in `systems` for one workload at `conns` connections, measured interleaved:
    run i of every system before run i + 1 of any, in alternating order (A B C, then C B A), so that a machine
    whose speed drifts over minutes (a shared VM) moves every system's figures alike and the ratios hold."""
    samples: dict[str, list[dict[str, Any]]] = {s.key: [] for s in systems}
    for i in range(runs):
        for system in (systems if i % 2 == 0 else systems[::-1]):
            settle()
            if i == 0 and warmup > 0:
                run_wrk(wrk, system.ingress + ("/" if w.keys else w.path), lua, conns, 1, warmup)
            samples[system.key].append(one_run(wrk, system, w, conns, lua, duration))
    out = []
    for system in systems:
        mine = samples[system.key]
        median = {k: statistics.median(s[k] for s in mine) for k in ("req_per_s", "p50_ms", "p99_ms")}
        median["units_per_s"] = median["req_per_s"] * w.per_request
        out.append({"workload": w.name, "connections": conns, "system": system.key, "duration_s": duration,
                    "runs": mine, "median": median, "failed_requests": sum(s["non_2xx"] + s["errors"] for s in mine)})
    return out


def measure_recovery(system: System, in_flight: int) -> dict[str, Any]:
    """Start `in_flight` invocations that block mid-handler, SIGKILL everything, restart, time until all finish."""
    system.fresh()
    gate = system.dir / "gate.txt"
    gate.write_text("")
    system.start({"BENCH_GATE_BLOCK": "1", "BENCH_GATE_FILE": str(gate)})
    submit_many(f"{system.ingress}/Bench/gate/send", in_flight, 1)
    wait_until(lambda: len(gate.read_text().splitlines()) >= in_flight, 300, f"{in_flight} invocations at the gate",
               interval=0.05)
    system.kill()
    t0 = time.monotonic()
    system.start()
    serving = time.monotonic() - t0
    wait_until(lambda: system.count("gate", "completed") >= in_flight, 600, f"{in_flight} recovered invocations",
               interval=POLL_S)
    total = time.monotonic() - t0
    system.stop()
    return {"total_s": total, "serving_s": serving}


def measure_replay(system: System, entries: int, key: str) -> float:
    """ms from the event that resumes a suspended invocation with `entries` journal entries to its completion."""
    status, out = request("POST", f"{system.ingress}/Replay/{key}/run/send", entries)
    if status != 202:
        raise RuntimeError(f"{system.label}: starting Replay/{key}: {status} {out}")
    wait_until(lambda: system.workflow_status("Replay", key) == "suspended", 120 + entries / 50,
               f"Replay/{key} to suspend after {entries} steps", interval=0.05)
    t0 = time.monotonic()
    status, out = request("POST", f"{system.ingress}/Replay/{key}/go")
    if status != 200:
        raise RuntimeError(f"{system.label}: Replay/{key}/go: {status} {out}")
    status, out = request("GET", f"{system.ingress}/restate/workflow/Replay/{key}/attach", timeout=120)
    elapsed = time.monotonic() - t0
    if (status, out) != (200, entries):
        raise RuntimeError(f"{system.label}: Replay/{key} answered {status} {out}, expected {entries}")
    return elapsed * 1000


def measure_replay_dbos(system: Dbos, entries: int, key: str) -> float:
    """DBOS never suspends: a workflow replays its checkpoints only when it is recovered. A second process (executor
    "writer") runs the workflow to its gate and is SIGKILLed; the first process then recovers it (as DBOS's admin
    recovery endpoint does) and the request is timed."""
    gate = system.dir / f"gate-{key}.txt"
    gate.write_text("")
    port = free_port()
    writer = system.app_proc("dbos-writer", port, {"BENCH_GATE_BLOCK": "1", "BENCH_GATE_FILE": str(gate),
                                                   "DBOS__VMID": "writer"})
    writer.start()
    try:
        wait_until(lambda: healthy(f"http://127.0.0.1:{port}/health"), 60, "the DBOS writer", interval=POLL_S)
        status, out = request("POST", f"http://127.0.0.1:{port}/Replay/{key}/run/send", entries)
        if status != 202:
            raise RuntimeError(f"DBOS writer: Replay/{key}: {status} {out}")
        wait_until(lambda: gate.read_text().strip() != "", 600 + entries / 10, f"DBOS Replay/{key} at its gate",
                   interval=0.05)
    finally:
        writer.kill()
    t0 = time.monotonic()
    status, out = request("POST", f"{system.ingress}/bench/recover", {"executor": "writer"}, timeout=600)
    elapsed = time.monotonic() - t0
    if status != 200 or out.get("recovered") != 1:
        raise RuntimeError(f"DBOS recover: {status} {out}")
    return elapsed * 1000


def measure_memory(system: System, parked: int) -> dict[str, Any]:
    system.fresh()
    system.start()
    check(system, THROUGHPUT[0])
    before = system.rss_kib()
    submit_many(f"{system.ingress}/Park/wait/send", parked, None)
    wait_until(lambda: system.count("wait", "suspended") >= parked, 300 + parked / 50,
               f"{parked} suspended invocations", interval=0.2)
    after = system.rss_kib()
    system.stop()
    return {"invocations": parked, "rss_before_mib": before / 1024, "rss_after_mib": after / 1024,
            "per_invocation_kib": (after - before) / parked}


# ------------------------------------------------------------------------------------------------ metadata


def version_of(python: Path, dist: str) -> str:
    out = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


def metadata(args: argparse.Namespace, runs: int, duration: float, warmup: float) -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    fs = subprocess.run(["df", "-T", str(WORK)], capture_output=True, text=True, check=False).stdout.splitlines()
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                         check=False).stdout.strip()
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split("[")[0].strip()
    try:
        restate_v = json.loads((RESTATE_PKG / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        restate_v = "?"
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "runs": runs, "duration_s": duration, "warmup_s": warmup,
        "machine": {"cpu": cpu, "cpus": os.cpu_count(),
                    "memory_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
                    "kernel": platform.release(), "filesystem": fs[-1].split()[1] if len(fs) > 1 else "?",
                    "python": platform.python_version()},
        "versions": {"durably": f"{version_of(Path(sys.executable), 'durably')} ({sha})",
                     "restate-server": restate_v, "restate-sdk": version_of(SDK_VENV / "bin" / "python", "restate-sdk"),
                     "hypercorn": version_of(SDK_VENV / "bin" / "python", "hypercorn"),
                     "dbos": version_of(DBOS_VENV / "bin" / "python", "dbos"),
                     "uvicorn (DBOS)": version_of(DBOS_VENV / "bin" / "python", "uvicorn"),
                     "sqlite": sqlite3.sqlite_version, "wrk": wrk_v},
        "labels": {k: LABELS[k] for k in args.systems},
    }


# ------------------------------------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short run of each workload (under 2 minutes)")
    parser.add_argument("--systems", default=",".join(SYSTEM_KEYS), help=f"comma-separated, of {SYSTEM_KEYS}")
    parser.add_argument("--only", default=None,
                        help="comma-separated workloads: " + ", ".join([w.name for w in THROUGHPUT] + list(OTHER)))
    parser.add_argument("--runs", type=int, default=None, help="runs per figure; the median is quoted (default 3)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per throughput run (default 5)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default docs/benchmarks.json; with --quick, .bench/quick.json)")
    parser.add_argument("--no-report", action="store_true", help="do not write the page and chart")
    args = parser.parse_args()
    args.systems = [s for s in args.systems.split(",") if s]
    for s in args.systems:
        if s not in SYSTEM_KEYS:
            parser.error(f"unknown system {s!r}")
    names = args.only.split(",") if args.only else [w.name for w in THROUGHPUT] + list(OTHER)
    runs = args.runs or (1 if args.quick else 3)
    duration = args.duration or (1.0 if args.quick else 5.0)
    warmup = 0.0 if args.quick else 2.0
    in_flight = 200 if args.quick else 1000
    replay_lengths = [100, 1000] if args.quick else [100, 1000, 10000]
    parked = 1000 if args.quick else 10000
    out_path = args.out or (REPO / ".bench" / "quick.json" if args.quick else REPO / "docs" / "benchmarks.json")

    wrk = shutil.which("wrk")
    if wrk is None:
        print("error: wrk is not installed (bash bench/compare.sh installs it)", file=sys.stderr)
        return 2
    for need in (RESTATE_BIN, SDK_VENV / "bin" / "hypercorn", DBOS_VENV / "bin" / "uvicorn"):
        if not need.exists():
            print(f"error: {need} is missing: run `bash bench/compare.sh`, which installs the peers", file=sys.stderr)
            return 2
    busy = busy_cores()
    if busy is not None and busy > 0.25:
        print(f"warning: the machine is already busy ({busy:.2f} CPUs in use); the figures will be low and noisy")

    WORK.mkdir(parents=True, exist_ok=True)
    workdir = WORK / datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir.mkdir()
    results: dict[str, Any] = {"meta": metadata(args, runs, duration, warmup), "throughput": [], "recovery": [],
                               "replay": [], "memory": [], "skipped": []}
    started = time.monotonic()
    failed = False
    systems = [SYSTEM_CLASSES[key](workdir) for key in args.systems]

    def names_of(system: System) -> list[str]:
        # Partitions are about throughput; the other figures are Durably's own, measured once.
        return [n for n in names if n not in OTHER] if system.key == "durably-p2" else names

    try:
        # Throughput: every system up at once, their runs interleaved (see measure_throughput).
        for system in systems:
            if any(w.name in names_of(system) for w in THROUGHPUT) or "replay" in names_of(system):
                system.fresh()
                system.start()
        settle(most_s=30.0)  # the peers' start-up work (registration, RocksDB) is over
        idle = busy_cores(1.0)
        if idle is not None and idle > 0.25:
            print(f"warning: with every system up and idle, {idle:.2f} CPUs are busy; the figures will be noisy")
        for w in THROUGHPUT:
            taking = []
            for system in systems:
                if w.name not in names_of(system):
                    continue
                if w.keyed and not system.supports_keyed:
                    results["skipped"].append({"system": system.key, "workload": w.name,
                                               "why": "no keyed state with one writer per key (virtual objects)"})
                    continue
                check(system, w)
                taking.append(system)
            if not taking:
                continue
            lua = workdir / f"{w.name}.lua"
            lua.write_text(lua_for(w))
            # The quick loop measures one connection only where latency is the point.
            conn_list = w.connections if not args.quick or w.name in ("echo", "steps10") else w.connections[-1:]
            for conns in conn_list:
                # Partitions are about throughput: 32 connections only.
                these = [s for s in taking if s.key != "durably-p2" or conns == conn_list[-1]]
                # A fan-out request can take seconds on a slow system: long enough runs to finish some.
                secs = max(duration, 10.0) if w.name == "fanout" and not args.quick else duration
                print(f"\n== {w.name}@{conns}", flush=True)
                for r in measure_throughput(wrk, these, w, conns, lua, runs, secs, warmup):
                    results["throughput"].append(r)
                    m = r["median"]
                    extra = f"  {m['units_per_s']:9,.0f} {w.unit}/s" if w.unit else ""
                    bad = f"  !! {r['failed_requests']} failed requests" if r["failed_requests"] else ""
                    stolen = max(s["steal_cpus"] for s in r["runs"])
                    bad += f"  (the host took up to {stolen:.2f} CPUs in a run)" if stolen >= 0.05 else ""
                    print(f"  {LABELS[r['system']]:<34} {m['req_per_s']:9,.0f} req/s  p50 {m['p50_ms']:8.2f} ms"
                          f"  p99 {m['p99_ms']:8.2f} ms{extra}{bad}", flush=True)
                    failed |= bool(r["failed_requests"])
        # The rest one system at a time, alone on the machine: these figures stop, kill and restart it.
        for system in systems:
            system.stop()
        for system in systems:
            key, sys_names = system.key, names_of(system)
            print(f"\n== {system.label}")
            if "replay" in sys_names:
                system.start()  # on the data of its throughput runs
                for n in replay_lengths:
                    samples = []
                    for i in range(runs):
                        k = f"n{n}-{i}-{uuid.uuid4().hex[:6]}"
                        samples.append(measure_replay_dbos(system, n, k) if isinstance(system, Dbos)
                                       else measure_replay(system, n, k))
                    results["replay"].append({"system": key, "entries": n, "runs_ms": samples,
                                              "median_ms": statistics.median(samples)})
                    print(f"  replay {n:>6} entries  {statistics.median(samples):9.1f} ms  (runs: "
                          f"{', '.join(f'{s:.1f}' for s in samples)})", flush=True)
            system.stop()
            if "recovery" in sys_names:
                samples = [measure_recovery(system, in_flight) for _ in range(runs)]
                totals = [s["total_s"] for s in samples]
                results["recovery"].append({"system": key, "in_flight": in_flight, "runs": samples,
                                            "median_s": statistics.median(totals),
                                            "median_serving_s": statistics.median(s["serving_s"] for s in samples)})
                print(f"  recovery of {in_flight} in flight: {statistics.median(totals):.2f} s after restart "
                      f"(serving after {statistics.median(s['serving_s'] for s in samples):.2f} s)", flush=True)
            if "memory" in sys_names:
                mem = {"system": key, **measure_memory(system, parked)}
                results["memory"].append(mem)
                print(f"  memory: {parked} suspended: {mem['rss_before_mib']:.1f} -> {mem['rss_after_mib']:.1f} MiB"
                      f" = {mem['per_invocation_kib']:.2f} KiB each", flush=True)
            system.stop()
    except BaseException:
        failed = True
        print(f"\nlogs and data kept in {workdir}", file=sys.stderr)
        raise
    finally:
        for system in systems:
            system.stop()
        results["meta"]["elapsed_s"] = round(time.monotonic() - started, 1)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nresults: {out_path} ({results['meta']['elapsed_s']:.0f} s)")
    if not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    if not args.no_report:
        page = write_report(results, out_path)
        print(f"page: {page}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
