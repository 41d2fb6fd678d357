"""Request identity on the hot path: a Durably deployment's echo throughput with signing and checking off vs on.

Run from the repository root (needs wrk and the `test` extra, which brings hypercorn):

    .venv/bin/python bench/identity_bench.py            # 2 rounds of off/on, 10 s each after a 3 s warm-up
    .venv/bin/python bench/identity_bench.py --quick    # 1 round, 3 s each after a 1 s warm-up

For each setting it starts
  1. hypercorn serving bench/identity_app.py (the comparison benchmark's Durably handlers as a Restate
     deployment), with `identity_keys=[<the key>]` when on, and
  2. `durably serve bench/compare/durably_app.py:no_services --synchronous full`, with
     `--request-identity-key <the PEM>` when on (with `--driver restate`: restate-server from `.interop/`, with
     `worker.invoker.request-identity-private-key-pem-file` when on), which registers the deployment,
then drives `POST /Bench/echo` (no journaled steps: the request path with the least other work, so the
identity check weighs most) through the driver's ingress with wrk at 32 connections. With identity on, every
discovery and invocation request Durably sends carries an EdDSA JWT that it signed and the deployment verifies
(one ed25519 signature and one verification per invocation).

Printed: req/s per run, the medians and the cost (1 - on/off), against the target of at most 10%, and the
per-call cost of signing and verifying measured in this process. The rounds alternate off and on so that
other load on the machine hits both settings alike.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_bench import BODY, LUA_TEMPLATE, busy_cores, run_wrk  # bench/ is not a package: found through sys.path
from interop_bench import RESTATE_NATIVE, RESTATE_WRAPPER, proc_table, tree_cpu
from procs import Proc, free_port, healthy, request, serve_cmd, wait_until

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV_BIN = Path(sys.executable).parent
TARGET_COST = 0.10


def start_driver(driver: str, workdir: Path, on: bool, key_file: Path) -> tuple[Proc, str, str]:
    """durably serve or restate-server, signing with the key when on; returns (process, ingress, admin)."""
    port, admin = free_port(), free_port()
    if driver == "durably":
        extra = ["--request-identity-key", str(key_file)] if on else []
        cmd = serve_cmd("bench/compare/durably_app.py:no_services", port, admin, workdir / "data", *extra)
        proc = Proc("durably", cmd, cwd=REPO, log_path=workdir / "durably.log")
    else:
        node = free_port()
        env = {"RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{port}", "RESTATE_ADMIN__BIND_ADDRESS":
               f"127.0.0.1:{admin}", "RESTATE_BIND_ADDRESS": f"127.0.0.1:{node}", "RESTATE_ADVERTISED_ADDRESS":
               f"http://127.0.0.1:{node}/", "RESTATE_LISTEN_MODE": "tcp"}
        if on:
            env["RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE"] = str(key_file)
        binary = RESTATE_NATIVE if RESTATE_NATIVE.exists() else RESTATE_WRAPPER
        (workdir / "restate").mkdir()
        proc = Proc("restate-server", [str(binary), "--base-dir", str(workdir / "restate"), "--no-logo"],
                    cwd=workdir, log_path=workdir / "restate.log", env=env)
    proc.start()
    ingress, admin_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"
    wait_until(lambda: healthy(f"{ingress}/restate/health") and healthy(f"{admin_url}/health"), 60, driver, proc)
    return proc, ingress, admin_url


def start(driver: str, workdir: Path, on: bool, key_file: Path, public: str) -> tuple[list[Proc], str]:
    """The deployment (hypercorn) and its driver for one setting; returns the processes and the ingress URL."""
    dep_port = free_port()
    env = {"BENCH_IDENTITY_KEY": public} if on else {}
    hyper = Proc("hypercorn", [str(VENV_BIN / "hypercorn"), "--config", "compare/hypercorn.toml", "--bind",
                               f"127.0.0.1:{dep_port}", "identity_app:app"], cwd=BENCH_DIR,
                 log_path=workdir / "hypercorn.log", env=env)
    hyper.start()
    wait_until(lambda: healthy(f"http://127.0.0.1:{dep_port}/health"), 30, "hypercorn", hyper)
    runtime, ingress, admin = start_driver(driver, workdir, on, key_file)
    procs = [hyper, runtime]
    status, body = request("POST", f"{admin}/deployments", {"uri": f"http://127.0.0.1:{dep_port}"})
    if status not in (200, 201):
        raise RuntimeError(f"registration failed: {status} {str(body)[:300]}")
    deadline = time.monotonic() + 30  # Restate applies a registration asynchronously
    while (answer := request("POST", f"{ingress}/Bench/echo", "hello")) != (200, "hello"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"echo check failed: {answer[0]} {str(answer[1])[:300]}")
        time.sleep(0.1)
    return procs, ingress


def crypto_costs() -> tuple[float, float]:
    """Microseconds per signature and per verification, in this process."""
    from durably.protocol.request_identity import (
        IdentityVerifier,
        RequestSigner,
        generate_private_key,
        load_private_key,
    )

    pem, public = generate_private_key()
    signer = RequestSigner(load_private_key(pem))
    verifier = IdentityVerifier([public])
    headers = dict(signer.headers("/invoke/Bench/echo"))
    n = 2000
    sign = timeit.timeit(lambda: signer.headers("/invoke/Bench/echo"), number=n) / n * 1e6
    verify = timeit.timeit(lambda: verifier.verify(headers, "/invoke/Bench/echo"), number=n) / n * 1e6
    return sign, verify


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 round, 1 s warm-up, 3 s per measurement")
    parser.add_argument("--rounds", type=int, default=None, help="off/on rounds (default 2, 1 with --quick)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--driver", choices=("durably", "restate"), default="durably",
                        help="what drives the deployment: durably serve (default) or restate-server")
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed (apt-get install -y wrk)")
        return 2
    rounds = args.rounds or (1 if args.quick else 2)
    duration = args.duration or (3.0 if args.quick else 10.0)
    warmup = 1.0 if args.quick else 3.0
    sign_us, verify_us = crypto_costs()
    print(f"in process: sign {sign_us:.0f} us, verify {verify_us:.0f} us per request")
    results: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="durably-identity-bench-") as tmp:
        from durably.protocol.request_identity import generate_private_key

        pem, public = generate_private_key()
        key_file = Path(tmp) / "identity.pem"
        key_file.write_bytes(pem)
        lua = Path(tmp) / "post.lua"
        lua.write_text(LUA_TEMPLATE.format(body=json.dumps(BODY)))
        for r in range(rounds):
            # Alternate which setting goes first: whatever the machine does meanwhile hits both alike.
            for on in ((False, True) if r % 2 == 0 else (True, False)):
                workdir = Path(tmp) / f"{r}-{'on' if on else 'off'}"
                workdir.mkdir()
                procs, ingress = start(args.driver, workdir, on, key_file, public)
                try:
                    url = f"{ingress}/Bench/echo"
                    run_wrk(wrk, url, lua, args.connections, 1, warmup)
                    other = busy_cores(0.5)
                    before = proc_table()
                    stats, _ = run_wrk(wrk, url, lua, args.connections, 1, duration)
                    after = proc_table()
                    cpu = [tree_cpu(p.pid, after) - tree_cpu(p.pid, before) for p in procs]
                finally:
                    for p in reversed(procs):
                        p.stop()
                if stats["non2xx"] or stats["connect"] or stats["read"] or stats["write"] or stats["timeout"]:
                    print(f"!!!!! WARNING: errors during the run: {stats}")
                    return 1
                rps = stats["requests"] / (stats["duration_us"] / 1e6)
                per_req = [c / stats["requests"] * 1e6 for c in cpu]
                results[on].append(rps)
                cpus[on].append(sum(per_req))
                print(f"round {r + 1} identity {'on ' if on else 'off'}: {rps:8,.0f} req/s  p50 "
                      f"{stats['p50_us'] / 1000:.2f} ms  p99 {stats['p99_us'] / 1000:.2f} ms  CPU per request: "
                      f"hypercorn {per_req[0]:.0f} us, {args.driver} {per_req[1]:.0f} us  (machine busy before: "
                      f"{other if other is not None else float('nan'):.2f} CPUs)")
    off, on = statistics.median(results[False]), statistics.median(results[True])
    cost = 1 - on / off
    cpu_off, cpu_on = statistics.median(cpus[False]), statistics.median(cpus[True])
    print(f"\necho@{args.connections} through {args.driver} -> Durably deployment (hypercorn):")
    print(f"  throughput: identity off {off:,.0f} req/s, on {on:,.0f} req/s: cost {cost:.1%} "
          f"(target at most {TARGET_COST:.0%}: {'MET' if cost <= TARGET_COST else 'MISSED'})")
    print(f"  CPU per request (both processes): off {cpu_off:.0f} us, on {cpu_on:.0f} us: "
          f"+{cpu_on / cpu_off - 1:.1%} (less sensitive to other load than req/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
