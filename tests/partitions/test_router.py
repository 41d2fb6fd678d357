"""Which partition answers an ingress request (server/partitions/router.py)."""

from __future__ import annotations

from typing import Any

import durably
from durably.protocol.ids import InvocationId, awakeable_id
from durably.server.partitions.map import PartitionMap
from durably.server.partitions.router import owner_of_request

counter = durably.VirtualObject("Counter")


@counter.handler()
async def add(ctx: durably.ObjectContext, delta: int) -> int:
    return delta


plain = durably.Service("Plain")


@plain.handler()
async def echo(ctx: durably.Context, x: str) -> str:
    return x


flow = durably.Workflow("Flow")


@flow.main()
async def run(ctx: durably.WorkflowContext) -> None:
    return None


@flow.handler()
async def signal(ctx: durably.WorkflowSharedContext) -> None:
    return None


APP = durably.app(services=[counter, plain, flow])
SERVICES = {s.name: s for s in (counter, plain, flow)}
PMAP = PartitionMap(4, 0)


def scope(path: str, headers: dict[str, str] | None = None, method: str = "POST") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()]}


def owner(path: str, headers: dict[str, str] | None = None) -> int | None:
    return owner_of_request(scope(path, headers), PMAP, SERVICES.get)


def test_keyed_calls_go_to_the_owner_of_the_key() -> None:
    for key in ("a", "b", "c", "d", "e", "f"):
        expected = PMAP.owner(InvocationId.for_keyed("Counter", key))
        assert owner(f"/Counter/{key}/add") == expected
        assert owner(f"/Counter/{key}/add/send") == expected
        assert owner(f"/restate/call/Counter/{key}/add") == expected
        assert owner(f"/restate/scope/s1/send/Counter/{key}/add") == expected


def test_plain_calls_run_where_they_land_and_idempotent_ones_at_their_owner() -> None:
    assert owner("/Plain/echo") is None
    assert owner("/Plain/echo/send") is None
    for idem in ("x", "y", "z", "w"):
        expected = PMAP.owner(InvocationId.for_idempotent_request("Plain", "echo", idem))
        assert owner("/Plain/echo", {"idempotency-key": idem}) == expected
        assert owner(f"/restate/invocation/Plain/echo/{idem}/attach") == expected
        scoped = PMAP.owner(InvocationId.for_idempotent_request("Plain", "echo", idem, scope="s1"))
        assert owner("/restate/scope/s1/call/Plain/echo", {"idempotency-key": idem}) == scoped


def test_workflows_attach_and_awakeables_go_to_their_invocation() -> None:
    for key in ("k1", "k2", "k3", "k4"):
        expected = PMAP.owner(InvocationId.for_workflow("Flow", key))
        assert owner(f"/Flow/{key}/run/send") == expected
        assert owner(f"/Flow/{key}/signal") == expected
        assert owner(f"/restate/workflow/Flow/{key}/attach") == expected
        inv = InvocationId.for_keyed("Counter", key)
        assert owner(f"/restate/invocation/{inv}/output") == PMAP.owner(inv)
        assert owner(f"/restate/awakeables/{awakeable_id(inv.to_bytes(), 17)}/resolve") == PMAP.owner(inv)


def test_bad_or_unknown_targets_are_answered_where_they_land() -> None:
    for path in ("/", "/Nope/x", "/Counter/add", "/Counter/k/nope", "/restate/invocation/inv_bad/attach",
                 "/restate/awakeables/sign_bad/resolve", "/restate/workflow/Plain/k/attach", "/restate/health"):
        assert owner(path) is None, path
