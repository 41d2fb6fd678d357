"""Durable agents with Pydantic AI (`pip install 'durably[pydantic-ai]'`).

Wrap an agent with `RestateAgent(agent)` and run it inside a handler: every model request becomes one
journaled step (replayed, never re-requested, after a crash or suspension), and the tool calls of a
model response run one at a time in the model's order. Tools journal their side effects with
`restate_context().run_typed(...)`, or pass `auto_wrap_tools=True` to journal each function tool call
as one step. Keep the conversation in virtual-object state (`result.all_messages()` with
`ModelMessagesTypeAdapter`) to give an agent memory that survives restarts.

The public names are those of `restate.ext.pydantic` (restate-sdk 1.2.0).
"""

from __future__ import annotations

import typing

from durably.ext._requires import require

require("pydantic_ai", "pydantic-ai", "Pydantic AI (pydantic-ai-slim)")

from durably.sdk.context import Context, ObjectContext  # noqa: E402
from durably.sdk.current import current_context  # noqa: E402

from ._agent import RestateAgent  # noqa: E402
from ._model import RestateModelWrapper  # noqa: E402
from ._serde import PydanticTypeAdapter  # noqa: E402
from ._toolset import RestateContextRunToolSet  # noqa: E402


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
    "PydanticTypeAdapter",
    "RestateAgent",
    "RestateContextRunToolSet",
    "RestateModelWrapper",
    "restate_context",
    "restate_object_context",
]
