"""Cancelling a workflow started two hops away, the shape of Restate's chat-bot example.

A `ChatSession` object handler `service_send`s `TaskExecutor/execute`, which starts the task workflow with
`generic_call`; another `ChatSession` handler cancels the task right after, by getting the workflow's invocation
id from `workflow_send(...).invocation_id()` and calling `cancel_invocation` on it. The workflow loops over a step
and a 10 s durable sleep, so only the cancellation can end it.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

import durably
from durably import TerminalError
from durably.server.store.base import COL

ticks: list[str] = []

task = durably.Workflow("TaskWorkflow")


@task.main()
async def run(ctx: durably.WorkflowContext, opts: dict) -> str:
    n = 0
    while True:
        n = await ctx.run_typed("tick", lambda n=n: ticks.append(opts["task_id"]) or n + 1)
        await ctx.sleep(timedelta(seconds=10))


executor = durably.Service("TaskExecutor")


@executor.handler()
async def execute(ctx: durably.Context, opts: dict) -> str:
    out = await ctx.generic_call("TaskWorkflow", "run", arg=json.dumps(opts).encode(), key=opts["task_id"])
    return out.decode()


chat = durably.VirtualObject("ChatSession")


@chat.handler()
async def start(ctx: durably.ObjectContext, task_id: str) -> str:
    ctx.service_send(execute, {"task_id": task_id})
    return task_id


@chat.handler()
async def cancel(ctx: durably.ObjectContext, task_id: str) -> str:
    handle = ctx.workflow_send(run, task_id, {"task_id": task_id})
    inv = await handle.invocation_id()
    ctx.cancel_invocation(inv)
    return inv


APP = durably.app(services=[task, executor, chat])


@pytest.mark.parametrize("wait_for_first_step", [False, True], ids=["at-once", "after-first-step"])
async def test_a_task_workflow_started_by_a_sent_executor_is_cancelled(runtime, wait_for_first_step: bool) -> None:
    ticks.clear()
    async with runtime(APP, virtual_clock=True) as rt:
        assert await rt.call("ChatSession/u1/start", "t1") == "t1"
        if wait_for_first_step:
            for _ in range(2000):
                if ticks:
                    break
                await rt.settle()
            assert ticks, "the workflow never ran its first step"
        wf_id = await rt.call("ChatSession/u1/cancel", "t1")
        with pytest.raises(TerminalError) as info:
            await asyncio.wait_for(rt.attach(wf_id, "TaskWorkflow/t1/run"), 10)
        assert info.value.status_code == 409
        # The executor that called it gets the cancellation as its call's result.
        executions = [r[COL["id"]] for r in rt.store.list_invocations() if r[COL["service"]] == "TaskExecutor"]
        assert len(executions) == 1
        with pytest.raises(TerminalError) as info:
            await asyncio.wait_for(rt.attach(executions[0], "TaskExecutor/execute"), 10)
        assert info.value.status_code == 409
        # No sleep of the cancelled workflow is left to fire: a minute later it has not run another round.
        await rt.advance(timedelta(seconds=60))
        assert ticks in ([], ["t1"])
