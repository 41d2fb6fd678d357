"""A real Restate server drives a Durably app served by hypercorn: the app is a Restate deployment."""

from __future__ import annotations

import uuid

import httpx
import pytest

from .apps import AWAKEABLES, EFFECTS
from .conftest import RestateServer, wait_until

pytestmark = pytest.mark.interop


def call(restate: RestateServer, path: str, body: object = None, **kw: object) -> httpx.Response:
    return httpx.post(f"{restate.ingress}/{path}", json=body, timeout=60, **kw)  # type: ignore[arg-type]


def test_discovery_registers_every_service(restate: RestateServer) -> None:
    services = {s["name"]: s for s in httpx.get(f"{restate.admin}/services").json()["services"]}
    assert {"InteropGreeter", "InteropCounter", "InteropSignup"} <= set(services)
    assert services["InteropCounter"]["ty"] == "VirtualObject"
    assert services["InteropSignup"]["ty"] == "Workflow"
    kinds = {h["name"]: h.get("ty") for h in services["InteropCounter"]["handlers"]}
    assert kinds == {"add": "Exclusive", "get": "Shared", "hold": "Exclusive", "call_other": "Exclusive"}


def test_greeter_run_uuid_random_time(restate: RestateServer) -> None:
    resp = call(restate, "InteropGreeter/greet", "Ada", headers={"idempotency-key": str(uuid.uuid4())})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["hello"] == "Hello Ada!"
    assert body["id"] == resp.headers["x-restate-id"]
    uuid.UUID(body["uuid"])
    assert 0 <= body["random"] < 1
    assert body["time"] > 1.7e9


def test_run_that_fails_twice_then_succeeds(restate: RestateServer) -> None:
    key = f"flaky-{uuid.uuid4()}"
    resp = call(restate, "InteropGreeter/flaky", key)
    assert (resp.status_code, resp.json()) == (200, "ok after 3")
    assert EFFECTS[key] == 3


def test_run_options_exhaustion_is_caught_as_terminal_error(restate: RestateServer) -> None:
    key = f"ex-{uuid.uuid4()}"
    resp = call(restate, "InteropGreeter/exhausted", key)
    assert (resp.status_code, resp.json()) == (200, "caught ValueError('boom')")
    assert EFFECTS[key] == 3
    assert EFFECTS[key + "-compensated"] == 1


def test_terminal_error_reaches_the_caller(restate: RestateServer) -> None:
    resp = call(restate, "InteropGreeter/terminal")
    assert resp.status_code == 403
    assert resp.json()["message"] == "not allowed"


def test_sleep_and_select(restate: RestateServer) -> None:
    assert call(restate, "InteropGreeter/nap", 50).json() == "rested"
    assert call(restate, "InteropGreeter/first_of").json() == ["soon", None]


def test_counter_object_and_calls(restate: RestateServer) -> None:
    key = f"c-{uuid.uuid4()}"
    for i in range(1, 6):
        assert call(restate, f"InteropCounter/{key}/add", 1).json() == i
    assert call(restate, f"InteropCounter/{key}/get").json() == 5
    assert call(restate, f"InteropCounter/{key}-a/call_other", key).json() == 15


def test_awakeable_resolved_over_restate_ingress(restate: RestateServer) -> None:
    key = f"aw-{uuid.uuid4()}"
    sent = httpx.post(f"{restate.ingress}/InteropCounter/{key}/hold/send", timeout=30)
    assert sent.status_code == 202
    inv = sent.json()["invocationId"]
    wait_until(lambda: key in AWAKEABLES, 30, "the awakeable id")
    aw_id = AWAKEABLES[key]
    assert aw_id.startswith("sign_1")
    resp = httpx.post(f"{restate.ingress}/restate/awakeables/{aw_id}/resolve", json="approved", timeout=30)
    assert resp.status_code == 202
    out = httpx.get(f"{restate.ingress}/restate/invocation/{inv}/attach", timeout=60)
    assert out.json() == "approved"


