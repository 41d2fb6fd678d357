"""The services page's "Kafka subscriptions" section: each subscription with its consumer's state and lag."""

from __future__ import annotations

from typing import TYPE_CHECKING

from durably.server.http.ui.html import Markup, e

if TYPE_CHECKING:
    from durably.server.process.kafka import KafkaSubscriptions

__all__ = ["subscriptions_section"]


def subscriptions_section(subscriptions: KafkaSubscriptions | None) -> Markup:
    """A table of subscriptions (source, sink, consumer state, lag per partition, errors); empty if none."""
    if subscriptions is None:
        return Markup("")
    subs = subscriptions.list()
    if not subs:
        return Markup("")
    stats = subscriptions.stats()
    rows = []
    for sub in subs:
        st = stats[sub.id]
        parts = ", ".join(f"{t}/{p}: {n}" for (t, p), n in sorted(st.lag.items())) or "-"
        error = f'<div class="muted">{e(st.last_error)}</div>' if st.last_error else ""
        rows.append(
            f'<tr id="sub-{e(sub.id)}"><td><code>{e(sub.id)}</code></td><td>{e(sub.source.uri)}</td>'
            f"<td>{e(sub.sink.uri)}</td><td>{e(st.state)}{error}</td><td class=\"lag\">{st.total_lag}</td>"
            f"<td>{e(parts)}</td><td>{st.records_consumed}</td><td>{subscriptions.created.get(sub.id, 0)}</td>"
            f"<td>{st.errors}</td></tr>")
    return Markup(
        '<h2 id="subscriptions">Kafka subscriptions</h2><table id="subscription-table"><thead><tr><th>ID</th>'
        "<th>Source</th><th>Sink</th><th>Consumer</th><th>Lag</th><th>Lag per partition</th><th>Consumed</th>"
        "<th>Invocations</th><th>Errors</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
