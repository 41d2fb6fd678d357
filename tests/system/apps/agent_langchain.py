"""A LangChain agent for the kill -9 test: the scripted model calls two tools, then answers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_files import model_called, record, slow
from langchain.agents import create_agent
from langchain_core.tools import tool

import durably
from durably.ext.langchain import RestateMiddleware, restate_context
from examples.agents.langchain_fake_model import ScriptedChatModel, text, tool_calls, tool_outputs

svc = durably.Service("AgentCrash")


@tool
async def record_tool(directory: str) -> str:
    """Record a side effect."""
    return await restate_context().run_typed("record", record, None, directory)


@tool
async def slow_tool(directory: str) -> str:
    """A slow step."""
    return await restate_context().run_typed("slow", slow, None, directory)


@svc.handler()
async def run(ctx: durably.Context, req: dict) -> str:
    directory = req["dir"]

    def reply(messages):  # type: ignore[no-untyped-def]
        done = tool_outputs(messages)
        model_called(directory, len(done))
        if not done:
            return tool_calls(("record_tool", {"directory": directory}, "c1"),
                              ("slow_tool", {"directory": directory}, "c2"))
        return text(f"answer: {', '.join(done)}")

    agent = create_agent(ScriptedChatModel(reply=reply), tools=[record_tool, slow_tool],
                         middleware=[RestateMiddleware()])
    result = await agent.ainvoke({"messages": [{"role": "user", "content": "go"}]})
    return str(result["messages"][-1].content)


app = durably.app(services=[svc])
