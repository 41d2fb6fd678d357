"""Finds the user's app from a `module:attr` or `path/to/file.py[:attr]` reference."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from durably.sdk.service import App


class AppLoadError(Exception):
    """The app reference cannot be resolved to a durably App."""


def load_app(ref: str) -> App:
    """Import the app named by `ref` (`pkg.module:app`, `file.py`, `file.py:app`; attr defaults to `app`)."""
    target, _, attr = ref.partition(":")
    if target.endswith(".py") or "/" in target:
        path = Path(target).resolve()
        if not path.is_file():
            raise AppLoadError(f"no such file: {target}")
        sys.path.insert(0, str(path.parent))
        # A `__main__.py` (Restate's templates) must not be imported as `__main__`: its `if __name__ ==
        # "__main__"` block would start the script's own server.
        name = path.stem if path.stem != "__main__" else "__durably_main__"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise AppLoadError(f"cannot import {target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")  # like `python -m`: modules in the working directory import
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            raise AppLoadError(f"cannot import module {target!r}: {e}") from e
    path_or_none = Path(target).resolve() if target.endswith(".py") or "/" in target else None
    obj: Any
    if attr:
        obj = getattr(module, attr, None)
        if obj is None:
            raise AppLoadError(f"{target} has no attribute {attr!r}")
    else:
        obj = getattr(module, "app", None)
        if not isinstance(obj, App):
            found = [v for v in vars(module).values() if isinstance(v, App)]
            if not found:
                found = _app_built_by_entry_point(module, path_or_none)
            if len(found) != 1:
                raise AppLoadError(f"{target} has no durably app; name it with {target}:<attribute>")
            obj = found[0]
    if not isinstance(obj, App):
        raise AppLoadError(f"{ref} is a {type(obj).__name__}, not a durably app (use durably.app(services=[...]))")
    return obj


def _app_built_by_entry_point(module: Any, path: Path | None) -> list[App]:
    """An app built only inside `main()` (Restate's templates), captured without starting the script's server."""
    from durably.capture import CaptureError, capture_app

    try:
        captured = capture_app(module, path)
    except CaptureError as e:
        raise AppLoadError(str(e)) from e
    return [captured] if captured is not None else []
