"""A Pydantic AI model whose requests are journaled steps."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from pydantic_ai.agent.abstract import EventStreamHandler
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import ModelMessage, ModelResponse, ModelResponseStreamEvent
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext
from pydantic_ai.usage import RequestUsage

from durably.ext.turnstile import Turnstile
from durably.sdk.context import Context
from durably.sdk.current import current_context
from durably.sdk.options import RunOptions

from ._serde import PydanticTypeAdapter
from ._utils import current_state

MODEL_RESPONSE_SERDE: PydanticTypeAdapter[ModelResponse] = PydanticTypeAdapter(ModelResponse)


def _context(what: str) -> Context:
    ctx = current_context()
    if ctx is None:
        raise UserError(f"{what} cannot be used without a durably context. Run the agent inside a handler.")
    return ctx


class RestateStreamedResponse(StreamedResponse):
    """A journaled response handed out where the agent expects a stream (it has no events left)."""

    def __init__(self, model_request_parameters: ModelRequestParameters, response: ModelResponse) -> None:
        super().__init__(model_request_parameters)
        self.response = response

    async def _get_event_iterator(self) -> AsyncIterator[ModelResponseStreamEvent]:
        return
        yield  # an async generator with no events

    def get(self) -> ModelResponse:
        """The whole response."""
        return self.response

    @property
    def usage(self) -> RequestUsage:  # type: ignore[override]
        """Token usage of the response."""
        return self.response.usage

    @property
    def model_name(self) -> str:
        """The model that answered."""
        return self.response.model_name or ""

    @property
    def provider_name(self) -> str:
        """The provider that answered."""
        return self.response.provider_name or ""

    @property
    def timestamp(self) -> datetime:
        """When the response was made."""
        return self.response.timestamp

    @property
    def provider_url(self) -> str | None:
        """The provider's endpoint, if known."""
        return getattr(self.response, "provider_url", None)


class RestateModelWrapper(WrapperModel):
    """Wraps a model so each `request` is one journaled step, retried per `run_options`.

    When the retry limits of `run_options` are spent, the request fails with a TerminalError that the
    handler can catch.
    """

    def __init__(self, wrapped: Model, run_options: RunOptions[Any],
                 event_stream_handler: EventStreamHandler[Any] | None = None) -> None:
        super().__init__(wrapped)
        self._options = dataclasses.replace(run_options, serde=MODEL_RESPONSE_SERDE)
        self._event_stream_handler = event_stream_handler

    async def request(self, *args: Any, **kwargs: Any) -> ModelResponse:
        """Ask the wrapped model once; journal and return its response."""
        ctx = _context("A model")
        response = await ctx.run_typed("Model call", self.wrapped.request, self._options, *args, **kwargs)
        assert response is not None
        current_state().turnstile = Turnstile([c.tool_call_id for c in response.tool_calls])
        return response

    @asynccontextmanager
    async def request_stream(self, messages: list[ModelMessage], model_settings: ModelSettings | None,
                             model_request_parameters: ModelRequestParameters,
                             run_context: RunContext[Any] | None = None) -> AsyncIterator[StreamedResponse]:
        """Stream into the event stream handler inside the step; the journal keeps the final response."""
        if run_context is None:
            raise UserError("A durable model needs a run context to stream: use agent.run() with an "
                            "event_stream_handler.")
        handler = self._event_stream_handler
        if handler is None:
            raise UserError("Streaming a durable model needs an event_stream_handler on RestateAgent.")

        async def stream_once() -> ModelResponse:
            async with self.wrapped.request_stream(messages, model_settings, model_request_parameters,
                                                   run_context) as streamed:
                await handler(run_context, streamed)  # type: ignore[arg-type]
                async for _ in streamed:
                    pass
            return streamed.get()

        ctx = _context("A model")
        response = await ctx.run_typed("Model stream call", stream_once, self._options)
        assert response is not None
        current_state().turnstile = Turnstile([c.tool_call_id for c in response.tool_calls])
        yield RestateStreamedResponse(model_request_parameters, response)
