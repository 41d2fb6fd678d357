"""The overview page in a real browser (Debian's Chromium, Playwright) against a real `durably serve`: after a
known workload its charts count it (the server samples its counters every 10 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ServerFactory
from .test_ui_browser import browser_page as browser_page  # the fixture, re-exported by its name
from .test_ui_browser import shots_dir

pytestmark = pytest.mark.system


def test_the_overview_charts_change_after_a_known_workload(durably_serve: ServerFactory, browser_page: object,
                                                           tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    server = durably_serve.start("flaky")
    admin = f"http://127.0.0.1:{server.admin_port}"
    page.goto(f"{admin}/ui")
    expect(page).to_have_url(f"{admin}/ui/overview")
    started = page.locator('#chart-throughput polyline[data-series="started"]')
    expect(page.locator("#chart-throughput")).to_be_visible()
    expect(page.locator('#chart-throughput polyline[data-total="6"]')).to_have_count(0)
    with server.client() as http:
        for i in range(6):
            work = tmp_path / f"w{i}"
            work.mkdir()
            assert http.post("/Flaky/pay", json={"dir": str(work), "fails": 0}).json() == "charged"
    # The next sample (within 10 s) counts the six; the page reloads itself, the test reloads sooner.
    for _ in range(30):
        page.reload()
        if started.count() and started.get_attribute("data-total") == "6":
            break
        page.wait_for_timeout(1000)
    expect(started).to_have_attribute("data-total", "6")
    expect(page.locator('#chart-throughput polyline[data-series="completed"]')).to_have_attribute("data-total", "6")
    expect(page.locator('#chart-latency polyline[data-series="Flaky p50"]')).to_have_count(1)
    page.screenshot(path=str(shots_dir(tmp_path) / "ui-overview.png"), full_page=True)
    page.locator(".card:has(#chart-latency) .legend-row a").first.click()
    expect(page).to_have_url(f"{admin}/ui/invocations?service=Flaky&status=completed")
    expect(page.locator("#rows tr")).to_have_count(6)
