"""How many journaled steps run more than once when a deployment's worker processes are SIGKILLed, per SDK.

Run from the repository root (needs `bash scripts/test.sh` to have installed `.interop/`):

    .venv/bin/python bench/worker_kill_repeats.py                    # 3 runs, 300 invocations per run
    .venv/bin/python bench/worker_kill_repeats.py --runs 6 --invocations 1000 --kills 2

Setup, the same for both SDKs: one restate-server 1.7.12 node on loopback, and bench/worker_kill_app.py (one
handler, 5 journaled steps, sync and async alternating, each appending an fsynced effect line with a nonce per
execution) served by
  (a) Durably: `durably endpoint worker_kill_app.py:app --workers 2` (its supervisor replaces killed workers);
  (b) restate-sdk 1.2.0: two hypercorn processes on one shared listening socket, restarted by this script
      when they die (hypercorn's own `--workers` supervisor stops everything when a worker dies).
The load: `--invocations` calls of `KillBench/run` through the ingress, `--concurrency` at a time. Whenever the
effect file reaches 1/(k+1), 2/(k+1), ... of all the steps, every worker process is SIGKILLed at once.
Counted per run: steps executed more than once (a step with two or more effect lines), and for each lost
execution whether the step was still running at the kill or had returned before it (its result unsent or not
yet journaled: the part an SDK's send path decides). Every invocation must
answer 200 with the nonces of real executions; the run fails loudly otherwise.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from interop_bench import INTEROP, SDK_VENV, start_restate  # bench/ is not a package: see sys.path
from procs import Proc, durably_cmd, free_port, healthy, request, wait_until

BENCH_DIR = Path(__file__).resolve().parent
APP = "worker_kill_app:app"
SERVICE = "KillBench"
STEPS = 5
SDKS = ("durably", "restate-sdk")


class Deployment:
    """The app served with two worker processes; `kill_workers` SIGKILLs them, something replaces them."""

    url: str

    def start(self) -> None: ...
    def worker_pids(self) -> list[int]: ...
    def kill_workers(self) -> int:
        pids = self.worker_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self) -> None: ...


class DurablyDeployment(Deployment):
    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = Proc("durably-endpoint", durably_cmd("endpoint", APP, "--port", str(port), "--workers", "2",
                                                         "--graceful-timeout", "2", "--log-level", "debug"),
                         cwd=BENCH_DIR, log_path=workdir / "endpoint.log", env=env)

    def start(self) -> None:
        self.proc.start()
        wait_until(lambda: healthy(f"{self.url}/health") and len(self._started()) >= 2, 60, "durably endpoint",
                   self.proc)

    def _started(self) -> list[int]:
        return [int(line.split("worker ")[1].split()[0]) for line in
                self.proc.log_path.read_text(errors="replace").splitlines()
                if "durably endpoint: worker" in line and line.endswith("started")]

    def worker_pids(self) -> list[int]:
        return [pid for pid in self._started() if Path(f"/proc/{pid}").exists()]

    def stop(self) -> None:
        self.proc.stop()


class HypercornDeployment(Deployment):
    """Two `hypercorn --bind fd://N` processes on one listening socket, each respawned when it exits."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.sock.set_inheritable(True)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.env = {**os.environ, **env}
        self.log = (workdir / "hypercorn.log").open("ab")
        self.workers: list[subprocess.Popen[bytes]] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.respawner = threading.Thread(target=self._respawn, daemon=True)

    def _spawn(self) -> subprocess.Popen[bytes]:
        fd = self.sock.fileno()
        cmd = [str(SDK_VENV / "bin" / "hypercorn"), "--config", str(BENCH_DIR / "compare" / "hypercorn.toml"),
               # --workers 0: this process is the worker (with 1, hypercorn forks one and a SIGKILL of this pid
               # would leave it serving).
               "--workers", "0", "--bind", f"fd://{fd}", APP]
        return subprocess.Popen(cmd, cwd=BENCH_DIR, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                pass_fds=(fd,), start_new_session=True)

    def _respawn(self) -> None:
        while not self.stopping.wait(0.02):
            with self.lock:
                for i, w in enumerate(self.workers):
                    if w.poll() is not None and not self.stopping.is_set():
                        self.workers[i] = self._spawn()

    def start(self) -> None:
        with self.lock:
            self.workers = [self._spawn(), self._spawn()]
        self.respawner.start()
        wait_until(lambda: healthy(f"{self.url}/health"), 60, "hypercorn (restate-sdk)")

    def worker_pids(self) -> list[int]:
        with self.lock:
            return [w.pid for w in self.workers if w.poll() is None]

    def stop(self) -> None:
        self.stopping.set()
        self.respawner.join(5)
        for w in self.workers:
            try:
                os.killpg(w.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            w.wait(10)
        self.sock.close()
        self.log.close()


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b""))
    except FileNotFoundError:
        return 0


