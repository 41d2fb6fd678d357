"""Fault injection: a store that "crashes the process" right after a chosen journal append is committed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from durably.server.store.base import Batch, Store
from durably.server.store.invocation_query import InvocationFilter
from durably.server.store.ops import DeploymentRecord, LinkRecords


class SimulatedCrash(RuntimeError):
    """Raised by a FaultyStore once it has crashed: nothing more is written."""


class FaultyStore(Store):
    """Wraps a store; the commit that holds the Nth journal append succeeds, then everything fails.

    The engine sees the failure as a dead disk and stops without acknowledging anything of that commit,
    which is what a process killed right after its fsync looks like from the outside. Restart on the inner
    store to see what a real restart would see.
    """

    def __init__(self, inner: Store, crash_after_appends: int) -> None:
        self.inner = inner
        self.threaded = inner.threaded
        self.crash_after = crash_after_appends
        self.appended = 0
        self.crashed = False

    def commit(self, batch: Batch) -> None:
        """Commit, then crash if the Nth append was in this batch."""
        if self.crashed:
            raise SimulatedCrash("the process has crashed")
        self.inner.commit(batch)
        self.appended += len(batch.journal)
        if self.appended >= self.crash_after:
            self.crashed = True
            raise SimulatedCrash(f"simulated crash after journal append {self.appended}")

    def load_invocation(self, invocation_id: str) -> tuple[Any, ...] | None:
        return self.inner.load_invocation(invocation_id)

    def load_journal(self, invocation_id: str) -> list[tuple[int, bytes]]:
        return self.inner.load_journal(invocation_id)

    def unfinished(self, statuses: Sequence[str] | None = None, keyed: bool = False) -> list[tuple[Any, ...]]:
        return self.inner.unfinished(statuses, keyed)

    def list_invocations(self, status: str | None = None, limit: int = 100) -> list[tuple[Any, ...]]:
        return self.inner.list_invocations(status, limit)

    def expired(self, now_ms: int, limit: int = 1000) -> list[str]:
        return self.inner.expired(now_ms, limit)

    def load_timers(self, until_ms: int) -> list[tuple[int, str, str, int]]:
        return self.inner.load_timers(until_ms)

    def journal_rows(self, invocation_id: str, offset: int = 0,
                     limit: int | None = None) -> list[tuple[int, int, bytes, int]]:
        return self.inner.journal_rows(invocation_id, offset, limit)

    def max_seq(self) -> int:
        return self.inner.max_seq()

    def load_state(self, service: str, key: str) -> dict[bytes, bytes]:
        return self.inner.load_state(service, key)

    def load_promise(self, service: str, key: str, name: str) -> tuple[bytes | None, int | None, str | None] | None:
        return self.inner.load_promise(service, key, name)

    def load_waiters(self) -> list[tuple[str, str, int, int]]:
        return self.inner.load_waiters()

    def waiters_of(self, target: str) -> list[tuple[str, int, int]]:
        return self.inner.waiters_of(target)

    def load_deployments(self) -> list[DeploymentRecord]:
        return self.inner.load_deployments()

    def load_concurrency_rules(self) -> dict[str, int | None]:
        return self.inner.load_concurrency_rules()

    def load_links(self) -> LinkRecords:
        return self.inner.load_links()

    def load_subscriptions(self) -> list[dict[str, Any]]:
        return self.inner.load_subscriptions()

    def invocation_page(self, flt: InvocationFilter, limit: int,
                        before: tuple[int, int] | None = None) -> list[tuple[Any, ...]]:
        return self.inner.invocation_page(flt, limit, before)

    def count_journal(self, invocation_id: str) -> int:
        return self.inner.count_journal(invocation_id)

    def caller_of(self, invocation_id: str) -> str | None:
        return self.inner.caller_of(invocation_id)

    def state_keys(self, service: str, after: str, limit: int) -> list[str]:
        return self.inner.state_keys(service, after, limit)

    def count_by_status(self, statuses: Sequence[str]) -> dict[str, int]:
        return self.inner.count_by_status(statuses)

    def count_timers(self) -> int:
        return self.inner.count_timers()

    def close(self) -> None:
        """Keep the inner store open: the test restarts on it."""