def test_workflow_with_promise(restate: RestateServer) -> None:
    key = f"wf-{uuid.uuid4()}"
    sent = httpx.post(f"{restate.ingress}/InteropSignup/{key}/run/send", json="a@b.c", timeout=30)
    assert sent.status_code == 202
    assert call(restate, f"InteropSignup/{key}/click", "L1").status_code == 200
    out = httpx.get(f"{restate.ingress}/restate/workflow/InteropSignup/{key}/attach", timeout=60)
    assert out.json() == "a@b.c:L1"


def test_cancellation_runs_compensation(restate: RestateServer) -> None:
    key = f"cx-{uuid.uuid4()}"
    sent = httpx.post(f"{restate.ingress}/InteropGreeter/wait_cancel/send", json=key, timeout=30)
    inv = sent.json()["invocationId"]

    def journaled_sleep() -> bool:
        q = httpx.post(f"{restate.admin}/query", json={
            "query": f"SELECT entry_type FROM sys_journal WHERE id = '{inv}'"}, timeout=30)
        return q.status_code == 200 and "Sleep" in q.text

    wait_until(journaled_sleep, 30, "the sleep to be journaled")
    resp = httpx.patch(f"{restate.admin}/invocations/{inv}/cancel", timeout=30)
    assert resp.status_code in (200, 202), resp.text
    out = httpx.get(f"{restate.ingress}/restate/invocation/{inv}/attach", timeout=60)
    assert out.status_code == 409
    wait_until(lambda: EFFECTS[key + "-undo"] == 1, 30, "the compensation")


@pytest.mark.parametrize("handler", ["wait", "wait_caught"])
def test_named_signals_across_invocations(restate: RestateServer, handler: str) -> None:
    sent = httpx.post(f"{restate.ingress}/InteropSignals/{handler}/send", timeout=30)
    assert sent.status_code == 202, sent.text
    inv = sent.json()["invocationId"]
    if handler == "wait":
        assert call(restate, "InteropSignals/resolve", {"id": inv, "value": "now"}).status_code == 200
        expected = ["sig", "now"]
    else:
        assert call(restate, "InteropSignals/reject", {"id": inv, "message": "nope"}).status_code == 200
        expected = "rejected 451 nope"
    attached = httpx.get(f"{restate.ingress}/restate/invocation/{inv}/attach", timeout=60)
    assert (attached.status_code, attached.json()) == (200, expected)


@pytest.mark.parametrize("mode", ["bidi", "always-replay"])
def test_protocol_v7_with_flow_control(tmp_path, durably_deployment, mode: str) -> None:
    """Restate 1.7.12 with protocol v7 and flow control on: runs acked, suspensions as future trees,
    scopes and limit keys delivered to Durably's handlers."""
    env = {"RESTATE_EXPERIMENTAL_ENABLE_PROTOCOL_V7": "true", "RESTATE_EXPERIMENTAL_ENABLE_VQUEUES": "true"}
    if mode == "always-replay":
        env["RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT"] = "0s"
    server = RestateServer(tmp_path, env)
    try:
        server.register(durably_deployment.url)
        deployments = httpx.get(f"{server.admin}/deployments", timeout=10).json()["deployments"]
        assert any(d.get("max_protocol_version") == 7 for d in deployments), deployments
        assert call(server, "InteropSignals/scoped").json() == ["tenant1", "a"]
        scoped = httpx.post(f"{server.ingress}/restate/scope/s9/call/InteropSignals/whoami?limit-key=x/y", timeout=60)
        assert (scoped.status_code, scoped.json()) == (200, ["s9", "x/y"])
        key = f"v7-{uuid.uuid4()}"
        assert call(server, "InteropGreeter/flaky", key).json() == "ok after 3"  # runs, acked
        assert call(server, "InteropGreeter/nap", 20).json() == "rested"  # suspends and resumes
        assert call(server, "InteropGreeter/first_of").json() == ["soon", None]
    finally:
        server.stop()
