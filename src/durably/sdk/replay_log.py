"""Logging that stays quiet while a handler replays.

A handler runs again from the top after every suspension, retry or crash; a plain logger would print each
line once per replay. `getLogger` returns a standard logger with a filter that drops records emitted while
the handler is re-running journaled steps, so each line appears once per invocation, as with restate-sdk.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

# The VM of the attempt whose handler runs in this task (set by the attempt driver). A ContextVar, not a
# global: many handlers interleave on one event loop.
CURRENT_VM: contextvars.ContextVar[Any] = contextvars.ContextVar("durably_current_vm", default=None)


def is_replaying() -> bool:
    """Whether the code calling this is a handler re-running steps that are already in its journal."""
    vm = CURRENT_VM.get()
    return vm is not None and bool(vm.replaying)


class ReplayFilter(logging.Filter):
    """Drops log records emitted while the current handler is replaying."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop) during replay, otherwise the usual name-based filtering."""
        if not super().filter(record):
            return False
        return not is_replaying()


def getLogger(name: str | None = None) -> logging.Logger:
    """`logging.getLogger(name)` with a filter that keeps the logger silent while the handler replays."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, ReplayFilter) for f in logger.filters):
        logger.addFilter(ReplayFilter())
    return logger
