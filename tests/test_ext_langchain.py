"""durably.ext.langchain: LangChain `create_agent` agents with RestateMiddleware.

A scripted chat model (examples/agents/langchain_fake_model.py) stands in for the LLM. Scenarios also run
in always-replay mode, where the handler is re-run from the top after each journal append: a model that
is asked again for a journaled turn shows up in the call count.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from agent_waits import wait_awakeable

pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain_core.messages import messages_from_dict, messages_to_dict
from langchain_core.tools import tool

import durably
from durably import RunOptions, TerminalError
from durably.ext.langchain import RestateMiddleware, restate_context
from durably.testing import TestRuntime
from examples.agents.langchain_fake_model import (
    ScriptedChatModel,
    text,
    tool_calls,
    tool_outputs,
    user_messages,
)

model_calls: list[list[str]] = []
effects: Counter[str] = Counter()
awakeables: dict[str, str] = {}


def counting(reply):  # type: ignore[no-untyped-def]
    return ScriptedChatModel(reply=reply, on_call=lambda messages: model_calls.append(tool_outputs(messages)))


def two_tools_then_answer(messages):  # type: ignore[no-untyped-def]
    done = tool_outputs(messages)
    if not done:
        return tool_calls(("add", {"a": 1, "b": 2}, "c1"), ("add", {"a": 3, "b": 4}, "c2"))
    return text(f"sums: {', '.join(done)}")


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers (a side effect per call, journaled by the tool)."""

    def effect() -> int:
        effects[f"add {a} {b}"] += 1
        return a + b

    return await restate_context().run_typed(f"add {a} {b}", effect)


@tool
async def ask_human(question: str) -> str:
    """Wait for a human's answer (an awakeable) for at most a day."""
    ctx = restate_context()
    name, answer = ctx.awakeable(type_hint=str)
    awakeables[question] = name
    match await durably.select(answer=answer, timeout=ctx.sleep(timedelta(days=1))):
        case ["answer", value]:
            return value
        case _:
            return "no answer in time"


def flaky(messages):  # type: ignore[no-untyped-def]
    raise ConnectionError("model unavailable")


def ask_then_answer(messages):  # type: ignore[no-untyped-def]
    outs = tool_outputs(messages)
    if outs:
        return text(f"human said {outs[0]}")
    return tool_calls(("ask_human", {"question": user_messages(messages)[-1]}, "h1"))


def last_text(result: dict) -> str:
    return str(result["messages"][-1].content)


svc = durably.Service("LAgents")


@svc.handler()
async def two_tools(ctx: durably.Context, prompt: str) -> str:
    agent = create_agent(counting(two_tools_then_answer), tools=[add], middleware=[RestateMiddleware()])
    return last_text(await agent.ainvoke({"messages": [{"role": "user", "content": prompt}]}))


@svc.handler()
async def flaky_model(ctx: durably.Context, prompt: str) -> str:
    agent = create_agent(counting(flaky), middleware=[RestateMiddleware(RunOptions(max_attempts=3))])
    try:
        await agent.ainvoke({"messages": [{"role": "user", "content": prompt}]})
    except TerminalError as e:
        return f"gave up: {e.message}"
    return "unexpected"


@svc.handler()
async def approval(ctx: durably.Context, question: str) -> str:
    agent = create_agent(counting(ask_then_answer), tools=[ask_human], middleware=[RestateMiddleware()])
    return last_text(await agent.ainvoke({"messages": [{"role": "user", "content": question}]}))


chat = durably.VirtualObject("LChat")


@chat.handler()
async def message(ctx: durably.ObjectContext, msg: str) -> str:
    history = messages_from_dict(await ctx.get("messages") or [])
    agent = create_agent(counting(lambda m: text(f"message {len(user_messages(m))}; before: {user_messages(m)[:-1]}")),
                         middleware=[RestateMiddleware()])
    result = await agent.ainvoke({"messages": [*history, {"role": "user", "content": msg}]})
    ctx.set("messages", messages_to_dict(result["messages"]))
    return last_text(result)


app = durably.app(services=[svc, chat])


@pytest.fixture(autouse=True)
def _reset() -> None:
    model_calls.clear()
    effects.clear()
    awakeables.clear()


@pytest.fixture(params=[False, True], ids=["normal", "replay"])
def always_replay(request: pytest.FixtureRequest) -> bool:
    return request.param


async def test_each_model_call_and_tool_effect_happens_once(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay) as rt:
        assert await rt.call("LAgents/two_tools", "add please") == "sums: 3, 7"
    assert model_calls == [[], ["3", "7"]]
    assert effects == Counter({"add 1 2": 1, "add 3 4": 1})


async def test_failing_model_call_ends_in_catchable_terminal_error(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay) as rt:
        result = await rt.call("LAgents/flaky_model", "hi")
    assert result.startswith("gave up:") and "model unavailable" in result
    assert len(model_calls) == 3


async def test_tool_waits_for_human_and_model_is_not_asked_again(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay, virtual_clock=True) as rt:
        inv = await rt.send("LAgents/approval", "deploy?")
        name = await wait_awakeable(rt, awakeables, "deploy?")
        async with rt.http() as http:
            r = await http.post(f"/restate/awakeables/{name}/resolve", json="yes")
            assert r.status_code == 202, r.text
        assert await rt.attach(inv, "LAgents/approval") == "human said yes"
    assert model_calls == [[], ["yes"]]


async def test_cancellation_stops_the_agent_loop(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay, virtual_clock=True) as rt:
        inv = await rt.send("LAgents/approval", "cancel me?")
        await wait_awakeable(rt, awakeables, "cancel me?")
        rt.engine.cancel(inv)
        with pytest.raises(TerminalError) as e:
            await rt.attach(inv, "LAgents/approval")
        assert e.value.status_code == 409
    assert model_calls == [[]]


async def test_session_memory_lives_in_object_state(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay) as rt:
        assert await rt.call("LChat/alice/message", "hi") == "message 1; before: []"
        assert await rt.call("LChat/alice/message", "again") == "message 2; before: ['hi']"
        assert await rt.call("LChat/bob/message", "yo") == "message 1; before: []"
