"""An invocation's journal as a timeline: each command with its completion folded in (result, duration).

A command that waits for something (a run, a sleep, a call, a state read, a promise) gets its result from
the notification with its completion id; the time between the two appends is its duration. Notifications
that answer no command (cancellation, awakeables) are rows of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from durably.protocol import messages as m
from durably.server.http.journal_page import decode_prefix
from durably.server.http.shapes import journal_entry_json, readable
from durably.server.process.limits import JOURNAL_VALUE_PREVIEW
from durably.server.store.base import Store
from durably.server.store.ops import AttemptRecord


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
    # A completion whose command was not read (it is in the part of a huge journal that was skipped).
    orphan: bool = False
    # (index, stored size) of the entry whose value was read only in part: the page links to it whole.
    cut: tuple[int, int] | None = None

    @property
    def duration_ms(self) -> int | None:
        """How long it took from the command to its result (None if it has none yet)."""
        return None if self.done_ms is None else self.done_ms - self.at_ms


_DETAIL_KEYS = ("target", "parameter", "key", "promise", "wake_up_time", "awakeable_id", "signal")


def timeline(rows: Sequence[tuple[Any, ...]]) -> list[Step]:
    """The steps of a journal given as (index, type id, encoded entry, appended at ms[, stored size]); an
    entry shorter than its stored size was read only in part and is decoded from what was read."""
    steps: list[Step] = []
    by_completion: dict[int, Step] = {}
    by_id_note: dict[int, Step] = {}
    for row in rows:
        idx, type_id, raw, appended = row[:4]
        raw = bytes(raw)
        cut = len(row) > 4 and len(raw) < row[4]
        msg: Any = decode_prefix(type_id, raw) if cut else m.decode(type_id, raw)
        if msg is None:
            continue  # a custom entry read in part: nothing to show of it
        entry = journal_entry_json(idx, type_id, raw, appended, msg)
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
                if cut:
                    owner.cut = (idx, row[4])
                continue
            signal = entry.get("signal")
            name = "cancel" if signal == 1 else (f"signal {signal}" if signal is not None else "")
            steps.append(Step(idx, entry["type"], name, appended, result=entry.get("value"),
                              failure=entry.get("failure"), completed=True, orphan=cid is not None,
                              cut=(idx, row[4]) if cut else None))
            continue
        step = Step(idx, entry["type"], entry.get("name", ""), appended,
                    detail={k: entry[k] for k in _DETAIL_KEYS if k in entry}, cut=(idx, row[4]) if cut else None)
        if type_id in (m.INPUT, m.SET_STATE):
            step.result = entry.get("value")
            step.completed = True
        elif type_id == m.OUTPUT:
            step.result, step.failure, step.completed = entry.get("value"), entry.get("failure"), True
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


@dataclass
class JournalView:
    """What the invocation page shows of a journal: the steps of its first and last entries (all of a small
    journal), and what is known of the rest without reading it (types and times of every entry)."""

    steps: list[Step]
    # (index, type id, stored size, appended at ms) of every entry: the timeline aggregates what it skips.
    sizes: list[tuple[int, int, int, int]]
    attempts: list[AttemptRecord]
    # Entries whose steps are not in `steps` (the middle of a huge journal), as a range of indexes.
    skipped: tuple[int, int] | None = None

    @property
    def total_steps(self) -> int:
        """Steps of the whole journal: commands, and notifications that answer none (signals)."""
        return sum(1 for _, t, _, _ in self.sizes if not m.is_notification(t) or t == m.SIGNAL_NOTIFICATION)


def journal_view(store: Store, inv_id: str, window: int, cap: int = JOURNAL_VALUE_PREVIEW) -> JournalView:
    """Read what the page shows: every entry's type, size and time (no entry itself), and the entries of the
    first and last `window` entries, each cut to `cap` bytes. Blocking: call it on a worker thread."""
    sizes = store.journal_sizes(inv_id)
    attempts = store.attempt_history(inv_id)
    if not sizes:
        return JournalView([], sizes, attempts)
    first, last = sizes[0][0], sizes[-1][0]
    if len(sizes) <= 2 * window:
        return JournalView(timeline(store.journal_previews(inv_id, first, last, cap)), sizes, attempts)
    head_end, tail_start = sizes[window - 1][0], sizes[-window][0]
    rows = store.journal_previews(inv_id, first, head_end, cap) + store.journal_previews(inv_id, tail_start, last,
                                                                                          cap)
    steps = [s for s in timeline(rows) if not (s.orphan and s.index >= tail_start)]
    return JournalView(steps, sizes, attempts, (head_end + 1, tail_start - 1))
