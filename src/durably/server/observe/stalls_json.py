"""`GET /threads` on the admin API: what user code holds up (sync-step threads, event-loop stalls)."""

from __future__ import annotations

from typing import Any

from durably.server.engine.engine import Engine


def threads_json(engine: Engine) -> dict[str, Any]:
    """The step threads (running, stuck in aborted steps, refusals at the cap) and the loop's stalls."""
    out: dict[str, Any] = {"run_threads": engine.run_executor.status()}
    monitor = engine.loop_stalls
    out["event_loop"] = monitor.status() if monitor is not None else {"watched": False}
    return out
