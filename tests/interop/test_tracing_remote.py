"""Traces across a remote deployment: `durably serve`'s engine sends the attempt's W3C traceparent on its
/invoke request, so a deployment's own spans join the trace the ingress request started."""

from __future__ import annotations

import durably
from durably.server.observe.tracing import InvocationTracing
from durably.testing import TestRuntime

from .conftest import Deployment

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"

remote = durably.Service("TraceEcho")


@remote.handler()
async def traceparent(ctx: durably.Context) -> str:
    """The traceparent of the request that runs this attempt."""
    return ctx.request().attempt_headers.get("traceparent", "")


@remote.handler()
async def tracestate(ctx: durably.Context) -> str | None:
    """The tracestate of the request that runs this attempt."""
    return ctx.request().attempt_headers.get("tracestate")


async def test_a_remote_attempt_carries_the_traceparent() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    dep = Deployment(durably.app(services=[remote]))
    dep.start()
    try:
        rt = TestRuntime(durably.app(services=[]))
        rt.options.tracing = InvocationTracing(provider)
        async with rt, rt.http() as http:
            await rt.engine.register_deployment(dep.url)  # type: ignore[union-attr]
            resp = await http.post("/TraceEcho/traceparent", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
            assert resp.status_code == 200, resp.text
            sent = resp.json()
            # The tracestate goes along too, as restate-server 1.7.12 sends it (empty when the trace has none).
            state = await http.post("/TraceEcho/tracestate", headers={
                "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "tracestate": "k=v"})
            assert state.json() == "k=v"
            assert (await http.post("/TraceEcho/tracestate")).json() == ""
    finally:
        dep.stop()
    version, trace_id, span_id, _flags = sent.split("-")
    assert (version, trace_id) == ("00", TRACE_ID)
    attempt = next(s for s in exporter.get_finished_spans() if s.name == "TraceEcho/traceparent")
    assert span_id == format(attempt.context.span_id, "016x")  # the deployment's parent is the attempt span
    assert format(attempt.parent.span_id, "016x") == PARENT_ID
