"""Durable agents with the OpenAI Agents SDK (`pip install -e '.[openai]'` in a durably checkout).

Run an agent with `DurableRunner.run(agent, input)` inside a handler: every model call becomes one
journaled step (replayed, never re-requested, after a crash or suspension), the tool calls of a model
response run one at a time in the model's order, and with `use_restate_session=True` the conversation
lives in the virtual object's state. Tools journal their side effects with
`restate_context().run_typed(...)` and may use every other context feature (sleeps, calls, awakeables).

The public names are those of `restate.ext.openai` (restate-sdk 1.2.0).
"""

from __future__ import annotations

from durably.ext._requires import require

require("agents", "openai", "the OpenAI Agents SDK (openai-agents)")

from durably.ext._context import restate_context, restate_object_context  # noqa: E402

from .functions import durable_function_tool, propagate_cancellation, raise_terminal_errors  # noqa: E402
from .runner_wrapper import DurableRunner  # noqa: E402

__all__ = [
    "DurableRunner",
    "durable_function_tool",
    "propagate_cancellation",
    "raise_terminal_errors",
    "restate_context",
    "restate_object_context",
]
