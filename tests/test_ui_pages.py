"""The web UI's pages in process (the browser tests are in tests/system/test_ui_browser.py): keyset paging,
filters, escaping of user data, the operator actions' redirects, state edits with their version, bad input."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import unquote

from test_admin import admin, poll

import durably
from durably.server.store.invocation_query import InvocationFilter, page
from durably.testing import TestRuntime

echo = durably.Service("Echo")


@echo.handler()
async def say(ctx: durably.Context, text: str) -> str:
    return text


counter = durably.VirtualObject("Counter")


@counter.handler()
async def add(ctx: durably.ObjectContext, delta: int) -> int:
    value = (await ctx.get("value") or 0) + delta
    ctx.set("value", value)
    return value


@counter.handler()
async def block(ctx: durably.ObjectContext) -> None:
    await ctx.awakeable()[1]


@echo.handler()
async def many(ctx: durably.Context, n: int) -> int:
    for i in range(n):
        await ctx.run_typed(f"step {i}", lambda i=i: i)
    return n


@echo.handler()
async def flaky(ctx: durably.Context) -> None:
    await ctx.run_typed("fine", lambda: "ok")
    raise RuntimeError("the database is down")


APP = durably.app(services=[echo, counter])


def ids_on(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)"', html)


async def test_pages_walk_every_invocation_once_newest_first(tmp_path) -> None:
    async with TestRuntime(APP, "sqlite", data_dir=tmp_path) as rt, admin(rt) as client:
        sent = [await rt.send("Echo/say", f"t{i}") for i in range(120)]
        await rt.settle()
        seen: list[str] = []
        url = "/ui/invocations"
        while True:
            resp = await client.get(url)
            assert resp.status_code == 200
            seen += ids_on(resp.text)
            older = re.search(r'id="older" href="([^"]+)"', resp.text)
            if older is None:
                break
            url = older.group(1).replace("&amp;", "&")
            assert "before=" in url
        assert seen == list(reversed(sent))
        # A paged view is not live (it would jump); the first page is.
        assert "setInterval" in (await client.get("/ui/invocations")).text
        assert "setInterval" not in (await client.get(url)).text


async def test_filters_and_time_range(tmp_path) -> None:
    async with TestRuntime(APP, "sqlite", data_dir=tmp_path) as rt, admin(rt) as client:
        e1 = await rt.send("Echo/say", "a")
        c1 = await rt.send("Counter/x/add", 1)
        c2 = await rt.send("Counter/y/add", 1)
        await rt.settle()
        assert ids_on((await client.get("/ui/invocations?service=Counter")).text) == [c2, c1]
        assert ids_on((await client.get("/ui/invocations?service=Counter&key=x")).text) == [c1]
        assert ids_on((await client.get("/ui/invocations?handler=say")).text) == [e1]
        assert ids_on((await client.get("/ui/invocations?status=completed&service=Echo")).text) == [e1]
        assert ids_on((await client.get("/ui/invocations?status=paused")).text) == []
        rows = page(rt.engine.store, InvocationFilter(), 10)
        created = sorted(r[6] for r in rows)
        assert ids_on((await client.get(f"/ui/invocations?since={created[-1] + 1}")).text) == []
        assert set(ids_on((await client.get(f"/ui/invocations?until={created[-1]}")).text)) == {e1, c1, c2}
        fragment = await client.get("/ui/invocations?service=Echo&fragment=rows")
        assert fragment.text.startswith("<tr") and ids_on(fragment.text) == [e1]
        assert (await client.get("/ui/invocations?before=nonsense")).status_code == 400


async def test_user_data_is_escaped() -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Echo/say", "<script>alert(1)</script>")
        await rt.send("Counter/<b>k<b>/add", 1)
        await rt.settle()
        for url in ("/ui/invocations", f"/ui/invocations/{inv}", "/ui/state?service=Counter&key=%3Cb%3Ek%3Cb%3E"):
            text = (await client.get(url)).text
            assert "<script>alert(1)" not in text and "<b>k<b>" not in text
        assert "&lt;script&gt;alert(1)" in (await client.get(f"/ui/invocations/{inv}")).text


async def test_actions_redirect_with_the_outcome() -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Counter/k/block")
        await rt.settle()
        resp = await client.post(f"/ui/invocations/{inv}/pause")
        assert resp.status_code == 303
        assert unquote(resp.headers["location"]).endswith("msg=paused")
        resp = await client.post(f"/ui/invocations/{inv}/purge")
        assert "err=cannot purge" in unquote(resp.headers["location"]).replace("+", " ")
        assert (await client.post(f"/ui/invocations/{inv}/kill")).status_code == 303
        await poll(rt, lambda: _completed(rt, inv), "the kill")
        page_ = (await client.get(f"/ui/invocations/{inv}")).text
        assert "failed 409: killed" in page_ and 'data-action="purge"' in page_
        resp = await client.post(f"/ui/invocations/{inv}/purge")
        assert resp.headers["location"].startswith("/ui/invocations?msg=")
        assert (await client.get(f"/ui/invocations/{inv}")).status_code == 404
        assert (await client.get("/ui/invocations/not-an-id")).status_code == 400


async def _completed(rt: TestRuntime, inv: str) -> bool:
    row = rt.engine.store.load_invocation(inv)
    return row is not None and row[4] == "completed"


async def test_state_edit_checks_the_version() -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        await rt.call("Counter/k/add", 1)
        text = (await client.get("/ui/state?service=Counter&key=k")).text
        version = re.search(r'name="version" value="([^"]+)"', text).group(1)
        await rt.call("Counter/k/add", 1)  # changes the state after the page was read
        resp = await client.post("/ui/state", data={"service": "Counter", "key": "k", "version": version,
                                                    "state": '{"value": 10}'})
        assert resp.status_code == 409 and "changed since version" in resp.text
        assert '{&quot;value&quot;: 10}' in resp.text  # the edit is kept in the form
        resp = await client.post("/ui/state", data={"service": "Counter", "key": "k", "state": "[1]"})
        assert resp.status_code == 400 and "JSON object" in resp.text
        resp = await client.post("/ui/state", data={"service": "Counter", "key": "k", "state": '{"value": 10}'})
        assert resp.status_code == 303
        assert await rt.call("Counter/k/add", 1) == 11
        assert "not a virtual object" in (await client.get("/ui/state?service=Echo&key=k")).text


async def test_state_page_lists_the_keys_of_an_object() -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        for i in range(105):
            await rt.send(f"Counter/k{i:03d}/add", 1)
        await rt.settle()
        text = (await client.get("/ui/state?service=Counter")).text
        listed = re.findall(r'key=(k\d+)"', text)
        assert listed == [f"k{i:03d}" for i in range(100)]
        more = re.search(r'id="more-keys" href="([^"]+)"', text).group(1).replace("&amp;", "&")
        assert re.findall(r'key=(k\d+)"', (await client.get(more)).text) == [f"k{i:03d}" for i in range(100, 105)]


async def test_a_failing_step_shows_its_retries_and_error() -> None:
    policy = durably.InvocationRetryPolicy(initial_interval=timedelta(hours=1), max_attempts=5)
    async with TestRuntime(APP, retry_policy=policy) as rt, admin(rt) as client:
        inv = await rt.send("Echo/flaky")

        async def backing_off() -> bool:
            return ">backing-off</span>" in (await client.get(f"/ui/invocations/{inv}")).text

        await poll(rt, backing_off, "the first failure")
        text = (await client.get(f"/ui/invocations/{inv}")).text
        row = text[text.index('data-type="retrying"'):]
        assert "1 failed attempt(s) after the last entry" in row and "the database is down" in row
        assert "next attempt at" in row


async def test_a_huge_journal_shows_its_ends() -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Echo/many", 1200)
        assert await rt.attach(inv, "Echo/many") == 1200
        text = (await client.get(f"/ui/invocations/{inv}")).text
        assert text.count('class="step"') == 1000
        assert "202 steps not shown" in text  # input, 1200 runs, output: 1202 steps
        assert ">step 0<" in text and ">step 1199<" in text and ">step 600<" not in text


async def test_admin_list_pages_with_next_cursor_and_time_range(tmp_path) -> None:
    async with TestRuntime(APP, "sqlite", data_dir=tmp_path) as rt, admin(rt) as client:
        sent = [await rt.send("Echo/say", f"t{i}") for i in range(7)]
        await rt.settle()
        seen, params = [], {"limit": "3"}
        while True:
            body = (await client.get("/invocations", params=params)).json()
            seen += [i["id"] for i in body["invocations"]]
            if "next_cursor" not in body:
                break
            params["before"] = body["next_cursor"]
        assert seen == list(reversed(sent))
        newest = rt.engine.store.load_invocation(sent[-1])[6]
        body = (await client.get("/invocations", params={"since": str(newest)})).json()
        assert sent[-1] in [i["id"] for i in body["invocations"]]
        assert (await client.get("/invocations", params={"since": "yesterday"})).status_code == 400


async def test_services_page_shows_handlers_and_their_retry_policy() -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        text = (await client.get("/ui/services")).text
        assert 'id="svc-Echo"' in text and 'id="svc-Counter"' in text
        assert "retries: 70 attempts from 500 ms x2 up to 60.0 s, then pause" in text
        assert '/ui/state?service=Counter' in text  # objects link to their state


async def test_cross_site_form_posts_are_refused() -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Counter/k/block")
        await rt.settle()
        for headers in ({"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"}):
            resp = await client.post(f"/ui/invocations/{inv}/kill", headers=headers)
            assert resp.status_code == 403 and "cross-site" in resp.text
        assert rt.engine.store.load_invocation(inv)[4] != "completed"
        same = await client.post(f"/ui/invocations/{inv}/kill", headers={"origin": "http://admin",
                                                                         "sec-fetch-site": "same-origin"})
        assert same.status_code == 303
