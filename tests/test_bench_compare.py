"""The comparison benchmark (bench/compare): Durably's twin of the workloads answers as the driver expects,
and the published page names every figure where Durably trails a peer."""

from __future__ import annotations

import importlib.util
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from durably.server.store.base import COL
from durably.testing import TestRuntime

COMPARE = Path(__file__).resolve().parent.parent / "bench" / "compare"


def load(name: str) -> ModuleType:
    sys.path[:0] = [str(COMPARE), str(COMPARE.parent)]
    try:
        spec = importlib.util.spec_from_file_location(f"compare_{name}", COMPARE / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        del sys.path[:2]


@pytest.fixture(scope="module")
def bench_app() -> Any:
    return load("durably_app").app


@pytest.fixture(scope="module")
def driver() -> ModuleType:
    return load("run")


async def test_every_throughput_workload_answers_what_the_driver_checks(bench_app: Any, driver: ModuleType) -> None:
    async with TestRuntime(bench_app) as rt:
        for w in driver.THROUGHPUT:
            if w.name == "fanout":
                continue  # real 100 ms timers: covered with the virtual clock below
            path = (w.path % 7 if w.keys else w.path).lstrip("/")
            service, *rest = path.split("/")
            target = f"{service}/{rest[-1]}" if len(rest) == 1 else f"{service}/{rest[0]}/{rest[1]}"
            got = await rt.call(target, w.body)
            assert got == w.expect if w.expect is not None else isinstance(got, int) and got > 0, w.name


async def test_fanout_waits_for_every_timer(bench_app: Any) -> None:
    async with TestRuntime(bench_app, virtual_clock=True) as rt:
        inv = await rt.send("Bench/fanout", {"n": 100, "ms": 100})
        await rt.settle()
        await rt.advance(timedelta(milliseconds=99))
        assert rt.store.load_invocation(inv)[COL["status"]] != "completed"
        await rt.advance(timedelta(milliseconds=1))
        assert await rt.attach(inv, "Bench/fanout") == 100


async def test_replay_workflow_finishes_after_go_with_its_journal_length(bench_app: Any) -> None:
    async with TestRuntime(bench_app, always_replay=True) as rt:
        inv = await rt.send("Replay/k/run", 50)
        await rt.settle()
        await rt.call("Replay/k/go")
        assert await rt.attach(inv, "Replay/k/run") == 50


def result(workload: str, conns: int, system: str, rps: float) -> dict[str, Any]:
    return {"workload": workload, "connections": conns, "system": system, "failed_requests": 0, "runs": [],
            "median": {"req_per_s": rps, "p50_ms": 1000 / rps, "p99_ms": 2000 / rps, "units_per_s": rps * 10}}


def test_page_states_the_targets_and_every_figure_where_durably_trails() -> None:
    report = load("report")
    results = {
        "throughput": [result("steps10", 32, "durably", 1000), result("steps10", 32, "restate", 100),
                       result("echo", 32, "durably", 3000), result("echo", 32, "restate", 2000),
                       result("payload", 32, "durably", 50), result("payload", 32, "dbos", 80),
                       result("steps1", 1, "durably", 900), result("steps1", 1, "dbos", 100)],
        "recovery": [{"system": "durably", "median_s": 0.5}, {"system": "dbos", "median_s": 2.0}],
        "memory": [{"system": "durably", "per_invocation_kib": 4.0}, {"system": "restate", "per_invocation_kib": 3.0}],
        "replay": [], "skipped": [],
    }
    head, behind = report.verdicts(results)
    text = "\n".join(head)
    assert "10.0" in text and "met" in text  # steps: 10x against a 4.5x target
    assert "1.5" in text and "MISSED" in text  # invocations: 1.5x against 1.8x
    assert "ahead on 2 of the 3 figures" in text
    assert len(behind) == 2
    assert any("payload at 32 connections" in line and "DBOS" in line for line in behind)
    assert any("memory" in line and "Restate" in line for line in behind)
