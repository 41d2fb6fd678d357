"""A human approval: a workflow asks a person to approve a request and waits, durably, for the answer.

The workflow creates an awakeable (an id the outside world can complete), sends the person a link that
completes it, and waits for whichever comes first: the decision or a timeout (a day by default). The wait
costs nothing while it lasts and survives restarts: the server may go down for hours in between.

Walk-through:

    durably serve examples.approval:app

Start the approval for request `exp-42` (the workflow key); `/send` returns at once:

    curl localhost:8080/Approval/exp-42/run/send --json '{"title": "Dinner", "amount": 420}'

The server prints the "approval link" (set `APPROVAL_LOG=/some/file` to append it to a file instead):

    approval needed for exp-42 (Dinner): curl -X POST localhost:8080/restate/awakeables/sign_1.../resolve --json 'true'

Ask where it stands, approve it (`--json 'false'` rejects it), and get the outcome:

    curl localhost:8080/Approval/exp-42/status
    curl -X POST localhost:8080/restate/awakeables/sign_1.../resolve --json 'true'
    curl localhost:8080/restate/workflow/Approval/exp-42/attach

`attach` waits for the result, `{"key": "exp-42", "decision": "approved", ...}`; run it before the
approval and it answers as soon as someone decides. Without a decision the workflow ends "expired" after
`timeout_seconds` (default one day). A workflow key runs once: start the next request under another key.
"""

from __future__ import annotations

import os
from datetime import timedelta

import durably
from durably import TerminalError

approval = durably.Workflow("Approval", description="Waits for a person to approve a request.")

DEFAULT_TIMEOUT = timedelta(days=1)
# durably.getLogger: silent while the workflow replays, so each line is logged once, not after every restart.
log = durably.getLogger(__name__)


def send_approval_link(key: str, title: str, awakeable_id: str) -> str:
    """Stands in for an e-mail or chat message: the link is a curl line that resolves the awakeable."""
    link = f"curl -X POST localhost:8080/restate/awakeables/{awakeable_id}/resolve --json 'true'"
    line = f"approval needed for {key} ({title}): {link}"
    path = os.environ.get("APPROVAL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    else:
        print(line, flush=True)
    return link


@approval.main()
async def run(ctx: durably.WorkflowContext, request: dict) -> dict:
    """Ask for approval of `request` (`title`, anything else, optional `timeout_seconds`) and wait for it."""
    key = ctx.key()
    title = str(request.get("title", key))
    seconds = request.get("timeout_seconds")
    timeout = DEFAULT_TIMEOUT if seconds is None else timedelta(seconds=float(seconds))
    ctx.set("status", "waiting for approval")

    decision_id, decision = ctx.awakeable(type_hint=bool)
    # The message goes out in a journaled step: a replay after a crash does not send it again.
    await ctx.run_typed("send approval link", send_approval_link, None, key, title, decision_id)

    # select, not asyncio.wait: the winner is journaled, so a replay takes the same branch.
    reason = ""
    try:
        match await durably.select(decision=decision, timeout=ctx.sleep(timeout, "approval timeout")):
            case ["decision", True]:
                outcome = "approved"
            case ["decision", _]:
                outcome = "rejected"
            case _:
                outcome = "expired"
    except TerminalError as e:
        # POST .../reject completes the awakeable with a failure; treat it as a rejection with a reason.
        outcome, reason = "rejected", e.message

    log.info("approval %s: %s", key, outcome)
    ctx.set("status", outcome)
    result = {"key": key, "title": title, "decision": outcome}
    if reason:
        result["reason"] = reason
    return result


@approval.handler()
async def status(ctx: durably.WorkflowSharedContext) -> str:
    """Where the approval stands; shared, so it answers while `run` is waiting."""
    return await ctx.get("status", type_hint=str) or "not started"


app = durably.app(services=[approval])
