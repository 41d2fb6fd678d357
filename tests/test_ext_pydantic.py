"""durably.ext.pydantic: Pydantic AI agents whose model requests and tool calls are journaled.

A scripted FunctionModel (examples/agents/pydantic_fake_model.py) stands in for the LLM. Every scenario
also runs in always-replay mode, where the handler is re-run from the top after each journal append: a
model that is asked again for a journaled turn shows up in the call count.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from agent_waits import has_sleep_timer, wait_awakeable, wait_for

pytest.importorskip("pydantic_ai")

from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.messages import ModelMessage

import durably
from durably import RunOptions, TerminalError
from durably.ext.pydantic import PydanticTypeAdapter, RestateAgent, restate_context
from durably.testing import TestRuntime
from examples.agents.pydantic_fake_model import scripted, text, tool_calls, tool_outputs, user_messages

model_calls: list[list[str]] = []
effects: Counter[str] = Counter()
awakeables: dict[str, str] = {}
HISTORY = PydanticTypeAdapter(list[ModelMessage])


def counting(reply):  # type: ignore[no-untyped-def]
    return scripted(reply, on_call=lambda messages: model_calls.append(tool_outputs(messages)))


def two_tools_then_answer(messages: list[ModelMessage]):  # type: ignore[no-untyped-def]
    done = tool_outputs(messages)
    if not done:
        return tool_calls(("add", {"a": 1, "b": 2}, "c1"), ("add", {"a": 3, "b": 4}, "c2"))
    return text(f"sums: {', '.join(done)}")


adder = Agent(counting(two_tools_then_answer), name="adder")


@adder.tool_plain
async def add(a: int, b: int) -> int:
    """Add two numbers (a side effect per call, journaled by the tool)."""

    def effect() -> int:
        effects[f"add {a} {b}"] += 1
        return a + b

    return await restate_context().run_typed(f"add {a} {b}", effect)


durable_adder = RestateAgent(adder)

auto_adder = Agent(counting(two_tools_then_answer), name="auto_adder")


@auto_adder.tool_plain
def add_auto(a: int, b: int) -> int:
    """Add two numbers; RestateAgent(auto_wrap_tools=True) journals the whole call."""
    effects[f"add {a} {b}"] += 1
    return a + b


# The model calls "add"; register the same function under that name for the auto-wrapped agent.
auto_adder._function_toolset.tools.pop("add_auto")
auto_adder.tool_plain(name="add")(add_auto)
durable_auto_adder = RestateAgent(auto_adder, auto_wrap_tools=True)


def flaky(messages: list[ModelMessage]):  # type: ignore[no-untyped-def]
    raise ConnectionError("model unavailable")


durable_flaky = RestateAgent(Agent(counting(flaky)), run_options=RunOptions(max_attempts=3))


def ask_then_answer(messages: list[ModelMessage]):  # type: ignore[no-untyped-def]
    outs = tool_outputs(messages)
    if outs:
        return text(f"human said {outs[0]}")
    return tool_calls(("ask_human", {"question": user_messages(messages)[-1]}, "h1"))


approver = Agent(counting(ask_then_answer))


@approver.tool
async def ask_human(run: RunContext[None], question: str) -> str:
    """Wait for a human's answer (an awakeable) for at most a day."""
    ctx = restate_context()
    name, answer = ctx.awakeable(type_hint=str)
    awakeables[question] = name
    match await durably.select(answer=answer, timeout=ctx.sleep(timedelta(days=1))):
        case ["answer", value]:
            return value
        case _:
            return "no answer in time"


durable_approver = RestateAgent(approver)

def retry_then_answer(messages: list[ModelMessage]):  # type: ignore[no-untyped-def]
    outs = tool_outputs(messages)
    if "fine" in outs:
        return text("ok after retry")
    return tool_calls(("picky", {"n": 1}, f"p{len(outs) + 1}"))


retrier = Agent(counting(retry_then_answer))


@retrier.tool_plain(retries=2)
def picky(n: int) -> str:
    """Asks the model to retry once (ModelRetry is journaled as data, not retried as a step)."""
    effects["picky"] += 1
    if effects["picky"] == 1:
        raise ModelRetry("try again")
    return "fine"


durable_retrier = RestateAgent(retrier, auto_wrap_tools=True)

chat_agent = RestateAgent(Agent(counting(
    lambda m: text(f"message {len(user_messages(m))}; you said before: {user_messages(m)[:-1]}"))))

svc = durably.Service("PAgents")


@svc.handler()
async def two_tools(ctx: durably.Context, prompt: str) -> str:
    return (await durable_adder.run(prompt)).output


