"""The invocation page's timeline: a server-rendered SVG of the journal and the attempt history.

One row per step that takes time (run, sleep, call, attach, awaited promise or signal/awakeable), each a bar
from its command to its completion, with a `<title>` saying its name, duration and result or error. Behind
the rows, one band per attempt; between attempts, what the invocation was doing: backing off after a
failure, suspended, or nothing because the server was down (an attempt that never ended, followed by one
after a restart). At most `MAX_BARS` bars are drawn: the rest are counted in one aggregated row that says so.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from durably.protocol import messages as m
from durably.server.http.ui.html import Markup, duration, e, when
from durably.server.http.ui.timeline import JournalView, Step

MAX_BARS = 150
# Attempts drawn as bands (the first and last half); a workflow that suspended 10,000 times has as many.
MAX_BANDS = 100
# Step types drawn as bars: the ones that wait for something.
BAR_TYPES = frozenset({"run", "sleep", "call", "attach invocation", "get invocation output", "get promise",
                       "peek promise", "signal", "get state", "get state keys"})
_BAR_TYPE_IDS = frozenset({m.RUN, m.SLEEP, m.CALL, m.ATTACH_INVOCATION, m.GET_INVOCATION_OUTPUT, m.GET_PROMISE,
                           m.PEEK_PROMISE, m.SIGNAL_NOTIFICATION, m.GET_LAZY_STATE, m.GET_LAZY_STATE_KEYS})
LABEL_W = 220
PLOT_W = 880
RIGHT_W = 70
ROW_H = 18
HEAD_H = 40
_COLORS = {"run": "#4c78d8", "sleep": "#9aa6bb", "call": "#2e9d74", "signal": "#a05fd0", "get promise": "#a05fd0",
           "peek promise": "#a05fd0", "attach invocation": "#2e9d74", "get invocation output": "#2e9d74"}


@dataclass
class Gap:
    """A stretch between attempts: backoff, suspended, or server down."""

    kind: str
    start: int
    end: int
    label: str


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "…"


def _bar_title(step: Step) -> str:
    parts = [f"{step.type} {step.name}".strip()]
    if step.duration_ms is not None:
        parts.append(f"took {duration(step.duration_ms)}")
    else:
        parts.append("not completed")
    if step.failure is not None:
        parts.append(f"failure {step.failure.get('code')}: {_short(step.failure.get('message', ''))}")
    elif step.result is not None:
        parts.append(f"result: {_short(step.result)}")
    return " · ".join(parts)


def gaps(view: JournalView, status: str, next_retry_at: int | None,
         end_ms: int) -> tuple[list[tuple[int, int, str, str]], list[Gap]]:
    """The attempts as (start, end, label, hover text) and the gaps between and after them."""
    attempts = view.attempts
    appended = [at for _, _, _, at in view.sizes]
    bands: list[tuple[int, int, str, str]] = []
    out: list[Gap] = []
    for i, a in enumerate(attempts):
        nxt = attempts[i + 1].started_at if i + 1 < len(attempts) else None
        label = f"attempt {a.attempt}"
        if a.ended_at is not None:
            end = a.ended_at
            what = a.outcome or "ended"
        elif nxt is None and status != "completed":
            end, what = end_ms, "running"
        else:
            # It never ended: the server stopped under it. Its last sign of life is its last journal entry.
            j = bisect.bisect_left(appended, nxt if nxt is not None else end_ms) - 1
            end = max(a.started_at, appended[j]) if j >= 0 and appended[j] >= a.started_at else a.started_at
            what = "cut off: the server stopped"
            out.append(Gap("down", end, nxt if nxt is not None else end_ms,
                           f"server down ({duration((nxt or end_ms) - end)}): attempt {a.attempt} never ended"))
        hover = f"{label}: {when(a.started_at)} to {when(end)} ({duration(end - a.started_at)}), {what}"
        if a.error:
            try:
                err = json.loads(a.error)
                hover += f"; error {err.get('code')}: {_short(err.get('message', ''))}"
            except ValueError:
                pass
        bands.append((a.started_at, end, label, hover))
        if a.outcome == "failed" and (nxt is not None or status == "backing-off"):
            until = nxt if nxt is not None else (next_retry_at or end_ms)
            out.append(Gap("backoff", end, until, f"backoff {duration(until - end)} after attempt {a.attempt}"))
        elif a.outcome == "suspended":
            until = nxt if nxt is not None else end_ms
            out.append(Gap("suspended", end, until, f"suspended {duration(until - end)}"))
    return bands, out


def _aggregate(view: JournalView, hidden: list[Step]) -> tuple[int, Counter[str], int, int] | None:
    """Steps not drawn: how many, of which types, from when to when."""
    kinds: Counter[str] = Counter(s.type for s in hidden)
    times = [s.at_ms for s in hidden] + [s.done_ms for s in hidden if s.done_ms is not None]
    if view.skipped is not None:
        lo, hi = view.skipped
        for idx, type_id, _, at in view.sizes[lo - view.sizes[0][0]:hi - view.sizes[0][0] + 1]:
            if idx < lo or idx > hi:
                continue
            times.append(at)
            if type_id in _BAR_TYPE_IDS:
                kinds[m.type_name(type_id)] += 1
    count = sum(kinds.values())
    if not count:
        return None
    return count, kinds, min(times), max(times)


def timeline_svg(view: JournalView, created_ms: int, end_ms: int, status: str,
                 next_retry_at: int | None) -> Markup:
    """The SVG, sized to its rows; an invocation with nothing to draw gets a note instead."""
    bars = [s for s in view.steps if s.type in BAR_TYPES]
    if len(bars) > MAX_BARS:
        drawn, hidden = bars[:MAX_BARS // 2] + bars[-MAX_BARS // 2:], bars[MAX_BARS // 2:-MAX_BARS // 2]
    else:
        drawn, hidden = bars, []
    agg = _aggregate(view, hidden)
    bands, gap_list = gaps(view, status, next_retry_at, end_ms)
    hidden_bands = 0
    if len(bands) > MAX_BANDS:
        hidden_bands = len(bands) - MAX_BANDS
        head_end, tail_start = bands[MAX_BANDS // 2 - 1][1], bands[-MAX_BANDS // 2][0]
        bands = bands[:MAX_BANDS // 2] + bands[-MAX_BANDS // 2:]
        gap_list = [g for g in gap_list if (g.end <= tail_start and g.start <= head_end) or g.start >= tail_start]
    if not drawn and not bands:
        return Markup('<p class="muted" id="timeline">nothing to draw yet</p>')
    times = [created_ms, end_ms] + [b[0] for b in bands] + [b[1] for b in bands] + [g.end for g in gap_list]
    times += [s.at_ms for s in drawn] + [s.done_ms for s in drawn if s.done_ms is not None]
    t0, t1 = min(times), max(times)
    span = max(1, t1 - t0)

    def x(t: int) -> float:
        return LABEL_W + (t - t0) * PLOT_W / span

    rows = len(drawn) + (1 if agg else 0)
    plot_bottom = HEAD_H + max(rows, 1) * ROW_H + 4
    lanes = sorted({g.kind for g in gap_list})
    # Below the rows: one lane of labels per kind of gap, then the time axis.
    height = plot_bottom + 14 * len(lanes) + 22
    out = [f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{LABEL_W + PLOT_W + RIGHT_W}" '
           f'height="{height}" role="img" aria-label="timeline of the invocation" font-size="11" '
           'font-family="system-ui,sans-serif">',
           '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="3" height="6" fill="#e06c6c" opacity="0.45"/></pattern>'
           '</defs>']
    for i, (start, end, label, hover) in enumerate(bands):
        fill = "#eef2fb" if i % 2 == 0 else "#e3e9f7"
        out.append(f'<g class="attempt" data-attempt="{i + 1}"><title>{e(hover)}</title>'
                   f'<rect x="{x(start):.1f}" y="14" width="{max(1.5, x(end) - x(start)):.1f}" '
                   f'height="{plot_bottom - 14}" fill="{fill}" stroke="#b9c4dd"/>'
                   f'<text x="{x(start) + 2:.1f}" y="11" fill="#3a4a6b">{e(label)}</text></g>')
    styles = {"backoff": ('fill="#ffd591" opacity="0.55"', "#8a5a00"),
              "suspended": ('fill="#e4d4f7" opacity="0.7"', "#5b33a8"),
              "down": ('fill="url(#hatch)" stroke="#c0392b"', "#a12622")}
    for g in gap_list:
        fill, ink = styles[g.kind]
        w = max(1.5, x(g.end) - x(g.start))
        lane_y = plot_bottom + 12 + 14 * lanes.index(g.kind)
        out.append(f'<g class="gap gap-{g.kind}"><title>{e(g.label)}</title>'
                   f'<rect x="{x(g.start):.1f}" y="16" width="{w:.1f}" height="{plot_bottom - 16}" {fill}/>'
                   f'<text x="{x(g.start) + 2:.1f}" y="{lane_y}" fill="{ink}">{e(g.label)}</text></g>')
    for a in view.attempts:
        if a.outcome == "failed" and a.ended_at is not None:
            # Where an attempt failed: a red tick, its error on hover.
            out.append(f'<g class="failed-attempt"><title>{e(_attempt_error(a.attempt, a.error))}</title>'
                       f'<rect x="{x(a.ended_at) - 1:.1f}" y="14" width="3" height="{plot_bottom - 14}" '
                       'fill="#d9534f"/></g>')
    axis_y = height - 8
    out.append(f'<g class="axis"><line x1="{LABEL_W}" x2="{LABEL_W + PLOT_W}" y1="{axis_y - 10}" '
               f'y2="{axis_y - 10}" stroke="#8a93a5"/>')
    for k in range(5):
        t = t0 + span * k // 4
        anchor = "start" if k == 0 else "end" if k == 4 else "middle"
        out.append(f'<text x="{x(t):.1f}" y="{axis_y}" fill="#4a5468" text-anchor="{anchor}">'
                   f'+{e(duration(t - created_ms))}</text>')
    out.append("</g>")
    downs = [g for g in gap_list if g.kind == "down"]
    prev_of = {id(s): view.steps[i - 1] for i, s in enumerate(view.steps) if s.type == "signal" and i}
    y = HEAD_H
    for n, step in enumerate(drawn):
        if agg and n == len(drawn) - len(bars[-MAX_BARS // 2:]) and hidden:
            y = _aggregate_row(out, agg, x, y)
        end = step.done_ms if step.done_ms is not None else end_ms
        start = step.at_ms
        if step.type == "signal" and step.done_ms is None:
            # An awakeable or signal is journaled when it arrives; it was awaited since the step before it.
            prev = prev_of.get(id(step))
            start = (prev.done_ms or prev.at_ms) if prev is not None else created_ms
            end = step.at_ms
        color = "#d9534f" if step.failure is not None else _COLORS.get(step.type, "#6c7a96")
        open_end = "" if step.done_ms is not None or step.type == "signal" else ' stroke-dasharray="3 2"'
        name = f"{step.type} {step.name}".strip()
        title = _bar_title(step)
        down_ms = sum(max(0, min(end, g.end) - max(start, g.start)) for g in downs)
        if down_ms:
            title += f" (of which {duration(down_ms)} the server was down)"
        out.append(f'<g class="bar" data-type="{e(step.type)}" data-index="{step.index}"><title>{e(title)}'
                   f'</title><text x="4" y="{y + 12}" fill="#1d2433">{e(_short(name, 34))}</text>'
                   f'<rect x="{x(start):.1f}" y="{y + 3}" width="{max(2.0, x(end) - x(start)):.1f}" '
                   f'height="{ROW_H - 6}" rx="2" fill="{color}"{open_end} stroke="{color}"/></g>')
        y += ROW_H
    if agg and not hidden:
        _aggregate_row(out, agg, x, y)
    if hidden_bands:
        out.append(f'<text class="bands-note" x="{LABEL_W + PLOT_W}" y="11" text-anchor="end" fill="#4a5468">'
                   f'{hidden_bands} more attempts not drawn</text>')
    out.append("</svg>")
    return Markup("".join(out))


def _attempt_error(n: int, error: str | None) -> str:
    try:
        err = json.loads(error or "{}")
    except ValueError:
        err = {}
    return f"attempt {n} failed: {err.get('code')} {_short(err.get('message', ''))}"


def _aggregate_row(out: list[str], agg: tuple[int, Counter[str], int, int], x: Any, y: int) -> int:
    count, kinds, lo, hi = agg
    what = ", ".join(f"{k} x{n}" for k, n in kinds.most_common(4))
    text = f"{count} more steps not drawn ({what})"
    out.append(f'<g class="aggregate"><title>{e(text)} between {e(when(lo))} and {e(when(hi))}</title>'
               f'<text x="4" y="{y + 12}" fill="#4a5468" font-style="italic">{e(f"… {count} more steps")}</text>'
               f'<rect x="{x(lo):.1f}" y="{y + 4}" width="{max(2.0, x(hi) - x(lo)):.1f}" height="{ROW_H - 8}" '
               f'fill="#c5ccd8"/></g>')
    return y + ROW_H
