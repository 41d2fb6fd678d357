"""durably.ext.tracing: spans of an instrumented agent follow the invocation, once per step.

Pydantic AI's own OpenTelemetry instrumentation makes the spans (a span per model request and per tool
call); RestateTracerProvider parents them under the invocation. In always-replay mode the handler runs
once per journal append, so a tracer that recorded replays would show every step several times.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from agent_waits import wait_awakeable

pytest.importorskip("pydantic_ai")
pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic_ai import Agent
from pydantic_ai.capabilities.instrumentation import Instrumentation
from pydantic_ai.models.instrumented import InstrumentationSettings

import durably
from durably.ext.pydantic import RestateAgent, restate_context
from durably.ext.tracing import RestateTracerProvider
from durably.server.engine.invocation import SUSPENDED
from durably.server.store.base import COL
from durably.testing import TestRuntime
from examples.agents.pydantic_fake_model import scripted, text, tool_calls, tool_outputs, user_messages

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
settings = InstrumentationSettings(tracer_provider=RestateTracerProvider(provider))


awakeables: dict[str, str] = {}


def reply(messages):  # type: ignore[no-untyped-def]
    done = tool_outputs(messages)
    if not done:
        return tool_calls(("ask_human", {"question": user_messages(messages)[-1]}, "h1"))
    return text(f"human said {done[0]}")


base = Agent(scripted(reply), name="traced", capabilities=[Instrumentation(settings=settings)])


@base.tool_plain
async def ask_human(question: str) -> str:
    """Tell a person (a journaled step), then wait for their answer (an awakeable)."""
    ctx = restate_context()
    name, answer = ctx.awakeable(type_hint=str)
    await ctx.run_typed("notify", awakeables.__setitem__, None, question, name)
    return await answer


agent = RestateAgent(base)
svc = durably.Service("Traced")


@svc.handler()
async def run(ctx: durably.Context, prompt: str) -> str:
    return (await agent.run(prompt)).output


app = durably.app(services=[svc])


async def answer(rt: TestRuntime, question: str, value: str) -> None:
    name = await wait_awakeable(rt, awakeables, question)
    async with rt.http() as http:
        r = await http.post(f"/restate/awakeables/{name}/resolve", json=value)
        assert r.status_code == 202, r.text


def spans_named(prefix: str) -> list:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


def assert_each_step_once(invocations: set[str]) -> None:
    by_invocation: dict[str, list] = {}
    for span in exporter.get_finished_spans():
        by_invocation.setdefault(span.attributes["restate.invocation.id"], []).append(span)
    assert set(by_invocation) == invocations
    for spans in by_invocation.values():
        assert len({s.context.trace_id for s in spans}) == 1  # one trace per invocation
        names = [s.name for s in spans]
        assert sum(n.startswith("chat") for n in names) == 2, names  # each model request once
        assert sum(n.startswith("execute_tool") for n in names) == 1, names  # the tool call once
    assert len({s.context.trace_id for s in exporter.get_finished_spans()}) == len(invocations)


@pytest.mark.parametrize("always_replay", [False, True], ids=["normal", "replay"])
async def test_one_trace_per_invocation_and_each_step_once(always_replay: bool) -> None:
    exporter.clear()
    awakeables.clear()
    async with TestRuntime(app, always_replay=always_replay) as rt:
        first = await rt.send("Traced/run", "one?")
        second = await rt.send("Traced/run", "two?")
        await answer(rt, "one?", "yes")
        await answer(rt, "two?", "no")
        assert await rt.attach(first, "Traced/run") == "human said yes"
        assert await rt.attach(second, "Traced/run") == "human said no"
    assert_each_step_once({first, second})


async def test_a_suspended_and_resumed_agent_shows_each_step_once() -> None:
    exporter.clear()
    awakeables.clear()
    async with TestRuntime(app, virtual_clock=True) as rt:
        inv = await rt.send("Traced/run", "later?")
        await wait_awakeable(rt, awakeables, "later?")
        await rt.advance(timedelta(minutes=2))  # past the inactivity timeout: the attempt suspends
        assert rt.store.load_invocation(inv)[COL["status"]] == SUSPENDED
        await answer(rt, "later?", "ok")
        assert await rt.attach(inv, "Traced/run") == "human said ok"
    assert_each_step_once({inv})


async def test_caller_traceparent_is_the_parent() -> None:
    exporter.clear()
    awakeables.clear()
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    async with TestRuntime(app) as rt:
        async with rt.http() as http:
            r = await http.post("/Traced/run/send", json="traced?",
                                headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
            assert r.status_code == 202, r.text
            inv = r.json()["invocationId"]
        await answer(rt, "traced?", "yes")
        assert await rt.attach(inv, "Traced/run") == "human said yes"
    spans = exporter.get_finished_spans()
    assert spans and {format(s.context.trace_id, "032x") for s in spans} == {trace_id}


def test_outside_a_handler_the_tracer_is_the_wrapped_one() -> None:
    exporter.clear()
    tracer = RestateTracerProvider(provider).get_tracer("t")
    with tracer.start_as_current_span("plain"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["plain"]
