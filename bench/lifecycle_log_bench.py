"""What the lifecycle log costs the event loop per invocation: `started` and `completed` lines, written at once
by a stream handler (as before) or handed to the log thread of `durably serve` (server/observe/log_format.py).

    .venv/bin/python bench/lifecycle_log_bench.py [--invocations 20000] [--rounds 5]

stderr goes to a file (as under systemd or a log shipper). The figure is the time the calling thread spends in
the two logging calls, median of the rounds; the log thread's own work is not on the loop's path.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from durably.server.engine.invocation import Invocation, Outcome  # noqa: E402
from durably.server.observe.lifecycle_log import LifecycleLog  # noqa: E402
from durably.server.observe.log_format import TEXT_FORMAT, configure_logging  # noqa: E402


def plain_logging() -> None:
    """Every record formatted and written by the calling thread (how `durably serve` logged before)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def one_round(n: int) -> float:
    """Microseconds per invocation spent in the lifecycle calls."""
    events = LifecycleLog()
    invs = [Invocation(id=f"inv_{i:020d}", service="Bench", handler="echo", key="", status="invoked",
                       idempotency_key=None, created_at=0, modified_at=0, journal=None, seq=i) for i in range(n)]
    done = Outcome(value=b"1")
    start = time.perf_counter()
    for inv in invs:
        events.started(inv)
        events.ended(inv, done, 5)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invocations", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log_file = open(Path(tmp) / "serve.log", "w")
        saved = os.dup(2)
        os.dup2(log_file.fileno(), 2)
        sys.stderr = os.fdopen(os.dup(2), "w")
        results: dict[str, list[float]] = {"written by the caller": [], "handed to the log thread": []}
        try:
            for _ in range(args.rounds):
                plain_logging()
                results["written by the caller"].append(one_round(args.invocations))
                configure_logging("info")
                results["handed to the log thread"].append(one_round(args.invocations))
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            sys.stderr = sys.__stderr__
    print(f"lifecycle log, {args.invocations} invocations x 2 lines, median of {args.rounds} rounds:")
    for name, values in results.items():
        print(f"  {name:26} {statistics.median(values):6.1f} us per invocation on the calling thread")


if __name__ == "__main__":
    main()
