"""Finds the user's app from what `durably serve` was given, importing it the way Python would.

    durably serve pkg.module:app     a module, imported like `python -m pkg.module` from the working directory
    durably serve app/server.py      a file: imported as `app.server` when it lies under the working directory
    durably serve app                a package (a directory or a package name): its app, else its `__main__`

Every form puts the working directory on `sys.path` (as uvicorn and hypercorn do), so `from app.utils
import x` works; a file's own directory goes there too (as `python file.py` does), so sibling imports work.
A file is never imported as `__main__`: the `if __name__ == "__main__": main()` block of Restate's templates,
which starts hypercorn, does not run. A file that starts its server at the top level (a `__main__.py` that
builds the app and serves it) is stopped where it builds the app (`durably.hosting.capture`); one that would
start a server before building a durably app is not imported at all.

The attribute after `:` defaults to `app` when that is a durably App; else the one App in the module; else
the app its `main()` (or main guard) builds, captured. A module-level `app` of another kind (an ADK `App`, a
FastAPI app) does not stop the search: only when no durably app is found anywhere does the loader complain.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from durably.sdk.service import App

# The module name of a top-level `__main__.py`: anything but `__main__`, so its main guard stays false.
MAIN_FILE_MODULE = "__durably_main__"


class AppLoadError(Exception):
    """The app reference cannot be resolved to a durably App."""


# Apps captured while importing a script that serves them at its top level, by module name.
_captured_at_import: dict[str, tuple[ModuleType, App]] = {}


class _NotFound(AppLoadError):
    """The module named is not there (as opposed to being there and failing)."""


def _put_on_path(*dirs: Path) -> None:
    for d in reversed(dirs):
        s = str(d)
        if s not in sys.path:
            sys.path.insert(0, s)


def _import(name: str, shown: str) -> ModuleType:
    """Import a module; a syntax error becomes one line with the file and line number."""
    try:
        return importlib.import_module(name)
    except SyntaxError as e:
        raise AppLoadError(_syntax_error_line(e)) from None
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            raise _NotFound(f"cannot import {shown}: no module named {e.name!r} (looked in {os.getcwd()} "
                            "and the installed packages)") from None
        raise  # a missing dependency of the user's code: its traceback says where


def _syntax_error_line(e: SyntaxError) -> str:
    where = f"{e.filename}:{e.lineno}" if e.filename else "the app"
    text = (e.text or "").strip()
    return f"{where}: SyntaxError: {e.msg}" + (f": {text}" if text else "")


def _dotted_name(path: Path, cwd: Path) -> tuple[str | None, Path]:
    """The name `python -m` would import `path` under (None if it has no better name than its file's), and
    the directory that name is relative to: `cwd` when the file lies below it, else its package root."""
    try:
        parts = list(path.with_suffix("").relative_to(cwd).parts)
        root = cwd
    except ValueError:
        # Outside the working directory: its package is found by walking up the __init__.py files.
        parts = [path.stem]
        root = path.parent
        while (root / "__init__.py").is_file():
            parts.insert(0, root.name)
            root = root.parent
    if parts and parts[-1] == "__init__":
        parts.pop()
    if len(parts) < 2 and (not parts or root != cwd or parts == ["__main__"]):
        return None, root
    return ".".join(parts), root


def _serves_at_import(path: Path) -> bool:
    """True if importing `path` would start a server after building its app (so it is imported stopped at
    the app); AppLoadError if it would start one before; False for an ordinary module."""
    from durably.hosting.capture import CaptureError, refuse_server_start, top_level_code

    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"), str(path))
    except SyntaxError as e:
        raise AppLoadError(_syntax_error_line(e)) from None
    try:
        return refuse_server_start(top_level_code(tree, False), f"importing {path}", str(path))
    except CaptureError as e:
        raise AppLoadError(str(e)) from None


def _load_file(path: Path) -> ModuleType:
    cwd = Path.cwd().resolve()
    dotted, root = _dotted_name(path, cwd)
    _put_on_path(cwd, path.parent, root)
    if _serves_at_import(path):
        return _load_stopped_at_app(path, dotted)
    if dotted is not None:
        spec = _find_spec(dotted.split(".", 1)[0])
        # Only if the name leads to this very file (not to an installed package of the same name).
        if spec is not None and _spec_holds(spec, path):
            try:
                module = _import(dotted, str(path))
            except _NotFound:
                module = None  # e.g. a directory name with a dot in it: load the file by location instead
            if module is not None and Path(getattr(module, "__file__", "") or "").resolve() == path:
                return module
    name = MAIN_FILE_MODULE if path.stem == "__main__" else path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[name]
        raise AppLoadError(_syntax_error_line(e)) from None
    return module


def _load_stopped_at_app(path: Path, dotted: str | None) -> ModuleType:
    """Import a script that serves its app at the top level, stopped where it builds the app."""
    from durably.hosting.capture import exec_until_app

    name = dotted or (MAIN_FILE_MODULE if path.stem == "__main__" else path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        app = exec_until_app(spec.loader, module)
    except SyntaxError as e:
        del sys.modules[name]
        raise AppLoadError(_syntax_error_line(e)) from None
    if app is not None:
        _captured_at_import[name] = (module, app)
    return module


def _find_spec(name: str) -> Any:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def _spec_holds(spec: Any, path: Path) -> bool:
    locations = list(spec.submodule_search_locations or []) or ([spec.origin] if spec.origin else [])
    for loc in locations:
        loc_path = Path(loc).resolve()
        if loc_path == path or loc_path in path.parents:
            return True
    return False


def load_module(target: str) -> ModuleType:
    """Import what `target` names: `pkg.module`, `path/to/file.py`, or a package directory or name."""
    looks_like_path = target.endswith(".py") or "/" in target or os.sep in target
    if looks_like_path or Path(target).is_dir():
        path = Path(target).resolve()
        if path.is_dir():
            init = path / "__init__.py"
            if init.is_file() or (path / "__main__.py").is_file():
                return _load_file(init if init.is_file() else path / "__main__.py")
            raise AppLoadError(f"{target} is a directory without __init__.py or __main__.py: name the file "
                               "that builds the app (durably serve path/to/file.py)")
        if not path.is_file() and path.suffix != ".py" and path.with_name(path.name + ".py").is_file():
            path = path.with_name(path.name + ".py")  # hypercorn's form: `durably serve ordering/app:app`
        if not path.is_file():
            raise AppLoadError(f"no such file: {target}")
        return _load_file(path)
    _put_on_path(Path.cwd().resolve())  # like `python -m`: modules in the working directory import
    return _import(target, f"module {target!r}")


def _apps_in(module: ModuleType) -> list[App]:
    return [v for v in vars(module).values() if isinstance(v, App)]


def find_app(module: ModuleType, target: str, attr: str | None = None) -> App:
    """The App in an imported module: `attr`, else `app`, else the only App; a package's `__main__` too."""
    entry = _captured_at_import.get(module.__name__)
    captured = entry[1] if entry is not None and entry[0] is module else None
    if attr:
        obj = getattr(module, attr, None)
        if obj is None and captured is not None:
            return captured  # the script was stopped while it built this very app
        if obj is None:
            raise AppLoadError(f"{target} has no attribute {attr!r}")
        if not isinstance(obj, App):
            raise AppLoadError(f"{target}:{attr} is a {type(obj).__name__}, not a durably app (use "
                               "durably.app(services=[...]))")
        return obj
    obj = getattr(module, "app", None)
    if isinstance(obj, App):
        return obj
    if captured is not None:
        return captured
    found = _apps_in(module)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        names = ", ".join(k for k, v in vars(module).items() if isinstance(v, App))
        raise AppLoadError(f"{target} has several apps ({names}); pick one with {target}:<attribute>")
    if hasattr(module, "__path__") and module.__name__ != MAIN_FILE_MODULE:
        # A package whose app is built in its __main__.py (`python -m pkg`), imported under its own name.
        main_name = module.__name__ + ".__main__"
        if _find_spec(main_name) is not None:
            return find_app(_import(main_name, main_name), target)
    # A module-level `app` of another kind (an ADK App, a web framework's app) does not end the search.
    try:
        built = _app_built_by_entry_point(module)
    except AppLoadError as e:
        if obj is not None:
            raise AppLoadError(f"{target}:app is a {type(obj).__name__}, not a durably app, and no durably app was "
                               f"found elsewhere: {e}") from None
        raise
    if built is not None:
        return built
    if obj is not None:
        raise AppLoadError(f"{target}:app is a {type(obj).__name__}, not a durably app, and {target} builds no "
                           "durably app at module level or in main(): build one (app = durably.app(services=[...]))")
    raise AppLoadError(no_app_message(module, target))


def _app_built_by_entry_point(module: ModuleType) -> App | None:
    """An app built only inside `main()` (Restate's templates), captured without starting the script's server."""
    from durably.hosting.capture import CaptureError, capture_app

    file = getattr(module, "__file__", None)
    try:
        return capture_app(module, Path(file) if file else None)
    except CaptureError as e:
        raise AppLoadError(str(e)) from e


def no_app_message(module: ModuleType, target: str) -> str:
    """What to tell a user whose module has no app at import time (e.g. it builds it in `main()`)."""
    file = getattr(module, "__file__", None) or target
    source = ""
    try:
        source = Path(file).read_text(encoding="utf-8", errors="replace")
    except OSError:
        pass
    in_main = callable(getattr(module, "main", None)) or "__main__" in source
    if in_main and ".app(" in source:
        return (f"{file} builds its app only when run as a script (inside main() or under "
                "`if __name__ == \"__main__\":`), so importing it gives no app to serve. Move the line "
                "`app = restate.app(services=[...])` to the top level of the file (main() can keep starting "
                f"hypercorn with it), then `durably serve {target}`; or run the script as it is with "
                f"`DURABLY_EMBEDDED=1 python {file}`.")
    return f"{target} has no durably app: build one at module level (app = durably.app(services=[...]))"


def load_app(ref: str) -> App:
    """Import the app named by `ref` (`pkg.module[:app]`, `file.py[:app]`, `package_dir`, `package`)."""
    target, _, attr = ref.partition(":")
    module = load_module(target)
    return find_app(module, target, attr or None)
