"""Durable agents with Google's Agent Development Kit (`pip install -e '.[adk]'` in a durably checkout).

Add `RestatePlugin()` to the ADK app's plugins and run the agent inside a handler: each model call is one
journaled step (replayed, never re-requested, after a crash or suspension), and the parallel tool calls
of a model response run one at a time in the model's order. `RestateSessionService()` keeps ADK sessions
in the virtual object's state. Tools journal their side effects with `restate_context().run_typed(...)`
and may use every other context feature (sleeps, calls, awakeables).

The public names are those of `restate.ext.adk` (restate-sdk 1.2.0).
"""

from __future__ import annotations

from durably.ext._requires import require

require("google.adk", "adk", "Google ADK (google-adk)")

from durably.ext._context import restate_context, restate_object_context  # noqa: E402

from .plugin import RestatePlugin  # noqa: E402
from .session import RestateSessionService  # noqa: E402
from .summarizer import RestateEventSummarizer  # noqa: E402

__all__ = [
    "RestateEventSummarizer",
    "RestatePlugin",
    "RestateSessionService",
    "restate_context",
    "restate_object_context",
]
