"""Durable LangChain agents (`pip install -e '.[langchain]'` in a durably checkout).

Pass `RestateMiddleware()` to `langchain.agents.create_agent(..., middleware=[...])` and run the agent
inside a handler: each model call is one journaled step (replayed, never re-requested, after a crash or
suspension), and the parallel tool calls of a model response run one at a time in the model's order.
Tools journal their side effects with `restate_context().run_typed(...)` and may use every other
context feature (sleeps, calls, awakeables).

The public names are those of `restate.ext.langchain` (restate-sdk 1.2.0).
"""

from __future__ import annotations

from durably.ext._requires import require

require("langchain.agents", "langchain", "LangChain (langchain, langgraph)")

from durably.ext._context import restate_context, restate_object_context  # noqa: E402

from ._middleware import RestateMiddleware  # noqa: E402

__all__ = ["RestateMiddleware", "restate_context", "restate_object_context"]
