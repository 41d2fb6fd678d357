"""`ctx.request().attempt_headers` of embedded handlers: as restate-server 1.7.12 sends them to deployments
(measured): the invocation id, and with tracing on the attempt span's `traceparent` and the `tracestate`."""

from __future__ import annotations

from test_tracing import PARENT_ID, TRACE_ID, Collector, collector  # noqa: F401 - the fixture

import durably
from durably.server.observe.tracing import from_environment
from durably.testing import TestRuntime

svc = durably.Service("Headers")


@svc.handler()
async def show(ctx: durably.Context) -> dict:
    return dict(ctx.request().attempt_headers)


APP = durably.app(services=[svc])


async def test_tracing_on_gives_the_attempt_spans_traceparent(collector: Collector) -> None:  # noqa: F811
    rt = TestRuntime(APP)
    rt.options.tracing = from_environment()
    async with rt, rt.http() as http:
        resp = await http.post("/Headers/show", json=None,
                               headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "tracestate": "k=v"})
        assert resp.status_code == 200, resp.text
        headers = resp.json()
        plain = (await http.post("/Headers/show", json=None)).json()
    attempt = next(s for s in collector.spans if s.name == "Headers/show" and s.trace_id.hex() == TRACE_ID)
    assert headers["traceparent"] == f"00-{TRACE_ID}-{attempt.span_id.hex()}-01"
    assert headers["tracestate"] == "k=v"
    assert headers["x-restate-invocation-id"] == resp.headers["x-restate-id"]
    # Without a caller's trace: a trace of its own, and an empty tracestate (as restate-server sends it).
    assert plain["traceparent"].startswith("00-") and plain["tracestate"] == ""


async def test_tracing_off_gives_no_trace_headers() -> None:
    async with TestRuntime(APP) as rt, rt.http() as http:
        resp = await http.post("/Headers/show", json=None)
        assert resp.json() == {"x-restate-invocation-id": resp.headers["x-restate-id"]}
