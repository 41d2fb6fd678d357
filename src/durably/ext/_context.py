"""`restate_context()` and `restate_object_context()`: how tools find the handler they run in.

Every integration exports both under these names (as restate-sdk's do); one definition serves them all.
"""

from __future__ import annotations

import typing

from durably.sdk.context import Context, ObjectContext
from durably.sdk.current import current_context


def restate_context() -> Context:
    """The context of the running handler (for use inside tools)."""
    ctx = current_context()
    if ctx is None:
        raise RuntimeError("No durably context found: call this inside a handler (or a tool it runs).")
    return ctx


def restate_object_context() -> ObjectContext:
    """The context of the running virtual-object handler (for tools that read or write state)."""
    return typing.cast(ObjectContext, restate_context())
