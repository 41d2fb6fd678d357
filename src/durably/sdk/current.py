"""The context of the handler running in this task, for integrations that cannot be handed one.

Agent frameworks call back into user code (model wrappers, tools, middleware) without passing the
handler's `ctx` along. `Attempt.run` binds the context here for the duration of the handler, so those
callbacks can find it; asyncio tasks spawned by the handler inherit the binding.
"""

from __future__ import annotations

import contextvars
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from durably.sdk.context import Context

log = logging.getLogger("durably.extensions")

_CURRENT: contextvars.ContextVar[Context | None] = contextvars.ContextVar("durably_current_context", default=None)

# Per-invocation-attempt data of extensions, keyed by the context object (ids are reused, so not id()).
_EXTENSION_ATTR = "_durably_extension_data"


def current_context() -> Context | None:
    """The context of the handler running in this task, or None outside a handler."""
    return _CURRENT.get()


def bind(ctx: Any) -> contextvars.Token[Context | None]:
    """Make `ctx` the current context (the attempt driver calls this before the handler runs)."""
    return _CURRENT.set(ctx)


def unbind(token: contextvars.Token[Context | None], ctx: Any) -> None:
    """Undo `bind` and close the extension data of this attempt (values with a `__close__` method)."""
    _CURRENT.reset(token)
    data: dict[str, Any] | None = getattr(ctx, _EXTENSION_ATTR, None)
    if not data:
        return
    for key, value in list(data.items()):
        close = getattr(value, "__close__", None)
        if close is None:
            continue
        try:
            close()
        except Exception:
            # An extension's cleanup must not turn a finished attempt into a failed one.
            log.exception("closing extension data %r failed", key)
    data.clear()


def get_extension_data(ctx: Any, key: str) -> Any:
    """The value an extension stored on this attempt's context under `key`, or None."""
    data: dict[str, Any] | None = getattr(ctx, _EXTENSION_ATTR, None)
    return None if data is None else data.get(key)


def set_extension_data(ctx: Any, key: str, value: Any) -> None:
    """Store a value for this attempt; if it has `__close__`, that is called when the attempt ends."""
    data: dict[str, Any] | None = getattr(ctx, _EXTENSION_ATTR, None)
    if data is None:
        data = {}
        setattr(ctx, _EXTENSION_ATTR, data)
    data[key] = value


def clear_extension_data(ctx: Any, key: str) -> None:
    """Drop the value stored under `key` (calling its `__close__` if it has one)."""
    data: dict[str, Any] | None = getattr(ctx, _EXTENSION_ATTR, None)
    value = None if data is None else data.pop(key, None)
    close = getattr(value, "__close__", None)
    if close is not None:
        close()


def is_replaying(ctx: Any = None) -> bool:
    """True while the handler re-executes steps whose results come from the journal."""
    ctx = ctx if ctx is not None else _CURRENT.get()
    if ctx is None:
        return False
    from durably.sdk.context import is_replaying_in  # context imports this module: at call time

    return is_replaying_in(ctx)
