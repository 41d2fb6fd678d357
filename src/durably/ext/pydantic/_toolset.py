"""Toolsets for durable Pydantic AI agents: tool calls take turns, and optionally each is one step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic_ai import ToolDefinition
from pydantic_ai.exceptions import ApprovalRequired, CallDeferred, ModelRetry, UserError
from pydantic_ai.tools import RunContext
from pydantic_ai.toolsets.abstract import AbstractToolset, ToolsetTool
from pydantic_ai.toolsets.wrapper import WrapperToolset

from durably.sdk.current import current_context
from durably.sdk.errors import TerminalError
from durably.sdk.options import RunOptions

from ._serde import PydanticTypeAdapter
from ._utils import current_state


@dataclass
class RestateContextRunResult:
    """A tool's outcome as a journaled value: the exceptions that steer the agent become data, so the
    step is not retried for them and they are raised again, the same, on replay."""

    kind: Literal["output", "call_deferred", "approval_required", "model_retry"]
    output: Any
    error: str | None = None


CONTEXT_RUN_SERDE: PydanticTypeAdapter[RestateContextRunResult] = PydanticTypeAdapter(RestateContextRunResult)


async def _in_turn(ctx: RunContext[Any], call: Callable[[], Any]) -> Any:
    """Run `call` when this tool call's turn comes (model order), releasing the next one after it."""
    call_id = ctx.tool_call_id
    if call_id is None:
        raise TerminalError("Tool call ID is required for turnstile synchronization.")
    turnstile = current_state().turnstile
    await turnstile.wait_for(call_id)
    try:
        result = await call()
    except BaseException:
        turnstile.cancel_all_after(call_id)
        raise
    turnstile.allow_next_after(call_id)
    return result


class RestateTurnToolSet(WrapperToolset[Any]):
    """Tools that journal their own steps: they run one at a time, in the model's order, so their
    steps reach the journal in the same order on every replay."""

    async def call_tool(self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any],
                        tool: ToolsetTool[Any]) -> Any:
        """Call the tool in its turn."""
        return await _in_turn(ctx, lambda: self.wrapped.call_tool(name, tool_args, ctx, tool))

    def visit_and_replace(self, visitor: Callable[[AbstractToolset[Any]], AbstractToolset[Any]]
                          ) -> AbstractToolset[Any]:
        return visitor(self)


class RestateContextRunToolSet(WrapperToolset[Any]):
    """Each tool call is one journaled step (`ctx.run_typed`), retried per `run_options`.

    Tools in it must not use the context themselves (a step cannot contain steps); use the plain
    agent tools with `restate_context()` for those.
    """

    def __init__(self, wrapped: AbstractToolset[Any], run_options: RunOptions[Any]) -> None:
        super().__init__(wrapped)
        self.options = replace(run_options, serde=CONTEXT_RUN_SERDE)

    async def call_tool(self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any],
                        tool: ToolsetTool[Any]) -> Any:
        """Call the tool as one step in its turn; replay its journaled outcome."""

        async def action() -> RestateContextRunResult:
            try:
                output = await self.wrapped.call_tool(name, tool_args, ctx, tool)
            except ModelRetry as e:
                return RestateContextRunResult(kind="model_retry", output=None, error=e.message)
            except CallDeferred:
                return RestateContextRunResult(kind="call_deferred", output=None)
            except ApprovalRequired:
                return RestateContextRunResult(kind="approval_required", output=None)
            except UserError as e:
                raise TerminalError(str(e)) from e
            return RestateContextRunResult(kind="output", output=output)

        context = current_context()
        if context is None:
            raise UserError("A tool cannot be used without a durably context. Run the agent inside a handler.")

        async def journaled() -> Any:
            res = await context.run_typed(f"Calling {name}", action, self.options)
            assert res is not None
            if res.kind == "call_deferred":
                raise CallDeferred()
            if res.kind == "approval_required":
                raise ApprovalRequired()
            if res.kind == "model_retry":
                raise ModelRetry(res.error or "")
            return res.output

        return await _in_turn(ctx, journaled)

    def visit_and_replace(self, visitor: Callable[[AbstractToolset[Any]], AbstractToolset[Any]]
                          ) -> AbstractToolset[Any]:
        return visitor(self)


@dataclass
class RestateMCPGetToolsContextRunResult:
    """The tool definitions an MCP server listed (journaled: the list is stable across replays)."""

    output: dict[str, ToolDefinition]


@dataclass
class RestateMCPToolRunResult:
    """An MCP tool's result."""

    output: Any


class RestateMCPToolset(WrapperToolset[Any]):
    """An MCP server's tools: listing them and each call are journaled steps."""

    def __init__(self, wrapped: AbstractToolset[Any], run_options: RunOptions[Any]) -> None:
        super().__init__(wrapped)
        self.get_tools_options = replace(run_options, serde=PydanticTypeAdapter(RestateMCPGetToolsContextRunResult))
        self.run_tools_options = replace(run_options, serde=PydanticTypeAdapter(RestateMCPToolRunResult))

    def visit_and_replace(self, visitor: Callable[[AbstractToolset[Any]], AbstractToolset[Any]]
                          ) -> AbstractToolset[Any]:
        return visitor(self)

    async def get_tools(self, ctx: RunContext[Any]) -> dict[str, ToolsetTool[Any]]:
        """The server's tools, listed once per step and replayed from the journal."""

        async def list_tools() -> RestateMCPGetToolsContextRunResult:
            tools = await self.wrapped.get_tools(ctx)
            # ToolsetTool holds a validator (not serializable): journal the definitions only.
            return RestateMCPGetToolsContextRunResult(output={n: t.tool_def for n, t in tools.items()})

        context = current_context()
        if context is None:
            raise UserError("A toolset cannot be used without a durably context. Run the agent inside a handler.")
        defs = await context.run_typed("get mcp tools", list_tools, self.get_tools_options)
        assert defs is not None
        return {n: self.wrapped.tool_for_tool_def(d) for n, d in defs.output.items()}  # type: ignore[attr-defined]

    async def call_tool(self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any],
                        tool: ToolsetTool[Any]) -> Any:
        """Call an MCP tool as one step."""

        async def call() -> RestateMCPToolRunResult:
            return RestateMCPToolRunResult(output=await self.wrapped.call_tool(name, tool_args, ctx, tool))

        context = current_context()
        if context is None:
            raise UserError("A toolset cannot be used without a durably context. Run the agent inside a handler.")
        res = await context.run_typed(f"Calling mcp tool {name}", call, self.run_tools_options)
        assert res is not None
        return res.output
