"""The UI's overview page (issue 24 item 2): per-minute charts of the last hour from a bounded ring of samples
of the /metrics counters; the browser test (a real server and its 10 s sampling) is in
tests/system/test_ui_timeline_browser.py."""

from __future__ import annotations

import re

import httpx

import durably
from durably.server.http.admin import Admin
from durably.server.observe.overview import RING_SIZE, quantile
from durably.testing import TestRuntime

svc = durably.Service("Ov")


@svc.handler()
async def ok(ctx: durably.Context, n: int) -> int:
    return n


@svc.handler()
async def bad(ctx: durably.Context) -> None:
    raise durably.TerminalError("no", status_code=400)


APP = durably.app(services=[svc])


def totals(text: str, chart: str) -> dict[str, float]:
    svg = text[text.index(f'id="{chart}"'):]
    svg = svg[:svg.index("</svg>")]
    return {m.group(1): float(m.group(2)) for m in re.finditer(r'data-series="([^"]+)" data-total="([^"]+)"', svg)}


async def test_the_overview_counts_a_known_workload_per_minute() -> None:
    async with TestRuntime(APP) as rt:
        assert rt.engine is not None and rt.engine.stats is not None
        admin = Admin(rt.engine)
        overview = admin.ui.overview
        assert overview is not None
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=admin), base_url="http://admin") as client:
            assert (await client.get("/ui")).headers["location"] == "/ui/overview"
            overview.sample()
            for i in range(5):
                assert await rt.call("Ov/ok", i) == i
            for _ in range(2):
                inv = await rt.send("Ov/bad")
                await rt.settle()
                assert inv
            await rt.settle()
            overview.sample()
            page = await client.get("/ui/overview")
            assert page.status_code == 200
            assert totals(page.text, "chart-throughput") == {"started": 7, "completed": 5, "failed": 2}
            latency = totals(page.text, "chart-latency")
            assert set(latency) == {"Ov p50", "Ov p99"}
            backlog = totals(page.text, "chart-backlog")
            assert set(backlog) == {"inboxed", "backing-off", "paused", "suspended"}
            assert 'href="/ui/invocations?service=Ov&amp;status=completed"' in page.text
            metrics = (await client.get("/metrics")).text
            assert 'durably_invocation_seconds_count{service="Ov"} 7.0' in metrics


def test_the_ring_is_bounded_and_quantiles_come_from_buckets() -> None:
    assert RING_SIZE == 361
    assert quantile([0] * 19, 0.5) is None
    counts = [0] * 19
    counts[3] = 98  # <= 1 ms
    counts[12] = 2  # <= 1 s
    assert quantile(counts, 0.5) == 0.001 and quantile(counts, 0.99) == 1.0
