"""Virtual-object benchmark for durably: keyed exclusive handlers with durable state, measured with wrk.

Run from the repository root:

    .venv/bin/python bench/objects_bench.py            # 2 s warm-up + 10 s per workload (about 40 s in all)
    .venv/bin/python bench/objects_bench.py --quick    # 1 s warm-up + 3 s per workload
    .venv/bin/python bench/objects_bench.py --only hot --duration 20 --profile /tmp/objects-profile

It starts `durably serve bench/compare/durably_app.py:app --synchronous full` on free ports with a fresh temporary data
dir, waits for `GET /restate/health`, checks the handlers once (on a key of its own), then for each workload runs
a wrk warm-up followed by the measurement, 32 connections each (see bench/compare/durably_app.py for the app):

    hot       POST /Counter/hot/add            every request on one key: the key's inbox runs them one at a time
    keys100   POST /Counter/key{0..99}/add     each wrk thread cycles through the 100 keys, request by request

The body is the JSON `1`; the handler reads the key's "value" state, adds 1, writes it back and returns it.
Every state change is committed to SQLite (WAL, synchronous=FULL, group commit) before the caller is answered.

Correctness: afterwards the script reads every counter with the shared handler (`POST /Counter/{key}/get`) and
compares the sums with the number of 2xx answers to `add` that wrk received, warm-ups included (OK/MISMATCH).
For that count to be exact no `add` may be in flight when wrk stops (the server finishes an invocation whose
caller went away). So the Lua script stops issuing `add`s at the deadline (LuaJIT ffi clock_gettime) and sends
empty requests afterwards, which never get an answer; wrk itself runs TAIL_S seconds longer, so the last answers
arrive. wrk's -d is whole seconds: the deadline (--duration) is rounded to whole seconds too. req/s is the 2xx
answers to requests sent before the deadline over the deadline's duration; the latency percentiles are wrk's
histogram (all answers, tail included).

Columns: req/s, wrk's p50/p99/max latency, non-2xx answers and socket errors (both must be 0, else a loud
warning and exit status 1), the server's CPU over the measurement window (all threads; 100% = one core), the
event-loop thread's share of it, "other" (CPU used meanwhile by anything but the server and wrk; above a
quarter of a CPU the figures are suspect), and, where `perf` can count syscall tracepoints (root), the server's
fsync + fdatasync calls per second: with WAL and synchronous=FULL one per commit (plus a few per checkpoint),
so req/s divided by it is about the number of invocations' steps per group commit.

Targets: >= 1,000 req/s on the hot key, >= 2,500 req/s over 100 keys. For scale, Restate's server with its Python
SDK did about 300/s (one hot key) and 950/s (100 keys) on the machine these targets were set on. Missed targets
are reported, not treated as failure; the exit status is 1 if a request failed or the counters do not match.

Requires wrk (built with LuaJIT, as Debian's is). To profile the server under a workload, pass
`--profile DIR`: after each measurement an extra (uncounted in the table, counted in the check) wrk run is
profiled with `py-spy record --format raw --gil -r 200` and summarised with bench/pyspy_summary.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from http_bench import NOISE_LIMIT, REPO, Server, busy_cores, machine_cpu

APP_REF = "bench/compare/durably_app.py:app"
TAIL_S = 2  # wrk runs this much longer than the Lua deadline, so every `add` sent before it is answered
CHECK_KEY = "check"  # the key of the one-off handler check, outside every workload
HOT_TARGET = 1_000.0
KEYS_TARGET = 2_500.0
PROFILE_SECONDS = 8

# Each wrk thread cycles through KEYS (starting at its own offset) until the deadline, then sends empty requests
# (no bytes reach the server, no answer comes, wrk records nothing). Per thread it counts requests sent, 2xx answers
# before and after the deadline, and other answers; done() sums them over threads and prints one machine-readable
# line with the percentiles of wrk's --latency histogram (microseconds).
LUA_TEMPLATE = """\
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} objects_bench_timespec;
int clock_gettime(int clk_id, objects_bench_timespec *tp);
]]
local ts = ffi.new("objects_bench_timespec")
local CLOCK_MONOTONIC = 1
local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local KEYS = {{{keys}}}
local DURATION = {duration}
local threads = {{}}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  sent, ok, late, non2xx = 0, 0, 0, 0
  deadline = nil
  requests = {{}}
  local headers = {{["Content-Type"] = "application/json"}}
  for i, key in ipairs(KEYS) do
    requests[i] = wrk.format("POST", "/Counter/" .. key .. "/add", headers, "1")
  end
  nxt = (id * 7) % #KEYS
