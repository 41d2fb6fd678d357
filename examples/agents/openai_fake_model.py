"""A scripted model for the OpenAI Agents SDK, so the examples and tests run without an API key.

`ScriptedModel(reply)` calls `reply(input_items)` for each model request; `reply` returns the output
items (messages and function calls) built with `text(...)` and `tool_call(...)`.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from agents import Model, ModelResponse, Usage
from agents.items import TResponseInputItem, TResponseOutputItem, TResponseStreamEvent
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

Reply = Callable[[list[dict[str, Any]]], list[TResponseOutputItem]]


def text(message: str) -> ResponseOutputMessage:
    """An assistant message (a final answer unless tools are called too)."""
    return ResponseOutputMessage(
        id="msg", type="message", role="assistant", status="completed",
        content=[ResponseOutputText(type="output_text", text=message, annotations=[])])


def tool_call(name: str, arguments: dict[str, Any], call_id: str) -> ResponseFunctionToolCall:
    """A request to call tool `name` (handoffs are tools named `transfer_to_<agent>`)."""
    return ResponseFunctionToolCall(type="function_call", name=name, arguments=json.dumps(arguments),
                                    call_id=call_id, id=f"fc-{call_id}", status="completed")


def as_items(input: str | list[TResponseInputItem]) -> list[dict[str, Any]]:
    """The model input as plain dicts."""
    if isinstance(input, str):
        return [{"role": "user", "content": input}]
    return [i if isinstance(i, dict) else i.model_dump() for i in input]  # type: ignore[union-attr]


def user_messages(items: list[dict[str, Any]]) -> list[str]:
    """The user's messages in the input, oldest first."""
    return [str(i.get("content")) for i in items if i.get("role") == "user"]


def tool_outputs(items: list[dict[str, Any]]) -> list[str]:
    """The tool results in the input, oldest first."""
    return [str(i.get("output")) for i in items if i.get("type") == "function_call_output"]


class ScriptedModel(Model):
    """A Model that answers with `reply(items)`; `on_call(items)` sees every request (for counting)."""

    def __init__(self, reply: Reply, on_call: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        self.reply = reply
        self.on_call = on_call

    async def get_response(self, system_instructions: str | None, input: str | list[TResponseInputItem],
                           *args: Any, **kwargs: Any) -> ModelResponse:
        items = as_items(input)
        if self.on_call is not None:
            self.on_call(items)
        return ModelResponse(output=self.reply(items), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError("the scripted model does not stream")


def real_model_wanted() -> bool:
    """True when OPENAI_API_KEY is set: the examples then use the agent's real model."""
    return bool(os.environ.get("OPENAI_API_KEY"))
