"""Finds the app a script builds only inside its entry point, without running the script's server.

Restate's templates build their app in `main()` and start hypercorn right after
(`app = restate.app(services=[...])`, then `hypercorn.asyncio.serve(app, conf)`), so there is no module-level
`app` for `durably serve script.py` to import. This module runs the entry point (`main()`, or the file as
`__main__`) and stops it at the moment `durably.app(...)` returns: the server call after it never runs.

Some scripts start their server at the top level (`__main__.py` files of Restate's AI examples): the loader
imports those the same way, stopped where they build the app. Code that would start a server before it
builds a durably app (read from its source before it runs) is not run at all: `durably serve` says so and
exits, rather than let the script's own server listen.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import runpy
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

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


# Calls that start a server: by their last name, or any call into these server packages that runs or serves.
_SERVER_CALLS = {"serve", "run_app", "serve_forever", "run_server", "start_server"}
_SERVER_PACKAGES = {"uvicorn", "hypercorn", "granian", "waitress", "gunicorn", "aiohttp"}


def _dotted(func: ast.expr) -> list[str]:
    parts: list[str] = []
    while isinstance(func, ast.Attribute):
        parts.insert(0, func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.insert(0, func.id)
    return parts


def _is_main_guard(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__")


def server_start(statements: list[ast.stmt]) -> tuple[int | None, bool]:
    """Where `statements` (in source order) first start a server: (its line or None, whether a call that
    builds an app, `....app(...)`, comes before it)."""
    calls = sorted((c for st in statements for c in ast.walk(st) if isinstance(c, ast.Call)),
                   key=lambda c: (c.lineno, c.col_offset))
    app_seen = False
    for call in calls:
        name = _dotted(call.func)
        if not name:
            continue
        if name[-1] == "app":
            app_seen = True
        elif name[-1] in _SERVER_CALLS or (name[0] in _SERVER_PACKAGES and name[-1] in ("run", "serve", "main")):
            return call.lineno, app_seen
    return None, False


def top_level_code(tree: ast.Module, as_main: bool) -> list[ast.stmt]:
    """The statements a module runs when imported (`as_main`: when run as a script, main guard included)."""
    return [st for st in tree.body if not isinstance(st, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and (as_main or not _is_main_guard(st))]


def refuse_server_start(statements: list[ast.stmt], what: str, where: str) -> bool:
    """True if running `statements` would build a durably app before any server start (so capture stops it
    in time); False if they start no server. Raises CaptureError if a server would start first."""
    line, app_first = server_start(statements)
    if line is None:
        return False
    if not app_first:
        raise CaptureError(f"{what} starts a server ({where}:{line}) before it builds a durably app, so durably "
                           "cannot capture the app without starting the script's own server; not running it. "
                           "Build the app at module level (app = durably.app(services=[...])) and serve that")
    return True


def exec_until_app(loader: Any, module: ModuleType) -> App | None:
    """Run a module's code (`loader.exec_module`), stopped where it builds its app; that app, else None."""
    try:
        with _capturing():
            loader.exec_module(module)
    except _Captured as captured:
        return captured.app
    return None


def _check_entry(module: ModuleType, entry: object, path: Path | None) -> None:
    """Refuse to run an entry point whose source starts a server before it builds an app."""
    try:
        if callable(entry):
            lines, first = inspect.getsourcelines(entry)  # type: ignore[arg-type]
            tree = ast.parse(textwrap.dedent("".join(lines)))
            ast.increment_lineno(tree, first - 1)
            body = tree.body[0].body if tree.body and hasattr(tree.body[0], "body") else tree.body
            where = inspect.getsourcefile(entry) or module.__name__  # type: ignore[arg-type]
            refuse_server_start(body, _entry_name(module, entry), where)
        elif path is not None:
            refuse_server_start(top_level_code(ast.parse(path.read_text(encoding="utf-8")), True),
                                _entry_name(module, entry), str(path))
    except (OSError, TypeError, SyntaxError):
        return  # no source to read (a compiled or built-in entry point): it runs under the capture hook


def capture_app(module: ModuleType, path: Path | None = None) -> App | None:
    """The app that `module`'s entry point builds, or None if it builds none.

    The entry point is `module.main()` if there is one (awaited if it is a coroutine function), else the module
    run again as `__main__` (its file `path`, or by module name). Raises CaptureError if it fails first.
    """
    entry = getattr(module, "main", None)
    _check_entry(module, entry, path)
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
