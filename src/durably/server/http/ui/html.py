"""The UI's HTML building blocks: escaping, the page layout and its stylesheet.

Pages are rendered on the server with f-strings: every value from the store or a request goes through
`e()` (html.escape, quotes included) before it is put into markup; `Markup` marks strings already built
that way, so nothing is escaped twice.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode


class Markup(str):
    """HTML that is already safe to embed."""

    __slots__ = ()


def e(value: Any) -> Markup:
    """Escape any value for HTML text or a quoted attribute (Markup passes through)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def url(path: str, **params: Any) -> str:
    """A /ui URL with the non-empty query parameters."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"/ui{path}" + (f"?{query}" if query else "")


def when(ms: int | None) -> str:
    """A time for people (UTC, ms)."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def duration(ms: float) -> str:
    """A duration for people."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    if ms < 7_200_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


def payload(value: Any) -> Markup:
    """A JSON-ish value in a <pre>, clipped so one huge payload cannot make the page heavy."""
    if value is None:
        return Markup('<span class="muted">none</span>')
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    if len(text) > 4000:
        text = text[:4000] + f"\n... ({len(text) - 4000} more characters)"
    return Markup(f"<pre>{e(text)}</pre>")


def status_badge(status: str) -> Markup:
    """The invocation status as a coloured label."""
    return Markup(f'<span class="status status-{e(status)}">{e(status)}</span>')


def confirm_button(action: str, label: str, question: str, css: str = "") -> Markup:
    """A POST form with one button that asks before it submits."""
    return Markup(f'<form method="post" action="{e(action)}" class="inline" '
                  f'onsubmit="return confirm({e(json.dumps(question))})">'
                  f'<button type="submit" class="{e(css)}" data-action="{e(label.lower())}">{e(label)}</button></form>')


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{background:#1d2433;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:center}
header a{color:#cfd6e4;text-decoration:none;font-weight:500} header a.here{color:#fff;border-bottom:2px solid #7aa2ff}
header .brand{font-weight:700;color:#fff;margin-right:12px}
main{padding:16px 20px;max-width:1400px}
h1{font-size:20px;margin:4px 0 12px} h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e8}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eceff3;vertical-align:top}
th{background:#eef1f5;font-weight:600;font-size:12px;text-transform:uppercase;color:#4a5468}
td.mono,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
pre{margin:0;white-space:pre-wrap;word-break:break-word;font-size:12.5px;max-height:240px;overflow:auto}
a{color:#2f5bd3}
.muted{color:#8a93a5}
.status{padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;background:#e4e8ef}
.status-completed{background:#dff3e4;color:#1c6b34}.status-failed{background:#fde2e1;color:#a12622}
.status-invoked{background:#dfe9ff;color:#2448a8}.status-suspended{background:#efe5ff;color:#5b33a8}
.status-backing-off{background:#fff0d6;color:#8a5a00}.status-paused{background:#ffe7cc;color:#96480b}
.status-inboxed,.status-scheduled{background:#e8edf3;color:#3f4a5c}
form.filters{display:flex;flex-wrap:wrap;gap:8px;align-items:end;margin-bottom:12px;background:#fff;padding:10px;
border:1px solid #dde1e8}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#4a5468;gap:2px}
input,select,textarea{font:inherit;padding:4px 6px;border:1px solid #c5ccd8;border-radius:4px}
textarea{font-family:ui-monospace,Menlo,monospace;font-size:13px;width:100%;min-height:240px;box-sizing:border-box}
button{font:inherit;padding:4px 12px;border-radius:4px;border:1px solid #9aa6bb;background:#fff;cursor:pointer}
button.danger{border-color:#d9534f;color:#a12622} button.primary{background:#2f5bd3;color:#fff;border-color:#2f5bd3}
form.inline{display:inline}
.actions{display:flex;gap:6px;margin:8px 0 14px}
.grid{display:grid;grid-template-columns:160px 1fr;gap:4px 12px;background:#fff;border:1px solid #dde1e8;padding:10px}
.grid div:nth-child(odd){color:#4a5468}
.flash{background:#e8f5ea;border:1px solid #b6dfbf;padding:6px 10px;margin-bottom:10px}
.error{background:#fdecea;border:1px solid #f3b8b4;padding:6px 10px;margin-bottom:10px}
.pager{margin:10px 0;display:flex;gap:16px}
.timeline td.idx{width:30px;color:#8a93a5}
.failure{color:#a12622}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:12px}
.card{background:#fff;border:1px solid #dde1e8;padding:8px 10px} .card h2{margin:0 0 6px;font-size:14px}
.legend-row{display:flex;flex-wrap:wrap;gap:10px;font-size:12px}
.legend span{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.tl{overflow-x:auto;background:#fff;border:1px solid #dde1e8;padding:6px}
"""


def layout(title: str, here: str, body: Markup, script: str = "") -> bytes:
    """A whole page: header with navigation, the body, an optional script."""
    nav = "".join(f'<a href="/ui/{p}" class="{"here" if p == here else ""}">{label}</a>'
                  for p, label in (("overview", "Overview"), ("invocations", "Invocations"), ("services", "Services"),
                                   ("state", "State")))
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(title)} · durably</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f'<body><header><span class="brand">durably</span>{nav}</header><main>{body}</main>'
            f'{f"<script>{script}</script>" if script else ""}</body></html>')
    return page.encode()
