"""An OpenAI Agents SDK agent for the kill -9 test: the scripted model calls two tools, then answers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

from agent_files import model_called, record, slow
from agents import Agent

import durably
from durably.ext.openai import DurableRunner, durable_function_tool, restate_context
from examples.agents.openai_fake_model import ScriptedModel, text, tool_call, tool_outputs

svc = durably.Service("AgentCrash")


@durable_function_tool
async def record_tool(directory: str) -> str:
    """Record a side effect."""
    return await restate_context().run_typed("record", record, None, directory)


@durable_function_tool
async def slow_tool(directory: str) -> str:
    """A slow step."""
    return await restate_context().run_typed("slow", slow, None, directory)


@svc.handler()
async def run(ctx: durably.Context, req: dict) -> str:
    directory = req["dir"]

    def reply(items: list[dict]) -> list:
        done = tool_outputs(items)
        model_called(directory, len(done))
        if not done:
            return [tool_call("record_tool", {"directory": directory}, "c1"),
                    tool_call("slow_tool", {"directory": directory}, "c2")]
        return [text(f"answer: {', '.join(done)}")]

    agent = Agent(name="crash", model=ScriptedModel(reply), tools=[record_tool, slow_tool])
    return (await DurableRunner.run(agent, "go")).final_output


app = durably.app(services=[svc])
