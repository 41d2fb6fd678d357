"""Shared fixtures: every runtime scenario runs on both stores, normally and in always-replay mode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest

from durably import InvocationRetryPolicy
from durably.sdk.service import App
from durably.testing import TestRuntime

FAST_RETRIES = InvocationRetryPolicy(initial_interval=timedelta(milliseconds=5),
                                     max_interval=timedelta(milliseconds=20))


@pytest.fixture(params=["memory-normal", "memory-replay", "sqlite-normal", "sqlite-replay"])
def runtime(request: pytest.FixtureRequest, tmp_path) -> Callable[..., object]:
    """A factory: `async with runtime(app) as rt:` in each store and replay mode."""
    store, mode = request.param.split("-")

    @asynccontextmanager
    async def make(app: App, **kwargs: object) -> AsyncIterator[TestRuntime]:
        kwargs.setdefault("retry_policy", FAST_RETRIES)
        rt = TestRuntime(app, store, always_replay=(mode == "replay"),
                         data_dir=tmp_path / "data" if store == "sqlite" else None, **kwargs)  # type: ignore[arg-type]
        async with rt:
            yield rt

    make.always_replay = mode == "replay"  # type: ignore[attr-defined]
    make.store = store  # type: ignore[attr-defined]
    return make
