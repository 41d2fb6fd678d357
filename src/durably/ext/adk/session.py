"""ADK sessions stored in the virtual object's state (`session_store::<id>`)."""

from __future__ import annotations

from typing import Any, cast

from google.adk.events.event import Event
from google.adk.sessions import Session
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig, ListSessionsResponse
from google.adk.sessions.state import State

from durably.sdk.context import ObjectContext
from durably.sdk.current import current_context
from durably.sdk.errors import TerminalError
from durably.sdk.options import RunOptions

_PREFIX = "session_store::"


class RestateSessionService(BaseSessionService):
    """Sessions in virtual-object state: they survive restarts, and the object's single writer serialises
    concurrent messages to one session. Use it from VirtualObject handlers."""

    def ctx(self) -> ObjectContext:
        """The running handler's context."""
        ctx = current_context()
        if ctx is None:
            raise RuntimeError("RestateSessionService needs a running virtual-object handler.")
        return cast(ObjectContext, ctx)

    async def _load(self, session_id: str) -> Session | None:
        return await self.ctx().get(_PREFIX + session_id, type_hint=Session)

    async def create_session(self, *, app_name: str, user_id: str, state: dict[str, Any] | None = None,
                             session_id: str | None = None) -> Session:
        """A new session (its id from the deterministic uuid unless given)."""
        if session_id is None:
            session_id = str(self.ctx().uuid())
        if await self._load(session_id) is not None:
            raise TerminalError("Session with the given ID already exists.")
        session = Session(app_name=app_name, user_id=user_id, id=session_id, state=state or {})
        await self.flush_session_state(session)
        return session

    async def has_session(self, *, session_id: str) -> bool:
        """Whether the session exists."""
        return await self._load(session_id) is not None

    async def get_session(self, *, app_name: str, user_id: str, session_id: str,
                          config: GetSessionConfig | None = None) -> Session | None:
        """The stored session, or a new empty one under that id."""
        return await self._load(session_id) or Session(app_name=app_name, user_id=user_id, id=session_id)

    async def list_sessions(self, *, app_name: str, user_id: str | None = None) -> ListSessionsResponse:
        """Every session stored on this object."""
        sessions = []
        for key in await self.ctx().state_keys():
            if key.startswith(_PREFIX):
                session = await self.ctx().get(key, type_hint=Session)
                if session is not None:
                    sessions.append(session)
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Forget the session."""
        self.ctx().clear(_PREFIX + session_id)

    async def append_event(self, session: Session, event: Event) -> Event:
        """Add an event to the session in memory; the plugin writes the session at the end of the run."""
        if event.partial:
            return event
        event = self._trim_temp_delta_state(event)
        self._update_session_state(session, event)
        session.events.append(event)
        if event.actions and event.actions.compaction:
            # Compaction happens after the end-of-run flush, so it is written here.
            await self.flush_session_state(session)
        return event

    async def flush_session_state(self, session: Session) -> None:
        """Write the session to the object's state (without temporary keys)."""
        stored = session.model_copy()
        stored.state = {k: v for k, v in session.state.items()
                        if not k.startswith(State.TEMP_PREFIX) and k != "restate_context"}
        # Journal the session as written: timestamps and generated ids in it are then the same on replay.
        snapshot = await self.ctx().run_typed("store session", lambda: stored, RunOptions(type_hint=Session))
        self.ctx().set(_PREFIX + session.id, snapshot)
