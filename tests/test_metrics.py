"""Prometheus /metrics after a known workload: every count exact."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import httpx
from conftest import FAST_RETRIES
from counter_app import counter_object
from prometheus_client.parser import text_string_to_metric_families
from test_admin import admin, poll

import durably
from durably import TerminalError
from durably.server.engine.calltree import ActionResult
from durably.server.http.ingress import Ingress
from durably.server.observe.metrics import TimedIngress
from durably.testing import TestRuntime

flaky_failures: Counter[str] = Counter()
awakeables: dict[str, str] = {}

greeter = durably.Service("Greeter")


@greeter.handler()
async def greet(ctx: durably.Context, name: str) -> str:
    return await ctx.run_typed("shout", lambda: f"hello {name.upper()}")


@greeter.handler()
async def refuse(ctx: durably.Context, name: str) -> str:
    raise TerminalError("no", 422)


@greeter.handler()
async def flaky(ctx: durably.Context, name: str) -> str:
    if flaky_failures[name] < 2:
        flaky_failures[name] += 1
        raise RuntimeError("not yet")
    return "ok"


@greeter.handler()
async def nap(ctx: durably.Context) -> None:
    await ctx.sleep(timedelta(hours=1))


release = threading.Event()


@greeter.handler()
async def stuck(ctx: durably.Context) -> str:
    """A sync step that blocks its thread until the test releases it."""
    return await ctx.run_typed("wait", lambda: "released" if release.wait(30) else "timed out")


counter = counter_object("Counter", awakeables)
APP = durably.app(services=[greeter, counter])


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_counts_after_a_known_workload(tmp_path) -> None:
    flaky_failures.clear()
    async with TestRuntime(APP, "sqlite", data_dir=tmp_path, retry_policy=FAST_RETRIES) as rt, admin(rt) as client:
        assert rt.engine is not None and rt.engine.stats is not None
        ingress = TimedIngress(Ingress(rt.engine), rt.engine.stats)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ingress), base_url="http://t") as http:
            for name in ("a", "b", "c"):
                assert (await http.post("/Greeter/greet", json=name)).json() == f"hello {name.upper()}"
            assert (await http.post("/Greeter/refuse", json="x")).status_code == 422
            assert (await http.post("/Greeter/flaky", json="f")).json() == "ok"
            assert (await http.post("/Greeter/nap/send")).status_code == 202
        holder = await rt.send("Counter/k/hold")
        await poll(rt, lambda: _get(awakeables, "k"), "the holder to publish its awakeable")
        await rt.send("Counter/k/add", 1)
        await rt.send("Counter/k/add", 2)
        await rt.settle()

        resp = await client.get("/metrics")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        m = scrape(resp.text)

        for handler, n in (("greet", 3), ("refuse", 1), ("flaky", 1), ("nap", 1)):
            assert sample(m, "durably_invocations_started_total", service="Greeter", handler=handler) == n
        assert sample(m, "durably_invocations_started_total", service="Counter", handler="hold") == 1
        assert sample(m, "durably_invocations_started_total", service="Counter", handler="add") == 2
        assert sample(m, "durably_invocations_completed_total", service="Greeter", handler="greet") == 3
        assert sample(m, "durably_invocations_completed_total", service="Greeter", handler="flaky") == 1
        assert sample(m, "durably_invocations_failed_total", service="Greeter", handler="refuse") == 1
        assert ("durably_invocations_completed_total", (("handler", "refuse"), ("service", "Greeter"))) not in m
        assert sample(m, "durably_attempts_total", service="Greeter", handler="flaky") == 3
        assert sample(m, "durably_retries_total", service="Greeter", handler="flaky") == 2
        assert sample(m, "durably_attempts_total", service="Greeter", handler="greet") == 3
        assert ("durably_retries_total", (("handler", "greet"), ("service", "Greeter"))) not in m

        # Journals: greet 4 (input, run, run result, output) x 3; refuse 2; flaky 2; nap 2 (input, sleep);
        # hold 3 (input, run, run result); the two inboxed adds 1 each.
        assert sample(m, "durably_journal_appends_total") == 4 * 3 + 2 + 2 + 2 + 3 + 2
        lengths = 0
        for inv in (await client.get("/invocations")).json()["invocations"]:
            lengths += (await client.get(f"/invocations/{inv['id']}")).json()["journal_length"]
        assert sample(m, "durably_journal_appends_total") == lengths

        assert sample(m, "durably_invocations", status="completed") == 5
        assert sample(m, "durably_invocations", status="inboxed") == 2
        running = sum(sample(m, "durably_invocations", status=s) for s in ("invoked", "suspended")
                      if ("durably_invocations", (("status", s),)) in m)
        assert running == 2  # nap and hold
        assert sample(m, "durably_timers_pending") == 1
        assert sample(m, "durably_inbox_depth", service="Counter") == 2
        assert sample(m, "durably_ingress_request_seconds_count") == 6
        assert sample(m, "durably_ingress_request_seconds_bucket", le="+Inf") == 6
        commits = sample(m, "durably_commits_total")
        assert commits > 0
        assert sample(m, "durably_commit_seconds_count") == commits
        assert sample(m, "durably_commit_batch_rows_count") == commits
        assert sample(m, "durably_fsyncs_total") >= commits
        assert sample(m, "durably_store_bytes") > 0
        assert sample(m, "durably_run_threads_busy") == 0
        assert rt.engine.kill(holder) is ActionResult.DONE
        await rt.settle()  # the kill frees the key: the two inboxed adds run and complete
        some = (await client.get("/invocations", params={"status": "completed", "limit": "1"})).json()
        assert (await client.patch(f"/invocations/{some['invocations'][0]['id']}/purge")).status_code == 200
        m = scrape((await client.get("/metrics")).text)
        # 5 before, the killed holder, the two adds it let through, minus the purged one.
        assert sample(m, "durably_invocations", status="completed") == 5 + 1 + 2 - 1
        assert ("durably_invocations", (("status", "inboxed"),)) not in m


async def _get(d: dict[str, str], key: str) -> str | None:
    return d.get(key)


async def test_metrics_off_is_a_clear_404() -> None:
    rt = TestRuntime(APP)
    rt.options.metrics = False
    async with rt, admin(rt) as client:
        await rt.call("Greeter/greet", "a")
        resp = await client.get("/metrics")
        assert resp.status_code == 404
        assert "--no-metrics" in resp.json()["message"]


async def test_a_stuck_sync_step_shows_as_a_busy_thread() -> None:
    release.clear()
    async with TestRuntime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Greeter/stuck")

        async def busy() -> float:
            m = scrape((await client.get("/metrics")).text)
            return sample(m, "durably_run_threads_busy")

        assert await poll(rt, busy, "the step to occupy a thread") == 1
        release.set()
        assert await rt.attach(inv, "Greeter/stuck") == "released"

        async def idle() -> bool:
            return await busy() == 0

        await poll(rt, idle, "the thread to be free again")