def one_run(sdk: str, run: int, args: argparse.Namespace, workdir: Path) -> dict[str, int]:
    base = workdir / f"{sdk}-{run}"
    base.mkdir()
    effects = base / "effects.txt"
    env = {"KILL_BENCH_EFFECTS": str(effects), "KILL_BENCH_SDK": "restate" if sdk == "restate-sdk" else "durably",
           "PYTHONPATH": os.pathsep.join(p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH")) if p)}
    deployment: Deployment = (DurablyDeployment if sdk == "durably" else HypercornDeployment)(base, env)
    restate = start_restate(base)
    try:
        deployment.start()
        status, body = request("POST", f"{restate.admin}/deployments", {"uri": deployment.url, "force": True})
        if status not in (200, 201):
            raise RuntimeError(f"registering {deployment.url}: {status} {body}")
        wait_until(lambda: request("POST", f"{restate.ingress}/{SERVICE}/run", "warmup", timeout=30)[0] == 200,
                   60, f"{SERVICE}/run to answer")
        effects.unlink(missing_ok=True)
        total = args.invocations * STEPS
        marks = [total * k // (args.kills + 1) for k in range(1, args.kills + 1)]
        kill_times: list[float] = []

        def killer() -> None:
            for mark in marks:
                while count_lines(effects) < mark and not done.is_set():
                    time.sleep(0.002)
                if done.is_set():
                    return
                kill_times.append(time.time())
                deployment.kill_workers()

        done = threading.Event()
        watcher = threading.Thread(target=killer, daemon=True)
        watcher.start()

        def call(i: int) -> tuple[str, int, object]:
            inv = f"r{run}-i{i}"
            status, out = request("POST", f"{restate.ingress}/{SERVICE}/run", inv, timeout=300)
            return inv, status, out

        t0 = time.monotonic()
        with ThreadPoolExecutor(args.concurrency) as pool:
            answers = list(pool.map(call, range(args.invocations)))
        took = time.monotonic() - t0
        done.set()
        watcher.join(5)
        execs: dict[tuple[str, int], list[str]] = collections.defaultdict(list)
        for line in effects.read_text().splitlines():
            inv, step, nonce = line.split()
            execs[(inv, int(step))].append(nonce)
        for inv, status, out in answers:
            if status != 200 or not isinstance(out, list) or len(out) != STEPS:
                raise RuntimeError(f"{sdk} run {run}: {inv} answered {status} {out!r}")
            for i, nonce in enumerate(out):
                if nonce not in execs[(inv, i)]:
                    raise RuntimeError(f"{sdk} run {run}: {inv} step {i} returned {nonce}, which no execution wrote")
        repeated = sum(1 for v in execs.values() if len(v) > 1)
        extra = sum(len(v) - 1 for v in execs.values())
        # Each lost execution (every one but the last of a step): still running at a kill (no "returned" time,
        # or it returned after the kill) or returned before the kill with its result not yet in the journal.
        trace = {}
        for line in Path(f"{effects}.trace").read_text().splitlines():
            nonce, began, returned = line.split()
            trace[nonce] = (float(began), float(returned))
        running = returned_before = 0
        lags: list[float] = []
        for nonces in execs.values():
            for nonce in nonces[:-1]:
                began, returned = trace.get(nonce, (0.0, float("inf")))
                kill = min((k for k in kill_times if k >= began), default=float("inf"))
                if returned >= kill:
                    running += 1
                else:
                    returned_before += 1
                    lags.append((kill - returned) * 1000)
        lag = f", returned {max(lags):.1f} ms before the kill at most" if lags else ""
        print(f"  {sdk:<12} run {run}: {len(kill_times)} kill(s), {len(execs)} steps, {repeated} repeated "
              f"({extra} extra executions: {running} running at the kill, {returned_before} had returned{lag}),"
              f" {took:.1f} s", flush=True)
        return {"kills": len(kill_times), "steps": len(execs), "repeated": repeated, "extra": extra,
                "running": running, "returned": returned_before}
    finally:
        deployment.stop()
        restate.proc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--invocations", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32, help="invocations in flight at once")
    parser.add_argument("--kills", type=int, default=2, help="worker kills per run, spread evenly over the steps")
    parser.add_argument("--only", choices=SDKS)
    args = parser.parse_args()
    for need in (SDK_VENV / "bin" / "hypercorn", INTEROP / "node_modules" / ".bin" / "restate-server"):
        if not need.exists():
            print(f"error: {need} is missing: run `bash scripts/test.sh`, which installs .interop/", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="durably-kill-bench-"))
    print(f"{args.runs} run(s) per SDK, {args.invocations} invocations x {STEPS} steps, concurrency "
          f"{args.concurrency}, {args.kills} SIGKILL(s) of all workers per run; logs in {workdir}")
    totals: dict[str, list[dict[str, int]]] = {}
    for sdk in ([args.only] if args.only else SDKS):
        totals[sdk] = [one_run(sdk, run, args, workdir) for run in range(1, args.runs + 1)]
    print(f"\n{'SDK':<12} {'runs':>4} {'kills':>5} {'steps':>7} {'repeated':>8} {'extra execs':>11} "
          f"{'running':>7} {'returned':>8}  repeated per run")
    for sdk, runs in totals.items():
        def tot(key: str, runs: list[dict[str, int]] = runs) -> int:
            return sum(r[key] for r in runs)

        print(f"{sdk:<12} {len(runs):>4} {tot('kills'):>5} {tot('steps'):>7} {tot('repeated'):>8} {tot('extra'):>11} "
              f"{tot('running'):>7} {tot('returned'):>8}  {[r['repeated'] for r in runs]}")
    print("(extra execs = executions whose result was lost: `running` = the step was still running at the kill,"
          " `returned` = it had returned before the kill, its result not yet in the journal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
