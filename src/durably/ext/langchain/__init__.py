"""Durable LangChain agents (`pip install 'durably[langchain]'`).

Pass `RestateMiddleware()` to `langchain.agents.create_agent(..., middleware=[...])` and run the agent
inside a handler: each model call is one journaled step (replayed, never re-requested, after a crash or
suspension), and the parallel tool calls of a model response run one at a time in the model's order.
Tools journal their side effects with `restate_context().run_typed(...)` and may use every other
context feature (sleeps, calls, awakeables).

The public names are those of `restate.ext.langchain` (restate-sdk 1.2.0).
"""

from __future__ import annotations

import typing

from durably.ext._requires import require

require("langchain.agents", "langchain", "LangChain (langchain, langgraph)")

from durably.sdk.context import Context, ObjectContext  # noqa: E402
from durably.sdk.current import current_context  # noqa: E402

from ._middleware import RestateMiddleware  # noqa: E402


def restate_context() -> Context:
    """The context of the running handler (for use inside tools)."""
    ctx = current_context()
    if ctx is None:
        raise RuntimeError("No durably context found: call this inside a handler (or a tool it runs).")
    return ctx


def restate_object_context() -> ObjectContext:
    """The context of the running virtual-object handler (for tools that read or write state)."""
    return typing.cast(ObjectContext, restate_context())


__all__ = ["RestateMiddleware", "restate_context", "restate_object_context"]
