"""`DurableRunner`: `agents.Runner.run` with every model call journaled."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from agents import Agent, Model, RunConfig, Runner, RunResult
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.models.multi_provider import MultiProvider
from pydantic import TypeAdapter

from durably.ext.turnstile import Turnstile
from durably.sdk.current import current_context
from durably.sdk.errors import SdkInternalBaseException, TerminalError
from durably.sdk.options import RunOptions
from durably.sdk.serde import Serde

from .functions import get_function_call_ids, wrap_agent_tools
from .models import RestateModelResponse, State
from .session import RestateSession


class _ResponseSerde(Serde[RestateModelResponse]):
    """The journaled form of a model response: its pydantic JSON."""

    _adapter = TypeAdapter(RestateModelResponse)

    def serialize(self, obj: RestateModelResponse | None) -> bytes:
        return b"" if obj is None else self._adapter.dump_json(obj)

    def deserialize(self, buf: bytes) -> RestateModelResponse | None:
        return self._adapter.validate_json(buf) if buf else None


class RestateModelWrapper(Model):
    """A Model whose `get_response` is one journaled step: replayed from the journal after a crash,
    a retry or a suspension instead of asking the model again."""

    def __init__(self, model: Model, state: State, llm_run_options: RunOptions[Any]) -> None:
        self.model = model
        self.state = state
        self.model_name = "RestateModelWrapper"
        self.llm_run_options = dataclasses.replace(llm_run_options, serde=_ResponseSerde())

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        """Ask the wrapped model once; journal and return its response."""
        ctx = current_context()
        if ctx is None:
            raise RuntimeError("DurableRunner needs a running handler: call it from inside a durably handler.")

        async def call_llm() -> RestateModelResponse:
            response = await self.model.get_response(*args, **kwargs)
            return RestateModelResponse(output=response.output, usage=response.usage,
                                        response_id=response.response_id)

        result = await ctx.run_typed("call LLM", call_llm, self.llm_run_options)
        assert result is not None
        # The tool calls of this response take turns in the model's order (deterministic journal).
        self.state.turnstile = Turnstile(get_function_call_ids(result.output))
        return ModelResponse(output=result.output, usage=result.usage, response_id=result.response_id)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        """Not supported: a journaled step has one result, not a stream."""
        raise TerminalError("Streaming is not supported in durable agents. Use `get_response` instead.")


class DurableModelCalls(MultiProvider):
    """The default model provider, with every model it hands out journaled."""

    def __init__(self, state: State, llm_retry_opts: RunOptions[Any]) -> None:
        super().__init__()
        self.llm_retry_opts = llm_retry_opts
        self.state = state

    def get_model(self, model_name: str | None) -> Model:
        """The named model (or the default one), wrapped."""
        return RestateModelWrapper(super().get_model(model_name or None), self.state, self.llm_retry_opts)


class DurableRunner:
    """`Runner.run` for durable handlers.

    It installs a model provider that journals each model call (taking over `model_provider` of a given
    `run_config`), makes the tool calls of each model response run one at a time in order, and, with
    `use_restate_session=True`, keeps the conversation in the virtual object's state.
    """

    @staticmethod
    async def run(
        starting_agent: Agent[Any],
        input: str | list[TResponseInputItem],
        *,
        use_restate_session: bool = False,
        run_options: RunOptions[Any] | None = None,
        **kwargs: Any,
    ) -> RunResult:
        """Run the agent loop to its final output.

        Args:
            starting_agent: the agent to start with (handoffs are followed).
            input: the user's message, or input items.
            use_restate_session: keep the conversation in the virtual object's state (key `items`);
                needs a VirtualObject handler, and excludes a `session` argument.
            run_options: retry limits of each model call (e.g. `RunOptions(max_attempts=3)`); when they
                are spent the call fails with a TerminalError that the handler can catch. Without
                limits a failing call is retried under the invocation's retry policy.
            **kwargs: passed on to `agents.Runner.run` (`run_config`, `session`, `max_turns`, ...).
        """
        state = State()
        llm_retry_opts = run_options if run_options is not None else RunOptions()

        def wrap_model(model: Any) -> Any:
            # The SDK uses a Model instance set on an agent (or the run config) directly, bypassing the
            # provider; wrap those too so scripted and custom models are journaled like named ones.
            if isinstance(model, Model) and not isinstance(model, RestateModelWrapper):
                return RestateModelWrapper(model, state, llm_retry_opts)
            return model

        run_config = kwargs.pop("run_config", None) or RunConfig()
        if isinstance(run_config, dict):  # newer Agents SDKs accept the config as a dict too
            run_config = RunConfig(**run_config)
        run_config = dataclasses.replace(run_config, model_provider=DurableModelCalls(state, llm_retry_opts),
                                         model=wrap_model(run_config.model))

        session = kwargs.pop("session", None)
        if use_restate_session:
            if session is not None:
                raise TerminalError("When use_restate_session is True, session config cannot be provided.")
            session = RestateSession()

        agent = wrap_agent_tools(starting_agent, state, wrap_model)
        try:
            result = await Runner.run(starting_agent=agent, input=input, run_config=run_config, session=session,
                                      **kwargs)
        except SdkInternalBaseException:
            raise  # the attempt is over (suspended or aborted): the context takes no more writes
        except BaseException:
            if isinstance(session, RestateSession):
                session.flush()
            raise
        if isinstance(session, RestateSession):
            session.flush()
        return result
