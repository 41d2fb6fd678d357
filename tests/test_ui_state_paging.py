"""The web UI's state page with a key of very many state names: a bounded page, read-only, a link to the next."""

from __future__ import annotations

import json
import re

from test_admin import admin
from test_ui_pages import APP

from durably.server.http.ui.pages import STATE_NAMES_PAGE
from durably.testing import TestRuntime


async def test_a_big_state_is_shown_a_page_at_a_time() -> None:
    n = STATE_NAMES_PAGE * 2 + 10
    names = {f"n{i:05d}": i for i in range(n)}
    async with TestRuntime(APP) as rt, admin(rt) as client:
        resp = await client.post("/services/Counter/state", json={
            "object_key": "big", "new_state": {k: list(json.dumps(v).encode()) for k, v in names.items()}})
        assert resp.status_code == 202, resp.text
        seen: dict = {}
        url: str | None = "/ui/state?service=Counter&key=big"
        pages = 0
        while url is not None:
            resp = await client.get(url)
            assert resp.status_code == 200
            text = resp.text
            pages += 1
            assert 'id="state-form"' not in text  # part of the state cannot be saved as the whole of it
            shown = json.loads(re.search(r'<pre id="state">(.*?)</pre>', text, re.S).group(1).replace("&quot;", '"'))
            assert len(shown) <= STATE_NAMES_PAGE and not set(shown) & set(seen)
            seen.update(shown)
            more = re.search(r'id="next-state-page" href="([^"]+)"', text)
            url = more.group(1).replace("&amp;", "&") if more else None
        assert pages == 3 and seen == names
        # A save through a forged form is refused: it would drop every name not on the page.
        resp = await client.post("/ui/state", data={"service": "Counter", "key": "big", "state": '{"value": 1}'})
        assert resp.status_code == 409 and "more names than one page" in resp.text
        assert (await client.get("/services/Counter/state/big?limit=1")).json()["state"] == {"n00000": 0}
