"""Journal-friendly forms of the OpenAI Agents SDK's types."""

from __future__ import annotations

from typing import Any

from agents import AgentsException, Usage
from agents.items import TResponseInputItem, TResponseOutputItem
from pydantic import BaseModel

from durably.ext.turnstile import Turnstile
from durably.sdk.errors import TerminalError


class State:
    """What one `DurableRunner.run` shares between its model wrapper and its tools."""

    __slots__ = ("turnstile",)

    def __init__(self) -> None:
        self.turnstile = Turnstile([])


class RestateModelResponse(BaseModel):
    """A model response as a pydantic model, so it can be journaled (the SDK's own is a dataclass)."""

    output: list[TResponseOutputItem]
    usage: Usage
    response_id: str | None = None

    def to_input_items(self) -> list[TResponseInputItem]:
        """The output as input items for the next model call."""
        return [item.model_dump(exclude_unset=True) for item in self.output]  # type: ignore[misc]


class AgentsTerminalException(AgentsException, TerminalError):
    """A TerminalError that the Agents SDK also treats as its own error (raised out of a tool)."""

    def __init__(self, *args: Any) -> None:
        message = str(args[0]) if args else "terminal error"
        AgentsException.__init__(self, message)
        TerminalError.__init__(self, message)
