"""HTTP ingress benchmark for durably: throughput and latency of real invocations, measured with wrk.

Run from the repository root:

    .venv/bin/python bench/http_bench.py            # ~10 s per measurement (about 2 minutes in all)
    .venv/bin/python bench/http_bench.py --quick    # ~3 s per measurement
    .venv/bin/python bench/http_bench.py --duration 20 --connections 64 --only steps10 --no-latency

It starts `durably serve bench/compare/durably_app.py:app --synchronous full` on free ports with a fresh temporary data
dir, waits for `GET /restate/health`, then for each workload runs a short wrk warm-up followed by the
measurement (32 connections for throughput, 1 connection for latency), prints a table with the targets,
the server's peak RSS (VmHWM), and stops the server with SIGTERM.

Workloads (see bench/compare/durably_app.py):
    echo          POST /Bench/echo          returns its input, no journaled steps
    steps10       POST /Bench/steps10       10 `ctx.run_typed` steps with async closures
    steps10_sync  POST /Bench/steps10_sync  10 `ctx.run_typed` steps with sync lambdas (thread pool)

Every journaled step is committed to SQLite (WAL, synchronous=FULL, group commit) before the handler goes on.

Columns: req/s and journaled steps/s (req/s x 10 for the steps workloads), wrk's p50/p99/max latency,
non-2xx responses and socket errors (must both be 0, else a loud warning and exit status 1), the server's CPU
(all threads; 100% = one core) and "other": CPU used meanwhile by anything else on the machine. Other load
makes the figures low and noisy; the script warns when it exceeds a quarter of a CPU. Missed targets are
reported, not treated as failure.

Requires wrk (`apt-get install -y wrk`). To profile, note the server pid printed at start, or use
`--pause-before steps10@32` (waits for Enter before that measurement), then e.g.

    .venv/bin/py-spy record -o /tmp/profile.txt --format raw -d 10 --threads --pid <pid>
    .venv/bin/python bench/pyspy_summary.py /tmp/profile.txt
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import Proc, free_port, serve_cmd  # bench/ is not a package: found through sys.path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
APP_REF = "bench/compare/durably_app.py:app"
STEPS_PER_INVOCATION = 10
BODY = '"hello"'
NOISE_LIMIT = 0.25  # CPUs' worth of other load that makes a measurement suspect

# POST with a JSON body. Each wrk thread counts responses outside 2xx (wrk's own error count only covers
# >= 400); done() sums them and prints one machine-readable line with the percentiles of wrk's --latency
# histogram (microseconds). wrk's human-readable report is printed with --verbose.
LUA_TEMPLATE = """\
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"

