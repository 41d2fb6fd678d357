"""The in-process runtime users write their tests with."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from durably.sdk.errors import TerminalError
from durably.sdk.options import DEFAULT_INVOCATION_RETRY_POLICY, InvocationRetryPolicy
from durably.sdk.service import App, Handler
from durably.server.engine.clock import Clock, VirtualClock
from durably.server.engine.engine import Engine, EngineOptions
from durably.server.engine.invocation import Outcome
from durably.server.http.ingress import Ingress
from durably.server.store import MemoryStore, SQLiteStore, Store
from durably.testing.faults import FaultyStore


class TestRuntime:
    """An engine with the app's handlers, no sockets.

    - `store`: "memory" (default), "sqlite" (a fresh temporary data directory unless `data_dir` is given),
      or a Store instance.
    - `always_replay`: suspend after every journal append, so every step is replayed from the store on the
      next attempt. Handlers that pass with it are deterministic.
    - `retry_policy`: the runtime's default invocation retry policy (tests usually want fast retries).
    - `virtual_clock`: time stands still until `advance` moves it, firing every timer on the way (sleeps,
      delayed sends, retry backoff, inactivity and abort timeouts), so a test can skip a day at once.
    - `crash_after_appends`: the commit holding the Nth journal append succeeds and then the "process
      dies" (nothing of that commit is acknowledged). `restart()` brings up a new engine on the same store.
    - `inactivity_timeout`, `abort_timeout`: the runtime defaults (1 min and 10 min otherwise).
    - `step_wait`: how long (real time) `settle` waits for a sync `ctx.run` closure to return before it counts
      it as hanging and lets the runtime (and `advance`, e.g. to an abort timeout) go on without it.
    - `concurrency_rules`: Restate 1.7's concurrency limits per scope and limit key, pattern -> limit
      (e.g. `{"tenant1": 2, "tenant1/*": 1}`; see `durably.server.engine.flow_control`).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, app: App, store: str | Store = "memory", *, always_replay: bool = False,
                 data_dir: str | Path | None = None, retry_policy: InvocationRetryPolicy | None = None,
                 virtual_clock: bool = False, crash_after_appends: int | None = None,
                 inactivity_timeout: timedelta | None = None, abort_timeout: timedelta | None = None,
                 concurrency_rules: dict[str, int] | None = None,
                 step_wait: timedelta = timedelta(seconds=5)) -> None:
        self.app = app
        self.step_wait = step_wait
        self._store_spec = store
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        policy = DEFAULT_INVOCATION_RETRY_POLICY if retry_policy is None else retry_policy.merged_over(
            DEFAULT_INVOCATION_RETRY_POLICY)
        self.options = EngineOptions(always_replay=always_replay, default_retry_policy=policy)
        if inactivity_timeout is not None:
            self.options.inactivity_timeout = inactivity_timeout
        if abort_timeout is not None:
            self.options.abort_timeout = abort_timeout
        if concurrency_rules:
            self.options.concurrency_rules = dict(concurrency_rules)
        self.clock: Clock = VirtualClock() if virtual_clock else Clock()
        self._crash_after = crash_after_appends
        self.engine: Engine | None = None
        self.store: Store | None = None
        self._inner: Store | None = None

    def _make_store(self) -> Store:
        spec = self._store_spec
        if isinstance(spec, Store):
            return spec
        if spec == "memory":
            return MemoryStore()
        if spec == "sqlite":
            if self._data_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="durably-test-")
                self._data_dir = Path(self._tmp.name)
            return SQLiteStore(self._data_dir)
        raise ValueError(f"unknown store {spec!r}: use 'memory', 'sqlite' or a Store")

    async def start(self) -> TestRuntime:
        """Start the engine (resuming whatever the store holds)."""
        self._inner = self._make_store()
        self.store = FaultyStore(self._inner, self._crash_after) if self._crash_after else self._inner
        self.engine = Engine(self.app, self.store, self.options, self.clock)
        await self.engine.start()
        return self

    async def stop(self) -> None:
        """Stop the engine; unfinished invocations stay in the store."""
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None
        if self._inner is not None and self._inner is not self.store:
            self._inner.close()

    @property
    def crashed(self) -> bool:
        """Whether the injected crash has happened."""
        return isinstance(self.store, FaultyStore) and self.store.crashed

    async def restart(self) -> None:
        """Stop the engine as a crash would and start a new one on the same store, without faults."""
        assert self._inner is not None
        if self.engine is not None:
            await self.engine.stop(close_store=False)
        self.store = self._inner
        self.engine = Engine(self.app, self.store, self.options, self.clock)
        await self.engine.start()

    async def settle(self) -> None:
        """Let the runtime run until nothing moves: attempts blocked, every sync `ctx.run` closure returned
        (except those of aborted attempts, which may never return), everything committed.

        A sync closure still running after `step_wait` (real time) counts as hanging: settle returns without
        it, so `advance` can reach the abort timeout that ends its attempt."""
        engine = self._engine()
        hanging: set[int] = set()
        deadline = asyncio.get_running_loop().time() + self.step_wait.total_seconds()
        while True:
            before = engine.appends
            for _ in range(20):
                await asyncio.sleep(0)
            # A closure on a thread moves the journal when it returns, however many loop ticks that takes.
            running = [f for f in engine.run_executor.live_futures() if id(f) not in hanging]
            if running:
                left = deadline - asyncio.get_running_loop().time()
                _, late = await asyncio.wait([asyncio.wrap_future(f) for f in running], timeout=max(left, 0))
                if late:
                    hanging.update(id(f) for f in running if not f.done())
            await engine.flushed()
            if engine.appends == before and not running:
                return

    async def advance(self, delta: timedelta) -> None:
        """Move the virtual clock forward, firing every timer due on the way in order."""
        if not isinstance(self.clock, VirtualClock):
            raise RuntimeError("advance needs TestRuntime(..., virtual_clock=True)")
        target = self.clock.now() + delta.total_seconds()
        await self.settle()
        while (cb := self.clock.pop_due(target)) is not None:
            cb()
            await self.settle()
        self.clock.set(target)
        await self.settle()

    async def __aenter__(self) -> TestRuntime:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def _handler(self, target: str) -> tuple[Handler, str]:
        parts = target.strip("/").split("/")
        services = self.engine.services if self.engine is not None else self.app.services
        svc = services.get(parts[0])
        if svc is None:
            raise KeyError(f"no service {parts[0]!r}")
        keyed = svc.kind != "service"
        if len(parts) != (3 if keyed else 2):
            raise ValueError(f"target must be '{svc.name}/{{key}}/{{handler}}'" if keyed
                             else f"target must be '{svc.name}/{{handler}}'")
        key = parts[1] if keyed else ""
        h = svc.handlers.get(parts[-1])
        if h is None:
            raise KeyError(f"no handler {target!r}")
        return h, key

    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("the runtime is not started: use `async with TestRuntime(app) as rt`")
        return self.engine

    async def send(self, target: str, arg: Any = None, *, idempotency_key: str | None = None) -> str:
        """Start an invocation and return its id once it is durably accepted."""
        h, key = self._handler(target)
        body = h.input_serde.serialize(arg) if h.takes_input else b""
        engine = self._engine()
        _, inv_id, _ = engine.invoke(h, body, [], key, idempotency_key)
        await engine.barrier()
        return inv_id

    async def call(self, target: str, arg: Any = None, *, idempotency_key: str | None = None) -> Any:
        """Invoke and wait; returns the handler's output or raises its TerminalError."""
        inv_id = await self.send(target, arg, idempotency_key=idempotency_key)
        return await self.attach(inv_id, target)

    async def attach(self, inv_id: str, target: str | None = None) -> Any:
        """Wait for an invocation's result (decoded with the target handler's serde when given)."""
        outcome = await self._engine().wait_outcome(inv_id)
        if outcome is None:
            raise KeyError(f"no invocation {inv_id}")
        return self._decode(outcome, target)

    def _decode(self, outcome: Outcome, target: str | None) -> Any:
        if outcome.failure_code is not None:
            raise TerminalError(outcome.failure_message or "", outcome.failure_code, outcome.failure_metadata)
        if target is None:
            return outcome.value
        h, _ = self._handler(target)
        return h.output_serde.deserialize(outcome.value or b"")

    def http(self, body_limit: int | None = None) -> httpx.AsyncClient:
        """An HTTP client talking to this runtime's ingress in process (no sockets)."""
        ingress = Ingress(self._engine()) if body_limit is None else Ingress(self._engine(), body_limit)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=ingress),
                                 base_url="http://durably.test")
