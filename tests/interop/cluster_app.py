"""The app of the cluster test, served by `durably endpoint --workers 2` behind a 3-node Restate cluster.

`ClusterSteps/run` runs 5 journaled steps. Each execution of a step appends `<id> <step> <nonce>` to the file named
by CLUSTER_EFFECTS (fsynced before the step returns) and returns the nonce, so the test can tell which execution's
result was committed (it is in the invocation's output) and whether any step ran again after that.
"""

from __future__ import annotations

import os
import uuid

from counter_app import counter_object

import durably

STEPS = 5

steps = durably.Service("ClusterSteps")


def execute(inv: str, i: int) -> str:
    nonce = uuid.uuid4().hex
    with open(os.environ["CLUSTER_EFFECTS"], "a", encoding="utf-8") as f:
        f.write(f"{inv} {i} {nonce}\n")
        f.flush()
        os.fsync(f.fileno())
    return nonce


@steps.handler()
async def run(ctx: durably.Context, inv: str) -> list[str]:
    return [await ctx.run_typed(f"step {i}", execute, None, inv, i) for i in range(STEPS)]


app = durably.app(services=[steps, counter_object("ClusterCounter", {})])
