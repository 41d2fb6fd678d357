"""durably.ext.openai: OpenAI Agents SDK runs whose model calls and tool calls are journaled.

A scripted model (examples/agents/openai_fake_model.py) stands in for OpenAI. Every scenario also runs in
always-replay mode, where the handler is re-run from the top after each journal append: a model that is
asked again for a journaled turn shows up in the call count.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from datetime import timedelta

import pytest
from agent_waits import has_sleep_timer, wait_awakeable, wait_for

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")  # no trace upload attempts from tests
pytest.importorskip("agents")

from agents import Agent

import durably
from durably import RunOptions, TerminalError
from durably.ext.openai import DurableRunner, durable_function_tool, restate_context
from durably.testing import TestRuntime
from examples.agents.openai_fake_model import ScriptedModel, text, tool_call, tool_outputs, user_messages

model_calls: list[list[str]] = []
effects: Counter[str] = Counter()
awakeables: dict[str, str] = {}


def two_tools_then_answer(items: list[dict]) -> list:
    done = tool_outputs(items)
    if not done:
        return [tool_call("add", {"a": 1, "b": 2}, "c1"), tool_call("add", {"a": 3, "b": 4}, "c2")]
    return [text(f"sums: {', '.join(done)}")]


def counting(reply):  # type: ignore[no-untyped-def]
    return ScriptedModel(reply, on_call=lambda items: model_calls.append(tool_outputs(items)))


@durable_function_tool
async def add(a: int, b: int) -> int:
    """Add two numbers (a side effect per call, journaled)."""

    def effect() -> int:
        effects[f"add {a} {b}"] += 1
        return a + b

    return await restate_context().run_typed(f"add {a} {b}", effect)


@durable_function_tool
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


@durable_function_tool
async def refuse(reason: str) -> str:
    """Always fails terminally."""
    raise TerminalError(f"refused: {reason}", 403)


agents_svc = durably.Service("Agents")


@agents_svc.handler()
async def two_tools(ctx: durably.Context, prompt: str) -> str:
    agent = Agent(name="adder", instructions="add", model=counting(two_tools_then_answer), tools=[add])
    result = await DurableRunner.run(agent, prompt)
    return result.final_output


@agents_svc.handler()
async def flaky_model(ctx: durably.Context, prompt: str) -> str:
    def reply(items: list[dict]) -> list:
        raise ConnectionError("model unavailable")

    agent = Agent(name="flaky", model=counting(reply))
    try:
        await DurableRunner.run(agent, prompt, run_options=RunOptions(max_attempts=3))
    except TerminalError as e:
        return f"gave up: {e.message}"
    return "unexpected"


@agents_svc.handler()
async def approval(ctx: durably.Context, question: str) -> str:
    def reply(items: list[dict]) -> list:
        outs = tool_outputs(items)
        return [text(f"human said {outs[0]}")] if outs else [tool_call("ask_human", {"question": question}, "h1")]

    agent = Agent(name="approver", model=counting(reply), tools=[ask_human])
    return (await DurableRunner.run(agent, question)).final_output


@agents_svc.handler()
async def terminal_tool(ctx: durably.Context, prompt: str) -> str:
    def reply(items: list[dict]) -> list:
        return [tool_call("refuse", {"reason": prompt}, "r1")]

    agent = Agent(name="refuser", model=counting(reply), tools=[refuse])
    return (await DurableRunner.run(agent, prompt)).final_output


chat = durably.VirtualObject("Chat")


@chat.handler()
async def message(ctx: durably.ObjectContext, msg: str) -> str:
    def reply(items: list[dict]) -> list:
        said = user_messages(items)
        return [text(f"message {len(said)}; you said before: {said[:-1]}")]

    agent = Agent(name="chat", model=counting(reply))
    return (await DurableRunner.run(agent, msg, use_restate_session=True)).final_output


app = durably.app(services=[agents_svc, chat])


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
        assert await rt.call("Agents/two_tools", "add please") == "sums: 3, 7"
    # Two model turns, each asked once although replay re-ran the handler after every step.
    assert model_calls == [[], ["3", "7"]]
    assert effects == Counter({"add 1 2": 1, "add 3 4": 1})


async def test_failing_model_call_ends_in_catchable_terminal_error(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay) as rt:
        result = await rt.call("Agents/flaky_model", "hi")
    assert result.startswith("gave up:") and "model unavailable" in result
    assert len(model_calls) == 3


async def test_tool_waits_for_human_and_model_is_not_asked_again(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay, virtual_clock=True) as rt:
        inv = await rt.send("Agents/approval", "deploy?")
        name = await wait_awakeable(rt, awakeables, "deploy?")
        async with rt.http() as http:
            r = await http.post(f"/restate/awakeables/{name}/resolve", json="yes")
            assert r.status_code == 202, r.text
        assert await rt.attach(inv, "Agents/approval") == "human said yes"
    assert model_calls == [[], ["yes"]]


async def test_human_approval_times_out(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay, virtual_clock=True) as rt:
        inv = await rt.send("Agents/approval", "deploy?")
        await wait_awakeable(rt, awakeables, "deploy?")
        await wait_for(rt, lambda: has_sleep_timer(rt, inv), "timer for the human's answer")
        await rt.advance(timedelta(days=1, seconds=1))
        assert await rt.attach(inv, "Agents/approval") == "human said no answer in time"


async def test_terminal_error_in_tool_fails_the_invocation(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay) as rt:
        with pytest.raises(TerminalError) as e:
            await rt.call("Agents/terminal_tool", "no")
    assert "refused: no" in e.value.message
    assert len(model_calls) == 1


async def test_cancellation_stops_the_agent_loop(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay, virtual_clock=True) as rt:
        inv = await rt.send("Agents/approval", "cancel me?")
        await wait_awakeable(rt, awakeables, "cancel me?")
        rt.engine.cancel(inv)
        with pytest.raises(TerminalError) as e:
            await rt.attach(inv, "Agents/approval")
        assert e.value.status_code == 409
    assert model_calls == [[]]  # the model is not asked for the turn after the cancelled tool


async def test_session_memory_lives_in_object_state(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay) as rt:
        assert await rt.call("Chat/alice/message", "hi") == "message 1; you said before: []"
        assert await rt.call("Chat/alice/message", "again") == "message 2; you said before: ['hi']"
        assert await rt.call("Chat/bob/message", "yo") == "message 1; you said before: []"


async def test_concurrent_messages_to_one_session_are_serialised() -> None:
    async with TestRuntime(app) as rt:
        invs = [await rt.send("Chat/carol/message", f"m{i}") for i in range(4)]
        answers = await asyncio.gather(*(rt.attach(i, "Chat/carol/message") for i in invs))
    assert [a.split(";")[0] for a in answers] == [f"message {i + 1}" for i in range(4)]
