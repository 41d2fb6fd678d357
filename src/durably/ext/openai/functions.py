"""Tools for durable OpenAI agents: error handling that respects durability, and in-order execution."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from agents import Agent, AgentBase, Handoff, ModelBehaviorError, RunContextWrapper
from agents.function_schema import DocstringStyle
from agents.items import TResponseOutputItem
from agents.tool import FunctionTool, Tool, ToolErrorFunction, ToolFunction, default_tool_error_function
from agents.tool import function_tool as oai_function_tool
from agents.tool_context import ToolContext

from durably.sdk.errors import TerminalError

from .models import AgentsTerminalException, State

T = TypeVar("T")
MaybeAwaitable = Awaitable[T] | T


def raise_terminal_errors(context: RunContextWrapper[Any], error: Exception) -> str:
    """Tool error handler: a TerminalError ends the run (and the handler sees it); others go to the model.

    A ModelBehaviorError (the model sent bad arguments) is reported back to the model so it can try
    again; any other exception is re-raised, so the invocation is retried under its retry policy.
    """
    if isinstance(error, TerminalError):
        # The Agents SDK only lets its own exceptions through; the handler wants a TerminalError.
        raise AgentsTerminalException(error.message)
    if isinstance(error, ModelBehaviorError):
        return f"An error occurred while calling the tool: {error}"
    raise error


def propagate_cancellation(failure_error_function: ToolErrorFunction | None = None) -> ToolErrorFunction:
    """Wrap a tool error handler so that a cancellation of the invocation (409) is never swallowed."""
    inner_fn = failure_error_function if failure_error_function is not None else default_tool_error_function

    def handle(context: RunContextWrapper[Any], error: Exception) -> Any:
        if isinstance(error, TerminalError) and error.status_code == 409:
            raise error from None
        return inner_fn(context, error)

    return handle


@overload
def durable_function_tool(
    func: ToolFunction[...],
    *,
    name_override: str | None = None,
    description_override: str | None = None,
    docstring_style: DocstringStyle | None = None,
    use_docstring_info: bool = True,
    failure_error_function: ToolErrorFunction | None = None,
    strict_mode: bool = True,
    is_enabled: bool | Callable[[RunContextWrapper[Any], AgentBase], MaybeAwaitable[bool]] = True,
) -> FunctionTool: ...


@overload
def durable_function_tool(
    *,
    name_override: str | None = None,
    description_override: str | None = None,
    docstring_style: DocstringStyle | None = None,
    use_docstring_info: bool = True,
    failure_error_function: ToolErrorFunction | None = None,
    strict_mode: bool = True,
    is_enabled: bool | Callable[[RunContextWrapper[Any], AgentBase], MaybeAwaitable[bool]] = True,
) -> Callable[[ToolFunction[...]], FunctionTool]: ...


def durable_function_tool(
    func: ToolFunction[...] | None = None,
    *,
    name_override: str | None = None,
    description_override: str | None = None,
    docstring_style: DocstringStyle | None = None,
    use_docstring_info: bool = True,
    failure_error_function: ToolErrorFunction | None = raise_terminal_errors,
    strict_mode: bool = True,
    is_enabled: bool | Callable[[RunContextWrapper[Any], AgentBase], MaybeAwaitable[bool]] = True,
) -> FunctionTool | Callable[[ToolFunction[...]], FunctionTool]:
    """`agents.function_tool` whose errors are handled durably.

    By default a TerminalError raised by the tool ends the agent run with that error, and a cancellation
    of the invocation always does. Journal the tool's side effects with
    `restate_context().run_typed(...)`; the tool may also sleep, call handlers or wait on awakeables.
    """
    options: dict[str, Any] = dict(
        name_override=name_override,
        description_override=description_override,
        docstring_style=docstring_style,
        use_docstring_info=use_docstring_info,
        failure_error_function=propagate_cancellation(failure_error_function),
        strict_mode=strict_mode,
        is_enabled=is_enabled,
    )
    if callable(func):
        return oai_function_tool(func, **options)
    return oai_function_tool(**options)


def get_function_call_ids(output: list[TResponseOutputItem]) -> list[str]:
    """The call ids of the function calls in a model response, in the model's order."""
    return [item.call_id for item in output if getattr(item, "type", None) == "function_call"]


def _in_turn(state: State, tool: FunctionTool) -> Callable[[ToolContext[Any], Any], Awaitable[Any]]:
    original = tool.on_invoke_tool

    async def on_invoke_tool(tool_context: ToolContext[Any], tool_input: Any) -> Any:
        turnstile = state.turnstile
        call_id = tool_context.tool_call_id
        await turnstile.wait_for(call_id)
        try:
            result = await original(tool_context, tool_input)
        except BaseException:
            # Later tools of this batch must not touch the journal after a failure.
            turnstile.cancel_all_after(call_id)
            raise
        turnstile.allow_next_after(call_id)
        return result

    return on_invoke_tool


def wrap_agent_tools(agent: Agent[Any], state: State, wrap_model: Callable[[Any], Any] | None = None) -> Agent[Any]:
    """A copy of `agent` (and of the agents it hands off to) whose function tools take turns."""
    tools: list[Tool] = []
    for tool in agent.tools:
        if isinstance(tool, FunctionTool):
            tools.append(dataclasses.replace(tool, on_invoke_tool=_in_turn(state, tool)))
        else:
            tools.append(tool)
    handoffs: list[Agent[Any] | Handoff[Any, Any]] = []
    for h in agent.handoffs:
        if isinstance(h, Agent):
            handoffs.append(wrap_agent_tools(h, state, wrap_model))
        elif isinstance(h, Handoff):
            handoffs.append(_wrap_handoff(h, state, wrap_model))
        else:
            raise TypeError(f"Unsupported handoff type: {type(h)}")
    changes: dict[str, Any] = {"tools": tools, "handoffs": handoffs}
    if wrap_model is not None:
        wrapped_model = wrap_model(agent.model)
        if wrapped_model is not agent.model:
            changes["model"] = wrapped_model
    return agent.clone(**changes)


def _wrap_handoff(handoff: Handoff[Any, Any], state: State,
                  wrap_model: Callable[[Any], Any] | None) -> Handoff[Any, Any]:
    original = handoff.on_invoke_handoff

    async def on_invoke_handoff(*args: Any, **kwargs: Any) -> Any:
        agent = await original(*args, **kwargs)
        return wrap_agent_tools(agent, state, wrap_model)

    return dataclasses.replace(handoff, on_invoke_handoff=on_invoke_handoff)
