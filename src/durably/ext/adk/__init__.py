"""Durable agents with Google's Agent Development Kit (`pip install 'durably[adk]'`).

Add `RestatePlugin()` to the ADK app's plugins and run the agent inside a handler: each model call is one
journaled step (replayed, never re-requested, after a crash or suspension), and the parallel tool calls
of a model response run one at a time in the model's order. `RestateSessionService()` keeps ADK sessions
in the virtual object's state. Tools journal their side effects with `restate_context().run_typed(...)`
and may use every other context feature (sleeps, calls, awakeables).

The public names are those of `restate.ext.adk` (restate-sdk 1.2.0).
"""

from __future__ import annotations

import typing

from durably.ext._requires import require

require("google.adk", "adk", "Google ADK (google-adk)")

from durably.sdk.context import Context, ObjectContext  # noqa: E402
from durably.sdk.current import current_context  # noqa: E402

from .plugin import RestatePlugin  # noqa: E402
from .session import RestateSessionService  # noqa: E402
from .summarizer import RestateEventSummarizer  # noqa: E402


def restate_context() -> Context:
    """The context of the running handler (for use inside tools)."""
    ctx = current_context()
    if ctx is None:
        raise RuntimeError("No durably context found: call this inside a handler (or a tool it runs).")
    return ctx


def restate_object_context() -> ObjectContext:
    """The context of the running virtual-object handler (for tools that read or write state)."""
    return typing.cast(ObjectContext, restate_context())


__all__ = [
    "RestateEventSummarizer",
    "RestatePlugin",
    "RestateSessionService",
    "restate_context",
    "restate_object_context",
]
