"""The app of the schema-9 data directories in this folder (made by `make.py` with durably at schema 9): two
partitions, with state, workflow promises and a message in partition 0's outbox, values over a page in size."""

from __future__ import annotations

import durably
from durably.protocol.ids import InvocationId
from durably.server.engine.engine import Engine
from durably.server.partitions.link import PeerUnreachable
from durably.server.partitions.map import PartitionMap

PARTITIONS = 2

agent = durably.VirtualObject("Agent")
flow = durably.Workflow("Flow")
caller = durably.Service("Caller")


@agent.handler()
async def chat(ctx: durably.ObjectContext, text: str) -> int:
    """Keeps the chat history as one state value (large, as agents keep it), and a small count next to it."""
    history = await ctx.get("history", type_hint=list) or []
    history.append(text)
    ctx.set("history", history)
    ctx.set("turns", len(history))
    return len(history)


@agent.handler()
async def history(ctx: durably.ObjectContext) -> list:
    return [await ctx.get("turns", type_hint=int), await ctx.get("history", type_hint=list)]


@agent.handler()
async def forget(ctx: durably.ObjectContext) -> str:
    ctx.clear_all()
    return "forgotten"


@flow.main()
async def run(ctx: durably.WorkflowContext) -> str:
    return "approved: " + await ctx.promise("approval", type_hint=str).value()


@flow.handler()
async def approve(ctx: durably.WorkflowSharedContext, text: str) -> str:
    await ctx.promise("approval").resolve(text)
    return "ok"


@flow.handler()
async def decline(ctx: durably.WorkflowSharedContext, why: str) -> str:
    await ctx.promise("approval").reject(why, code=409)
    return "ok"


@flow.handler()
async def peek(ctx: durably.WorkflowSharedContext) -> str:
    try:
        return "resolved: " + (await ctx.promise("approval", type_hint=str).peek() or "")
    except durably.TerminalError as e:
        return f"rejected: {e.status_code} {e.message}"


@caller.handler()
async def ask(ctx: durably.Context, args: dict) -> int:
    """Calls Agent/chat on a key another partition owns: the call's message carries the text."""
    return await ctx.object_call(chat, key=args["key"], arg=args["text"])


app = durably.app(services=[agent, flow, caller])


def key_in(partition: int, prefix: str) -> str:
    """A key partition `partition` owns."""
    parts = PartitionMap(PARTITIONS)
    for i in range(10_000):
        if parts.owner(InvocationId.for_keyed("Agent", f"{prefix}{i}")) == partition:
            return f"{prefix}{i}"
    raise AssertionError("no key found")


class Link:
    """A PeerLink between the engines of one process; a partition in `down` is unreachable."""

    def __init__(self) -> None:
        self.engines: dict[int, Engine] = {}
        self.down: set[int] = set()

    async def deliver(self, partition: int, payload: bytes) -> bytes:
        engine = self.engines.get(partition)
        if engine is None or partition in self.down:
            raise PeerUnreachable(f"partition {partition} is down")
        return await engine.receive_from_partition(payload)
