"""Durably vs. the real Restate server, both driving the same restate-sdk deployment: throughput and latency.

Run from the repository root (needs `bash scripts/test.sh` to have installed `.interop/`, and wrk):

    .venv/bin/python bench/interop_bench.py            # 3 s warm-up + 10 s per measurement (about 2 minutes)
    .venv/bin/python bench/interop_bench.py --quick    # 1 s warm-up + 3 s per measurement
    .venv/bin/python bench/interop_bench.py --echo     # also measure Bench/echo (no journaled steps)
    .venv/bin/python bench/interop_bench.py --durably-first --verbose   # other order; wrk's latency distribution
    .venv/bin/python bench/interop_bench.py --py-spy /tmp/durably.txt   # profile durably during steps10@32
    .venv/bin/python bench/interop_bench.py --payload --echo --rounds 3  # also the 100 KB payload; 3 interleaved rounds
    .venv/bin/python bench/interop_bench.py --baseline-src /tmp/old/src  # also an older durably, interleaved
    .venv/bin/python bench/interop_bench.py --fanout --steps10sync   # also 100 concurrent sleeps; sync steps
    .venv/bin/python bench/interop_bench.py --only-handler fanout --py-spy /tmp/f.txt  # profile one workload

In one run it starts
  1. hypercorn (one worker) serving bench/compare/restate_app.py, written with restate-sdk, from `.interop/sdk-venv`;
  2. restate-server (`.interop/node_modules/...`) on free ports with a temporary base dir, and registers the
     deployment with it (`POST {admin}/deployments`);
  3. `durably serve bench/compare/durably_app.py:no_services --synchronous full` on free ports with a temporary
     data dir, and
     registers the same deployment URL with it;
then, for each system in turn (Restate, then Durably), runs wrk against that system's ingress on
`POST /Bench/steps10` (10 `ctx.run_typed` steps per invocation): a warm-up, then a measurement at 32
connections (throughput) and at 1 connection (latency). The deployment's handler code is the same for both;
what differs is the runtime in front of it (journal storage, the protocol driver, the ingress).

With --payload it also measures `POST /Bench/payload`: a 100 KB JSON string in, one step that returns it (100 KB
journaled and sent back to the deployment), its length out. With --fanout, `POST /Bench/fanout` with
{"n": 100, "ms": 100}: 100 concurrent durable sleeps of 100 ms per invocation, awaited together (the
comparison benchmark's fan-out); with --steps10sync, `POST /Bench/steps10_sync` (sync closures). With
--rounds N every measurement is repeated N times, the systems interleaved (Restate, Durably, Restate, ...), and
the table shows each system's median round.

Durably runs the code Python finds for `durably`: the editable install's unless PYTHONPATH says otherwise (run
with PYTHONPATH=$PWD/src from a worktree to measure that worktree's code).

Printed per measurement: req/s, journaled steps/s, wrk's p50/p99/max, non-2xx responses and socket errors
(both must be 0, else a loud warning and exit status 1), and the CPU used by each process group (process +
descendants, from /proc/<pid>/stat utime+stime; 100% = one core): restate-server, durably, hypercorn, wrk,
and "other" (the rest of the machine). All of them share the machine's cores, so the idle system's
background CPU shows up too. "runtime ms/inv" is the CPU time per invocation of the runtime measured
(restate-server or durably), "sdk ms/inv" that of hypercorn and restate-sdk driven by it: the load of other
processes disturbs these less than the rates. Then the ratios Durably/Restate and the target:
Durably's throughput at least equal to Restate's (a missed target is reported, not treated as failure).

With --py-spy PATH, py-spy records the durably process (`--format raw --gil -r 200`) during its steps10@32
measurement (or that of --py-spy-handler or --only-handler); summarise with `.venv/bin/python
bench/pyspy_summary.py PATH --top 25`. With PYSPY_ALL_THREADS=1 in the environment it samples every busy thread
(not only the one holding the GIL): SQLite's writer thread shows. py-spy takes CPU too, so the figures of a
profiled run are low.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_bench import (  # bench/ is not a package: found through sys.path
    BODY,
    LUA_TEMPLATE,
    NOISE_LIMIT,
    busy_cores,
    children_cpu,
    machine_cpu,
    run_wrk,
)
from procs import Proc, free_port, healthy, request, serve_cmd, wait_until

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
INTEROP = REPO / ".interop"
SDK_VENV = INTEROP / "sdk-venv"
RESTATE_WRAPPER = INTEROP / "node_modules" / ".bin" / "restate-server"
# The npm wrapper (node) spawns this native binary; run it directly so no idle node process sits in between.
RESTATE_NATIVE = INTEROP / "node_modules" / "@restatedev" / "restate-server-linux-x64" / "bin" / "restate-server"
SDK_MODULE = "restate_app:app"
PAYLOAD_BYTES = 100 * 1024
FANOUT = {"n": 100, "ms": 100}  # the comparison benchmark's fan-out: 100 concurrent durable sleeps of 100 ms
# handler -> (request body as JSON text, expected answer)
BODIES: dict[str, tuple[str, Any]] = {
    "steps10": (BODY, 45),
    "echo": (BODY, json.loads(BODY)),
    "payload": (json.dumps("x" * PAYLOAD_BYTES), PAYLOAD_BYTES),
    "steps10_sync": (BODY, 45),
    "fanout": (json.dumps(FANOUT), FANOUT["n"]),
}
DURABLY_APP = "bench/compare/durably_app.py:no_services"
SERVICE = "Bench"
STEPS = 10
SYSTEMS = ("Restate", "Durably")
GROUPS = ("restate-server", "durably", "baseline", "hypercorn")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------------------------- processes


def proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user + system CPU seconds) for every process on the machine."""
    out: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state ppid ... utime(14) stime(15)
        out[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def tree_cpu(root: int, table: dict[int, tuple[int, float]]) -> float:
    """CPU seconds of `root` and all its live descendants (all threads)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            total += table[pid][1]
        todo.extend(children.get(pid, []))
    return total


@dataclass
class System:
    """A runtime driving the deployment: where its ingress and admin API listen, and its process."""

    name: str
    proc: Proc
    ingress: str
    admin: str

    def register(self, uri: str) -> None:
        status, body = request("POST", f"{self.admin}/deployments", {"uri": uri, "force": True})
        if status not in (200, 201):
            raise RuntimeError(f"{self.name}: registering {uri} answered {status}: {body}")
        services = [s.get("name") for s in body.get("services", [])] if isinstance(body, dict) else []
        print(f"  registered {uri} with {self.name}: services {services}")

    def check(self, handler: str, timeout: float = 30.0) -> None:
        """Poll the handler until it answers 200 with the expected output (schema changes may take a moment)."""
        body, expected = BODIES[handler]
        last: tuple[int, Any] = (0, None)

        def ok() -> bool:
            nonlocal last
            last = request("POST", f"{self.ingress}/{SERVICE}/{handler}", json.loads(body), timeout=10)
            return last == (200, expected)

        try:
            wait_until(ok, timeout, f"{self.name} {SERVICE}/{handler}", self.proc)
        except RuntimeError:
            raise RuntimeError(f"{self.name} {SERVICE}/{handler}: last answer {last}, expected (200, {expected!r})"
                               ) from None


# --------------------------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Result:
    system: str
    handler: str
    connections: int
    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    cpu: dict[str, float]  # process group -> CPU time / wall time (1.0 = one core); plus "wrk" and "other"

    @property
    def req_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def steps_per_s(self) -> float:
        per = {"steps10": STEPS, "steps10_sync": STEPS, "payload": 1}.get(self.handler, 0)
        return self.req_per_s * per

    def ms_per_inv(self, group: str) -> float:
        """A process group's CPU milliseconds per request (its share of the wall time, over the requests)."""
        return self.cpu.get(group, 0.0) * self.duration_s * 1000 / self.requests if self.requests else 0.0

    @property
    def runtime_ms_per_inv(self) -> float:
        """CPU ms per request of the runtime measured: restate-server's or durably's."""
        return self.ms_per_inv({"Durably": "durably", "Baseline": "baseline"}.get(self.system, "restate-server"))

    @property
    def sdk_ms_per_inv(self) -> float:
        """CPU ms per request of the deployment (hypercorn and restate-sdk), driven by that runtime."""
        return self.ms_per_inv("hypercorn")

    @property
    def label(self) -> str:
        return f"{self.handler}@{self.connections}"


def measure(wrk: str, system: System, groups: dict[str, Proc], lua: Path, handler: str, connections: int,
            duration: float, warmup: float, profile: tuple[Path, float] | None = None,
            verbose: bool = False) -> Result:
    url = f"{system.ingress}/{SERVICE}/{handler}"
    if warmup > 0:
        run_wrk(wrk, url, lua, connections, 1, warmup)
    spy: subprocess.Popen[bytes] | None = None
    if profile is not None:
        out, seconds = profile
        gil = [] if os.environ.get("PYSPY_ALL_THREADS") else ["--gil"]  # every busy thread (SQLite's too)
        spy_cmd = [str(REPO / ".venv" / "bin" / "py-spy"), "record", "--format", "raw", *gil, "--threads", "-d",
                   str(max(1, round(seconds))), "-r", "200", "--pid", str(system.proc.pid), "-o", str(out)]
        print(f"\n    profiling: {' '.join(spy_cmd)}")
        spy = subprocess.Popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # let py-spy attach
    t0_table, wrk0, mach0, t0 = proc_table(), children_cpu(), machine_cpu(), time.monotonic()
    stats, text = run_wrk(wrk, url, lua, connections, 1, duration)
    t1_table, wrk1, mach1, t1 = proc_table(), children_cpu(), machine_cpu(), time.monotonic()
    if spy is not None:
        _, err = spy.communicate(timeout=60)
        if spy.returncode != 0:
            print(f"WARNING: py-spy exited with {spy.returncode}: {err.decode(errors='replace')[-2000:]}")
    if verbose:
        print("\n" + text.rstrip())
    wall = t1 - t0
    cpu = {name: (tree_cpu(p.pid, t1_table) - tree_cpu(p.pid, t0_table)) / wall for name, p in groups.items()}
    cpu["wrk"] = (wrk1 - wrk0) / wall
    if mach0 is not None and mach1 is not None:
        cpu["other"] = max(0.0, (mach1[0] - mach0[0]) / wall - sum(cpu.values()))
    socket_errors = int(stats["connect"] + stats["read"] + stats["write"] + stats["timeout"])
    return Result(system=system.name, handler=handler, connections=connections, requests=int(stats["requests"]),
                  duration_s=stats["duration_us"] / 1e6, p50_ms=stats["p50_us"] / 1000,
                  p99_ms=stats["p99_us"] / 1000, max_ms=stats["max_us"] / 1000, non_2xx=int(stats["non2xx"]),
                  socket_errors=socket_errors, cpu=cpu)


def print_results(results: list[Result]) -> bool:
    """Print the table, the ratios and the target; return whether every request succeeded."""
    cpu_cols = [*GROUPS, "wrk", "other"]
    header = (f"{'system':<8} {'workload':<12} {'req/s':>8} {'steps/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'max ms':>7} {'non-2xx':>7} {'sockerr':>7} {'runtime ms/inv':>14} {'sdk ms/inv':>10} | CPU "
              + " ".join(f"{c:>14}" for c in cpu_cols))
    print(header)
    print("-" * len(header))
    for r in results:
        steps = f"{r.steps_per_s:8,.0f}" if r.steps_per_s else f"{'-':>8}"
        cpus = " ".join(f"{r.cpu[c]:14.0%}" if c in r.cpu else f"{'?':>14}" for c in cpu_cols)
        print(f"{r.system:<8} {r.label:<12} {r.req_per_s:8,.0f} {steps} {r.p50_ms:7.2f} {r.p99_ms:7.2f} "
              f"{r.max_ms:7.1f} {r.non_2xx:>7} {r.socket_errors:>7} {r.runtime_ms_per_inv:14.3f} "
              f"{r.sdk_ms_per_inv:10.3f} |     {cpus}")
    print("(CPU: each process group's CPU time (process + descendants, all threads) over wall time, 100% = one core;"
          f"\n wrk: the load generator; other: the rest of the machine. {os.cpu_count()} CPUs in all.)")

    # With several rounds, each system's median round (by req/s) stands for it.
    rounds: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        rounds.setdefault((r.system, r.label), []).append(r)
    by_key = {k: sorted(v, key=lambda r: r.req_per_s)[len(v) // 2] for k, v in rounds.items()}
    if any(len(v) > 1 for v in rounds.values()):
        print("\nmedian of the rounds (req/s; the runtime's and the deployment's CPU ms per invocation):")
        for (system, label), rs in rounds.items():
            rates = ", ".join(f"{r.req_per_s:,.0f}" for r in rs)
            cpu = ", ".join(f"{r.runtime_ms_per_inv:.2f}" for r in rs)
            sdk = ", ".join(f"{r.sdk_ms_per_inv:.2f}" for r in rs)
            print(f"  {system:<8} {label:<12} median {by_key[(system, label)].req_per_s:8,.0f} req/s  "
                  f"(rounds: {rates}; runtime ms/inv: {cpu}; sdk ms/inv: {sdk})")
    for other in ("Restate", "Baseline"):
        pairs = [(label, by_key.get(("Durably", label)), by_key.get((other, label)))
                 for label in dict.fromkeys(r.label for r in results)]
        pairs = [(label, d, s) for label, d, s in pairs if d is not None and s is not None]
        if pairs:
            print(f"\nDurably / {other}:")
        for label, d, s in pairs:
            tput = d.req_per_s / s.req_per_s if s.req_per_s else float("nan")
            p50 = d.p50_ms / s.p50_ms if s.p50_ms else float("nan")
            p99 = d.p99_ms / s.p99_ms if s.p99_ms else float("nan")
            cpu = d.runtime_ms_per_inv / s.runtime_ms_per_inv if s.runtime_ms_per_inv else float("nan")
            print(f"  {label:<12} throughput x{tput:.2f}   p50 x{p50:.2f}   p99 x{p99:.2f}   runtime CPU/inv "
                  f"x{cpu:.2f}   (Durably {d.req_per_s:,.0f} req/s, {d.p50_ms:.2f} ms p50; "
                  f"{other} {s.req_per_s:,.0f} req/s, {s.p50_ms:.2f} ms p50)")

    print("\ntarget: Durably's throughput at least equal to Restate's (steps10 at the highest connection count)")
    top = max((r.connections for r in results if r.handler == "steps10"), default=None)
    d = by_key.get(("Durably", f"steps10@{top}"))
    s = by_key.get(("Restate", f"steps10@{top}"))
    if d is None or s is None:
        print("  not checked: needs both systems measured")
    else:
        met = d.req_per_s >= s.req_per_s
        print(f"  steps10@{top}: Durably {d.req_per_s:,.0f} req/s vs Restate {s.req_per_s:,.0f} req/s "
              f"(x{d.req_per_s / max(s.req_per_s, 1e-9):.2f})  {'MET' if met else 'MISSED'}")

    noisy = [f"{r.system} {r.label}" for r in results if r.cpu.get("other", 0.0) > NOISE_LIMIT]
    if noisy:
        print(f"\nWARNING: other processes used more than {NOISE_LIMIT:.0%} of a CPU during {', '.join(noisy)}; "
              "those figures are suspect (run again on a quiet machine)")
    clean = True
    for r in results:
        if r.non_2xx or r.socket_errors:
            clean = False
            print(f"\n!!!!! WARNING: {r.system} {r.label}: {r.non_2xx} non-2xx responses and {r.socket_errors} "
                  f"socket errors out of {r.requests} requests — those figures are NOT valid !!!!!")
    return clean


# ------------------------------------------------------------------------------------------------- main


def start_sdk(workdir: Path) -> tuple[Proc, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The comparison benchmark's deployment and hypercorn settings (see bench/compare/hypercorn.toml).
    proc = Proc("hypercorn", [str(SDK_VENV / "bin" / "hypercorn"), "--config", "hypercorn.toml", "--bind",
                              f"127.0.0.1:{port}", SDK_MODULE], cwd=BENCH_DIR / "compare",
                log_path=workdir / "hypercorn.log")
    proc.start()
    wait_until(lambda: healthy(f"{url}/health"), 30, "the restate-sdk deployment (hypercorn)", proc)
    return proc, url


def start_restate(workdir: Path) -> System:
    ingress, admin, node = free_port(), free_port(), free_port()
    base = workdir / "restate"
    base.mkdir()
    binary = RESTATE_NATIVE if RESTATE_NATIVE.exists() else RESTATE_WRAPPER
    env = {
        "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ingress}",
        "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{admin}",
        "RESTATE_BIND_ADDRESS": f"127.0.0.1:{node}",
        "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{node}/",
        "RESTATE_LISTEN_MODE": "tcp",
    }
    proc = Proc("restate-server", [str(binary), "--base-dir", str(base), "--no-logo"], cwd=workdir,
                log_path=workdir / "restate.log", env=env)
    proc.start()
    system = System("Restate", proc, f"http://127.0.0.1:{ingress}", f"http://127.0.0.1:{admin}")
    wait_until(lambda: healthy(f"{system.admin}/health") and healthy(f"{system.ingress}/restate/health"), 60,
               "restate-server", proc)
    return system


def start_durably(workdir: Path, name: str = "Durably", src: Path | None = None) -> System:
    """`durably serve`; with `src`, the code of that source tree (PYTHONPATH) instead of this checkout's."""
    port, admin = free_port(), free_port()
    tag = name.lower()
    env = {"PYTHONPATH": str(src)} if src is not None else {}
    proc = Proc(tag, serve_cmd(DURABLY_APP, port, admin, workdir / f"{tag}-data"), cwd=REPO,
                log_path=workdir / f"{tag}.log", env=env)
    proc.start()
    system = System(name, proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}")
    wait_until(lambda: healthy(f"{system.ingress}/restate/health"), 30, "durably serve", proc)
    return system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 s warm-up + 3 s per measurement")
    parser.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up before each (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="connections for throughput (default 32)")
    parser.add_argument("--no-latency", action="store_true", help="skip the 1-connection latency runs")
    parser.add_argument("--echo", action="store_true", help="also measure Bench/echo (no journaled steps)")
    parser.add_argument("--payload", action="store_true",
                        help="also measure Bench/payload (100 KB in, one step returning it)")
    parser.add_argument("--steps10sync", action="store_true",
                        help="also measure Bench/steps10_sync (10 steps with sync closures)")
    parser.add_argument("--fanout", action="store_true",
                        help='also measure Bench/fanout ({"n": 100, "ms": 100}: 100 concurrent durable sleeps)')
    parser.add_argument("--only-handler", choices=sorted(BODIES), default=None,
                        help="measure this handler only")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every measurement this many times, the systems interleaved (default 1)")
    parser.add_argument("--baseline-src", type=Path, default=None, metavar="DIR",
                        help="also measure a second durably running the code under DIR (e.g. an exported src/ of "
                             "an older commit): 'Baseline', interleaved with the others")
    parser.add_argument("--only", choices=SYSTEMS, default=None, help="measure one system only")
    parser.add_argument("--durably-first", action="store_true", help="measure Durably before Restate")
    parser.add_argument("--verbose", action="store_true", help="print wrk's own output for each measurement")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="PATH",
                        help="record durably with py-spy (raw, --gil, 200 Hz) during steps10 at full connections")
    parser.add_argument("--py-spy-handler", choices=sorted(BODIES), default=None,
                        help="the handler whose throughput run --py-spy records (default: --only-handler or steps10)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary dir (logs, data) and print it")
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    if wrk is None:
        print("error: wrk is not installed (sudo apt-get install -y wrk)", file=sys.stderr)
        return 2
    for need in (SDK_VENV / "bin" / "hypercorn", RESTATE_WRAPPER):
        if not need.exists():
            print(f"error: {need} is missing: run `bash scripts/test.sh`, which installs .interop/", file=sys.stderr)
            return 2

    duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
    handlers = ["steps10", *(["echo"] if args.echo else []), *(["payload"] if args.payload else []),
                *(["steps10_sync"] if args.steps10sync else []), *(["fanout"] if args.fanout else [])]
    if args.only_handler:
        handlers = [args.only_handler]
    conns = [args.connections] if args.no_latency else [args.connections, 1]
    systems_to_run = [args.only] if args.only else list(reversed(SYSTEMS) if args.durably_first else SYSTEMS)
    if args.baseline_src is not None:
        systems_to_run.append("Baseline")

    background = busy_cores()
    if background is not None and background > NOISE_LIMIT:
        print(f"WARNING: the machine is already busy ({background:.2f} CPUs in use before starting); "
              "the figures will be low and noisy\n")

    workdir = Path(tempfile.mkdtemp(prefix="durably-interop-bench-"))
    procs: list[Proc] = []
    results: list[Result] = []
    try:
        for handler in handlers:
            (workdir / f"{handler}.lua").write_text(LUA_TEMPLATE.format(body=json.dumps(BODIES[handler][0])))
        sdk, sdk_url = start_sdk(workdir)
        procs.append(sdk)
        restate = start_restate(workdir)
        procs.append(restate.proc)
        durably = start_durably(workdir)
        procs.append(durably.proc)
        systems = {"Restate": restate, "Durably": durably}
        groups = {"restate-server": restate.proc, "durably": durably.proc, "hypercorn": sdk}
        if args.baseline_src is not None:
            baseline = start_durably(workdir, "Baseline", args.baseline_src.resolve())
            procs.append(baseline.proc)
            systems["Baseline"] = baseline
            groups["baseline"] = baseline.proc
        for system in systems.values():
            system.register(sdk_url)
            for handler in handlers:
                system.check(handler)
        print(f"\npids: hypercorn {sdk.pid}, restate-server {restate.proc.pid}, durably {durably.proc.pid}; "
              f"deployment {sdk_url}")
        print(f"wrk: 1 thread, {warmup:g} s warm-up + {duration:g} s per measurement, {os.cpu_count()} CPUs\n")
        plan = [(name, handler, c) for handler in handlers for c in conns for name in systems_to_run]
        if args.rounds <= 1:  # one round: each system's measurements together, as before
            plan = [(name, handler, c) for name in systems_to_run for handler in handlers for c in conns]
        for rnd in range(max(1, args.rounds)):
            if args.rounds > 1:
                print(f"round {rnd + 1} of {args.rounds}")
            for name, handler, c in plan:
                system = systems[name]
                print(f"  {name:<8} {f'{handler}@{c}':<12} ...", end="", flush=True)
                profile = None
                spy_handler = args.py_spy_handler or args.only_handler or "steps10"
                if (args.py_spy is not None and name == "Durably" and handler == spy_handler
                        and c == conns[0] and rnd == 0):
                    profile = (args.py_spy, max(1.0, duration - 1.0))
                r = measure(wrk, system, groups, workdir / f"{handler}.lua", handler, c, duration, warmup,
                            profile, args.verbose)
                results.append(r)
                print(f" {r.req_per_s:8,.0f} req/s  p50 {r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms  "
                      f"CPU restate {r.cpu['restate-server']:.0%} durably {r.cpu['durably']:.0%} "
                      f"hypercorn {r.cpu['hypercorn']:.0%}  CPU ms/inv: runtime {r.runtime_ms_per_inv:.2f} "
                      f"sdk {r.sdk_ms_per_inv:.2f}")
    finally:
        for p in reversed(procs):
            rc = p.stop()
            if rc not in (0, None, -signal.SIGTERM):
                print(f"WARNING: {p.name} exited with {rc}; log tail:\n{p.log_tail()}")
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    clean = print_results(results)
    if args.py_spy is not None:
        print(f"\nprofile: .venv/bin/python bench/pyspy_summary.py {args.py_spy} --top 25")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
