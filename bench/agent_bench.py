"""Journaling overhead of durable agents: one agent turn with a scripted model, journaled vs not.

Run from the repository root:

    .venv/bin/python bench/agent_bench.py              # 300 turns per variant
    .venv/bin/python bench/agent_bench.py --turns 1000

Each turn is two model calls and one tool call (the model asks for a tool, then answers), with a
scripted model that answers at once, so the figures are the framework's and Durably's own cost. Per
framework (OpenAI Agents SDK, Pydantic AI, LangChain; those installed) it times, sequentially:

    plain       the agent run directly on the event loop, no Durably at all
    handler     the same plain agent inside a Durably handler (invocation cost, nothing journaled)
    journaled   the agent through durably.ext (each model call a journaled step), in a handler

in process (durably.testing.TestRuntime) on the SQLite store (WAL, synchronous=FULL: every step is
fsynced before the handler goes on) and on the in-memory store. "per model call" is
(journaled - handler) / 2: what journaling one model call costs. Compare it to a real model call
(hundreds of milliseconds to seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
os.environ.pop("OPENAI_API_KEY", None)  # scripted models only, never the network

import durably
from durably.testing import TestRuntime

MODEL_CALLS_PER_TURN = 2


def openai_runners() -> tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]:
    from agents import Agent, Runner, function_tool

    from durably.ext.openai import DurableRunner
    from examples.agents.openai_fake_model import ScriptedModel, text, tool_call, tool_outputs

    def reply(items: list[dict]) -> list:
        return [text("done")] if tool_outputs(items) else [tool_call("lookup", {"q": "x"}, "c1")]

    @function_tool
    def lookup(q: str) -> str:
        """Look something up."""
        return "found"

    agent = Agent(name="bench", model=ScriptedModel(reply), tools=[lookup])

    async def plain() -> Any:
        return (await Runner.run(agent, "go")).final_output

    async def journaled() -> Any:
        return (await DurableRunner.run(agent, "go")).final_output

    return plain, journaled


def pydantic_runners() -> tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]:
    from pydantic_ai import Agent

    from durably.ext.pydantic import RestateAgent
    from examples.agents.pydantic_fake_model import scripted, text, tool_calls, tool_outputs

    def reply(messages: list) -> Any:
        return text("done") if tool_outputs(messages) else tool_calls(("lookup", {"q": "x"}, "c1"))

    agent = Agent(scripted(reply))

    @agent.tool_plain
    def lookup(q: str) -> str:
        """Look something up."""
        return "found"

    durable = RestateAgent(agent)

    async def plain() -> Any:
        return (await agent.run("go")).output

    async def journaled() -> Any:
        return (await durable.run("go")).output

    return plain, journaled


def langchain_runners() -> tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]:
    from langchain.agents import create_agent
    from langchain_core.tools import tool

    from durably.ext.langchain import RestateMiddleware
    from examples.agents.langchain_fake_model import ScriptedChatModel, text, tool_calls, tool_outputs

    def reply(messages: list) -> Any:
        return text("done") if tool_outputs(messages) else tool_calls(("lookup", {"q": "x"}, "c1"))

    @tool
    def lookup(q: str) -> str:
        """Look something up."""
        return "found"

    agent = create_agent(ScriptedChatModel(reply=reply), tools=[lookup])
    durable = create_agent(ScriptedChatModel(reply=reply), tools=[lookup], middleware=[RestateMiddleware()])
    message = {"messages": [{"role": "user", "content": "go"}]}

    async def plain() -> Any:
        return (await agent.ainvoke(message))["messages"][-1].content

    async def journaled() -> Any:
        return (await durable.ainvoke(message))["messages"][-1].content

    return plain, journaled


FRAMEWORKS = {
    "openai-agents": ("agents", openai_runners),
    "pydantic-ai": ("pydantic_ai", pydantic_runners),
    "langchain": ("langchain", langchain_runners),
}


async def time_plain(run: Callable[[], Awaitable[Any]], turns: int) -> float:
    await run()  # warm-up
    started = time.perf_counter()
    for _ in range(turns):
        assert await run() == "done"
    return (time.perf_counter() - started) / turns


async def time_in_handler(run: Callable[[], Awaitable[Any]], turns: int, store: str) -> float:
    svc = durably.Service("AgentBench")

    @svc.handler()
    async def turn(ctx: durably.Context) -> str:
        return await run()

    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp:
        async with TestRuntime(durably.app(services=[svc]), store, data_dir=Path(tmp) / "data") as rt:
            assert await rt.call("AgentBench/turn") == "done"  # warm-up
            started = time.perf_counter()
            for _ in range(turns):
                assert await rt.call("AgentBench/turn") == "done"
            return (time.perf_counter() - started) / turns


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="measurements per figure (the best is shown)")
    args = parser.parse_args()

    print(f"agent turn = {MODEL_CALLS_PER_TURN} model calls + 1 tool call, scripted model; "
          f"{args.turns} sequential turns, best of {args.repeat}; times in ms per turn")
    print(f"{'framework':<14} {'store':<7} {'plain':>8} {'handler':>8} {'journaled':>9} {'per model call':>15}")
    for name, (module, make) in FRAMEWORKS.items():
        if importlib.util.find_spec(module) is None:
            print(f"{name:<14} not installed")
            continue
        plain_run, journaled_run = make()
        # Interleaved, best of `repeat`: the machine is shared, and the minimum is what the code costs.
        plain = min([await time_plain(plain_run, args.turns) for _ in range(args.repeat)])
        for store in ("sqlite", "memory"):
            handler, journaled = float("inf"), float("inf")
            for _ in range(args.repeat):
                handler = min(handler, await time_in_handler(plain_run, args.turns, store))
                journaled = min(journaled, await time_in_handler(journaled_run, args.turns, store))
            per_call = (journaled - handler) / MODEL_CALLS_PER_TURN
            print(f"{name:<14} {store:<7} {ms(plain)} {ms(handler)} {ms(journaled):>9} {ms(per_call):>15}", flush=True)

if __name__ == "__main__":
    asyncio.run(main())
