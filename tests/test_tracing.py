"""Server-side OpenTelemetry spans, received by an in-process OTLP/HTTP collector: the ingress traceparent is
the parent of the attempt, steps are children of their attempt, a call's span is the parent of the callee's
attempt, and replayed steps are marked."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import durably
from durably.server.observe.tracing import from_environment
from durably.testing import TestRuntime

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"

callee = durably.Service("Callee")


@callee.handler()
async def shout(ctx: durably.Context, text: str) -> str:
    return await ctx.run_typed("upper", lambda: text.upper())


caller = durably.Service("Caller")


@caller.handler()
async def greet(ctx: durably.Context, name: str) -> str:
    loud = await ctx.service_call(shout, name)
    return f"hello {loud}"


APP = durably.app(services=[caller, callee])


class Collector:
    """An OTLP/HTTP trace receiver on a free loopback port; keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                for rs in req.resource_spans:
                    for ss in rs.scope_spans:
                        received.extend(ss.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Collector]:
    c = Collector()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", c.url)
    try:
        yield c
    finally:
        c.close()


def attr(span: Any, name: str) -> Any:
    for a in span.attributes:
        if a.key == name:
            v = a.value
            return getattr(v, v.WhichOneof("value"))
    return None


@pytest.mark.parametrize("always_replay", [False, True])
async def test_trace_spans_a_call_between_services(collector: Collector, always_replay: bool) -> None:
    rt = TestRuntime(APP, always_replay=always_replay)
    rt.options.tracing = from_environment()
    assert rt.options.tracing is not None
    async with rt, rt.http() as http:
        resp = await http.post("/Caller/greet", json="ann",
                               headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        assert resp.json() == "hello ANN"
    # Stopping the runtime flushed the spans to the collector.
    spans = collector.spans
    assert spans, "no spans received"
    assert {s.trace_id.hex() for s in spans} == {TRACE_ID}
    by_id = {s.span_id: s for s in spans}
    live = [s for s in spans if attr(s, "durably.replayed") is not True]
    caller_attempts = [s for s in spans if s.name == "Caller/greet"]
    callee_attempts = [s for s in spans if s.name == "Callee/shout"]
    assert caller_attempts[0].parent_span_id.hex() == PARENT_ID
    call = next(s for s in live if s.name == "call Callee/shout")
    assert by_id[call.parent_span_id].name == "Caller/greet"
    assert attr(call, "durably.target") == "Callee/shout"
    assert callee_attempts[0].parent_span_id == call.span_id
    run = next(s for s in live if s.name == "run upper")
    assert by_id[run.parent_span_id].name == "Callee/shout"
    assert all(attr(s, "durably.invocation_id") for s in caller_attempts + callee_attempts)
    replayed = [s for s in spans if attr(s, "durably.replayed") is True]
    if always_replay:
        # Every resumption replays what was recorded: the call and the run show up again, marked.
        assert {s.name for s in replayed} >= {"call Callee/shout", "run upper"}
        assert len(caller_attempts) > 1
    else:
        assert replayed == []
        assert len(caller_attempts) == 1 and len(callee_attempts) == 1


def test_not_configured_means_no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert from_environment() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert from_environment() is None
