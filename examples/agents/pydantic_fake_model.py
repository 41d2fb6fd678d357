"""Scripted models for Pydantic AI, so the examples and tests run without an API key.

Pydantic AI ships `FunctionModel` (answers with a function of the messages) and `TestModel`; these
helpers build the replies a `FunctionModel` returns.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel


def text(message: str) -> ModelResponse:
    """A final answer."""
    return ModelResponse(parts=[TextPart(message)])


def tool_calls(*calls: tuple[str, dict[str, Any], str]) -> ModelResponse:
    """A response calling tools: (name, arguments, call id) each."""
    return ModelResponse(parts=[ToolCallPart(name, args, tool_call_id=call_id) for name, args, call_id in calls])


def user_messages(messages: list[ModelMessage]) -> list[str]:
    """The user's prompts, oldest first."""
    return [str(p.content) for m in messages if isinstance(m, ModelRequest)
            for p in m.parts if isinstance(p, UserPromptPart)]


def tool_outputs(messages: list[ModelMessage]) -> list[str]:
    """The tool results since the latest user prompt, oldest first."""
    out: list[str] = []
    for m in messages:
        if isinstance(m, ModelRequest):
            for p in m.parts:
                if isinstance(p, UserPromptPart):
                    out = []
                elif isinstance(p, ToolReturnPart):
                    out.append(str(p.content))
    return out


def scripted(reply: Callable[[list[ModelMessage]], ModelResponse],
             on_call: Callable[[list[ModelMessage]], None] | None = None) -> FunctionModel:
    """A FunctionModel answering with `reply(messages)`; `on_call` sees every request."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if on_call is not None:
            on_call(messages)
        return reply(messages)

    return FunctionModel(respond)


def real_model_wanted() -> bool:
    """True when OPENAI_API_KEY is set: the examples then use a real OpenAI model."""
    return bool(os.environ.get("OPENAI_API_KEY"))
