"""The turnstile of the current `RestateAgent.run`, shared by its model wrapper and its tools."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from durably.ext.turnstile import Turnstile


class State:
    """Per-run state: the turns of the tool calls of the latest model response."""

    __slots__ = ("turnstile",)

    def __init__(self) -> None:
        self.turnstile = Turnstile([])


_state: ContextVar[State | None] = ContextVar("durably_pydantic_agent_state", default=None)


def current_state() -> State:
    """The state of the run in progress (a throwaway one outside a run)."""
    state = _state.get()
    return state if state is not None else State()


@contextmanager
def state_context() -> Iterator[State]:
    """A fresh state for one run; tool tasks started inside inherit it."""
    state = State()
    token = _state.set(state)
    try:
        yield state
    finally:
        _state.reset(token)
