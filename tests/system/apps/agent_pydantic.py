"""A Pydantic AI agent for the kill -9 test: the scripted model calls two tools, then answers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_files import model_called, record, slow
from pydantic_ai import Agent

import durably
from durably.ext.pydantic import RestateAgent, restate_context
from examples.agents.pydantic_fake_model import scripted, text, tool_calls, tool_outputs

svc = durably.Service("AgentCrash")


@svc.handler()
async def run(ctx: durably.Context, req: dict) -> str:
    directory = req["dir"]

    def reply(messages):  # type: ignore[no-untyped-def]
        done = tool_outputs(messages)
        model_called(directory, len(done))
        if not done:
            return tool_calls(("record_tool", {}, "c1"), ("slow_tool", {}, "c2"))
        return text(f"answer: {', '.join(done)}")

    agent = Agent(scripted(reply), name="crash")

    @agent.tool_plain
    async def record_tool() -> str:
        return await restate_context().run_typed("record", record, None, directory)

    @agent.tool_plain
    async def slow_tool() -> str:
        return await restate_context().run_typed("slow", slow, None, directory)

    return (await RestateAgent(agent).run("go")).output


app = durably.app(services=[svc])