end

function request()
  local t = now()
  if deadline == nil then
    deadline = t + DURATION
  end
  if t >= deadline then
    return ""
  end
  sent = sent + 1
  nxt = nxt % #KEYS + 1
  return requests[nxt]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif now() < deadline then
    ok = ok + 1
  else
    late = late + 1
  end
end

function done(summary, latency, requests)
  local s, o, l, bad = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("sent")
    o = o + t:get("ok")
    l = l + t:get("late")
    bad = bad + t:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT {{\\"requests\\": %d, \\"duration_us\\": %d, \\"sent\\": %d, \\"ok\\": %d, \\"late\\": %d, " ..
    "\\"non2xx\\": %d, \\"p50_us\\": %d, \\"p90_us\\": %d, \\"p99_us\\": %d, \\"mean_us\\": %.1f, " ..
    "\\"max_us\\": %d, \\"connect\\": %d, \\"read\\": %d, \\"write\\": %d, \\"timeout\\": %d}}\\n",
    summary.requests, summary.duration, s, o, l, bad, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass(frozen=True)
class Workload:
    """One measurement: `add` on a set of keys, driven by wrk with a number of connections."""

    name: str
    keys: tuple[str, ...]
    connections: int
    target_req_per_s: float


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run reported, plus CPU figures over its measurement window."""

    duration_s: float  # the Lua deadline's duration
    sent: int  # `add` requests sent
    ok: int  # 2xx answers to requests sent before the deadline that arrived before it
    late: int  # 2xx answers that arrived after the deadline
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu: float | None  # server CPU time / wall time over the deadline window (1.0 = one core), all threads
    loop_cpu: float | None  # the same for the server's main (event-loop) thread alone
    other_cpu: float | None  # CPU used by everything but the server and wrk over the window
    fsyncs: int | None  # the server's fsync + fdatasync calls over the window (None: perf unavailable)
    output: str

    @property
    def adds(self) -> int:
        """Successful `add` calls: each one incremented a counter."""
        return self.ok + self.late

    @property
    def pending(self) -> int:
        """`add`s sent but never answered (in flight when wrk stopped, or lost to a socket error).

        wrk calls request() once more than it sends, on its first thread at start-up, to check the script
        (script_verify_request): hence the 1.
        """
        return self.sent - 1 - self.ok - self.late - self.non_2xx

    @property
    def req_per_s(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0


class ObjectsServer(Server):
    """http_bench's Server, serving bench/compare/durably_app.py."""

    app_ref = APP_REF

    def main_thread_cpu_seconds(self) -> float | None:
        """User + system CPU time of the server's main thread (the event loop) so far."""
        return proc_cpu_seconds(f"/proc/{self.pid}/task/{self.pid}/stat")

    def call(self, key: str, handler: str, body: bytes | None = None) -> object:
        """POST /Counter/{key}/{handler}; the decoded JSON answer (raises on non-2xx)."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        req = urllib.request.Request(f"{self.base_url}/Counter/{key}/{handler}", data=body or b"",
                                     headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())


def proc_cpu_seconds(stat_path: str) -> float | None:
    """User + system CPU seconds from a /proc/.../stat file (a process or one of its threads)."""
    try:
        stat = Path(stat_path).read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "(comm)"; utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def perf_available() -> bool:
    """Whether `perf stat` can count syscall tracepoints here (needs perf and, usually, root)."""
    perf = shutil.which("perf")
    if perf is None:
        return False
    proc = subprocess.run([perf, "stat", "-x,", "-e", "syscalls:sys_enter_fsync", "--", "true"],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and "syscalls:sys_enter_fsync" in proc.stderr and "<not" not in proc.stderr


def start_fsync_count(pid: int, seconds: float) -> subprocess.Popen[str]:
    """Count the process's fsync/fdatasync calls (all its threads) for `seconds`, in the background."""
    perf = shutil.which("perf") or "perf"
    return subprocess.Popen([perf, "stat", "-x,", "-e", "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync",
                             "-p", str(pid), "--", "sleep", f"{seconds:.3f}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish_fsync_count(proc: subprocess.Popen[str]) -> int | None:
    _, err = proc.communicate()
    total = 0
    seen = False
    for line in err.splitlines():
        fields = line.split(",")
        if len(fields) >= 3 and fields[2].startswith("syscalls:sys_enter_f") and fields[0].strip().isdigit():
            total += int(fields[0])
            seen = True
    return total if seen else None


def write_lua(path: Path, keys: tuple[str, ...], duration: int) -> None:
    path.write_text(LUA_TEMPLATE.format(keys=", ".join(json.dumps(k) for k in keys), duration=duration))


def run_wrk(wrk: str, server: ObjectsServer, lua: Path, connections: int, threads: int, duration: int,
            count_fsyncs: bool) -> WrkRun:
    """One wrk run: `duration` s of `add`s, then TAIL_S s for the last answers; CPU sampled over the first part."""
    cmd = [wrk, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{duration + TAIL_S}s",
           "--timeout", "30s", "--latency", "-s", str(lua), server.base_url]
    perf = start_fsync_count(server.pid, duration) if count_fsyncs else None
    srv0, loop0, mach0, t0 = server.cpu_seconds(), server.main_thread_cpu_seconds(), machine_cpu(), time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wrk_stat = f"/proc/{proc.pid}/stat"
    time.sleep(max(0.0, t0 + duration - time.monotonic()))
    srv1, loop1, mach1, wrk_cpu, t1 = (server.cpu_seconds(), server.main_thread_cpu_seconds(), machine_cpu(),
                                       proc_cpu_seconds(wrk_stat), time.monotonic())
    out, err = proc.communicate()
    fsyncs = finish_fsync_count(perf) if perf is not None else None
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {' '.join(cmd)}\n{out}\n{err}")
    stats = json.loads(line.removeprefix("BENCH_RESULT "))
    wall = t1 - t0
    server_cpu = loop_cpu = other_cpu = None
    if srv0 is not None and srv1 is not None:
        server_cpu = (srv1 - srv0) / wall
        if mach0 is not None and mach1 is not None:
            other_cpu = max(0.0, (mach1[0] - mach0[0] - (srv1 - srv0) - (wrk_cpu or 0.0)) / wall)
    if loop0 is not None and loop1 is not None:
        loop_cpu = (loop1 - loop0) / wall
    return WrkRun(duration_s=float(duration), sent=int(stats["sent"]), ok=int(stats["ok"]), late=int(stats["late"]),
                  non_2xx=int(stats["non2xx"]),
                  socket_errors=int(stats["connect"] + stats["read"] + stats["write"] + stats["timeout"]),
                  p50_ms=stats["p50_us"] / 1000, p99_ms=stats["p99_us"] / 1000, max_ms=stats["max_us"] / 1000,
                  server_cpu=server_cpu, loop_cpu=loop_cpu, other_cpu=other_cpu, fsyncs=fsyncs, output=out)


def profile(wrk: str, server: ObjectsServer, lua: Path, w: Workload, threads: int, out_dir: Path) -> WrkRun:
    """An extra wrk run with py-spy attached to the server; prints the summary of the profile."""
    py_spy = Path(sys.executable).parent / "py-spy"
    raw = out_dir / f"{w.name}.txt"
    cmd = [str(py_spy), "record", "--format", "raw", "--gil", "-d", str(PROFILE_SECONDS), "-r", "200",
           "--pid", str(server.pid), "-o", str(raw)]
    print(f"\nprofiling {w.name}: {' '.join(cmd)}")
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # let py-spy attach before the load starts
    run = run_wrk(wrk, server, lua, w.connections, threads, PROFILE_SECONDS + 1, count_fsyncs=False)
    _, err = spy.communicate()
    print(f"  (under the profiler: {run.req_per_s:,.0f} req/s)")
    if spy.returncode != 0 or not raw.exists():
        print(f"  py-spy failed ({spy.returncode}): {err.strip()}")
        return run
    summary = subprocess.run([sys.executable, str(REPO / "bench" / "pyspy_summary.py"), str(raw), "--top", "25"],
                             capture_output=True, text=True, check=False)
    print(summary.stdout.rstrip() or summary.stderr.rstrip())
    return run


def print_table(results: list[tuple[Workload, WrkRun]]) -> tuple[bool, bool]:
    """Print the results; return (every target met, no request failed)."""
    header = (f"{'workload':<9} {'conns':>5} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'non-2xx':>7} "
              f"{'sockerr':>7} {'srv CPU':>7} {'loop':>5} {'other':>5} {'fsync/s':>7} {'req/fsync':>9}  target")
    print(header)
    print("-" * (len(header) + 22))
    ok = clean = True
    for w, r in results:
        met = r.req_per_s >= w.target_req_per_s
        ok &= met
        cpu = f"{r.server_cpu:.0%}" if r.server_cpu is not None else "?"
        loop = f"{r.loop_cpu:.0%}" if r.loop_cpu is not None else "?"
        other = f"{r.other_cpu:.0%}" if r.other_cpu is not None else "?"
        fsync_s = f"{r.fsyncs / r.duration_s:,.0f}" if r.fsyncs is not None else "?"
        per_fsync = f"{r.req_per_s * r.duration_s / r.fsyncs:.2f}" if r.fsyncs else "?"
        print(f"{w.name:<9} {w.connections:>5} {r.req_per_s:7,.0f} {r.p50_ms:7.2f} {r.p99_ms:7.2f} {r.max_ms:7.1f} "
              f"{r.non_2xx:>7} {r.socket_errors:>7} {cpu:>7} {loop:>5} {other:>5} {fsync_s:>7} {per_fsync:>9}  "
              f">= {w.target_req_per_s:,.0f} req/s  {'OK' if met else 'MISSED'}")
    print("(srv CPU: the server process's CPU time, all threads, over wall time; 100% = one core busy. loop: its main\n"
          " (event-loop) thread alone. other: CPU used meanwhile by anything but the server and wrk. fsync/s: the\n"
          " server's fsync + fdatasync calls, about one per group commit; req/fsync: invocations per fsync)")
    noisy = [w.name for w, r in results if r.other_cpu is not None and r.other_cpu > NOISE_LIMIT]
    if noisy:
        print(f"\nWARNING: other processes used more than {NOISE_LIMIT:.0%} of a CPU during {', '.join(noisy)}; "
              "those figures understate the server (run again on a quiet machine)")
    for w, r in results:
        if r.non_2xx or r.socket_errors:
            clean = False
            print(f"\n!!!!! WARNING: {w.name}: {r.non_2xx} non-2xx responses and {r.socket_errors} socket errors out "
                  f"of {r.sent} requests — the figures above are NOT valid !!!!!")
    return ok, clean


def verify(server: ObjectsServer, workloads: list[Workload], adds: dict[str, int], pending: dict[str, int]) -> bool:
    """Compare each workload's counters (read with the shared `get`) with the 2xx `add` answers wrk received."""
    print("\ncorrectness: sum of the counters (POST /Counter/{key}/get) vs 2xx answers to add (warm-ups included)")
    all_ok = True
    for w in workloads:
        values = [server.call(k, "get") for k in w.keys]
        if not all(isinstance(v, int) for v in values):
            print(f"  {w.name:<9} unexpected answers from get: {values[:5]!r}...  MISMATCH")
            all_ok = False
            continue
        counts = [v for v in values if isinstance(v, int)]
        total = sum(counts)
        spread = f"  (per key {min(counts):,} .. {max(counts):,})" if len(counts) > 1 else ""
        diff = total - adds[w.name]
        verdict = "OK" if diff == 0 else f"MISMATCH ({diff:+,})"
        all_ok &= diff == 0
        print(f"  {w.name:<9} counters {total:>9,}  wrk 2xx adds {adds[w.name]:>9,}  {verdict}{spread}")
        if pending[w.name]:
            print(f"            ({pending[w.name]} adds were never answered: in flight when wrk stopped or lost to "
                  "a socket error; the server may have applied them)")
    return all_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s per measurement (1 s warm-up)")
    parser.add_argument("--duration", type=int, default=None, help="whole seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=None, help="whole seconds of warm-up (default 2; 0 = none)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: leave the CPU to the server)")
    parser.add_argument("--only", default=None, help="comma-separated workload names (hot,keys100)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help=f"after each measurement, profile a {PROFILE_SECONDS} s run with py-spy into DIR")
    parser.add_argument("--verbose", action="store_true", help="print wrk's own output for each measurement")
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    if wrk is None:
        print("error: wrk (HTTP load generator) is not installed. Install it with:\n\n"
              "    sudo apt-get update && sudo apt-get install -y wrk\n", file=sys.stderr)
        return 2
    duration: int = args.duration if args.duration is not None else (3 if args.quick else 10)
    warmup: int = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    conns: int = args.connections
    available = {
        "hot": Workload("hot", ("hot",), conns, HOT_TARGET),
        "keys100": Workload("keys100", tuple(f"key{i}" for i in range(100)), conns, KEYS_TARGET),
    }
    names = args.only.split(",") if args.only else list(available)
    for name in names:
        if name not in available:
            parser.error(f"unknown workload {name!r} (choose from {', '.join(available)})")
    workloads = [available[n] for n in names]
    count_fsyncs = perf_available()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    background = busy_cores()
    if background is not None and background > NOISE_LIMIT:
        print(f"WARNING: the machine is already busy ({background:.2f} CPUs in use before starting); "
              "the figures will be low and noisy\n")

    results: list[tuple[Workload, WrkRun]] = []
    adds = {w.name: 0 for w in workloads}
    pending = {w.name: 0 for w in workloads}
    counters_ok = False
    peak: int | None = None
    with tempfile.TemporaryDirectory(prefix="durably-objects-bench-") as tmp:
        workdir = Path(tmp)
        server = ObjectsServer(workdir)
        started = False
        try:
            server.start()
            started = True
            print(f"durably serve pid {server.pid} on {server.base_url}, data in {server.data_dir}")
            print(f"wrk: {args.threads} thread(s), {conns} connections, {warmup} s warm-up + {duration} s per "
                  f"measurement (+{TAIL_S} s for the last answers), {os.cpu_count()} CPUs; fsync counting "
                  f"{'with perf' if count_fsyncs else 'unavailable (needs perf and root)'}\n")
            first, second = server.call(CHECK_KEY, "add", b"1"), server.call(CHECK_KEY, "add", b"1")
            got = server.call(CHECK_KEY, "get")
            if (first, second, got) != (1, 2, 2):
                raise RuntimeError(f"handler check on key {CHECK_KEY!r}: add, add, get answered {first}, {second}, "
                                   f"{got}; expected 1, 2, 2")
            for w in workloads:
                lua = workdir / f"{w.name}.lua"
                write_lua(lua, w.keys, duration)
                print(f"  {w.name:<9} ...", end="", flush=True)
                if warmup > 0:
                    warm_lua = workdir / f"{w.name}-warmup.lua"
                    write_lua(warm_lua, w.keys, warmup)
                    warm = run_wrk(wrk, server, warm_lua, w.connections, args.threads, warmup, count_fsyncs=False)
                    adds[w.name] += warm.adds
                    pending[w.name] += warm.pending
                r = run_wrk(wrk, server, lua, w.connections, args.threads, duration, count_fsyncs)
                adds[w.name] += r.adds
                pending[w.name] += r.pending
                print(f" {r.req_per_s:7,.0f} req/s  p50 {r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms")
                if args.verbose:
                    print(r.output.rstrip())
                results.append((w, r))
                if args.profile is not None:
                    plua = workdir / f"{w.name}-profile.lua"
                    write_lua(plua, w.keys, PROFILE_SECONDS + 1)
                    p = profile(wrk, server, plua, w, args.threads, args.profile)
                    adds[w.name] += p.adds
                    pending[w.name] += p.pending
                    print()
            counters_ok = verify(server, workloads, adds, pending)
            peak = server.peak_rss_kib()
        finally:
            rc = server.stop()
            if started and rc not in (0, None):
                print(f"WARNING: durably serve exited with {rc}; log tail:\n{server.log_tail()}")

    print()
    targets_met, clean = print_table(results)
    if peak is not None:
        print(f"\nserver peak RSS (VmHWM): {peak / 1024:.1f} MiB")
    print("\ntargets: " + ("all met" if targets_met else "SOME MISSED (see the target column)"))
    print("counters: " + ("OK" if counters_ok else "MISMATCH"))
    return 0 if clean and counters_ok else 1


if __name__ == "__main__":
    sys.exit(main())
