"""Embedded mode wherever the app is served: the runtime starts inside the ASGI server that serves the app.

A Restate project starts its deployment with its own server call (`hypercorn.asyncio.serve(app, conf)` in
`main()`, or `uvicorn`/`hypercorn` on the command line). With `DURABLY_EMBEDDED=1` in the environment (or under
`durably run python __main__.py`, which sets it) the same process also runs Durably's engine, ingress and admin
API on the server's event loop, started from the ASGI lifespan: `python __main__.py` is then a whole system
(ingress :8080, admin :9070, SQLite in ./durably-data). Without the variable the app is a plain Restate
deployment, as before, so the same script still serves a real Restate server unchanged.

Settings are `durably serve`'s, every one of them, from the environment (DURABLY_PORT, DURABLY_INGRESS_TOKEN,
DURABLY_MAX_BODY, ...) and the DURABLY_CONFIG file: `durably.cli.serve.embedded_config` resolves them with the
same defaults and the same refusals, into the same `ServerConfig` (durably.server.config). The ports are
Durably's own ingress and admin listeners, beside the socket the program's ASGI server owns. DURABLY_APP is the
one setting ignored (with a warning): the app is the one the program serves.

Nothing is installed when `durably` is imported: an App asks `durably.sdk.endpoint.asgi_endpoint` what serves
it on its first ASGI call, and that brings this module in only when DURABLY_EMBEDDED is set.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from durably.sdk.asgi import Receive, Scope, Send
from durably.sdk.endpoint import Endpoint, embedded_requested
from durably.sdk.service import App

if TYPE_CHECKING:
    from durably.server.config import ServerConfig
    from durably.server.process.runtime import DurablyServer

log = logging.getLogger("durably.hosting.embedded")

ENV_HOST = "DURABLY_HOST"
ENV_PORT = "DURABLY_PORT"
ENV_ADMIN_PORT = "DURABLY_ADMIN_PORT"
ENV_DATA_DIR = "DURABLY_DATA_DIR"
ENV_SYNCHRONOUS = "DURABLY_SYNCHRONOUS"
ENV_IN_MEMORY = "DURABLY_IN_MEMORY"


class EmbeddedConfigError(ValueError):
    """A setting of embedded mode has a value that cannot be used (the message is `durably serve`'s)."""


def config_from_env() -> ServerConfig:
    """The embedded server's settings: `durably serve`'s, from DURABLY_* variables and the DURABLY_CONFIG file."""
    from durably.cli.serve import embedded_config
    from durably.cli.settings import SettingsError

    try:
        return embedded_config()
    except SettingsError as e:
        raise EmbeddedConfigError(str(e)) from None


def _configure_logging(config: ServerConfig) -> None:
    """A bare script configures no logging: give durably's loggers a stderr handler, at DURABLY_LOG_LEVEL and in
    DURABLY_LOG_FORMAT, so it says where it serves (only ours, so the ASGI server's own lines are not printed
    twice). A program that configures logging keeps its handlers; DURABLY_LOG_LEVEL still sets durably's level
    when it is not the default."""
    from durably.server.config import ServerConfig
    from durably.server.observe.log_format import TEXT_FORMAT, JsonFormatter

    ours = logging.getLogger("durably")
    if not logging.getLogger().handlers and not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter() if config.log_format == "json" else logging.Formatter(TEXT_FORMAT))
        ours.addHandler(handler)
        ours.setLevel(config.log_level.upper())
        return
    if config.log_level != ServerConfig.log_level:
        ours.setLevel(config.log_level.upper())
    if config.log_format != ServerConfig.log_format:
        log.warning("DURABLY_LOG_FORMAT=%s is ignored: the program configures its own logging handlers",
                    config.log_format)


class EmbeddingEndpoint:
    """The app's deployment endpoint, plus the embedded runtime when the environment asks for it.

    The runtime starts at the ASGI lifespan startup (before the server accepts connections) and stops at its
    shutdown; a server run with lifespan off starts it at the first request instead.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.endpoint = Endpoint(app)
        self.server: DurablyServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if embedded_requested():
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
                return
            if self._task is None:
                await self.start()
        await self.endpoint(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as e:
                    log.error("durably: the embedded runtime did not start: %s", e)
                    await send({"type": "lifespan.startup.failed", "message": f"durably: {e}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        """Start the engine, ingress and admin API on this event loop; return once they serve."""
        from durably.server.process.runtime import DurablyServer

        async with self._lock:
            if self._task is not None:
                return
            config = config_from_env()
            _configure_logging(config)
            self.server = DurablyServer(self.app, config)
            ready = asyncio.Event()
            # The ASGI server owns SIGTERM/SIGINT; it stops us through the lifespan shutdown.
            self._task = asyncio.create_task(self.server.serve(ready, handle_signals=False))
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait([waiter, self._task], return_when=asyncio.FIRST_COMPLETED)
            if not ready.is_set():
                waiter.cancel()
                task, self._task = self._task, None
                task.result()  # raises why it stopped (a taken port, a locked data dir...)
                raise RuntimeError("the embedded runtime stopped while starting")

    async def stop(self) -> None:
        """Stop the embedded runtime cleanly (waiting callers get 503, the store is closed)."""
        task, self._task = self._task, None
        if task is None or self.server is None:
            return
        self.server.request_stop()
        await asyncio.gather(task, return_exceptions=True)
