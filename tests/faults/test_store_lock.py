"""The data directory lock lives in the store, so every way of starting the runtime takes it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import durably
from durably.server.store import SQLiteStore
from durably.server.store.datadir import DataDirInUse
from durably.testing import TestRuntime

svc = durably.Service("Svc")


@svc.handler()
async def echo(ctx: durably.Context, x: int) -> int:
    return x


app = durably.app(services=[svc])


def test_a_second_store_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path)
    with pytest.raises(DataDirInUse, match=f"in use by another durably server \\(pid {os.getpid()}\\)"):
        SQLiteStore(tmp_path)
    first.close()
    SQLiteStore(tmp_path).close()  # released by close


async def test_the_test_runtime_takes_the_lock_too(tmp_path: Path) -> None:
    async with TestRuntime(app, "sqlite", data_dir=tmp_path) as rt:
        assert await rt.call("Svc/echo", 3) == 3
        with pytest.raises(DataDirInUse):
            SQLiteStore(tmp_path)
    async with TestRuntime(app, "sqlite", data_dir=tmp_path) as rt:
        assert await rt.call("Svc/echo", 4) == 4
