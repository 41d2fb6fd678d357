"""Lifecycle log lines: one per event with the invocation id; a poison invocation's retries are rate-limited;
`--log-format json` writes the same records as JSON objects."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from conftest import FAST_RETRIES

import durably
from durably import TerminalError
from durably.server.observe.lifecycle_log import LifecycleLog
from durably.server.observe.log_format import JsonFormatter
from durably.testing import TestRuntime

svc = durably.Service("Life")
failures = {"n": 0}


@svc.handler()
async def ok(ctx: durably.Context) -> str:
    await ctx.sleep(timedelta(milliseconds=1))
    return "fine"


@svc.handler()
async def refuse(ctx: durably.Context) -> str:
    raise TerminalError("no", 422)


@svc.handler()
async def poison(ctx: durably.Context) -> str:
    failures["n"] += 1
    if failures["n"] <= 30:
        raise RuntimeError("database is down")
    return "recovered"


APP = durably.app(services=[svc])


def events(caplog: pytest.LogCaptureFixture, inv: str) -> list[str]:
    return [r.__dict__["event"] for r in caplog.records
            if r.name == "durably.invocations" and r.__dict__.get("invocation_id") == inv]


async def test_one_line_per_event(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="durably.invocations")
    async with TestRuntime(APP, inactivity_timeout=timedelta(0), always_replay=True) as rt:
        inv = await rt.send("Life/ok")
        assert await rt.attach(inv, "Life/ok") == "fine"
        failed = await rt.send("Life/refuse")
        with pytest.raises(TerminalError):
            await rt.attach(failed)
    assert events(caplog, inv)[0] == "started"
    assert "suspended" in events(caplog, inv)
    assert events(caplog, inv)[-1] == "completed"
    assert events(caplog, inv).count("started") == 1
    assert events(caplog, failed) == ["started", "failed"]
    done = next(r for r in caplog.records if r.__dict__.get("event") == "completed")
    assert done.__dict__["duration_ms"] >= 0 and inv in done.getMessage()
    end = next(r for r in caplog.records if r.__dict__.get("event") == "failed")
    assert end.__dict__["error"] == {"code": 422, "message": "no"}


async def test_retries_of_the_same_error_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="durably.invocations")
    failures["n"] = 0
    async with TestRuntime(APP, retry_policy=FAST_RETRIES) as rt:
        inv = await rt.send("Life/poison")
        assert await rt.attach(inv, "Life/poison") == "recovered"
    assert failures["n"] == 31
    # 30 failed attempts within the minute: logged once, then the completion.
    assert events(caplog, inv) == ["started", "retrying", "completed"]
    line = next(r for r in caplog.records if r.__dict__.get("event") == "retrying")
    assert "database is down" in line.getMessage() and line.__dict__["error"]["code"] == 500


def test_a_repeat_after_the_interval_says_how_many_were_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="durably.invocations")
    now = [0.0]
    lifecycle = LifecycleLog(clock=lambda: now[0], interval_s=60)

    class Inv:
        id, service, handler, key, attempts = "inv_1", "S", "h", "", 1

    for t in (0, 1, 2, 3, 61, 62):
        now[0] = t
        lifecycle.retrying(Inv(), 500, "boom", 10)  # type: ignore[arg-type]
    lifecycle.retrying(Inv(), 503, "other", 10)  # type: ignore[arg-type]  # a different error: logged at once
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "3 more time(s)" in lines[1]
    assert "other" in lines[2]


def test_json_format_has_the_extra_fields() -> None:
    record = logging.LogRecord("durably.invocations", logging.INFO, __file__, 1, "invocation %s completed", ("inv_1",),
                               None)
    record.__dict__.update(event="completed", invocation_id="inv_1", duration_ms=12)
    out = json.loads(JsonFormatter().format(record))
    assert out["message"] == "invocation inv_1 completed"
    assert (out["level"], out["logger"], out["event"], out["invocation_id"], out["duration_ms"]) == (
        "info", "durably.invocations", "completed", "inv_1", 12)
    assert out["ts"].endswith("Z")
