"""restate-sdk's test harness API, backed by Durably's own in-process server: no Docker, no binary.

```python
async with durably.create_test_harness(app) as env:
    assert await env.client.service_call(greet, "Ada") == "Hello Ada!"
    httpx.get(f"{env.admin_api_url}/invocations")          # the admin API answers too
```

restate-sdk starts a restate-server container and serves the app beside it; here the engine, the ingress
and the admin API run in a background thread with its own event loop, on loopback ports the OS picks, with
an in-memory store. `durably.testing.TestRuntime` stays the richer harness (virtual clock, crash injection,
SQLite, restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from durably.client_types import RestateClient
from durably.clients.typed import create_client
from durably.sdk.options import InvocationRetryPolicy
from durably.sdk.service import App
from durably.server.http.admin import Admin
from durably.server.http.ingress import Ingress
from durably.testing.harness import TestRuntime

START_TIMEOUT_S = 30.0


@dataclass
class HarnessEnvironment:
    """Where the harness's server listens, and a client connected to its ingress."""

    ingress_url: str
    admin_api_url: str
    client: RestateClient


class _Uvicorn(uvicorn.Server):
    """Leaves signals alone: the harness lives inside the user's test process."""

    def install_signal_handlers(self) -> None:  # older uvicorn
        pass

    def capture_signals(self):  # type: ignore[no-untyped-def]  # newer uvicorn
        return contextlib.nullcontext()


def _bind() -> socket.socket:
    # Port 0: the OS picks a free port, so nothing can take it between choosing and binding.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    return sock


class ServerThread:
    """Durably's engine, ingress and admin API in a daemon thread, for the harness."""

    def __init__(self, app: App, always_replay: bool = False, disable_retries: bool = False,
                 follow_logs: bool = False) -> None:
        self.app = app
        self.always_replay = always_replay
        self.retry_policy = InvocationRetryPolicy(max_attempts=1, on_max_attempts="kill") if disable_retries else None
        self.follow_logs = follow_logs
        self._sockets = [_bind(), _bind()]
        self.ingress_url = f"http://127.0.0.1:{self._sockets[0].getsockname()[1]}"
        self.admin_api_url = f"http://127.0.0.1:{self._sockets[1].getsockname()[1]}"
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="durably-test-harness", daemon=True)
        self._log_handler: logging.Handler | None = None

    def start(self) -> ServerThread:
        """Start serving; returns once the ingress and the admin API accept connections."""
        if self.follow_logs:
            self._log_handler = logging.StreamHandler(sys.stderr)
            logging.getLogger("durably").addHandler(self._log_handler)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError(f"the test harness's server did not start within {START_TIMEOUT_S} s")
        if self._error is not None:
            raise RuntimeError(f"the test harness's server failed to start: {self._error!r}") from self._error
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread (unfinished invocations are dropped with the memory store)."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT_S)
        for sock in self._sockets:
            sock.close()
        if self._log_handler is not None:
            logging.getLogger("durably").removeHandler(self._log_handler)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:
            self._error = e
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        rt = TestRuntime(self.app, "memory", always_replay=self.always_replay, retry_policy=self.retry_policy)
        await rt.start()
        assert rt.engine is not None
        servers = [
            _Uvicorn(uvicorn.Config(Ingress(rt.engine), lifespan="off", log_level="warning", access_log=False)),
            _Uvicorn(uvicorn.Config(Admin(rt.engine), lifespan="off", log_level="warning", access_log=False)),
        ]
        tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in zip(servers, self._sockets, strict=True)]
        try:
            while not all(s.started for s in servers):
                if any(t.done() for t in tasks):
                    raise RuntimeError("uvicorn stopped while starting")
                await asyncio.sleep(0.01)
            self._ready.set()
            await self._stop.wait()
        finally:
            for s in servers:
                s.should_exit = True
            await rt.stop()  # answers callers still waiting, so their connections close
            await asyncio.gather(*tasks, return_exceptions=True)


@asynccontextmanager
async def create_test_harness(app: App, follow_logs: bool = False, restate_image: str | None = None,
                              always_replay: bool = False, disable_retries: bool = False,
                              journal_value_codec: Any = None) -> AsyncIterator[HarnessEnvironment]:
    """Serve `app` on Durably's in-process server and yield its URLs and a typed client.

    - `always_replay`: suspend after every journal append, so each step is replayed (finds non-determinism).
    - `disable_retries`: a failing invocation is not retried (one attempt, then it fails).
    - `follow_logs`: copy the server's log to stderr.
    - `restate_image` is accepted for restate-sdk compatibility and ignored: there is no container.
    """
    del restate_image
    server = await asyncio.to_thread(lambda: ServerThread(app, always_replay, disable_retries, follow_logs).start())
    try:
        async with create_client(server.ingress_url, journal_value_codec=journal_value_codec) as client:
            yield HarnessEnvironment(server.ingress_url, server.admin_api_url, client)
    finally:
        await asyncio.to_thread(server.stop)


class RestateTestHarness:
    """restate-sdk's older synchronous harness (`test_harness(app)`): `with` it, then `ingress_client()`."""

    def __init__(self, app: App, always_replay: bool = False, disable_retries: bool = False,
                 follow_logs: bool = False) -> None:
        self.app = app
        self._args = (always_replay, disable_retries, follow_logs)
        self.server: ServerThread | None = None

    def start(self) -> None:
        """Start the server."""
        self.server = ServerThread(self.app, *self._args).start()

    def stop(self) -> None:
        """Stop the server."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def ingress_client(self) -> httpx.Client:
        """An httpx client of the ingress."""
        if self.server is None:
            raise AssertionError("the harness is not started: use `with test_harness(app) as h` or h.start()")
        return httpx.Client(base_url=self.server.ingress_url, timeout=httpx.Timeout(None, connect=10.0))

    def __enter__(self) -> RestateTestHarness:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def test_harness(app: App, follow_logs: bool = False, restate_image: str | None = None,
                 always_replay: bool = False, disable_retries: bool = False) -> RestateTestHarness:
    """The older synchronous harness of restate-sdk (prefer `create_test_harness`)."""
    del restate_image
    return RestateTestHarness(app, always_replay, disable_retries, follow_logs)


test_harness.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