local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT {{\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p90_us\\": %d, " ..
    "\\"p99_us\\": %d, \\"mean_us\\": %.1f, \\"max_us\\": %d, \\"non2xx\\": %d, \\"connect\\": %d, " ..
    "\\"read\\": %d, \\"write\\": %d, \\"timeout\\": %d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, bad, e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass(frozen=True)
class Workload:
    """One measurement: a handler driven by wrk with a number of connections."""

    name: str
    path: str
    connections: int
    steps: int  # journaled steps per invocation

    @property
    def label(self) -> str:
        return f"{self.name}@{self.connections}"


@dataclass(frozen=True)
class Target:
    """A figure the engine should reach, checked against one workload's result."""

    metric: str  # "steps_per_s", "req_per_s" or "p50_ms"
    op: str  # ">=" or "<"
    value: float

    def describe(self) -> str:
        unit = {"steps_per_s": "steps/s", "req_per_s": "inv/s", "p50_ms": "ms p50"}[self.metric]
        return f"{self.op} {self.value:,.0f} {unit}" if self.value >= 10 else f"{self.op} {self.value:g} {unit}"

    def met(self, r: Result) -> bool:
        got = {"steps_per_s": r.steps_per_s, "req_per_s": r.req_per_s, "p50_ms": r.p50_ms}[self.metric]
        return got >= self.value if self.op == ">=" else got < self.value


@dataclass(frozen=True)
class Result:
    """What wrk measured for one workload."""

    workload: Workload
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    server_cpu: float | None  # server CPU time / wall time (1.0 = one core busy), all threads
    other_cpu: float | None  # CPU used by everything but the server and wrk (other load spoils the figures)

    @property
    def req_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def steps_per_s(self) -> float:
        return self.req_per_s * self.workload.steps


class Server:
    """A `durably serve` subprocess on free ports with a temporary data dir."""

    app_ref = APP_REF  # subclasses serve other bench apps

    def __init__(self, workdir: Path, extra_args: list[str] | None = None) -> None:
        self.workdir = workdir
        self.extra_args = list(extra_args or ())
        self.port = free_port()
        self.admin_port = free_port()
        self.data_dir = workdir / "data"
        self.log_path = workdir / "server.log"
        self.proc = Proc("durably serve", serve_cmd(self.app_ref, self.port, self.admin_port, self.data_dir,
                                                    *self.extra_args), REPO, self.log_path)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> None:
        print(f"starting: {' '.join(self.proc.cmd)}")
        self.proc.start()
        self.proc.wait_healthy(f"{self.base_url}/restate/health", timeout)

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the server process (all threads) has used so far."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # after "(comm)"; utime and stime are fields 14 and 15
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_kib(self) -> int | None:
        """VmHWM (peak resident set) of the server process, in KiB."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        m = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
        return int(m.group(1)) if m else None

    def stop(self, timeout: float = 15.0) -> int | None:
        return self.proc.stop(timeout)

    def log_tail(self, lines: int = 40) -> str:
        return self.proc.log_tail(lines)


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, summed over CPUs (from /proc/stat)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    tck = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / tck, sum(fields) / tck


def busy_cores(interval: float = 1.0) -> float | None:
    """How many CPUs' worth of time the whole machine spent busy over `interval`."""
    a = machine_cpu()
    time.sleep(interval)
    b = machine_cpu()
    if a is None or b is None or b[1] <= a[1]:
        return None
    return (os.cpu_count() or 1) * (b[0] - a[0]) / (b[1] - a[1])


def check_handler(server: Server, path: str) -> None:
    """One request before measuring: the handler answers 200 with the expected output."""
    req = urllib.request.Request(f"{server.base_url}{path}", data=BODY.encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        out = json.loads(resp.read())
    expected = json.loads(BODY) if path.endswith("/echo") else sum(range(STEPS_PER_INVOCATION))
    if resp.status != 200 or out != expected:
        raise RuntimeError(f"POST {path}: status {resp.status}, output {out!r}, expected {expected!r}")


def children_cpu() -> float:
    """User + system CPU seconds of reaped child processes (the wrk runs; the server is reaped only at the end)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_wrk(wrk: str, url: str, lua: Path, connections: int, threads: int,
            duration: float) -> tuple[dict[str, float], str]:
    """Run wrk once; return the numbers printed by the Lua done() hook and wrk's full output."""
    cmd = [wrk, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(1, round(duration))}s",
           "--timeout", "30s", "--latency", "-s", str(lua), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    m = re.search(r"^BENCH_RESULT (\{.*\})$", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return json.loads(m.group(1)), proc.stdout


def measure(wrk: str, server: Server, lua: Path, w: Workload, threads: int, duration: float, warmup: float,
            verbose: bool) -> Result:
    url = f"{server.base_url}{w.path}"
    if warmup > 0:
        run_wrk(wrk, url, lua, w.connections, threads, warmup)
    srv0, wrk0, mach0, t0 = server.cpu_seconds(), children_cpu(), machine_cpu(), time.monotonic()
    stats, text = run_wrk(wrk, url, lua, w.connections, threads, duration)
    srv1, wrk1, mach1, t1 = server.cpu_seconds(), children_cpu(), machine_cpu(), time.monotonic()
    server_cpu = other_cpu = None
    if srv0 is not None and srv1 is not None:
        server_cpu = (srv1 - srv0) / (t1 - t0)
        if mach0 is not None and mach1 is not None:
            other_cpu = max(0.0, (mach1[0] - mach0[0] - (srv1 - srv0) - (wrk1 - wrk0)) / (t1 - t0))
    if verbose:
        print("\n" + text.rstrip())
    socket_errors = int(stats["connect"] + stats["read"] + stats["write"] + stats["timeout"])
    return Result(workload=w, requests=int(stats["requests"]), duration_s=stats["duration_us"] / 1e6,
                  p50_ms=stats["p50_us"] / 1000, p90_ms=stats["p90_us"] / 1000, p99_ms=stats["p99_us"] / 1000,
                  max_ms=stats["max_us"] / 1000, non_2xx=int(stats["non2xx"]), socket_errors=socket_errors,
                  server_cpu=server_cpu, other_cpu=other_cpu)


def print_table(results: list[Result], targets: dict[str, Target]) -> tuple[bool, bool]:
    """Print the results; return (every target met, no request failed)."""
    header = (f"{'workload':<14} {'conns':>5} {'req/s':>9} {'steps/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'max ms':>8} {'non-2xx':>7} {'sockerr':>7} {'srv CPU':>7} {'other':>5}  target")
    print(header)
    print("-" * (len(header) + 24))
    ok = True
    clean = True
    for r in results:
        w = r.workload
        steps = f"{r.steps_per_s:9,.0f}" if w.steps else f"{'-':>9}"
        target = targets.get(w.label)
        verdict = ""
        if target is not None:
            met = target.met(r)
            ok &= met
            verdict = f"{target.describe()}  {'OK' if met else 'MISSED'}"
        cpu = f"{r.server_cpu:6.0%}" if r.server_cpu is not None else "?"
        other = f"{r.other_cpu:4.0%}" if r.other_cpu is not None else "?"
        print(f"{w.name:<14} {w.connections:>5} {r.req_per_s:9,.0f} {steps} {r.p50_ms:8.2f} {r.p99_ms:8.2f} "
              f"{r.max_ms:8.1f} {r.non_2xx:>7} {r.socket_errors:>7} {cpu:>7} {other:>5}  {verdict}".rstrip())
    print("(srv CPU: the server process's CPU time, all threads, over wall time; 100% = one core busy."
          "\n other: CPU used meanwhile by anything but the server and wrk, incl. the kernel's own threads)")
    noisy = [r.workload.label for r in results if r.other_cpu is not None and r.other_cpu > NOISE_LIMIT]
    if noisy:
        print(f"\nWARNING: other processes used more than {NOISE_LIMIT:.0%} of a CPU during {', '.join(noisy)}; "
              "those figures understate the server (run again on a quiet machine)")
    for r in results:
        if r.non_2xx or r.socket_errors:
            clean = False
            print(f"\n!!!!! WARNING: {r.workload.label}: {r.non_2xx} non-2xx responses and {r.socket_errors} "
                  f"socket errors out of {r.requests} requests — the figures above are NOT valid !!!!!")
    return ok, clean


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="~3 s per measurement (1 s warm-up)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds of warm-up before each measurement")
    parser.add_argument("--connections", type=int, default=32, help="connections for throughput (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: leave the CPU to the server)")
    parser.add_argument("--only", default=None, help="comma-separated workload names (echo,steps10,steps10_sync)")
    parser.add_argument("--no-latency", action="store_true", help="skip the 1-connection latency runs")
    parser.add_argument("--pause-before", default=None, metavar="WORKLOAD@CONNS",
                        help="print the server pid and wait for Enter before this measurement (for profilers)")
    parser.add_argument("--serve-args", default="", help="extra `durably serve` arguments, e.g. --no-metrics")
    parser.add_argument("--verbose", action="store_true", help="print wrk's own output for each measurement")
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    if wrk is None:
        print("error: wrk (HTTP load generator) is not installed. Install it with:\n\n"
              "    sudo apt-get update && sudo apt-get install -y wrk\n\n"
              "(macOS: brew install wrk), then run this script again.", file=sys.stderr)
        return 2

    duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    conns = args.connections
    names = args.only.split(",") if args.only else ["echo", "steps10", "steps10_sync"]
    workloads: list[Workload] = []
    for name in names:
        if name not in ("echo", "steps10", "steps10_sync"):
            parser.error(f"unknown workload {name!r}")
        steps = 0 if name == "echo" else STEPS_PER_INVOCATION
        workloads.append(Workload(name, f"/Bench/{name}", conns, steps))
        if not args.no_latency:
            workloads.append(Workload(name, f"/Bench/{name}", 1, steps))
    targets = {
        f"steps10@{conns}": Target("steps_per_s", ">=", 10_000),
        f"echo@{conns}": Target("req_per_s", ">=", 2_000),
        "echo@1": Target("p50_ms", "<", 1.0),
    }

    background = busy_cores()
    if background is not None and background > NOISE_LIMIT:
        print(f"WARNING: the machine is already busy ({background:.2f} CPUs in use before starting); "
              "the figures will be low and noisy\n")

    with tempfile.TemporaryDirectory(prefix="durably-bench-") as tmp:
        workdir = Path(tmp)
        lua = workdir / "post.lua"
        lua.write_text(LUA_TEMPLATE.format(body=json.dumps(BODY)))
        server = Server(workdir, args.serve_args.split())
        results: list[Result] = []
        peak: int | None = None
        started = False
        try:
            server.start()
            started = True
            print(f"durably serve pid {server.pid} on {server.base_url}, data in {server.data_dir}")
            print(f"wrk: {args.threads} thread(s), {warmup:g} s warm-up + {duration:g} s per measurement, "
                  f"{os.cpu_count()} CPUs\n")
            for name in names:
                check_handler(server, f"/Bench/{name}")
            for w in workloads:
                if args.pause_before == w.label:
                    input(f"paused before {w.label}; server pid {server.pid}. Press Enter to start the measurement ")
                print(f"  {w.label:<18} ...", end="", flush=True)
                r = measure(wrk, server, lua, w, args.threads, duration, warmup, args.verbose)
                print(f" {r.req_per_s:9,.0f} req/s  p50 {r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms")
                results.append(r)
            peak = server.peak_rss_kib()
        finally:
            rc = server.stop()
            if started and rc not in (0, None):
                print(f"WARNING: durably serve exited with {rc}; log tail:\n{server.log_tail()}")

    print()
    targets_met, clean = print_table(results, targets)
    if peak is not None:
        print(f"\nserver peak RSS (VmHWM): {peak / 1024:.1f} MiB")
    print("\ntargets: " + ("all met" if targets_met else "SOME MISSED (see the target column)"))
    # Missed targets are information; failed requests make the run invalid, hence the exit status.
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
