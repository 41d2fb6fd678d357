"""Credentials in request headers reach the handler but never the journal (server/engine/secret_headers.py)."""

from __future__ import annotations

from datetime import timedelta

import durably
from durably.server.engine.engine import Engine
from durably.server.store.base import COL

seen: list[dict[str, str]] = []
svc = durably.Service("Headers")


@svc.handler()
async def show(ctx: durably.Context) -> list[str]:
    seen.append(dict(ctx.request().headers))
    await ctx.run_typed("step", lambda: "done")  # a journaled step: the always-replay runtime resumes from here
    seen.append(dict(ctx.request().headers))
    return sorted(ctx.request().headers)


SECRETS = {"authorization": "Bearer tok-AUTH-123", "cookie": "session=COOKIE-456",
           "x-restate-jwt-v1": "JWT-789", "x-api-key": "KEY-000"}


def _journal_bytes(engine: Engine, inv_id: str) -> bytes:
    return b"".join(raw for _, _, raw, _ in engine.store.journal_rows(inv_id))


async def test_secret_headers_reach_the_live_attempt_but_not_the_journal(runtime) -> None:
    seen.clear()
    async with runtime(durably.app(services=[svc])) as rt, rt.http() as http:
        rt.engine.options.secret_headers |= {"x-api-key"}  # --secret-header x-api-key
        resp = await http.post("/Headers/show", headers={**SECRETS, "x-trace": "visible"})
        assert resp.status_code == 200, resp.text
        inv_id = resp.headers["x-restate-id"]
        stored = _journal_bytes(rt.engine, inv_id)
        for value in SECRETS.values():
            assert value.encode() not in stored
        assert b"visible" in stored  # other headers are journaled, as in Restate
        desc = rt.engine.store.load_invocation(inv_id)
        assert desc is not None and desc[COL["status"]] == "completed"
    # The first attempt saw everything the caller sent.
    assert {k: seen[0].get(k) for k in SECRETS} == SECRETS
    assert seen[0]["x-trace"] == "visible"
    if runtime.always_replay:
        # Resumed from the store after its step: the request comes back without the secret headers.
        assert not set(SECRETS) & set(seen[-1]) and seen[-1]["x-trace"] == "visible"
        assert "authorization" not in resp.json()
    else:
        assert seen[-1] == seen[0]
        assert "authorization" in resp.json()


async def test_a_request_without_secrets_is_journaled_whole(runtime) -> None:
    async with runtime(durably.app(services=[svc])) as rt, rt.http() as http:
        resp = await http.post("/Headers/show", headers={"x-trace": "t1"})
        assert resp.status_code == 200
        assert b"t1" in _journal_bytes(rt.engine, resp.headers["x-restate-id"])


async def test_admin_describe_shows_no_secret(runtime) -> None:
    import httpx

    from durably.server.http.admin import Admin

    async with runtime(durably.app(services=[svc])) as rt, rt.http() as http:
        resp = await http.post("/Headers/show", headers=SECRETS)
        inv_id = resp.headers["x-restate-id"]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=Admin(rt.engine)),
                                     base_url="http://admin", timeout=timedelta(seconds=10).total_seconds()) as a:
            text = (await a.get(f"/invocations/{inv_id}")).text
        assert "tok-AUTH-123" not in text and "COOKIE-456" not in text
