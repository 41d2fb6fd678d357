"""An invocation's journal as a timeline: each command with its completion folded in (result, duration).

A command that waits for something (a run, a sleep, a call, a state read, a promise) gets its result from
the notification with its completion id; the time between the two appends is its duration. Notifications
that answer no command (cancellation, awakeables) are rows of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from durably.protocol import messages as m
from durably.server.http.shapes import journal_entry_json, readable


@dataclass
class Step:
    """One row of the timeline."""

    index: int
    type: str
    name: str
    at_ms: int
    detail: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    failure: dict[str, Any] | None = None
    done_ms: int | None = None
    callee: str | None = None
    completed: bool = False

    @property
    def duration_ms(self) -> int | None:
        """How long it took from the command to its result (None if it has none yet)."""
        return None if self.done_ms is None else self.done_ms - self.at_ms


_DETAIL_KEYS = ("target", "parameter", "key", "promise", "wake_up_time", "awakeable_id", "signal")


def timeline(rows: list[tuple[int, int, bytes, int]]) -> list[Step]:
    """The steps of a journal given as (index, type id, encoded entry, appended at ms)."""
    steps: list[Step] = []
    by_completion: dict[int, Step] = {}
    by_id_note: dict[int, Step] = {}
    for idx, type_id, raw, appended in rows:
        entry = journal_entry_json(idx, type_id, raw, appended)
        if m.is_notification(type_id):
            cid = entry.get("completion_id")
            if type_id == m.CALL_INVOCATION_ID_COMPLETION and cid in by_id_note:
                by_id_note[cid].callee = entry.get("invocation_id") or None
                continue
            owner = by_completion.pop(cid, None) if cid is not None else None
            if owner is not None:
                owner.done_ms = appended
                owner.completed = True
                owner.failure = entry.get("failure")
                owner.result = entry.get("value", entry.get("keys"))
                continue
            signal = entry.get("signal")
            name = "cancel" if signal == 1 else (f"signal {signal}" if signal is not None else "")
            steps.append(Step(idx, entry["type"], name, appended, result=entry.get("value"),
                              failure=entry.get("failure"), completed=True))
            continue
        step = Step(idx, entry["type"], entry.get("name", ""), appended,
                    detail={k: entry[k] for k in _DETAIL_KEYS if k in entry})
        if type_id in (m.INPUT, m.SET_STATE):
            step.result = entry.get("value")
            step.completed = True
        elif type_id == m.OUTPUT:
            step.result, step.failure, step.completed = entry.get("value"), entry.get("failure"), True
        msg: Any = m.decode(type_id, raw)
        cid = getattr(msg, "result_completion_id", None)
        if cid is not None and type_id not in (m.INPUT, m.OUTPUT):
            by_completion[cid] = step
        id_note = getattr(msg, "invocation_id_notification_idx", None)
        if id_note is not None:
            by_id_note[id_note] = step
            if type_id == m.ONE_WAY_CALL:
                step.completed = True  # a send waits for nothing
        if type_id in (m.GET_EAGER_STATE, m.GET_EAGER_STATE_KEYS, m.CLEAR_STATE, m.CLEAR_ALL_STATE,
                       m.COMPLETE_AWAKEABLE, m.SEND_SIGNAL):
            step.completed = True
            if type_id == m.GET_EAGER_STATE:
                step.result = _eager_value(msg)
        steps.append(step)
    return steps


def _eager_value(msg: Any) -> Any:
    return readable(msg.value.content) if msg.WhichOneof("result") == "value" else None
