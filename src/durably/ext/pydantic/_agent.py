"""`RestateAgent`: a Pydantic AI agent whose model requests and tool calls are durable."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from pydantic_ai import models
from pydantic_ai.agent.abstract import AbstractAgent, EventStreamHandler
from pydantic_ai.agent.wrapper import WrapperAgent
from pydantic_ai.exceptions import UserError
from pydantic_ai.messages import AgentStreamEvent, UserContent
from pydantic_ai.models import Model
from pydantic_ai.run import AgentRunResult
from pydantic_ai.tools import RunContext
from pydantic_ai.toolsets.abstract import AbstractToolset
from pydantic_ai.toolsets.function import FunctionToolset

from durably.sdk.current import current_context
from durably.sdk.errors import TerminalError
from durably.sdk.options import RunOptions

from ._model import RestateModelWrapper
from ._toolset import RestateContextRunToolSet, RestateMCPToolset, RestateTurnToolSet
from ._utils import state_context


class RestateAgent(WrapperAgent[Any, Any]):
    """Wraps a Pydantic AI agent for durable handlers.

    - Each model request is one journaled step, retried per `run_options` (a TerminalError the handler
      can catch once its limits are spent; without limits, the invocation's retry policy applies).
    - The tool calls of one model response run one at a time in the model's order, so steps that tools
      journal through `restate_context()` are replayed in order. Tools may sleep, call handlers and wait
      on awakeables.
    - With `auto_wrap_tools=True` every function tool call is itself one journaled step (such tools must
      not use the context).

    The wrapped agent needs its model set at construction; it cannot be chosen per run.
    """

    def __init__(self, wrapped: AbstractAgent[Any, Any], *,
                 event_stream_handler: EventStreamHandler[Any] | None = None,
                 auto_wrap_tools: bool = False, run_options: RunOptions[Any] | None = None) -> None:
        super().__init__(wrapped)
        if not isinstance(wrapped.model, Model):
            raise TerminalError("An agent needs to have a `model` in order to be used with Restate, it cannot be "
                                "set at agent run time.")
        self._event_stream_handler = event_stream_handler
        self._auto_wrap_tools = auto_wrap_tools
        options = run_options if run_options is not None else RunOptions()
        self._model = RestateModelWrapper(wrapped.model, options, event_stream_handler=event_stream_handler)

        def durable(toolset: AbstractToolset[Any]) -> AbstractToolset[Any]:
            if isinstance(toolset, FunctionToolset):
                if auto_wrap_tools:
                    return RestateContextRunToolSet(toolset, options)
                return RestateTurnToolSet(toolset)
            try:
                from pydantic_ai.mcp import MCPToolset
            except ImportError:  # the mcp extra of pydantic-ai is not installed
                return toolset
            if isinstance(toolset, MCPToolset):
                return RestateMCPToolset(toolset, options)
            return toolset

        self._toolsets = [ts.visit_and_replace(durable) for ts in wrapped.toolsets]

    @contextmanager
    def _restate_overrides(self) -> Iterator[None]:
        with super().override(model=self._model, toolsets=self._toolsets, tools=[]), state_context():
            yield

    @property
    def model(self) -> models.Model | models.KnownModelName | str | None:
        """The journaled model."""
        return self._model

    @property
    def event_stream_handler(self) -> EventStreamHandler[Any] | None:
        """The event stream handler; with auto-wrapped tools, each event is handled in a journaled step."""
        handler = self._event_stream_handler or super().event_stream_handler
        if handler is None or not self._auto_wrap_tools:
            return handler
        return self.wrapped_event_stream_handler

    async def wrapped_event_stream_handler(self, ctx: RunContext[Any],
                                           stream: AsyncIterable[AgentStreamEvent]) -> None:
        """Hand each event to the user's handler inside its own step, so it is handled once."""
        fn = self._event_stream_handler
        if fn is None:
            return
        context = current_context()
        if context is None:
            raise UserError("No durably context found for RestateAgent event stream handler.")
        async for event in stream:

            async def one_event(event: AgentStreamEvent = event) -> None:
                async def single() -> AsyncIterator[AgentStreamEvent]:
                    yield event

                await fn(ctx, single())

            await context.run_typed("run event", one_event)

    @property
    def toolsets(self) -> Sequence[AbstractToolset[Any]]:
        """The durable toolsets."""
        with self._restate_overrides():
            return super().toolsets

    async def run(self, user_prompt: str | Sequence[UserContent] | None = None, *,
                  model: models.Model | models.KnownModelName | str | None = None,
                  **kwargs: Any) -> AgentRunResult[Any]:
        """Run the agent to its output (the keyword arguments of `pydantic_ai.Agent.run`, except `model`)."""
        if model is not None:
            raise TerminalError("An agent needs to have a `model` in order to be used with Restate, it cannot be "
                                "set at agent run time.")
        with self._restate_overrides():
            return await super(WrapperAgent, self).run(user_prompt, **kwargs)

    @asynccontextmanager
    async def run_stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Not supported: use `run` with an `event_stream_handler`."""
        raise UserError("RestateAgent does not support run_stream currently.")
        yield  # an async context manager