@svc.handler()
async def two_tools_auto(ctx: durably.Context, prompt: str) -> str:
    return (await durable_auto_adder.run(prompt)).output


@svc.handler()
async def flaky_model(ctx: durably.Context, prompt: str) -> str:
    try:
        await durable_flaky.run(prompt)
    except TerminalError as e:
        return f"gave up: {e.message}"
    return "unexpected"


@svc.handler()
async def approval(ctx: durably.Context, question: str) -> str:
    return (await durable_approver.run(question)).output


@svc.handler()
async def model_retry(ctx: durably.Context, prompt: str) -> str:
    return (await durable_retrier.run(prompt)).output


chat = durably.VirtualObject("PChat")


@chat.handler()
async def message(ctx: durably.ObjectContext, msg: str) -> str:
    history = await ctx.get("messages", serde=HISTORY) or []
    result = await chat_agent.run(msg, message_history=history)
    ctx.set("messages", result.all_messages(), serde=HISTORY)
    return result.output


app = durably.app(services=[svc, chat])


@pytest.fixture(autouse=True)
def _reset() -> None:
    model_calls.clear()
    effects.clear()
    awakeables.clear()


@pytest.fixture(params=[False, True], ids=["normal", "replay"])
def always_replay(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.mark.parametrize("handler", ["two_tools", "two_tools_auto"])
async def test_each_model_call_and_tool_effect_happens_once(always_replay: bool, handler: str) -> None:
    async with TestRuntime(app, always_replay=always_replay) as rt:
        assert await rt.call(f"PAgents/{handler}", "add please") == "sums: 3, 7"
    assert model_calls == [[], ["3", "7"]]
    assert effects == Counter({"add 1 2": 1, "add 3 4": 1})


async def test_failing_model_call_ends_in_catchable_terminal_error(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay) as rt:
        result = await rt.call("PAgents/flaky_model", "hi")
    assert result.startswith("gave up:") and "model unavailable" in result
    assert len(model_calls) == 3


async def test_model_retry_from_tool_is_journaled(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay) as rt:
        assert await rt.call("PAgents/model_retry", "go") == "ok after retry"
    assert effects["picky"] == 2
    assert len(model_calls) == 3


async def test_tool_waits_for_human_and_model_is_not_asked_again(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay, virtual_clock=True) as rt:
        inv = await rt.send("PAgents/approval", "deploy?")
        name = await wait_awakeable(rt, awakeables, "deploy?")
        async with rt.http() as http:
            r = await http.post(f"/restate/awakeables/{name}/resolve", json="yes")
            assert r.status_code == 202, r.text
        assert await rt.attach(inv, "PAgents/approval") == "human said yes"
    assert model_calls == [[], ["yes"]]


async def test_human_approval_times_out(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay, virtual_clock=True) as rt:
        inv = await rt.send("PAgents/approval", "deploy?")
        await wait_awakeable(rt, awakeables, "deploy?")
        await wait_for(rt, lambda: has_sleep_timer(rt, inv), "timer for the human's answer")
        await rt.advance(timedelta(days=1, seconds=1))
        assert await rt.attach(inv, "PAgents/approval") == "human said no answer in time"


async def test_cancellation_stops_the_agent_loop(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay, virtual_clock=True) as rt:
        inv = await rt.send("PAgents/approval", "cancel me?")
        await wait_awakeable(rt, awakeables, "cancel me?")
        rt.engine.cancel(inv)
        with pytest.raises(TerminalError) as e:
            await rt.attach(inv, "PAgents/approval")
        assert e.value.status_code == 409
    assert model_calls == [[]]


async def test_session_memory_lives_in_object_state(always_replay: bool) -> None:
    async with TestRuntime(app, always_replay=always_replay) as rt:
        assert await rt.call("PChat/alice/message", "hi") == "message 1; you said before: []"
        assert await rt.call("PChat/alice/message", "again") == "message 2; you said before: ['hi']"
        assert await rt.call("PChat/bob/message", "yo") == "message 1; you said before: []"


async def test_concurrent_messages_to_one_session_are_serialised() -> None:
    async with TestRuntime(app) as rt:
        invs = [await rt.send("PChat/carol/message", f"m{i}") for i in range(4)]
        answers = await asyncio.gather(*(rt.attach(i, "PChat/carol/message") for i in invs))
    assert [a.split(";")[0] for a in answers] == [f"message {i + 1}" for i in range(4)]


def test_model_chosen_at_run_time_is_refused() -> None:
    with pytest.raises(TerminalError):
        RestateAgent(Agent())
