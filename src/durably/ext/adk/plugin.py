"""`RestatePlugin`: ADK callbacks that journal model calls and order tool calls."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, cast

from google.adk.agents import BaseAgent, LlmAgent
from google.adk.agents.callback_context import CallbackContext
from google.adk.agents.invocation_context import InvocationContext
from google.adk.models import LLMRegistry
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.plugins import BasePlugin
from google.adk.tools.base_tool import BaseTool
from google.adk.tools.tool_context import ToolContext
from google.genai import types

from durably.ext.turnstile import Turnstile
from durably.sdk.context import Context
from durably.sdk.current import clear_extension_data, current_context, get_extension_data, set_extension_data
from durably.sdk.errors import TerminalError
from durably.sdk.options import RunOptions

from .session import RestateSessionService

try:  # ADK's own id format for client-side function call ids
    from google.adk.flows.llm_flows.functions import generate_client_function_call_id
except ImportError:  # pragma: no cover - older or newer ADK layouts
    def generate_client_function_call_id() -> str:
        return f"adk-{uuid.uuid4()}"

_NO_CONTEXT = ("No durably context found for RestatePlugin: run the ADK agent from inside a durably handler.")


def _key(invocation_id: str) -> str:
    return "adk_" + invocation_id


class PluginState:
    """Per ADK invocation: the agent's model and the turns of the latest response's tool calls."""

    def __init__(self, model: BaseLlm) -> None:
        self.model = model
        self.turnstile = Turnstile([])

    def __close__(self) -> None:
        self.turnstile.cancel_all()

    @staticmethod
    def create(invocation_id: str, model: BaseLlm, ctx: Context) -> None:
        """Start the state of one ADK invocation."""
        set_extension_data(ctx, _key(invocation_id), PluginState(model))

    @staticmethod
    def clear(invocation_id: str) -> None:
        """End the state of one ADK invocation."""
        ctx = current_context()
        if ctx is None:
            raise RuntimeError(_NO_CONTEXT)
        clear_extension_data(ctx, _key(invocation_id))

    @staticmethod
    def from_context(invocation_id: str, ctx: Context | None = None) -> PluginState:
        """The state of the ADK invocation in progress."""
        ctx = ctx if ctx is not None else current_context()
        if ctx is None:
            raise RuntimeError(_NO_CONTEXT)
        state = get_extension_data(ctx, _key(invocation_id))
        if state is None:
            raise RuntimeError("No RestatePlugin state found: use the plugin inside a durably handler.")
        return cast(PluginState, state)


def _function_call_ids(response: LlmResponse) -> list[str]:
    parts = response.content.parts if response.content and response.content.parts else []
    return [p.function_call.id for p in parts if p.function_call and p.function_call.id]


def _give_function_calls_ids(response: LlmResponse) -> None:
    # Ids are made inside the journaled step, so they are the same on every replay (results are
    # matched to calls by id).
    parts = response.content.parts if response.content and response.content.parts else []
    for p in parts:
        if p.function_call and not p.function_call.id:
            p.function_call.id = generate_client_function_call_id()


class RestatePlugin(BasePlugin):
    """Makes ADK agents durable: each model call one journaled step, tool calls in the model's order.

    Args:
        run_options: retry limits of each model call (e.g. `RunOptions(max_attempts=3)`); when spent, the
            call fails with a TerminalError the handler can catch.
    """

    def __init__(self, *, run_options: RunOptions[Any] | None = None) -> None:
        super().__init__(name="restate_plugin")
        self._run_options = run_options if run_options is not None else RunOptions()

    async def before_agent_callback(self, *, agent: BaseAgent, callback_context: CallbackContext
                                    ) -> types.Content | None:
        """Remember the agent's model for this ADK invocation."""
        if not isinstance(agent, LlmAgent):
            raise TerminalError("RestatePlugin only supports LlmAgent agents.")
        ctx = current_context()
        if ctx is None:
            raise TerminalError(_NO_CONTEXT)
        model = agent.model if isinstance(agent.model, BaseLlm) else LLMRegistry.new_llm(agent.model)
        PluginState.create(callback_context.invocation_id, model, ctx)
        return None

    async def after_agent_callback(self, *, agent: BaseAgent, callback_context: CallbackContext
                                   ) -> types.Content | None:
        """Forget the invocation's state."""
        PluginState.clear(callback_context.invocation_id)
        return None

    async def after_run_callback(self, *, invocation_context: InvocationContext) -> None:
        """Write the session to the object's state at the end of the run."""
        service = invocation_context.session_service
        if isinstance(service, RestateSessionService):
            await service.flush_session_state(invocation_context.session)

    async def before_model_callback(self, *, callback_context: CallbackContext, llm_request: LlmRequest
                                    ) -> LlmResponse | None:
        """Answer the model call from the journal (calling the model once, inside a step)."""
        ctx = current_context()
        if ctx is None:
            raise TerminalError(_NO_CONTEXT)
        state = PluginState.from_context(callback_context.invocation_id, ctx)
        model = state.model

        async def call_llm() -> LlmResponse:
            stream = model.generate_content_async(llm_request, stream=False)
            try:
                response = await anext(stream)
            finally:
                await stream.aclose()
            _give_function_calls_ids(response)
            return response

        options = self._run_options
        if options.serde is None and options.type_hint is None:
            options = dataclasses.replace(options, type_hint=LlmResponse)
        response = await ctx.run_typed("call LLM", call_llm, options)
        assert response is not None
        state.turnstile = Turnstile(_function_call_ids(response))
        return response

    async def before_tool_callback(self, *, tool: BaseTool, tool_args: dict[str, Any], tool_context: ToolContext
                                   ) -> dict[str, Any] | None:
        """Wait for this tool call's turn."""
        call_id = tool_context.function_call_id
        if call_id is None:
            raise TerminalError("Function call ID is required for tool invocation.")
        await PluginState.from_context(tool_context.invocation_id).turnstile.wait_for(call_id)
        return None

    async def after_tool_callback(self, *, tool: BaseTool, tool_args: dict[str, Any], tool_context: ToolContext,
                                  result: dict[str, Any]) -> dict[str, Any] | None:
        """Let the next tool call go."""
        call_id = tool_context.function_call_id
        if call_id is not None:
            PluginState.from_context(tool_context.invocation_id).turnstile.allow_next_after(call_id)
        return None

    async def on_tool_error_callback(self, *, tool: BaseTool, tool_args: dict[str, Any], tool_context: ToolContext,
                                     error: Exception) -> dict[str, Any] | None:
        """A failed tool call releases the later ones of its batch (they fail too)."""
        call_id = tool_context.function_call_id
        if call_id is not None:
            PluginState.from_context(tool_context.invocation_id).turnstile.cancel_all_after(call_id)
        return None
