"""Journal pages bounded by bytes (issue 20 item 7): big entries are cut to a preview with the URL of the whole
value, a page never carries more than the byte bound, and paging still walks every entry once."""

from __future__ import annotations

import json
import re

from test_admin import admin

import durably
from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.server.http.journal_page import decode_prefix, read_page
from durably.server.process.limits import JOURNAL_PAGE_BYTES, JOURNAL_VALUE_PREVIEW
from durably.testing import TestRuntime

big = durably.Service("Big")
BLOB = 300_000


@big.handler()
async def steps(ctx: durably.Context, n: int) -> int:
    for i in range(n):
        await ctx.run_typed(f"blob {i}", lambda i=i: chr(ord("a") + i) * BLOB)
    return n


@big.handler()
async def small(ctx: durably.Context, n: int) -> int:
    for i in range(n):
        await ctx.run_typed(f"s{i}", lambda i=i: i)
    return n


@big.handler()
async def huge_output(ctx: durably.Context) -> str:
    return "z" * BLOB


APP = durably.app(services=[big])


def test_a_cut_entry_decodes_what_arrived() -> None:
    note = pb.NotificationMessage(completion_id=7, value=pb.Value(content=b"x" * 10_000))
    raw = note.SerializeToString()
    msg = decode_prefix(m.RUN_COMPLETION, raw[:100])
    assert msg.completion_id == 7
    assert 80 < len(msg.value.content) < 100 and set(msg.value.content) == {ord("x")}


async def test_describe_pages_by_bytes_and_links_the_whole_value() -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Big/steps", 8)
        assert await rt.attach(inv, "Big/steps") == 8
        resp = await client.get(f"/invocations/{inv}")
        assert resp.status_code == 200
        # 8 run results of 300 KB each (2.4 MB): the page is a few KB, and says where to go on.
        assert len(resp.content) < JOURNAL_PAGE_BYTES
        body = resp.json()
        results = [e for e in body["journal"] if e["type"] == "RunCompletion" or e.get("value_truncated")]
        assert results, body["journal"]
        cut = results[0]
        assert cut["value_truncated"] is True and cut["entry_size"] > BLOB
        assert isinstance(cut["value"], str) and len(cut["value"]) <= JOURNAL_VALUE_PREVIEW
        whole = await client.get(cut["value_url"])
        assert whole.status_code == 200 and json.loads(whole.content) == "a" * BLOB
        entry = await client.get(cut["value_url"].removesuffix("/value"))
        assert entry.status_code == 200 and entry.json()["value"] == "a" * BLOB
        assert (await client.get(f"/invocations/{inv}/journal/999/value")).status_code == 404
        bad = await client.get(f"/invocations/{inv}/journal/x/value")
        assert bad.status_code == 400 and bad.json()["message"] == "the journal index must be an integer >= 0"


async def test_byte_bound_cuts_a_page_and_paging_walks_every_entry_once() -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Big/steps", 6)
        assert await rt.attach(inv, "Big/steps") == 6
        assert rt.engine is not None
        store = rt.engine.store
        total = store.count_journal(inv)
        # A page of 10 KB holds two cut entries of 4 KB and the small ones between: never over the bound,
        # always at least one entry, and every entry once over the pages.
        seen, offset, pages = [], 0, 0
        while offset < total:
            page = read_page(store, inv, offset, 1000, "/v/{index}", max_bytes=10_000)
            assert page and len(json.dumps(page)) < 10_000 + 2 * JOURNAL_VALUE_PREVIEW
            seen += [e["index"] for e in page]
            offset = seen[-1] + 1
            pages += 1
        assert seen == list(range(total)) and pages >= 3
        # One entry larger than the bound still makes a page of one.
        assert len(read_page(store, inv, 2, 1000, "/v/{index}", max_bytes=1)) == 1
        resp = await client.get(f"/invocations/{inv}?journal_limit=2")
        assert resp.json()["journal_next_offset"] == 2


async def test_small_entries_page_by_count_as_before() -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Big/small", 30)
        assert await rt.attach(inv, "Big/small") == 30
        body = (await client.get(f"/invocations/{inv}?journal_limit=10")).json()
        assert [e["index"] for e in body["journal"]] == list(range(10))
        assert body["journal_next_offset"] == 10 and body["journal_length"] == 62
        assert not any(e.get("value_truncated") for e in body["journal"])


async def test_the_ui_page_shows_previews_and_links_each_whole_value() -> None:
    async with TestRuntime(APP) as rt, admin(rt) as client:
        inv = await rt.send("Big/steps", 8)
        assert await rt.attach(inv, "Big/steps") == 8
        page = await client.get(f"/ui/invocations/{inv}")
        assert page.status_code == 200
        assert len(page.content) < 200_000  # 8 results of 300 KB each, shown as previews
        links = re.findall(r'class="whole-value" href="([^"]+)">whole value \(([\d,]+) bytes\)', page.text)
        assert len(links) == 8
        whole = await client.get(links[2][0])
        assert whole.status_code == 200 and json.loads(whole.content) == "c" * BLOB
        assert int(links[2][1].replace(",", "")) > BLOB

        out = await rt.send("Big/huge_output")
        assert await rt.attach(out, "Big/huge_output") == "z" * BLOB
        page = await client.get(f"/ui/invocations/{out}")
        assert len(page.content) < 100_000
        href = re.search(r'of [\d,]+ bytes: <a class="whole-value" href="([^"]+)">whole value</a>', page.text)
        assert href, page.text[-3000:]
        assert json.loads((await client.get(href.group(1))).content) == "z" * BLOB
