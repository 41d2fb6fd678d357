"""Detecting code that blocks the event loop, and naming it.

Ingress, admin API, engine and every handler share one event loop. An async handler that calls something
blocking (`time.sleep`, a sync HTTP client, heavy CPU work) freezes all of them. A heartbeat on the loop
and a watcher thread notice when the loop has not run for `threshold` seconds; the watcher then looks at
the loop thread's Python stack, finds the attempt being run (its invocation id, handler and, inside a
`ctx.run`, the step) and the line of user code, and logs them. The rule it points to: blocking work goes
into a sync `ctx.run` closure, which runs on a thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import sysconfig
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the engine owns a monitor of this module
    from durably.server.engine.engine import Engine

log = logging.getLogger("durably.loop")

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # src/durably
_ASYNCIO_DIR = os.path.dirname(asyncio.__file__)
# Code that is not the user's: Durably, the standard library, installed packages, frozen modules.
_NOT_USER = tuple({_PACKAGE_DIR, _ASYNCIO_DIR, *(p for k, p in sysconfig.get_paths().items()
                                                   if k in ("stdlib", "platstdlib", "purelib", "platlib"))})


def _is_user_code(filename: str) -> bool:
    return not (filename.startswith(_NOT_USER) or filename.startswith("<") or "site-packages" in filename
                or "dist-packages" in filename)


def _is_loop_machinery(filename: str) -> bool:
    """A frame of the loop that runs callbacks: everything outside it (the program that started the loop, a
    console script such as `durably`) is not what blocks it."""
    return filename.startswith(_ASYNCIO_DIR) and os.path.basename(filename) in (
        "events.py", "base_events.py", "runners.py")


class LoopStallMonitor:
    """Watches one event loop from a thread; logs and counts stalls over `threshold` seconds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float) -> None:
        self.loop = loop
        self.threshold = threshold
        self.stalls = 0
        self.last: dict[str, Any] | None = None
        self._beat = time.monotonic()
        self._interval = min(0.25, threshold / 4)
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()
        self._stalled_since: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._thread = threading.Thread(target=self._watch, name="durably-loop-watch", daemon=True)

    def start(self) -> None:
        """Start the heartbeat (call on the loop's thread) and the watcher thread."""
        self._loop_thread = threading.get_ident()
        self._heartbeat()
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()

    def _heartbeat(self) -> None:
        now = time.monotonic()
        since = self._stalled_since
        if since is not None:
            self._stalled_since = None
            blocked = now - since + self.threshold
            if self.last is not None:
                self.last["blocked_s"] = round(blocked, 3)
            log.warning("the event loop runs again after being blocked for %.1f s", blocked)
        self._beat = now
        self._handle = self.loop.call_later(self._interval, self._heartbeat)

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            late = time.monotonic() - self._beat - self._interval
            if late < self.threshold or self._stalled_since is not None:
                continue
            self._stalled_since = time.monotonic()
            frame = sys._current_frames().get(self._loop_thread)
            culprit = describe(frame)
            self.stalls += 1
            self.last = {"at": time.time(), "blocked_s": round(late, 3), **culprit}
            log.warning("the event loop has been blocked for more than %g s %s: sync work in an async handler "
                        "stops every other handler, the ingress and the admin API; put it in a sync ctx.run "
                        "closure, which runs on a thread", self.threshold, culprit["text"])

    def status(self) -> dict[str, Any]:
        """Stalls seen so far, for the admin API."""
        return {"threshold_s": self.threshold, "stalls": self.stalls, "last": self.last}


def describe(frame: FrameType | None) -> dict[str, Any]:
    """Who runs in this stack: the invocation and step of the attempt, and the innermost user code line."""
    from durably.sdk.attempt import Attempt

    out: dict[str, Any] = {}
    where = None
    own = None  # the innermost frame of Durably's own code, if no user frame runs inside the loop's callback
    in_callback = True
    f = frame
    while f is not None:
        code = f.f_code
        if in_callback and _is_loop_machinery(code.co_filename):
            in_callback = False  # the frames further out run the loop; they do not block it
        if in_callback and where is None:
            if _is_user_code(code.co_filename):
                where = f"{os.path.basename(code.co_filename)}:{f.f_lineno} in {code.co_name}()"
            elif own is None and code.co_filename.startswith(_PACKAGE_DIR):
                own = f"{os.path.basename(code.co_filename)}:{f.f_lineno} in {code.co_name}()"
        self = f.f_locals.get("self") if code.co_name in ("run", "_run_inline") else None
        if isinstance(self, Attempt):
            if code.co_name == "_run_inline" and "step" not in out:
                run = f.f_locals.get("run")
                if run is not None:
                    out["step"] = run.name
            elif code.co_name == "run":
                out["invocation_id"] = self.vm.start.debug_id
                out["target"] = f"{self.handler.service.name}/{self.handler.name}"
                break
        f = f.f_back
    if where is not None:
        out["code"] = where
    parts = []
    if "invocation_id" in out:
        parts.append(f"by invocation {out['invocation_id']} ({out['target']})")
    if "step" in out:
        parts.append(f"in ctx.run '{out['step']}'")
    if where is not None:
        parts.append(f"at {where}")
    elif own is not None:
        out["code"] = own
        parts.append(f"in Durably's own code at {own}")
    out["text"] = " ".join(parts) or "(not in a handler)"
    return out


def threads_json(engine: Engine) -> dict[str, Any]:
    """`GET /threads` on the admin API: what user code holds up. The step threads (running, stuck in aborted
    steps, refusals at the cap) and this monitor's view of the loop."""
    out: dict[str, Any] = {"run_threads": engine.run_executor.status()}
    monitor = engine.loop_stalls
    out["event_loop"] = monitor.status() if monitor is not None else {"watched": False}
    return out
