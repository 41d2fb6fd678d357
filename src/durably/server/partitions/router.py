"""Which partition must answer an ingress request, and the ASGI app that sends it there.

Every partition process listens on the shared ingress port (SO_REUSEPORT), so a request lands on any of them.
`owner_of_request` reads the request line the way the ingress does and names the owner:

- a keyed call (virtual object, workflow) goes to the owner of its key, a request with an idempotency key to
  the owner of the id `PartitionMap.id_for` derives, a workflow's run to the owner of the workflow key;
- `/restate/invocation/{id}/...`, `/restate/invocation/{Service}[/{key}]/{handler}/{idem}/...`,
  `/restate/workflow/{Workflow}/{key}/...` and `/restate/awakeables/{id}/...` (an awakeable id names its
  invocation) go to the owner of that invocation;
- a plain call (unkeyed, no idempotency key), a malformed or unknown target and everything else run where they
  landed: the local ingress answers them (a bad request gets the same error in every partition).

`PartitionRouter` answers locally or forwards the request, whole, to the owner's internal listener
(server/partitions/forward.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from durably.protocol.ids import InvocationId, parse_awakeable_id
from durably.sdk.asgi import Receive, Send
from durably.server.partitions.map import PartitionMap

_IDEMPOTENCY_KEY = b"idempotency-key"


def _segments(scope: dict[str, Any]) -> list[str]:
    raw = scope.get("raw_path") or scope["path"].encode()
    return [unquote(s) for s in raw.decode("latin-1").split("?", 1)[0].strip("/").split("/")]


def _idempotency_key(scope: dict[str, Any]) -> str | None:
    for name, value in scope["headers"]:
        if name.lower() == _IDEMPOTENCY_KEY:
            return value.decode("latin-1") or None  # empty: the local ingress refuses it (400)
    return None


def owner_of_request(scope: dict[str, Any], pmap: PartitionMap, services: Callable[[str], Any]) -> int | None:
    """The partition that must answer this ingress request, or None when the one it landed on answers.

    `services(name)` is the service catalog (the same in every partition: the app and the registered
    deployments); a service it does not know is answered locally (404).
    """
    segs = _segments(scope)
    if not segs or segs == [""]:
        return None
    flow_scope: str | None = None
    if segs[0] == "restate":
        rest = segs[1:]
        if len(rest) >= 2 and rest[0] == "scope":
            flow_scope, rest = rest[1], rest[2:]
        if rest and rest[0] in ("call", "send") and len(rest) >= 3:
            return _invoke_owner(rest[1:], scope, pmap, services, flow_scope, explicit=True)
        if flow_scope is not None:
            return None
        return _restate_path_owner(rest, pmap, services)
    return _invoke_owner(segs, scope, pmap, services, None, explicit=False)


def _invoke_owner(segs: list[str], scope: dict[str, Any], pmap: PartitionMap, services: Callable[[str], Any],
                  flow_scope: str | None, explicit: bool) -> int | None:
    svc = services(segs[0])
    if svc is None:
        return None
    rest = segs[1:]
    if not explicit and len(rest) >= 2 and rest[-1] == "send":
        rest = rest[:-1]
    keyed = svc.kind != "service"
    if len(rest) != (2 if keyed else 1):
        return None
    key, hname = (rest[0], rest[1]) if keyed else ("", rest[0])
    handler = svc.handlers.get(hname)
    if handler is None:
        return None
    idem = _idempotency_key(scope)
    if not keyed and idem is None:
        return None  # a plain call runs where it lands, with an id minted in this partition's range
    inv_id = pmap.id_for(svc.name, hname, workflow=handler.kind == "workflow", keyed=keyed, key=key,
                         idempotency_key=idem, scope=flow_scope)
    return pmap.owner(inv_id)


def _restate_path_owner(segs: list[str], pmap: PartitionMap, services: Callable[[str], Any]) -> int | None:
    try:
        if len(segs) == 3 and segs[0] in ("awakeables", "a"):
            return pmap.owner(parse_awakeable_id(segs[1])[0])
        if len(segs) < 3 or segs[0] not in ("invocation", "workflow"):
            return None
        target = segs[1:-1]
        if segs[0] == "workflow":
            svc = services(target[0]) if len(target) == 2 else None
            if svc is None or svc.kind != "workflow":
                return None
            return pmap.owner(InvocationId.for_workflow(svc.name, target[1]))
        if len(target) == 1:
            return pmap.owner(InvocationId.parse(target[0]))
        svc = services(target[0])
        if svc is None:
            return None
        keyed = svc.kind != "service"
        if len(target) != (4 if keyed else 3):
            return None
        key = target[1] if keyed else None
        return pmap.owner(InvocationId.for_idempotent_request(svc.name, target[-2], target[-1], key))
    except ValueError:  # a malformed id: the local ingress says so (400)
        return None


class PartitionRouter:
    """The ingress of one partition process: requests it owns (or that may run anywhere) go to `local`, the
    others to their owner through `forward(partition, scope, receive, send)`."""

    def __init__(self, local: Any, pmap: PartitionMap, services: Callable[[str], Any],
                 forward: Callable[[int, dict[str, Any], Receive, Send], Any]) -> None:
        self.local = local
        self.pmap = pmap
        self.services = services
        self.forward = forward

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            owner = owner_of_request(scope, self.pmap, self.services)
            if owner is not None and owner != self.pmap.index:
                await self.forward(owner, scope, receive, send)
                return
        await self.local(scope, receive, send)
