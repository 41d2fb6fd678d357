"""`durably.create_client` against the real Restate server's ingress (driving a Durably deployment), and the
deployment-side input check when Restate's ingress, which does not know the type hints, passes bad input."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

import durably

from .apps import greet, run
from .conftest import RestateServer

pytestmark = pytest.mark.interop


def test_typed_client_drives_restate(restate: RestateServer) -> None:
    async def scenario() -> None:
        async with durably.create_client(restate.ingress) as client:
            out = await client.service_call(greet, "Ada")
            assert out["hello"] == "Hello Ada!"
            key = f"wf-{uuid.uuid4()}"
            handle = await client.workflow_send(run, key, "ada@example.com")
            assert handle.invocation_id.startswith("inv_")
            async with httpx.AsyncClient(timeout=30) as http:
                resp = await http.post(f"{restate.ingress}/InteropSignup/{key}/click", json="the-link")
            assert resp.status_code == 200, resp.text
            assert await client.workflow_attach(run, key) == await client.attach(handle, run)
            idem = f"i-{uuid.uuid4()}"
            first = await client.service_call(greet, "Bo", idempotency_key=idem)
            assert await client.service_call(greet, "Bo", idempotency_key=idem) == first

    asyncio.run(scenario())


def test_bad_input_through_restate_fails_terminally_with_400(restate: RestateServer) -> None:
    resp = httpx.post(f"{restate.ingress}/InteropGreeter/nap", json="not a number", timeout=30)
    assert resp.status_code == 400, resp.text
    message = resp.json()["message"]
    assert "InteropGreeter/nap expects int as input" in message and 'a string "not a number"' in message
