"""A Google ADK agent for the kill -9 test: the scripted model calls two tools, then answers.

A virtual object (key `k`), so the ADK session lives in its state through RestateSessionService.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_files import model_called, record, slow
from google.adk.agents import LlmAgent
from google.adk.apps import App
from google.adk.runners import Runner
from google.genai import types

import durably
from durably.ext.adk import RestatePlugin, RestateSessionService, restate_context
from examples.agents.adk_fake_model import ScriptedLlm, text, tool_calls, tool_outputs

obj = durably.VirtualObject("AgentCrash")


async def record_tool(directory: str) -> str:
    """Record a side effect."""
    return await restate_context().run_typed("record", record, None, directory)


async def slow_tool(directory: str) -> str:
    """A slow step."""
    return await restate_context().run_typed("slow", slow, None, directory)


@obj.handler()
async def run(ctx: durably.ObjectContext, req: dict) -> str:
    directory = req["dir"]

    def reply(contents):  # type: ignore[no-untyped-def]
        done = tool_outputs(contents)
        model_called(directory, len(done))
        if not done:
            return tool_calls(("record_tool", {"directory": directory}, "c1"),
                              ("slow_tool", {"directory": directory}, "c2"))
        return text(f"answer: {', '.join(done)}")

    agent = LlmAgent(name="crash", model=ScriptedLlm(reply=reply), tools=[record_tool, slow_tool])
    runner = Runner(app=App(name="crash", root_agent=agent, plugins=[RestatePlugin()]),
                    session_service=RestateSessionService())
    answer = ""
    message = types.Content(role="user", parts=[types.Part.from_text(text="go")])
    async for event in runner.run_async(user_id="u", session_id=directory, new_message=message):
        if event.is_final_response() and event.content and event.content.parts and event.content.parts[0].text:
            answer = event.content.parts[0].text
    return answer


app = durably.app(services=[obj])
