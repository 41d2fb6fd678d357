"""The invocation page's timeline in a real browser (Debian's Chromium, Playwright) against a real `durably serve`:
an invocation killed with SIGKILL in the middle of a step and finished after a restart shows two attempts and the
time the server was down between them; a step that failed and was retried shows its attempts and backoffs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .conftest import ServerFactory, wait_until
from .test_ui_browser import browser_page as browser_page  # the fixture, re-exported by its name
from .test_ui_browser import shots_dir

pytestmark = pytest.mark.system


def status(admin: str, inv: str) -> str:
    return httpx.get(f"{admin}/invocations/{inv}", timeout=10).json()["status"]


def test_a_kill_mid_step_shows_the_downtime_and_two_attempts(durably_serve: ServerFactory, browser_page: object,
                                                             tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    work = tmp_path / "work"
    work.mkdir()
    server = durably_serve.start("crashy")
    with server.client() as http:
        inv = http.post("/Crashy/run/send", json={"dir": str(work), "steps": 3, "block_at": 1}).json()["invocationId"]
    effects = work / "effects.log"
    wait_until(lambda: effects.exists() and "step 1" in effects.read_text(), 15, "step 1 to start")
    server.kill()
    server.start()
    (work / "gate").touch()
    admin = f"http://127.0.0.1:{server.admin_port}"
    wait_until(lambda: status(admin, inv) == "completed", 20, "the invocation to finish after the restart")

    page.goto(f"{admin}/ui/invocations/{inv}")
    timeline = page.locator("#timeline")
    expect(timeline.locator("g.attempt")).to_have_count(2)
    down = timeline.locator("g.gap-down")
    expect(down).to_have_count(1)
    expect(down.locator("text")).to_contain_text("server down")
    expect(down.locator("title")).to_contain_text("attempt 1 never ended")
    # The step that ran across the kill: one bar, from before the kill to its result after the restart.
    step1 = timeline.locator("g.bar", has_text="run step 1")
    expect(step1.locator("title")).to_contain_text("value-1")
    page.screenshot(path=str(shots_dir(tmp_path) / "ui-timeline-crash.png"), full_page=True)


def test_a_retried_step_shows_its_backoffs(durably_serve: ServerFactory, browser_page: object,
                                           tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    server = durably_serve.start("flaky")
    admin = f"http://127.0.0.1:{server.admin_port}"
    with server.client() as http:
        inv = http.post("/Flaky/pay/send", json={"dir": str(tmp_path), "fails": 3}).json()["invocationId"]
    page.goto(f"{admin}/ui/invocations/{inv}")
    # The page refreshes itself until the invocation completes.
    expect(page.locator("#output")).to_contain_text("charged", timeout=20_000)
    timeline = page.locator("#timeline")
    expect(timeline.locator("g.attempt")).to_have_count(4)
    backoffs = timeline.locator("g.gap-backoff")
    expect(backoffs).to_have_count(3)
    expect(backoffs.first.locator("title")).to_contain_text("backoff")
    expect(timeline.locator("g.attempt").first.locator("title")).to_contain_text("card declined (try 1)")
    page.screenshot(path=str(shots_dir(tmp_path) / "ui-timeline-retries.png"), full_page=True)
