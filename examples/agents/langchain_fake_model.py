"""A scripted chat model for LangChain, so the examples and tests run without an API key.

LangChain's own fake chat models cannot bind tools, which `create_agent` needs; this one can.
`ScriptedChatModel(reply=...)` answers each request with `reply(messages)`, an `AIMessage` built with
`text(...)` or `tool_calls(...)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable


def text(message: str) -> AIMessage:
    """A final answer."""
    return AIMessage(content=message)


def tool_calls(*calls: tuple[str, dict[str, Any], str]) -> AIMessage:
    """A response calling tools: (name, arguments, call id) each."""
    return AIMessage(content="", tool_calls=[{"name": n, "args": a, "id": i, "type": "tool_call"} for n, a, i in calls])


def user_messages(messages: Sequence[BaseMessage]) -> list[str]:
    """The user's messages, oldest first."""
    return [str(m.content) for m in messages if isinstance(m, HumanMessage)]


def tool_outputs(messages: Sequence[BaseMessage]) -> list[str]:
    """The tool results since the latest user message, oldest first."""
    out: list[str] = []
    for m in messages:
        if isinstance(m, HumanMessage):
            out = []
        elif isinstance(m, ToolMessage):
            out.append(str(m.content))
    return out


class ScriptedChatModel(BaseChatModel):
    """A chat model answering with `reply(messages)`; `on_call(messages)` sees every request."""

    reply: Callable[[list[BaseMessage]], AIMessage]
    on_call: Callable[[list[BaseMessage]], None] | None = None

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        if self.on_call is not None:
            self.on_call(messages)
        return ChatResult(generations=[ChatGeneration(message=self.reply(messages))])

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, BaseMessage]:
        """The script decides which tools to call; binding changes nothing."""
        return self


def real_model_wanted() -> bool:
    """True when OPENAI_API_KEY is set: the examples then use a real OpenAI model."""
    return bool(os.environ.get("OPENAI_API_KEY"))
