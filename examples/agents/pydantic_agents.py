"""Durable agents with Pydantic AI: a chat with memory, a human approval, a multi-agent handoff.

    durably serve examples.agents.pydantic_agents:app

Without OPENAI_API_KEY the agents use scripted FunctionModels (pydantic_fake_model.py), so this runs
anywhere; with the key set they use a real OpenAI model.

Chat with memory (the message history of each key lives in the object's state):

    curl localhost:8080/PydanticChat/alice/message --json '"My name is Alice"'
    curl localhost:8080/PydanticChat/alice/message --json '"What did I say?"'

Claims: the agent asks a person to approve claims over 1000 and waits up to a day (an awakeable):

    curl localhost:8080/PydanticClaims/review/send --json '{"amount": 2500, "reason": "laptop"}'
    curl -X POST localhost:8080/restate/awakeables/sign_1.../resolve --json '"approved"'

Handoff: a triage agent hands the question to a specialist agent, which runs as its own durable
service (a journaled call: the specialist's answer survives a crash of the triage agent):

    curl localhost:8080/PydanticTriage/ask --json '"Why was I charged twice?"'
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage

import durably
from durably.ext.pydantic import PydanticTypeAdapter, RestateAgent, restate_context
from examples.agents.pydantic_fake_model import (
    real_model_wanted,
    scripted,
    text,
    tool_calls,
    tool_outputs,
    user_messages,
)

REAL_MODEL = "openai:gpt-4o-mini"
APPROVAL_TIMEOUT = timedelta(days=1)
HISTORY: PydanticTypeAdapter[list[ModelMessage]] = PydanticTypeAdapter(list[ModelMessage])


def model(reply: Any) -> Any:
    """The real model when a key is set, else the scripted one."""
    if real_model_wanted():
        from pydantic_ai.models import infer_model

        return infer_model(REAL_MODEL)
    return scripted(reply)


# ---- chat with memory ------------------------------------------------------------------------------------

def chat_reply(messages: list[ModelMessage]) -> Any:
    said = user_messages(messages)
    return text(f"You have told me {len(said)} thing(s); before this: {said[:-1]}")


chat_agent = RestateAgent(Agent(model(chat_reply), instructions="You are a helpful assistant; be brief."))
chat = durably.VirtualObject("PydanticChat", description="A conversation per key, kept in the object's state.")


@chat.handler()
async def message(ctx: durably.ObjectContext, msg: str) -> str:
    """One user message; the agent sees the whole conversation of this key."""
    history = await ctx.get("messages", serde=HISTORY) or []
    result = await chat_agent.run(msg, message_history=history)
    ctx.set("messages", result.all_messages(), serde=HISTORY)
    return result.output


# ---- human approval with a timeout ------------------------------------------------------------------------

class Claim(BaseModel):
    amount: float
    reason: str


def tell_approver(awakeable_id: str, claim: str) -> None:
    """Stands in for an e-mail: prints (or appends to $APPROVAL_LOG) the curl line that approves."""
    line = (f"approve {claim}: curl -X POST localhost:8080/restate/awakeables/{awakeable_id}/resolve "
            "--json '\"approved\"'")
    path = os.environ.get("APPROVAL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    else:
        print(line, flush=True)


def claims_reply(messages: list[ModelMessage]) -> Any:
    claim = user_messages(messages)[-1]
    outs = tool_outputs(messages)
    if outs:
        return text(f"Claim {claim}: {outs[-1]}")
    if Claim.model_validate_json(claim).amount > 1000:
        return tool_calls(("human_approval", {"claim": claim}, "approval"))
    return text(f"Claim {claim}: approved")


claims_base = Agent(model(claims_reply), instructions="Approve claims up to 1000; ask a human for larger ones.")


@claims_base.tool_plain
async def human_approval(claim: str) -> str:
    """Ask a person to approve the claim; answers 'approved', 'rejected' or 'no answer in time'."""
    ctx = restate_context()
    awakeable_id, decision = ctx.awakeable(type_hint=str)
    await ctx.run_typed("notify approver", tell_approver, None, awakeable_id, claim)
    match await durably.select(decision=decision, timeout=ctx.sleep(APPROVAL_TIMEOUT)):
        case ["decision", value]:
            return value
        case _:
            return "no answer in time"


claims_agent = RestateAgent(claims_base)
claims = durably.Service("PydanticClaims", description="Reviews expense claims, with a human for large ones.")


@claims.handler()
async def review(ctx: durably.Context, claim: Claim) -> str:
    """Review one claim."""
    return (await claims_agent.run(claim.model_dump_json())).output


# ---- multi-agent handoff -----------------------------------------------------------------------------------

def billing_reply(messages: list[ModelMessage]) -> Any:
    outs = tool_outputs(messages)
    return text(f"Billing: {outs[-1]}") if outs else tool_calls(("lookup_invoice", {"customer": "you"}, "inv"))


billing_base = Agent(model(billing_reply), instructions="Answer billing questions.")


@billing_base.tool_plain
def lookup_invoice(customer: str) -> str:
    """The customer's latest invoice."""
    return f"invoice 17 for {customer}: 2 x 9.99"


# auto_wrap_tools: each plain tool call is one journaled step (it does not use the context itself).
billing_agent = RestateAgent(billing_base, auto_wrap_tools=True)
weather_agent = RestateAgent(Agent(model(lambda m: text("Weather: sunny, 21 C")),
                                   instructions="Answer weather questions."))
specialists = durably.Service("PydanticSpecialists", description="Specialist agents, each a durable handler.")


@specialists.handler()
async def billing(ctx: durably.Context, question: str) -> str:
    """The billing specialist."""
    return (await billing_agent.run(question)).output


@specialists.handler()
async def weather(ctx: durably.Context, question: str) -> str:
    """The weather specialist."""
    return (await weather_agent.run(question)).output


def triage_reply(messages: list[ModelMessage]) -> Any:
    outs = tool_outputs(messages)
    if outs:
        return text(outs[-1])
    question = user_messages(messages)[-1]
    topic = "weather" if "weather" in question.lower() else "billing"
    return tool_calls(("hand_off", {"specialist": topic, "question": question}, "handoff"))


triage_base = Agent(model(triage_reply), instructions="Hand the question to the 'billing' or 'weather' specialist.")


@triage_base.tool_plain
async def hand_off(specialist: str, question: str) -> str:
    """Ask a specialist agent ('billing' or 'weather') and return its answer."""
    target = weather if specialist == "weather" else billing
    return await restate_context().service_call(target, question)


triage_agent = RestateAgent(triage_base)
triage = durably.Service("PydanticTriage", description="Routes a question to a specialist agent.")


@triage.handler()
async def ask(ctx: durably.Context, question: str) -> str:
    """Answer a question through the right specialist."""
    return (await triage_agent.run(question)).output


app = durably.app(services=[chat, claims, specialists, triage])
