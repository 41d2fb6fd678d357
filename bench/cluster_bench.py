"""Latency per journaled step: embedded Durably vs. a Durably app behind one Restate node vs. a 3-node cluster.

Run from the repository root (needs `bash scripts/test.sh` to have installed `.interop/`):

    .venv/bin/python bench/cluster_bench.py              # 200 sequential invocations per setup
    .venv/bin/python bench/cluster_bench.py --calls 50

For each setup, one client calls `POST /Bench/steps10` (10 `ctx.run` steps) and `POST /Bench/echo` (no step)
one after the other, and prints p50/p90/p99 of the invocation latency and the p50 cost of one step,
(steps10 p50 - echo p50) / 10:
  1. embedded: `durably serve bench/compare/durably_app.py:app` (SQLite, fsync on every commit);
  2. one Restate node + `durably endpoint` serving the same app;
  3. three Restate nodes on loopback (replication 2, node 1 auto-provisions) + `durably endpoint`.
All processes share this machine's cores, so the cluster pays for three servers' CPU here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from interop_bench import RESTATE_NATIVE, RESTATE_WRAPPER, start_restate  # bench/ is not a package: see sys.path
from procs import Proc, durably_cmd, free_port, healthy, serve_cmd, wait_until

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


def start_endpoint(workdir: Path) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc("endpoint", durably_cmd("endpoint", "durably_app:app", "--port", str(port), "--log-level", "warning"),
                cwd=BENCH_DIR / "compare", log_path=workdir / "endpoint.log")
    proc.start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: healthy(f"{url}/health"), 30, "durably endpoint", proc)
    return proc, url


def start_embedded(workdir: Path) -> tuple[Proc, str]:
    port, admin = free_port(), free_port()
    proc = Proc("durably", serve_cmd("bench/compare/durably_app.py:app", port, admin, workdir / "data",
                                     synchronous=None), cwd=REPO, log_path=workdir / "durably.log")
    proc.start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: healthy(f"{url}/restate/health"), 30, "durably serve", proc)
    return proc, url


def start_cluster(workdir: Path) -> tuple[list[Proc], str, str]:
    node_ports = [free_port() for _ in range(3)]
    procs, ingresses, admins = [], [], []
    binary = RESTATE_NATIVE if RESTATE_NATIVE.exists() else RESTATE_WRAPPER
    for n in (1, 2, 3):
        ingress, admin = free_port(), free_port()
        env = {
            "RESTATE_CLUSTER_NAME": "bench-cluster", "RESTATE_NODE_NAME": f"n{n}",
            "RESTATE_AUTO_PROVISION": "true" if n == 1 else "false", "RESTATE_DEFAULT_REPLICATION": "2",
            "RESTATE_METADATA_CLIENT__ADDRESSES": json.dumps([f"http://127.0.0.1:{p}" for p in node_ports]),
            "RESTATE_BIND_ADDRESS": f"127.0.0.1:{node_ports[n - 1]}",
            "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{node_ports[n - 1]}/",
            "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ingress}",
            "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{admin}",
            "RESTATE_LISTEN_MODE": "tcp",
        }
        proc = Proc(f"restate-n{n}", [str(binary), "--base-dir", str(workdir / f"n{n}"), "--no-logo"], cwd=workdir,
                    log_path=workdir / f"n{n}.log", env=env)
        proc.start()
        procs.append(proc)
        ingresses.append(f"http://127.0.0.1:{ingress}")
        admins.append(f"http://127.0.0.1:{admin}")
    for proc, ingress, admin in zip(procs, ingresses, admins, strict=True):
        wait_until(lambda i=ingress, a=admin: healthy(f"{a}/health") and healthy(f"{i}/restate/health"), 90,
                   proc.name, proc)
    return procs, ingresses[0], admins[0]


def register(admin: str, uri: str) -> None:
    r = httpx.post(f"{admin}/deployments", json={"uri": uri, "force": True}, timeout=60)
    if r.status_code not in (200, 201):
        raise RuntimeError(f"registering {uri}: {r.status_code} {r.text}")


def latencies(ingress: str, handler: str, calls: int) -> list[float]:
    out = []
    with httpx.Client(timeout=60) as client:
        deadline = time.monotonic() + 60
        while client.post(f"{ingress}/Bench/{handler}", json="hello").status_code != 200:  # schema may lag
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ingress}/Bench/{handler} does not answer 200")
            time.sleep(0.1)
        for _ in range(calls // 10):  # warm-up
            client.post(f"{ingress}/Bench/{handler}", json="hello")
        for _ in range(calls):
            t0 = time.perf_counter()
            r = client.post(f"{ingress}/Bench/{handler}", json="hello")
            out.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                raise RuntimeError(f"{handler}: {r.status_code} {r.text}")
    return out


def report(name: str, ingress: str, calls: int) -> None:
    steps = latencies(ingress, "steps10", calls)
    echo = latencies(ingress, "echo", calls)

    def q(xs: list[float], p: float) -> float:
        return statistics.quantiles(xs, n=100)[int(p) - 1]

    per_step = (statistics.median(steps) - statistics.median(echo)) / 10
    print(f"{name:<28} steps10 p50 {statistics.median(steps):7.2f} ms  p90 {q(steps, 90):7.2f}  p99 {q(steps, 99):7.2f}"
          f" | echo p50 {statistics.median(echo):6.2f} ms | per step {per_step:6.2f} ms", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="durably-cluster-bench-"))
    procs: list[Proc] = []
    try:
        proc, url = start_embedded(workdir)
        procs.append(proc)
        report("embedded (durably serve)", url, args.calls)
        proc.stop()

        ep, ep_url = start_endpoint(workdir)
        procs.append(ep)
        (workdir / "single").mkdir()
        single = start_restate(workdir / "single")
        procs.append(single.proc)
        register(single.admin, ep_url)
        report("1 Restate node + endpoint", single.ingress, args.calls)
        single.proc.stop()

        nodes, ingress, admin = start_cluster(workdir)
        procs.extend(nodes)
        register(admin, ep_url)
        report("3-node cluster + endpoint", ingress, args.calls)
    finally:
        for p in procs:
            p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
