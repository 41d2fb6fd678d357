"""Across partitions: calls, sends, results, awakeables, kill and cancel between engines of one data directory.

Two or three engines run in this process, each `EngineOptions(partitions=PartitionMap(n, i))` on its own SQLite
data dir, linked by `MemoryLink`, an in-memory `PeerLink` that can drop a delivery or its answer, deliver it
twice, and make a partition unreachable. What a user sees: results, the callee's id, the state a key ends
with, how often a step ran, the outcome of a killed or cancelled call.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import durably
from durably import TerminalError
from durably.protocol import messages as m
from durably.protocol import protocol_pb2 as pb
from durably.protocol.ids import InvocationId
from durably.server.engine.calltree import ActionResult
from durably.server.engine.engine import Engine, EngineOptions
from durably.server.engine.invocation import COMPLETED, INBOXED, Outcome
from durably.server.partitions.link import PeerUnreachable
from durably.server.partitions.map import PartitionMap
from durably.server.store import SQLiteStore
from durably.server.store.base import COL, Batch, Store
from durably.server.store.ops import AddOutbox, MarkApplied
from durably.testing.faults import FaultyStore, SimulatedCrash

steps: Counter[str] = Counter()
awakeables: dict[str, str] = {}

counter = durably.VirtualObject("Counter")


@counter.handler()
async def add(ctx: durably.ObjectContext, delta: int) -> int:
    value = (await ctx.get("value") or 0) + delta
    ctx.set("value", value)
    return value


@counter.handler()
async def append(ctx: durably.ObjectContext, item: str) -> list:
    items = await ctx.get("items") or []
    items.append(item)
    ctx.set("items", items)
    return items


@counter.handler()
async def hold(ctx: durably.ObjectContext, name: str) -> str:
    """Holds the key until its awakeable is resolved."""
    aw_id, fut = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", lambda: awakeables.__setitem__(name, aw_id))
    return await fut


holder = durably.VirtualObject("Holder")


@holder.handler()
async def wait(ctx: durably.ObjectContext, name: str) -> str:
    """Like Counter/hold, on another object (its key lives in the same partition as Counter's same key)."""
    aw_id, fut = ctx.awakeable(type_hint=str)
    await ctx.run_typed("publish", lambda: awakeables.__setitem__(name, aw_id))
    return await fut


@holder.handler()
async def wait_signal(ctx: durably.ObjectContext) -> str:
    return await ctx.signal("go", type_hint=str)


plain = durably.Service("Plain")


@plain.handler()
async def count(ctx: durably.Context) -> int:
    await ctx.run_typed("count", lambda: steps.update(["plain"]))
    return steps["plain"]


@counter.handler()
async def deeper(ctx: durably.ObjectContext, keys: list) -> str:
    """Calls `deeper` on the next key (each in its partition); the last one holds."""
    if not keys:
        return await ctx.object_call(wait, key=ctx.key(), arg=f"leaf-{ctx.key()}")
    return await ctx.object_call(deeper, key=keys[0], arg=keys[1:])


caller = durably.Service("Caller")


@caller.handler()
async def call_add(ctx: durably.Context, key: str) -> int:
    await ctx.run_typed("before", lambda: steps.update([f"before-{key}"]))
    return await ctx.object_call(add, key=key, arg=1)


@caller.handler()
async def send_add(ctx: durably.Context, key: str) -> str:
    handle = ctx.object_send(add, key=key, arg=10)
    return await handle.invocation_id()


@caller.handler()
async def append_all(ctx: durably.Context, args: dict) -> str:
    for item in args["items"]:
        ctx.object_send(append, key=args["key"], arg=item)
    return "sent"


@caller.handler()
async def call_then_attach(ctx: durably.Context, key: str) -> list:
    fut = ctx.object_call(add, key=key, arg=5)
    inv_id = await fut.invocation_id()
    value = await fut
    again = await ctx.attach_invocation(inv_id, type_hint=int)
    return [value, again]


@caller.handler()
async def submit(ctx: durably.Context, key: str) -> str:
    return await ctx.workflow_send(run, key=key, arg=f"{key}@example.com").invocation_id()


@caller.handler()
async def click_it(ctx: durably.Context, key: str) -> str:
    return await ctx.workflow_call(click, key=key, arg="link-1")


@caller.handler()
async def attach_to(ctx: durably.Context, inv_id: str) -> str:
    return await ctx.attach_invocation(inv_id, type_hint=str)


@caller.handler()
async def resolve(ctx: durably.Context, aw_id: str) -> str:
    ctx.resolve_awakeable(aw_id, "from elsewhere")
    return "resolved"


@caller.handler()
async def signal_it(ctx: durably.Context, inv_id: str) -> str:
    ctx.resolve_signal(inv_id, "go", "signalled")
    return "sent"


@caller.handler()
async def idempotent(ctx: durably.Context, idem: str) -> int:
    raw = await ctx.generic_call("Plain", "count", b"", idempotency_key=idem)
    return int(raw)


@caller.handler()
async def send_later(ctx: durably.Context, key: str) -> str:
    return await ctx.object_send(add, key=key, arg=7, send_delay=timedelta(milliseconds=50)).invocation_id()


@caller.handler()
async def root(ctx: durably.Context, keys: list) -> str:
    return await ctx.object_call(deeper, key=keys[0], arg=keys[1:])


@caller.handler()
async def call_twice(ctx: durably.Context, key: str) -> list:
    a = await ctx.workflow_call(run, key=key, arg="first")
    try:
        await ctx.workflow_call(run, key=key, arg="again")
    except TerminalError as e:
        return [a, e.status_code, e.message]
    return [a, "unreachable"]


signup = durably.Workflow("Signup")


@signup.main()
async def run(ctx: durably.WorkflowContext, email: str) -> str:
    link = await ctx.promise("link", type_hint=str).value()
    return f"{email} verified with {link}"


@signup.handler()
async def click(ctx: durably.WorkflowSharedContext, link: str) -> str:
    await ctx.promise("link").resolve(link)
    return "ok"


APP = durably.app(services=[counter, holder, plain, caller, signup])


class MemoryLink:
    """A PeerLink between engines of one process, with faults: down partitions, lost deliveries or answers,
    duplicated deliveries."""

    def __init__(self) -> None:
        self.engines: dict[int, Engine] = {}
        self.down: set[int] = set()
        self.lose_deliveries = 0  # the next N deliveries never arrive
        self.lose_answers = 0  # the next N deliveries are applied, but their answer is lost
        self.duplicate = False  # every delivery arrives twice
        self.deliveries = 0

    async def deliver(self, partition: int, payload: bytes) -> bytes:
        engine = self.engines.get(partition)
        if engine is None or partition in self.down:
            raise PeerUnreachable(f"partition {partition} is down")
        self.deliveries += 1
        if self.lose_deliveries > 0:
            self.lose_deliveries -= 1
            raise PeerUnreachable("lost on the way")
        answer = await engine.receive_from_partition(payload)
        if self.duplicate:
            answer = await engine.receive_from_partition(payload)
        if self.lose_answers > 0:
            self.lose_answers -= 1
            raise PeerUnreachable("the answer was lost")
        return answer


class CrashAfter(FaultyStore):
    """The commit holding the first operation of type `op` succeeds, then the process "dies": nothing of that
    commit is acknowledged (no delivery, no answer), nothing more is written."""

    def __init__(self, inner: Store, op: type) -> None:
        super().__init__(inner, 1 << 62)
        self.op = op

    def commit(self, batch: Batch) -> None:
        if self.crashed:
            raise SimulatedCrash("the process has crashed")
        self.inner.commit(batch)
        if any(isinstance(o, self.op) for o in batch.ops):
            self.crashed = True
            raise SimulatedCrash(f"crashed right after committing a {self.op.__name__}")


class Cluster:
    """N engines of one data directory, one per partition, each on its own SQLite file."""

    def __init__(self, root: Path, n: int) -> None:
        self.root = root
        self.n = n
        self.link = MemoryLink()
        self.engines: dict[int, Engine] = {}

    async def open(self, i: int, crash_on: type | None = None) -> Engine:
        """Partition i's engine on its data dir; `crash_on`: the process dies right after the first commit
        that holds an operation of this type (see CrashAfter)."""
        store: Store = SQLiteStore(self.root / f"p{i}")
        if crash_on is not None:
            store = CrashAfter(store, crash_on)
        engine = Engine(APP, store, EngineOptions(partitions=PartitionMap(self.n, i)))
        await engine.start()
        engine.attach_peers(self.link)
        self.engines[i] = self.link.engines[i] = engine
        return engine

    async def close(self, i: int) -> None:
        engine = self.engines.pop(i)
        self.link.engines.pop(i, None)
        if isinstance(engine.store, CrashAfter):
            await engine.stop(close_store=False)  # as after a kill -9: what was committed is all there is
            engine.store.inner.close()
            return
        await engine.stop()

    async def restart(self, i: int) -> Engine:
        await self.close(i)
        return await self.open(i)

    def __getitem__(self, i: int) -> Engine:
        return self.engines[i]

    async def invoke(self, i: int, target: str, arg: Any, key: str = "") -> str:
        service, handler = target.split("/")
        h = self[i].handler(service, handler)
        assert h is not None
        _, inv_id, _ = self[i].invoke(h, json.dumps(arg).encode(), [], key=key)
        return inv_id

    async def result(self, i: int, inv_id: str) -> Any:
        """The outcome of an invocation of partition i (once it is there: a message may still be on its way)."""
        await until(lambda: self[i].peek_outcome(inv_id)[0], f"{inv_id} to exist in partition {i}")
        outcome = await asyncio.wait_for(self[i].wait_outcome(inv_id), 10)
        assert outcome is not None, inv_id
        if outcome.failure_code is not None:
            return (outcome.failure_code, outcome.failure_message)
        return json.loads(outcome.value) if outcome.value else None

    async def call(self, i: int, target: str, arg: Any, key: str = "") -> Any:
        return await self.result(i, await self.invoke(i, target, arg, key))

    def outbox_rows(self, i: int) -> int:
        return self[i].store.query("SELECT count(*) FROM outbox")[0][0]


@pytest.fixture
async def cluster(tmp_path: Path):
    made: list[Cluster] = []

    async def make(n: int) -> Cluster:
        c = Cluster(tmp_path, n)
        for i in range(n):
            await c.open(i)
        made.append(c)
        return c

    yield make
    for c in made:
        for i in list(c.engines):
            await c.close(i)


def key_in(n: int, partition: int, prefix: str = "k") -> str:
    """A key whose invocations partition `partition` of `n` owns."""
    parts = PartitionMap(n)
    for i in range(10_000):
        key = f"{prefix}{i}"
        if parts.owner(InvocationId.for_keyed("Counter", key)) == partition:
            return key
    raise AssertionError("no key found")


async def until(cond: Callable[[], object], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 10.0
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def row(engine: Engine, inv_id: str) -> tuple | None:
    return engine.store.load_invocation(inv_id)


def journal_types(engine: Engine, inv_id: str) -> list[int]:
    return [t for t, _ in engine.store.load_journal(inv_id)]


# ---- calls, sends, results ----

async def test_a_call_to_a_key_owned_elsewhere_returns_its_result(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1)
    assert await c.call(0, "Caller/call_add", key) == 1
    assert await c.call(0, "Caller/call_add", key) == 2
    # The callee ran in the key's partition; the caller's partition holds no invocation of the key.
    assert [r[COL["handler"]] for r in c[1].store.list_invocations()] == ["add", "add"]
    assert all(r[COL["service"]] == "Caller" for r in c[0].store.list_invocations())
    await until(lambda: c.outbox_rows(0) == 0 and c.outbox_rows(1) == 0, "every message acknowledged")


async def test_a_send_returns_the_id_the_callee_gets(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1)
    sent_id = await c.call(0, "Caller/send_add", key)
    assert PartitionMap(2).owner(sent_id) == 1
    assert await c.result(1, sent_id) == 10  # the callee in partition 1 has exactly the id the caller journaled
    assert c[1].store.caller_of(sent_id) is not None


async def test_attach_to_a_callee_in_another_partition(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1)
    assert await c.call(0, "Caller/call_then_attach", key) == [5, 5]


async def test_per_key_order_with_callers_in_other_partitions(cluster) -> None:
    c = await cluster(3)
    key = key_in(3, 2)
    # The key is held in its partition: what callers elsewhere send queues behind it there.
    holder = await c.invoke(2, "Counter/hold", "holder", key=key)
    await until(lambda: "holder" in awakeables, "the holder to run")
    a = await c.invoke(0, "Caller/append_all", {"key": key, "items": ["a1", "a2", "a3", "a4"]})
    b = await c.invoke(1, "Caller/append_all", {"key": key, "items": ["b1", "b2", "b3", "b4"]})
    assert await c.result(0, a) == "sent" and await c.result(1, b) == "sent"

    def queued() -> int:
        return sum(1 for r in c[2].store.list_invocations(INBOXED) if r[COL["handler"]] == "append")
    await until(lambda: queued() == 8, "eight appends queued behind the holder")
    assert c[2].complete_awakeable(awakeables.pop("holder"), b'"go"', None)
    assert await c.result(2, holder) == "go"
    items = await c.call(2, "Counter/append", "z", key=key)  # queued behind the eight
    assert items.pop() == "z"
    assert sorted(items) == ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4"]
    assert [i for i in items if i[0] == "a"] == ["a1", "a2", "a3", "a4"]  # each caller's order is kept
    assert [i for i in items if i[0] == "b"] == ["b1", "b2", "b3", "b4"]


async def test_get_output_of_an_invocation_owned_elsewhere(cluster) -> None:
    """What a deployment's GetInvocationOutput command gets (the Python SDK has no call for it): the outcome of a
    completed invocation of another partition, or nothing yet."""
    c = await cluster(2)
    done = await c.invoke(1, "Counter/add", 3, key=key_in(2, 1, "out"))
    assert await c.result(1, done) == 3
    running = await c.invoke(1, "Holder/wait", "output", key=key_in(2, 1, "out-run"))
    await until(lambda: "output" in awakeables, "the running one")
    asker = await c.invoke(0, "Holder/wait", "asker", key=key_in(2, 0, "asker"))
    await until(lambda: "asker" in awakeables, "the asker")
    inv = c[0].table.load(asker)
    for cid, target in ((90, done), (91, running)):
        cmd = pb.GetInvocationOutputCommandMessage(invocation_id=target, result_completion_id=cid)
        c[0].calls.attach(inv, cmd, m.GET_INVOCATION_OUTPUT_COMPLETION, wait=False)

    def answers() -> dict[int, pb.NotificationMessage]:
        return {n.completion_id: n for t, raw in c[0].store.load_journal(asker)
                if t == m.GET_INVOCATION_OUTPUT_COMPLETION for n in [pb.NotificationMessage.FromString(raw)]}
    await until(lambda: len(answers()) == 2, "both answers journaled")
    assert answers()[90].value.content == b"3"
    assert answers()[91].WhichOneof("result") == "void"  # not completed yet


async def test_workflow_submit_promise_and_attach_from_another_partition(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1, "wf")
    assert PartitionMap(2).owner(InvocationId.for_workflow("Signup", key)) == 1
    run_id = await c.call(0, "Caller/submit", key)
    assert run_id == str(InvocationId.for_workflow("Signup", key))
    attach = await c.invoke(0, "Caller/attach_to", run_id)  # waits on the run, from partition 0
    await until(lambda: m.GET_PROMISE in journal_types(c[1], run_id), "the run to wait on its promise")
    assert await c.call(0, "Caller/click_it", key) == "ok"
    assert await c.result(0, attach) == f"{key}@example.com verified with link-1"
    assert await c.result(1, run_id) == f"{key}@example.com verified with link-1"
    # A second run of the same workflow key is refused as on one partition.
    key2 = key_in(2, 1, "wf2-")
    started = await c.invoke(0, "Caller/call_twice", key2)
    await until(lambda: row(c[1], str(InvocationId.for_workflow("Signup", key2))) is not None, "the run")
    assert await c.call(0, "Caller/click_it", key2) == "ok"
    assert await c.result(0, started) == ["first verified with link-1", 409, "the workflow method was already invoked"]


async def test_an_awakeable_resolved_from_another_partition(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1)
    held = await c.invoke(1, "Counter/hold", "aw", key=key)
    await until(lambda: "aw" in awakeables, "the awakeable")
    assert await c.call(0, "Caller/resolve", awakeables.pop("aw")) == "resolved"
    assert await c.result(1, held) == "from elsewhere"


async def test_a_signal_sent_to_another_partition(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1, "sig")
    waiting = await c.invoke(1, "Holder/wait_signal", None, key=key)
    assert await c.call(0, "Caller/signal_it", waiting) == "sent"
    assert await c.result(1, waiting) == "signalled"


async def test_an_idempotent_call_owned_elsewhere_runs_once(cluster) -> None:
    c = await cluster(2)
    idem = next(f"idem{i}" for i in range(1000)
                if PartitionMap(2).owner(InvocationId.for_idempotent_request("Plain", "count", f"idem{i}")) == 1)
    before = steps["plain"]
    first = await c.call(0, "Caller/idempotent", idem)
    assert first == before + 1
    assert await c.call(0, "Caller/idempotent", idem) == first  # the second call attaches to the first
    assert steps["plain"] == before + 1
    assert [r[COL["handler"]] for r in c[1].store.list_invocations()] == ["count"]


async def test_a_delayed_send_to_another_partition(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1, "later")
    sent_id = await c.call(0, "Caller/send_later", key)
    assert await c.result(1, sent_id) == 7


# ---- faults: duplicated, lost, unreachable, restarted ----

async def test_duplicated_deliveries_are_applied_once(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1)
    c.link.duplicate = True
    for expected in range(1, 6):
        inv = await c.invoke(0, "Caller/call_add", key)
        assert await c.result(0, inv) == expected  # each call added once, answered once
        assert journal_types(c[0], inv).count(m.CALL_COMPLETION) == 1
    assert len([r for r in c[1].store.list_invocations() if r[COL["handler"]] == "add"]) == 5


async def test_lost_deliveries_and_lost_answers_are_applied_once(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1)
    c.link.lose_deliveries = 3
    assert await c.call(0, "Caller/call_add", key) == 1
    c.link.lose_answers = 3  # applied, then sent again because the ack never came back
    assert await c.call(0, "Caller/call_add", key) == 2
    c.link.lose_answers = 2
    c.link.lose_deliveries = 2
    assert await c.call(0, "Caller/call_add", key) == 3
    assert len([r for r in c[1].store.list_invocations() if r[COL["handler"]] == "add"]) == 3
    await until(lambda: c.outbox_rows(0) == 0 and c.outbox_rows(1) == 0, "every message acknowledged")


async def test_a_restarted_caller_partition_delivers_its_pending_call(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1, "restart")
    c.link.down.add(1)
    inv = await c.invoke(0, "Caller/call_add", key)
    await until(lambda: c.outbox_rows(0) == 1, "the call committed in the outbox")
    assert steps[f"before-{key}"] == 1
    await c.restart(0)  # partition 0 stops with the call not delivered
    assert c.outbox_rows(0) == 1
    c.link.down.discard(1)
    assert await c.result(0, inv) == 1
    assert steps[f"before-{key}"] == 1  # the committed step did not run again
    assert journal_types(c[0], inv).count(m.CALL_COMPLETION) == 1
    await until(lambda: c.outbox_rows(0) == 0, "the call acknowledged")


async def test_the_sequence_goes_on_after_a_restart_with_an_empty_outbox(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1, "seq")
    assert await c.call(0, "Caller/call_add", key) == 1
    await until(lambda: c.outbox_rows(0) == 0, "the call acknowledged")
    await c.restart(0)
    # Were the numbering to start over, partition 1 would take the next call for one it already applied.
    assert await c.call(0, "Caller/call_add", key) == 2


async def test_a_caller_partition_killed_after_committing_a_call_delivers_it_after_restart(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1, "crash")
    await c.close(0)
    await c.open(0, crash_on=AddOutbox)  # dies right after the commit that holds the call's message
    inv = await c.invoke(0, "Caller/call_add", key)
    await until(lambda: c[0].is_stopping(), "the crash")
    await c.close(0)
    await c.open(0)
    assert await c.result(0, inv) == 1
    assert steps[f"before-{key}"] == 1  # the step committed before the crash did not run again
    assert len([r for r in c[1].store.list_invocations() if r[COL["handler"]] == "add"]) == 1


async def test_a_callee_partition_killed_after_applying_a_call_applies_it_once(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1, "applied")
    await c.close(1)
    await c.open(1, crash_on=MarkApplied)  # applies the call, commits, dies before answering
    inv = await c.invoke(0, "Caller/call_add", key)
    await until(lambda: c[1].is_stopping(), "the crash")
    await c.close(1)
    await c.open(1)  # the caller's partition delivers the call again: acknowledged, not applied again
    assert await c.result(0, inv) == 1
    await until(lambda: c.outbox_rows(0) == 0, "the call acknowledged")
    assert await c.call(1, "Counter/add", 0, key=key) == 1  # the key's count: the call was applied once
    await until(lambda: c.outbox_rows(0) == 0, "the call acknowledged")


async def test_a_restarted_callee_partition_delivers_the_pending_result(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1, "back")
    held = await c.invoke(0, "Caller/root", [key])  # partition 1 calls Holder/wait on the same key
    await until(lambda: f"leaf-{key}" in awakeables, "the leaf to hold")
    c.link.down.add(0)  # the caller's partition is unreachable when the result is ready
    assert c[1].complete_awakeable(awakeables.pop(f"leaf-{key}"), b'"done"', None)
    await until(lambda: c.outbox_rows(1) == 1, "the result committed in the outbox")
    await c.restart(1)
    await c.restart(0)
    assert c.outbox_rows(1) == 1
    c.link.down.discard(0)
    assert await c.result(0, held) == "done"
    await until(lambda: c.outbox_rows(1) == 0, "the result acknowledged")


async def test_a_malformed_delivery_is_refused_and_changes_nothing(cluster) -> None:
    c = await cluster(2)
    for payload in (b"junk", b'{"v": 99, "from": 0, "messages": []}', b'{"v": 1, "from": 1, "messages": []}'):
        answer = json.loads(await c[1].receive_from_partition(payload))
        assert "error" in answer and "applied" not in answer
    assert c[1].store.query("SELECT count(*) FROM inbox_applied")[0][0] == 0


# ---- kill and cancel across the call tree ----

async def test_kill_follows_the_call_tree_across_partitions(cluster) -> None:
    c = await cluster(3)
    k1, k2 = key_in(3, 1, "kill"), key_in(3, 2, "kill")
    top = await c.invoke(0, "Caller/root", [k1, k2])
    await until(lambda: f"leaf-{k2}" in awakeables, "the leaf in partition 2")
    assert c[0].kill(top) == ActionResult.DONE
    assert await c.result(0, top) == (409, "killed")

    def outcomes(i: int) -> list[Outcome | None]:
        return [(r[COL["handler"]], r[COL["status"]], r[COL["failure_message"]]) for r in c[i].store.list_invocations()]
    await until(lambda: outcomes(1) == [("deeper", COMPLETED, "killed")], "the child in partition 1 killed")
    await until(lambda: sorted(outcomes(2)) == [("deeper", COMPLETED, "killed"), ("wait", COMPLETED, "killed")],
                "the calls in partition 2 killed")
    # The keys are free again: a new call on each runs.
    assert await c.call(1, "Counter/add", 1, key=k1) == 1
    assert await c.call(2, "Counter/add", 1, key=k2) == 1


async def test_cancel_follows_the_call_tree_across_partitions(cluster) -> None:
    c = await cluster(2)
    k1 = key_in(2, 1, "cancel")
    top = await c.invoke(0, "Caller/root", [k1])
    await until(lambda: f"leaf-{k1}" in awakeables, "the leaf in partition 1")
    assert c[0].cancel(top) == ActionResult.ACCEPTED
    assert await c.result(0, top) == (409, "cancelled")
    for r in c[1].store.list_invocations():
        if r[COL["handler"]] in ("deeper", "wait"):
            assert await c.result(1, r[COL["id"]]) == (409, "cancelled")


async def test_kill_of_an_invocation_owned_elsewhere_is_sent_there(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1, "remote-kill")
    held = await c.invoke(1, "Counter/hold", "rk", key=key)
    await until(lambda: "rk" in awakeables, "the holder")
    assert c[0].kill(held) == ActionResult.ACCEPTED
    assert await c.result(1, held) == (409, "killed")


async def test_pause_resume_and_purge_of_an_invocation_owned_elsewhere_are_sent_there(cluster) -> None:
    c = await cluster(2)
    key = key_in(2, 1, "remote-ops")
    held = await c.invoke(1, "Counter/hold", "ops", key=key)
    await until(lambda: "ops" in awakeables, "the holder")

    def status() -> str | None:
        row = c[1].live_row(held) or c[1].store.load_invocation(held)
        return None if row is None else row[COL["status"]]

    assert c[0].pause(held) == ActionResult.ACCEPTED
    await until(lambda: status() == "paused", "the invocation paused in its partition")
    assert c[0].resume(held) == ActionResult.ACCEPTED
    await until(lambda: status() not in ("paused", None), "the invocation resumed in its partition")
    assert c[0].kill(held) == ActionResult.ACCEPTED
    assert await c.result(1, held) == (409, "killed")
    assert c[0].purge(held) == ActionResult.ACCEPTED
    await until(lambda: status() is None, "the invocation purged in its partition")


# ---- one partition: nothing changes ----

async def test_one_partition_has_no_outbox(tmp_path: Path) -> None:
    engine = Engine(APP, SQLiteStore(tmp_path), EngineOptions())
    await engine.start()
    try:
        assert engine.outbox is None and engine.inbox is None
        h = engine.handler("Caller", "call_add")
        _, inv, _ = engine.invoke(h, b'"solo"', [])
        outcome = await asyncio.wait_for(engine.wait_outcome(inv), 10)
        assert outcome.value == b"1"
        assert engine.store.query("SELECT count(*) FROM outbox")[0][0] == 0
        answer = json.loads(await engine.receive_from_partition(b"{}"))
        assert "one partition" in answer["error"]
    finally:
        await engine.stop()
