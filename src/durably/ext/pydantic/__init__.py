"""Durable agents with Pydantic AI (`pip install -e '.[pydantic-ai]'` in a durably checkout).

Wrap an agent with `RestateAgent(agent)` and run it inside a handler: every model request becomes one
journaled step (replayed, never re-requested, after a crash or suspension), and the tool calls of a
model response run one at a time in the model's order. Tools journal their side effects with
`restate_context().run_typed(...)`, or pass `auto_wrap_tools=True` to journal each function tool call
as one step. Keep the conversation in virtual-object state (`result.all_messages()` with
`ModelMessagesTypeAdapter`) to give an agent memory that survives restarts.

The public names are those of `restate.ext.pydantic` (restate-sdk 1.2.0).
"""

from __future__ import annotations

from durably.ext._requires import require

require("pydantic_ai", "pydantic-ai", "Pydantic AI (pydantic-ai-slim)")

from durably.ext._context import restate_context, restate_object_context  # noqa: E402

from ._agent import RestateAgent  # noqa: E402
from ._model import RestateModelWrapper  # noqa: E402
from ._serde import PydanticTypeAdapter  # noqa: E402
from ._toolset import RestateContextRunToolSet  # noqa: E402

__all__ = [
    "PydanticTypeAdapter",
    "RestateAgent",
    "RestateContextRunToolSet",
    "RestateModelWrapper",
    "restate_context",
    "restate_object_context",
]
