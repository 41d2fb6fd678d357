"""What an operator sees of `durably serve --partitions 2`: one server in the UI's invocation list and overview,
in `/metrics`, in describe and in the log; and a kill that ends a call tree across both partitions."""

from __future__ import annotations

import re

import pytest

from .conftest import ServerFactory, wait_until
from .test_partitions import PMAP, admin, keys_owned_by, post, start

pytestmark = pytest.mark.system


def _ids_on(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)"', html)


def test_the_ui_list_and_overview_show_every_partition(durably_serve: ServerFactory) -> None:
    server = start(durably_serve)
    ids: dict[str, int] = {}
    for partition in (0, 1):
        for key in keys_owned_by(partition, 26):
            r = post(server, f"/Counter/{key}/add", 1)
            ids[r.headers["x-restate-id"]] = partition
    assert set(ids.values()) == {0, 1}
    page = admin(server, "GET", "/ui/invocations")
    assert page.status_code == 200
    listed = _ids_on(page.text)
    assert len(listed) == 50 and {PMAP.owner(i) for i in listed} == {0, 1}, "the list shows one partition only"
    # The next page (the page's own "older" link): the rest, in both partitions' order, none twice.
    older = re.search(r'<a id="older" href="([^"]+)"', page.text)
    assert older is not None
    rest = _ids_on(admin(server, "GET", older.group(1).replace("&amp;", "&")).text)
    assert len(rest) == 2 and set(listed + rest) == set(ids)
    listed += rest
    described = [admin(server, "GET", f"/invocations/{i}").json()["created_at"] for i in listed]
    assert described == sorted(described, reverse=True), "newest first across partitions"
    # The same filters as one process: a key of partition 1, a service, the live-refresh fragment.
    key1 = keys_owned_by(1, 1)[0]
    only = _ids_on(admin(server, "GET", f"/ui/invocations?service=Counter&key={key1}").text)
    assert len(only) == 1 and PMAP.owner(only[0]) == 1
    assert _ids_on(admin(server, "GET", "/ui/invocations?service=Signup").text) == []
    assert _ids_on(admin(server, "GET", "/ui/invocations?fragment=rows&status=completed").text) == listed[:50]
    assert admin(server, "GET", "/ui/invocations?before=zz").status_code == 400
    # The overview adds up both partitions' counters (sampled every 10 s).
    started = re.compile(r'data-series="started" data-total="([0-9.]+)"')

    def total() -> bool:
        m = started.search(admin(server, "GET", "/ui/overview").text)
        return m is not None and float(m.group(1)) == len(ids)

    wait_until(total, 45, f"the overview to count {len(ids)} started invocations")
