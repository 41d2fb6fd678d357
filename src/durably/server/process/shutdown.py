"""Graceful stop: on SIGTERM/SIGINT let running steps finish and suspend everything else, then exit.

A step that was running when the signal came finishes and its result is journaled, so it does not run
again after the restart; handlers waiting on timers, awakeables or calls suspend (they hold no memory and
resume after the restart). New requests, and callers still waiting once the drain is over, get 503 "the
server is stopping" (Restate's clients retry with their idempotency key). A second signal, or the grace
period running out, stops at once: attempts are aborted and what they were running runs again after the
restart, which is at-least-once as always; nothing committed is lost either way.

Draining for a move (`durably serve --drain`) is the other way a server winds down: it stops taking new
invocations from outside while the ones in its store finish. Used to move to a Restate cluster
(docs/scaling.md): start `durably serve --drain` on the old data directory, point callers at the cluster, and
stop the old server once `durably invocations list` shows nothing unfinished. Calls and sends made by running
handlers still go through (they belong to the work being finished), and so do attach, output and awakeable
requests; only `POST /{Service}/...` from outside is refused, with 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from durably.sdk.asgi import Receive, Send, error

if TYPE_CHECKING:  # the configuration reads DEFAULT_GRACE_S without loading the engine
    from durably.server.engine.engine import Engine

log = logging.getLogger("durably.server")

DEFAULT_GRACE_S = 30.0


@dataclass
class DrainReport:
    """What a graceful stop did."""

    attempts: int  # running when the stop began
    left_running: int  # still running when the drain ended (aborted: forced or out of grace)
    callers: int  # callers waiting at the end, answered 503
    seconds: float
    forced: bool


async def drain(engine: Engine, grace_s: float, force: asyncio.Event) -> DrainReport:
    """Drain the engine: wait until no attempt runs, the grace period ends or `force` is set."""
    start = time.monotonic()
    attempts = engine.begin_drain()
    log.info("stopping: new requests are refused; %d running invocations finish their current step and "
             "suspend (up to %g s, --shutdown-grace; a second signal stops at once)", attempts, grace_s)
    deadline = start + grace_s
    forced = False
    # Polled: attempts end on many paths (suspend, complete, fail) and a poll every 10 ms costs nothing here.
    while engine.running_attempts() and not force.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            forced = True
            break
        try:
            await asyncio.wait_for(force.wait(), min(remaining, 0.01))
        except TimeoutError:
            pass
    forced = forced or force.is_set()
    if engine.tracing is not None:
        # Sending the buffered spans at stop gets what is left of the grace (none after a second signal).
        engine.tracing.close_by = time.monotonic() if force.is_set() else deadline
    left = engine.running_attempts()
    await engine.flushed()
    report = DrainReport(attempts, left, engine.waiting_callers(), time.monotonic() - start, forced)
    if left:
        why = "a second signal" if force.is_set() else f"the grace period of {grace_s:g} s ran out"
        log.warning("stopping at once (%s): %d invocations aborted mid-step; those steps run again after the "
                    "restart", why, left)
    log.info("drained in %.2f s: %d of %d running invocations suspended or finished; %d waiting callers are "
             "told the server is stopping (503)", report.seconds, attempts - left, attempts, report.callers)
    return report


class DrainingIngress:
    """Wraps the ingress of `durably serve --drain`: new invocations get 503, everything under /restate/ passes."""

    def __init__(self, ingress: Any) -> None:
        self.ingress = ingress

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope["path"].startswith("/restate/"):
            await error(send, 503, "this server is draining: it finishes the invocations it has and takes no new "
                                   "ones; send new invocations to its successor")
            return
        await self.ingress(scope, receive, send)
