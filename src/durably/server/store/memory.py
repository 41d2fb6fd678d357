"""An in-memory store for tests and for users who want speed over durability."""

from __future__ import annotations

from typing import Any

from durably.server.store.base import COL, Batch, Store


class MemoryStore(Store):
    """Keeps everything in dicts; a commit is instantaneous and nothing survives the process."""

    threaded = False

    def __init__(self) -> None:
        self.invocations: dict[str, tuple[Any, ...]] = {}
        self.journals: dict[str, list[tuple[int, bytes]]] = {}
        self.commits = 0
        self.timers: dict[tuple[str, str, int], int] = {}

    def commit(self, batch: Batch) -> None:
        """Apply the batch to the dicts."""
        self.commits += 1
        for inv_id, idx, type_id, entry, _ts in batch.journal:
            journal = self.journals.setdefault(inv_id, [])
            if idx != len(journal):
                raise RuntimeError(f"journal gap for {inv_id}: writing {idx}, have {len(journal)}")
            journal.append((type_id, entry))
        self.invocations.update(batch.invocations)
        for fire_at, inv_id, kind, cid in batch.timers_add:
            self.timers[(inv_id, kind, cid)] = fire_at
        for t in batch.timers_del:
            self.timers.pop(t, None)
        for inv_id in batch.deleted:
            self.invocations.pop(inv_id, None)
            self.journals.pop(inv_id, None)
            for t in [t for t in self.timers if t[0] == inv_id]:
                del self.timers[t]

    def load_invocation(self, invocation_id: str) -> tuple[Any, ...] | None:
        """One row or None."""
        return self.invocations.get(invocation_id)

    def load_journal(self, invocation_id: str) -> list[tuple[int, bytes]]:
        """The journal, in order."""
        return list(self.journals.get(invocation_id, []))

    def unfinished(self) -> list[tuple[Any, ...]]:
        """Rows not completed."""
        return [r for r in self.invocations.values() if r[COL["status"]] != "completed"]

    def list_invocations(self, status: str | None = None, limit: int = 100) -> list[tuple[Any, ...]]:
        """Newest first."""
        rows = [r for r in self.invocations.values() if status is None or r[COL["status"]] == status]
        rows.sort(key=lambda r: r[COL["created_at"]], reverse=True)
        return rows[:limit]

    def expired(self, now_ms: int, limit: int = 1000) -> list[str]:
        """Completed rows past retention."""
        out = []
        for r in self.invocations.values():
            until = r[COL["retention_until"]]
            if r[COL["status"]] == "completed" and until is not None and until <= now_ms:
                out.append(r[COL["id"]])
        return out[:limit]

    def load_timers(self, until_ms: int) -> list[tuple[int, str, str, int]]:
        """Timers due by `until_ms`, earliest first."""
        due = [(at, i, k, c) for (i, k, c), at in self.timers.items() if at <= until_ms]
        return sorted(due)
