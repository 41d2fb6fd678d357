"""One log line per invocation lifecycle event, at info, with the invocation id.

    started      the first attempt begins
    suspended    the attempt ended waiting for completions or signals
    retrying     an attempt failed: the error, and when the next attempt runs
    paused       retries are exhausted (or an operator paused it)
    completed    with an output, and how long it took since it was created
    failed       with a failure (code and message), and how long it took

Each record carries `event`, `invocation_id`, `service`, `handler` (and `duration_ms`, `error`) as extra
fields, which `--log-format json` writes as keys. A poison invocation failing the same way over and over
logs that error once per minute at most, with how often it was repeated in between.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from durably.server.engine.invocation import Invocation, Outcome

log = logging.getLogger("durably.invocations")
_SOURCE = __file__

RETRY_LOG_INTERVAL_S = 60.0
# Remembered (invocation, error) pairs; the oldest are forgotten beyond this (memory stays bounded).
_MAX_TRACKED = 10_000


class LifecycleLog:
    """Writes the lifecycle lines of one engine."""

    def __init__(self, clock: object = time.monotonic, interval_s: float = RETRY_LOG_INTERVAL_S) -> None:
        self._now = clock
        self.interval_s = interval_s
        # invocation id -> (code, message, last logged at, repeats suppressed since), least recent first
        self._retries: OrderedDict[str, tuple[int, str, float, int]] = OrderedDict()

    @staticmethod
    def _extra(inv: Invocation, event: str, **more: object) -> dict[str, object]:
        return {"event": event, "invocation_id": inv.id, "service": inv.service, "handler": inv.handler, **more}

    def started(self, inv: Invocation) -> None:
        """The first attempt of an invocation begins."""
        if log.isEnabledFor(logging.INFO):
            _info("invocation %s started: %s", (inv.id, _target(inv)), self._extra(inv, "started"))

    def suspended(self, inv: Invocation, waiting: int) -> None:
        """The attempt suspended, waiting for `waiting` completions or signals."""
        if log.isEnabledFor(logging.INFO):
            _info("invocation %s suspended, waiting for %d completion(s) or signal(s)", (inv.id, waiting),
                  self._extra(inv, "suspended"))

    def retrying(self, inv: Invocation, code: int, message: str, delay_ms: int, level: int = logging.INFO) -> None:
        """An attempt failed and another is scheduled (rate-limited per invocation and error)."""
        if not log.isEnabledFor(level):
            return
        now = float(self._now())  # type: ignore[operator]
        seen = self._retries.get(inv.id)
        same = seen is not None and seen[0] == code and seen[1] == message
        if same and now - seen[2] < self.interval_s:  # type: ignore[index]
            self._retries[inv.id] = (code, message, seen[2], seen[3] + 1)  # type: ignore[index]
            self._retries.move_to_end(inv.id)
            return
        repeated = seen[3] if same else 0  # type: ignore[index]
        self._retries[inv.id] = (code, message, now, 0)
        self._retries.move_to_end(inv.id)
        while len(self._retries) > _MAX_TRACKED:
            self._retries.popitem(last=False)
        suffix = f" (the same error {repeated} more time(s) since the last line)" if repeated else ""
        log.log(level, "invocation %s attempt %d failed with %d: %s; retrying in %d ms%s", inv.id, inv.attempts, code,
                 message, delay_ms, suffix,
                 extra=self._extra(inv, "retrying", error={"code": code, "message": message}, repeated=repeated))

    def paused(self, inv: Invocation, code: int, message: str) -> None:
        """Retries are exhausted: the invocation waits for an operator."""
        log.warning("invocation %s paused after %d attempts; last error %d: %s (resume it with `durably "
                    "invocations resume %s`)", inv.id, inv.attempts, code, message, inv.id,
                    extra=self._extra(inv, "paused", error={"code": code, "message": message}))

    def ended(self, inv: Invocation, outcome: Outcome, now_ms: int) -> None:
        """The invocation completed (with an output or a failure)."""
        self._forget(inv.id)
        if not log.isEnabledFor(logging.INFO):
            return
        took = now_ms - inv.created_at
        if outcome.failure_code is None:
            _info("invocation %s completed in %d ms", (inv.id, took), self._extra(inv, "completed", duration_ms=took))
        else:
            log.info("invocation %s failed in %d ms with %d: %s", inv.id, took, outcome.failure_code,
                     outcome.failure_message, extra=self._extra(
                         inv, "failed", duration_ms=took,
                         error={"code": outcome.failure_code, "message": outcome.failure_message}))

    def _forget(self, inv_id: str) -> None:
        self._retries.pop(inv_id, None)


# Where lifecycle lines go without a LogRecord made on the event loop (`durably serve`'s log thread, see
# durably.server.observe.log_format): returns False when it cannot take them (logging was changed since).
_sink: Callable[[str, tuple[object, ...], dict[str, object]], bool] | None = None


def use_sink(sink: Callable[[str, tuple[object, ...], dict[str, object]], bool] | None) -> None:
    """Hand lifecycle lines to `sink(msg, args, extra)` first (None: always through `logging`)."""
    global _sink
    _sink = sink


def _info(msg: str, args: tuple[object, ...], extra: dict[str, object]) -> None:
    """`log.info(msg, *args, extra=extra)` without looking up the caller's file and line on the stack (the
    lines of every invocation say where they come from by their logger and `event`); under `durably serve`
    not even the LogRecord is made here. The caller checked the level."""
    sink = _sink
    if sink is not None and sink(msg, args, extra):
        return
    log.handle(log.makeRecord(log.name, logging.INFO, _SOURCE, 0, msg, args, None, None, extra))


def _target(inv: Invocation) -> str:
    return f"{inv.service}/{inv.key + '/' if inv.key else ''}{inv.handler}"
