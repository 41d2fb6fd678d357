"""Durable agents with the OpenAI Agents SDK: a chat with memory, a human approval, a multi-agent handoff.

    durably serve examples.agents.openai_agents:app

Without OPENAI_API_KEY the agents use a scripted model (openai_fake_model.py), so this runs anywhere;
with the key set they use a real OpenAI model.

Chat with memory (a virtual object per conversation; its history survives restarts):

    curl localhost:8080/OpenAIChat/alice/message --json '"My name is Alice"'
    curl localhost:8080/OpenAIChat/alice/message --json '"What did I say?"'

Claims: the agent asks a person to approve claims over 1000 and waits up to a day (an awakeable). The
server prints the curl line that approves; the wait costs nothing and survives restarts:

    curl localhost:8080/OpenAIClaims/review/send --json '{"amount": 2500, "reason": "laptop"}'
    curl -X POST localhost:8080/restate/awakeables/sign_1.../resolve --json '"approved"'

Handoff: a triage agent hands the question to the billing or the weather agent:

    curl localhost:8080/OpenAITriage/ask --json '"Why was I charged twice?"'
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from agents import Agent
from pydantic import BaseModel

import durably
from durably.ext.openai import DurableRunner, durable_function_tool, restate_context
from examples.agents.openai_fake_model import (
    ScriptedModel,
    real_model_wanted,
    text,
    tool_call,
    tool_outputs,
    user_messages,
)

REAL_MODEL = "gpt-4o-mini"
APPROVAL_TIMEOUT = timedelta(days=1)


def model(reply: Any) -> Any:
    """The real model when a key is set, else the scripted one."""
    return REAL_MODEL if real_model_wanted() else ScriptedModel(reply)


# ---- chat with memory ------------------------------------------------------------------------------------

def chat_reply(items: list[dict[str, Any]]) -> list[Any]:
    said = user_messages(items)
    return [text(f"You have told me {len(said)} thing(s); before this: {said[:-1]}")]


chat_agent = Agent(name="assistant", instructions="You are a helpful assistant; be brief.", model=model(chat_reply))
chat = durably.VirtualObject("OpenAIChat", description="A conversation per key, kept in the object's state.")


@chat.handler()
async def message(ctx: durably.ObjectContext, msg: str) -> str:
    """One user message; the agent sees the whole conversation of this key."""
    result = await DurableRunner.run(chat_agent, msg, use_restate_session=True)
    return str(result.final_output)


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


@durable_function_tool
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


def claims_reply(items: list[dict[str, Any]]) -> list[Any]:
    outs = tool_outputs(items)
    claim = user_messages(items)[-1]
    if outs:
        return [text(f"Claim {claim}: {outs[-1]}")]
    if Claim.model_validate_json(claim).amount > 1000:
        return [tool_call("human_approval", {"claim": claim}, "approval")]
    return [text(f"Claim {claim}: approved")]


claims_agent = Agent(name="claims", model=model(claims_reply), tools=[human_approval],
                     instructions="Approve claims up to 1000 yourself; ask a human for larger ones.")
claims = durably.Service("OpenAIClaims", description="Reviews expense claims, with a human for large ones.")


@claims.handler()
async def review(ctx: durably.Context, claim: Claim) -> str:
    """Review one claim."""
    result = await DurableRunner.run(claims_agent, claim.model_dump_json())
    return str(result.final_output)


# ---- multi-agent handoff -----------------------------------------------------------------------------------

@durable_function_tool
async def lookup_invoice(customer: str) -> str:
    """The customer's latest invoice (journaled: looked up once)."""
    return await restate_context().run_typed("lookup invoice", lambda: f"invoice 17 for {customer}: 2 x 9.99")


def billing_reply(items: list[dict[str, Any]]) -> list[Any]:
    invoices = [o for o in tool_outputs(items) if o.startswith("invoice")]
    if invoices:
        return [text(f"Billing: {invoices[-1]}")]
    return [tool_call("lookup_invoice", {"customer": "you"}, "inv")]


billing_agent = Agent(name="billing_agent", instructions="Answer billing questions.", tools=[lookup_invoice],
                      model=model(billing_reply))
weather_agent = Agent(name="weather_agent", instructions="Answer weather questions.",
                      model=model(lambda items: [text("Weather: sunny, 21 C")]))


def triage_reply(items: list[dict[str, Any]]) -> list[Any]:
    question = user_messages(items)[-1].lower()
    target = "transfer_to_weather_agent" if "weather" in question else "transfer_to_billing_agent"
    return [tool_call(target, {}, "handoff")]


triage_agent = Agent(name="triage", instructions="Hand the question to the right specialist.",
                     handoffs=[billing_agent, weather_agent], model=model(triage_reply))
triage = durably.Service("OpenAITriage", description="Routes a question to a specialist agent.")


@triage.handler()
async def ask(ctx: durably.Context, question: str) -> str:
    """Answer a question through the right specialist."""
    result = await DurableRunner.run(triage_agent, question)
    return str(result.final_output)


app = durably.app(services=[chat, claims, triage])
