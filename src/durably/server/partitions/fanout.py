"""The admin API of a partitioned server: one server to the outside, N partitions behind it.

The supervisor owns the admin listener (it has no engine; it keeps answering while a partition restarts) and
sends each request to the partitions' internal listeners (`/__durably/admin/...`, server/partitions/internal.py):

| request | goes to |
| --- | --- |
| `GET /invocations` | every partition; the pages are merged newest first, `next_cursor` pages on in all of them |
| `/invocations/{id}[/...]` (describe, journal, cancel, kill, pause, resume, purge), UI invocation pages | its owner |
| `/services/{svc}/state/{key}`, `POST /services/{svc}/state`, the UI's state page | the owner of the key |
| `POST /deployments`, `DELETE /deployments/{id}`, rule changes (`/rules`, `/limits/rules...`) | all, in order |
| `GET /health` (and `/v2..v4/health`) | every partition: 200 only if all answer 200 |
| `GET /metrics` | every partition; each sample labelled `partition="i"`, one HELP/TYPE per family |
| anything else (`/services`, `/deployments`, the UI's other pages, ...) | partition 0 (the same in every partition) |

A partition that does not answer (restarting) makes a request it must answer a 503 in Restate's shape.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

import httpx

from durably.protocol.ids import InvocationId
from durably.sdk.asgi import BodyTooLarge, Receive, Send, error, lifespan, read_body, respond, respond_json
from durably.server.http.shapes import LIST_LIMIT_ERROR, list_limit
from durably.server.partitions.forward import ADMIN_PREFIX, Clients, stream
from durably.server.partitions.map import PartitionMap

_VERSION_PREFIXES = ("v2", "v3", "v4")
_BROADCAST = ("rules", "limits")
_CURSOR_PREFIX = "p."
_MAX_BROADCAST_BODY = 16 << 20
_MAX_STATE_BODY = 32 << 20  # the admin API's own limit for a new state
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?(\s.*)$")


class AdminFanout:
    """The supervisor's admin ASGI app."""

    def __init__(self, clients: Clients, count: int) -> None:
        self.clients = clients
        self.count = count
        self.pmap = PartitionMap(count, 0)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        segs = [unquote(s) for s in raw.decode("latin-1").split("?", 1)[0].strip("/").split("/") if s]
        if segs and segs[0] in _VERSION_PREFIXES:
            segs = segs[1:]
        method = scope["method"]
        head = segs[0] if segs else ""
        if head == "health" and len(segs) == 1:
            await self._health(send)
        elif head == "metrics" and method == "GET":
            await self._metrics(send)
        elif head == "invocations" and len(segs) == 1 and method == "GET":
            await self._list(scope, send)
        elif (head == "deployments" and method in ("POST", "DELETE")) or (head in _BROADCAST and method != "GET"):
            await self._broadcast(scope, receive, send, segs)
        elif head == "services" and len(segs) == 3 and segs[2] == "state" and method == "POST":
            await self._state_post(scope, receive, send, segs[1])
        else:
            await self._to(self._owner(segs, scope), scope, receive, send)

    # ---- one partition ----

    def _owner(self, segs: list[str], scope: dict[str, Any]) -> int:
        try:
            if len(segs) >= 2 and segs[0] == "invocations":
                return self.pmap.owner(segs[1])
            if len(segs) >= 4 and segs[0] == "services" and segs[2] == "state":
                return self._key_owner("/".join(segs[3:]))
            if len(segs) >= 3 and segs[:2] == ["ui", "invocations"]:
                return self.pmap.owner(segs[2])
            if segs[:2] == ["ui", "state"]:
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                if query.get("key"):
                    return self._key_owner(query["key"][0])
        except ValueError:
            pass  # a malformed id: partition 0 says so (400), as the one-process server does
        return 0

    def _key_owner(self, key: str) -> int:
        return self.pmap.owner(InvocationId.for_keyed("", key))

    async def _to(self, partition: int, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await stream(self.clients.uds(partition), scope, receive, send, prefix=ADMIN_PREFIX, source="admin",
                     who=f"partition {partition}")

    async def _state_post(self, scope: dict[str, Any], receive: Receive, send: Send, service: str) -> None:
        try:
            body = await read_body(scope, receive, _MAX_STATE_BODY)
        except BodyTooLarge:
            await error(send, 413, "the new state is larger than 32 MiB", "admin")
            return
        try:
            parsed = json.loads(body)
            key = parsed.get("object_key", parsed.get("service_key"))
        except (ValueError, AttributeError):
            key = None  # partition 0 says what is wrong with it (400)
        owner = self._key_owner(key) if isinstance(key, str) else 0
        await self._replay(owner, scope, body, send)

    async def _replay(self, partition: int, scope: dict[str, Any], body: bytes, send: Send) -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._to(partition, scope, receive, send)

    # ---- every partition ----

    async def _get_all(self, path: str) -> list[httpx.Response | None]:
        out: list[httpx.Response | None] = []
        for i in range(self.count):
            try:
                out.append(await self.clients.get(i).get(ADMIN_PREFIX + path))
            except httpx.TransportError:
                out.append(None)
        return out

    async def _health(self, send: Send) -> None:
        answers = await self._get_all("/health")
        down = [f"partition {i}: " + ("not reachable (restarting)" if r is None else _message(r))
                for i, r in enumerate(answers) if r is None or r.status_code != 200]
        if down:
            await error(send, 503, "; ".join(down), "admin")
        else:
            await respond_json(send, 200, {"status": "ok", "partitions": self.count})

    async def _metrics(self, send: Send) -> None:
        answers = await self._get_all("/metrics")
        bad = next((i for i, r in enumerate(answers) if r is None or r.status_code != 200), None)
        if bad is not None:
            r = answers[bad]
            if r is not None and r.status_code != 503:  # e.g. metrics off: the same answer as one process gives
                await respond(send, r.status_code, r.content, r.headers.get("content-type", "").encode() or None)
                return
            await error(send, 503, f"partition {bad} is not reachable (restarting); retry in a moment", "admin")
            return
        texts = [r.text for r in answers if r is not None]
        ctype = answers[0].headers.get("content-type", "text/plain; version=0.0.4") if answers[0] else "text/plain"
        await respond(send, 200, merge_metrics(texts).encode(), ctype.encode())

    async def _list(self, scope: dict[str, Any], send: Send) -> None:
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        limit = list_limit(query)
        if limit is None:
            await error(send, 400, LIST_LIMIT_ERROR, "admin")
            return
        cursors: list[str | None]
        before = query.pop("before", None)
        if before is None:
            cursors = [None] * self.count
        elif before.startswith(_CURSOR_PREFIX):
            try:
                cursors = json.loads(base64.urlsafe_b64decode(before[len(_CURSOR_PREFIX):] + "=="))
                if not isinstance(cursors, list) or len(cursors) != self.count:
                    raise ValueError
            except ValueError:
                await error(send, 400, "since and until are ms since the epoch; before is a next_cursor", "admin")
                return
        else:  # a one-process cursor (created_at.seq): older than it, in every partition
            cursors = [before] * self.count
        rows: list[tuple[tuple[int, int, int], dict[str, Any], str]] = []
        exhausted = [True] * self.count
        for i, cursor in enumerate(cursors):
            if cursor == "":
                continue  # this partition had no more
            q = dict(query, limit=str(limit), cursors="1")
            if cursor is not None:
                q["before"] = cursor
            try:
                r = await self.clients.get(i).get(ADMIN_PREFIX + "/invocations?" + urlencode(q))
            except httpx.TransportError:
                await error(send, 503, f"partition {i} is not reachable (restarting); retry in a moment", "admin")
                return
            if r.status_code != 200:
                await respond(send, r.status_code, r.content, b"application/json")
                return
            page = r.json()
            exhausted[i] = "next_cursor" not in page
            for row, c in zip(page["invocations"], page["cursors"], strict=True):
                created, _, seq = c.partition(".")
                # Newest first as in one process; equal times keep a fixed order (partition, then its seq).
                rows.append(((int(created), -i, int(seq)), row, c))
        rows.sort(key=lambda t: t[0], reverse=True)
        taken, left = rows[:limit], rows[limit:]
        nxt = list(cursors)
        for sort_key, _, c in taken:
            nxt[-sort_key[1]] = c
        for i in range(self.count):
            if exhausted[i] and not any(-k[1] == i for k, _, _ in left):
                nxt[i] = ""  # everything it has was shown
        body: dict[str, Any] = {"invocations": [row for _, row, _ in taken]}
        if any(c != "" for c in nxt):
            body["next_cursor"] = _CURSOR_PREFIX + base64.urlsafe_b64encode(json.dumps(nxt).encode()).decode()
        await respond_json(send, 200, body)

    async def _broadcast(self, scope: dict[str, Any], receive: Receive, send: Send, segs: list[str]) -> None:
        """A change every partition must make (a deployment, a rule): partition 0 first, then the others."""
        try:
            body = await read_body(scope, receive, _MAX_BROADCAST_BODY)
        except BodyTooLarge:
            await error(send, 413, f"request body exceeds the limit of {_MAX_BROADCAST_BODY} bytes", "admin")
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k.lower() not in (b"host", b"content-length", b"connection", b"transfer-encoding")]
        qs = scope.get("query_string", b"").decode("latin-1")
        path = ADMIN_PREFIX + "/" + "/".join(segs) + ("?" + qs if qs else "")
        answers: list[httpx.Response] = []
        removing = segs[0] == "deployments" and scope["method"] == "DELETE" and len(segs) == 2
        endpoint = await self._deployment_endpoint(segs[1]) if removing else None
        for i in range(self.count):
            target = path
            if removing and i > 0:
                # Each partition gave the deployment its own id: find it there by its endpoint.
                local = await self._same_deployment(i, endpoint)
                if local is None:
                    continue
                target = ADMIN_PREFIX + "/deployments/" + local + ("?" + qs if qs else "")
            try:
                r = await self.clients.get(i).request(scope["method"], target, content=body, headers=headers)
            except httpx.TransportError:
                await error(send, 503, f"partition {i} is not reachable (restarting); the change was made in "
                            f"partitions 0..{i - 1} only, send it again", "admin")
                return
            answers.append(r)
            if i == 0 and r.status_code >= 400:
                break  # refused (bad input, not found): the others would say the same
        first = answers[0]
        out = [(k, v) for k, v in first.headers.raw if k.lower() not in (b"content-length", b"transfer-encoding",
                                                                        b"connection")]
        await respond(send, first.status_code, first.content, None, out)

    async def _deployment_endpoint(self, dep_id: str) -> str | None:
        try:
            r = await self.clients.get(0).get(ADMIN_PREFIX + "/deployments/" + dep_id)
        except httpx.TransportError:
            return None
        return _endpoint(r.json()) if r.status_code == 200 else None

    async def _same_deployment(self, partition: int, endpoint: str | None) -> str | None:
        if endpoint is None:
            return None
        r = await self.clients.get(partition).get(ADMIN_PREFIX + "/deployments")
        for dep in r.json().get("deployments", []) if r.status_code == 200 else []:
            if _endpoint(dep) == endpoint:
                return str(dep["id"])
        return None


