"""The UI's landing page: the last hour of the server in small server-rendered SVG charts.

Four charts, one point a minute from the ring of `durably.server.observe.overview`: invocations started,
completed and failed; p50 and p99 latency per service; the backlog (inboxed, backing-off, paused,
suspended); the step-thread and loop-stall warnings. Each chart and each series links to the invocation
list filtered to what it counts.
"""

from __future__ import annotations

from durably.server.http.ui.html import Markup, duration, e, url
from durably.server.observe.overview import BACKLOG, Minute, quantile

W, H, PAD_L, PAD_B, PAD_T = 580, 130, 44, 18, 8
_PALETTE = ("#4c78d8", "#2e9d74", "#d9534f", "#a05fd0", "#e39b2d", "#6c7a96")
MAX_SERVICES = 4
# The page reloads itself every 30 s (a new point arrives every 10 s).
OVERVIEW_SCRIPT = "setTimeout(function(){location.reload();},30000);"
Series = tuple[str, str, list[float | None], str]  # label, colour, one value a minute, link


def _scale_label(value: float, unit: str) -> str:
    if unit == "s":
        return duration(value * 1000)
    return f"{value:g}"


def chart(chart_id: str, title: str, href: str, series: list[Series], unit: str = "") -> Markup:
    """A line chart of per-minute series over the last hour, with its legend; the title links to `href`."""
    top = max([v for _, _, vals, _ in series for v in vals if v is not None] or [0])
    top = top or 1
    plot_w, plot_h = W - PAD_L - 6, H - PAD_B - PAD_T
    parts = [f'<svg class="chart" id="{e(chart_id)}" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'role="img" aria-label="{e(title)}" font-size="10" font-family="system-ui,sans-serif">',
             f'<rect x="{PAD_L}" y="{PAD_T}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#dde1e8"/>',
             f'<text x="{PAD_L - 4}" y="{PAD_T + 8}" text-anchor="end" fill="#4a5468">{e(_scale_label(top, unit))}'
             f'</text><text x="{PAD_L - 4}" y="{PAD_T + plot_h}" text-anchor="end" fill="#4a5468">0</text>'
             f'<text x="{PAD_L}" y="{H - 4}" fill="#4a5468">-60 min</text>'
             f'<text x="{W - 6}" y="{H - 4}" text-anchor="end" fill="#4a5468">now</text>']
    for label, colour, values, _ in series:
        points, dots = [], []
        for i, v in enumerate(values):
            if v is None:
                continue
            x = PAD_L + plot_w * i / max(1, len(values) - 1)
            y = PAD_T + plot_h - plot_h * v / top
            points.append(f"{x:.1f},{y:.1f}")
            dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{colour}"/>')
        total = sum(v for v in values if v is not None)
        last = next((v for v in reversed(values) if v is not None), None)
        hover = f"{label}: {_scale_label(total, unit) if unit != 's' else _scale_label(last or 0, unit)}"
        if points:
            parts.append(f'<polyline class="series" data-series="{e(label)}" data-total="{total:g}" fill="none" '
                         f'stroke="{colour}" stroke-width="1.8" points="{" ".join(points)}">'
                         f'<title>{e(hover)}</title></polyline>{"".join(dots)}')
    parts.append("</svg>")
    legend = "".join(f'<a class="legend" href="{e(link)}"><span style="background:{colour}"></span>{e(label)}</a>'
                     for label, colour, _, link in series)
    return Markup(f'<div class="card"><h2><a href="{e(href)}">{e(title)}</a></h2>'
                  f'<a href="{e(href)}">{"".join(parts)}</a><div class="legend-row">{legend}</div></div>')


def _counts(minutes: list[Minute], attr: str) -> list[float | None]:
    # A minute with no sample (before the server started, or while it was down) has no point.
    return [float(getattr(mm, attr)) if mm.sampled else None for mm in minutes]


def overview_page(minutes: list[Minute] | None) -> Markup:
    """The page: the four charts of the last hour's minutes (`Overview.per_minute`), or why there are none."""
    if minutes is None:
        return Markup('<h1>Overview</h1><div class="error">metrics are off (--no-metrics): the overview samples '
                      'the same counters as /metrics</div>')
    everything = url("/invocations")
    throughput = chart("chart-throughput", "Invocations per minute", everything, [
        ("started", _PALETTE[0], _counts(minutes, "started"), everything),
        ("completed", _PALETTE[1], _counts(minutes, "completed"), url("/invocations", status="completed")),
        ("failed", _PALETTE[2], _counts(minutes, "failed"), url("/invocations", status="completed")),
    ])
    services = sorted({svc for mm in minutes for svc in mm.latency})[:MAX_SERVICES]
    lat: list[Series] = []
    for n, svc in enumerate(services):
        colour = _PALETTE[n % len(_PALETTE)]
        link = url("/invocations", service=svc, status="completed")
        lat.append((f"{svc} p50", colour, [quantile(mm.latency.get(svc, []), 0.5) for mm in minutes], link))
        lat.append((f"{svc} p99", colour, [quantile(mm.latency.get(svc, []), 0.99) for mm in minutes], link))
    latency = chart("chart-latency", "Latency per service (p50, p99)", url("/invocations", status="completed"),
                    lat, unit="s")
    backlog = chart("chart-backlog", "Backlog", url("/invocations", status="backing-off"), [
        (status, _PALETTE[n], [float(mm.backlog.get(status, 0)) if mm.sampled else None
                               for mm in minutes], url("/invocations", status=status))
        for n, status in enumerate(BACKLOG)])
    warnings = chart("chart-warnings", "Step-thread and loop-stall warnings", url("/invocations", status="invoked"), [
        ("loop stalls", _PALETTE[2], _counts(minutes, "loop_stalls"), url("/invocations", status="invoked")),
        ("stuck step threads", _PALETTE[4], _counts(minutes, "threads_stuck"),
         url("/invocations", status="backing-off")),
        ("busy step threads", _PALETTE[5], _counts(minutes, "threads_busy"),
         url("/invocations", status="invoked")),
    ])
    last = minutes[-1]
    note = (f'<p class="muted">The last hour, one point a minute (sampled every 10 s). This minute: '
            f'{last.started} started, {last.completed} completed, {last.failed} failed. Stuck threads and '
            'stalls in detail: <a href="/threads">GET /threads</a>.</p>')
    return Markup(f'<h1>Overview</h1>{note}<div class="charts">{throughput}{latency}{backlog}{warnings}</div>')
