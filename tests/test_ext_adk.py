"""durably.ext.adk: Google ADK agents with RestatePlugin and RestateSessionService.

A scripted model (examples/agents/adk_fake_model.py) stands in for Gemini. Scenarios also run in
always-replay mode, where the handler is re-run from the top after each journal append: a model that is
asked again for a journaled turn shows up in the call count.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from agent_waits import wait_awakeable

pytest.importorskip("google.adk")

from google.adk.agents import LlmAgent
from google.adk.apps import App
from google.adk.runners import Runner
from google.genai import types

import durably
from durably import RunOptions, TerminalError
from durably.ext.adk import RestatePlugin, RestateSessionService, restate_context
from durably.testing import TestRuntime
from examples.agents.adk_fake_model import ScriptedLlm, text, tool_calls, tool_outputs, user_messages

model_calls: list[list[str]] = []
effects: Counter[str] = Counter()
awakeables: dict[str, str] = {}


def counting(reply):  # type: ignore[no-untyped-def]
    return ScriptedLlm(reply=reply, on_call=lambda contents: model_calls.append(tool_outputs(contents)))


async def add(a: int, b: int) -> int:
    """Add two numbers (a side effect per call, journaled by the tool)."""

    def effect() -> int:
        effects[f"add {a} {b}"] += 1
        return a + b

    return await restate_context().run_typed(f"add {a} {b}", effect)


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


def two_tools_then_answer(contents):  # type: ignore[no-untyped-def]
    done = tool_outputs(contents)
    if not done:
        return tool_calls(("add", {"a": 1, "b": 2}, "c1"), ("add", {"a": 3, "b": 4}, "c2"))
    return text(f"sums: {', '.join(done)}")


def flaky(contents):  # type: ignore[no-untyped-def]
    raise ConnectionError("model unavailable")


def ask_then_answer(contents):  # type: ignore[no-untyped-def]
    outs = tool_outputs(contents)
    if outs:
        return text(f"human said {outs[0]}")
    return tool_calls(("ask_human", {"question": user_messages(contents)[-1]}, "h1"))


async def run_agent(agent: LlmAgent, prompt: str, user: str, session: str,
                    plugin: RestatePlugin | None = None) -> str:
    app = App(name="durably_test", root_agent=agent, plugins=[plugin or RestatePlugin()])
    runner = Runner(app=app, session_service=RestateSessionService())
    answer = ""
    message = types.Content(role="user", parts=[types.Part.from_text(text=prompt)])
    async for event in runner.run_async(user_id=user, session_id=session, new_message=message):
        if event.is_final_response() and event.content and event.content.parts and event.content.parts[0].text:
            answer = event.content.parts[0].text
    return answer


obj = durably.VirtualObject("AdkAgents")


@obj.handler()
async def two_tools(ctx: durably.ObjectContext, prompt: str) -> str:
    return await run_agent(LlmAgent(name="adder", model=counting(two_tools_then_answer), tools=[add]),
                           prompt, ctx.key(), "s1")


@obj.handler()
async def flaky_model(ctx: durably.ObjectContext, prompt: str) -> str:
    try:
        await run_agent(LlmAgent(name="flaky", model=counting(flaky)), prompt, ctx.key(), "s1",
                        RestatePlugin(run_options=RunOptions(max_attempts=3)))
    except RuntimeError as e:
        # ADK wraps every plugin error in a RuntimeError; the TerminalError is its cause.
        if isinstance(e.__cause__, TerminalError):
            return f"gave up: {e.__cause__.message}"
        raise
    return "unexpected"


@obj.handler()
async def flaky_model_uncaught(ctx: durably.ObjectContext, prompt: str) -> str:
    return await run_agent(LlmAgent(name="flaky", model=counting(flaky)), prompt, ctx.key(), "s1",
                           RestatePlugin(run_options=RunOptions(max_attempts=2)))


@obj.handler()
async def approval(ctx: durably.ObjectContext, question: str) -> str:
    return await run_agent(LlmAgent(name="approver", model=counting(ask_then_answer), tools=[ask_human]),
                           question, ctx.key(), "s1")


@obj.handler()
async def message(ctx: durably.ObjectContext, msg: str) -> str:
    def reply(contents):  # type: ignore[no-untyped-def]
        said = user_messages(contents)
        return text(f"message {len(said)}; before: {said[:-1]}")

    return await run_agent(LlmAgent(name="chat", model=counting(reply)), msg, ctx.key(), "chat")


app = durably.app(services=[obj])


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
        assert await rt.call("AdkAgents/a/two_tools", "add please") == "sums: 3, 7"
    assert model_calls == [[], ["3", "7"]]
    assert effects == Counter({"add 1 2": 1, "add 3 4": 1})


async def test_failing_model_call_ends_in_catchable_terminal_error(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay) as rt:
        result = await rt.call("AdkAgents/a/flaky_model", "hi")
    assert result.startswith("gave up:") and "model unavailable" in result
    assert len(model_calls) == 3


async def test_uncaught_model_failure_fails_the_invocation_terminally() -> None:
    async with TestRuntime(app) as rt:
        with pytest.raises(TerminalError) as e:
            await rt.call("AdkAgents/a/flaky_model_uncaught", "hi")
    assert "model unavailable" in e.value.message
    assert len(model_calls) == 2


async def test_tool_waits_for_human_and_model_is_not_asked_again(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay, virtual_clock=True) as rt:
        inv = await rt.send("AdkAgents/a/approval", "deploy?")
        name = await wait_awakeable(rt, awakeables, "deploy?")
        async with rt.http() as http:
            r = await http.post(f"/restate/awakeables/{name}/resolve", json="yes")
            assert r.status_code == 202, r.text
        assert await rt.attach(inv, "AdkAgents/a/approval") == "human said yes"
    assert model_calls == [[], ["yes"]]


async def test_cancellation_stops_the_agent_loop(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay, virtual_clock=True) as rt:
        inv = await rt.send("AdkAgents/a/approval", "cancel me?")
        await wait_awakeable(rt, awakeables, "cancel me?")
        rt.engine.cancel(inv)
        with pytest.raises(TerminalError) as e:
            await rt.attach(inv, "AdkAgents/a/approval")
        assert e.value.status_code == 409
    assert model_calls == [[]]


async def test_session_memory_lives_in_object_state(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay) as rt:
        assert await rt.call("AdkAgents/alice/message", "hi") == "message 1; before: []"
        assert await rt.call("AdkAgents/alice/message", "again") == "message 2; before: ['hi']"
        assert await rt.call("AdkAgents/bob/message", "yo") == "message 1; before: []"
