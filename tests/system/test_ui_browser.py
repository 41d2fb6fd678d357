"""The web UI in a real browser: Debian's Chromium driven by Playwright against a real `durably serve`.

Covers the flows an operator needs: list and filter invocations, open one and read its journal (3 steps and a
sleep), cancel it from the page and watch it compensate, follow caller and callee links, edit a key's state and
read it back over HTTP, and the services page. Screenshots go to $DURABLY_UI_SCREENSHOTS (the README's come
from `DURABLY_UI_SCREENSHOTS=docs`), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import APPS, ServerFactory, ServerProcess, free_port, wait_until

pytestmark = pytest.mark.system

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
WAIT_MS = 15_000


@pytest.fixture
def browser_page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium package")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(WAIT_MS)
            page.on("dialog", lambda dialog: dialog.accept())  # every confirmation is answered yes
            yield page
        finally:
            browser.close()


def shots_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("DURABLY_UI_SCREENSHOTS") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


_remote: list[subprocess.Popen[bytes]] = []


def remote_deployment(tmp_path: Path) -> str:
    """tests/system/apps/remote_greeter.py served by hypercorn in its own process; returns its URL."""
    port = free_port()
    log = (tmp_path / "remote.log").open("wb")
    _remote.append(subprocess.Popen([sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}",
                                     "remote_greeter:app"], cwd=APPS, stdout=log, stderr=subprocess.STDOUT))
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 20, "the remote deployment", lambda: (tmp_path / "remote.log").read_text())
    return url


def stop_remote() -> None:
    while _remote:
        proc = _remote.pop()
        proc.terminate()
        proc.wait(timeout=10)


def journal_types(admin: str, inv: str) -> list[str]:
    return [e["type"] for e in httpx.get(f"{admin}/invocations/{inv}", timeout=10).json()["journal"]]


def test_operator_flows_in_the_browser(durably_serve: ServerFactory, browser_page: object, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    page: Page = browser_page  # type: ignore[assignment]
    server: ServerProcess = durably_serve.start("trips")
    admin = f"http://127.0.0.1:{server.admin_port}"
    shots = shots_dir(tmp_path)
    with server.client() as http:
        assert http.post("/Counter/alice/add", json=5).json() == 5
        trip = http.post("/Trips/book/send", json="ann").json()["invocationId"]
        assert http.post("/Trips/plan", json="bob").json() == "planning for bob"
    wait_until(lambda: "sleep" in journal_types(admin, trip), 15, "the trip to sleep")

    # The list: newest first, every invocation there; then filtered by service and by status.
    page.goto(f"{admin}/ui/invocations")
    expect(page.locator(f'tr[data-id="{trip}"]')).to_be_visible()
    assert page.locator("#rows tr").count() == 4  # add, book (sent), plan, and the book that plan sent
    page.screenshot(path=str(shots / "ui-invocations.png"), full_page=True)
    page.select_option("select[name=service]", "Counter")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#rows tr")).to_have_count(1)
    expect(page.locator("#rows")).to_contain_text("Counter/alice/add")
    page.select_option("select[name=service]", "Trips")
    page.select_option("select[name=status]", "completed")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#rows tr")).to_have_count(1)
    expect(page.locator("#rows")).to_contain_text("Trips/plan")

    # The invocation page: its journal shows the three steps with their results, then the sleep.
    page.goto(f"{admin}/ui/invocations")
    page.click(f'a[href="/ui/invocations/{trip}"]')
    expect(page.locator("h1")).to_have_text(trip)
    steps = page.locator("#journal tr.step")
    expect(steps.filter(has_text="reserve flight")).to_contain_text("flight for ann")
    expect(steps.filter(has_text="reserve hotel")).to_contain_text("hotel for ann")
    expect(steps.filter(has_text="reserve car")).to_contain_text("car for ann")
    expect(page.locator('#journal tr[data-type="sleep"]')).to_contain_text("waiting")
    expect(page.locator("#input")).to_contain_text("ann")
    page.screenshot(path=str(shots / "ui-invocation.png"), full_page=True)

    # Cancel from the page (the confirmation is accepted): the handler releases all three, newest first.
    page.click('button[data-action="cancel"]')
    expect(page.locator(".flash")).to_contain_text("cancellation requested")
    expect(page.locator("#output")).to_contain_text("cancelled")  # the page refreshes itself until completed
    releases = page.locator("#journal tr.step", has_text="release")
    expect(releases).to_have_count(3)
    assert [t.split()[1] for t in releases.locator("td.mono").all_inner_texts()] == ["car", "hotel", "flight"]
    page.screenshot(path=str(shots / "ui-invocation-cancelled.png"), full_page=True)

    # Caller and callee are links both ways.
    page.goto(f"{admin}/ui/invocations?handler=plan")
    page.click("#rows a")
    page.click("#callees a")
    expect(page.locator("#journal")).to_contain_text("reserve flight")
    page.click("#caller")
    expect(page.locator(".grid")).to_contain_text("Trips/plan")

    # State: read, edit in the page, then the object's own handler sees the edit over HTTP.
    page.goto(f"{admin}/ui/state?service=Counter&key=alice")
    expect(page.locator("#state")).to_have_value('{\n  "value": 5\n}')
    page.fill("#state", '{"value": 41}')
    page.click("#state-form button[type=submit]")
    expect(page.locator(".flash")).to_have_text("saved")
    page.screenshot(path=str(shots / "ui-state.png"), full_page=True)
    assert httpx.get(f"{admin}/services/Counter/state/alice", timeout=10).json()["state"] == {"value": 41}
    with server.client() as http:
        assert http.post("/Counter/alice/get").json() == 41
        assert http.post("/Counter/alice/add", json=1).json() == 42

    # Services and deployments: handlers listed; a deployment that cannot be reached is a clear error; a real
    # one (another process) is registered from the page, its service answers, and it is removed again.
    page.goto(f"{admin}/ui/services")
    expect(page.locator("#svc-Trips")).to_be_visible()
    expect(page.locator("#svc-Trips + div + table")).to_contain_text("Reserve flight, hotel and car")
    page.fill("#register input[name=uri]", "http://127.0.0.1:1")
    page.click("#register button[type=submit]")
    expect(page.locator(".error")).to_contain_text("cannot register http://127.0.0.1:1")
    remote = remote_deployment(tmp_path)
    try:
        page.fill("#register input[name=uri]", remote)
        page.click("#register button[type=submit]")
        expect(page.locator(".flash")).to_contain_text("registered dp_")
        expect(page.locator("#deployments")).to_contain_text(remote)
        expect(page.locator("#svc-FarGreeter")).to_be_visible()
        with server.client() as http:
            assert http.post("/FarGreeter/wave", json="ann").json() == "hi ann from afar"
        page.screenshot(path=str(shots / "ui-services.png"), full_page=True)
        page.click('#deployments button[data-action="remove"]')
        expect(page.locator(".flash")).to_contain_text("removed dp_")
        expect(page.locator("#svc-FarGreeter")).to_have_count(0)
        with server.client() as http:
            assert http.post("/FarGreeter/wave", json="ann").status_code == 404
    finally:
        stop_remote()
    # Its five (the directory may hold the other browser tests' too, with DURABLY_UI_SCREENSHOTS=docs).
    names = ("ui-invocations", "ui-invocation", "ui-invocation-cancelled", "ui-state", "ui-services")
    assert shutil.disk_usage(shots).free > 0 and all((shots / f"{n}.png").stat().st_size for n in names)
