"""A conversation kept in the virtual object's state, under the key `items`."""

from __future__ import annotations

from typing import cast

from agents.items import TResponseInputItem
from agents.memory.session import SessionABC

from durably.sdk.context import ObjectContext
from durably.sdk.current import current_context

STATE_KEY = "items"


class RestateSession(SessionABC):
    """Session memory in virtual-object state: it survives restarts, and the object's single writer
    serialises concurrent messages to one conversation. Items are read once and written back by `flush`
    at the end of the run (one state write per run, not one per item)."""

    session_id = "durably"
    session_settings = None

    def __init__(self) -> None:
        self._items: list[TResponseInputItem] | None = None

    def _ctx(self) -> ObjectContext:
        ctx = current_context()
        if ctx is None:
            raise RuntimeError("RestateSession needs a running virtual-object handler.")
        return cast(ObjectContext, ctx)

    async def _load(self) -> list[TResponseInputItem]:
        if self._items is None:
            self._items = await self._ctx().get(STATE_KEY) or []
        return self._items

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The conversation so far (the last `limit` items if given)."""
        items = await self._load()
        return items[-limit:] if limit is not None else list(items)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items; they reach the state at `flush`."""
        (await self._load()).extend(items)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item."""
        items = await self._load()
        return items.pop() if items else None

    def flush(self) -> None:
        """Write the items to the object's state."""
        if self._items is not None:
            self._ctx().set(STATE_KEY, self._items)

    async def clear_session(self) -> None:
        """Forget the conversation."""
        self._items = []
        self._ctx().clear(STATE_KEY)
