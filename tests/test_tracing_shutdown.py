"""Issue 20: a hanging OTLP collector cannot stretch SIGTERM past the shutdown grace. Sending the buffered spans
at stop gets what is left of the grace (at most a few seconds), then the server stops without them and says so."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import durably
from durably.server.observe.tracing import InvocationTracing
from durably.server.process.shutdown import drain
from durably.testing import TestRuntime

svc = durably.Service("T")


@svc.handler()
async def hello(ctx: durably.Context) -> str:
    return await ctx.run_typed("step", lambda: "hi")


APP = durably.app([svc])


class HangingCollector(SpanExporter):
    """A collector that never answers (until the test ends)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.calls += 1
        self.release.wait(120)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.wait(120)


async def test_a_hanging_collector_does_not_stretch_the_stop_past_the_grace(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    collector = HangingCollector()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(collector))
    rt = TestRuntime(APP)
    rt.options.tracing = InvocationTracing(provider)
    try:
        await rt.start()
        assert await rt.call("T/hello") == "hi"
        assert rt.engine is not None
        grace = 1.0
        start = time.monotonic()
        await drain(rt.engine, grace, asyncio.Event())
        await asyncio.wait_for(rt.stop(), 30)
        took = time.monotonic() - start
        assert took < grace + 1.0, f"the stop took {took:.1f} s with a grace of {grace} s"
        assert "spans not sent" in caplog.text and "collector" in caplog.text
    finally:
        collector.release.set()
