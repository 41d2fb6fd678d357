"""A scripted model for Google ADK, so the examples and tests run without an API key.

`ScriptedLlm(reply=...)` answers each request with `reply(contents)`, built with `text(...)` or
`tool_calls(...)`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types


def text(message: str) -> LlmResponse:
    """A final answer."""
    return LlmResponse(content=types.Content(role="model", parts=[types.Part.from_text(text=message)]))


def tool_calls(*calls: tuple[str, dict[str, Any], str]) -> LlmResponse:
    """A response calling tools: (name, arguments, call id) each."""
    parts = [types.Part(function_call=types.FunctionCall(name=n, args=a, id=i)) for n, a, i in calls]
    return LlmResponse(content=types.Content(role="model", parts=parts))


def user_messages(contents: list[types.Content]) -> list[str]:
    """The user's messages, oldest first."""
    return [p.text for c in contents if c.role == "user" for p in (c.parts or []) if p.text]


def tool_outputs(contents: list[types.Content]) -> list[str]:
    """The tool results since the latest user message, oldest first."""
    out: list[str] = []
    for c in contents:
        for p in c.parts or []:
            if p.text and c.role == "user":
                out = []
            elif p.function_response is not None:
                response = p.function_response.response or {}
                out.append(str(response.get("result", response)))
    return out


class ScriptedLlm(BaseLlm):
    """An ADK model answering with `reply(contents)`; `on_call(contents)` sees every request."""

    model: str = "scripted"
    reply: Callable[[list[types.Content]], LlmResponse]
    on_call: Callable[[list[types.Content]], None] | None = None

    async def generate_content_async(self, llm_request: LlmRequest, stream: bool = False
                                     ) -> AsyncGenerator[LlmResponse, None]:
        if self.on_call is not None:
            self.on_call(llm_request.contents)
        yield self.reply(llm_request.contents)
