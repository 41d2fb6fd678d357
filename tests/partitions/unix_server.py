"""A real uvicorn (the internal listener's server) on a unix socket, for the tests of the partitions' sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn

from durably.server.partitions.layout import listen_unix


@asynccontextmanager
async def serving(app: Any, path: Path, **config: Any) -> AsyncIterator[uvicorn.Server]:
    """`app` served on the unix socket `path` until the block ends."""
    sock = listen_unix(path)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", **config))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):  # uvicorn has no started event; bounded so a broken start fails the test
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        await task
