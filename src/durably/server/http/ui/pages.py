"""The UI's pages, rendered to HTML from what the engine and the store hold."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from durably.server.http.shapes import invocation_json, service_json, waiting_json
from durably.server.http.ui.html import (
    Markup,
    confirm_button,
    duration,
    e,
    payload,
    status_badge,
    url,
    when,
)
from durably.server.http.ui.timeline import JournalView, Step
from durably.server.http.ui.timeline_svg import timeline_svg
from durably.server.process.limits import JOURNAL_VALUE_PREVIEW
from durably.server.store.base import COL
from durably.server.store.invocation_query import InvocationFilter, cursor_of

STATUSES = ("scheduled", "inboxed", "invoked", "suspended", "backing-off", "paused", "completed")
PAGE_SIZE = 50
KEYS_PAGE = 100
# State names shown on one state page (a key may hold millions; the rest is a "next page" link away).
STATE_NAMES_PAGE = 200
# Journal steps on one invocation page: the first and the last half of this many.
MAX_STEPS = 1000


def _flash(msg: str | None, err: str | None = None) -> str:
    out = ""
    if msg:
        out += f'<div class="flash" role="status">{e(msg)}</div>'
    if err:
        out += f'<div class="error" role="alert">{e(err)}</div>'
    return out


def target_of(row: tuple[Any, ...]) -> str:
    """Service/key/handler of a row."""
    key = row[COL["key"]]
    return f"{row[COL['service']]}/{key + '/' if key else ''}{row[COL['handler']]}"


def _outcome(row: tuple[Any, ...]) -> Markup:
    if row[COL["status"]] != "completed":
        err = row[COL["last_error"]]
        if err:
            try:
                detail = json.loads(err)
                return Markup(f'<span class="failure">last attempt: {e(detail.get("code"))} '
                              f'{e(str(detail.get("message", ""))[:120])}</span>')
            except ValueError:
                pass
        return Markup("")
    if row[COL["failure_code"]] is not None:
        return Markup(f'<span class="failure">failed {e(row[COL["failure_code"]])}: '
                      f'{e((row[COL["failure_message"]] or "")[:120])}</span>')
    out = row[COL["output"]]
    text = out.decode("utf-8", "replace") if isinstance(out, bytes) else (out or "")
    return Markup(f'<span class="mono">{e(text[:120])}</span>')


def invocation_rows(rows: list[tuple[Any, ...]]) -> Markup:
    """The <tr>s of the invocations table."""
    if not rows:
        return Markup('<tr><td colspan="7" class="muted">no invocations match</td></tr>')
    out = []
    for r in rows:
        status = r[COL["status"]]
        shown = "failed" if status == "completed" and r[COL["failure_code"]] is not None else status
        out.append(
            f'<tr data-id="{e(r[COL["id"]])}"><td class="mono"><a href="{e(url("/invocations/" + r[COL["id"]]))}">'
            f'{e(r[COL["id"]])}</a></td><td class="mono">{e(target_of(r))}</td>'
            f'<td>{status_badge(shown)}</td><td>{e(when(r[COL["created_at"]]))}</td>'
            f'<td>{e(when(r[COL["modified_at"]]))}</td><td>{e(r[COL["attempts"]])}</td><td>{_outcome(r)}</td></tr>')
    return Markup("".join(out))


def _ms_to_input(ms: int | None) -> str:
    return "" if ms is None else when(ms)[:19].replace(" ", "T")


def invocations_page(flt: InvocationFilter, services: list[str], rows: list[tuple[Any, ...]], limit: int,
                     live: bool, query: dict[str, str]) -> Markup:
    """The filterable, paged, live-updating list."""
    status_opts = "".join(f'<option value="{s}"{" selected" if flt.status == s else ""}>{s}</option>'
                          for s in STATUSES)
    svc_opts = "".join(f'<option value="{e(s)}"{" selected" if flt.service == s else ""}>{e(s)}</option>'
                       for s in services)
    form = (
        '<form class="filters" method="get" action="/ui/invocations">'
        f'<label>Status<select name="status"><option value="">any</option>{status_opts}</select></label>'
        f'<label>Service<select name="service"><option value="">any</option>{svc_opts}</select></label>'
        f'<label>Handler<input name="handler" value="{e(flt.handler or "")}" size="12"></label>'
        f'<label>Key<input name="key" value="{e(flt.key or "")}" size="12"></label>'
        f'<label>Created from (UTC)<input type="datetime-local" step="1" name="since" '
        f'value="{e(_ms_to_input(flt.since_ms))}"></label>'
        f'<label>to (UTC)<input type="datetime-local" step="1" name="until" '
        f'value="{e(_ms_to_input(flt.until_ms))}"></label>'
        '<button type="submit" class="primary">Filter</button>'
        '<a href="/ui/invocations">clear</a></form>')
    pager = ['<div class="pager">']
    if query.get("before"):
        pager.append(f'<a href="{e(url("/invocations", **{**query, "before": ""}))}">« newest</a>')
    if len(rows) == limit:
        pager.append(f'<a id="older" href="{e(url("/invocations", **{**query, "before": cursor_of(rows[-1])}))}">'
                     'older »</a>')
    pager.append("</div>")
    live_note = ('<span class="muted" id="live">live: refreshes every 2 s</span>' if live
                 else '<span class="muted">paged view (not live)</span>')
    return Markup(
        f'<h1>Invocations</h1>{form}<div>{live_note}</div>'
        '<table id="invocations"><thead><tr><th>ID</th><th>Target</th><th>Status</th><th>Created</th>'
        '<th>Modified</th><th>Attempts</th><th>Outcome</th></tr></thead>'
        f'<tbody id="rows">{invocation_rows(rows)}</tbody></table>{"".join(pager)}')


LIVE_LIST_SCRIPT = """
(function(){const tb=document.getElementById('rows');
async function tick(){try{const u=new URL(location.href);u.searchParams.set('fragment','rows');
const r=await fetch(u,{cache:'no-store'});if(r.ok){tb.innerHTML=await r.text();}}catch(_){}}
setInterval(tick,2000);})();
"""

# The refresh sends what it has (`seen`: journal length, modification time, status, retries); the server
# answers 204 when nothing changed, so an idle invocation costs one row read per refresh, not a journal read.
LIVE_INVOCATION_SCRIPT = """
(function(){const el=document.getElementById('inv');if(el.dataset.status==='completed')return;
async function tick(){try{const u=new URL(location.href);u.searchParams.set('fragment','main');
u.searchParams.delete('msg');u.searchParams.delete('err');
const cur=document.getElementById('inv');u.searchParams.set('seen',cur.dataset.seen);
const r=await fetch(u,{cache:'no-store'});if(r.status===200){cur.outerHTML=await r.text();}}catch(_){}
const now=document.getElementById('inv');if(now&&now.dataset.status!=='completed')setTimeout(tick,2000);}
setTimeout(tick,2000);})();
"""


def _step_row(step: Step, created_ms: int, ended: bool, inv_id: str) -> str:
    detail = []
    for k, v in step.detail.items():
        if k == "parameter":
            continue
        detail.append(f"{e(k)}: <span class=\"mono\">{e(v)}</span>")
    if "parameter" in step.detail:
        detail.append(f"parameter: {payload(step.detail['parameter'])}")
    if step.callee:
        detail.append(f'callee: <a class="mono callee" href="{e(url("/invocations/" + step.callee))}">'
                      f'{e(step.callee)}</a>')
    if step.failure is not None:
        result = (f'<span class="failure">failure {e(step.failure.get("code"))}: '
                  f'{e(step.failure.get("message"))}</span>')
    elif step.completed:
        result = str(payload(step.result)) if step.result is not None else '<span class="muted">done</span>'
    else:
        result = '<span class="muted">' + ("never completed" if ended else "waiting…") + "</span>"
    if step.cut is not None:
        # Only the first KB of this value were read for the page; the admin API returns it whole.
        idx, size = step.cut
        result += (f'<div><a class="whole-value" href="{e(f"/invocations/{inv_id}/journal/{idx}/value")}">'
                   f'whole value ({size:,} bytes)</a></div>')
    took = "" if step.duration_ms is None else duration(step.duration_ms)
    return (f'<tr class="step" data-type="{e(step.type)}"><td class="idx">{step.index}</td><td>{e(step.type)}</td>'
            f'<td class="mono">{e(step.name)}</td><td>+{e(duration(step.at_ms - created_ms))}</td>'
            f'<td>{e(took)}</td><td>{"<br>".join(detail)}</td><td>{result}</td></tr>')


def timeline_of(row: tuple[Any, ...], live: tuple[Any, ...] | None, view: JournalView, now_ms: int) -> Markup:
    """The invocation's timeline SVG."""
    current = live if live is not None else row
    status = current[COL["status"]]
    end_ms = current[COL["completed_at"]] if status == "completed" else max(now_ms, current[COL["modified_at"]])
    return timeline_svg(view, current[COL["created_at"]], end_ms, status, current[COL["next_retry_at"]])


