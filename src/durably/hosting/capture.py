"""Finds the app a script builds only inside its entry point, without running the script's server.

Restate's templates build their app in `main()` and start hypercorn right after
(`app = restate.app(services=[...])`, then `hypercorn.asyncio.serve(app, conf)`), so there is no module-level
`app` for `durably serve script.py` to import. This module runs the entry point (`main()`, or the file as
`__main__`) and stops it at the moment `durably.app(...)` returns: the server call after it never runs.
"""

from __future__ import annotations

import asyncio
import inspect
import runpy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from durably.sdk import service
from durably.sdk.service import App


class _Captured(BaseException):
    """Unwinds the script's entry point from inside `durably.app(...)` (a BaseException so `except Exception`
    blocks in the script do not swallow it)."""

    def __init__(self, app: App) -> None:
        super().__init__("durably captured the app")
        self.app = app


class CaptureError(Exception):
    """The script's entry point failed before it built an app."""


@contextmanager
def _capturing() -> Iterator[None]:
    def hook(app: App) -> None:
        raise _Captured(app)

    service.app_built_hooks.append(hook)
    try:
        yield
    finally:
        service.app_built_hooks.remove(hook)


def capture_app(module: ModuleType, path: Path | None = None) -> App | None:
    """The app that `module`'s entry point builds, or None if it builds none.

    The entry point is `module.main()` if there is one (awaited if it is a coroutine function), else the module
    run again as `__main__` (its file `path`, or by module name). Raises CaptureError if it fails first.
    """
    entry = getattr(module, "main", None)
    try:
        with _capturing():
            if callable(entry):
                result = entry()
                if inspect.iscoroutine(result):
                    asyncio.run(result)
            elif path is not None:
                runpy.run_path(str(path), run_name="__main__")
            else:
                runpy.run_module(module.__name__, run_name="__main__", alter_sys=False)
    except _Captured as captured:
        return captured.app
    except SystemExit as e:
        raise CaptureError(f"{_entry_name(module, entry)} exited ({e.code}) before it built a durably app") from None
    except Exception as e:
        raise CaptureError(f"{_entry_name(module, entry)} failed before it built a durably app: "
                           f"{type(e).__name__}: {e}") from e
    return None


def _entry_name(module: ModuleType, entry: object) -> str:
    return f"{module.__name__}.main()" if callable(entry) else f"running {module.__name__} as __main__"
