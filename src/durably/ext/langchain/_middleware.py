"""`RestateMiddleware`: journals model calls and orders tool calls of a LangChain `create_agent` agent."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, cast

from langchain.agents.middleware import AgentMiddleware
from langchain.agents.middleware.types import ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command
from pydantic import BaseModel, TypeAdapter

from durably.ext.turnstile import Turnstile
from durably.sdk.current import current_context, get_extension_data, set_extension_data
from durably.sdk.options import RunOptions
from durably.sdk.serde import Serde

ToolCallResult = ToolMessage | Command
_STATE_KEY = "langchain-state"


class SerializableModelResponse(BaseModel):
    """A model response in journal form: `AnyMessage` is a tagged union, so tool calls survive the trip."""

    result: list[AnyMessage]
    structured_response: Any | None = None


class _ResponseSerde(Serde[SerializableModelResponse]):
    _adapter = TypeAdapter(SerializableModelResponse)

    def serialize(self, obj: SerializableModelResponse | None) -> bytes:
        return b"" if obj is None else self._adapter.dump_json(obj)

    def deserialize(self, buf: bytes) -> SerializableModelResponse | None:
        return self._adapter.validate_json(buf) if buf else None


class _State:
    """The turns of the latest model response's tool calls, kept on the attempt's context (tool tasks
    that langgraph spawns all reach the same context, whatever their contextvars)."""

    __slots__ = ("turnstile",)

    def __init__(self) -> None:
        self.turnstile = Turnstile([])

    def __close__(self) -> None:
        self.turnstile.cancel_all()


def _state(ctx: Any) -> _State:
    state = get_extension_data(ctx, _STATE_KEY)
    if state is None:
        state = _State()
        set_extension_data(ctx, _STATE_KEY, state)
    return state


class RestateMiddleware(AgentMiddleware):  # type: ignore[type-arg]
    """Makes a `create_agent` agent durable: model calls journaled, tool calls in the model's order.

    Args:
        run_options: retry limits of each model call (e.g. `RunOptions(max_attempts=3)`); when spent, the
            call fails with a TerminalError the handler can catch. `serde` is set internally.
    """

    def __init__(self, run_options: RunOptions[Any] | None = None) -> None:
        super().__init__()
        base = run_options if run_options is not None else RunOptions()
        self._options: RunOptions[Any] = dataclasses.replace(base, serde=_ResponseSerde())

    async def awrap_model_call(self, request: ModelRequest,
                               handler: Callable[[ModelRequest], Awaitable[ModelResponse]]) -> ModelResponse:
        """Call the model once as a journaled step; replay its response afterwards."""
        ctx = current_context()
        if ctx is None:
            raise RuntimeError("RestateMiddleware must run inside a durably handler: call agent.ainvoke(...) "
                               "from a handler.")

        async def call_model() -> SerializableModelResponse:
            response = await handler(request)
            return SerializableModelResponse(result=list(response.result),
                                             structured_response=response.structured_response)

        journaled = await ctx.run_typed("LLM call", call_model, self._options)
        assert journaled is not None
        structured = journaled.structured_response
        schema = getattr(request.response_format, "schema", None)
        if structured is not None and isinstance(schema, type) and issubclass(schema, BaseModel):
            structured = schema.model_validate(structured)

        ai = next((m for m in journaled.result if isinstance(m, AIMessage)), None)
        if ai is not None:
            ids = [tid for tc in (ai.tool_calls or []) if (tid := tc.get("id")) is not None]
            _state(ctx).turnstile = Turnstile(ids)
        return ModelResponse(result=cast(list[BaseMessage], journaled.result), structured_response=structured)

    async def awrap_tool_call(self, request: ToolCallRequest,
                              handler: Callable[[ToolCallRequest], Awaitable[ToolCallResult]]) -> ToolCallResult:
        """Run the tool call in its turn (the model's order), so its journaled steps replay in order."""
        call_id = request.tool_call.get("id")
        if call_id is None:
            return ToolMessage("Function call ID is required for tool invocation. Please set `id` on the ToolCall.",
                               tool_call_id="")
        ctx = current_context()
        if ctx is None:
            raise RuntimeError("RestateMiddleware must run inside a durably handler.")
        turnstile = _state(ctx).turnstile
        await turnstile.wait_for(call_id)
        try:
            result = await handler(request)
        except BaseException:
            turnstile.cancel_all_after(call_id)
            raise
        turnstile.allow_next_after(call_id)
        if isinstance(result, ToolMessage):
            # A deterministic id: the message is part of the conversation that later turns replay.
            result.id = str(ctx.uuid())
        return result