def seen_token(current: tuple[Any, ...], journal_length: int) -> str:
    """What the live refresh compares to know whether the page changed."""
    return (f"{journal_length}.{current[COL['modified_at']]}.{current[COL['status']]}."
            f"{current[COL['retry_count']]}.{current[COL['attempts']]}")


def invocation_main(row: tuple[Any, ...], live: tuple[Any, ...] | None, view: JournalView, caller: str | None,
                    msg: str | None = None, err: str | None = None, now_ms: int = 0, output_size: int = 0) -> Markup:
    """The invocation page's content (also sent alone to refresh it live)."""
    steps = view.steps
    current = live if live is not None else row
    inv = invocation_json(current)
    status = inv["status"]
    inv_id = inv["id"]
    created = current[COL["created_at"]]
    facts = [("Target", Markup(f'<span class="mono">{e(inv["target"])}</span>')), ("Status", status_badge(status)),
             ("Created", when(created)), ("Modified", when(current[COL["modified_at"]])),
             ("Attempts", inv.get("attempts", 0))]
    if caller:
        facts.append(("Called by", Markup(f'<a class="mono" id="caller" href="{e(url("/invocations/" + caller))}">'
                                          f'{e(caller)}</a>')))
    if inv.get("idempotency_key"):
        facts.append(("Idempotency key", inv["idempotency_key"]))
    if current[COL["key"]]:
        svc, key = current[COL["service"]], current[COL["key"]]
        facts.append(("State", Markup(f'<a href="{e(url("/state", service=svc, key=key))}">{e(svc)}/{e(key)}</a>')))
    if inv.get("last_error"):
        le = inv["last_error"]
        facts.append(("Last failed attempt", Markup(f'<span class="failure">{e(le.get("code"))} '
                                                    f'{e(le.get("message"))}</span>')))
    if current[COL["retry_count"]]:
        facts.append(("Retries", f"{current[COL['retry_count']]} failed attempts since the last journal entry"))
    if inv.get("next_retry_at"):
        facts.append(("Next retry", inv["next_retry_at"]))
    if isinstance(inv.get("waiting"), list):
        facts.append(("Waiting for", ", ".join(waiting_json(inv["waiting"]))))
    if status == "completed":
        facts.append(("Completed", when(current[COL["completed_at"]])))
        facts.append(("Took", duration(current[COL["completed_at"]] - created)))
        facts.append(("Kept until", when(current[COL["retention_until"]])))
    grid = "".join(f"<div>{e(k)}</div><div>{e(v)}</div>" for k, v in facts)
    inp = steps[0].result if steps and steps[0].type == "input" else None
    if status == "completed":
        if current[COL["failure_code"]] is not None:
            output = Markup(f'<div class="failure" id="output">failed {e(current[COL["failure_code"]])}: '
                            f'{e(current[COL["failure_message"]])}</div>')
        else:
            output = Markup(f'<div id="output">{payload(inv.get("output"))}</div>')
            out_step = next((s for s in reversed(steps) if s.type == "output"), None)
            if live is None and output_size > JOURNAL_VALUE_PREVIEW and out_step is not None:
                href = f"/invocations/{inv_id}/journal/{out_step.index}/value"
                output += Markup(f'<div class="muted">the first {JOURNAL_VALUE_PREVIEW:,} of {output_size:,} bytes: '
                                 f'<a class="whole-value" href="{e(href)}">whole value</a></div>')
    else:
        output = Markup('<div id="output" class="muted">not completed yet</div>')
    base = f"/ui/invocations/{inv_id}"
    buttons = []
    if status != "completed":
        buttons.append(confirm_button(f"{base}/cancel", "Cancel", f"Cancel {inv_id}? Its handler gets a "
                                      "cancellation at its next await and may run compensations."))
        buttons.append(confirm_button(f"{base}/kill", "Kill", f"Kill {inv_id}? It ends now without running "
                                      "any more of its code.", "danger"))
        if status == "paused":
            buttons.append(confirm_button(f"{base}/resume", "Resume", f"Resume {inv_id}?"))
        else:
            buttons.append(confirm_button(f"{base}/pause", "Pause", f"Pause {inv_id}?"))
    else:
        buttons.append(confirm_button(f"{base}/purge", "Purge", f"Purge {inv_id}? Its record and journal are "
                                      "deleted.", "danger"))
    callees = [s.callee for s in steps if s.callee]
    callee_list = "".join(f'<li><a class="mono" href="{e(url("/invocations/" + c))}">{e(c)}</a></li>'
                          for c in callees)
    shown = steps[:MAX_STEPS] if len(steps) <= MAX_STEPS else steps[:MAX_STEPS // 2] + steps[-MAX_STEPS // 2:]
    table = "".join(_step_row(s, created, status == "completed", inv_id) for s in shown[:MAX_STEPS // 2])
    hidden = max(0, view.total_steps - len(shown))
    if hidden:
        # A page stays light with a huge journal; the whole of it is in the admin API and the CLI.
        table += (f'<tr class="elided"><td colspan="7" class="muted">{hidden} steps not shown: '
                  f'<span class="mono">durably invocations describe {e(inv_id)}</span> lists them all</td></tr>')
    table += "".join(_step_row(s, created, status == "completed", inv_id) for s in shown[MAX_STEPS // 2:])
    svg = timeline_of(row, live, view, now_ms)
    if status != "completed" and current[COL["retry_count"]]:
        # The step after the last entry is what keeps failing: its retries, the last error, the next try.
        le = inv.get("last_error") or {}
        nxt = f"; next attempt at {inv['next_retry_at']}" if inv.get("next_retry_at") else ""
        table += (f'<tr class="step retrying" data-type="retrying"><td class="idx"></td><td>retrying</td><td></td>'
                  f'<td></td><td></td><td>{e(current[COL["retry_count"]])} failed attempt(s) after the last entry'
                  f'{e(nxt)}</td><td><span class="failure">{e(le.get("code"))} {e(le.get("message"))}</span></td></tr>')
    return Markup(
        f'<div id="inv" data-status="{e(status)}" data-seen="{e(seen_token(current, len(view.sizes)))}">'
        f'{_flash(msg, err)}'
        f'<h1 class="mono">{e(inv_id)}</h1><div class="actions">{"".join(buttons)}</div>'
        f'<div class="grid">{grid}</div>'
        f'<h2>Input</h2><div id="input">{payload(inp)}</div><h2>Output</h2>{output}'
        + (f"<h2>Calls</h2><ul id=\"callees\">{callee_list}</ul>" if callees else "")
        + f'<h2>Timeline</h2><div class="tl">{svg}</div>'
        + '<h2>Journal</h2><table class="timeline" id="journal"><thead><tr><th>#</th><th>Type</th><th>Name</th>'
        '<th>When</th><th>Took</th><th>Detail</th><th>Result</th></tr></thead>'
        f'<tbody>{table}</tbody></table></div>')


def services_page(engine: Any, msg: str | None, err: str | None) -> Markup:
    """Services with their handlers and options; deployments with register and remove."""
    parts = [f"<h1>Services</h1>{_flash(msg, err)}"]
    for svc in sorted(engine.services.values(), key=lambda s: s.name):
        info = service_json(svc)
        opts = [f"{k.replace('_', ' ')}: {info[k]} ms" for k in
                ("inactivity_timeout", "abort_timeout", "journal_retention", "idempotency_retention") if k in info]
        rows = []
        for h in info["handlers"]:
            hopts = []
            handler = svc.handlers[h["name"]]
            effective = getattr(handler, "effective_retry_policy", None)
            if effective is not None:
                p = effective(engine.options.default_retry_policy)
                hopts.append(f"retries: {p.max_attempts or 'unlimited'} attempts from "
                             f"{duration((p.initial_interval or timedelta(0)).total_seconds() * 1000)} "
                             f"x{p.exponentiation_factor or 2:g} up to "
                             f"{duration((p.max_interval or timedelta(0)).total_seconds() * 1000)}, "
                             f"then {p.on_max_attempts or 'pause'}")
            rows.append(f'<tr><td class="mono"><a href="{e(url("/invocations", service=svc.name, handler=h["name"]))}">'
                        f'{e(h["name"])}</a></td><td>{e(h.get("ty", "").lower())}</td>'
                        f'<td>{"public" if h.get("public") else "private"}</td>'
                        f'<td class="mono">{e(h.get("input_description"))}</td>'
                        f'<td class="mono">{e(h.get("output_description"))}</td>'
                        f'<td>{e(h.get("documentation", ""))} {e("; ".join(hopts))}</td></tr>')
        state_link = (f' · <a href="{e(url("/state", service=svc.name))}">state</a>'
                      if info["ty"] != "Service" else "")
        parts.append(
            f'<h2 class="service" id="svc-{e(svc.name)}">{e(svc.name)} <span class="muted">{e(info["ty"].lower())}'
            f' · deployment {e(info.get("deployment_id"))}{state_link}</span></h2>'
            f'<div class="muted">{e(info.get("documentation", ""))} {e("; ".join(opts))}</div>'
            '<table><thead><tr><th>Handler</th><th>Kind</th><th>Ingress</th><th>Input</th><th>Output</th>'
            f'<th>Notes</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    deps = []
    for d in engine.deployments.values():
        dj = d.to_json()
        remove = confirm_button(f"/ui/deployments/{d.id}/remove", "Remove",
                                f"Remove {d.id} ({d.uri})? Its services stop being invocable here.", "danger")
        deps.append(f'<tr><td class="mono">{e(d.id)}</td><td class="mono">{e(d.uri)}</td>'
                    f'<td>{e(dj.get("protocol_type", ""))}</td><td>{e(", ".join(d.services))}</td>'
                    f'<td>{remove}</td></tr>')
    none = '<tr><td colspan="5" class="muted">none: only the embedded app</td></tr>'
    parts.append(
        '<h2>Deployments</h2><table id="deployments"><thead><tr><th>ID</th><th>URI</th><th>Protocol</th>'
        f'<th>Services</th><th></th></tr></thead><tbody>{"".join(deps) or none}'
        '</tbody></table>'
        '<form method="post" action="/ui/deployments" class="filters" id="register">'
        '<label>Deployment URI<input name="uri" size="40" placeholder="http://127.0.0.1:9080" required></label>'
        '<label><span>HTTP/1.1</span><input type="checkbox" name="use_http_11" value="1"></label>'
        '<button type="submit" class="primary">Register</button></form>')
    return Markup("".join(parts))


def state_page(objects: list[str], service: str | None, key: str | None, body: dict[str, Any] | None,
               msg: str | None, err: str | None, edited: str | None = None, keys: list[str] | None = None,
               ) -> Markup:
    """Look up a key's state; view and edit it as JSON (saved with the version it was read at)."""
    opts = "".join(f'<option value="{e(s)}"{" selected" if s == service else ""}>{e(s)}</option>' for s in objects)
    parts = [f"<h1>State</h1>{_flash(msg, err)}",
             '<form class="filters" method="get" action="/ui/state">'
             f'<label>Object<select name="service">{opts}</select></label>'
             f'<label>Key<input name="key" value="{e(key or "")}" placeholder="empty: list keys"></label>'
             '<button type="submit" class="primary">Show</button></form>']
    if keys is not None and service:
        links = "".join(f'<li><a class="mono" href="{e(url("/state", service=service, key=k))}">{e(k)}</a></li>'
                        for k in keys)
        more = (f'<a id="more-keys" href="{e(url("/state", service=service, after=keys[-1]))}">more »</a>'
                if len(keys) == KEYS_PAGE else "")
        parts.append(f'<h2>Keys of {e(service)} with state</h2>'
                     f'<ul id="keys">{links or "<li class=muted>none</li>"}</ul>{more}')
    if body is not None and "version" not in body:
        # Only part of the state: shown read-only (saving would replace the whole state with this page).
        nxt = body.get("next_cursor")
        nxt_url = url("/state", service=body["service"], key=body["object_key"], cursor=nxt) if nxt else ""
        more = f'<a id="next-state-page" href="{e(nxt_url)}">next page »</a>' if nxt else ""
        parts.append(
            f'<h2 class="mono">{e(body["service"])}/{e(body["object_key"])}</h2>'
            f'<div class="muted">a page of {len(body["state"]) + len(body.get("binary", {}))} names, in name order; '
            "too many to edit here: change them with <code>durably state set</code> or the admin API</div>"
            f'<pre id="state">{e(json.dumps(body["state"], indent=2, ensure_ascii=False))}</pre>{more}')
    elif body is not None:
        text = edited if edited is not None else json.dumps(body["state"], indent=2, ensure_ascii=False)
        binary = body.get("binary", {})
        parts.append(
            f'<h2 class="mono">{e(body["service"])}/{e(body["object_key"])}</h2>'
            f'<div class="muted">version <span class="mono" id="version">{e(body["version"])}</span>'
            + (f" · binary values kept as they are: {e(', '.join(binary))}" if binary else "") + "</div>"
            '<form method="post" action="/ui/state" id="state-form">'
            f'<input type="hidden" name="service" value="{e(body["service"])}">'
            f'<input type="hidden" name="key" value="{e(body["object_key"])}">'
            f'<input type="hidden" name="version" value="{e(body["version"])}">'
            f'<textarea name="state" id="state">{e(text)}</textarea>'
            '<div class="actions"><button type="submit" class="primary" '
            'onclick="return confirm(\'Save this state? The next invocation of the key sees it.\')">Save</button>'
            '</div></form>')
    return Markup("".join(parts))
