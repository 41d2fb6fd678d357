"""The web UI's whole-server pages with `--partitions N`: the invocation list and the overview of every partition.

The UI is served by partition 0 (the supervisor sends it there). Its invocation list and overview read the
other partitions' data through their internal sockets (`GET /__durably/ui/rows` and `/__durably/ui/minutes`,
answered by `local_rows_json` and `local_minutes_json` in each partition) and merge it with its own, so the page
is rendered once, exactly as the one-process UI renders it:

- rows: each partition's page of the same filter, newest first, strictly older than the same `before` cursor;
  the merged page is the newest `limit` of them (every partition gave its own newest `limit`, so none is missed);
- minutes: the overview's 60 per-minute points of each partition, taken at the same `now`, added up.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import httpx

from durably.server.observe.overview import Minute
from durably.server.store.base import COL

ROWS_PATH = "/__durably/ui/rows"
MINUTES_PATH = "/__durably/ui/minutes"


class PartitionDown(Exception):
    """A partition did not answer (it is restarting): the page cannot show the whole server now."""


def rows_to_json(rows: list[tuple[Any, ...]]) -> bytes:
    """Invocation rows (tuples of INVOCATION_COLUMNS) as JSON; bytes values travel as {"b": base64}."""
    def one(v: Any) -> Any:
        return {"b": base64.b64encode(v).decode()} if isinstance(v, (bytes, bytearray, memoryview)) else v

    return json.dumps([[one(v) for v in r] for r in rows]).encode()


def rows_from_json(data: bytes) -> list[tuple[Any, ...]]:
    """The rows `rows_to_json` wrote."""
    def one(v: Any) -> Any:
        return base64.b64decode(v["b"]) if isinstance(v, dict) else v

    return [tuple(one(v) for v in r) for r in json.loads(data)]


def minutes_to_json(minutes: list[Minute]) -> bytes:
    """The overview's per-minute points as JSON."""
    return json.dumps([vars(mm) for mm in minutes]).encode()


def minutes_from_json(data: bytes) -> list[Minute]:
    """The points `minutes_to_json` wrote."""
    return [Minute(**mm) for mm in json.loads(data)]


def merge_minutes(parts: list[list[Minute]]) -> list[Minute]:
    """The whole server's minutes: counts, backlogs, thread gauges and latency buckets added up per minute."""
    parts = [p for p in parts if p]  # a partition without metrics has none
    if not parts:
        return []
    out = [Minute(mm.start) for mm in parts[0]]
    for minutes in parts:
        for acc, mm in zip(out, minutes, strict=True):
            acc.started += mm.started
            acc.completed += mm.completed
            acc.failed += mm.failed
            acc.loop_stalls += mm.loop_stalls
            acc.threads_stuck += mm.threads_stuck
            acc.threads_busy += mm.threads_busy
            acc.sampled = acc.sampled or mm.sampled
            for status, n in mm.backlog.items():
                acc.backlog[status] = acc.backlog.get(status, 0) + n
            for svc, counts in mm.latency.items():
                buckets = acc.latency.setdefault(svc, [0] * len(counts))
                for k, n in enumerate(counts):
                    buckets[k] += n
    return out


def newest(rows: list[tuple[Any, ...]], limit: int) -> list[tuple[Any, ...]]:
    """The newest `limit` rows, in the one-process order (created_at, then seq, newest first)."""
    return sorted(rows, key=lambda r: (r[COL["created_at"]], r[COL["seq"]]), reverse=True)[:limit]


class PeerViews:
    """Partition `index`'s view of the other partitions' UI data (`clients`: forward.Clients)."""

    def __init__(self, clients: Any, index: int, count: int) -> None:
        self.clients = clients
        self.index = index
        self.count = count

    async def _get(self, partition: int, path: str) -> bytes:
        try:
            r = await self.clients.get(partition).get(path)
        except httpx.TransportError:
            raise PartitionDown(f"partition {partition} is not reachable (restarting); reload in a moment") from None
        if r.status_code != 200:
            raise PartitionDown(f"partition {partition} answered {r.status_code}: {r.text[:200]}")
        return r.content

    async def rows(self, mine: list[tuple[Any, ...]], query: dict[str, str], limit: int) -> list[tuple[Any, ...]]:
        """`mine` merged with every other partition's page of the same query (the UI's filter and cursor)."""
        rows = list(mine)
        qs = urlencode({**query, "limit": str(limit)})
        for i in range(self.count):
            if i != self.index:
                rows.extend(rows_from_json(await self._get(i, f"{ROWS_PATH}?{qs}")))
        return newest(rows, limit)

    async def minutes(self, mine: list[Minute], now: float) -> list[Minute]:
        """`mine` added up with every other partition's minutes at the same `now`."""
        parts = [mine]
        for i in range(self.count):
            if i != self.index:
                parts.append(minutes_from_json(await self._get(i, f"{MINUTES_PATH}?now={now!r}")))
        return merge_minutes(parts)
