"""The invocation page's timeline (issue 24 item 1): bars from the journal, attempt bands and the gaps between
them from the attempt history, a bounded number of bars for a huge journal, and a live refresh that answers
204 when nothing changed. The browser tests (kill -9 and restart, retries) are in
tests/system/test_ui_timeline_browser.py."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta

from test_admin import admin, poll

import durably
from durably.server.http.ui.timeline import JournalView, Step
from durably.server.http.ui.timeline_svg import MAX_BANDS, MAX_BARS, timeline_svg
from durably.server.store.ops import AttemptRecord
from durably.testing import TestRuntime

svc = durably.Service("Tl")
FAILS = {"n": 0}


@svc.handler()
async def many(ctx: durably.Context, n: int) -> int:
    for i in range(n):
        await ctx.run_typed(f"step {i}", lambda i=i: i)
    return n


@svc.handler()
async def flaky(ctx: durably.Context, fails: int) -> str:
    await ctx.run_typed("fine", lambda: "ok")

    def charge() -> str:
        FAILS["n"] += 1
        if FAILS["n"] <= fails:
            raise RuntimeError(f"card declined {FAILS['n']}")
        return "charged"

    return await ctx.run_typed("charge", charge)


@svc.handler()
async def waits(ctx: durably.Context) -> str:
    await ctx.sleep(timedelta(hours=1))
    return "late"


APP = durably.app(services=[svc])


def bars(text: str) -> list[str]:
    return re.findall(r'<g class="bar" data-type="([^"]+)"', text)


async def test_a_huge_journal_draws_a_bounded_number_of_bars_and_says_how_many_it_aggregates() -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Tl/many", 10_000)  # 20,002 entries
        assert await rt.attach(inv, "Tl/many") == 10_000
        # While the page is read and rendered (on a worker thread), the event loop keeps turning: a ticker
        # that wants to run every 5 ms is never held up long (reading and decoding all 20,002 entries on the
        # loop, as before, held it for 0.7 s; rendering the page on the loop alone, 0.28 s; all of it on the
        # thread, 0.07 s).
        late: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.005)
                late.append(time.perf_counter() - before - 0.005)

        tick = asyncio.create_task(ticker())
        started = time.perf_counter()
        resp = await client.get(f"/ui/invocations/{inv}")
        took = time.perf_counter() - started
        stop.set()
        await tick
        assert max(late) < 0.18, max(late)
        assert resp.status_code == 200
        drawn = bars(resp.text)
        assert len(drawn) == MAX_BARS and set(drawn) == {"run"}
        assert f"{10_000 - MAX_BARS} more steps not drawn (run x{10_000 - MAX_BARS})" in resp.text
        assert "9002 steps not shown" in resp.text  # the table: 10,002 steps, 1000 of them shown
        assert took < 5, took  # generous under load; bench/ui_bench.py measures it


async def test_a_retried_step_shows_its_attempts_and_backoffs() -> None:
    FAILS["n"] = 0
    policy = durably.InvocationRetryPolicy(initial_interval=timedelta(milliseconds=20), max_attempts=10)
    async with TestRuntime(APP, retry_policy=policy) as rt, admin(rt) as client:
        inv = await rt.send("Tl/flaky", 3)

        async def done() -> bool:
            return 'data-status="completed"' in (await client.get(f"/ui/invocations/{inv}")).text

        await poll(rt, done, "the flaky invocation to complete")
        text = (await client.get(f"/ui/invocations/{inv}")).text
        assert text.count('<g class="attempt"') == 4
        assert text.count('<g class="gap gap-backoff">') == 3
        assert "card declined 1" in text and "card declined 3" in text  # the attempts' hover titles
        charge = re.search(r'<g class="bar" data-type="run" data-index="\d+"><title>run charge[^<]*</title>', text)
        assert charge and "charged" in charge.group(0)


async def test_the_live_refresh_answers_204_while_nothing_changes() -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Tl/waits")

        async def sleeping() -> str | None:
            text = (await client.get(f"/ui/invocations/{inv}")).text
            m = re.search(r'data-seen="([^"]+)"', text)
            return m.group(1) if 'data-type="sleep"' in text and "suspended" in text and m else None

        seen = await poll(rt, sleeping, "the sleep")
        same = await client.get(f"/ui/invocations/{inv}", params={"fragment": "main", "seen": seen})
        assert same.status_code == 204 and same.content == b""
        other = await client.get(f"/ui/invocations/{inv}", params={"fragment": "main", "seen": "0.0.x.0.0"})
        assert other.status_code == 200 and other.text.startswith('<div id="inv"')


def test_an_attempt_that_never_ended_is_drawn_with_the_downtime_after_it() -> None:
    t = 1_700_000_000_000
    steps = [Step(0, "input", "", t, completed=True),
             Step(1, "run", "slow", t + 100, done_ms=t + 9_000, completed=True)]
    sizes = [(0, 0x0400, 10, t), (1, 0x0411, 10, t + 100), (2, 0x8011, 10, t + 9_000)]
    attempts = [AttemptRecord(t, 1, None, None, None), AttemptRecord(t + 8_000, 1, t + 9_100, "completed", None)]
    svg = timeline_svg(JournalView(steps, sizes, attempts), t, t + 9_100, "completed", None)
    assert svg.count('<g class="attempt"') == 2
    down = re.search(r'<g class="gap gap-down"><title>([^<]+)</title>', svg)
    assert down and down.group(1) == "server down (7.9 s): attempt 1 never ended"
    slow = re.search(r'<g class="bar" data-type="run" data-index="1"><title>([^<]+)</title>', svg)
    assert slow and slow.group(1) == "run slow · took 8.9 s (of which 7.9 s the server was down)"


async def test_the_timeline_alone_is_an_svg_with_the_same_bound() -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Tl/many", 1_000)
        assert await rt.attach(inv, "Tl/many") == 1_000
        resp = await client.get(f"/ui/invocations/{inv}", params={"fragment": "timeline"})
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("image/svg+xml")
        assert resp.text.startswith('<svg id="timeline"') and len(bars(resp.text)) == MAX_BARS
        assert f"{1_000 - MAX_BARS} more steps not drawn (run x{1_000 - MAX_BARS})" in resp.text


def test_thousands_of_attempts_draw_a_bounded_number_of_bands() -> None:
    t = 1_700_000_000_000
    attempts = [AttemptRecord(t + 10 * i, 1, t + 10 * i + 5, "suspended", None) for i in range(5_000)]
    svg = timeline_svg(JournalView([], [(0, 0x0400, 10, t)], attempts), t, t + 50_000, "suspended", None)
    assert svg.count('<g class="attempt"') == MAX_BANDS
    assert f"{5_000 - MAX_BANDS} more attempts not drawn" in svg
    assert svg.count('<g class="gap gap-suspended">') <= MAX_BANDS
