"""Issue 20 item 7 against a real `durably serve`: a journal of 20 MB steps must not stall the server when the UI
page and the admin describe read it. Each page stays small (values cut to a preview, pages bounded by bytes), and
/health keeps answering quickly while pages load one after another."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from durably.server.process.limits import JOURNAL_PAGE_BYTES

from .conftest import ServerFactory

pytestmark = pytest.mark.system

STEPS, MB = 6, 20


def test_pages_of_a_journal_of_20_mb_steps_stay_small_and_the_server_keeps_answering(
        durably_serve: ServerFactory) -> None:
    server = durably_serve.start("bigsteps")
    admin = f"http://127.0.0.1:{server.admin_port}"
    with server.client(timeout=120) as http:
        resp = http.post("/Big/steps", json={"n": STEPS, "mb": MB})
        assert resp.status_code == 200 and resp.json() == STEPS
        inv = resp.headers["x-restate-id"]
    sizes: dict[str, list[int]] = {"ui": [], "describe": []}
    done = threading.Event()

    def load_pages() -> None:
        try:
            with httpx.Client(timeout=60) as c:
                for _ in range(4):
                    sizes["ui"].append(len(c.get(f"{admin}/ui/invocations/{inv}").content))
                    sizes["describe"].append(len(c.get(f"{admin}/invocations/{inv}").content))
        finally:
            done.set()

    loader = threading.Thread(target=load_pages)
    loader.start()
    worst = 0.0
    with httpx.Client(timeout=30) as c:
        while not done.is_set():
            started = time.perf_counter()
            assert c.get(f"{server.url}/restate/health").status_code == 200
            worst = max(worst, time.perf_counter() - started)
    loader.join()
    assert len(sizes["ui"]) == len(sizes["describe"]) == 4
    assert max(sizes["ui"]) < 500_000, sizes
    assert max(sizes["describe"]) < JOURNAL_PAGE_BYTES, sizes
    # Before the fix a describe held the loop for 5.8 s (and was 126 MB); after it, /health answered within
    # 20 ms throughout on an idle machine. The bound leaves room for a machine shared with other work (0.8 s
    # was seen there) and still fails the old behaviour.
    assert worst < 2.0, worst
