"""Telling a bug in handler code that uses the SDK wrongly from a transient fault.

A handler that calls a context method Durably does not have, or passes a keyword one does not take, fails
the same way on every attempt. It is still retried under the invocation's retry policy (a redeploy may
fix it), but it is named in the log once, with the handler and the line, and the caller is told at once
instead of waiting on an invocation that cannot finish.
"""

from __future__ import annotations

import logging
import re
import traceback
import types
from pathlib import Path
from typing import Any

log = logging.getLogger("durably.handler")

_SDK_DIR = Path(__file__).resolve().parent
_UNEXPECTED_KW = re.compile(r"^(\w+)\.(\w+)\(\) got an unexpected keyword argument '(\w+)'")
_logged: set[tuple[str, str, int]] = set()


def _sdk_class_names() -> set[str]:
    from durably.sdk import combinators, context

    names = {n for n, v in vars(context).items() if isinstance(v, type)}
    return names | {n for n, v in vars(combinators).items() if isinstance(v, type)}


def _user_frame(e: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of the traceback that is not Durably's own code."""
    frames = traceback.extract_tb(e.__traceback__)
    for frame in reversed(frames):
        if not Path(frame.filename).resolve().is_relative_to(_SDK_DIR.parent):
            return frame
    return frames[-1] if frames else None


def sdk_misuse(e: BaseException) -> str | None:
    """If `e` comes from using the SDK in a way it does not support, what went wrong; else None."""
    if isinstance(e, AttributeError):
        obj = getattr(e, "obj", None)
        if isinstance(obj, types.ModuleType) and obj.__name__.split(".")[0] == "durably":
            return (f"module {obj.__name__} has no attribute '{e.name}': Durably's SDK does not provide it "
                    "(check the spelling, or the restate-sdk API it mirrors)")
        if obj is not None and type(obj).__module__.startswith("durably.sdk"):
            return (f"{type(obj).__name__} has no attribute '{e.name}': Durably's SDK does not provide it "
                    "(check the spelling, or the restate-sdk API it mirrors)")
        return None
    if isinstance(e, TypeError):
        match = _UNEXPECTED_KW.match(str(e))
        if match and match.group(1) in _sdk_class_names():
            return (f"{match.group(1)}.{match.group(2)}() takes no keyword argument '{match.group(3)}': "
                    "Durably's SDK does not support it")
    return None


def report(e: BaseException, what: str, handler: Any) -> str:
    """Log the misuse once per handler and line; returns the message for the caller and `describe`."""
    frame = _user_frame(e)
    where = f"{frame.filename}:{frame.lineno}" if frame is not None else "unknown line"
    name = f"{handler.service.name}/{handler.name}"
    key = (name, frame.filename if frame else "", frame.lineno or 0 if frame else 0)
    if key not in _logged:
        _logged.add(key)
        log.error("handler %s at %s: %s. This is a bug in the handler, not a transient fault: the invocation "
                  "keeps retrying under its retry policy until the code is fixed and redeployed (or it is "
                  "killed).", name, where, what)
    return (f"{what} (handler {name} at {where}). This is a bug in the handler code: the invocation is retried "
            "under its retry policy until the code is fixed and redeployed, or it is killed")