def _endpoint(dep: dict[str, Any]) -> str | None:
    value = dep.get("uri") or dep.get("url") or dep.get("endpoint")
    return str(value) if value else None


def _message(r: httpx.Response) -> str:
    try:
        return str(r.json().get("message", r.text))
    except ValueError:
        return r.text


def merge_metrics(texts: list[str]) -> str:
    """Prometheus text expositions of the partitions as one: every sample gets `partition="i"`, and each metric
    family's HELP and TYPE appear once, before all of its samples (the format requires a family be contiguous)."""
    families: dict[str, tuple[list[str], list[str]]] = {}
    for i, text in enumerate(texts):
        family = ""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    meta, _ = families.setdefault(family, ([], []))
                    if i == 0 or not any(m.split(None, 2)[1] == parts[1] for m in meta):
                        if line not in meta:
                            meta.append(line)
                continue
            m = _SAMPLE.match(line)
            if m is None:
                continue
            name, labels, rest = m.group(1), m.group(2), m.group(3)
            label = f'partition="{i}"'
            labels = "{" + label + "}" if not labels or labels == "{}" else "{" + label + "," + labels[1:]
            families.setdefault(family, ([], []))[1].append(f"{name}{labels}{rest}")
    out: list[str] = []
    for meta, samples in families.values():
        out.extend(meta)
        out.extend(samples)
    return "\n".join(out) + "\n"
