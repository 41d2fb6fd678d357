"""The comparison benchmark's systems and workloads: what bench/compare/run.py measures and
bench/compare/report.py writes up (both import them from here, so neither imports the other for them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PAYLOAD_BYTES = 100 * 1024
FANOUT = {"n": 100, "ms": 100}
SYSTEM_KEYS = ("durably", "durably-p2", "durably-sdk", "restate", "dbos")
LABELS = {
    "durably": "Durably (embedded)",
    "durably-p2": "Durably (embedded, 2 partitions)",
    "durably-sdk": "Durably → restate-sdk",
    "restate": "Restate → restate-sdk",
    "dbos": "DBOS (SQLite)",
}


@dataclass(frozen=True)
class Workload:
    """A handler driven by wrk: its path, request body, expected answer and what one request is worth."""

    name: str
    title: str
    path: str  # a "%d" in it is replaced by a random key from 1 to `keys` for each request
    body: Any
    expect: Any  # the answer to one request, checked before measuring (None: any integer > 0)
    connections: tuple[int, ...]
    unit: str | None = None  # what per_request counts (journaled steps, timers)
    per_request: int = 0
    keys: int = 0
    keyed: bool = False  # needs virtual objects (keyed state, one writer per key)


THROUGHPUT = [
    Workload("echo", "Echo: a handler that returns its input", "/Bench/echo", "hello", "hello", (1, 32)),
    Workload("steps1", "1 journaled step", "/Bench/steps1", "x", 0, (1, 32), "steps", 1),
    Workload("steps3", "3 journaled steps", "/Bench/steps3", "x", 3, (1, 32), "steps", 3),
    Workload("steps10", "10 journaled steps", "/Bench/steps10", "x", 45, (1, 32), "steps", 10),
    Workload("steps10sync", "10 journaled steps with sync closures", "/Bench/steps10_sync", "x", 45, (1, 32),
             "steps", 10),
    Workload("payload", "One step with a 100 KB payload", "/Bench/payload", "x" * PAYLOAD_BYTES, PAYLOAD_BYTES,
             (1, 32), "steps", 1),
    Workload("fanout", "Fan-out of 100 concurrent 100 ms sleeps", "/Bench/fanout", FANOUT, FANOUT["n"], (1, 32),
             "timers", FANOUT["n"]),
    Workload("hotkey", "One hot virtual-object key (exclusive handler, state read + write)", "/Counter/hot/add", 1,
             None, (32,), keyed=True),
    Workload("keys100", "100 virtual-object keys, chosen at random", "/Counter/k%d/add", 1, None, (32,), keys=100,
             keyed=True),
]
OTHER = ("recovery", "replay", "memory")
