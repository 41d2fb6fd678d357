"""How the `durably` commands print what a server answered: JSON, aligned tables, times and failures."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime
from typing import Any

import click


def json_out(data: Any) -> None:
    """Print `data` as indented JSON (the commands' --json)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def compact(value: Any) -> str:
    """A JSON value on one line, without spaces."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def clip(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters with "..." if longer."""
    text = _one_line(text)
    if width < 4 or len(text) <= width:
        return text
    return text[: width - 3] + "..."


def when(ts: str | None, style: str = "full") -> str:
    """An RFC 3339 time from the server in local time: full (with ms), short (list) or time (of day, ms)."""
    if not ts:
        return ""
    try:
        t = datetime.fromisoformat(ts).astimezone()
    except ValueError:
        return ts
    if style == "time":
        return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"
    if style == "short":
        now = datetime.now().astimezone()
        if t.date() == now.date():
            return t.strftime("%H:%M:%S")
        return t.strftime("%b %d %H:%M") if t.year == now.year else t.strftime("%Y-%m-%d")
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def table(headers: list[str], rows: list[list[str]], *, flex: int | None = None, flex_max: int = 80,
          right: frozenset[int] = frozenset(), indent: str = "") -> list[str]:
    """Plain aligned columns; the `flex` column is clipped to `flex_max` and so that lines fit the terminal."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    if flex is not None:
        others = sum(w + 2 for i, w in enumerate(widths) if i != flex) + len(indent)
        room = min(max(shutil.get_terminal_size((120, 24)).columns - others, 20), flex_max)
        widths[flex] = max(min(widths[flex], room), len(headers[flex]))
        rows = [[clip(c, room) if i == flex else c for i, c in enumerate(r)] for r in rows]

    def line(cells: list[str]) -> str:
        out = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)]
        return (indent + "  ".join(out)).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def failure_text(code: Any, message: Any) -> str:
    """A failure as "CODE message" (or just the code)."""
    return f"{code} {message}" if message else str(code)


def handler_text(h: dict[str, Any]) -> str:
    """A handler of the admin API's service JSON: its name, with its type and "private" if it is."""
    notes = [h["ty"].lower()] if h.get("ty") else []
    if h.get("public") is False:
        notes.append("private")
    return f"{h['name']} ({', '.join(notes)})" if notes else h["name"]
