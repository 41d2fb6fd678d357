"""The greeter: everything on the page Durably grew from, as a runnable service.

    durably serve examples.greeter:app
    curl localhost:8080/Greeter/greet --json '"Alice"'
"""

from __future__ import annotations

import random
from datetime import timedelta

import durably
from durably import RunOptions, TerminalError

greeter = durably.Service("Greeter", description="Greets people, durably.")
# Like restate.getLogger: a logger that stays silent while a handler replays its journaled steps.
log = durably.getLogger(__name__)


async def call_llm(prompt: str) -> str:
    """Stands in for a slow, non-deterministic LLM call."""
    return f"llm response to {prompt!r}"


def write_to_other_system(greeting: str) -> str:
    """Stands in for a write to a system that may fail now and then."""
    return f"stored {greeting!r}"


@greeter.handler()
async def greet(ctx: durably.Context, name: str) -> dict:
    """Greet someone, with every non-deterministic step journaled."""
    log.info("greeting %s", name)
    # An async function with keyword arguments.
    llm = await ctx.run_typed("LLM call", call_llm, prompt=f"How do I greet {name}?")
    # A lambda capturing a single value.
    my_number = await ctx.run_typed("generate number", lambda: random.randint(0, 10))
    try:
        retry_opts = RunOptions(max_attempts=10, max_retry_duration=timedelta(seconds=30))
        stored = await ctx.run_typed("write", write_to_other_system, retry_opts, f"Hello {name}")
    except TerminalError as err:
        # Retries exhausted: undo what must be undone, then tell the caller.
        raise err
    return {
        "greeting": f"Hello {name}!",
        "llm": llm,
        "number": my_number,
        "stored": stored,
        "uuid": str(ctx.uuid()),
        "random": ctx.random().random(),
        "time": await ctx.time(),
        "invocation": ctx.request().id,
    }


app = durably.app(services=[greeter])
